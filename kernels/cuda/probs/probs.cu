// Op 1's probabilities (probs.hpp): column mass, materialised P, P·V, on mma.sync m16n8k16.
//
// One CTA = 4 warps = 64 query rows of one (batch, q head), 16 rows a warp; key tiles of 64
// visited in kv_tile_walk's order (the tiles the mask leaves empty are never loaded, as in the
// prefill kernel). Scores: S = Q·Kᵀ with Q and K in swizzled shared memory read by ldmatrix,
// fp32 accumulation (the prefill kernel's fragment addressing). The mask is tested per element
// only in tiles classify_tile calls partial.
//   column_mass: p = exp2(s·scale·log2e − lse·log2e) from the earlier sdpa call's LSE (no
//     softmax statistics needed), summed over the warp's rows in registers (shuffles), over
//     the 4 warps in shared memory, then one atomicAdd per column per CTA and tile.
//   materialize: pass 1 the online row maximum and sum (FlashAttention's statistics), pass 2
//     recomputes S and stores p = exp2(s·sl − m) / ℓ; key tiles outside the walk get zeros.
//     Recomputing S costs 2·D FLOPs per pair against the 4 bytes of P written: cheaper than
//     storing S and reading it back.
//   apply: P is read from global memory straight into the A-operand layout (fp32, two rows and
//     four keys per thread and 16-key step), rounded to V's type; V via cp.async and
//     ldmatrix.trans; O += P·V in fp32. P·V at fp32 FMA speed would be compute-bound
//     (2·Dv FLOPs per 4-byte p); on the tensor cores it is bound by reading P.
#include <cmath>

#include "cuda/common/device_helpers.cuh"
#include "cuda/probs/probs.hpp"

namespace ab::cuda {
namespace {

using namespace dev;

constexpr int kThreads = 128;
constexpr int BM = kProbsBlockM;
constexpr int BN = kProbsBlockN;
static_assert(BM == 16 * (kThreads / 32), "each warp owns 16 query rows");
constexpr float kLog2e = 1.4426950408889634f;

// Rows [row0, row0 + ROWS) of a (len, D) tensor into a swizzled smem tile; rows at or past
// `len` become zeros (cp.async zero fill).
template <typename T, int D, int ROWS>
__device__ __forceinline__ void load_rows(T* smem, const T* g, int64_t row0, int64_t len, int tid) {
  constexpr int CPR = D / 8;             // 16-byte chunks per row
  constexpr int RSTEP = kThreads / CPR;  // rows one pass of the CTA covers
  static_assert(ROWS % RSTEP == 0);
  const int c = tid % CPR;
#pragma unroll
  for (int r = tid / CPR; r < ROWS; r += RSTEP) {
    const bool ok = row0 + r < len;
    const T* src = g + (ok ? (row0 + r) * D : 0) + c * 8;
    cp_async_16(smem_addr(smem + swz<D>(r, c)), src, ok);
  }
}

// The CTA's place: rows [m0, m0 + BM) of (b, h), absolute positions [qa0, qlast].
struct Block {
  int b, h, kvh;
  int64_t m0, q_off, qa0, qlast;
};

__device__ __forceinline__ Block block_of(const ProbsParams& p) {
  Block k;
  k.b = blockIdx.z;
  k.h = blockIdx.y;
  k.kvh = k.h / (p.q_heads / p.kv_heads);
  k.m0 = int64_t(blockIdx.x) * BM;
  k.q_off = p.kv_len - p.q_len;
  k.qa0 = k.m0 + k.q_off;
  k.qlast = imin(k.m0 + BM, p.q_len) - 1 + k.q_off;
  return k;
}

// S = Q·Kᵀ for the warp's 16 rows × BN keys: s[nt][0..1] row g, keys nt·8 + 2·t4 + {0, 1};
// s[nt][2..3] row g + 8.
template <typename T, int D>
__device__ __forceinline__ void scores(float (&s)[BN / 8][4], const T* sQ, const T* sK, int warp,
                                       int lane) {
#pragma unroll
  for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[nt][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
    ldmatrix_x4(a, smem_addr(sQ + swz<D>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4))));
#pragma unroll
    for (int nj = 0; nj < BN / 16; ++nj) {
      uint32_t bk[4];
      ldmatrix_x4(bk, smem_addr(sK + swz<D>(nj * 16 + (lane & 7) + ((lane >> 4) << 3),
                                            kk * 2 + ((lane >> 3) & 1))));
      mma_16816<T>(s[2 * nj], a, bk[0], bk[1]);
      mma_16816<T>(s[2 * nj + 1], a, bk[2], bk[3]);
    }
  }
}

