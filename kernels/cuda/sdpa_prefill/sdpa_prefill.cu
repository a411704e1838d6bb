// Dense SDPA forward, FlashAttention-2 (Dao 2023) on mma.sync m16n8k16.
//
// One CTA = 4 warps = BM query rows of one (batch, q head); each warp owns 32 rows (two m16
// tiles), so every K/V fragment read from shared memory feeds two MMAs (16 rows per warp makes
// the kernel shared-memory bound: 32 KB of ldmatrix per 0.5 MFLOP against 128 B/clk).
// Per key tile: S = Q·Kᵀ (Q and K via ldmatrix from swizzled smem), mask only in partial tiles,
// online softmax in the exp2 domain (scale·log2e folded into one FFMA before ex2.approx),
// P rounded to the input type in registers (the S accumulator layout is the A-operand layout of
// the next MMA, no smem round trip), O += P·V (V via ldmatrix.trans).
// Pipeline (FA2's): K(j+1) streams in by cp.async while softmax and P·V of tile j run, and V(j)
// while Q·K(j)ᵀ runs; single buffers, two CTAs per SM hide the rest.
// Tiles the mask leaves empty are never visited (kv_tile_walk); causal CTAs start with the
// longest rows (reverse block order) so the last wave is short.
#include <cmath>

#include "cuda/common/device_helpers.cuh"
#include "cuda/sdpa_prefill/sdpa_prefill.hpp"

namespace ab::cuda {
namespace {

using namespace dev;

constexpr int kThreads = 128;

// Copy rows [row0, row0 + ROWS) of a (len, D) tensor into a swizzled smem tile; rows at or
// past `len` become zeros.
template <typename T, int D, int ROWS>
__device__ __forceinline__ void load_rows(T* smem, const T* g, int row0, int len, int tid) {
  constexpr int CPR = D / 8;             // 16-byte chunks per row
  constexpr int RSTEP = kThreads / CPR;  // rows covered by one pass of the CTA
  static_assert(ROWS % RSTEP == 0);
  const int c = tid % CPR;
#pragma unroll
  for (int r = tid / CPR; r < ROWS; r += RSTEP) {
    const bool ok = row0 + r < len;
    const T* src = g + (ok ? (row0 + r) * D : 0) + c * 8;
    cp_async_16(smem_addr(smem + swz<D>(r, c)), src, ok);
  }
}

// KV_STAGES = 1: FA2's schedule, single K and V buffers, two barriers per tile (V(j) loads
// during Q·K(j)ᵀ, K(j+1) during softmax and P·V(j)). KV_STAGES = 2: double-buffered K and V,
// one barrier per tile, tile j+1 loads during all of tile j's work.
// GENERAL: p.transform is softcap, sigmoid or relu (see PrefillTransform); otherwise softmax.
template <typename T, int D, int BM, int BN, bool MASKED, int KV_STAGES, bool GENERAL>
__global__ void __launch_bounds__(kThreads, 2) sdpa_prefill_kernel(const PrefillParams p) {
  static_assert(BM == 32 * (kThreads / 32), "each warp owns 32 query rows");
  constexpr int MT = 2;       // m16 tiles per warp
  constexpr int NT = BN / 8;  // n8 tiles of S
  constexpr int DT = D / 8;   // n8 tiles of O
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // (BM, D)
  T* sK0 = sQ + BM * D;                    // KV_STAGES × (BN, D)
  T* sV0 = sK0 + KV_STAGES * BN * D;       // KV_STAGES × (BN, D)

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int m_block = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int kvh = h / (p.q_heads / p.kv_heads);
  const T* q = static_cast<const T*>(p.q) + (int64_t(b) * p.q_heads + h) * p.q_len * D;
  const T* k = static_cast<const T*>(p.k) + (int64_t(b) * p.kv_heads + kvh) * p.kv_len * D;
  const T* v = static_cast<const T*>(p.v) + (int64_t(b) * p.kv_heads + kvh) * p.kv_len * D;
  T* o = static_cast<T*>(p.o) + (int64_t(b) * p.q_heads + h) * p.q_len * D;
  float* lse = p.lse ? p.lse + (int64_t(b) * p.q_heads + h) * p.q_len : nullptr;

  const int m0 = m_block * BM;
  const int q_off = int(p.kv_len - p.q_len);
  const int64_t qa0 = m0 + q_off;
  const int64_t qlast = imin(m0 + BM, p.q_len) - 1 + q_off;
  KvTileWalk walk;
  if constexpr (MASKED) {
    walk = kv_tile_walk(p.mask, qa0, qlast, BN);
  } else {
    walk.first = 0;
    walk.last = (p.kv_len + BN - 1) / BN;
  }
  const int n_tiles = int(walk.count());
  const int q_len = int(p.q_len), kv_len = int(p.kv_len);

  float acc[MT][DT][4];
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][dt][e] = 0.f;
  float row_m[MT][2], row_l[MT][2];
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      row_m[mi][hf] = -INFINITY;
      row_l[mi][hf] = 0.f;
    }

