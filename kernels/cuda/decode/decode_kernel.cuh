#pragma once
// The split-KV decode kernel template and its LSE merge, shared by the dense decode
// (decode.cu) and the token-gather decode (gather_decode/gather_decode.cu).
//
// CTA = 4 warps; a key tile of BN = 64 keys, warp w takes keys [16w, 16w+16) of each tile for
// all (up to 16) query rows of the CTA: S (16 x 16) = Q·Kᵀ with Q held in registers as
// A fragments, online softmax per warp, O (16 x D) += P·V. K/V tiles stream through a
// STAGES-deep cp.async ring (the kernel is bandwidth-bound: 2 CTAs/SM × (STAGES-1) × 32 KB in
// flight covers HBM latency). The 4 warps' (m, ℓ, O) merge in smem at the end; the split's
// partial O (fp32) and LSE (log2 units) go to the workspace, and decode_combine_kernel merges
// the splits.
#include <cmath>

#include "cuda/common/device_helpers.cuh"
#include "cuda/decode/decode.hpp"

namespace ab::cuda {

namespace decode_detail {

using namespace dev;
constexpr int kThreads = 128;
constexpr int kRows = 16;  // query rows per CTA (one m16 tile)

// GENERAL: p.transform is softcap, sigmoid or relu (DecodeParams); otherwise softmax.
template <typename T, int D, int BN, int STAGES, bool GATHER, bool GENERAL>
__global__ void __launch_bounds__(kThreads, 2) decode_split_kernel(const DecodeParams p) {
  constexpr int KS = D / 16;             // k-steps of Q·Kᵀ
  constexpr int DT = D / 8;              // n8 tiles of O
  constexpr int CPR = D / 8;             // 16-byte chunks per K/V row
  constexpr int RSTEP = kThreads / CPR;  // rows one pass of the CTA copies
  constexpr int RPT = BN / RSTEP;        // rows each thread copies per tile
  static_assert(BN == 16 * (kThreads / 32));
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sKV = reinterpret_cast<T*>(smem_raw);  // STAGES × [K (BN,D) | V (BN,D)]
  __shared__ float sm_m[4][kRows], sm_l[4][kRows];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int rb = blockIdx.x, split = blockIdx.y, bk = blockIdx.z;
  const int b = bk / p.kv_heads, kvh = bk % p.kv_heads;
  const int G = p.q_heads / p.kv_heads;
  const int q_len = int(p.q_len), kv_len = int(p.kv_len);
  const int R = G * q_len;  // query rows of this kv head
  const T* kbase = static_cast<const T*>(p.k) + int64_t(bk) * kv_len * D;
  const T* vbase = static_cast<const T*>(p.v) + int64_t(bk) * kv_len * D;
  const int q_off = kv_len - q_len;
  // Output row (b, kvh*G + r / q_len, r % q_len) in (B, Hq, Nq) order.
  auto out_row = [&](int r) -> int64_t {
    return (int64_t(b) * p.q_heads + kvh * G + r / q_len) * q_len + r % q_len;
  };

  int list_off = 0, list_len = 0;
  KvTileWalk walk;
  if constexpr (GATHER) {
    list_off = p.offsets[bk];
    list_len = p.offsets[bk + 1] - list_off;
    walk.first = 0;
    walk.last = (list_len + BN - 1) / BN;
  } else {
    walk = kv_tile_walk(p.mask, q_off, q_off + q_len - 1, BN);
  }
  const int t_begin = split * int(p.tiles_per_split);
  const int n_local = max(0, min(t_begin + int(p.tiles_per_split), int(walk.count())) - t_begin);
  if (n_local == 0) {
    if (tid < kRows && rb * kRows + tid < R)
      p.ws_lse[out_row(rb * kRows + tid) * p.splits + split] = -INFINITY;
    return;
  }

  // Q rows g and g+8 of this CTA as A fragments for all k-steps.
  uint32_t qa[KS][4];
  {
    const int r0 = rb * kRows + g, r1 = r0 + 8;
    const T* q0 = r0 < R ? static_cast<const T*>(p.q) + out_row(r0) * D : nullptr;
    const T* q1 = r1 < R ? static_cast<const T*>(p.q) + out_row(r1) * D : nullptr;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      const int c = kk * 16 + 2 * t4;
      qa[kk][0] = q0 ? *reinterpret_cast<const uint32_t*>(q0 + c) : 0u;
      qa[kk][1] = q1 ? *reinterpret_cast<const uint32_t*>(q1 + c) : 0u;
      qa[kk][2] = q0 ? *reinterpret_cast<const uint32_t*>(q0 + c + 8) : 0u;
      qa[kk][3] = q1 ? *reinterpret_cast<const uint32_t*>(q1 + c + 8) : 0u;
    }
  }

