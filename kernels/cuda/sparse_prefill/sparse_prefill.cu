// Sparse prefill SDPA (op 2) on mma.sync m16n8k16: FlashAttention-2's online softmax over the
// keys a CSR list names, on the dense prefill kernel's machinery (device_helpers.cuh: swizzled
// tiles, cp.async with zero fill, ldmatrix, S accumulators reused as P operands).
//
// One CTA = 2 warps = 64 query rows of one (batch, q head, list); a list's rows are its query
// block, its contiguous query group or its explicit row list, taken in 64-row chunks (a group's
// CTAs share its chunks). The list is read as a key stream — a block list is k_block
// consecutive keys per entry, an index list its indices — and walked in tiles of 64 stream
// positions: K and V rows are gathered by key index (cp.async per 16-byte chunk, zero fill for
// positions past the list or keys past the sequence), so a tile costs the same whether its keys
// are consecutive or scattered, and blocks of any size pack into tiles with no empty columns.
// Lists are ascending, so under the causal mask the tiles whose first key lies beyond the
// chunk's last row are never visited (a binary search over the list), and only tiles that hold
// a key beyond the chunk's first row, or a padding slot, evaluate the mask in registers (the
// loader's predicate, reduced by the barrier that publishes the tile: __syncthreads_or).
// The state (m, ℓ, acc) can enter from a previous op and leave unnormalised for the next one
// (core/ops_sparse.hpp): AnchorAttention and SALE continue an exact pass over their picks.
#include <climits>
#include <cmath>

#include "cuda/common/device_helpers.cuh"
#include "cuda/sparse_prefill/sparse_prefill.hpp"

