#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // Eigen + AVX-512, GCC PR 105593
#endif
#include "cpu/selection.hpp"

#include "cpu/amx.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <Eigen/Core>

namespace ab::cpu {
namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<RowMat>;
using CMapRM = Eigen::Map<const RowMat>;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

void pool_rows(const float* x, int64_t n, int d, int64_t block, Pool how, float* out) {
  if (block <= 0) throw std::invalid_argument("pool_rows: block must be >= 1");
  const int64_t nb = (n + block - 1) / block;
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t r0 = b * block, r1 = std::min(n, r0 + block);
    float* o = out + b * d;
    if (how == Pool::max) {
      std::copy(x + r0 * d, x + r0 * d + d, o);
      for (int64_t r = r0 + 1; r < r1; ++r)
        for (int c = 0; c < d; ++c) o[c] = std::max(o[c], x[r * d + c]);
    } else {
      std::fill(o, o + d, 0.0f);
      for (int64_t r = r0; r < r1; ++r)
        for (int c = 0; c < d; ++c) o[c] += x[r * d + c];
      const float inv = 1.0f / float(r1 - r0);
      for (int c = 0; c < d; ++c) o[c] *= inv;
    }
  }
}

void average_heads(const float* const* x, int count, int64_t elems, float* out) {
  if (count <= 0) throw std::invalid_argument("average_heads: count must be >= 1");
  std::copy(x[0], x[0] + elems, out);
  for (int c = 1; c < count; ++c)
    for (int64_t e = 0; e < elems; ++e) out[e] += x[c][e];
  const float inv = 1.0f / float(count);
  for (int64_t e = 0; e < elems; ++e) out[e] *= inv;
}

std::vector<int64_t> strided_rows(int64_t n, int64_t stride) {
  if (stride <= 0) throw std::invalid_argument("strided_rows: stride must be >= 1");
  std::vector<int64_t> rows;
  for (int64_t w = 0; w * stride < n; ++w) rows.push_back(std::min(n - 1, w * stride + stride - 1));
  return rows;
}

void softmax_probs(const float* q, int64_t rows, const int64_t* visible, const float* k,
                   int64_t n_keys, int d, float scale, float* out) {
  if (rows <= 0 || n_keys <= 0) return;
  MapRM p(out, rows, n_keys);
  p.noalias() = scale * (CMapRM(q, rows, d) * CMapRM(k, n_keys, d).transpose());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t vis = visible ? std::clamp<int64_t>(visible[r], 0, n_keys) : n_keys;
    float* row = out + r * n_keys;
    std::fill(row + vis, row + n_keys, 0.0f);
    if (vis == 0) continue;
    Eigen::Map<Eigen::ArrayXf> a(row, vis);
    const float mx = a.maxCoeff();
    a = (a - mx).exp();
    a /= a.sum();
  }
}

void pooled_softmax(const float* q, int64_t rows, const int64_t* visible, const float* k,
                    int64_t n_keys, int d, float scale, int64_t block, Pool how, float* out) {
  if (block <= 0) throw std::invalid_argument("pooled_softmax: block must be >= 1");
  const int64_t nb = (n_keys + block - 1) / block;
  std::fill(out, out + rows * nb, 0.0f);
  if (rows <= 0 || n_keys <= 0) return;
  // Logits of a chunk of rows at a time (GEMM), then per row: max, Σ exp, per-block pooling.
  constexpr int64_t kRows = 32;
  thread_local RowMat logits;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int64_t nr = std::min(kRows, rows - r0);
    int64_t nk = 0;
    for (int64_t r = r0; r < r0 + nr; ++r)
      nk = std::max(nk, visible ? std::clamp<int64_t>(visible[r], 0, n_keys) : n_keys);
    if (nk == 0) continue;
    logits.resize(nr, nk);
    logits.noalias() = scale * (CMapRM(q + r0 * d, nr, d) * CMapRM(k, nk, d).transpose());
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t vis = visible ? std::clamp<int64_t>(visible[r0 + r], 0, n_keys) : n_keys;
      if (vis == 0) continue;
      Eigen::Map<Eigen::ArrayXf> x(logits.row(r).data(), vis);
      const float mx = x.maxCoeff();
      const float lse = mx + std::log((x - mx).exp().sum());
      float* o = out + (r0 + r) * nb;
      for (int64_t n = 0; n * block < vis; ++n) {
        const int64_t j0 = n * block, j1 = std::min(vis, j0 + block);
        Eigen::Map<Eigen::ArrayXf> seg(logits.row(r).data() + j0, j1 - j0);
        if (how == Pool::max) {
          o[n] = std::exp(seg.maxCoeff() - lse);
        } else {
          const int64_t len = std::min(n_keys, j0 + block) - j0;
          o[n] = (seg - lse).exp().sum() / float(len);
        }
      }
    }
  }
}