  const int crow = tid / CPR, cchunk = tid % CPR;
  int idx[RPT];  // gather: key indices of the next tile to issue
  auto fetch_idx = [&](int lt) {
    if constexpr (GATHER) {
#pragma unroll
      for (int i = 0; i < RPT; ++i) {
        const int pos = (t_begin + lt) * BN + crow + i * RSTEP;
        idx[i] = pos < list_len ? __ldg(p.indices + list_off + pos) : -1;
      }
    }
  };
  auto issue = [&](int lt, int stage) {
    T* sK = sKV + stage * 2 * BN * D;
    T* sV = sK + BN * D;
    const int n0 = GATHER ? 0 : int(walk.tile(t_begin + lt)) * BN;
#pragma unroll
    for (int i = 0; i < RPT; ++i) {
      const int r = crow + i * RSTEP;
      int j;
      bool ok;
      if constexpr (GATHER) {
        j = idx[i];
        ok = j >= 0;
      } else {
        j = n0 + r;
        ok = j < kv_len;
      }
      const int64_t off = ok ? int64_t(j) * D + cchunk * 8 : 0;
      cp_async_16(smem_addr(sK + swz<D>(r, cchunk)), kbase + off, ok);
      cp_async_16(smem_addr(sV + swz<D>(r, cchunk)), vbase + off, ok);
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < n_local) {
      fetch_idx(s);
      issue(s, s);
    }
    cp_async_commit();
  }
  if (STAGES - 1 < n_local) fetch_idx(STAGES - 1);

  float acc[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[dt][e] = 0.f;
  // Sigmoid and relu: the weights are summed as they are, against a fixed m = 0.
  const bool weights = GENERAL && (p.transform == PrefillTransform::sigmoid || p.transform == PrefillTransform::relu);
  float row_m[2] = {weights ? 0.f : -INFINITY, weights ? 0.f : -INFINITY}, row_l[2] = {0.f, 0.f};
  int qpos[2];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) qpos[hf] = q_off + (rb * kRows + g + 8 * hf) % q_len;

#pragma unroll 1
  for (int it = 0; it < n_local; ++it) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // tile `it` landed; every warp is done with the stage refilled below
    {
      const int nt = it + STAGES - 1;
      if (nt < n_local) {
        issue(nt, nt % STAGES);
        if (nt + 1 < n_local) fetch_idx(nt + 1);
      }
      cp_async_commit();
    }
    const T* sK = sKV + (it % STAGES) * 2 * BN * D;
    const T* sV = sK + BN * D;

    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      uint32_t kb[4];
      ldmatrix_x4(kb, smem_addr(sK + swz<D>(warp * 16 + (lane & 7) + ((lane >> 4) << 3),
                                            kk * 2 + ((lane >> 3) & 1))));
      mma_16816<T>(s[0], qa[kk], kb[0], kb[1]);
      mma_16816<T>(s[1], qa[kk], kb[2], kb[3]);
    }

