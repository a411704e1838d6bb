#pragma once
// Device building blocks of the selection ops (selection.hpp): element loads of any storage
// type, the fp32 logit tile (32 rows × 64 keys, 256 threads, FMA over 32-dim chunks staged in
// shared memory), the online softmax statistics of a tile's rows, and the CSR offsets scan.
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/selection/selection.hpp"

namespace ab::cuda::sel {

constexpr int kNT = 256;  // threads of the tile kernels
constexpr int kRT = 32;   // rows per tile
constexpr int kKT = 64;   // keys per tile
constexpr int kDC = 32;   // head-dim chunk staged per step

__device__ __forceinline__ float ld(const void* p, int elem, int64_t i) {
  if (elem == kF32) return static_cast<const float*>(p)[i];
  if (elem == kBF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return __half2float(static_cast<const __half*>(p)[i]);
}
__device__ __forceinline__ float ld(const Ten& t, int64_t i) { return ld(t.p, t.elem, i); }
__device__ __forceinline__ void st(void* p, int elem, int64_t i, float v) {
  if (elem == kF32) static_cast<float*>(p)[i] = v;
  else if (elem == kBF16) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  else static_cast<__half*>(p)[i] = __float2half_rn(v);
}

constexpr float kNegInf = -__builtin_huge_valf();

struct TileSmem {
  float q[kRT][kDC + 1];
  float k[kDC][kKT + 1];
  float s[kRT][kKT + 1];
};

// s[r][j] = post · Σ_c qv(r, c)·kv(j, c) for r < nrows, j < nkeys (others 0), the dims summed
// in ascending order with fmaf. qv/kv return fp32 values (a pre-scaled query where the op forms
// (scale·q)·k). Ends with a barrier: s is readable by every thread.
template <class QV, class KV>
__device__ __forceinline__ void logits_tile(TileSmem& sm, int nrows, int nkeys, int D, QV qv, KV kv, float post) {
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  float acc[2][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int m = 0; m < 4; ++m) acc[i][m] = 0.0f;
  for (int d0 = 0; d0 < D; d0 += kDC) {
    for (int e = tid; e < kRT * kDC; e += kNT) {
      const int r = e / kDC, c = e % kDC;
      sm.q[r][c] = (r < nrows && d0 + c < D) ? qv(r, d0 + c) : 0.0f;
    }
    for (int e = tid; e < kKT * kDC; e += kNT) {
      const int j = e / kDC, c = e % kDC;
      sm.k[c][j] = (j < nkeys && d0 + c < D) ? kv(j, d0 + c) : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int c = 0; c < kDC; ++c) {
      const float a0 = sm.q[ty][c], a1 = sm.q[ty + 16][c];
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const float b = sm.k[c][tx + 16 * m];
        acc[0][m] = fmaf(a0, b, acc[0][m]);
        acc[1][m] = fmaf(a1, b, acc[1][m]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int m = 0; m < 4; ++m) sm.s[ty + 16 * i][tx + 16 * m] = post * acc[i][m];
  __syncthreads();
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Online softmax statistics over the tile in sm.s: row r (< nrows) takes keys j < lim(r)
// (lim(r) <= kKT) with m' = max(m, max_j x), ℓ' = ℓ·e^{m−m'} + Σ_j e^{x−m'} (m' = −inf: kept).
// m, l: shared arrays of the tile's rows. Ends with a barrier.
template <class Lim>
__device__ __forceinline__ void stats_update(const TileSmem& sm, float* m, float* l, int nrows, Lim lim) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = warp; r < nrows; r += kNT / 32) {
    const int n = lim(r);
    const float x0 = lane < n ? sm.s[r][lane] : kNegInf;
    const float x1 = lane + 32 < n ? sm.s[r][lane + 32] : kNegInf;
    const float mt = warp_max(fmaxf(x0, x1));
    const float mo = m[r];
    const float mn = fmaxf(mo, mt);
    if (mn == kNegInf) continue;  // warp-uniform
    float e = (lane < n ? expf(x0 - mn) : 0.0f) + (lane + 32 < n ? expf(x1 - mn) : 0.0f);
    e = warp_sum(e);
    if (lane == 0) {
      l[r] = l[r] * expf(mo - mn) + e;
      m[r] = mn;
    }
  }
  __syncthreads();
}

// Exclusive prefix of v over the CTA's threads in thread order (blockDim.x = kNT); *total gets
// the sum. `ws` holds kNT / 32 + 1 ints of shared memory. Every thread must call it.
__device__ __forceinline__ int64_t block_exclusive_scan(int64_t v, int64_t* ws, int64_t* total) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int64_t y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) ws[warp] = x;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t acc = 0;
    for (int w = 0; w < kNT / 32; ++w) {
      const int64_t t = ws[w];
      ws[w] = acc;
      acc += t;
    }
    ws[kNT / 32] = acc;
  }
  __syncthreads();
  const int64_t out = ws[warp] + x - v;
  *total = ws[kNT / 32];
  __syncthreads();
  return out;
}

// offsets[0] = 0, offsets[1 .. n] = the inclusive scan of the counts stored there.
cudaError_t csr_scan(int32_t* offsets, int64_t n, cudaStream_t s);

}  // namespace ab::cuda::sel
