#include "cpu/lse_merge.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ab::cpu {

void lse_merge(float* o, float* lse, const float* o1, const float* lse1, const float* o2,
               const float* lse2, int64_t rows, int dv, float offset2) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  // Below ~64k elements the OpenMP fork costs more than the loop.
#pragma omp parallel for schedule(static) if (rows * dv > (int64_t(1) << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float l1 = lse1[r];
    const float l2 = lse2[r] == kNegInf ? kNegInf : lse2[r] + offset2;
    float* out = o + r * dv;
    const float* a = o1 + r * dv;
    const float* b = o2 + r * dv;
    if (l2 == kNegInf) {  // part 2 empty: keep part 1 (o = o1)
      if (out != a) std::copy(a, a + dv, out);
      lse[r] = l1;
      if (l1 == kNegInf) std::fill(out, out + dv, 0.0f);
      continue;
    }
    if (l1 == kNegInf) {
      std::copy(b, b + dv, out);
      lse[r] = l2;
      continue;
    }
    const float mx = std::max(l1, l2);
    const float w1 = std::exp(l1 - mx), w2 = std::exp(l2 - mx);
    const float inv = 1.0f / (w1 + w2);
    const float c1 = w1 * inv, c2 = w2 * inv;
    for (int c = 0; c < dv; ++c) out[c] = c1 * a[c] + c2 * b[c];
    lse[r] = mx + std::log(w1 + w2);
  }
}

void lse_merge_row_f64(double* o, double* lse, const double* o2, double lse2, int dv) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  if (lse2 == kNegInf) return;
  if (*lse == kNegInf) {
    std::copy(o2, o2 + dv, o);
    *lse = lse2;
    return;
  }
  const double mx = std::max(*lse, lse2);
  const double w1 = std::exp(*lse - mx), w2 = std::exp(lse2 - mx);
  for (int c = 0; c < dv; ++c) o[c] = (w1 * o[c] + w2 * o2[c]) / (w1 + w2);
  *lse = mx + std::log(w1 + w2);
}

}  // namespace ab::cpu