  if (n_tiles > 0) {
    load_rows<T, D, BM>(sQ, q, m0, q_len, tid);
    cp_async_commit();
    load_rows<T, D, BN>(sK0, k, int(walk.tile(0)) * BN, kv_len, tid);
    if constexpr (KV_STAGES == 2) load_rows<T, D, BN>(sV0, v, int(walk.tile(0)) * BN, kv_len, tid);
    cp_async_commit();
  }

#pragma unroll 1
  for (int it = 0; it < n_tiles; ++it) {
    const int n0 = int(walk.tile(it)) * BN;
    const T* sK = sK0 + (KV_STAGES == 2 ? (it & 1) * BN * D : 0);
    const T* sV = sV0 + (KV_STAGES == 2 ? (it & 1) * BN * D : 0);
    cp_async_wait<0>();
    if constexpr (KV_STAGES == 1) {
      __syncthreads();  // K(it) landed; every warp finished P·V(it-1), so sV is free
      load_rows<T, D, BN>(sV0, v, n0, kv_len, tid);
      cp_async_commit();
    } else {
      __syncthreads();  // K/V(it) landed; every warp finished tile it-1, whose buffers refill now
      if (it + 1 < n_tiles) {
        const int n1 = int(walk.tile(it + 1)) * BN;
        T* dK = sK0 + ((it + 1) & 1) * BN * D;
        T* dV = sV0 + ((it + 1) & 1) * BN * D;
        load_rows<T, D, BN>(dK, k, n1, kv_len, tid);
        load_rows<T, D, BN>(dV, v, n1, kv_len, tid);
        cp_async_commit();
      }
    }

    // S = Q·Kᵀ, (32 rows of this warp) x BN
    float s[MT][NT][4];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mi][nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
        ldmatrix_x4(a[mi], smem_addr(sQ + swz<D>(warp * 32 + mi * 16 + (lane & 15),
                                                 kk * 2 + (lane >> 4))));
#pragma unroll
      for (int nj = 0; nj < BN / 16; ++nj) {
        uint32_t bk[4];
        ldmatrix_x4(bk, smem_addr(sK + swz<D>(nj * 16 + (lane & 7) + ((lane >> 4) << 3),
                                              kk * 2 + ((lane >> 3) & 1))));
#pragma unroll
        for (int mi = 0; mi < MT; ++mi) {
          mma_16816<T>(s[mi][2 * nj], a[mi], bk[0], bk[1]);
          mma_16816<T>(s[mi][2 * nj + 1], a[mi], bk[2], bk[3]);
        }
      }
    }

