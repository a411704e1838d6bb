// sdpa_flash's AMX path: S = scale·Q·Kᵀ and acc += P·V as TDPBF16PS on tiles (Intel AMX-BF16,
// Sapphire Rapids and later), the softmax in fp32 as on every path. Each step multiplies two
// 16-row A tiles (32 query rows × 16 pairs) by two B tiles (16 pairs × 32 keys, or × 32 output
// columns) into four 16×16 fp32 accumulators: tmm0–3 C, tmm4–5 A, tmm6–7 B, all 16 × 64 bytes.
// Tiles are stored straight into the score tile and loaded from and stored to the accumulator:
// the buffers have rows padded to 32 and S columns to 32, and the softmax (softmax_tile, in
// sdpa_flash_simd.cpp) applies the scale and ignores the padded columns.

// GCC 12 warns -Wmaybe-uninitialized inside its own AVX-512 intrinsic headers (a false
// positive on _mm512_undefined_*, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <algorithm>
#include <cstdint>

#include "cpu/amx.hpp"
#include "cpu/sdpa_flash_simd.hpp"

namespace ab::cpu::simd {

bool amx_bf16_available() {
  static const bool ok = bf16_dot_available() && amx::bf16_usable();
  return ok;
}

}  // namespace ab::cpu::simd

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")
#include <immintrin.h>

namespace ab::cpu::simd {
namespace {

inline __mmask16 lanes_below(int64_t n) {  // the first min(max(n, 0), 16) lanes
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// C += A·B over `steps` reduction steps of 16 pairs for one 32 × 32 block: A rows a (stride lda
// words), B tiles b0, b1 (64-byte rows, a step 256 words apart). With `two` false only b0's
// columns are computed (tmm1 and tmm3 are left as they are).
inline void block_32x32(const uint32_t* a, int64_t lda, const uint32_t* b0, const uint32_t* b1, int64_t steps,
                        bool two) {
  const int64_t stride = lda * 4;
  for (int64_t ks = 0; ks < steps; ++ks) {
    _tile_loadd(4, a + ks * 16, stride);
    _tile_loadd(5, a + 16 * lda + ks * 16, stride);
    _tile_loadd(6, b0 + ks * 256, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(2, 5, 6);
    if (two) {
      _tile_loadd(7, b1 + ks * 256, 64);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
}

// One 32 × 32 block of S: rows i0.. of the packed Q (qp, dpa pairs per row) against keys j0..
// of the K blocks kp, stored unscaled at s (row stride ld floats).
inline void qk_block(const uint32_t* qp, int64_t dpa, const uint32_t* kp, int64_t i0, int64_t j0, float* s,
                     int64_t ld) {
  const uint32_t* b0 = kp + (j0 / 16) * dpa * 16;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  block_32x32(qp + i0 * dpa, dpa, b0, b0 + dpa * 16, dpa / 16, true);
  float* c = s + i0 * ld + j0;
  const int64_t stride = ld * 4;
  _tile_stored(0, c, stride);
  _tile_stored(1, c + 16, stride);
  _tile_stored(2, c + 16 * ld, stride);
  _tile_stored(3, c + 16 * ld + 16, stride);
}

// acc[i0.., cb·16 .. cb·16 + 32) += P V for rows i0.. of P (pp, pc pairs per row, pc/16 steps)
// and the V column blocks cb, cb + 1 (npa key pairs each). With whole 16-column blocks the
// accumulators are loaded from acc and stored back; otherwise they start at zero and are added
// through a buffer, masked to dv and to the rows below `rows`.
inline void pv_block(const uint32_t* pp, int64_t pc, const uint32_t* vp, int64_t npa, int64_t i0, int64_t cb,
                     float* acc, int dv, int64_t rows) {
  const int64_t nvb = blocks16(dv);
  const bool two = cb + 1 < nvb, direct = dv % 16 == 0;
  const uint32_t* b0 = vp + cb * npa * 16;
  const int64_t stride = int64_t(dv) * 4;
  float* c = acc + i0 * dv + cb * 16;
  if (direct) {
    _tile_loadd(0, c, stride);
    _tile_loadd(2, c + 16 * dv, stride);
    if (two) {
      _tile_loadd(1, c + 16, stride);
      _tile_loadd(3, c + 16 * dv + 16, stride);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  block_32x32(pp + i0 * pc, pc, b0, b0 + npa * 16, pc / 16, two);
  if (direct) {
    _tile_stored(0, c, stride);
    _tile_stored(2, c + 16 * dv, stride);
    if (two) {
      _tile_stored(1, c + 16, stride);
      _tile_stored(3, c + 16 * dv + 16, stride);
    }
    return;
  }
  alignas(64) float cbuf[4][256];
  _tile_stored(0, cbuf[0], 64);
  _tile_stored(1, cbuf[1], 64);
  _tile_stored(2, cbuf[2], 64);
  _tile_stored(3, cbuf[3], 64);
  const __mmask16 m0 = lanes_below(dv - cb * 16), m1 = lanes_below(dv - cb * 16 - 16);
  const int64_t nr = std::min<int64_t>(32, rows - i0);
  for (int64_t r = 0; r < nr; ++r) {
    const float* cr = cbuf[(r / 16) * 2] + (r % 16) * 16;  // and cr + 256: the second 16 columns
    float* out = c + r * dv;
    _mm512_mask_storeu_ps(out, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, out), _mm512_load_ps(cr)));
    if (two)
      _mm512_mask_storeu_ps(out + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, out + 16), _mm512_load_ps(cr + 256)));
  }
}

}  // namespace

void qk_tile_amx(const uint32_t* qp, int64_t rows, int64_t dpa, const uint32_t* kp, int64_t nc, float* s) {
  const int64_t ncp = pad32(nc), rp = pad32(rows);
  const amx::TileConfig cfg;
  _tile_loadconfig(&cfg);
  // Rows outermost: a block's A tiles (32 rows · dpa pairs, 8 KiB at d = 128) stay in L1 while
  // the keys pass; tile loads from L2 run at a fraction of the rate from L1. Measured on the
  // Xeon (1 core, a 256 × 256 tile, d = 128): 1087 GFLOP/s against 879 with keys outermost.
  for (int64_t i0 = 0; i0 < rp; i0 += 32)
    for (int64_t j0 = 0; j0 < ncp; j0 += 32) qk_block(qp, dpa, kp, i0, j0, s, ncp);
  _tile_release();
}

void pv_tile_amx(const uint32_t* pp, int64_t rows, int64_t ncp, const uint32_t* vp, int64_t npa, int dv,
                 float* acc) {
  const amx::TileConfig cfg;
  _tile_loadconfig(&cfg);
  // Rows outermost, as in qk_tile_amx: a block's P (32 rows · ncp/2 pairs, 16 KiB for 256
  // keys) stays in L1 while the column blocks pass (Xeon, 1 core: 710 GFLOP/s against 510
  // with columns outermost).
  for (int64_t i0 = 0; i0 < pad32(rows); i0 += 32)
    for (int64_t cb = 0; cb < blocks16(dv); cb += 2) pv_block(pp, ncp / 2, vp, npa, i0, cb, acc, dv, rows);
  _tile_release();
}

}  // namespace ab::cpu::simd

#pragma GCC pop_options

#else  // no AMX on this target: nothing is available, nothing is called

namespace ab::cpu::simd {
void qk_tile_amx(const uint32_t*, int64_t, int64_t, const uint32_t*, int64_t, float*) {}
void pv_tile_amx(const uint32_t*, int64_t, int64_t, const uint32_t*, int64_t, int, float*) {}
}  // namespace ab::cpu::simd

#endif
