// Tile products for sdpa_flash's AVX-512 paths: fp32 FMAs, or AVX512_BF16 dot products
// (VDPBF16PS) with fp32 accumulation. One register block for both: R query rows × C vectors of
// 16 output columns in R·C zmm accumulators (6 × 4 = 24, plus 4 B vectors and one broadcast,
// within the 32 registers); per step of the reduction one broadcast of A per row (a float, or a
// bf16 pair) and one load of B per column vector. On the Zen 4 dev VM (1 thread, per
// CPU-second, a 252×256 score tile and d = 128) the f32 block ran QKᵀ plus PV at 92-103 GFLOP/s
// where Eigen's GEMMs ran 64-66: Eigen packs both operands on every call, these read K and V
// packed once per call.

// GCC 12 warns -Wmaybe-uninitialized and -Wuninitialized inside its own AVX-512 intrinsic
// headers (a false positive on _mm512_undefined_*, here from _mm512_reduce_max_ps; GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "cpu/sdpa_flash_simd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace ab::cpu::simd {

// libgcc's cpu model checks XCR0 for the AVX-512 register state before reporting the bits.
bool avx512_available() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
  }();
  return ok;
#else
  return false;
#endif
}

bool bf16_dot_available() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = avx512_available() && __builtin_cpu_supports("avx512bf16");
  return ok;
#else
  return false;
#endif
}

}  // namespace ab::cpu::simd

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// Everything below is compiled for AVX-512 with AVX512_BF16 whatever -march says. The f32
// functions run where only avx512_available() holds: they use no bf16 intrinsic, and GCC emits
// bf16 instructions only for them.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")
#include <immintrin.h>

namespace ab::cpu::simd {
namespace {

constexpr int kRows = 6;  // R of the register block
constexpr int kCols = 4;  // C (vectors of 16 columns)

inline __mmask16 tail_mask(int64_t n) {  // lanes of the last 16-column vector of n columns
  const int64_t r = n % 16;
  return r ? __mmask16((1u << r) - 1) : __mmask16(0xFFFF);
}

// x[0..15] with lanes at or past n zero.
inline __m512 load16(const float* x, int64_t n) {
  if (n >= 16) return _mm512_loadu_ps(x);
  if (n <= 0) return _mm512_setzero_ps();
  return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), x);
}

// 32 fp32 (x[0..31], zero from n on) → 16 bf16 pairs in order: (x0,x1), (x2,x3), ...
// (cvtne2ps_pbh(a, b) puts b's 16 values in the low words, a's in the high ones).
inline __m512i pairs_of(const float* x, int64_t n) {
  return __m512i(_mm512_cvtne2ps_pbh(load16(x + 16, n - 16), load16(x, n)));
}

// The two products: what one step of the reduction broadcasts from A and multiplies into C.
struct F32Op {
  using Elem = float;
  using Vec = __m512;
  static Vec load(const float* b) { return _mm512_loadu_ps(b); }
  static Vec bcast(float a) { return _mm512_set1_ps(a); }
  static __m512 madd(__m512 acc, Vec a, Vec b) { return _mm512_fmadd_ps(a, b, acc); }
};
struct Bf16Op {
  using Elem = uint32_t;  // a pair of bf16
  using Vec = __m512bh;
  static Vec load(const uint32_t* b) { return Vec(_mm512_loadu_si512(b)); }
  static Vec bcast(uint32_t a) { return Vec(_mm512_set1_epi32(int(a))); }
  static __m512 madd(__m512 acc, Vec a, Vec b) { return _mm512_dpbf16_ps(acc, a, b); }
};