    bool partial;
    if constexpr (MASKED)
      partial = classify_tile(p.mask, qa0, qlast, n0, n0 + BN) != kTileFull;
    else
      partial = n0 + BN > kv_len;
    if (partial) {
      // mask_allows as a per-row key interval [lo, hi) plus the sinks [0, sinks), in 32 bits.
      const int window = int(imin(p.mask.window, 1 << 30));
      const int sinks = window > 0 ? int(imin(p.mask.sinks, kv_len)) : 0;
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int qpos = m0 + warp * 32 + mi * 16 + g + 8 * hf + q_off;
          int hi = kv_len, lo = 0;
          if (MASKED && p.mask.causal) hi = min(hi, qpos + 1);
          if (MASKED && window > 0) {
            hi = min(hi, qpos + window);
            lo = qpos - window + 1;
          }
          const int sink_hi = (MASKED && p.mask.causal) ? min(sinks, qpos + 1) : sinks;
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int j = n0 + nt * 8 + 2 * t4 + e;
              if (!((j >= lo && j < hi) || j < sink_hi)) s[mi][nt][2 * hf + e] = -INFINITY;
            }
        }
    }

    if constexpr (KV_STAGES == 1) {
      cp_async_wait<0>();
      __syncthreads();  // V(it) landed; every warp finished reading K(it)
      if (it + 1 < n_tiles) {
        load_rows<T, D, BN>(sK0, k, int(walk.tile(it + 1)) * BN, kv_len, tid);
        cp_async_commit();
      }
    }

    static_assert(MT == 2);
    float corr[MT][2] = {{1.f, 1.f}, {1.f, 1.f}};
    // The transforms: softcap turns S into cap·tanh(scale·s / cap) in log2 units (masked -inf
    // kept: tanh(-inf) = -1 would unmask) for the online softmax below with a unit scale;
    // sigmoid and relu turn S into the weights themselves (0 where masked) and skip it.
    float sl = p.scale_log2;
    bool weights = false;
    if constexpr (GENERAL) {
      constexpr float kLog2e = 1.4426950408889634f;
      if (p.transform == PrefillTransform::softcap) {
        const float inv_cap = p.scale / p.cap, cap_log2 = p.cap * kLog2e;
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const float x = s[mi][nt][e];
              s[mi][nt][e] = x == -INFINITY ? -INFINITY : cap_log2 * fast_tanh(x * inv_cap);
            }
        sl = 1.f;
      } else {
        weights = true;
        const bool sig = p.transform == PrefillTransform::sigmoid;
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int hf = 0; hf < 2; ++hf) {
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const float x = fmaf(s[mi][nt][2 * hf + e], p.scale, p.bias);  // bias 0 for relu
                // σ(-inf) = 1 / (1 + inf) = 0 and max(-inf, 0) = 0: masked keys weigh nothing.
                const float w = sig ? fast_sigmoid(x) : fmaxf(x, 0.f);
                s[mi][nt][2 * hf + e] = w;
                sum += w;
              }
            row_l[mi][hf] += sum;
          }
      }
    }
    // Online softmax (exp2 domain). A row with no visible key so far keeps m = -inf; its
    // exponent base is then 0 so that exp2(-inf - base) = 0 rather than NaN.
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        if (GENERAL && weights) continue;
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          mx = fmaxf(mx, fmaxf(s[mi][nt][2 * hf], s[mi][nt][2 * hf + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(row_m[mi][hf], mx * sl);
        const float base = m_new == -INFINITY ? 0.f : m_new;
        corr[mi][hf] = fast_exp2(row_m[mi][hf] - base);
        row_m[mi][hf] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float pv = fast_exp2(fmaf(s[mi][nt][2 * hf + e], sl, -base));
            s[mi][nt][2 * hf + e] = pv;
            sum += pv;
          }
        row_l[mi][hf] = row_l[mi][hf] * corr[mi][hf] + sum;
      }
    // Rescale O only when some row of the warp found a new maximum (warp-uniform branch): late
    // in a long row most tiles leave every maximum unchanged.
    if (__any_sync(0xffffffffu, corr[0][0] != 1.f || corr[0][1] != 1.f || corr[1][0] != 1.f ||
                                    corr[1][1] != 1.f)) {
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
          acc[mi][dt][0] *= corr[mi][0];
          acc[mi][dt][1] *= corr[mi][0];
          acc[mi][dt][2] *= corr[mi][1];
          acc[mi][dt][3] *= corr[mi][1];
        }
    }

    // O += P·V
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        a[mi][0] = Elem<T>::pack(s[mi][2 * kk][0], s[mi][2 * kk][1]);
        a[mi][1] = Elem<T>::pack(s[mi][2 * kk][2], s[mi][2 * kk][3]);
        a[mi][2] = Elem<T>::pack(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
        a[mi][3] = Elem<T>::pack(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dj = 0; dj < D / 16; ++dj) {
        uint32_t bv[4];
        ldmatrix_x4_trans(bv, smem_addr(sV + swz<D>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                    dj * 2 + (lane >> 4))));
#pragma unroll
        for (int mi = 0; mi < MT; ++mi) {
          mma_16816<T>(acc[mi][2 * dj], a[mi], bv[0], bv[1]);
          mma_16816<T>(acc[mi][2 * dj + 1], a[mi], bv[2], bv[3]);
        }
      }
    }
  }

  // Epilogue: O = acc / ℓ, LSE = (m + log2 ℓ)·ln 2. Rows that saw no key: O = 0, LSE = -inf.
  // Sigmoid and relu: O = acc (or acc / (ℓ + 1e-8)), LSE = ln ℓ.
  const bool weighted = GENERAL && (p.transform == PrefillTransform::sigmoid || p.transform == PrefillTransform::relu);
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      float l = row_l[mi][hf];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = weighted ? (p.normalize ? 1.f / (l + 1e-8f) : 1.f) : (l > 0.f ? 1.f / l : 0.f);
      const int row = m0 + warp * 32 + mi * 16 + g + 8 * hf;
      if (row < q_len) {
        T* orow = o + row * D;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
          *reinterpret_cast<uint32_t*>(orow + dt * 8 + 2 * t4) =
              Elem<T>::pack(acc[mi][dt][2 * hf] * inv, acc[mi][dt][2 * hf + 1] * inv);
        if (lse && t4 == 0)
          lse[row] = !(l > 0.f) ? -INFINITY
                     : weighted ? logf(l)
                                : (row_m[mi][hf] + __log2f(l)) * 0.69314718055994531f;
      }
    }
}