namespace ab::cuda {
namespace {

using namespace dev;

constexpr SparsePrefillTile kTile = sparse_prefill_tile_policy();
constexpr int kThreads = kTile.warps * 32;
constexpr int BM = kTile.block_m;
constexpr int BN = kTile.block_n;
static_assert(BM == 32 * kTile.warps, "each warp owns 32 query rows");
static_assert(BM == kThreads, "one thread per row of the chunk when the chunk's rows are listed");
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;

// Key of stream position pos of a list whose entries start at e (pos < the stream length),
// clamped to kv_len (a key past the sequence is padding, whatever the list says). Positions and
// keys are 32-bit: sequences stay below 2^31 (checked by the backend).
__device__ __forceinline__ int key_at(const SparsePrefillParams& p, const int32_t* e, int pos) {
  if (p.kind == SparseListKind::key_indices) return min(e[pos], int(p.kv_len));
  if (p.flagged) return min((e[pos / BN] & (kPartialBlock - 1)) * BN + pos % BN, int(p.kv_len));
  int ent, w;
  if (p.k_block_shift >= 0) {
    ent = pos >> p.k_block_shift;
    w = pos & (int(p.k_block) - 1);
  } else {
    ent = pos / int(p.k_block);
    w = pos - ent * int(p.k_block);
  }
  return int(min(int64_t(e[ent]) * p.k_block + w, p.kv_len));
}

// Gathers the K rows of stream positions [p0, p0 + BN) into a swizzled tile and records their
// keys in sidx (-1: padding, masked). Returns whether any of this thread's slots needs the
// mask: padding, or (causal) a key beyond the chunk's first row qmin.
template <typename T, int D>
__device__ __forceinline__ bool load_keys(T* smem, int* sidx, const T* g, const SparsePrefillParams& p,
                                          const int32_t* e, int len_pos, int p0, int qmin, int tid) {
  constexpr int CPR = D / 8;
  constexpr int RSTEP = kThreads / CPR;
  static_assert(BN % RSTEP == 0);
  const int c = tid % CPR;
  // A predicate's list says itself which blocks are partial (one block per tile then).
  bool needs_mask = p.flagged && (e[p0 / BN] & kPartialBlock) != 0;
#pragma unroll 4
  for (int r = tid / CPR; r < BN; r += RSTEP) {
    const int pos = p0 + r;
    int key = -1;
    if (pos < len_pos) {
      key = key_at(p, e, pos);
      if (key < 0 || key >= int(p.kv_len)) key = -1;
    }
    const bool ok = key >= 0;
    needs_mask |= !ok || (p.causal && key > qmin);
    cp_async_16(smem_addr(smem + swz<D>(r, c)), g + (ok ? int64_t(key) * D : 0) + c * 8, ok);
    if (c == 0) sidx[r] = key;
  }
  return needs_mask;
}

template <typename T, int D>
__device__ __forceinline__ void load_values(T* smem, const int* sidx, const T* g, int tid) {
  constexpr int CPR = D / 8;
  constexpr int RSTEP = kThreads / CPR;
  const int c = tid % CPR;
#pragma unroll 4
  for (int r = tid / CPR; r < BN; r += RSTEP) {
    const int key = sidx[r];
    const bool ok = key >= 0;
    cp_async_16(smem_addr(smem + swz<D>(r, c)), g + (ok ? int64_t(key) * D : 0) + c * 8, ok);
  }
}

template <typename T, int D>
__device__ __forceinline__ void load_queries(T* smem, const int* srow, const T* g, int tid) {
  constexpr int CPR = D / 8;
  constexpr int RSTEP = kThreads / CPR;
  const int c = tid % CPR;
#pragma unroll 4
  for (int r = tid / CPR; r < BM; r += RSTEP) {
    const int row = srow[r];
    const bool ok = row >= 0;
    cp_async_16(smem_addr(smem + swz<D>(r, c)), g + (ok ? int64_t(row) * D : 0) + c * 8, ok);
  }
}

// PRED: the lists come from a mask predicate (flagged partial blocks, the program tested per
// element); its own instantiation, so that the list kernel keeps its registers.
template <typename T, int D, bool PRED>
__global__ void __launch_bounds__(kThreads, 4) sparse_prefill_kernel(const SparsePrefillParams p) {
  constexpr int MT = 2;       // m16 tiles per warp
  constexpr int NT = BN / 8;  // n8 tiles of S
  constexpr int DT = D / 8;   // n8 tiles of O
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // (BM, D)
  T* sK = sQ + BM * D;                     // (BN, D)
  T* sV = sK + BN * D;                     // (BN, D)
  __shared__ int sRow[BM];
  __shared__ int sIdx[2][BN];
  __shared__ int sRed[2][2];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int h = blockIdx.y, b = blockIdx.z;
  const int64_t grp = blockIdx.x / p.chunk_ctas;
  const int chunk0 = int(blockIdx.x % p.chunk_ctas);
  const int kvh = h / (p.q_heads / p.kv_heads);
  const int lh = p.list_heads == 1 ? 0 : h;
  const int64_t list = (int64_t(p.lists_per_batch ? b : 0) * p.list_heads + lh) * p.groups + grp;
  const int64_t bh = int64_t(b) * p.q_heads + h;
  const T* q = static_cast<const T*>(p.q) + bh * p.q_len * D;
  const T* k = static_cast<const T*>(p.k) + (int64_t(b) * p.kv_heads + kvh) * p.kv_len * D;
  const T* v = static_cast<const T*>(p.v) + (int64_t(b) * p.kv_heads + kvh) * p.kv_len * D;
  const int q_off = int(p.kv_len - p.q_len);

  const int32_t* e = p.entries + p.offsets[list];
  const int len_entries = p.offsets[list + 1] - p.offsets[list];
  // A block list's stream: k_block keys per block; blocks are distinct and ascending, so a
  // well-formed one stays within the sequence (clamped anyway against a malformed one).
  const int len_pos = int(min(int64_t(len_entries) * p.k_block, int64_t(INT_MAX - BN)));
  const int stream_tiles = (len_pos + BN - 1) / BN;

  int r_begin, n_rows;
  const bool listed_rows = p.q_rows != nullptr;
  if (listed_rows) {
    r_begin = p.q_offsets[list];
    n_rows = p.q_offsets[list + 1] - r_begin;
  } else {
    const int64_t first = grp * p.group_rows;
    r_begin = int(min(first, p.q_len));
    n_rows = int(min(first + p.group_rows, p.q_len)) - r_begin;
  }

#pragma unroll 1
  for (int c0 = chunk0 * BM; c0 < n_rows; c0 += p.chunk_ctas * BM) {
    __syncthreads();  // the previous chunk's epilogue is done with sRow and sQ
    {
      const int i = c0 + tid;
      int row = -1;
      if (i < n_rows) row = listed_rows ? p.q_rows[r_begin + i] : r_begin + i;
      if (row >= int(p.q_len)) row = -1;
      sRow[tid] = row;
      // Chunk's lowest and highest query position (rows are not sorted in a listed group).
      int lo = row >= 0 ? row + q_off : INT_MAX, hi = row >= 0 ? row + q_off : -1;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
        hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
      }
      if (lane == 0) {
        sRed[warp][0] = lo;
        sRed[warp][1] = hi;
      }
    }
    __syncthreads();
    const int qmin = min(sRed[0][0], sRed[1][0]);
    const int qmax = max(sRed[0][1], sRed[1][1]);

    // Tiles to visit: those whose first key is a key some row of the chunk may see.
    const int last_key = p.causal ? min(qmax, int(p.kv_len) - 1) : int(p.kv_len) - 1;
    int lo_t = 0, hi_t = stream_tiles;
    while (lo_t < hi_t) {
      const int mid = (lo_t + hi_t) >> 1;
      if (key_at(p, e, mid * BN) <= last_key) lo_t = mid + 1;
      else hi_t = mid;
    }
    const int n_tiles = qmax < 0 ? 0 : lo_t;

    float acc[MT][DT][4];
    float row_m[MT][2], row_l[MT][2];
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int row = sRow[warp * 32 + mi * 16 + g + 8 * hf];
        const int64_t ri = bh * p.q_len + row;
        const bool from_state = p.m_in != nullptr && row >= 0;
        row_m[mi][hf] = from_state ? p.m_in[ri] * kLog2e : -INFINITY;
        row_l[mi][hf] = from_state && t4 == 0 ? p.l_in[ri] : 0.f;  // ℓ is summed over the quad
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
          for (int x = 0; x < 2; ++x)
            acc[mi][dt][2 * hf + x] = from_state ? p.acc_in[ri * D + dt * 8 + 2 * t4 + x] : 0.f;
      }