// C[R × 16C] (=|+=) alpha · A[R × n] · B[n × 16C] over n reduction steps (floats or bf16
// pairs); B's column vectors are cb_stride elements apart, its steps 16. The last column vector
// is stored under `last`.
template <class Op, int R, int C, bool kAccumulate>
void micro(const typename Op::Elem* a, int64_t lda, const typename Op::Elem* b, int64_t cb_stride,
           int64_t n, float* c, int64_t ldc, float alpha, __mmask16 last) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j)
      acc[r][j] = kAccumulate ? _mm512_maskz_loadu_ps(j == C - 1 ? last : __mmask16(0xFFFF),
                                                      c + r * ldc + j * 16)
                              : _mm512_setzero_ps();
  for (int64_t p = 0; p < n; ++p) {
    typename Op::Vec bv[C];
    for (int j = 0; j < C; ++j) bv[j] = Op::load(b + j * cb_stride + p * 16);
    for (int r = 0; r < R; ++r) {
      const typename Op::Vec av = Op::bcast(a[r * lda + p]);
      for (int j = 0; j < C; ++j) acc[r][j] = Op::madd(acc[r][j], av, bv[j]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) {
      const __m512 v = kAccumulate || alpha == 1.0f ? acc[r][j] : _mm512_mul_ps(acc[r][j], al);
      _mm512_mask_storeu_ps(c + r * ldc + j * 16, j == C - 1 ? last : __mmask16(0xFFFF), v);
    }
}

template <class Op, int C, bool kAccumulate>
void rows_of(int64_t rows, const typename Op::Elem* a, int64_t lda, const typename Op::Elem* b,
             int64_t cb_stride, int64_t n, float* c, int64_t ldc, float alpha, __mmask16 last) {
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows)
    micro<Op, kRows, C, kAccumulate>(a + r * lda, lda, b, cb_stride, n, c + r * ldc, ldc, alpha, last);
  const typename Op::Elem* ar = a + r * lda;
  float* cr = c + r * ldc;
  switch (rows - r) {
    case 5: micro<Op, 5, C, kAccumulate>(ar, lda, b, cb_stride, n, cr, ldc, alpha, last); break;
    case 4: micro<Op, 4, C, kAccumulate>(ar, lda, b, cb_stride, n, cr, ldc, alpha, last); break;
    case 3: micro<Op, 3, C, kAccumulate>(ar, lda, b, cb_stride, n, cr, ldc, alpha, last); break;
    case 2: micro<Op, 2, C, kAccumulate>(ar, lda, b, cb_stride, n, cr, ldc, alpha, last); break;
    case 1: micro<Op, 1, C, kAccumulate>(ar, lda, b, cb_stride, n, cr, ldc, alpha, last); break;
    default: break;
  }
}

// C[rows × ncols] (=|+=) alpha · A · B, B in 16-column vectors cb_stride apart. Column groups
// of kCols vectors outermost: one group's B panel (n·64 elements, 16-32 KiB here) stays in L1
// while every row block passes over it.
template <class Op, bool kAccumulate>
void gemm(int64_t rows, int64_t ncols, const typename Op::Elem* a, int64_t lda,
          const typename Op::Elem* b, int64_t cb_stride, int64_t n, float* c, int64_t ldc, float alpha) {
  const int64_t nvec = blocks16(ncols);
  for (int64_t j = 0; j < nvec; j += kCols) {
    const int cn = int(std::min<int64_t>(kCols, nvec - j));
    const __mmask16 last = j + cn == nvec ? tail_mask(ncols) : __mmask16(0xFFFF);
    const typename Op::Elem* bj = b + j * cb_stride;
    float* cj = c + j * 16;
    switch (cn) {
      case 4: rows_of<Op, 4, kAccumulate>(rows, a, lda, bj, cb_stride, n, cj, ldc, alpha, last); break;
      case 3: rows_of<Op, 3, kAccumulate>(rows, a, lda, bj, cb_stride, n, cj, ldc, alpha, last); break;
      case 2: rows_of<Op, 2, kAccumulate>(rows, a, lda, bj, cb_stride, n, cj, ldc, alpha, last); break;
      default: rows_of<Op, 1, kAccumulate>(rows, a, lda, bj, cb_stride, n, cj, ldc, alpha, last); break;
    }
  }
}

}  // namespace

