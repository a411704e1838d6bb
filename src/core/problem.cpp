#include "core/problem.hpp"

#include <fmt/format.h>

namespace ab {

std::string_view mode_name(Mode m) { return m == Mode::prefill ? "prefill" : "decode"; }

std::string Problem::key() const {
  // fmt rather than chained operator+: GCC 12 warns falsely (-Wrestrict, PR 105329) on the latter.
  std::string k = fmt::format("{}_b{}_h{}_kv{}_d{}", mode_name(mode), batch, heads, kv_heads, head_dim);
  if (v_dim != head_dim) k += fmt::format("_dv{}", v_dim);
  k += fmt::format("_q{}_k{}_{}_{}", q_len, kv_len, causal ? "causal" : "full", dtype_name(dtype));
  if (steps > 1) k += fmt::format("_s{}", steps);
  return k;
}

double AttnShape::allowed_pairs() const {
  if (!causal) return static_cast<double>(q_len) * static_cast<double>(kv_len);
  double s = 0;
  const int64_t off = q_offset();
  // Sum over rows of min(kv_len, i + off + 1), clipped at zero.
  for (int64_t i = 0; i < q_len; ++i) {
    const int64_t v = i + off + 1;
    s += static_cast<double>(v < 0 ? 0 : (v > kv_len ? kv_len : v));
  }
  return s;
}

AttnShape shape_from_problem(const Problem& p) {
  AttnShape s;
  s.batch = p.batch;
  s.q_heads = p.heads;
  s.kv_heads = p.kv_heads;
  s.head_dim = p.head_dim;
  s.v_dim = p.v_dim;
  s.q_len = p.q_len;
  s.kv_len = p.kv_len;
  s.causal = p.causal;
  s.mode = p.mode;
  s.dtype = p.dtype;
  if (p.mode == Mode::decode && p.steps > 1) {  // one query row per step (docs/decode.md)
    s.steps = p.steps;
    s.q_len = p.steps;
    s.causal = true;
  }
  return s;
}

}  // namespace ab
