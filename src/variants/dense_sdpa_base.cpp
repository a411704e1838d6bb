#include "variants/dense_sdpa_base.hpp"

#include "variants/decode_steps.hpp"
#include "reference/attention_reference.hpp"
#include "core/mask_library.hpp"

namespace ab {

double dense_flops(const AttnShape& s, double pairs_per_head) {
  return 2.0 * s.batch * s.q_heads * pairs_per_head * (s.head_dim + s.v_dim);
}

double dense_bytes_min(const AttnShape& s) {
  const double e = dtype_bytes(s.dtype);
  const double q = double(s.batch) * s.q_heads * s.q_len * s.head_dim;
  // Multi-step decode: every step reads the cache it sees afresh (a decoder's steps are
  // separate calls), as the sparse decode variants count their gathered rows.
  const double kv_rows = s.steps > 1 ? s.allowed_pairs() : double(s.kv_len);
  const double k = double(s.batch) * s.kv_heads * kv_rows * s.head_dim;
  const double v = double(s.batch) * s.kv_heads * kv_rows * s.v_dim;
  const double o = double(s.batch) * s.q_heads * s.q_len * s.v_dim;
  const double lse = double(s.batch) * s.q_heads * s.q_len * 4.0;
  return (q + k + v + o) * e + lse;
}

double tiled_pairs(const Mask& m, const AttnShape& s) {
  constexpr int64_t B = 64;
  const int64_t qb = (s.q_len + B - 1) / B, kb = (s.kv_len + B - 1) / B;
  // Dense or causal alone: exact and free. Huge grids: the causal-aware dense pairs.
  if ((!m.extra && m.window <= 0) || double(qb) * double(kb) > 4e6) return s.allowed_pairs();
  const int64_t off = s.q_offset();
  double pairs = 0;
  for (int64_t r = 0; r < qb; ++r) {
    const int64_t i0 = r * B, i1 = std::min(s.q_len, i0 + B);
    for (int64_t c = 0; c < kb; ++c) {
      const int64_t j0 = c * B, j1 = std::min(s.kv_len, j0 + B);
      if (m.classify(0, 0, i0 + off, i1 + off, j0, j1) != BlockClass::empty)
        pairs += double(i1 - i0) * double(j1 - j0);
    }
  }
  return pairs;
}

Mask DenseSdpaVariant::mask(const AttnShape& s) const {
  Mask m;
  m.causal = s.causal;
  return m;
}

SdpaArgs DenseSdpaVariant::args(const Inputs& in, Outputs* out) const {
  SdpaArgs a;
  a.shape = in.shape;
  a.q = in.q;
  a.k = in.k;
  a.v = in.v;
  if (out) {
    a.o = out->o;
    a.lse = out->lse;
  }
  a.scale = in.scale;
  a.mask = mask(in.shape);
  return a;
}

Support DenseSdpaVariant::supports(const AttnShape& s, const Backend& b) const {
  Inputs probe;
  probe.shape = s;
  SdpaArgs a = args(probe, nullptr);
  if (s.steps > 1) {  // multi-step decode runs one row per call (docs/decode.md)
    a.shape = step_shape(s);
    a.mask = step_mask(a.mask, s, 0);
  }
  return b.supports_sdpa(a);
}

Cost DenseSdpaVariant::cost(const AttnShape& s, const Plan* plan) const {
  Cost c;
  const double pairs = s.allowed_pairs();  // causal-aware dense pairs
  c.dense_equivalent = dense_flops(s, pairs);
  // Executed: the tiles the backend's kernel visits (from the plan). Before planning (the
  // pre-flight's and validate's estimates, made for every case of a sweep), the pairs in the
  // non-empty 64 × 64 blocks of the mask: classified by interval arithmetic, never scanned
  // element by element, so it stays cheap for any N.
  c.executed = dense_flops(s, plan && plan->run_pairs >= 0 ? plan->run_pairs : tiled_pairs(mask(s), s));
  c.bytes_min = dense_bytes_min(s);
  c.density = 1.0;
  return c;
}

double DenseSdpaVariant::run_pairs(const Backend& b, SdpaArgs a, const AttnShape& s) {
  if (s.steps <= 1) return b.sdpa_executed_pairs(a).value_or(-1.0);
  // One call per step: the tiles each step's call visits.
  const Mask m = a.mask;
  a.shape = step_shape(s);
  double pairs = 0;
  for (int64_t t = 0; t < s.steps; ++t) {
    a.mask = step_mask(m, s, t);
    const std::optional<double> p = b.sdpa_executed_pairs(a);
    if (!p) return -1.0;
    pairs += *p;
  }
  return pairs;
}

Plan DenseSdpaVariant::plan(const Inputs& in, Backend& b) {
  Plan p;
  p.selection = std::make_shared<FullSelection>(in.shape, mask(in.shape));
  p.run_pairs = run_pairs(b, args(in, nullptr), in.shape);
  return p;
}

void DenseSdpaVariant::run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) {
  (void)plan;
  run_sdpa(in, out, b, args(in, &out));
}

void DenseSdpaVariant::run_sdpa(const Inputs& in, Outputs& out, Backend& b, SdpaArgs a) {
  if (in.shape.steps <= 1) {
    b.sdpa(a);
    return;
  }
  // A single call over the S rows would read the cache once for all steps.
  StepRows rows(b, in, out);
  const Mask m = a.mask;
  a.shape = step_shape(in.shape);
  a.q = rows.q();
  a.o = rows.o();
  a.lse = rows.lse();
  for (int64_t t = 0; t < in.shape.steps; ++t) {
    rows.load_query(t);
    a.mask = step_mask(m, in.shape, t);
    b.sdpa(a);
    rows.store(t);
  }
  rows.finish();
}

void DenseSdpaVariant::reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i,
                                     double* o, double* lse) const {
  (void)plan;
  const SdpaArgs a = args(in, nullptr);
  ab::sdpa_reference_row(in.host->q, in.host->k, in.host->v, in.shape, a.mask,
                          a.effective_scale(), a.kv_head_of(h), b, h, i, o, lse);
}

}  // namespace ab
