// The decode-time selection ops on the GPU (selection.hpp; core/ops_decode.hpp): copy_rows,
// block_mean_keys and fake_quantize elementwise (the CPU's arithmetic: block means summed in
// row order then × 1/block; round(x / s)·s), and decode_scores with one CTA per item — or per
// chain of soft_vote items sharing an output segment, which add into it in item order — whose
// query rows (a kv group's heads, or their mean in head order) are scored in 32 × 64 fp32
// tiles; the softmax epilogues take two passes over the item's keys (statistics, then
// probabilities), raw and head_max split the keys over CTAs. Items travel in the kernel's
// parameters (no host copy), kDecBatch per launch.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/selection/select_common.cuh"

namespace ab::cuda::sel {
namespace {

inline unsigned grid1(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

__global__ void copy_rows_kernel(CopyRowsP p) {
  const int64_t C = p.src.n3, BH = p.src.n0 * p.src.n1, total = BH * p.rows * C;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % C, i = e / C % p.rows, bh = e / (C * p.rows);
    st(const_cast<void*>(p.dst.p), p.dst.elem, (bh * p.dst.n2 + p.dst_row + i) * C + c,
       ld(p.src, (bh * p.src.n2 + p.src_row + i) * C + c));
  }
}

__global__ void block_mean_kernel(BlockMeanP p) {
  const int64_t D = p.k.n3, BH = p.k.n0 * p.k.n1, total = BH * p.blocks * D;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % D, blk = e / D % p.blocks, bh = e / (D * p.blocks);
    const int64_t r0 = p.offset + blk * p.block;
    float acc = 0.0f;
    for (int64_t r = 0; r < p.block; ++r) acc += ld(p.k, (bh * p.k.n2 + r0 + r) * D + c);
    acc *= 1.0f / float(p.block);
    st(const_cast<void*>(p.out.p), p.out.elem, (bh * p.out.n2 + p.out_row + blk) * D + c, acc);
  }
}

// A warp per row (x and out may be one tensor: each lane rewrites only what it read last).
__global__ void fake_quantize_kernel(FakeQuantP p) {
  const int64_t n = p.x.n3, rows = p.x.n0 * p.x.n1 * p.x.n2;
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float mx = 0.0f;
  for (int64_t c = lane; c < n; c += 32) mx = fmaxf(mx, fabsf(ld(p.x, row * n + c)));
  mx = warp_max(mx);
  const float levels = float((1 << (p.bits - 1)) - 1);
  const float s = mx / levels;
  void* out = const_cast<void*>(p.out.p);
  for (int64_t c = lane; c < n; c += 32) {
    const float v = mx == 0.0f ? 0.0f : roundf(ld(p.x, row * n + c) / s) * s;
    st(out, p.out.elem, row * n + c, v);
  }
}

// ---- decode_scores ----

constexpr int kDecBatch = 96;
constexpr int64_t kKeyChunk = 16 * kKT;  // keys per CTA of raw / head_max
struct DecBatch {
  DecItem items[kDecBatch];
  int32_t chain_start[kDecBatch + 1];
  int32_t n_chains = 0;
};

struct DecItemView {
  const DecodeScoresP* p;
  const DecItem* it;
  int64_t G, R, Nq, Nk, D;
  __device__ float q(int64_t ri, int64_t c) const {
    const int64_t b = it->b, Hq = p->q_heads;
    if (p->group_mean) {  // Σ_g q_g / G, from 0 in head order
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g)
        acc += ld(p->q, ((b * Hq + it->kv_head * G + g) * Nq + it->q_row + ri) * D + c) / float(G);
      return acc;
    }
    const int64_t g = ri / it->q_rows, m = ri % it->q_rows;
    return ld(p->q, ((b * Hq + it->kv_head * G + g) * Nq + it->q_row + m) * D + c);
  }
  __device__ int64_t key_row(int64_t jj) const { return p->key_idx ? int64_t(p->key_idx[it->k0 + jj]) : it->k0 + jj; }
  __device__ float k(int64_t jj, int64_t c) const {
    return ld(p->k, ((int64_t(it->b) * p->kv_heads + it->kv_head) * Nk + key_row(jj)) * D + c);
  }
};

struct DecSmem {
  TileSmem tile;
  float m[kRT], l[kRT], inv[kRT];
  float keyacc[kKT];
  double l1[kNT];
};

__device__ void dec_tile(DecSmem& sm, const DecItemView& v, int64_t ra, int nrows, int64_t j0, int nk, float scale) {
  logits_tile(
      sm.tile, nrows, nk, int(v.D), [&](int r, int c) { return v.q(ra + r, c); }, [&](int j, int c) { return v.k(j0 + j, c); },
      scale);
}