    if constexpr (GATHER) {
      const int pos0 = (t_begin + it) * BN;
      if (pos0 + BN > list_len) {
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (pos0 + warp * 16 + nt * 8 + 2 * t4 + e >= list_len) {
              s[nt][e] = -INFINITY;
              s[nt][2 + e] = -INFINITY;
            }
      }
    } else {
      const int n0 = int(walk.tile(t_begin + it)) * BN;
      if (classify_tile(p.mask, q_off, q_off + q_len - 1, n0, n0 + BN) != kTileFull) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf)
#pragma unroll
          for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e)
              if (!mask_allows(p.mask, qpos[hf], n0 + warp * 16 + nt * 8 + 2 * t4 + e))
                s[nt][2 * hf + e] = -INFINITY;
      }
    }

    // The transforms, as in the prefill kernel: softcap into log2 units for the online softmax
    // with a unit scale (masked -inf kept); sigmoid and relu into the weights (0 where masked).
    float sl = p.scale_log2;
    if constexpr (GENERAL) {
      if (weights) {
        const bool sig = p.transform == PrefillTransform::sigmoid;
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          float sum = 0.f;
#pragma unroll
          for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float x = fmaf(s[nt][2 * hf + e], p.scale, p.bias);
              const float w = sig ? fast_sigmoid(x) : fmaxf(x, 0.f);
              s[nt][2 * hf + e] = w;
              sum += w;
            }
          row_l[hf] += sum;
        }
      } else {
        const float inv_cap = p.scale / p.cap, cap_log2 = p.cap * 1.4426950408889634f;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            s[nt][e] = s[nt][e] == -INFINITY ? -INFINITY : cap_log2 * fast_tanh(s[nt][e] * inv_cap);
        sl = 1.f;
      }
    }
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      if (GENERAL && weights) break;
      float mx = fmaxf(fmaxf(s[0][2 * hf], s[0][2 * hf + 1]), fmaxf(s[1][2 * hf], s[1][2 * hf + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(row_m[hf], mx * sl);
      const float base = m_new == -INFINITY ? 0.f : m_new;
      const float corr = fast_exp2(row_m[hf] - base);
      row_m[hf] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pv = fast_exp2(fmaf(s[nt][2 * hf + e], sl, -base));
          s[nt][2 * hf + e] = pv;
          sum += pv;
        }
      row_l[hf] = row_l[hf] * corr + sum;
#pragma unroll
      for (int dt = 0; dt < DT; ++dt) {
        acc[dt][2 * hf] *= corr;
        acc[dt][2 * hf + 1] *= corr;
      }
    }

    uint32_t pa[4];
    pa[0] = Elem<T>::pack(s[0][0], s[0][1]);
    pa[1] = Elem<T>::pack(s[0][2], s[0][3]);
    pa[2] = Elem<T>::pack(s[1][0], s[1][1]);
    pa[3] = Elem<T>::pack(s[1][2], s[1][3]);
#pragma unroll
    for (int dj = 0; dj < D / 16; ++dj) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, smem_addr(sV + swz<D>(warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                  dj * 2 + (lane >> 4))));
      mma_16816<T>(acc[2 * dj], pa, vb[0], vb[1]);
      mma_16816<T>(acc[2 * dj + 1], pa, vb[2], vb[3]);
    }
  }

  // Merge the 4 warps' partial softmax states for each row, through smem.
  cp_async_wait<0>();
  __syncthreads();
  float* sO = reinterpret_cast<float*>(smem_raw);  // (4 warps, 16 rows, D)
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    float l = row_l[hf];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int r = g + 8 * hf;
    if (t4 == 0) {
      sm_m[warp][r] = row_m[hf];
      sm_l[warp][r] = l;
    }
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
      *reinterpret_cast<float2*>(sO + (warp * kRows + r) * D + dt * 8 + 2 * t4) =
          make_float2(acc[dt][2 * hf], acc[dt][2 * hf + 1]);
  }
  __syncthreads();
  {
    constexpr int PER = D / 8;  // elements per thread: 8 threads per row
    const int r = tid >> 3, part = tid & 7;
    if (rb * kRows + r < R) {
      float M = -INFINITY;
#pragma unroll
      for (int w = 0; w < 4; ++w) M = fmaxf(M, sm_m[w][r]);
      const int64_t orow = out_row(rb * kRows + r);
      float wsc[4], L = 0.f;
      if (M != -INFINITY) {
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          wsc[w] = fast_exp2(sm_m[w][r] - M);
          L += sm_l[w][r] * wsc[w];
        }
      }
      // No visible key (softmax: M = -inf; weights: Σ w = 0, as for a row whose keys all have
      // weight 0, whose O is 0 either way).
      if (M == -INFINITY || !(L > 0.f)) {
        if (part == 0) p.ws_lse[orow * p.splits + split] = -INFINITY;
      } else {
        const float inv = 1.f / L;
        float* dst = p.ws_o + (orow * p.splits + split) * D + part * PER;
#pragma unroll
        for (int c = 0; c < PER; c += 4) {
          float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const float4 y = *reinterpret_cast<const float4*>(sO + (w * kRows + r) * D + part * PER + c);
            x.x += wsc[w] * y.x;
            x.y += wsc[w] * y.y;
            x.z += wsc[w] * y.z;
            x.w += wsc[w] * y.w;
          }
          x.x *= inv;
          x.y *= inv;
          x.z *= inv;
          x.w *= inv;
          *reinterpret_cast<float4*>(dst + c) = x;
        }
        if (part == 0) p.ws_lse[orow * p.splits + split] = M + __log2f(L);
      }
    }
  }
}