void top_k(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.clear();
  k = std::clamp<int64_t>(k, 0, n);
  if (k == 0) return;
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  // Strict weak order: larger score first, then lower index (NaN treated as -inf).
  auto val = [&](int32_t i) { const float v = scores[i]; return std::isnan(v) ? kNegInf : v; };
  auto before = [&](int32_t a, int32_t b) {
    const float va = val(a), vb = val(b);
    return va > vb || (va == vb && a < b);
  };
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), before);
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end(), before);
  out = std::move(idx);
}

int64_t cumulative_mass_count(const float* w, int64_t n, double gamma) {
  if (gamma <= 0 || n <= 0) return 0;
  std::vector<float> v(w, w + n);
  std::sort(v.begin(), v.end(), std::greater<float>());
  double total = 0;
  for (float x : v) total += std::max(0.0f, x);
  int64_t nonzero = 0;
  for (float x : v) nonzero += x > 0.0f;
  if (gamma >= 1.0 || total <= 0) return gamma >= 1.0 ? nonzero : 0;
  const double target = gamma * total;
  double acc = 0;
  for (int64_t c = 0; c < n; ++c) {
    acc += std::max(0.0f, v[size_t(c)]);
    if (acc >= target) return c + 1;
  }
  return nonzero;
}

void cumulative_mass_set(const float* w, int64_t n, double gamma, std::vector<int32_t>& out) {
  top_k(w, n, cumulative_mass_count(w, n, gamma), out);
}

float threshold_relative_to_sum(float m, float l, float tau) {
  if (!(tau > 0.0f) || !(l > 0.0f)) return tau > 0.0f ? std::numeric_limits<float>::infinity() : kNegInf;
  return m + std::log(tau * l);
}

Int4Rows quantize_int4(const float* x, int64_t rows, int d, int64_t block) {
  if (block <= 0) throw std::invalid_argument("quantize_int4: block must be >= 1");
  Int4Rows r;
  r.rows = rows;
  r.d = d;
  r.block = block;
  r.dq = (d + 3) / 4;
  r.q.resize(size_t(rows * d));
  r.qsum.resize(size_t(rows));
  const int64_t nb = (rows + block - 1) / block;
  r.scale.resize(size_t(nb));
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t r0 = b * block, r1 = std::min(rows, r0 + block);
    float amax = 0;
    for (int64_t e = r0 * d; e < r1 * d; ++e) amax = std::max(amax, std::abs(x[e]));
    const float scale = amax / 7.0f;
    r.scale[size_t(b)] = scale;
    const float inv = scale > 0 ? 1.0f / scale : 0.0f;
    for (int64_t row = r0; row < r1; ++row) {
      int32_t s = 0;
      for (int c = 0; c < d; ++c) {
        const float v = std::nearbyint(x[row * d + c] * inv);
        const int8_t qv = int8_t(std::clamp(v, -7.0f, 7.0f));
        r.q[size_t(row * d + c)] = qv;
        s += qv;
      }
      r.qsum[size_t(row)] = s;
    }
  }
  // Packed copies (see the header). Padding dims hold 8 on the left and 0 on the right, so
  // they add 8·0 = 0; the qsum correction covers the real dims only.
  const int dq = r.dq;
  r.left.assign(size_t(rows * dq * 4), 8);
  r.dq_pad = ((d + 63) / 64) * 16;
  r.d_pad = ((d + 63) / 64) * 64;
  r.right.assign(size_t(((rows + 15) / 16) * r.dq_pad * 64), 0);
  r.amx_left.assign(size_t((rows + 32) * r.d_pad), 0);  // tile loads may run 32 rows past
  r.corr.assign(size_t(((rows + 15) / 16) * 16), 0);
  for (int64_t row = 0; row < rows; ++row) r.corr[size_t(row)] = 8 * r.qsum[size_t(row)];
  r.lane_scale.assign(r.corr.size(), 0.0f);
  for (int64_t row = 0; row < rows; ++row) r.lane_scale[size_t(row)] = r.scale_of(row);
  for (int64_t row = 0; row < rows; ++row)
    for (int c = 0; c < d; ++c) {
      const int8_t v = r.q[size_t(row * d + c)];
      r.left[size_t(row * dq * 4 + c)] = uint8_t(v + 8);
      r.right[size_t(((row / 16) * r.dq_pad + c / 4) * 64 + (row % 16) * 4 + c % 4)] = v;
      r.amx_left[size_t(row * r.d_pad + c)] = v;
    }
  return r;
}