    bool next_mask = false;
    if (n_tiles > 0) {
      load_queries<T, D>(sQ, sRow, q, tid);
      cp_async_commit();
      next_mask = load_keys<T, D>(sK, sIdx[0], k, p, e, len_pos, 0, qmin, tid);
      cp_async_commit();
    }

#pragma unroll 1
    for (int it = 0; it < n_tiles; ++it) {
      const int* idx = sIdx[it & 1];
      cp_async_wait<0>();
      // K(it) and its keys landed; every warp finished P·V(it-1), so sV is free.
      const bool partial = __syncthreads_or(next_mask);
      load_values<T, D>(sV, idx, v, tid);
      cp_async_commit();

      float s[MT][NT][4];
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int x = 0; x < 4; ++x) s[mi][nt][x] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
          ldmatrix_x4(a[mi], smem_addr(sQ + swz<D>(warp * 32 + mi * 16 + (lane & 15), kk * 2 + (lane >> 4))));
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

      if (partial) {
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
          for (int hf = 0; hf < 2; ++hf) {
            const int row = sRow[warp * 32 + mi * 16 + g + 8 * hf];
            // Rows past the chunk see nothing (their results are never stored).
            const int qpos = row < 0 ? -1 : (p.causal ? row + q_off : INT_MAX);
            // The predicate as a bit per column of this thread, in a loop that is not unrolled
            // (one copy of the interpreter), then applied to the unrolled registers.
            uint32_t allowed = 0xffffffffu;
            if constexpr (PRED) {
              allowed = 0;
#pragma unroll 1
              for (int c = 0; c < 2 * NT; ++c) {
                const int key = idx[(c >> 1) * 8 + 2 * t4 + (c & 1)];
                if (row >= 0 && key >= 0 && mask_program_allows<int>(p.prog, row + q_off, key)) allowed |= 1u << c;
              }
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
              for (int x = 0; x < 2; ++x) {
                const int key = idx[nt * 8 + 2 * t4 + x];
                if (key < 0 || key > qpos || !((allowed >> (2 * nt + x)) & 1u)) s[mi][nt][2 * hf + x] = -INFINITY;
              }
          }
      }

      cp_async_wait<0>();
      __syncthreads();  // V(it) landed; every warp finished reading K(it)
      if (it + 1 < n_tiles) {
        next_mask = load_keys<T, D>(sK, sIdx[(it + 1) & 1], k, p, e, len_pos, (it + 1) * BN, qmin, tid);
        cp_async_commit();
      }

      float corr[MT][2];
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          float mx = -INFINITY;
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[mi][nt][2 * hf], s[mi][nt][2 * hf + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float m_new = fmaxf(row_m[mi][hf], mx * p.scale_log2);
          const float base = m_new == -INFINITY ? 0.f : m_new;
          corr[mi][hf] = fast_exp2(row_m[mi][hf] - base);
          row_m[mi][hf] = m_new;
          float sum = 0.f;
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int x = 0; x < 2; ++x) {
              const float pv = fast_exp2(fmaf(s[mi][nt][2 * hf + x], p.scale_log2, -base));
              s[mi][nt][2 * hf + x] = pv;
              sum += pv;
            }
          row_l[mi][hf] = row_l[mi][hf] * corr[mi][hf] + sum;
        }
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