__global__ void __launch_bounds__(kNT) decode_scores_kernel(DecodeScoresP p, DecBatch bt) {
  __shared__ DecSmem sm;
  const int chain = blockIdx.x;
  const int i0 = bt.chain_start[chain], i1 = bt.chain_start[chain + 1];
  const int ep = p.epilogue;
  const int64_t G = p.q_heads / p.kv_heads;
  if (ep == 4) {  // soft_vote: the chain's segment starts at 0
    int64_t nmax = 0;
    for (int i = i0; i < i1; ++i) nmax = max(nmax, bt.items[i].n);
    for (int64_t j = threadIdx.x; j < nmax; j += kNT) p.out[bt.items[i0].out + j] = 0.0f;
    __syncthreads();
  }
  for (int i = i0; i < i1; ++i) {
    const DecItem& it = bt.items[i];
    DecItemView v{&p, &it, G, (p.group_mean ? 1 : G) * it.q_rows, p.q.n2, p.k.n2, p.head_dim};
    const int64_t n = it.n, R = v.R;
    float* out = p.out + it.out;
    if (ep == 0 || ep == 5) {  // raw, head_max: this CTA's key chunk
      const int64_t c0 = int64_t(blockIdx.y) * kKeyChunk, c1 = min(n, c0 + kKeyChunk);
      for (int64_t j0 = c0; j0 < c1; j0 += kKT) {
        const int nk = int(min(int64_t(kKT), c1 - j0));
        if (threadIdx.x < kKT) sm.keyacc[threadIdx.x] = kNegInf;
        for (int64_t ra = 0; ra < R; ra += kRT) {
          const int nrows = int(min(int64_t(kRT), R - ra));
          dec_tile(sm, v, ra, nrows, j0, nk, p.scale);
          if (ep == 0) {
            for (int e = threadIdx.x; e < kRT * kKT; e += kNT) {
              const int r = e / kKT, j = e % kKT;
              if (r < nrows && j < nk) out[(ra + r) * n + j0 + j] = sm.tile.s[r][j];
            }
          } else if (threadIdx.x < nk) {
            float acc = sm.keyacc[threadIdx.x];
            for (int r = 0; r < nrows; ++r) acc = fmaxf(acc, sm.tile.s[r][threadIdx.x]);
            sm.keyacc[threadIdx.x] = acc;
          }
          __syncthreads();
        }
        if (ep == 5 && threadIdx.x < nk) out[j0 + threadIdx.x] = sm.keyacc[threadIdx.x];
        __syncthreads();
      }
      continue;
    }
    // Softmax epilogues: per row tile, (m, ℓ) over the item's n keys, then the probabilities.
    for (int64_t ra = 0; ra < R; ra += kRT) {
      const int nrows = int(min(int64_t(kRT), R - ra));
      if (threadIdx.x < kRT) {
        sm.m[threadIdx.x] = kNegInf;
        sm.l[threadIdx.x] = 0.0f;
      }
      __syncthreads();
      for (int64_t j0 = 0; j0 < n; j0 += kKT) {
        const int nk = int(min(int64_t(kKT), n - j0));
        dec_tile(sm, v, ra, nrows, j0, nk, p.scale);
        stats_update(sm.tile, sm.m, sm.l, nrows, [&](int) { return nk; });
      }
      if (threadIdx.x < nrows) sm.inv[threadIdx.x] = float(1.0 / double(sm.l[threadIdx.x]));
      __syncthreads();
      for (int64_t j0 = 0; j0 < n; j0 += kKT) {
        const int nk = int(min(int64_t(kKT), n - j0));
        dec_tile(sm, v, ra, nrows, j0, nk, p.scale);
        if (ep == 1 || ep == 6) {  // probs: exp(s − m) / ℓ
          for (int e = threadIdx.x; e < kRT * kKT; e += kNT) {
            const int r = e / kKT, j = e % kKT;
            if (r < nrows && j < nk) out[(ra + r) * n + j0 + j] = expf(sm.tile.s[r][j] - sm.m[r]) / sm.l[r];
          }
        } else if (threadIdx.x < nk) {
          const int64_t j = j0 + threadIdx.x;
          float acc = (ra == 0 && ep != 4) ? 0.0f : out[j];
          for (int r = 0; r < nrows; ++r) {
            const float e = expf(sm.tile.s[r][threadIdx.x] - sm.m[r]);
            if (ep == 2) acc += e / sm.l[r];
            else if (ep == 3) acc = fmaxf(acc, e / sm.l[r]);
            else acc += e * sm.inv[r];  // soft_vote: row · float(1 / Σ row)
          }
          out[j] = acc;
        }
        __syncthreads();
      }
    }
    if (ep == 6) {  // Σ_r Σ_c |Σ_j p_rj v_jc|, sums in double, in (r, c) order
      const int64_t Dv = p.v.n3, pairs = R * Dv;
      double total = 0;
      for (int64_t e0 = 0; e0 < pairs; e0 += kNT) {
        const int64_t e = e0 + threadIdx.x;
        double acc = 0;
        if (e < pairs) {
          const int64_t r = e / Dv, c = e % Dv;
          for (int64_t jj = 0; jj < n; ++jj)
            acc += double(out[r * n + jj]) *
                   double(ld(p.v, ((int64_t(it.b) * p.kv_heads + it.kv_head) * p.v.n2 + v.key_row(jj)) * Dv + c));
        }
        sm.l1[threadIdx.x] = fabs(acc);
        __syncthreads();
        if (threadIdx.x == 0)
          for (int t = 0; t < kNT && e0 + t < pairs; ++t) total += sm.l1[t];
        __syncthreads();
      }
      if (threadIdx.x == 0) out[R * n] = float(total);
      __syncthreads();
    }
  }
}

}  // namespace

