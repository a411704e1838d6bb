// SALE's int4 estimation on the GPU (selection.hpp; docs/variants.md §8): quantize_int4 (one
// CTA per (b, h, scale block): the block's max |x'| by a max reduction — exact in any order —
// then q = clamp(rint(x'·(1/scale)), −7, 7) as the CPU computes it, so values and scales
// equal the CPU's bit for bit) and int4_block_scan (one CTA per (b, h, query block): exact
// sink/local statistics in fp32 tiles, thresholds, the int4 test with dp4a — exact int32
// dots — block by block in segments; the plan runs twice, counting then writing).
#include <algorithm>
#include <cmath>

#include "cuda/selection/select_common.cuh"

namespace ab::cuda::sel {
namespace {

__global__ void __launch_bounds__(kNT) quantize_int4_kernel(QuantizeInt4P p) {
  __shared__ float red[kNT / 32];
  const int64_t blk = blockIdx.x, bh = blockIdx.y;
  const int64_t N = p.x.n2, D = p.x.n3, DW = (D + 3) / 4, nb = (N + p.out.block - 1) / p.out.block;
  const int64_t r0 = blk * p.out.block, r1 = min(N, r0 + p.out.block);
  auto xv = [&](int64_t r, int64_t c) {
    const float v = ld(p.x, (bh * N + r) * D + c);
    return p.center.p ? v - ld(p.center, bh * D + c) : v;
  };
  float amax = 0.0f;
  for (int64_t e = threadIdx.x; e < (r1 - r0) * D; e += kNT) amax = fmaxf(amax, fabsf(xv(r0 + e / D, e % D)));
  amax = warp_max(amax);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = 0.0f;
  for (int w = 0; w < kNT / 32; ++w) amax = fmaxf(amax, red[w]);
  const float scale = amax / 7.0f;
  if (threadIdx.x == 0) p.out.scales[bh * nb + blk] = scale;
  const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  for (int64_t e = threadIdx.x; e < (r1 - r0) * DW; e += kNT) {
    const int64_t r = r0 + e / DW, w = e % DW;
    uint32_t word = 0;
    for (int t = 0; t < 4; ++t) {
      const int64_t c = 4 * w + t;
      if (c >= D) break;
      const float q = fminf(fmaxf(rintf(xv(r, c) * inv), -7.0f), 7.0f);
      word |= uint32_t(uint8_t(int8_t(q))) << (8 * t);
    }
    p.out.values[(bh * N + r) * DW + w] = int32_t(word);
  }
}

struct ScanSmem {
  TileSmem tile;
  float m[kInt4MaxBlockQ], l[kInt4MaxBlockQ], t[kInt4MaxBlockQ], qk[kInt4MaxBlockQ];
  unsigned char kept[kInt4MaxSegment];  // refresh: the segment's kept blocks
};

struct Item {
  const Int4ScanP* p;
  int64_t b, h, kh, r0, nr;
  __device__ float q(int64_t r, int64_t c) const {
    return ld(p->q, ((b * p->q.n1 + h) * p->q.n2 + r0 + r) * p->q.n3 + c);
  }
  __device__ float k(int64_t j, int64_t c) const { return ld(p->k, ((b * p->k.n1 + kh) * p->k.n2 + j) * p->k.n3 + c); }
};

// (m, ℓ) of the item's rows continued over keys [k0, k1), each row only the keys it sees.
__device__ void update_stats(ScanSmem& sm, const Item& it, int64_t k0, int64_t k1) {
  const Int4ScanP& p = *it.p;
  const int D = int(p.q.n3);
  for (int64_t ra = 0; ra < it.nr; ra += kRT) {
    const int nrows = int(min(int64_t(kRT), it.nr - ra));
    for (int64_t j0 = k0; j0 < k1; j0 += kKT) {
      const int nk = int(min(int64_t(kKT), k1 - j0));
      logits_tile(
          sm.tile, nrows, nk, D, [&](int r, int c) { return it.q(ra + r, c); }, [&](int j, int c) { return it.k(j0 + j, c); },
          p.scale);
      stats_update(sm.tile, sm.m + ra, sm.l + ra, nrows, [&](int r) {
        const int64_t lim = min(k1, it.r0 + ra + r + p.q_offset + 1);  // keys j <= qpos
        return int(min(max(lim - j0, int64_t(0)), int64_t(nk)));
      });
    }
  }
}

__device__ void thresholds(ScanSmem& sm, const Item& it) {
  const Int4ScanP& p = *it.p;
  for (int64_t r = threadIdx.x; r < it.nr; r += kNT) {
    const float m = sm.m[r], l = sm.l[r];
    // cpu::threshold_relative_to_sum: m + ln(τ·ℓ); −inf for τ <= 0, +inf for ℓ = 0.
    const float x = (!(p.tau > 0.0f) || !(l > 0.0f)) ? (p.tau > 0.0f ? __int_as_float(0x7f800000) : kNegInf)
                                                     : m + logf(p.tau * l);
    sm.t[r] = x / p.scale - sm.qk[r];
  }
  __syncthreads();
}

// Whether some row and key of block kb reach s_q·s_k·Σ q̃·k̃ >= t_r.
__device__ bool block_reaching(const ScanSmem& sm, const Item& it, int64_t kb) {
  const Int4ScanP& p = *it.p;
  const int64_t Nq = p.q.n2, Nk = p.k.n2, DW = (p.q.n3 + 3) / 4;
  const int64_t k0 = kb * p.block_k, nk = min(Nk, k0 + p.block_k) - k0;
  const int64_t pairs = it.nr * nk;
  const int64_t nbq = (Nq + p.q4.block - 1) / p.q4.block, nbk = (Nk + p.k4.block - 1) / p.k4.block;
  const int64_t qh = it.b * p.q.n1 + it.h, kvh = it.b * p.k.n1 + it.kh;
  for (int64_t e0 = 0; e0 < pairs; e0 += kNT) {
    const int64_t e = e0 + threadIdx.x;
    bool hit = false;
    if (e < pairs) {
      const int64_t r = e / nk, j = k0 + e % nk;
      const int32_t* a = p.q4.values + (qh * Nq + it.r0 + r) * DW;
      const int32_t* bq = p.k4.values + (kvh * Nk + j) * DW;
      int dot = 0;
      for (int64_t w = 0; w < DW; ++w) dot = __dp4a(a[w], bq[w], dot);
      const float sq = p.q4.scales[qh * nbq + (it.r0 + r) / p.q4.block];
      const float sk = p.k4.scales[kvh * nbk + j / p.k4.block];
      hit = float(dot) * sk * sq >= sm.t[r];
    }
    if (__syncthreads_or(hit)) return true;
  }
  return false;
}

__global__ void __launch_bounds__(kNT) int4_scan_kernel(Int4ScanP p, bool write) {
  __shared__ ScanSmem sm;
  __shared__ int64_t count_s;
  const int64_t Hq = p.q.n1, Hk = p.k.n1, Nq = p.q.n2, Nk = p.k.n2;
  const int64_t n_qb = (Nq + p.block_q - 1) / p.block_q, item = blockIdx.x;
  const int64_t qh = item / n_qb, qb = item % n_qb;
  Item it;
  it.p = &p;
  it.b = qh / Hq;
  it.h = qh % Hq;
  it.kh = it.h / (Hq / Hk);
  it.r0 = qb * p.block_q;
  it.nr = min(Nq, it.r0 + p.block_q) - it.r0;
  const int64_t bk = p.block_k, off = p.q_offset;
  const int64_t last_key = it.r0 + it.nr - 1 + off;
  const int64_t lb1 = last_key / bk;
  const int64_t lb0 = max(int64_t(0), it.r0 + off - p.local_window) / bk;
  const int64_t out0 = write ? int64_t(p.lists.offsets[item]) : 0;
  int64_t count = 0;  // thread 0's
  auto emit = [&](int64_t kb) {
    if (threadIdx.x == 0) {
      if (write && out0 + count < p.lists.cap) p.lists.entries[out0 + count] = int32_t(kb);
      ++count;
    }
  };
  emit(0);
  if (lb0 > 1) {
    for (int64_t r = threadIdx.x; r < it.nr; r += kNT) {
      sm.m[r] = kNegInf;
      sm.l[r] = 0.0f;
      float acc = 0.0f;
      if (p.k_center.p)
        for (int64_t c = 0; c < p.q.n3; ++c) acc += it.q(r, c) * ld(p.k_center, (it.b * Hk + it.kh) * p.q.n3 + c);
      sm.qk[r] = acc;
    }
    __syncthreads();
    update_stats(sm, it, 0, min(Nk, bk));
    update_stats(sm, it, lb0 * bk, min(Nk, last_key + 1));
    thresholds(sm, it);
    const int64_t step = p.refresh ? p.segment : lb0;
    for (int64_t s0 = 1; s0 < lb0; s0 += step) {
      const int64_t s1 = min(lb0, s0 + step);
      bool any = false;
      for (int64_t kb = s0; kb < s1; ++kb) {
        const bool keep = block_reaching(sm, it, kb);
        if (p.refresh && threadIdx.x == 0) sm.kept[kb - s0] = keep ? 1 : 0;
        if (keep) {
          emit(kb);
          any = true;
        }
      }
      __syncthreads();
      if (p.refresh && any) {
        for (int64_t kb = s0; kb < s1; ++kb)
          if (sm.kept[kb - s0]) update_stats(sm, it, kb * bk, min(Nk, (kb + 1) * bk));
        thresholds(sm, it);
      }
    }
  }
  for (int64_t kb = max(int64_t(1), lb0); kb <= lb1; ++kb) emit(kb);
  if (threadIdx.x == 0) count_s = count;
  __syncthreads();
  if (!write && threadIdx.x == 0) p.lists.offsets[item + 1] = int32_t(count_s);
}

}  // namespace

cudaError_t quantize_int4(const QuantizeInt4P& p, cudaStream_t s) {
  const int64_t BH = p.x.n0 * p.x.n1, nb = (p.x.n2 + p.out.block - 1) / p.out.block;
  if (BH <= 0 || nb <= 0) return cudaSuccess;
  quantize_int4_kernel<<<dim3(unsigned(nb), unsigned(BH)), kNT, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t int4_block_scan(const Int4ScanP& p, cudaStream_t s) {
  const int64_t n = p.q.n0 * p.q.n1 * ((p.q.n2 + p.block_q - 1) / p.block_q);
  if (n <= 0) return cudaMemsetAsync(p.lists.offsets, 0, sizeof(int32_t), s);
  int4_scan_kernel<<<unsigned(n), kNT, 0, s>>>(p, false);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if ((e = csr_scan(p.lists.offsets, n, s)) != cudaSuccess) return e;
  int4_scan_kernel<<<unsigned(n), kNT, 0, s>>>(p, true);
  return cudaGetLastError();
}

}  // namespace ab::cuda::sel
