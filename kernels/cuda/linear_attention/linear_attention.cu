// Op 4 on the GPU: Lightning Attention-2's block algorithm (Qin et al., arXiv 2401.04658,
// Algorithm 1), the same computation as kernels/cpu/linear_attention.cpp's chunked form.
//
// One CTA per (value tile of 64 columns, query head, batch) walks its head's chunks of 64
// rows in order, carrying the d×64 slice of the state S = Σ_j λ^(last-j) k̂_jᵀ v_j in fp32
// shared memory, with ksum = Σ_j λ^(last-j) k̂_j (the denominator's state) and vsum = Σ_j v_j
// (MALA's mean term). Per chunk t of rows at positions p0 .. p0+nb-1 and the keys at the same
// positions (causal, bottom-right aligned):
//   inter  diag(λ^(r+1)) Q̂_t S, and diag(λ^(r+1)) Q̂_t ksum       fp32 FMA (S stays fp32)
//   intra  ((Q̂_t K̂_tᵀ) ⊙ D) V_t, D[r,c] = λ^(r-c) (c <= r)        mma.sync m16n8k16, the
//          masked scores split into two input-type parts (hi + residue) for ·V
//   update S <- λ^nb S + (K̂_t ⊙ λ^(nb-1-c))ᵀ V_t, ksum alike, vsum += Σ V_t   fp32 FMA
// Non-causal: every key enters the state first, then every chunk of rows takes the inter
// term alone. Decode: the state of the prefix [0, P) comes from state_in or is accumulated
// from k, v; state_out receives the final state. The feature map is applied as the q and k
// tiles are loaded (φ in fp32, rounded to the input type: the operands the tensor cores see).
//
// Threads: 4 warps, 16 rows of the chunk each (the m16 of the mma); the state update gives
// each thread a (d/16) × 8 block of S.
#include "cuda/linear_attention/linear_attention.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/common/device_helpers.cuh"

namespace ab::cuda {
namespace {

using namespace dev;

constexpr int BM = kLinearChunk;    // rows and keys per chunk
constexpr int DVT = kLinearDvTile;  // value columns per CTA
constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

template <int D>
constexpr size_t chunked_smem_bytes() {
  // sQ, sK (BM × (D+8)), sV (BM × (DVT+8)) in the input type; S (D × DVT), ksum (D), vsum
  // (DVT) and φ(K) (BM × D) in fp32. The +8 pad moves consecutive rows by 16 bytes mod 128:
  // the 8 row addresses of an ldmatrix hit distinct banks.
  return size_t(2) * (2 * BM * (D + 8) + BM * (DVT + 8)) + size_t(4) * (D * DVT + D + DVT + BM * D);
}

// φ in fp32 (core/ops_linear.hpp; the CPU's forms, kernels/cpu/linear_attention.cpp).
__device__ __forceinline__ float feature(LinFeature f, float x) {
  switch (f) {
    case LinFeature::identity: return x;
    case LinFeature::elu: return fmaxf(x, 0.f) + expf(fminf(x, 0.f)) - 1.f;
    case LinFeature::elu_plus_one: return fmaxf(x, 0.f) + expf(fminf(x, 0.f));
    case LinFeature::relu: return fmaxf(x, 0.f);
    case LinFeature::silu: return x / (1.f + expf(-x));
  }
  return x;
}

// Rows [0, nb) of a BM-row tile (COLS columns, row stride ld in global memory) into shared
// memory (row stride LDS), φ applied; rows past nb are zero (φ(0) need not be 0: elu+1).
template <typename T, int COLS, int LDS>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t ld, int nb, LinFeature f) {
  constexpr int CH = COLS / 8;
  for (int idx = threadIdx.x; idx < BM * CH; idx += kThreads) {
    const int r = idx / CH, c = (idx % CH) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < nb) {
      v = *reinterpret_cast<const uint4*>(src + int64_t(r) * ld + c);
      if (f != LinFeature::identity) {
        uint32_t* w = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 x = Elem<T>::unpack(w[e]);
          w[e] = Elem<T>::pack(feature(f, x.x), feature(f, x.y));
        }
      }
    }
    *reinterpret_cast<uint4*>(dst + r * LDS + c) = v;
  }
}

