#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // Eigen + AVX-512, GCC PR 105593
#endif
#include "cpu/selection_decode.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>

namespace ab::cpu {
namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<RowMat>;
using CMapRM = Eigen::Map<const RowMat>;
// Keys per scoring chunk: a (rows, 2048) product per thread item keeps the key chunk
// (2048·d floats, 1 MiB at d = 128) streaming through L2 once.
constexpr int64_t kScoreChunk = 2048;
}  // namespace

// A few rows against many keys: Eigen's GEMM would pack (copy) the key chunk before
// multiplying, which for G ≈ 4 rows is half the time (perf, retrieval exact at 8k keys: 50% in
// gemm_pack_lhs); streaming each key row once through G dot products reads it once.
constexpr int64_t kStreamRows = 16;

void group_scores(const float* q, int64_t rows, const float* k, int64_t n, int d, float scale,
                  float* out) {
  if (rows <= 0 || n <= 0) return;
  const int64_t chunks = (n + kScoreChunk - 1) / kScoreChunk;
  if (rows <= kStreamRows) {
#pragma omp parallel for schedule(static) if (chunks > 1 && !omp_in_parallel())
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t k0 = c * kScoreChunk, k1 = std::min(n, k0 + kScoreChunk);
      for (int64_t j = k0; j < k1; ++j) {
        const float* kr = k + j * d;
        for (int64_t r = 0; r < rows; ++r) {
          const float* qr = q + r * d;
          float acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int e = 0; e < d; ++e) acc += qr[e] * kr[e];
          out[r * n + j] = scale * acc;
        }
      }
    }
    return;
  }
  const CMapRM qm(q, rows, d);
  // Each chunk writes its own column block of `out` (rows, n): a strided view.
  using Stride = Eigen::OuterStride<>;
#pragma omp parallel for schedule(static) if (chunks > 1 && !omp_in_parallel())
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t k0 = c * kScoreChunk, nc = std::min(kScoreChunk, n - k0);
    Eigen::Map<RowMat, 0, Stride> o(out + k0, rows, nc, Stride(n));
    o.noalias() = scale * (qm * CMapRM(k + k0 * d, nc, d).transpose());
  }
}

void soft_vote(const float* scores, int64_t heads, int64_t n, float* votes) {
  if (n <= 0) return;
  // Eigen's vectorised exp: the scalar libm expf was 20% of TokenSelect's plan at 128k (perf).
  Eigen::ArrayXf row(n);
  Eigen::Map<Eigen::ArrayXf> v(votes, n);
  for (int64_t h = 0; h < heads; ++h) {
    const Eigen::Map<const Eigen::ArrayXf> s(scores + h * n, n);
    row = (s - s.maxCoeff()).exp();
    v += row * float(1.0 / row.cast<double>().sum());
  }
}

double cosine(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

const std::vector<int32_t>* SelectionCache::lookup(const float* f, int64_t n, double* cos_out) {
  const bool stored = int64_t(fingerprint_.size()) == n && n > 0;
  const double c = stored ? cosine(f, fingerprint_.data(), n) : std::numeric_limits<double>::quiet_NaN();
  if (cos_out) *cos_out = c;
  if (stored && c >= threshold_) {
    ++hits_;
    return &selection_;
  }
  ++misses_;
  return nullptr;
}

void SelectionCache::store(const float* f, int64_t n, std::vector<int32_t> selection) {
  fingerprint_.assign(f, f + n);
  selection_ = std::move(selection);
}

}  // namespace ab::cpu