namespace {
// Calls emit(i, g, dots) for rows [q0, q0+nq) of a and each aligned 16-row group g of b that
// covers [k0, k0+nk), with dots[t] = Σ_c a.q[i][c]·b.q[16g+t][c] (lanes past b's rows are 0;
// lanes outside [k0, k0+nk) are the caller's to ignore). VNNI: Σ_c (a+8)·b − 8·Σ_c b, with
// 4 rows × 2 groups of accumulators per step.
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
template <class Emit>
void int4_dot_groups(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b, int64_t k0,
                     int64_t nk, Emit&& emit) {
  const int dq = a.dq;
  const int64_t g0 = k0 / 16, g1 = (k0 + nk + 15) / 16;
  for (int64_t i0 = 0; i0 < nq; i0 += 4) {
    const int ni = int(std::min<int64_t>(4, nq - i0));
    for (int64_t g = g0; g < g1; g += 2) {
      const bool two = g + 1 < g1;
      __m512i acc[4][2];
      for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
      const int8_t* bp0 = b.right.data() + g * b.dq_pad * 64;
      const int8_t* bp1 = two ? bp0 + b.dq_pad * 64 : bp0;
      const uint8_t* ap = a.left.data() + (q0 + i0) * dq * 4;
      for (int t = 0; t < dq; ++t) {
        const __m512i b0 = _mm512_loadu_si512(bp0 + t * 64);
        const __m512i b1 = _mm512_loadu_si512(bp1 + t * 64);
        for (int r = 0; r < ni; ++r) {
          int32_t a4;
          std::memcpy(&a4, ap + r * dq * 4 + t * 4, 4);
          const __m512i av = _mm512_set1_epi32(a4);
          acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
          acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
        }
      }
      for (int t = 0; t < (two ? 2 : 1); ++t) {
        const __m512i corr = _mm512_loadu_si512(b.corr.data() + (g + t) * 16);
        for (int r = 0; r < ni; ++r) emit(i0 + r, g + t, _mm512_sub_epi32(acc[r][t], corr));
      }
    }
  }
}
#endif

// Lanes of group g that fall in [k0, k0+nk).
[[maybe_unused]] inline uint32_t lane_mask(int64_t g, int64_t k0, int64_t nk) {
  uint32_t m = 0;
  for (int l = 0; l < 16; ++l) {
    const int64_t j = g * 16 + l;
    if (j >= k0 && j < k0 + nk) m |= 1u << l;
  }
  return m;
}

[[maybe_unused]] int32_t scalar_dot(const Int4Rows& a, int64_t i, const Int4Rows& b, int64_t j) {
  int32_t dot = 0;
  for (int c = 0; c < a.d; ++c) dot += int32_t(a.q[size_t(i * a.d + c)]) * b.q[size_t(j * a.d + c)];
  return dot;
}
}  // namespace

