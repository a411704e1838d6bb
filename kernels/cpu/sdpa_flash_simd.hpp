#pragma once
// The tile products of sdpa_flash's AVX-512 paths, S = scale·Q·Kᵀ and acc += P·V, on K and V
// packed once per call into the layouts the register blocks read:
//   f32   AVX-512F FMAs, fp32 operands.
//   bf16  AVX512_BF16 (VDPBF16PS: each fp32 lane adds the dot product of one pair of bf16 values
//         from each source), bf16 operands, fp32 accumulation.
// Compiled for those ISAs with a target pragma whatever -march says, so the binary still runs
// where they are missing: call the f32 functions only when avx512_available(), the bf16 ones
// only when bf16_dot_available().
//
// f32 layouts:
//   K blocks of 16 keys: Kp[(jb·d + c)·16 + lane] = k[jb·16 + lane][c]   (blocks16(nkv)·16·d)
//   V blocks of 16 columns: Vp[(cb·nkv + j)·16 + lane] = v[j][cb·16 + lane] (blocks16(dv)·nkv·16)
// bf16 layouts, pairs of bf16 in uint32 words (low half the even element, high half the odd):
//   row pairs A[r·lda + p] = (x[r][2p], x[r][2p+1])                        Q rows, P rows
//   K blocks   Kp[(jb·dp + p)·16 + lane] = (k[2p], k[2p+1]) of key jb·16 + lane
//   V blocks   Vp[(cb·np + p)·16 + lane] = (v[2p][c], v[2p+1][c]), c = cb·16 + lane
// where dp = ⌈d/2⌉ and np = ⌈Nkv/2⌉; missing elements (odd lengths, the last block) are zero.
// fp32 values are rounded to bf16 to nearest-even, so bf16-exact inputs pack exactly.
#include <cstdint>

namespace ab::cpu::simd {

// AVX-512F (and BW), resp. also AVX512_BF16, present and their register state enabled by the OS.
bool avx512_available();
bool bf16_dot_available();

inline int64_t pairs(int64_t n) { return (n + 1) / 2; }
inline int64_t blocks16(int64_t n) { return (n + 15) / 16; }

// ---- f32 ----
// Keys [0, nkv) × d of one head, row-major → K blocks (the last one zero-padded).
void pack_k_f32(const float* k, int64_t nkv, int d, float* dst);
// Keys [j0, j1) of one head's V (nkv × dv, row-major) into its V blocks.
void pack_v_f32(const float* v, int64_t nkv, int dv, int64_t j0, int64_t j1, float* dst);
// s (rows × nc, row stride nc) = Q Kᵀ for the rows × d query tile q (row stride d, already
// scaled) and nc keys from the K block `kp` on (only nc columns are written).
void qk_tile_f32(const float* q, int64_t rows, int d, const float* kp, int64_t nc, float* s);
// acc (rows × dv, row stride dv) += P V for p (rows × nc, row stride nc) and the V blocks `vp`
// of a head with nkv keys, advanced to the tile's first key.
void pv_tile_f32(const float* p, int64_t rows, int64_t nc, const float* vp, int64_t nkv, int dv,
                 float* acc);

// ---- bf16 ----
// rows × n fp32 (row stride ld) → rows × pairs(n) row pairs (row stride ldp).
void pack_rows_bf16(const float* x, int64_t ld, int64_t rows, int64_t n, uint32_t* dst, int64_t ldp);
// Keys [0, nkv) × d of one head → K blocks.
void pack_k_bf16(const float* k, int64_t nkv, int d, uint32_t* dst);
// Key pairs [p0, p1) of one head's V (nkv × dv) into its V blocks.
void pack_v_bf16(const float* v, int64_t nkv, int dv, int64_t p0, int64_t p1, uint32_t* dst);
// s (rows × nc, row stride nc) = scale · Q Kᵀ for the packed query tile qp (rows × dp pairs)
// and nc keys from the K block `kp` on.
void qk_tile_bf16(const uint32_t* qp, int64_t rows, int dp, const uint32_t* kp, int64_t nc, float scale,
                  float* s);
// acc (rows × dv) += P V for P = p (rows × nc fp32, row stride nc, rounded to bf16 into
// `scratch`, rows·pairs(nc) words) and the V blocks `vp` of a head with np key pairs, advanced
// to the tile's first key pair (its first key must be even).
void pv_tile_bf16(const float* p, int64_t rows, int64_t nc, const uint32_t* vp, int64_t np, int dv,
                  float* acc, uint32_t* scratch);

}  // namespace ab::cpu::simd