void pack_rows_bf16(const float* x, int64_t ld, int64_t rows, int64_t n, uint32_t* dst, int64_t ldp) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ld;
    uint32_t* dr = dst + r * ldp;
    for (int64_t p = 0; p < ldp; p += 16) {  // pairs_of is zero past n
      const __m512i v = pairs_of(xr + 2 * p, n - 2 * p);
      _mm512_mask_storeu_epi32(dr + p, tail_mask(std::min<int64_t>(16, ldp - p)), v);
    }
  }
}

void pack_k_bf16(const float* k, int64_t nkv, int d, uint32_t* dst, int64_t dp) {
  // One block of 16 keys: its rows as pairs (key-major) in `t`, then transposed to pair-major.
  alignas(64) uint32_t t[16 * 64];
  for (int64_t jb = 0; jb < blocks16(nkv); ++jb) {
    uint32_t* out = dst + jb * dp * 16;
    for (int64_t p0 = 0; p0 < dp; p0 += 64) {  // 64 pairs (d ≤ 128) per pass through t
      const int64_t pn = std::min<int64_t>(64, dp - p0);
      for (int lane = 0; lane < 16; ++lane) {
        const int64_t j = jb * 16 + lane;
        uint32_t* tr = t + lane * 64;
        if (j >= nkv) {
          std::memset(tr, 0, sizeof(uint32_t) * 64);
          continue;
        }
        const float* kr = k + j * d + 2 * p0;
        const int64_t n = d - 2 * p0;
        for (int64_t p = 0; p < pn; p += 16) _mm512_storeu_si512(tr + p, pairs_of(kr + 2 * p, n - 2 * p));
      }
      for (int64_t p = 0; p < pn; ++p) {
        const __m512i idx = _mm512_set_epi32(15 * 64, 14 * 64, 13 * 64, 12 * 64, 11 * 64, 10 * 64, 9 * 64,
                                             8 * 64, 7 * 64, 6 * 64, 5 * 64, 4 * 64, 3 * 64, 2 * 64, 64, 0);
        _mm512_storeu_si512(out + (p0 + p) * 16, _mm512_i32gather_epi32(idx, t + p, 4));
      }
    }
  }
}

void pack_v_bf16(const float* v, int64_t nkv, int dv, int64_t p0, int64_t p1, uint32_t* dst, int64_t np) {
  // Word 2i of the result takes word i (row 2p's value of column i), word 2i + 1 takes word
  // 16 + i (row 2p + 1's): cvtne2ps_pbh(odd, even) puts even's values in words 0..15.
  alignas(64) static constexpr uint16_t kInterleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                           8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kInterleave);
  for (int64_t cb = 0; cb < blocks16(dv); ++cb) {
    const int64_t c0 = cb * 16;
    const __mmask16 m = c0 + 16 <= dv ? __mmask16(0xFFFF) : tail_mask(dv);
    uint32_t* out = dst + cb * np * 16;
    for (int64_t p = p0; p < p1; ++p) {
      const __m512 even = 2 * p < nkv ? _mm512_maskz_loadu_ps(m, v + 2 * p * dv + c0) : _mm512_setzero_ps();
      const __m512 odd = 2 * p + 1 < nkv ? _mm512_maskz_loadu_ps(m, v + (2 * p + 1) * dv + c0)
                                         : _mm512_setzero_ps();
      const __m512i both = __m512i(_mm512_cvtne2ps_pbh(odd, even));
      _mm512_storeu_si512(out + p * 16, _mm512_permutexvar_epi16(idx, both));
    }
  }
}