// The key tile: φ(k) rounded to the input type (sK, the mma operand) and in fp32 (sKf, what
// the state accumulates: the state is a sum over every key so far, and rounding φ(k) would
// put the input type's error into all of it, unlike the CPU's fp32 state).
template <typename T, int D>
__device__ __forceinline__ void load_keys(T* sK, float* sKf, const T* src, int nb, LinFeature f) {
  constexpr int CH = D / 8, LDS = D + 8;
  for (int idx = threadIdx.x; idx < BM * CH; idx += kThreads) {
    const int r = idx / CH, c = (idx % CH) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    float x[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] = 0.f;
    if (r < nb) {
      v = *reinterpret_cast<const uint4*>(src + int64_t(r) * D + c);
      uint32_t* w = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 y = Elem<T>::unpack(w[e]);
        x[2 * e] = feature(f, y.x);
        x[2 * e + 1] = feature(f, y.y);
        if (f != LinFeature::identity) w[e] = Elem<T>::pack(x[2 * e], x[2 * e + 1]);
      }
    }
    *reinterpret_cast<uint4*>(sK + r * LDS + c) = v;
    *reinterpret_cast<float4*>(sKf + r * D + c) = make_float4(x[0], x[1], x[2], x[3]);
    *reinterpret_cast<float4*>(sKf + r * D + c + 4) = make_float4(x[4], x[5], x[6], x[7]);
  }
}

// S <- λ^nb S + Σ_{j<nb} λ^(nb-1-j) k̂_jᵀ v_j over the chunk in sKf/sV; ksum and vsum alike.
// Thread t owns rows (t/8)·D/16 .. +D/16 and columns (t%8)·8 .. +8 of S.
template <typename T, int D>
__device__ __forceinline__ void update_state(const float* sKf, const T* sV, float* sS, float* sKs,
                                             float* sVs, int nb, float nl2) {
  constexpr int LDV = DVT + 8, RPT = D / 16;
  static_assert(RPT % 4 == 0 && (D / RPT) * (DVT / 8) == kThreads, "thread tiling of S");
  const int tid = threadIdx.x;
  const int k0 = (tid >> 3) * RPT, c0 = (tid & 7) * 8;
  const float all = exp2f(nl2 * float(nb));  // λ^nb (1 without decay: nl2 = 0)
  float acc[RPT][8];
#pragma unroll
  for (int r = 0; r < RPT; ++r)
#pragma unroll
    for (int c = 0; c < 8; ++c) acc[r][c] = sS[(k0 + r) * DVT + c0 + c] * all;
#pragma unroll 2
  for (int j = 0; j < nb; ++j) {
    const float w = exp2f(nl2 * float(nb - 1 - j));
    float kf[RPT], vf[8];
#pragma unroll
    for (int r = 0; r < RPT; r += 4) {
      const float4 x = *reinterpret_cast<const float4*>(sKf + j * D + k0 + r);
      kf[r] = x.x * w;
      kf[r + 1] = x.y * w;
      kf[r + 2] = x.z * w;
      kf[r + 3] = x.w * w;
    }
    const uint4 vv = *reinterpret_cast<const uint4*>(sV + j * LDV + c0);
    const uint32_t* vw = reinterpret_cast<const uint32_t*>(&vv);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float2 x = Elem<T>::unpack(vw[c]);
      vf[2 * c] = x.x;
      vf[2 * c + 1] = x.y;
    }
#pragma unroll
    for (int r = 0; r < RPT; ++r)
#pragma unroll
      for (int c = 0; c < 8; ++c) acc[r][c] = fmaf(kf[r], vf[c], acc[r][c]);
  }
#pragma unroll
  for (int r = 0; r < RPT; ++r)
