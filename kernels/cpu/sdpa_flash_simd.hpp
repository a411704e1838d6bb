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
// rows × n fp32 (row stride ld) → rows × ldp row pairs, ldp ≥ pairs(n) (pairs past n zero).
void pack_rows_bf16(const float* x, int64_t ld, int64_t rows, int64_t n, uint32_t* dst, int64_t ldp);
// Keys [0, nkv) × d of one head → K blocks of dp ≥ pairs(d) pairs (pairs past d zero).
void pack_k_bf16(const float* k, int64_t nkv, int d, uint32_t* dst, int64_t dp);
// Key pairs [p0, p1) of one head's V (nkv × dv) into its V blocks of np ≥ pairs(nkv) key
// pairs each (pairs past nkv are written as zero).
void pack_v_bf16(const float* v, int64_t nkv, int dv, int64_t p0, int64_t p1, uint32_t* dst, int64_t np);
// s (rows × nc, row stride nc) = scale · Q Kᵀ for the packed query tile qp (rows × dp pairs)
// and nc keys from the K block `kp` on.
void qk_tile_bf16(const uint32_t* qp, int64_t rows, int dp, const uint32_t* kp, int64_t nc, float scale,
                  float* s);
// acc (rows × dv) += P V for P given as bf16 row pairs pp (rows × pairs(nc), as softmax_tile
// writes them) and the V blocks `vp` of a head with np key pairs, advanced to the tile's first
// key pair (its first key must be even).
void pv_tile_bf16(const uint32_t* pp, int64_t rows, int64_t nc, const uint32_t* vp, int64_t np, int dv,
                  float* acc);

// ---- the online softmax of the packed paths (FlashAttention-2's update) ----
// For each row r of the score tile s (row stride ld; entries scale·s[r][c] for c < nc, the
// columns past nc ignored): m[r] and ℓ[r] updated with the tile, acc row r (stride dv)
// rescaled by exp(m_old − m_new), and P = exp(scale·s − m_new) written as fp32 over s
// (pbf null) or rounded to bf16 row pairs into pbf (row stride ldp words; columns past nc,
// up to 2·ldp, zero). A row with nothing visible so far (m_new = −inf) gets P = 0 and keeps
// its state. exp is 2^x by a polynomial (degree 7, ≤ 1 ulp of fp32 from the truncation; degree
// 5 where P is rounded to bf16, 2.4e-6). ℓ sums the fp32 P, before any rounding to bf16 (as
// the Eigen path and FlashAttention do).
void softmax_tile(float* s, int64_t rows, int64_t nc, int64_t ld, float scale, float* m, float* l, float* acc,
                  int dv, uint32_t* pbf, int64_t ldp);

// ---- AMX bf16 (kernels/cpu/sdpa_flash_amx.cpp) ----
// TDPBF16PS on 16×16 fp32 accumulator tiles, bf16 operand tiles of 16 rows × 16 pairs: the
// bf16 layouts above serve as they are (a K block's 16 pairs × 16 keys and a V block's 16 key
// pairs × 16 columns are each one B tile of 64-byte rows), with every reduction padded to whole
// tile steps: Q and P rows and K blocks use pad16(pairs(·)) pairs, and the keys of K and V are
// padded with zeros to a multiple of 32 (two 16-key B tiles; 16 key pairs). Query rows are
// processed 32 at a time (two A tiles): the row buffers must hold pad32(rows) readable rows
// with finite values past `rows`.
inline int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }
inline int64_t pad32(int64_t n) { return (n + 31) / 32 * 32; }
// AVX512_BF16 (for the packing) and AMX-BF16 present, and the tile state permitted.
bool amx_bf16_available();
// s (pad32(rows) × pad32(nc), row stride pad32(nc)) = Q Kᵀ, unscaled (softmax_tile scales),
// for the packed query rows qp (row stride dpa = pad16(pairs(d))) and the keys from the K block
// `kp` on. The columns from nc on hold products with other keys: softmax_tile ignores them.
void qk_tile_amx(const uint32_t* qp, int64_t rows, int64_t dpa, const uint32_t* kp, int64_t nc, float* s);
// acc (rows × dv, pad32(rows) rows readable and writable) += P V for P given as bf16 row pairs
// pp (pad32(rows) rows of ncp/2 words, ncp a multiple of 32, as softmax_tile writes them) and
// the V blocks `vp` of npa key pairs each, advanced to the tile's first key pair.
void pv_tile_amx(const uint32_t* pp, int64_t rows, int64_t ncp, const uint32_t* vp, int64_t npa, int dv,
                 float* acc);

}  // namespace ab::cpu::simd
