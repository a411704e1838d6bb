#pragma once
// The bf16 products of sdpa_flash's bf16 path: S = scale·Q·Kᵀ and acc += P·V with bf16
// operands and fp32 accumulation (AVX512_BF16's VDPBF16PS: each fp32 lane adds the dot product
// of one pair of bf16 values from each source). Built for that ISA with a target pragma, so the
// binary still runs where it is missing: call only when bf16_dot_available().
//
// Operands are stored as bf16 pairs in uint32 words (low half the even element, high half the
// odd one), the layout VDPBF16PS reads:
//   row pairs  A[r·lda + p] = (x[r][2p], x[r][2p+1])                     Q rows, P rows
//   K blocks   of 16 keys: Kp[(jb·dp + p)·16 + lane] = (k[2p], k[2p+1]) of key jb·16 + lane
//   V blocks   of 16 columns: Vp[(cb·np + p)·16 + lane] = (v[2p][c], v[2p+1][c]), c = cb·16 + lane
// where dp = ⌈d/2⌉ and np = ⌈Nkv/2⌉; missing elements (odd lengths, the last block) are zero.
// fp32 values are rounded to bf16 to nearest-even, so bf16-exact inputs pack exactly.
#include <cstdint>

namespace ab::cpu::bf16 {

// AVX512_BF16 present and its register state enabled by the OS.
bool dot_available();

inline int64_t pairs(int64_t n) { return (n + 1) / 2; }
inline int64_t blocks16(int64_t n) { return (n + 15) / 16; }

// rows × n fp32 (row stride ld) → rows × pairs(n) row pairs (row stride ldp).
void pack_rows(const float* x, int64_t ld, int64_t rows, int64_t n, uint32_t* dst, int64_t ldp);
// Keys [0, nkv) × d of one head, row-major → K blocks (blocks16(nkv)·16·pairs(d) words).
void pack_k(const float* k, int64_t nkv, int d, uint32_t* dst);
// Key-pair range [p0, p1) of one head's V (nkv × dv, row-major) into its V blocks
// (blocks16(dv)·pairs(nkv)·16 words in all); ranges let threads pack one head together.
void pack_v(const float* v, int64_t nkv, int dv, int64_t p0, int64_t p1, uint32_t* dst);

// s (rows × nc, row stride nc) = scale · Q Kᵀ for nc keys starting at the K block `kp`
// (keys beyond the head's end read the zero padding; only nc columns are written).
void qk_tile(const uint32_t* qp, int64_t rows, int dp, const uint32_t* kp, int64_t nc, float scale,
             float* s);
// acc (rows × dv, row stride dv) += P V for P = p (rows × nc fp32, row stride nc, rounded to
// bf16 into `scratch`, rows·pairs(nc) words) and the V blocks `vp` of a head with np key pairs,
// advanced to the tile's first key pair (its first key must be even).
void pv_tile(const float* p, int64_t rows, int64_t nc, const uint32_t* vp, int64_t np, int dv,
             float* acc, uint32_t* scratch);

}  // namespace ab::cpu::bf16