#pragma unroll
    for (int c = 0; c < 8; ++c) sS[(k0 + r) * DVT + c0 + c] = acc[r][c];
  // ksum (D threads) and vsum (DVT threads); D, DVT <= kThreads.
  if (tid < D) {
    float s = sKs[tid] * all;
    for (int j = 0; j < nb; ++j) s = fmaf(exp2f(nl2 * float(nb - 1 - j)), sKf[j * D + tid], s);
    sKs[tid] = s;
  }
  if (tid < DVT) {
    float s = sVs[tid];
    for (int j = 0; j < nb; ++j) s += float(sV[j * LDV + tid]);
    sVs[tid] = s;
  }
}

// The output rows [0, nb) of one chunk (this CTA's 64 value columns): inter term, and for a
// causal chunk the intra term, then the normaliser; written to o (input type) or o32 (fp32,
// an output norm follows). Rows i0 + r of the head, at positions p0 + r.
template <typename T, int D>
__device__ __forceinline__ void chunk_output(const LinearParams& p, const T* sQ, const T* sK,
                                             const T* sV, const float* sS, const float* sKs,
                                             const float* sVs, int nb, int64_t i0, int64_t p0,
                                             int64_t unit, int dv0, float nl2) {
  constexpr int LDQ = D + 8, LDV = DVT + 8, NT = DVT / 8, KT = BM / 8;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
  if (warp * 16 >= nb) return;  // warp-uniform: this warp's rows are all past the chunk
  const int r0 = warp * 16 + g;  // this thread's rows: r0 and r0 + 8
  const bool causal = p.causal;
  const bool need_den = p.normalizer != LinNormalizer::none;
  const bool mala = p.normalizer == LinNormalizer::mala;

  // Inter: Q̂ S and Q̂ ksum in fp32 (the state is never rounded to the input type).
  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = 0.f;
  float den_inter[2] = {0.f, 0.f};
#pragma unroll 4
  for (int k = 0; k < D; ++k) {
    const float qa = float(sQ[r0 * LDQ + k]), qb = float(sQ[(r0 + 8) * LDQ + k]);
    const float* srow = sS + k * DVT + 2 * t4;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const float2 s2 = *reinterpret_cast<const float2*>(srow + nt * 8);
      acc[nt][0] = fmaf(qa, s2.x, acc[nt][0]);
      acc[nt][1] = fmaf(qa, s2.y, acc[nt][1]);
      acc[nt][2] = fmaf(qb, s2.x, acc[nt][2]);
      acc[nt][3] = fmaf(qb, s2.y, acc[nt][3]);
    }
    if (need_den) {
      const float ks = sKs[k];
      den_inter[0] = fmaf(qa, ks, den_inter[0]);
      den_inter[1] = fmaf(qb, ks, den_inter[1]);
    }
  }

  float den_intra[2] = {0.f, 0.f};
  float vs[NT][4];  // MALA: Σ v over the chunk's keys up to each row (causal)
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) vs[nt][e] = 0.f;
  if (causal) {
    // The state stands for the keys before p0: row r weighs them by λ^(r+1) more.
    if (p.decay) {
      const float fa = exp2f(nl2 * float(r0 + 1)), fb = exp2f(nl2 * float(r0 + 9));
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        acc[nt][0] *= fa;
        acc[nt][1] *= fa;
        acc[nt][2] *= fb;
        acc[nt][3] *= fb;
      }
      den_inter[0] *= fa;
      den_inter[1] *= fb;
    }
    // Intra: scores Q̂ K̂ᵀ of this warp's 16 rows × the chunk's 64 keys on the tensor cores.
    float s[KT][4];