// Masked entries of a partial tile (and keys past kv_len, rows past q_len) to -inf.
__device__ __forceinline__ void mask_scores(float (&s)[BN / 8][4], const ProbsParams& p,
                                            const Block& k, int64_t n0, int warp, int lane) {
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int64_t row = k.m0 + warp * 16 + g + 8 * hf;
    const int64_t qpos = row + k.q_off;
    const bool row_ok = row < p.q_len;
#pragma unroll
    for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t j = n0 + nt * 8 + 2 * t4 + e;
        if (!row_ok || !mask_allows(p.mask, qpos, j)) s[nt][2 * hf + e] = -INFINITY;
      }
  }
}

__device__ __forceinline__ bool tile_partial(const ProbsParams& p, const Block& k, int64_t n0) {
  // Rows past q_len only exist in the last query block: its tiles count as partial.
  return k.m0 + BM > p.q_len || classify_tile(p.mask, k.qa0, k.qlast, n0, n0 + BN) != kTileFull;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) column_mass_kernel(const ProbsParams p) {
  __shared__ __align__(128) T sQ[BM * D];
  __shared__ __align__(128) T sK[BN * D];
  __shared__ float sCol[kThreads / 32][BN];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const Block k = block_of(p);
  const T* q = static_cast<const T*>(p.q) + (int64_t(k.b) * p.q_heads + k.h) * p.q_len * D;
  const T* kp = static_cast<const T*>(p.k) + (int64_t(k.b) * p.kv_heads + k.kvh) * p.kv_len * D;
  const int64_t bh = int64_t(k.b) * p.q_heads + k.h;
  float* column = p.column + bh * p.kv_len;
  const KvTileWalk walk = kv_tile_walk(p.mask, k.qa0, k.qlast, BN);
  const int64_t n_tiles = walk.count();
  if (n_tiles == 0) return;  // the column was cleared before the launch

  // The rows' LSE in log2 units; a row without probability mass (past q_len, or no visible
  // key: LSE −inf) contributes nothing.
  float lse2[2];
  bool row_ok[2];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int64_t row = k.m0 + warp * 16 + g + 8 * hf;
    const float l = row < p.q_len ? p.lse[bh * p.q_len + row] : -INFINITY;
    row_ok[hf] = l != -INFINITY;
    lse2[hf] = row_ok[hf] ? l * kLog2e : 0.f;
  }

  load_rows<T, D, BM>(sQ, q, k.m0, p.q_len, tid);
  cp_async_commit();