namespace {

// 2^y for y ≤ 0: 2^n · 2^f with n = round(y), f ∈ [-1/2, 1/2], 2^f from its Taylor series,
// scaled by VSCALEFPS. Degree 7 truncates at ≤ (ln2/2)^8/8! = 5e-9, below fp32's half ulp
// (6e-8); degree 5, for P that is then rounded to bf16 (relative error up to 2^-9), at
// (ln2/2)^6/6! = 2.4e-6, and saves 2 of the ~15 vector operations per 16 elements.
// Lanes with y < -125 (masked scores are -inf) are set to 0 rather than computed: a result
// that underflows to a subnormal or to zero costs a microcode assist of ~100 cycles per
// instruction (measured: causal tiles, full of -inf, spent 47% of the AMX path's time here).
template <int kDegree>
inline __m512 exp2_nonpositive(__m512 y) {
  static_assert(kDegree == 5 || kDegree == 7);
  const __m512 lo = _mm512_set1_ps(-125.0f);
  const __mmask16 live = _mm512_cmp_ps_mask(y, lo, _CMP_GE_OQ);
  y = _mm512_max_ps(y, lo);
  const __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(y, n);
  __m512 p;
  if constexpr (kDegree == 7) {
    p = _mm512_set1_ps(1.525273380405984e-05f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381606e-04f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
  } else {
    p = _mm512_set1_ps(1.3333558146428443e-03f);
  }
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866482158e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265069591007e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471805599453e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(live, p, n);
}

// One row's P = 2^(sl2·s + off) as bf16 pairs into pr (ldp words; columns past nc zero);
// returns Σ P in fp32 and, with kTrack, the row's raw maximum in *raw_max.
template <int kDegree, bool kTrack>
float row_to_bf16(const float* sr, int64_t nc, __m512 sl2, __m512 off, uint32_t* pr, int64_t ldp, float* raw_max) {
  const __m512 vninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const int64_t nfull = nc / 16;
  const __mmask16 last = tail_mask(nc);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps(), mx0 = vninf, mx1 = vninf;
  auto value = [&](int64_t u) {  // -inf past nc: exp2 gives 0 there
    if (u < nfull) return _mm512_loadu_ps(sr + u * 16);
    if (u == nfull && nc % 16) return _mm512_mask_loadu_ps(vninf, last, sr + u * 16);
    return vninf;
  };
  auto step = [&](__m512 x0, __m512 x1) {
    if constexpr (kTrack) {
      mx0 = _mm512_max_ps(mx0, x0);
      mx1 = _mm512_max_ps(mx1, x1);
    }
    const __m512 p0 = exp2_nonpositive<kDegree>(_mm512_fmadd_ps(x0, sl2, off));
    const __m512 p1 = exp2_nonpositive<kDegree>(_mm512_fmadd_ps(x1, sl2, off));
    sum0 = _mm512_add_ps(sum0, p0);
    sum1 = _mm512_add_ps(sum1, p1);
    return __m512i(_mm512_cvtne2ps_pbh(p1, p0));
  };
  int64_t w = 0;  // 16 pairs = columns 2w .. 2w + 31 per step
  for (; w + 16 <= ldp && w / 8 + 2 <= nfull; w += 16)
    _mm512_storeu_si512(pr + w, step(_mm512_loadu_ps(sr + w * 2), _mm512_loadu_ps(sr + w * 2 + 16)));
  for (; w < ldp; w += 16)
    _mm512_mask_storeu_epi32(pr + w, tail_mask(std::min<int64_t>(16, ldp - w)), step(value(w / 8), value(w / 8 + 1)));
  if constexpr (kTrack) *raw_max = _mm512_reduce_max_ps(_mm512_max_ps(mx0, mx1));
  return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

// One row's P = 2^(sl2·s + off) in fp32 over s[0, nc); returns Σ P.
template <int kDegree>
float row_to_f32(float* sr, int64_t nc, __m512 sl2, __m512 off) {
  const int64_t nfull = nc / 16;
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  auto p_of = [&](__m512 x, __m512& sum) {
    const __m512 p = exp2_nonpositive<kDegree>(_mm512_fmadd_ps(x, sl2, off));
    sum = _mm512_add_ps(sum, p);
    return p;
  };
  int64_t v = 0;
  for (; v + 2 <= nfull; v += 2) {
    _mm512_storeu_ps(sr + v * 16, p_of(_mm512_loadu_ps(sr + v * 16), sum0));
    _mm512_storeu_ps(sr + v * 16 + 16, p_of(_mm512_loadu_ps(sr + v * 16 + 16), sum1));
  }
  for (; v < nfull; ++v) _mm512_storeu_ps(sr + v * 16, p_of(_mm512_loadu_ps(sr + v * 16), sum0));
  if (nc % 16) {  // -inf past nc: exp2 gives 0 there
    const __mmask16 last = tail_mask(nc);
    const __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), last, sr + v * 16);
    _mm512_mask_storeu_ps(sr + v * 16, last, p_of(x, sum1));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

// The largest of s[0, nc); four accumulators so that the max latency chains overlap.
inline float row_max(const float* sr, int64_t nc) {
  const __m512 vninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const int64_t nfull = nc / 16;
  __m512 m0 = vninf, m1 = vninf, m2 = vninf, m3 = vninf;
  int64_t v = 0;
  for (; v + 4 <= nfull; v += 4) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(sr + v * 16));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(sr + v * 16 + 16));
    m2 = _mm512_max_ps(m2, _mm512_loadu_ps(sr + v * 16 + 32));
    m3 = _mm512_max_ps(m3, _mm512_loadu_ps(sr + v * 16 + 48));
  }
  for (; v < nfull; ++v) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(sr + v * 16));
  if (nc % 16) m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(vninf, tail_mask(nc), sr + nfull * 16));
  return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