    // Epilogue: the state (unnormalised, natural-log m) and/or O = acc / ℓ, LSE = (m + log2 ℓ)·ln 2.
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        float l = row_l[mi][hf];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = sRow[warp * 32 + mi * 16 + g + 8 * hf];
        if (row < 0) continue;
        const int64_t ri = bh * p.q_len + row;
        if (p.m_out) {
          if (t4 == 0) {
            p.m_out[ri] = row_m[mi][hf] == -INFINITY ? -INFINITY : row_m[mi][hf] * kLn2;
            p.l_out[ri] = l;
          }
#pragma unroll
          for (int dt = 0; dt < DT; ++dt)
            *reinterpret_cast<float2*>(p.acc_out + ri * D + dt * 8 + 2 * t4) =
                make_float2(acc[mi][dt][2 * hf], acc[mi][dt][2 * hf + 1]);
        }
        if (p.finalize) {
          const float inv = l > 0.f ? 1.f / l : 0.f;
          T* orow = static_cast<T*>(p.o) + ri * D;
#pragma unroll
          for (int dt = 0; dt < DT; ++dt)
            *reinterpret_cast<uint32_t*>(orow + dt * 8 + 2 * t4) =
                Elem<T>::pack(acc[mi][dt][2 * hf] * inv, acc[mi][dt][2 * hf + 1] * inv);
          if (p.lse && t4 == 0)
            p.lse[ri] = l > 0.f ? (row_m[mi][hf] + __log2f(l)) * kLn2 : -INFINITY;
        }
      }
  }
}