void int4_scores(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b, int64_t k0,
                 int64_t nk, float* out) {
  if (a.d != b.d) throw std::invalid_argument("int4_scores: a and b differ in d");
  if (nq <= 0 || nk <= 0) return;
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
  alignas(64) int32_t lanes[16];
  int4_dot_groups(a, q0, nq, b, k0, nk, [&](int64_t i, int64_t g, __m512i dots) {
    _mm512_store_si512(lanes, dots);
    const float sa = a.scale_of(q0 + i);
    for (int l = 0; l < 16; ++l) {
      const int64_t j = g * 16 + l;
      if (j >= k0 && j < k0 + nk) out[i * nk + (j - k0)] = sa * b.scale_of(j) * float(lanes[l]);
    }
  });
#else
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j)
      out[i * nk + j] = a.scale_of(q0 + i) * b.scale_of(k0 + j) * float(scalar_dot(a, q0 + i, b, k0 + j));
#endif
}

void int4_row_max(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b, int64_t k0,
                  int64_t nk, int32_t* out) {
  if (a.d != b.d) throw std::invalid_argument("int4_row_max: a and b differ in d");
  std::fill(out, out + std::max<int64_t>(nq, 0), std::numeric_limits<int32_t>::min());
  if (nq <= 0 || nk <= 0) return;
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
  // Whole groups inside the range need no lane mask; the (at most two) edge groups do.
  const int64_t g0 = k0 / 16, g1 = (k0 + nk + 15) / 16;
  const __mmask16 m0 = __mmask16(lane_mask(g0, k0, nk)), m1 = __mmask16(lane_mask(g1 - 1, k0, nk));
  const __m512i lowest = _mm512_set1_epi32(std::numeric_limits<int32_t>::min());
  constexpr int64_t kRows = 64;
  __m512i best[kRows];
  for (int64_t c0 = 0; c0 < nq; c0 += kRows) {
    const int64_t cn = std::min(kRows, nq - c0);
    for (int64_t r = 0; r < cn; ++r) best[r] = lowest;
    int4_dot_groups(a, q0 + c0, cn, b, k0, nk, [&](int64_t i, int64_t g, __m512i dots) {
      const __mmask16 m = g == g0 ? m0 : (g == g1 - 1 ? m1 : __mmask16(0xFFFF));
      best[i] = _mm512_mask_max_epi32(best[i], m, best[i], dots);
    });
    for (int64_t r = 0; r < cn; ++r) out[c0 + r] = _mm512_reduce_max_epi32(best[r]);
  }
#else
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j) out[i] = std::max(out[i], scalar_dot(a, q0 + i, b, k0 + j));
#endif
}

