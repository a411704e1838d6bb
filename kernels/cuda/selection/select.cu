// select on the GPU (selection.hpp): one CTA per list. The list's cut is found by radix
// selection over order-preserving 32-bit keys of the scores (NaN as −inf): the threshold key T
// of the k-th best candidate and `need`, how many candidates equal to T are taken — the lowest
// indices, the CPU's tie order (cpu::top_k: larger score first, then lower index). For
// cumulative mass, the count c comes first from a radix search over sums of the positive
// scores (T: the largest key whose suffix mass reaches γ·Σ; then the ties of T one by one as
// the CPU's running sum takes them). A plan pass stores (T, need) in scratch and the list's
// size in offsets[l + 1]; after the offsets scan a write pass emits the entries in ascending
// order, with the forced ranges and the expansion, by block scans over the candidates.
#include <algorithm>
#include <cmath>

#include "cuda/selection/select_common.cuh"

namespace ab::cuda::sel {
namespace {

__device__ __forceinline__ uint32_t order_key(float v) {
  if (isnan(v)) v = kNegInf;
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k ^ 0x80000000u) : ~k);
}

struct List {
  const SelectP* p;
  int64_t n_cand = 0, k = 0;
  const int32_t* rule = nullptr;
  const int32_t* map = nullptr;
  int64_t row = 0;  // element offset of the score row
  int64_t C = 0;

  __device__ void init(const SelectP& a, int64_t l) {
    p = &a;
    const int64_t i = l % a.n_per, lh = l / a.n_per % a.list_heads, b = l / a.n_per / a.list_heads;
    const int64_t Hs = a.scores.n1, R = a.scores.n2;
    C = a.scores.n3;
    map = a.col_map ? a.col_map + (a.col_map_stride > 0 ? b * a.col_map_stride : 0) : nullptr;
    const int64_t default_cand = a.col_map ? a.map_len : C;
    rule = a.rules ? a.rules + l * 8 : nullptr;
    n_cand = rule ? int64_t(rule[0]) : default_cand;
    k = rule ? int64_t(rule[1]) : a.k;
    // Out-of-range rules (the CPU throws on them) read nothing here.
    n_cand = min(max(n_cand, int64_t(0)), default_cand);
    if (R != 1 && i >= R) n_cand = 0;
    const int64_t hps = a.list_heads / Hs;
    row = ((b * Hs + lh / hps) * R + (R == 1 ? 0 : i)) * C;
  }
  __device__ bool in_range(int64_t j, int lo_i, int hi_i) const {
    return j >= int64_t(rule[lo_i]) && j < int64_t(rule[hi_i]);
  }
  // Candidate j's score after the exclusion and (mask_forced) the forced ranges.
  __device__ float cand(int64_t j) const {
    const int64_t col = map ? int64_t(map[j]) : j;
    float v = col >= 0 && col < C ? ld(p->scores, row + col) : kNegInf;
    if (rule) {
      if (in_range(j, 2, 3)) v = kNegInf;
      if (p->mask_forced && (in_range(j, 4, 5) || in_range(j, 6, 7))) v = kNegInf;
    }
    return v;
  }
  __device__ bool forced(int64_t j) const {
    return rule && ((j >= max(int64_t(rule[4]), int64_t(0)) && j < int64_t(rule[5])) ||
                    (j >= max(int64_t(rule[6]), int64_t(0)) && j < int64_t(rule[7])));
  }
  // Entries [0, span): candidates and forced ranges.
  __device__ int64_t span() const {
    int64_t u = n_cand;
    if (rule) u = max(u, max(int64_t(rule[5]), int64_t(rule[7])));
    return u;
  }
};

struct RadixSmem {
  unsigned cnt[256];
  double sum[256];
  uint32_t prefix, mask;
  int64_t rem;
  double above, target, total;
  int64_t cnt_above, eq, nonzero, c;
  int64_t ws[kNT / 32 + 1];
};