#pragma unroll
    for (int nt = 0; nt < KT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4(a, smem_addr(sQ + (warp * 16 + (lane & 15)) * LDQ + kk * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int nj = 0; nj < BM / 16; ++nj) {
        uint32_t bk[4];
        ldmatrix_x4(bk, smem_addr(sK + (nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDQ + kk * 16 +
                                  ((lane >> 3) & 1) * 8));
        mma_16816<T>(s[2 * nj], a, bk[0], bk[1]);
        mma_16816<T>(s[2 * nj + 1], a, bk[2], bk[3]);
      }
    }
    // Causal mask and decay λ^(r-c); the denominator's intra part from the fp32 scores.
#pragma unroll
    for (int nt = 0; nt < KT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = r0 + (e >> 1) * 8, c = nt * 8 + 2 * t4 + (e & 1);
        const float w = c > r ? 0.f : (p.decay ? exp2f(nl2 * float(r - c)) : 1.f);
        s[nt][e] *= w;
        den_intra[e >> 1] += s[nt][e];
      }
    // O += P V with P = P_hi + P_lo, both in the input type (P_lo = the rounding residue):
    // unlike softmax weights, these scores are not bounded by 1, and MALA subtracts z·mean(v)
    // from (1 + 1/z)(s/n)·P·V with z ~ s·q̂·k̂ ~ 10: P rounded once to bf16 (2^-9) gave errors
    // of z·2^-9 in its first rows. Two products leave ~2^-17 of P; the tensor cores are not
    // this kernel's bottleneck (the fp32 state terms are).
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) {
      uint32_t a[4], lo[4];
      auto split = [](float x0, float x1, uint32_t& hi_out, uint32_t& lo_out) {
        hi_out = Elem<T>::pack(x0, x1);
        const float2 h2 = Elem<T>::unpack(hi_out);
        lo_out = Elem<T>::pack(x0 - h2.x, x1 - h2.y);
      };
      split(s[2 * kk][0], s[2 * kk][1], a[0], lo[0]);
      split(s[2 * kk][2], s[2 * kk][3], a[1], lo[1]);
      split(s[2 * kk + 1][0], s[2 * kk + 1][1], a[2], lo[2]);
      split(s[2 * kk + 1][2], s[2 * kk + 1][3], a[3], lo[3]);
      // MALA: the same product with the 0/1 causal mask gives the rows' Σ v (exact in fp32).
      uint32_t m[4];
      if (mala) {
        const int c = kk * 16 + 2 * t4;
        m[0] = Elem<T>::pack(c <= r0 ? 1.f : 0.f, c + 1 <= r0 ? 1.f : 0.f);
        m[1] = Elem<T>::pack(c <= r0 + 8 ? 1.f : 0.f, c + 1 <= r0 + 8 ? 1.f : 0.f);
        m[2] = Elem<T>::pack(c + 8 <= r0 ? 1.f : 0.f, c + 9 <= r0 ? 1.f : 0.f);
        m[3] = Elem<T>::pack(c + 8 <= r0 + 8 ? 1.f : 0.f, c + 9 <= r0 + 8 ? 1.f : 0.f);
      }
#pragma unroll
      for (int dj = 0; dj < DVT / 16; ++dj) {
        uint32_t bv[4];
        ldmatrix_x4_trans(bv, smem_addr(sV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDV +
                                        dj * 16 + (lane >> 4) * 8));
        mma_16816<T>(acc[2 * dj], a, bv[0], bv[1]);
        mma_16816<T>(acc[2 * dj + 1], a, bv[2], bv[3]);
        mma_16816<T>(acc[2 * dj], lo, bv[0], bv[1]);
        mma_16816<T>(acc[2 * dj + 1], lo, bv[2], bv[3]);
        if (mala) {
          mma_16816<T>(vs[2 * dj], m, bv[0], bv[1]);
          mma_16816<T>(vs[2 * dj + 1], m, bv[2], bv[3]);
        }
      }
    }
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      den_intra[hf] += __shfl_xor_sync(0xffffffffu, den_intra[hf], 1);
      den_intra[hf] += __shfl_xor_sync(0xffffffffu, den_intra[hf], 2);
    }
  }

  // Epilogue: the normaliser (core/ops_linear.hpp), then the store.
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int r = r0 + 8 * hf;
    if (r >= nb) continue;
    const int64_t row = unit * p.q_len + i0 + r;
    const float den = den_inter[hf] + den_intra[hf];
    float mul = 1.f, off = 0.f;
    if (p.normalizer == LinNormalizer::denominator) {
      mul = 1.f / (den + p.eps);
    } else if (mala) {
      const float n = causal ? float(p0 + r + 1) : float(p.kv_len);
      const float sn = p.mala_scale / n, z = sn * den;
      mul = (1.f + 1.f / z) * sn;
      off = z / n;
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int c = nt * 8 + 2 * t4;
      float x0 = acc[nt][2 * hf] * mul, x1 = acc[nt][2 * hf + 1] * mul;
      if (mala) {
        x0 -= off * (sVs[c] + vs[nt][2 * hf]);
        x1 -= off * (sVs[c + 1] + vs[nt][2 * hf + 1]);
      }
      const int64_t at = row * p.v_dim + dv0 + c;
      if (p.o32) *reinterpret_cast<float2*>(p.o32 + at) = make_float2(x0, x1);
      else *reinterpret_cast<uint32_t*>(static_cast<T*>(p.o) + at) = Elem<T>::pack(x0, x1);
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    linear_chunked_kernel(const __grid_constant__ LinearParams p) {
  constexpr int LDQ = D + 8, LDV = DVT + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + BM * LDQ;
  T* sV = sK + BM * LDQ;
  float* sS = reinterpret_cast<float*>(sV + BM * LDV);
  float* sKs = sS + D * DVT;
  float* sVs = sKs + D;
  float* sKf = sVs + DVT;

  const int tid = threadIdx.x;
  const int dv0 = blockIdx.x * DVT, h = blockIdx.y, b = blockIdx.z;
  const int kh = h / (p.q_heads / p.kv_heads);
  const int dv = p.v_dim;
  const int64_t unit = int64_t(b) * p.q_heads + h;
  const T* Q = static_cast<const T*>(p.q) + unit * p.q_len * D;
  const T* K = static_cast<const T*>(p.k) + (int64_t(b) * p.kv_heads + kh) * p.kv_len * D;
  const T* V = static_cast<const T*>(p.v) + (int64_t(b) * p.kv_heads + kh) * p.kv_len * dv + dv0;
  const float nl2 = p.decay ? -p.slopes[h] * kLog2e : 0.f;  // log2 λ

  // The state: state_in's slice, or empty.
  for (int i = tid; i < D * DVT; i += kThreads)
    sS[i] = p.in_kv ? p.in_kv[(unit * D + i / DVT) * dv + dv0 + i % DVT] : 0.f;
  for (int i = tid; i < D; i += kThreads) sKs[i] = p.in_ksum ? p.in_ksum[unit * D + i] : 0.f;
  for (int i = tid; i < DVT; i += kThreads) sVs[i] = p.in_vsum ? p.in_vsum[unit * dv + dv0 + i] : 0.f;

  // Keys [j0, j1) into the state, a chunk at a time.
  auto accumulate = [&](int64_t j0, int64_t j1) {
    for (int64_t c0 = j0; c0 < j1; c0 += BM) {
      const int nb = int(j1 - c0 < BM ? j1 - c0 : BM);
      load_keys<T, D>(sK, sKf, K + c0 * D, nb, p.feature);
      load_tile<T, DVT, LDV>(sV, V + c0 * dv, dv, nb, LinFeature::identity);
      __syncthreads();
      update_state<T, D>(sKf, sV, sS, sKs, sVs, nb, nl2);
      __syncthreads();
    }
  };

  const int64_t P = p.first;
  if (!p.in_kv) accumulate(0, P);
  if (!p.build_state) {
    if (!p.causal) accumulate(P, p.kv_len);
    for (int64_t i0 = 0; i0 < p.q_len; i0 += BM) {
      const int nb = int(p.q_len - i0 < BM ? p.q_len - i0 : BM);
      const int64_t p0 = P + i0;
      load_tile<T, D, LDQ>(sQ, Q + i0 * D, D, nb, p.feature);
      if (p.causal) {
        load_keys<T, D>(sK, sKf, K + p0 * D, nb, p.feature);
        load_tile<T, DVT, LDV>(sV, V + p0 * dv, dv, nb, LinFeature::identity);
      }
      __syncthreads();
      chunk_output<T, D>(p, sQ, sK, sV, sS, sKs, sVs, nb, i0, p0, unit, dv0, nl2);
      __syncthreads();  // every warp has read S, ksum, vsum and the tiles
      if (p.causal) {
        update_state<T, D>(sKf, sV, sS, sKs, sVs, nb, nl2);
        __syncthreads();
      }
    }
  }
  __syncthreads();
  if (p.out_kv) {
    // state_out must not alias state_in: other value tiles of this head still read its ksum.
    for (int i = tid; i < D * DVT; i += kThreads) p.out_kv[(unit * D + i / DVT) * dv + dv0 + i % DVT] = sS[i];
    for (int i = tid; i < DVT; i += kThreads) p.out_vsum[unit * dv + dv0 + i] = sVs[i];
    // ksum is kept only for the normalisers that use it (zeros with `none`, as the op says).
    if (blockIdx.x == 0)
      for (int i = tid; i < D; i += kThreads)
        p.out_ksum[unit * D + i] = p.normalizer == LinNormalizer::none ? 0.f : sKs[i];
  }
}

// One warp per norm group: mean (layer), then the centred mean square, then the scaled store.
template <typename T>
__global__ void __launch_bounds__(256) linear_norm_kernel(const __grid_constant__ LinearNormParams p) {
  const int64_t grp = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5);
  if (grp >= p.groups) return;
  const int lane = threadIdx.x & 31;
  const int64_t base = (grp / p.inner_count) * p.outer_stride + (grp % p.inner_count) * p.width;
  const int n = p.segments * p.width;
  auto at = [&](int e) { return base + int64_t(e / p.width) * p.seg_stride + e % p.width; };
  float mean = 0.f;
  if (p.norm == LinOutputNorm::layer) {
    float s = 0.f;
    for (int e = lane; e < n; e += 32) s += p.in[at(e)];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    mean = s / float(n);
  }
  float sq = 0.f;
  for (int e = lane; e < n; e += 32) {
    const float x = p.in[at(e)] - mean;
    sq = fmaf(x, x, sq);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
  const float inv = 1.f / sqrtf(sq / float(n) + p.eps);
  T* out = static_cast<T*>(p.out);
  for (int e = lane; e < n; e += 32) out[at(e)] = T((p.in[at(e)] - mean) * inv);
}

template <typename T, int D>
cudaError_t launch_chunked(const LinearParams& p, cudaStream_t stream) {
  constexpr size_t smem = chunked_smem_bytes<D>();
  const cudaError_t e =
      cudaFuncSetAttribute(linear_chunked_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e != cudaSuccess) return e;
  const dim3 grid(unsigned(p.v_dim / DVT), unsigned(p.q_heads), unsigned(p.batch));
  linear_chunked_kernel<T, D><<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

std::string linear_refusal(int head_dim, int v_dim) {
  if (head_dim != 64 && head_dim != 128)
    return "cuda linear attention: head_dim " + std::to_string(head_dim) + " has no kernel (64, 128)";
  if (v_dim != 64 && v_dim != 128)
    return "cuda linear attention: v_dim " + std::to_string(v_dim) + " has no kernel (64, 128)";
  return "";
}

cudaError_t linear_attention_launch(const LinearParams& p, cudaStream_t stream) {
  const bool bf = p.elem == ElemType::bf16;
  if (p.head_dim == 64) return bf ? launch_chunked<__nv_bfloat16, 64>(p, stream) : launch_chunked<__half, 64>(p, stream);
  if (p.head_dim == 128)
    return bf ? launch_chunked<__nv_bfloat16, 128>(p, stream) : launch_chunked<__half, 128>(p, stream);
  return cudaErrorInvalidValue;
}

cudaError_t linear_norm_launch(const LinearNormParams& p, cudaStream_t stream) {
  if (p.groups <= 0) return cudaSuccess;
  const unsigned blocks = unsigned((p.groups + 7) / 8);
  if (p.elem == ElemType::bf16) linear_norm_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(p);
  else linear_norm_kernel<__half><<<blocks, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace ab::cuda