cudaError_t copy_rows(const CopyRowsP& p, cudaStream_t s) {
  const int64_t total = p.src.n0 * p.src.n1 * p.rows * p.src.n3;
  if (total <= 0) return cudaSuccess;
  copy_rows_kernel<<<unsigned(std::min<int64_t>(grid1(total, 256), 65535 * 8)), 256, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t block_mean_keys(const BlockMeanP& p, cudaStream_t s) {
  const int64_t total = p.k.n0 * p.k.n1 * p.blocks * p.k.n3;
  if (total <= 0) return cudaSuccess;
  block_mean_kernel<<<unsigned(std::min<int64_t>(grid1(total, 256), 65535 * 8)), 256, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t fake_quantize(const FakeQuantP& p, cudaStream_t s) {
  const int64_t n = p.x.n3, rows = n > 0 ? p.x.numel() / n : 0;
  if (rows <= 0) return cudaSuccess;
  fake_quantize_kernel<<<grid1(rows * 32, 256), 256, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t decode_scores(const DecodeScoresP& p, cudaStream_t s) {
  // Chains: soft_vote items sharing an out offset, in item order (one CTA each, so their
  // additions keep the CPU's order); every other item is its own chain.
  std::vector<int64_t> order;
  order.reserve(size_t(p.n_items));
  if (p.epilogue == 4) {
    std::vector<char> done(size_t(p.n_items), 0);
    for (int64_t i = 0; i < p.n_items; ++i) {
      if (done[size_t(i)]) continue;
      for (int64_t j = i; j < p.n_items; ++j)
        if (!done[size_t(j)] && p.items[j].out == p.items[i].out) {
          order.push_back(j);
          done[size_t(j)] = 1;
        }
    }
  } else {
    for (int64_t i = 0; i < p.n_items; ++i) order.push_back(i);
  }
  size_t at = 0;
  while (at < order.size()) {
    DecBatch bt;
    int n = 0;
    int64_t max_n = 0;
    bt.n_chains = 0;
    while (at < order.size()) {
      // the whole chain must fit in this batch
      size_t end = at + 1;
      while (end < order.size() && p.epilogue == 4 && p.items[order[end]].out == p.items[order[at]].out) ++end;
      if (n + int(end - at) > kDecBatch) {
        if (n == 0) return cudaErrorInvalidValue;  // a chain longer than a batch
        break;
      }
      bt.chain_start[bt.n_chains++] = n;
      for (size_t t = at; t < end; ++t) {
        const int64_t i = order[t];
        DecItem& d = bt.items[n++];
        d = p.items[i];
        max_n = std::max(max_n, d.n);
      }
      at = end;
    }
    bt.chain_start[bt.n_chains] = n;
    const bool chunked = p.epilogue == 0 || p.epilogue == 5;
    const unsigned ychunks = chunked ? unsigned(std::max<int64_t>(1, (max_n + kKeyChunk - 1) / kKeyChunk)) : 1u;
    decode_scores_kernel<<<dim3(unsigned(bt.n_chains), ychunks), kNT, 0, s>>>(p, bt);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace ab::cuda::sel
