// i.i.d. normal inputs. Cheap and unbiased, but every sparse method looks bad on them
// (docs/inputs.md): use them for speed and kernel accuracy, not for recall.
#include <random>

#include "workloads/workloads.hpp"

namespace ab {

namespace {
// A counter-based generator so each tensor chunk is independent of thread count: the same
// seed gives the same bytes everywhere.
void fill_normal(HostTensor& t, uint64_t seed, float stddev) {
  const int64_t n = t.numel();
  constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c) {
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(c));
    std::normal_distribution<float> dist(0.0f, stddev);
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) t.data[static_cast<size_t>(i)] = dist(rng);
  }
}
}  // namespace

HostInputs generate_gaussian(const AttnShape& s, const nlohmann::ordered_json& options, uint64_t seed) {
  const float stddev = options.value("std", 1.0f);
  HostInputs in;
  in.q = HostTensor({s.batch, s.q_heads, s.q_len, s.head_dim});
  in.k = HostTensor({s.batch, s.kv_heads, s.kv_len, s.head_dim});
  in.v = HostTensor({s.batch, s.kv_heads, s.kv_len, s.v_dim});
  fill_normal(in.q, seed ^ 0x51, stddev);
  fill_normal(in.k, seed ^ 0x4b, stddev);
  fill_normal(in.v, seed ^ 0x56, stddev);
  round_tensor(in.q, s.dtype);
  round_tensor(in.k, s.dtype);
  round_tensor(in.v, s.dtype);
  return in;
}

}  // namespace ab
