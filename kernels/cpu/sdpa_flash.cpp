// Placeholder-free first version: a correct row-wise online softmax. The tiled Eigen kernel
// replaces it (see tests/bench/bench_cpu_sdpa.cpp for its measured rate).
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/sdpa.hpp"

namespace ab::cpu {

double sdpa_flash_executed_fraction(const AttnShape& s, const Mask& m) {
  (void)m;
  return s.allowed_pairs() / (static_cast<double>(s.q_len) * s.kv_len);
}

void sdpa_flash(const SdpaArgs& a) {
  const AttnShape& s = a.shape;
  const float scale = a.effective_scale();
  const int d = s.head_dim, dv = s.v_dim;
  const int64_t off = s.q_offset();
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int bh = 0; bh < s.batch * s.q_heads; ++bh) {
    for (int64_t i = 0; i < s.q_len; ++i) {
      const int b = bh / s.q_heads, h = bh % s.q_heads, kh = a.kv_head_of(h);
      const float* q = a.q.host_f32() + ((int64_t(b) * s.q_heads + h) * s.q_len + i) * d;
      const float* K = a.k.host_f32() + (int64_t(b) * s.kv_heads + kh) * s.kv_len * d;
      const float* V = a.v.host_f32() + (int64_t(b) * s.kv_heads + kh) * s.kv_len * dv;
      float* o = a.o.host_f32() + ((int64_t(b) * s.q_heads + h) * s.q_len + i) * dv;
      std::vector<float> acc(dv, 0.0f);
      float m = -std::numeric_limits<float>::infinity(), l = 0;
      for (int64_t j = 0; j < s.kv_len; ++j) {
        if (!a.mask.allows(b, h, i + off, j)) continue;
        float dot = 0;
        for (int c = 0; c < d; ++c) dot += q[c] * K[j * d + c];
        dot *= scale;
        if (dot > m) {
          const float r = std::exp(m - dot);
          for (auto& x : acc) x *= r;
          l *= r;
          m = dot;
        }
        const float p = std::exp(dot - m);
        l += p;
        for (int c = 0; c < dv; ++c) acc[c] += p * V[j * dv + c];
      }
      for (int c = 0; c < dv; ++c) o[c] = l > 0 ? acc[c] / l : 0.0f;
      if (a.lse.data) a.lse.host_f32()[(int64_t(b) * s.q_heads + h) * s.q_len + i] = l > 0 ? m + std::log(l) : -std::numeric_limits<float>::infinity();
    }
  }
}

}  // namespace ab::cpu