template <int kDegree>
void softmax_rows(float* s, int64_t rows, int64_t nc, int64_t ld, float scale, float* m, float* l, float* acc,
                  int dv, uint32_t* pbf, int64_t ldp) {
  constexpr float kLog2e = 1.4426950408889634f;
  const float ninf = -std::numeric_limits<float>::infinity();
  const __m512 sl2 = _mm512_set1_ps(scale * kLog2e);
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * ld;
    // bf16 P, after the row's first tile: one pass against the running maximum m that also
    // finds the tile's maximum, kept if the maximum did not grow (then m, ℓ's scale and acc
    // stay, and the separate max pass is saved); a row whose maximum grew is redone below with
    // the maximum found. Letting P exceed 1 instead (FlashAttention-4 rescales only when the
    // maximum grows by more than log2 256) is not done: the largest P, 1 exactly in bf16 when
    // scaled by the true maximum, is then rounded, and the O error on the odd-shape tests
    // (tests/test_cpu_sdpa_bf16.cpp) grew to 2-4x that of the naive bf16 reference.
    float raw_max = -std::numeric_limits<float>::infinity();
    bool have_max = false;
    if (pbf && m[r] != ninf) {
      const float sum = row_to_bf16<kDegree, true>(sr, nc, sl2, _mm512_set1_ps(-m[r] * kLog2e), pbf + r * ldp,
                                                   ldp, &raw_max);
      if (scale * raw_max <= m[r]) {
        l[r] += sum;
        continue;
      }
      have_max = true;
    }
    if (!have_max) raw_max = row_max(sr, nc);
    // scale > 0, so the scaled maximum is scale times the raw one.
    const float m_new = std::max(m[r], scale * raw_max);
    if (m_new == ninf) {  // nothing visible so far: P = 0, and m, ℓ and acc stay as they are
      if (pbf) std::fill_n(pbf + r * ldp, ldp, 0u);
      else std::fill_n(sr, nc, 0.0f);
      continue;
    }
    // exp(scale·s − m) = 2^(scale·log2e·s − log2e·m): one FMA per element before exp2.
    const __m512 off = _mm512_set1_ps(-m_new * kLog2e);
    const float row_sum = pbf ? row_to_bf16<kDegree, false>(sr, nc, sl2, off, pbf + r * ldp, ldp, nullptr)
                              : row_to_f32<kDegree>(sr, nc, sl2, off);
    const float alpha = m[r] == ninf ? 0.0f : std::exp(m[r] - m_new);
    l[r] = l[r] * alpha + row_sum;
    if (alpha != 1.0f) {
      float* ar = acc + r * dv;
      const __m512 a = _mm512_set1_ps(alpha);
      for (int64_t c = 0; c < dv; c += 16) {
        const __mmask16 k = c + 16 <= dv ? __mmask16(0xFFFF) : tail_mask(dv);
        _mm512_mask_storeu_ps(ar + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, ar + c), a));
      }
    }
    m[r] = m_new;
  }
}

}  // namespace