namespace {
#if defined(__x86_64__)
// AMX form of int4_blocks_reaching: 32 query rows × 32 keys per step, in eight 16×64-byte
// tiles: C (tmm0–3, int32 16×16), A (tmm4–5: 16 rows × 64 dims of q), B (tmm6–7: 64 dims × 16
// keys in `right`'s 4-byte interleave). Signed × signed bytes (TDPBSSD): no +8 shift needed.
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl")))
void blocks_reaching_amx(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b, int64_t kb0,
                         int64_t block, const float* thr, uint8_t* keep, int64_t k0, int64_t k1) {
  const amx::TileConfig cfg;
  _tile_loadconfig(&cfg);
  const int64_t g0 = k0 / 16, g1 = (k1 + 15) / 16;
  const int ksteps = a.d_pad / 64;
  const bool whole = block % 16 == 0;
  uint16_t first_mask = 0, last_mask = 0;
  for (int l = 0; l < 16; ++l) {
    if (g0 * 16 + l >= k0 && g0 * 16 + l < k1) first_mask |= uint16_t(1u << l);
    if ((g1 - 1) * 16 + l >= k0 && (g1 - 1) * 16 + l < k1) last_mask |= uint16_t(1u << l);
  }
  alignas(64) int32_t cbuf[4][256];
  const int64_t lda = a.d_pad;
  for (int64_t g = g0; g < g1; g += 2) {
    const bool two = g + 1 < g1;
    if (whole && keep[(g * 16) / block - kb0] && (!two || keep[((g + 1) * 16) / block - kb0])) continue;
    const int8_t* b0 = b.right.data() + g * b.dq_pad * 64;
    const int8_t* b1 = two ? b0 + b.dq_pad * 64 : b0;
    const __m512 bs0 = _mm512_loadu_ps(b.lane_scale.data() + g * 16);
    const __m512 bs1 = _mm512_loadu_ps(b.lane_scale.data() + (two ? g + 1 : g) * 16);
    for (int64_t i0 = 0; i0 < nq; i0 += 32) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const int8_t* ap = a.amx_left.data() + (q0 + i0) * lda;
      for (int ks = 0; ks < ksteps; ++ks) {
        _tile_loadd(4, ap + ks * 64, lda);
        _tile_loadd(5, ap + 16 * lda + ks * 64, lda);
        _tile_loadd(6, b0 + ks * 16 * 64, 64);
        _tile_loadd(7, b1 + ks * 16 * 64, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
      }
      _tile_stored(0, cbuf[0], 64);
      _tile_stored(1, cbuf[1], 64);
      _tile_stored(2, cbuf[2], 64);
      _tile_stored(3, cbuf[3], 64);
      for (int c = 0; c < 4; ++c) {
        const int rb = c / 2, t = c % 2;
        if (t == 1 && !two) continue;
        const int64_t gg = g + t;
        const __m512 bs = t ? bs1 : bs0;
        uint16_t lanes = 0xFFFF;
        if (gg == g0) lanes &= first_mask;
        if (gg == g1 - 1) lanes &= last_mask;
        // One key scale for the whole group (the usual case: quantisation blocks of 16k keys):
        // compare the integer dots with thr / (s_q·s_k), rounded up — no conversion per lane.
        const float sk = b.lane_scale[size_t(gg * 16)];
        const bool one_scale = b.block % 16 == 0 && sk > 0.0f;
        uint32_t hits_any = 0;
        for (int r = 0; r < 16; ++r) {
          const int64_t row = i0 + rb * 16 + r;
          if (row >= nq) break;
          const __m512i dots = _mm512_load_si512(cbuf[c] + r * 16);
          uint16_t hits;
          const float sq = a.scale_of(q0 + row);
          if (one_scale && sq > 0.0f) {
            const float lim = std::ceil(thr[row] / (sq * sk));
            // |dot| <= 49·d < 2^24: limits outside the int32 range decide every lane at once.
            hits = lim > 2.0e9f ? uint16_t(0) : lim < -2.0e9f ? lanes
                 : uint16_t(_mm512_cmpge_epi32_mask(dots, _mm512_set1_epi32(int32_t(lim))) & lanes);
          } else {
            const __m512 est = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dots), bs), _mm512_set1_ps(sq));
            hits = uint16_t(_mm512_cmp_ps_mask(est, _mm512_set1_ps(thr[row]), _CMP_GE_OQ) & lanes);
          }
          if (!hits) continue;
          if (whole) {
            hits_any = 1;
            break;
          }
          for (int l = 0; l < 16; ++l)
            if (hits & (1u << l)) keep[(gg * 16 + l) / block - kb0] = 1;
        }
        if (hits_any) keep[(gg * 16) / block - kb0] = 1;
      }
    }
  }
  _tile_release();
}
#endif
}  // namespace

bool int4_uses_amx() {
#if defined(__x86_64__)
  static const bool ok = amx::int8_usable();
  return ok;
#else
  return false;
#endif
}