// The kk-th largest key (kk >= 1) and how many of its ties are taken.
__device__ void radix_kth(const List& L, int64_t kk, RadixSmem& sm, uint32_t* T, int64_t* need) {
  if (threadIdx.x == 0) {
    sm.prefix = 0;
    sm.mask = 0;
    sm.rem = kk;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    sm.cnt[threadIdx.x] = 0;  // kNT == 256 bins
    __syncthreads();
    const uint32_t prefix = sm.prefix, mask = sm.mask;
    for (int64_t j = threadIdx.x; j < L.n_cand; j += kNT) {
      const uint32_t key = order_key(L.cand(j));
      if ((key & mask) == prefix) atomicAdd(&sm.cnt[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t cum = 0;
      int d = 255;
      for (; d > 0; --d) {
        if (cum + sm.cnt[d] >= sm.rem) break;
        cum += sm.cnt[d];
      }
      sm.rem -= cum;
      sm.prefix |= uint32_t(d) << shift;
      sm.mask |= 255u << shift;
    }
    __syncthreads();
  }
  *T = sm.prefix;
  *need = sm.rem;
  __syncthreads();
}

// cpu::cumulative_mass_count: the fewest best candidates whose positive scores reach γ·Σ.
__device__ int64_t mass_count(const List& L, double gamma, RadixSmem& sm) {
  if (!(gamma > 0) || L.n_cand <= 0) return 0;
  if (threadIdx.x == 0) {
    sm.total = 0;
    sm.nonzero = 0;
  }
  __syncthreads();
  double tot = 0;
  int64_t nz = 0;
  for (int64_t j = threadIdx.x; j < L.n_cand; j += kNT) {
    const float v = L.cand(j);
    if (v > 0.0f) {
      tot += double(v);
      ++nz;
    }
  }
  atomicAdd(&sm.total, tot);
  atomicAdd(reinterpret_cast<unsigned long long*>(&sm.nonzero), static_cast<unsigned long long>(nz));
  __syncthreads();
  const double total = sm.total;
  const int64_t nonzero = sm.nonzero;
  __syncthreads();
  if (gamma >= 1.0 || total <= 0) return gamma >= 1.0 ? nonzero : 0;
  if (threadIdx.x == 0) {
    sm.prefix = 0;
    sm.mask = 0;
    sm.above = 0;
    sm.cnt_above = 0;
    sm.target = gamma * total;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    sm.cnt[threadIdx.x] = 0;
    sm.sum[threadIdx.x] = 0;
    __syncthreads();
    const uint32_t prefix = sm.prefix, mask = sm.mask;
    for (int64_t j = threadIdx.x; j < L.n_cand; j += kNT) {
      const float v = L.cand(j);
      if (!(v > 0.0f)) continue;
      const uint32_t key = order_key(v);
      if ((key & mask) != prefix) continue;
      const unsigned d = (key >> shift) & 255u;
      atomicAdd(&sm.cnt[d], 1u);
      atomicAdd(&sm.sum[d], double(v));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      // The largest digit whose suffix mass (with everything above it) reaches the target.
      double cum = sm.above;
      int64_t ccum = sm.cnt_above;
      int chosen = -1, lowest = -1;
      for (int d = 255; d >= 0; --d) {
        if (sm.cnt[d] == 0) continue;
        lowest = d;
        if (cum + sm.sum[d] >= sm.target) {
          chosen = d;
          break;
        }
        cum += sm.sum[d];
        ccum += sm.cnt[d];
      }
      if (chosen < 0) {  // rounding left the target just out of reach: the smallest digit
        chosen = lowest < 0 ? 0 : lowest;
        cum = sm.above;
        ccum = sm.cnt_above;
        for (int d = 255; d > chosen; --d) {
          cum += sm.sum[d];
          ccum += sm.cnt[d];
        }
      }
      sm.above = cum;
      sm.cnt_above = ccum;
      sm.eq = sm.cnt[chosen];
      sm.prefix |= uint32_t(chosen) << shift;
      sm.mask |= 255u << shift;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    // The ties of T, taken one by one as the CPU's running (descending) sum does.
    const double tv = double(key_value(sm.prefix));
    double acc = sm.above;
    int64_t m = 0;
    while (m < sm.eq && acc < sm.target) {
      acc += tv;
      ++m;
    }
    sm.c = sm.cnt_above + m;
  }
  __syncthreads();
  const int64_t c = sm.c;
  __syncthreads();
  return c;
}

// Walks the list's entries in ascending order; returns its size, writing the entries when
// `out` is given (at most `cap` − out0 of them).
__device__ int64_t walk(const List& L, uint32_t T, int64_t need, int64_t* ws, const SelectP& p, int64_t out0, bool write) {
  const int64_t U = L.span();
  int64_t ties = 0, written = 0;
  for (int64_t j0 = 0; j0 < U; j0 += kNT) {
    const int64_t j = j0 + threadIdx.x;
    const bool cand = j < L.n_cand;
    const uint32_t key = cand ? order_key(L.cand(j)) : 0u;
    const bool tie = cand && key == T;
    int64_t tot_ties = 0;
    const int64_t rank = block_exclusive_scan(tie ? 1 : 0, ws, &tot_ties);
    const bool sel = cand && (key > T || (tie && ties + rank < need));
    const bool in = j < U && (sel || L.forced(j));
    int64_t lo = j, hi = j + 1;
    if (p.expand_width > 0) {
      lo = j * p.expand_n / p.expand_width;
      hi = (j + 1) * p.expand_n / p.expand_width;
    }
    const int64_t len = in ? hi - lo : 0;
    int64_t tot_len = 0;
    const int64_t at = block_exclusive_scan(len, ws, &tot_len);
    if (write && in)
      for (int64_t t = 0; t < len; ++t) {
        const int64_t pos = out0 + written + at + t;
        if (pos < p.lists.cap) p.lists.entries[pos] = int32_t(lo + t);
      }
    ties += tot_ties;
    written += tot_len;
  }
  return written;
}

__global__ void __launch_bounds__(kNT) select_plan_kernel(SelectP p) {
  __shared__ RadixSmem sm;
  const int64_t l = blockIdx.x;
  List L;
  L.init(p, l);
  int64_t kk = p.cumulative ? mass_count(L, p.gamma, sm) : L.k;
  kk = min(max(kk, int64_t(0)), L.n_cand);
  uint32_t T = 0xffffffffu;  // above every key: nothing selected
  int64_t need = 0;
  if (kk > 0) radix_kth(L, kk, sm, &T, &need);
  const int64_t n = walk(L, T, need, sm.ws, p, 0, false);
  if (threadIdx.x == 0) {
    p.scratch[2 * l] = T;
    p.scratch[2 * l + 1] = uint32_t(need);
    p.lists.offsets[l + 1] = int32_t(n);
  }
}

__global__ void __launch_bounds__(kNT) select_write_kernel(SelectP p) {
  __shared__ int64_t ws[kNT / 32 + 1];
  const int64_t l = blockIdx.x;
  List L;
  L.init(p, l);
  walk(L, p.scratch[2 * l], int64_t(p.scratch[2 * l + 1]), ws, p, p.lists.offsets[l], true);
}

}  // namespace

size_t select_scratch_bytes(const SelectP& p) {
  return size_t(std::max<int64_t>(int64_t(p.batch) * p.list_heads * p.n_per, 1)) * 2 * sizeof(uint32_t);
}

cudaError_t select(const SelectP& p, cudaStream_t s) {
  const int64_t n = int64_t(p.batch) * p.list_heads * p.n_per;
  if (n <= 0) return cudaMemsetAsync(p.lists.offsets, 0, sizeof(int32_t), s);
  select_plan_kernel<<<unsigned(n), kNT, 0, s>>>(p);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if ((e = csr_scan(p.lists.offsets, n, s)) != cudaSuccess) return e;
  select_write_kernel<<<unsigned(n), kNT, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace ab::cuda::sel