void softmax_tile(float* s, int64_t rows, int64_t nc, int64_t ld, float scale, float* m, float* l, float* acc,
                  int dv, uint32_t* pbf, int64_t ldp) {
  if (pbf) softmax_rows<5>(s, rows, nc, ld, scale, m, l, acc, dv, pbf, ldp);
  else softmax_rows<7>(s, rows, nc, ld, scale, m, l, acc, dv, pbf, ldp);
}

void qk_tile_bf16(const uint32_t* qp, int64_t rows, int dp, const uint32_t* kp, int64_t nc, float scale,
                  float* s) {
  gemm<Bf16Op, false>(rows, nc, qp, dp, kp, int64_t(dp) * 16, dp, s, nc, scale);
}

void pv_tile_bf16(const uint32_t* pp, int64_t rows, int64_t nc, const uint32_t* vp, int64_t np, int dv,
                  float* acc) {
  const int64_t pc = pairs(nc);
  gemm<Bf16Op, true>(rows, dv, pp, pc, vp, np * 16, pc, acc, dv, 1.0f);
}

void pack_k_f32(const float* k, int64_t nkv, int d, float* dst) {
  // Element c of 16 consecutive keys: a gather with stride d (masked in the last block).
  __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                   _mm512_set1_epi32(d));
  for (int64_t jb = 0; jb < blocks16(nkv); ++jb) {
    const float* kb = k + jb * 16 * d;
    float* out = dst + jb * d * 16;
    const __mmask16 m = jb * 16 + 16 <= nkv ? __mmask16(0xFFFF) : tail_mask(nkv);
    for (int c = 0; c < d; ++c)
      _mm512_storeu_ps(out + c * 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, kb + c, 4));
  }
}

void pack_v_f32(const float* v, int64_t nkv, int dv, int64_t j0, int64_t j1, float* dst) {
  for (int64_t cb = 0; cb < blocks16(dv); ++cb) {
    const int64_t c0 = cb * 16;
    const __mmask16 m = c0 + 16 <= dv ? __mmask16(0xFFFF) : tail_mask(dv);
    float* out = dst + cb * nkv * 16;
    for (int64_t j = j0; j < j1; ++j) _mm512_storeu_ps(out + j * 16, _mm512_maskz_loadu_ps(m, v + j * dv + c0));
  }
}

void qk_tile_f32(const float* q, int64_t rows, int d, const float* kp, int64_t nc, float* s) {
  gemm<F32Op, false>(rows, nc, q, d, kp, int64_t(d) * 16, d, s, nc, 1.0f);
}

void pv_tile_f32(const float* p, int64_t rows, int64_t nc, const float* vp, int64_t nkv, int dv,
                 float* acc) {
  gemm<F32Op, true>(rows, dv, p, nc, vp, nkv * 16, nc, acc, dv, 1.0f);
}

}  // namespace ab::cpu::simd

#pragma GCC pop_options

#else  // not x86 with GCC-compatible target pragmas: nothing is available, nothing is called

namespace ab::cpu::simd {
void pack_k_f32(const float*, int64_t, int, float*) {}
void pack_v_f32(const float*, int64_t, int, int64_t, int64_t, float*) {}
void qk_tile_f32(const float*, int64_t, int, const float*, int64_t, float*) {}
void pv_tile_f32(const float*, int64_t, int64_t, const float*, int64_t, int, float*) {}
void pack_rows_bf16(const float*, int64_t, int64_t, int64_t, uint32_t*, int64_t) {}
void pack_k_bf16(const float*, int64_t, int, uint32_t*, int64_t) {}
void pack_v_bf16(const float*, int64_t, int, int64_t, int64_t, uint32_t*, int64_t) {}
void qk_tile_bf16(const uint32_t*, int64_t, int, const uint32_t*, int64_t, float, float*) {}
void pv_tile_bf16(const uint32_t*, int64_t, int64_t, const uint32_t*, int64_t, int, float*) {}
void softmax_tile(float*, int64_t, int64_t, int64_t, float, float*, float*, float*, int, uint32_t*, int64_t) {}
}  // namespace ab::cpu::simd

#endif