// One warp per output row: O = Σ_s w_s O_s with w_s = exp2(lse_s - M) / Σ exp2(lse_s - M).
// Splits that saw no key (lse = -inf) are skipped without reading their O.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) decode_combine_kernel(const DecodeParams p,
                                                                  int64_t rows_total) {
  constexpr int PER = D / 32;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * 4 + warp;
  if (row >= rows_total) return;
  const float* lse_s = p.ws_lse + row * p.splits;
  float M = -INFINITY;
  for (int s = lane; s < p.splits; s += 32) M = fmaxf(M, lse_s[s]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
  T* orow = static_cast<T*>(p.o) + row * D + lane * PER;
  const bool weights = p.transform == PrefillTransform::sigmoid || p.transform == PrefillTransform::relu;
  if (M == -INFINITY) {
#pragma unroll
    for (int c = 0; c < PER; c += 2) *reinterpret_cast<uint32_t*>(orow + c) = Elem<T>::pack(0.f, 0.f);
    if (p.lse && lane == 0) p.lse[row] = -INFINITY;
    return;
  }
  float sum = 0.f;
  for (int s = lane; s < p.splits; s += 32) sum += fast_exp2(lse_s[s] - M);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float inv = 1.f / sum;
  // Sigmoid and relu: the merged O is Σ w v / Σ w; Σ w = sum·2^M.
  const float total = sum * exp2f(M);
  const float out_scale = !weights ? 1.f : p.normalize ? total / (total + 1e-8f) : total;
  float x[PER];
#pragma unroll
  for (int c = 0; c < PER; ++c) x[c] = 0.f;
  for (int s = 0; s < p.splits; ++s) {
    const float ls = lse_s[s];
    if (ls == -INFINITY) continue;
    const float w = fast_exp2(ls - M) * inv;
    const float* src = p.ws_o + (row * p.splits + s) * D + lane * PER;
#pragma unroll
    for (int c = 0; c < PER; c += 2) {
      const float2 y = *reinterpret_cast<const float2*>(src + c);
      x[c] += w * y.x;
      x[c + 1] += w * y.y;
    }
  }
#pragma unroll
  for (int c = 0; c < PER; c += 2)
    *reinterpret_cast<uint32_t*>(orow + c) = Elem<T>::pack(x[c] * out_scale, x[c + 1] * out_scale);
  if (p.lse && lane == 0) p.lse[row] = (M + __log2f(sum)) * 0.69314718055994531f;
}

template <typename T, int D, bool GATHER, bool GENERAL = false>
cudaError_t launch_decode(const DecodeParams& p, cudaStream_t stream) {
  constexpr DecodeTile tile = decode_tile_policy(D);
  constexpr int BN = tile.block_n, STAGES = tile.stages;
  const size_t ring = size_t(STAGES) * 2 * BN * D * sizeof(T);
  const size_t merge = size_t(4) * kRows * D * sizeof(float);
  const size_t smem = ring > merge ? ring : merge;
  auto kern = decode_split_kernel<T, D, BN, STAGES, GATHER, GENERAL>;
  cudaError_t err =
      cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  const int R = (p.q_heads / p.kv_heads) * int(p.q_len);
  const dim3 grid(unsigned((R + kRows - 1) / kRows), unsigned(p.splits),
                  unsigned(p.batch * p.kv_heads));
  kern<<<grid, kThreads, smem, stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const int64_t rows_total = int64_t(p.batch) * p.q_heads * p.q_len;
  decode_combine_kernel<T, D><<<unsigned((rows_total + 3) / 4), kThreads, 0, stream>>>(p, rows_total);
  return cudaGetLastError();
}

}  // namespace decode_detail

// Defined in gather_decode/gather_decode.cu.
DecodeLaunchFn gather_decode_select(ElemType elem, int head_dim);

}  // namespace ab::cuda