#pragma unroll 1
  for (int64_t it = 0; it < n_tiles; ++it) {
    const int64_t n0 = walk.tile(it) * BN;
    __syncthreads();  // every warp is done with the previous sK and sCol
    load_rows<T, D, BN>(sK, kp, n0, p.kv_len, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float s[BN / 8][4];
    scores<T, D>(s, sQ, sK, warp, lane);
    if (tile_partial(p, k, n0)) mask_scores(s, p, k, n0, warp, lane);
    // Column sums of the thread's two rows, then over the 8 row groups of the warp.
    float cs[BN / 8][2];
#pragma unroll
    for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float sum = 0.f;
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const float x = s[nt][2 * hf + e];
          // Masked (-inf) entries and empty rows weigh exactly 0 (no exp2(inf - inf)).
          if (row_ok[hf] && x != -INFINITY) sum += fast_exp2(fmaf(x, p.scale_log2, -lse2[hf]));
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 4);
        sum += __shfl_xor_sync(0xffffffffu, sum, 8);
        sum += __shfl_xor_sync(0xffffffffu, sum, 16);
        cs[nt][e] = sum;
      }
    if (g == 0) {
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) sCol[warp][nt * 8 + 2 * t4 + e] = cs[nt][e];
    }
    __syncthreads();
    if (tid < BN) {
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kThreads / 32; ++w) sum += sCol[w][tid];
      if (n0 + tid < p.kv_len && sum != 0.f) atomicAdd(column + n0 + tid, sum);
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) materialize_kernel(const ProbsParams p) {
  __shared__ __align__(128) T sQ[BM * D];
  __shared__ __align__(128) T sK[BN * D];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const Block k = block_of(p);
  const T* q = static_cast<const T*>(p.q) + (int64_t(k.b) * p.q_heads + k.h) * p.q_len * D;
  const T* kp = static_cast<const T*>(p.k) + (int64_t(k.b) * p.kv_heads + k.kvh) * p.kv_len * D;
  float* probs = p.probs + (int64_t(k.b) * p.q_heads + k.h) * p.q_len * p.kv_len;
  const KvTileWalk walk = kv_tile_walk(p.mask, k.qa0, k.qlast, BN);
  const int64_t n_tiles = walk.count();

  // Key tiles outside the walk: zeros, coalesced over the CTA's rows.
  const int64_t all_tiles = (p.kv_len + BN - 1) / BN;
  const int64_t rows = imin(BM, p.q_len - k.m0);
#pragma unroll 1
  for (int64_t t = 0; t < all_tiles; ++t) {
    if (t < walk.n_sink || (t >= walk.first && t < walk.last)) continue;
    for (int idx = tid; idx < BM * BN; idx += kThreads) {
      const int r = idx / BN, c = idx % BN;
      const int64_t j = t * BN + c;
      if (r < rows && j < p.kv_len) probs[(k.m0 + r) * p.kv_len + j] = 0.f;
    }
  }
  if (n_tiles == 0) return;

  load_rows<T, D, BM>(sQ, q, k.m0, p.q_len, tid);
  cp_async_commit();
  // Pass 1: the row maximum m (log2 units, scale folded in) and ℓ = Σ exp2(x − m), online.
  // The thread keeps its partial ℓ over its keys; m is shared by the 4 threads of a row.
  float row_m[2] = {-INFINITY, -INFINITY}, row_l[2] = {0.f, 0.f};
#pragma unroll 1
  for (int64_t it = 0; it < n_tiles; ++it) {
    const int64_t n0 = walk.tile(it) * BN;
    __syncthreads();
    load_rows<T, D, BN>(sK, kp, n0, p.kv_len, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float s[BN / 8][4];
    scores<T, D>(s, sQ, sK, warp, lane);
    if (tile_partial(p, k, n0)) mask_scores(s, p, k, n0, warp, lane);
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * hf], s[nt][2 * hf + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(row_m[hf], mx * p.scale_log2);
      // No visible key yet: m stays -inf and its base 0 keeps exp2(-inf - base) = 0, not NaN.
      const float base = m_new == -INFINITY ? 0.f : m_new;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) sum += fast_exp2(fmaf(s[nt][2 * hf + e], p.scale_log2, -base));
      row_l[hf] = row_l[hf] * fast_exp2(row_m[hf] - base) + sum;
      row_m[hf] = m_new;
    }
  }
  float inv_l[2];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    float l = row_l[hf];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv_l[hf] = l > 0.f ? 1.f / l : 0.f;  // IEEE division: once per row
    if (!(l > 0.f)) row_m[hf] = 0.f;      // a row without visible keys: all zeros below
  }
  // Pass 2: P = exp2(x − m) / ℓ, stored by the thread's fragment (fp32 rows of kv_len, any
  // alignment: scalar stores).