void int4_blocks_reaching(const Int4Rows& a, int64_t q0, int64_t nq, const Int4Rows& b,
                          int64_t kb0, int64_t kb1, int64_t block, const float* thr, uint8_t* keep) {
  if (a.d != b.d) throw std::invalid_argument("int4_blocks_reaching: a and b differ in d");
  if (block <= 0) throw std::invalid_argument("int4_blocks_reaching: block must be >= 1");
  if (kb1 <= kb0) return;
  std::fill(keep, keep + (kb1 - kb0), uint8_t(0));
  const int64_t k0 = kb0 * block, k1 = std::min(b.rows, kb1 * block);
  if (nq <= 0 || k1 <= k0) return;
#if defined(__x86_64__)
  if (int4_uses_amx()) {
    blocks_reaching_amx(a, q0, nq, b, kb0, block, thr, keep, k0, k1);
    return;
  }
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
  const int dq = a.dq;
  const int64_t g0 = k0 / 16, g1 = (k1 + 15) / 16;
  const bool whole = block % 16 == 0;  // every 16-key group inside one block
  // Lanes outside [k0, k1) exist only in the first and the last group.
  const __mmask16 first_mask = __mmask16(lane_mask(g0, k0, k1 - k0)), last_mask = __mmask16(lane_mask(g1 - 1, k0, k1 - k0));
  auto mark = [&](int64_t g, __mmask16 hits) {
    if (!hits) return;
    if (g == g0) hits &= first_mask;
    if (g == g1 - 1) hits &= last_mask;
    if (!hits) return;
    if (whole) {
      keep[(g * 16) / block - kb0] = 1;
      return;
    }
    for (int l = 0; l < 16; ++l)
      if (hits & (1u << l)) keep[(g * 16 + l) / block - kb0] = 1;
  };
  constexpr int kG = 4, kR = 4;
  for (int64_t g = g0; g < g1; g += kG) {
    const int ng = int(std::min<int64_t>(kG, g1 - g));
    // Skip a run of groups whose blocks are all kept already (whole-block groups only).
    if (whole) {
      bool all = true;
      for (int t = 0; t < ng && all; ++t) all = keep[((g + t) * 16) / block - kb0] != 0;
      if (all) continue;
    }
    const int8_t* bp = b.right.data() + g * b.dq_pad * 64;
    __m512 bscale[kG];
    __m512i bcorr[kG];
    for (int t = 0; t < kG; ++t) {
      const int64_t gg = g + std::min(t, ng - 1);
      bscale[t] = _mm512_loadu_ps(b.lane_scale.data() + gg * 16);
      bcorr[t] = _mm512_loadu_si512(b.corr.data() + gg * 16);
    }
    for (int64_t i0 = 0; i0 < nq; i0 += kR) {
      const int ni = int(std::min<int64_t>(kR, nq - i0));
      __m512i acc[kR][kG];
      for (int r = 0; r < kR; ++r)
        for (int t = 0; t < kG; ++t) acc[r][t] = _mm512_setzero_si512();
      const uint8_t* ap = a.left.data() + (q0 + i0) * dq * 4;
      for (int c = 0; c < dq; ++c) {
        __m512i bv[kG];
        for (int t = 0; t < kG; ++t) bv[t] = _mm512_loadu_si512(bp + (int64_t(std::min(t, ng - 1)) * b.dq_pad + c) * 64);
        for (int r = 0; r < ni; ++r) {
          int32_t a4;
          std::memcpy(&a4, ap + r * dq * 4 + c * 4, 4);
          const __m512i av = _mm512_set1_epi32(a4);
          for (int t = 0; t < kG; ++t) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], av, bv[t]);
        }
      }
      for (int r = 0; r < ni; ++r) {
        const __m512 sa = _mm512_set1_ps(a.scale_of(q0 + i0 + r));
        const __m512 th = _mm512_set1_ps(thr[i0 + r]);
        for (int t = 0; t < ng; ++t) {
          const __m512 est = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][t], bcorr[t])), bscale[t]), sa);
          mark(g + t, _mm512_cmp_ps_mask(est, th, _CMP_GE_OQ));
        }
      }
    }
  }
#else
  for (int64_t j = k0; j < k1; ++j) {
    uint8_t& kp = keep[j / block - kb0];
    if (kp) continue;
    for (int64_t i = 0; i < nq && !kp; ++i)
      kp = a.scale_of(q0 + i) * b.scale_of(j) * float(scalar_dot(a, q0 + i, b, j)) >= thr[i];
  }
#endif
}