template <typename T, int D, bool MASKED, bool GENERAL>
cudaError_t launch_prefill(const PrefillParams& p, cudaStream_t stream) {
  constexpr PrefillTile tile = prefill_tile_policy(D, MASKED);
  constexpr int BM = tile.block_m, BN = tile.block_n, KV_STAGES = tile.kv_stages;
  static_assert(tile.warps * 32 == kThreads);
  const size_t smem = size_t(BM + 2 * KV_STAGES * BN) * D * sizeof(T);
  auto kern = sdpa_prefill_kernel<T, D, BM, BN, MASKED, KV_STAGES, GENERAL>;
  cudaError_t err =
      cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  const dim3 grid(unsigned((p.q_len + BM - 1) / BM), unsigned(p.q_heads), unsigned(p.batch));
  kern<<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t prefill_image_check() {
  cudaFuncAttributes attr{};
  return cudaFuncGetAttributes(&attr, sdpa_prefill_kernel<__nv_bfloat16, 128, 128, prefill_tile_policy(128, false).block_n, false,
                                                    prefill_tile_policy(128, false).kv_stages, false>);
}

namespace {

template <typename T, int D>
PrefillLaunchFn pick(bool masked, bool general) {
  if (general) return masked ? launch_prefill<T, D, true, true> : launch_prefill<T, D, false, true>;
  return masked ? launch_prefill<T, D, true, false> : launch_prefill<T, D, false, false>;
}

}  // namespace

PrefillLaunchFn prefill_select(ElemType elem, int head_dim, int v_dim, bool masked, PrefillTransform transform,
                               std::string* why) {
  if (v_dim != head_dim) {
    if (why) *why = "cuda sdpa prefill: v_dim must equal head_dim";
    return nullptr;
  }
  const bool bf = elem == ElemType::bf16, general = transform != PrefillTransform::softmax;
  switch (head_dim) {
    case 64:
      return bf ? pick<__nv_bfloat16, 64>(masked, general) : pick<__half, 64>(masked, general);
    case 128:
      return bf ? pick<__nv_bfloat16, 128>(masked, general) : pick<__half, 128>(masked, general);
    default:
      if (why) *why = "cuda sdpa prefill: head_dim " + std::to_string(head_dim) + " has no kernel (64, 128)";
      return nullptr;
  }
}

}  // namespace ab::cuda