#pragma unroll 1
  for (int64_t it = 0; it < n_tiles; ++it) {
    const int64_t n0 = walk.tile(it) * BN;
    __syncthreads();
    load_rows<T, D, BN>(sK, kp, n0, p.kv_len, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float s[BN / 8][4];
    scores<T, D>(s, sQ, sK, warp, lane);
    if (tile_partial(p, k, n0)) mask_scores(s, p, k, n0, warp, lane);
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int64_t row = k.m0 + warp * 16 + g + 8 * hf;
      if (row >= p.q_len) continue;
      float* prow = probs + row * p.kv_len;
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t j = n0 + nt * 8 + 2 * t4 + e;
          if (j < p.kv_len)
            prow[j] = fast_exp2(fmaf(s[nt][2 * hf + e], p.scale_log2, -row_m[hf])) * inv_l[hf];
        }
    }
  }
}

template <typename T, int DV>
__global__ void __launch_bounds__(kThreads) apply_kernel(const ProbsParams p) {
  constexpr int DT = DV / 8;  // n8 tiles of O
  __shared__ __align__(128) T sV[BN * DV];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const Block k = block_of(p);
  const int pb = p.probs_batch == 1 ? 0 : k.b;
  const float* probs = p.probs + (int64_t(pb) * p.q_heads + k.h) * p.q_len * p.kv_len;
  const T* v = static_cast<const T*>(p.v) + (int64_t(k.b) * p.kv_heads + k.kvh) * p.kv_len * DV;
  T* o = static_cast<T*>(p.o) + (int64_t(k.b) * p.q_heads + k.h) * p.q_len * DV;
  const KvTileWalk walk = kv_tile_walk(p.mask, k.qa0, k.qlast, BN);
  const int64_t n_tiles = walk.count();

  float acc[DT][4];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[dt][e] = 0.f;
  const int64_t r0 = k.m0 + warp * 16 + g, r1 = r0 + 8;
  const bool ok0 = r0 < p.q_len, ok1 = r1 < p.q_len;
  const float* prow0 = probs + (ok0 ? r0 : 0) * p.kv_len;
  const float* prow1 = probs + (ok1 ? r1 : 0) * p.kv_len;

#pragma unroll 1
  for (int64_t it = 0; it < n_tiles; ++it) {
    const int64_t n0 = walk.tile(it) * BN;
    __syncthreads();  // every warp is done with the previous sV
    load_rows<T, DV, BN>(sV, v, n0, p.kv_len, tid);
    cp_async_commit();
    // P for the warp's rows while V streams in, as A fragments: a[kk][0] row g keys
    // kk·16 + 2·t4 + {0,1}, a[kk][1] row g + 8, a[kk][2] / a[kk][3] the same 8 keys on.
    uint32_t a[BN / 16][4];
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t j = n0 + kk * 16 + half * 8 + 2 * t4;
        const bool j0 = j < p.kv_len, j1 = j + 1 < p.kv_len;
        const float x00 = ok0 && j0 ? __ldg(prow0 + j) : 0.f;
        const float x01 = ok0 && j1 ? __ldg(prow0 + j + 1) : 0.f;
        const float x10 = ok1 && j0 ? __ldg(prow1 + j) : 0.f;
        const float x11 = ok1 && j1 ? __ldg(prow1 + j + 1) : 0.f;
        a[kk][2 * half] = Elem<T>::pack(x00, x01);
        a[kk][2 * half + 1] = Elem<T>::pack(x10, x11);
      }
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
#pragma unroll
      for (int dj = 0; dj < DV / 16; ++dj) {
        uint32_t bv[4];
        ldmatrix_x4_trans(bv, smem_addr(sV + swz<DV>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                     dj * 2 + (lane >> 4))));
        mma_16816<T>(acc[2 * dj], a[kk], bv[0], bv[1]);
        mma_16816<T>(acc[2 * dj + 1], a[kk], bv[2], bv[3]);
      }
  }
  // Every row is written, also rows that see no key (O = 0, as the CPU's).
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int64_t row = hf ? r1 : r0;
    if (row >= p.q_len) continue;
    T* orow = o + row * DV;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
      *reinterpret_cast<uint32_t*>(orow + dt * 8 + 2 * t4) = Elem<T>::pack(acc[dt][2 * hf], acc[dt][2 * hf + 1]);
  }
}