void window_contrast(const float* kf, int64_t n, int d, int64_t w, float* score) {
  // Window sums by prefix sums: mean(k[a..b)) ∝ P[b] − P[a].
  std::vector<double> P(static_cast<size_t>((n + 1) * d), 0.0);
  for (int64_t j = 0; j < n; ++j)
    for (int c = 0; c < d; ++c) P[size_t((j + 1) * d + c)] = P[size_t(j * d + c)] + kf[j * d + c];
  std::fill(score, score + n, -std::numeric_limits<float>::infinity());
  for (int64_t t = w - 1; t < n - w; ++t) {  // the reference's valid range: both windows inside
    double dot = 0, na = 0, nb = 0;
    for (int c = 0; c < d; ++c) {
      const double a = P[size_t((t + 1) * d + c)] - P[size_t((t + 1 - w) * d + c)];
      const double b = P[size_t((t + 1 + w) * d + c)] - P[size_t((t + 1) * d + c)];
      dot += a * b;
      na += a * a;
      nb += b * b;
    }
    score[size_t(t)] = float(1.0 - dot / std::max(1e-30, std::sqrt(na * nb)));
  }
}

std::vector<int32_t> cosine_boundaries(const float* kf, int64_t n, int d, int64_t n_chunks, int64_t w,
                                       int64_t nms, int64_t force) {
  std::vector<float> score(static_cast<size_t>(n));
  window_contrast(kf, n, d, w, score.data());
  // Greedy NMS in score order (ties: lower position), as _select_boundary_candidates.
  std::vector<int32_t> order;
  top_k(score.data(), n, n, order);
  std::vector<int64_t> selected;
  std::vector<char> blocked(static_cast<size_t>(n), 0);
  auto accept = [&](int64_t t) {
    selected.push_back(t);
    for (int64_t u = std::max<int64_t>(0, t - nms); u <= std::min(n - 1, t + nms); ++u) blocked[size_t(u)] = 1;
  };
  if (force > 0) accept(force - 1);  // the boundary after token force − 1
  for (int32_t t : order) {
    if (int64_t(selected.size()) >= n_chunks) break;  // the forced boundary counts, as in the code
    if (score[size_t(t)] == -std::numeric_limits<float>::infinity()) break;
    if (force > 0 && t > force - 1) continue;
    if (nms > 0 ? blocked[size_t(t)] : std::find(selected.begin(), selected.end(), t) != selected.end()) continue;
    accept(t);
  }
  std::vector<int32_t> b = {0};
  for (int64_t t : selected) b.push_back(int32_t(t + 1));
  b.push_back(int32_t(n));
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

std::vector<int32_t> gray_code_sequence(int bits) {
  if (bits < 1 || bits > 30) throw std::invalid_argument("gray_code_sequence: bits must be in [1, 30]");
  std::vector<int32_t> a = {0, 1};
  for (int n = 2; n <= bits; ++n) {
    const size_t half = a.size();
    a.resize(2 * half);
    for (size_t i = 0; i < half; ++i) a[half + i] = a[half - 1 - i] + (int32_t(1) << (n - 1));
  }
  return a;
}

AngularLsh make_angular_lsh(int d, int bits, uint64_t seed) {
  AngularLsh l;
  l.d = d;
  l.bits = bits;
  l.gray = gray_code_sequence(bits);
  l.proj.resize(size_t(d) * size_t(bits));
  SeededRandom rng(seed);
  for (float& p : l.proj) p = float(rng.normal());
  return l;
}

void lsh_hash(const AngularLsh& lsh, const float* x, int64_t n, int32_t* out) {
  if (n <= 0) return;
  RowMat proj(n, lsh.bits);
  proj.noalias() = CMapRM(x, n, lsh.d) * CMapRM(lsh.proj.data(), lsh.d, lsh.bits);
  for (int64_t i = 0; i < n; ++i) {
    int32_t bin = 0;
    for (int r = 0; r < lsh.bits; ++r)
      if (proj(i, r) > 0.0f) bin |= int32_t(1) << r;
    out[i] = lsh.gray[size_t(bin)];
  }
}

std::vector<int32_t> stable_order(const int32_t* keys, int64_t n) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return keys[a] < keys[b]; });
  return order;
}

}  // namespace ab::cpu