// Rows in no listed group see no keys: their state passes through (or starts empty) and, with
// finalize, their O and LSE come from it. Run before the sparse kernel, which overwrites the
// rows it owns. One warp per row.
template <typename T, int D>
__global__ void sparse_passthrough_kernel(const SparsePrefillParams p) {
  const int64_t rows = int64_t(p.batch) * p.q_heads * p.q_len;
  const int64_t ri = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (ri >= rows) return;
  const bool has = p.m_in != nullptr;
  const float m = has ? p.m_in[ri] : -INFINITY;
  const float l = has ? p.l_in[ri] : 0.f;
  if (p.m_out && lane == 0) {
    p.m_out[ri] = m;
    p.l_out[ri] = l;
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;
  for (int c = lane; c < D; c += 32) {
    const float a = has ? p.acc_in[ri * D + c] : 0.f;
    if (p.acc_out) p.acc_out[ri * D + c] = a;
    if (p.finalize) static_cast<T*>(p.o)[ri * D + c] = T(a * inv);
  }
  if (p.finalize && p.lse && lane == 0) p.lse[ri] = l > 0.f ? m + logf(l) : -INFINITY;
}

// The block lists of a mask predicate: one warp per query block; lanes classify 32 key blocks
// at a time, and a ballot keeps the list in ascending order. Counting and writing are separate
// passes around a scan of the counts.
__global__ void mask_block_count_kernel(const MaskProgram prog, int64_t q_len, int64_t kv_len, int q_blocks,
                                        int k_blocks, int32_t* counts) {
  const int qb = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (qb >= q_blocks) return;
  const int64_t off = kv_len - q_len;
  const int64_t q0 = int64_t(qb) * BM + off, q1 = min(int64_t(qb + 1) * BM, q_len) + off;
  int count = 0;
  for (int kb = lane; kb < k_blocks; kb += 32)
    count += mask_program_class(prog, q0, q1, int64_t(kb) * BN, min(int64_t(kb + 1) * BN, kv_len)) != 0;
  count = __reduce_add_sync(0xffffffffu, count);
  if (lane == 0) counts[qb] = count;
}

// Exclusive scan of the counts into offsets, one CTA: each thread sums a contiguous run, the
// runs' totals are scanned in shared memory, then each thread writes its run's offsets.
__global__ void mask_block_scan_kernel(const int32_t* counts, int q_blocks, int32_t* offsets) {
  __shared__ int32_t run_total[1024];
  const int t = threadIdx.x, n = blockDim.x;
  const int per = (q_blocks + n - 1) / n, lo = min(q_blocks, t * per), hi = min(q_blocks, lo + per);
  int32_t sum = 0;
  for (int i = lo; i < hi; ++i) sum += counts[i];
  run_total[t] = sum;
  __syncthreads();
  if (t == 0) {
    int32_t acc = 0;
    for (int i = 0; i < n; ++i) {
      const int32_t v = run_total[i];
      run_total[i] = acc;
      acc += v;
    }
    offsets[q_blocks] = acc;
  }
  __syncthreads();
  int32_t acc = run_total[t];
  for (int i = lo; i < hi; ++i) {
    offsets[i] = acc;
    acc += counts[i];
  }
}

__global__ void mask_block_write_kernel(const MaskProgram prog, int64_t q_len, int64_t kv_len, int q_blocks,
                                        int k_blocks, const int32_t* offsets, int32_t* entries) {
  const int qb = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (qb >= q_blocks) return;
  const int64_t off = kv_len - q_len;
  const int64_t q0 = int64_t(qb) * BM + off, q1 = min(int64_t(qb + 1) * BM, q_len) + off;
  int32_t base = offsets[qb];
  for (int kb0 = 0; kb0 < k_blocks; kb0 += 32) {
    const int kb = kb0 + lane;
    const int cls = kb < k_blocks ? mask_program_class(prog, q0, q1, int64_t(kb) * BN, min(int64_t(kb + 1) * BN, kv_len)) : 0;
    const uint32_t keep = __ballot_sync(0xffffffffu, cls != 0);
    if (cls != 0) entries[base + __popc(keep & ((1u << lane) - 1u))] = kb | (cls == 1 ? kPartialBlock : 0);
    base += __popc(keep);
  }
}

template <typename T, int D>
cudaError_t launch_sparse(const SparsePrefillParams& p, cudaStream_t stream) {
  if (p.q_rows) {
    const int64_t rows = int64_t(p.batch) * p.q_heads * p.q_len;
    const int warps = 8;
    if (rows > 0) {
      sparse_passthrough_kernel<T, D><<<unsigned((rows + warps - 1) / warps), warps * 32, 0, stream>>>(p);
      if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
    }
  }
  const size_t smem = size_t(BM + 2 * BN) * D * sizeof(T);
  auto kern = p.flagged ? sparse_prefill_kernel<T, D, true> : sparse_prefill_kernel<T, D, false>;
  cudaError_t err = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  const int64_t gx = p.groups * p.chunk_ctas;
  if (gx == 0 || p.q_heads == 0 || p.batch == 0) return cudaSuccess;
  const dim3 grid(unsigned(gx), unsigned(p.q_heads), unsigned(p.batch));
  kern<<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t build_mask_block_lists(const MaskProgram& prog, int64_t q_len, int64_t kv_len, int32_t* offsets,
                                   int32_t* entries, int32_t* counts, cudaStream_t stream) {
  const int q_blocks = int((q_len + BM - 1) / BM), k_blocks = int((kv_len + BN - 1) / BN);
  if (q_blocks == 0) return cudaSuccess;
  constexpr int kWarps = 8;
  const unsigned grid = unsigned((q_blocks + kWarps - 1) / kWarps);
  mask_block_count_kernel<<<grid, kWarps * 32, 0, stream>>>(prog, q_len, kv_len, q_blocks, k_blocks, counts);
  mask_block_scan_kernel<<<1, 1024, 0, stream>>>(counts, q_blocks, offsets);
  mask_block_write_kernel<<<grid, kWarps * 32, 0, stream>>>(prog, q_len, kv_len, q_blocks, k_blocks, offsets, entries);
  return cudaGetLastError();
}

SparsePrefillLaunchFn sparse_prefill_select(ElemType elem, int head_dim, int v_dim, std::string* why) {
  if (v_dim != head_dim) {
    if (why) *why = "cuda sparse prefill: v_dim must equal head_dim";
    return nullptr;
  }
  const bool bf = elem == ElemType::bf16;
  switch (head_dim) {
    case 64: return bf ? launch_sparse<__nv_bfloat16, 64> : launch_sparse<__half, 64>;
    case 128: return bf ? launch_sparse<__nv_bfloat16, 128> : launch_sparse<__half, 128>;
    default:
      if (why) *why = "cuda sparse prefill: head_dim " + std::to_string(head_dim) + " has no kernel (64, 128)";
      return nullptr;
  }
}

}  // namespace ab::cuda
