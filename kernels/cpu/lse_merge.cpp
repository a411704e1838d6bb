#include "cpu/lse_merge.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

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

void lse_blend(const LseBlendArgs& a) {
  const Shape4 so = a.o.shape;
  for (const TensorRef* t : {&a.o_s, &a.o_n})
    if (t->shape != so) throw std::invalid_argument("lse_blend: o_s and o_n must have o's shape");
  for (const TensorRef* t : {&a.lse_s, &a.lse_n})
    if (t->numel() != so[0] * so[1] * so[2])
      throw std::invalid_argument("lse_blend: lse_s and lse_n must be (B, H, N, 1)");
  const int64_t rows = so[0] * so[1] * so[2];
  const int64_t dv = so[3];
  const float beta = a.beta;
  float* o = a.o.host_f32();
  const float *os = a.o_s.host_f32(), *on = a.o_n.host_f32();
  const float *ls = a.lse_s.host_f32(), *ln = a.lse_n.host_f32();
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    // No sink in view: the row is unchanged. Only sinks in view: nothing to redistribute to.
    if (ls[r] == kNegInf || ln[r] == kNegInf) continue;
    const float m = 1.0f / (1.0f + std::exp(ln[r] - ls[r]));
    float* orow = o + r * dv;
    const float* srow = os + r * dv;
    const float* nrow = on + r * dv;
    for (int64_t c = 0; c < dv; ++c) orow[c] = beta * m * srow[c] + (1.0f - beta * m) * nrow[c];
  }
}

}  // namespace ab::cpu