dim3 grid_of(const ProbsParams& p) {
  return dim3(unsigned((p.q_len + BM - 1) / BM), unsigned(p.q_heads), unsigned(p.batch));
}

template <typename T, int D>
cudaError_t launch_column_mass(const ProbsParams& p, cudaStream_t stream) {
  const size_t bytes = size_t(p.batch) * size_t(p.q_heads) * size_t(p.kv_len) * sizeof(float);
  if (bytes == 0) return cudaSuccess;
  cudaError_t err = cudaMemsetAsync(p.column, 0, bytes, stream);
  if (err != cudaSuccess || p.q_len == 0) return err;
  column_mass_kernel<T, D><<<grid_of(p), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, int D>
cudaError_t launch_materialize(const ProbsParams& p, cudaStream_t stream) {
  if (p.q_len == 0 || p.kv_len == 0 || p.batch == 0) return cudaSuccess;
  materialize_kernel<T, D><<<grid_of(p), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, int DV>
cudaError_t launch_apply(const ProbsParams& p, cudaStream_t stream) {
  if (p.q_len == 0 || p.batch == 0) return cudaSuccess;
  apply_kernel<T, DV><<<grid_of(p), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, int D>
ProbsLaunchFn pick(ProbsKind op) {
  switch (op) {
    case ProbsKind::column_mass: return launch_column_mass<T, D>;
    case ProbsKind::materialize: return launch_materialize<T, D>;
    case ProbsKind::apply: return launch_apply<T, D>;
  }
  return nullptr;
}

}  // namespace

ProbsLaunchFn probs_select(ProbsKind op, ElemType elem, int head_dim, int v_dim, std::string* why) {
  // apply reads P and V only: its width is v_dim; the others read Q and K.
  const int d = op == ProbsKind::apply ? v_dim : head_dim;
  const char* name = op == ProbsKind::apply ? "v_dim" : "head_dim";
  const bool bf = elem == ElemType::bf16;
  switch (d) {
    case 64: return bf ? pick<__nv_bfloat16, 64>(op) : pick<__half, 64>(op);
    case 128: return bf ? pick<__nv_bfloat16, 128>(op) : pick<__half, 128>(op);
    default:
      if (why)
        *why = std::string("cuda attention probabilities: ") + name + " " + std::to_string(d) +
               " has no kernel (64, 128: the tensor-core tiles and the 16-byte row chunks of the "
               "shared-memory layout)";
      return nullptr;
  }
}

double probs_executed_pairs(ProbsKind op, const MaskDesc& mask, int64_t q_len, int64_t kv_len) {
  if (op == ProbsKind::apply || q_len <= 0 || kv_len <= 0) return 0.0;
  const int64_t q_off = kv_len - q_len;
  double pairs = 0;
  for (int64_t m0 = 0; m0 < q_len; m0 += BM) {
    const int64_t rows = imin(BM, q_len - m0);
    const KvTileWalk w = kv_tile_walk(mask, m0 + q_off, m0 + rows - 1 + q_off, BN);
    // The two runs of tiles, [0, n_sink) and [first, last), keys clipped to kv_len.
    const int64_t keys = imin(w.n_sink * BN, kv_len) +
                         (w.last > w.first ? imin(w.last * BN, kv_len) - w.first * BN : 0);
    pairs += double(rows) * double(keys);
  }
  return op == ProbsKind::materialize ? 2.0 * pairs : pairs;
}

}  // namespace ab::cuda
