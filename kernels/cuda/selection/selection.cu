// pool, project, scores, lse_merge and the CSR offsets scan on the GPU (selection.hpp). The
// arithmetic follows the CPU's (src/backends/cpu/cpu_select_ops.cpp) where it is exact there
// — pooled means summed in row order then scaled by 1/len, head means in head order, the
// normalised sums in row order — and forms the dot products as fp32 FMA chains over the head
// dimension (the CPU's Eigen GEMM sums in another order: the floats differ in the last bits).
#include <algorithm>
#include <cmath>

#include "cuda/selection/select_common.cuh"

namespace ab::cuda::sel {
namespace {

inline unsigned grid1(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

// ---- pool -------------------------------------------------------------------------------------

__global__ void pool_heads_kernel(PoolHeadsP p) {
  const int64_t D = p.in.n3, N = p.in.n2, Hin = p.in.n1;
  const int64_t total = p.in.n0 * p.hout * p.rows * D;
  const int64_t per_in = p.hout * p.group / Hin;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % D, r = e / D % p.rows, g = e / (D * p.rows) % p.hout, b = e / (D * p.rows * p.hout);
    const int64_t row = min(N - 1, r * p.row_stride + p.row_stride - 1);
    float acc = 0.0f;
    for (int t = 0; t < p.group; ++t) {
      const int64_t hin = (g * p.group + t) / per_in;
      const float v = ld(p.in, ((b * Hin + hin) * N + row) * D + c);
      acc = t == 0 ? v : (p.max ? fmaxf(acc, v) : acc + v);
    }
    // average_heads: Σ in head order, then × (1 / count)
    p.out[e] = p.max ? acc : acc * (1.0f / float(p.group));
  }
}

__global__ void pool_rows_kernel(PoolRowsP p) {
  const int64_t s = blockIdx.x, bh = blockIdx.y;
  const int64_t N = p.in.n2, D = p.in.n3;
  const int64_t end = p.rows_end > 0 ? min(p.rows_end, N) : N;
  const int64_t lo = p.bounds ? int64_t(p.bounds[s]) : s * p.block;
  const int64_t hi = p.bounds ? int64_t(p.bounds[s + 1]) : min(end, (s + 1) * p.block);
  const int64_t len = hi - lo;
  const int64_t base = (bh * N + lo) * D;
  float* dst = p.out + (bh * p.segs + s) * D;
  const int64_t lim = p.how == 3 ? min(max(int64_t(p.col_limits[s]), int64_t(0)), D) : D;
  for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
    float v = 0.0f;
    if (len > 0) {
      if (p.how == 3) {
        // normalized_sum: each row with t_r = Σ_{c<L} x (in order) > 0 adds x / t_r.
        if (c < lim) {
          for (int64_t r = 0; r < len; ++r) {
            float t = 0.0f;
            for (int64_t cc = 0; cc < lim; ++cc) t += ld(p.in, base + r * D + cc);
            if (t <= 0.0f) continue;
            v += ld(p.in, base + r * D + c) / t;
          }
        }
      } else if (p.how == 1) {
        v = ld(p.in, base + c);
        for (int64_t r = 1; r < len; ++r) v = fmaxf(v, ld(p.in, base + r * D + c));
      } else if (p.f64_sum) {
        double acc = 0;
        for (int64_t r = 0; r < len; ++r) acc += double(ld(p.in, base + r * D + c));
        v = float(acc / double(len));
      } else {
        for (int64_t r = 0; r < len; ++r) v += ld(p.in, base + r * D + c);
        if (p.how == 0) v *= 1.0f / float(len);
      }
      if (p.sqrt_len) v *= sqrtf(float(len));
    }
    dst[c] = v;
  }
}

// 1 − cos(a, b) of the `block`-row windows ending at t and after it; sums in double.
__global__ void window_contrast_kernel(WindowContrastP p) {
  const int64_t N = p.in.n2, D = p.in.n3, w = p.block, bh = blockIdx.y;
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= N) return;
  float out = kNegInf;
  if (t >= w - 1 && t < N - w) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t c = 0; c < D; ++c) {
      double a = 0, b = 0;
      for (int64_t r = t - w + 1; r <= t; ++r) a += double(ld(p.in, (bh * N + r) * D + c));
      for (int64_t r = t + 1; r <= t + w; ++r) b += double(ld(p.in, (bh * N + r) * D + c));
      dot += a * b;
      na += a * a;
      nb += b * b;
    }
    out = float(1.0 - dot / fmax(1e-30, sqrt(na * nb)));
  }
  p.out[bh * N + t] = out;
}

// ---- project ----------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t enc_max(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float dec_max(uint32_t e) {
  return __uint_as_float((e & 0x80000000u) ? (e ^ 0x80000000u) : ~e);
}

// ½·xs²·|x_n|² of the tile's rows into half[r] (a warp per row).
__device__ void favor_half(const FavorP& p, int64_t bh, int64_t n0, int nrows, float* half) {
  const int64_t N = p.x.n2, D = p.x.n3;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = warp; r < nrows; r += kNT / 32) {
    float sq = 0.0f;
    for (int64_t c = lane; c < D; c += 32) {
      const float v = ld(p.x, (bh * N + n0 + r) * D + c);
      sq = fmaf(v, v, sq);
    }
    sq = warp_sum(sq);
    if (lane == 0) half[r] = 0.5f * p.xs * p.xs * sq;
  }
}

__global__ void __launch_bounds__(kNT) favor_kernel(FavorP p) {
  __shared__ TileSmem sm;
  __shared__ float half[kRT], rmax[kRT];
  const int64_t bh = blockIdx.y, N = p.x.n2, D = p.x.n3, F = p.proj.n2;
  const int64_t n0 = int64_t(blockIdx.x) * kRT;
  const int nrows = int(min(int64_t(kRT), N - n0));
  favor_half(p, bh, n0, nrows, half);
  if (threadIdx.x < kRT) rmax[threadIdx.x] = kNegInf;
  __syncthreads();
  const float xs = p.xs;
  for (int64_t f0 = 0; f0 < F; f0 += kKT) {
    const int nf = int(min(int64_t(kKT), F - f0));
    logits_tile(
        sm, nrows, nf, int(D), [&](int r, int c) { return xs * ld(p.x, (bh * N + n0 + r) * D + c); },
        [&](int j, int c) { return ld(p.proj, (f0 + j) * D + c); }, 1.0f);
    for (int e = threadIdx.x; e < kRT * kKT; e += kNT) {
      const int r = e / kKT, j = e % kKT;
      if (r < nrows && j < nf) p.out[(bh * N + n0 + r) * F + f0 + j] = sm.s[r][j];
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int r = warp; r < nrows; r += kNT / 32) {
      const float a = lane < nf ? sm.s[r][lane] : kNegInf, b = lane + 32 < nf ? sm.s[r][lane + 32] : kNegInf;
      const float m = warp_max(fmaxf(a, b));
      if (lane == 0) rmax[r] = fmaxf(rmax[r], m);
    }
    __syncthreads();
  }
  if (!p.row_stab) {
    if (threadIdx.x == 0) {
      float m = kNegInf;
      for (int r = 0; r < nrows; ++r) m = fmaxf(m, rmax[r]);
      atomicMax(p.slice_max + bh, enc_max(m));
    }
    return;
  }
  const float inv_norm = sqrtf(float(F));
  for (int64_t e = threadIdx.x; e < int64_t(nrows) * F; e += kNT) {
    const int r = int(e / F);
    float* o = p.out + (bh * N + n0) * F + e;
    *o = expf((*o - half[r]) - rmax[r]) / inv_norm;
  }
}

__global__ void __launch_bounds__(kNT) favor_slice_kernel(FavorP p) {
  __shared__ float half[kRT];
  const int64_t bh = blockIdx.y, N = p.x.n2, F = p.proj.n2;
  const int64_t n0 = int64_t(blockIdx.x) * kRT;
  const int nrows = int(min(int64_t(kRT), N - n0));
  favor_half(p, bh, n0, nrows, half);
  __syncthreads();
  const float stab = dec_max(p.slice_max[bh]);
  const float inv_norm = sqrtf(float(F));
  for (int64_t e = threadIdx.x; e < int64_t(nrows) * F; e += kNT) {
    const int r = int(e / F);
    float* o = p.out + (bh * N + n0) * F + e;
    *o = expf((*o - half[r]) - stab) / inv_norm;
  }
}

__global__ void __launch_bounds__(kNT) sign_code_kernel(SignCodeP p) {
  __shared__ TileSmem sm;
  const int64_t bh = blockIdx.y, N = p.x.n2, D = p.x.n3, F = p.proj.n3;
  const int64_t n0 = int64_t(blockIdx.x) * kRT;
  const int nrows = int(min(int64_t(kRT), N - n0));
  logits_tile(
      sm, nrows, int(F), int(D), [&](int r, int c) { return ld(p.x, (bh * N + n0 + r) * D + c); },
      [&](int j, int c) { return ld(p.proj, int64_t(c) * F + j); }, 1.0f);
  if (threadIdx.x < nrows) {
    int32_t bin = 0;
    for (int f = 0; f < F; ++f)
      if (sm.s[threadIdx.x][f] > 0.0f) bin |= int32_t(1) << f;
    p.codes[bh * N + n0 + threadIdx.x] = p.code[bin];
  }
}

// ---- scores -----------------------------------------------------------------------------------

struct Geo {
  int64_t positions, stride, q_offset, n_keys;
  bool causal;
  __device__ int64_t pos(int64_t r) const { return min(positions - 1, r * stride + stride - 1); }
  __device__ int64_t vis(int64_t r) const {
    return causal ? min(max(pos(r) + 1 + q_offset, int64_t(0)), n_keys) : n_keys;
  }
};
__device__ Geo geo_of(const ScoresP& p) { return Geo{p.positions, p.row_stride, p.q_offset, p.n_keys, p.causal}; }

// Query value (b, h, row, c) and key value (b, kv head of h, key, c).
struct QK {
  const ScoresP* p;
  __device__ float q(int64_t b, int64_t h, int64_t row, int64_t c) const {
    return ld(p->q, ((b * p->q.n1 + h) * p->q.n2 + row) * p->q.n3 + c);
  }
  __device__ float k(int64_t b, int64_t h, int64_t key, int64_t c) const {
    const int64_t kh = h / (p->q.n1 / p->k.n1);
    return ld(p->k, ((b * p->k.n1 + kh) * p->k.n2 + key) * p->k.n3 + c);
  }
};

__global__ void __launch_bounds__(kNT) scores_raw_kernel(ScoresP p) {
  __shared__ TileSmem sm;
  const int64_t bh = blockIdx.z, Hq = p.q.n1, b = bh / Hq, h = bh % Hq;
  const int64_t nr = p.row_end - p.row_begin;
  const int64_t r0 = int64_t(blockIdx.x) * kRT, j0 = int64_t(blockIdx.y) * kKT;
  const int nrows = int(min(int64_t(kRT), nr - r0)), nk = int(min(int64_t(kKT), p.n_keys - j0));
  const QK qk{&p};
  const float scale = p.scale;
  logits_tile(
      sm, nrows, nk, int(p.q.n3), [&](int r, int c) { return scale * qk.q(b, h, p.row_begin + r0 + r, c); },
      [&](int j, int c) { return qk.k(b, h, j0 + j, c); }, 1.0f);
  for (int e = threadIdx.x; e < kRT * kKT; e += kNT) {
    const int r = e / kKT, j = e % kKT;
    if (r < nrows && j < nk) p.out[(bh * nr + r0 + r) * p.n_keys + j0 + j] = sm.s[r][j];
  }
}

// Pass 1 of the probability epilogues: (m, ℓ) of rows [ra, ra + nrows) of head h over their
// visible keys, in key tiles. vis[r]: visible keys of row r.
__device__ void row_stats(TileSmem& sm, const ScoresP& p, int64_t b, int64_t h, int64_t ra, int nrows,
                          const int64_t* vis, int64_t maxvis, float* m, float* l) {
  if (threadIdx.x < kRT) {
    m[threadIdx.x] = kNegInf;
    l[threadIdx.x] = 0.0f;
  }
  __syncthreads();
  const QK qk{&p};
  for (int64_t j0 = 0; j0 < maxvis; j0 += kKT) {
    const int nk = int(min(int64_t(kKT), maxvis - j0));
    logits_tile(
        sm, nrows, nk, int(p.q.n3), [&](int r, int c) { return qk.q(b, h, ra + r, c); },
        [&](int j, int c) { return qk.k(b, h, j0 + j, c); }, p.scale);
    stats_update(sm, m, l, nrows, [&](int r) { return int(min(max(vis[r] - j0, int64_t(0)), int64_t(kKT))); });
  }
}

__global__ void __launch_bounds__(kNT) scores_head_mean_kernel(ScoresP p) {
  __shared__ TileSmem sm;
  __shared__ float m[kRT], l[kRT];
  __shared__ int64_t vis[kRT];
  __shared__ int64_t maxvis_s;
  const int64_t G = p.q.n1 / p.head_group, bg = blockIdx.y, b = bg / G, g = bg % G;
  const int64_t nr = p.row_end - p.row_begin, r0 = int64_t(blockIdx.x) * kRT;
  const int nrows = int(min(int64_t(kRT), nr - r0));
  const int64_t ra = p.row_begin + r0;
  const Geo geo = geo_of(p);
  if (threadIdx.x < kRT) vis[threadIdx.x] = threadIdx.x < nrows ? geo.vis(ra + threadIdx.x) : 0;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t mv = 0;
    for (int r = 0; r < nrows; ++r) mv = max(mv, vis[r]);
    maxvis_s = mv;
  }
  __syncthreads();
  const int64_t maxvis = maxvis_s;
  const QK qk{&p};
  const float count = float(p.head_group);
  for (int t = 0; t < p.head_group; ++t) {
    const int64_t h = g * p.head_group + t;
    row_stats(sm, p, b, h, ra, nrows, vis, maxvis, m, l);
    // Keys past every row's visible range add p = 0: skipped (out starts at 0).
    for (int64_t j0 = 0; j0 < maxvis; j0 += kKT) {
      const int nk = int(min(int64_t(kKT), maxvis - j0));
      logits_tile(
          sm, nrows, nk, int(p.q.n3), [&](int r, int c) { return qk.q(b, h, ra + r, c); },
          [&](int j, int c) { return qk.k(b, h, j0 + j, c); }, p.scale);
      for (int e = threadIdx.x; e < kRT * kKT; e += kNT) {
        const int r = e / kKT, j = e % kKT;
        if (r >= nrows || j >= nk) continue;
        const float pr = j0 + j < vis[r] ? expf(sm.s[r][j] - m[r]) / l[r] : 0.0f;
        float* o = p.out + ((b * G + g) * nr + r0 + r) * p.n_keys + j0 + j;
        *o += pr / count;
      }
      __syncthreads();
    }
  }
}

__global__ void __launch_bounds__(kNT) scores_block_pool_kernel(ScoresP p) {
  __shared__ TileSmem sm;
  __shared__ float m[kRT], l[kRT], lse[kRT];
  __shared__ float part[kRT][kKT];
  __shared__ int64_t vis[kRT];
  __shared__ int64_t range_s[3];
  const int64_t o = blockIdx.x, bh = blockIdx.y, Hq = p.q.n1, b = bh / Hq, h = bh % Hq;
  const int64_t gv = o + p.group_base;
  const Geo geo = geo_of(p);
  if (threadIdx.x == 0) {
    // Rows of the group: positions ascend with the row, so the group is the range of rows
    // whose pos / row_block equals gv (two binary searches).
    int64_t lo = p.row_begin, hi = p.row_end;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (geo.pos(mid) / p.row_block < gv) lo = mid + 1;
      else hi = mid;
    }
    int64_t lo2 = lo, hi2 = p.row_end;
    while (lo2 < hi2) {
      const int64_t mid = (lo2 + hi2) / 2;
      if (geo.pos(mid) / p.row_block <= gv) lo2 = mid + 1;
      else hi2 = mid;
    }
    range_s[0] = lo;
    range_s[1] = lo2;
  }
  __syncthreads();
  const int64_t glo = range_s[0], ghi = range_s[1];
  if (glo >= ghi) return;
  const float n_group = float(ghi - glo);
  const int64_t kb = p.key_block, n_kb = (p.n_keys + kb - 1) / kb;
  const int64_t bpt = kb <= kKT ? kKT / kb : 1;  // whole key blocks per step
  float* orow = p.out + (bh * p.out_rows + o) * n_kb;
  const QK qk{&p};
  for (int64_t ra = glo; ra < ghi; ra += kRT) {
    const int nrows = int(min(int64_t(kRT), ghi - ra));
    if (threadIdx.x < kRT) vis[threadIdx.x] = threadIdx.x < nrows ? geo.vis(ra + threadIdx.x) : 0;
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t mv = 0;
      for (int r = 0; r < nrows; ++r) mv = max(mv, vis[r]);
      range_s[2] = mv;
    }
    __syncthreads();
    const int64_t maxvis = range_s[2];
    row_stats(sm, p, b, h, ra, nrows, vis, maxvis, m, l);
    if (threadIdx.x < nrows) lse[threadIdx.x] = vis[threadIdx.x] > 0 ? m[threadIdx.x] + logf(l[threadIdx.x]) : 0.0f;
    __syncthreads();
    for (int64_t nb0 = 0; nb0 * kb < maxvis; nb0 += bpt) {
      const int nbl = int(min(bpt, n_kb - nb0));
      const int64_t kend = min(p.n_keys, (nb0 + nbl) * kb);
      for (int e = threadIdx.x; e < kRT * kKT; e += kNT) part[e / kKT][e % kKT] = 0.0f;
      __syncthreads();
      for (int64_t js = nb0 * kb; js < min(kend, maxvis); js += kKT) {
        const int nk = int(min(int64_t(kKT), kend - js));
        logits_tile(
            sm, nrows, nk, int(p.q.n3), [&](int r, int c) { return qk.q(b, h, ra + r, c); },
            [&](int j, int c) { return qk.k(b, h, js + j, c); }, p.scale);
        for (int e = threadIdx.x; e < kRT * nbl; e += kNT) {
          const int r = e / nbl, bi = e % nbl;
          if (r >= nrows) continue;
          const int64_t k0 = max(js, (nb0 + bi) * kb), k1 = min(js + nk, min(kend, (nb0 + bi + 1) * kb));
          float acc = part[r][bi];
          for (int64_t j = k0; j < k1; ++j) {
            const float pr = j < vis[r] ? expf(sm.s[r][j - js] - lse[r]) : 0.0f;
            acc = p.key_max ? fmaxf(acc, pr) : acc + pr;
          }
          part[r][bi] = acc;
        }
        __syncthreads();
      }
      for (int bi = threadIdx.x; bi < nbl; bi += kNT) {
        const int64_t n = nb0 + bi;
        const float len = float(min(p.n_keys, (n + 1) * kb) - n * kb);
        float g = orow[n];
        for (int r = 0; r < nrows; ++r) {
          const float v = p.key_max ? part[r][bi] : part[r][bi] / len;
          g = p.row_max ? fmaxf(g, v) : g + v / n_group;
        }
        orow[n] = g;
      }
      __syncthreads();
    }
  }
}

// keys_reaching: list (b, h, g); count (write = false: offsets[l + 1] = size) or write.
__global__ void __launch_bounds__(kNT) scores_keys_reaching_kernel(ScoresP p, bool write) {
  __shared__ TileSmem sm;
  __shared__ float thr[kRT];
  __shared__ int flags[kKT];
  __shared__ int64_t base_s;
  const int64_t Nr = p.q.n2, rg = p.row_group, n_groups = (Nr + rg - 1) / rg;
  const int64_t g = blockIdx.x, bh = blockIdx.y, Hq = p.q.n1, b = bh / Hq, h = bh % Hq;
  const int64_t list = bh * n_groups + g;
  const int64_t c0 = p.key_begin, c1 = min(p.n_keys, g * p.keys_per_group);
  const int64_t r0 = g * rg, r1 = min(Nr, r0 + rg);
  const bool all = p.partial_keeps_all && (g + 1) * rg * p.row_stride > p.positions;
  const int64_t out0 = write ? p.lists.offsets[list] : 0;
  if (threadIdx.x == 0) base_s = 0;
  __syncthreads();
  const QK qk{&p};
  const float scale = p.scale;
  for (int64_t j0 = c0; j0 < c1; j0 += kKT) {
    const int nk = int(min(int64_t(kKT), c1 - j0));
    if (threadIdx.x < kKT) flags[threadIdx.x] = all && int(threadIdx.x) < nk ? 1 : 0;
    __syncthreads();
    if (!all) {
      for (int64_t ra = r0; ra < r1; ra += kRT) {
        const int nrows = int(min(int64_t(kRT), r1 - ra));
        if (threadIdx.x < nrows) thr[threadIdx.x] = ld(p.thr, bh * Nr + ra + threadIdx.x) - p.thr_offset;
        logits_tile(
            sm, nrows, nk, int(p.q.n3), [&](int r, int c) { return scale * qk.q(b, h, ra + r, c); },
            [&](int j, int c) { return qk.k(b, h, j0 + j, c); }, 1.0f);
        for (int e = threadIdx.x; e < kRT * kKT; e += kNT) {
          const int r = e / kKT, j = e % kKT;
          if (r < nrows && j < nk && sm.s[r][j] >= thr[r]) flags[j] = 1;
        }
        __syncthreads();
      }
    }
    // Ascending compaction of the tile's keys: warps 0 and 1 take keys 0..31 and 32..63.
    if (threadIdx.x < kKT) {
      const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
      const unsigned bal = __ballot_sync(0xffffffffu, flags[threadIdx.x] != 0);
      const int before = __popc(bal & ((1u << lane) - 1u));
      // warp 1 starts after warp 0's keys
      const int n0 = w == 0 ? 0 : __popc(__ballot_sync(0xffffffffu, flags[lane] != 0));
      const int pos = (w == 0 ? 0 : n0) + before;
      if (write && flags[threadIdx.x]) {
        const int64_t at = out0 + base_s + pos;
        if (at < p.lists.cap) p.lists.entries[at] = int32_t(j0 + threadIdx.x);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int cnt = 0;
      for (int j = 0; j < kKT; ++j) cnt += flags[j];
      base_s += cnt;
    }
    __syncthreads();
  }
  if (!write && threadIdx.x == 0) p.lists.offsets[list + 1] = int32_t(base_s);
}

__global__ void __launch_bounds__(kNT) scores_norm_sum_kernel(ScoresP p) {
  __shared__ TileSmem sm;
  __shared__ float tot[kRT];
  const int64_t gi = blockIdx.x, bh = blockIdx.y, Hq = p.q.n1, b = bh / Hq, h = bh % Hq;
  const int64_t nr = p.row_end - p.row_begin, rg = p.row_group, n_groups = (nr + rg - 1) / rg;
  const int64_t L = min(max(int64_t(p.col_limits[gi]), int64_t(0)), p.n_keys);
  const int64_t rb = p.row_begin + gi * rg, re = p.row_begin + min(nr, (gi + 1) * rg);
  float* orow = p.out + (bh * n_groups + gi) * p.n_keys;
  const QK qk{&p};
  const float scale = p.scale;
  for (int64_t ra = rb; ra < re; ra += kRT) {
    const int nrows = int(min(int64_t(kRT), re - ra));
    if (threadIdx.x < kRT) tot[threadIdx.x] = 0.0f;
    __syncthreads();
    for (int64_t j0 = 0; j0 < L; j0 += kKT) {  // t_r = Σ_{c < L} x_rc
      const int nk = int(min(int64_t(kKT), L - j0));
      logits_tile(
          sm, nrows, nk, int(p.q.n3), [&](int r, int c) { return scale * qk.q(b, h, ra + r, c); },
          [&](int j, int c) { return qk.k(b, h, j0 + j, c); }, 1.0f);
      const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
      for (int r = warp; r < nrows; r += kNT / 32) {
        const float s = warp_sum((lane < nk ? sm.s[r][lane] : 0.0f) + (lane + 32 < nk ? sm.s[r][lane + 32] : 0.0f));
        if (lane == 0) tot[r] += s;
      }
      __syncthreads();
    }
    for (int64_t j0 = 0; j0 < L; j0 += kKT) {
      const int nk = int(min(int64_t(kKT), L - j0));
      logits_tile(
          sm, nrows, nk, int(p.q.n3), [&](int r, int c) { return scale * qk.q(b, h, ra + r, c); },
          [&](int j, int c) { return qk.k(b, h, j0 + j, c); }, 1.0f);
      if (threadIdx.x < nk) {
        float acc = orow[j0 + threadIdx.x];
        for (int r = 0; r < nrows; ++r) {
          if (tot[r] <= 0.0f) continue;
          acc += sm.s[r][threadIdx.x] / tot[r];
        }
        orow[j0 + threadIdx.x] = acc;
      }
      __syncthreads();
    }
  }
}

// ---- lse_merge: a warp per row ------------------------------------------------------------------

__global__ void lse_merge_kernel(LseMergeP p) {
  const int64_t rows = p.o.n0 * p.o.n1 * p.o.n2, N = p.o.n2, dv = p.o.n3;
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float l1 = p.lse[row];
  float l2 = p.lse2[row];
  if (p.row_offset) l2 += p.row_offset[row % N];
  l2 = l2 == kNegInf ? kNegInf : l2 + p.offset;
  void* o = const_cast<void*>(p.o.p);
  const int64_t base = row * dv;
  float lout;
  if (l2 == kNegInf) {  // part 2 empty: keep part 1 (zeros when both are)
    lout = l1;
    if (l1 == kNegInf)
      for (int64_t c = lane; c < dv; c += 32) st(o, p.o.elem, base + c, 0.0f);
  } else if (l1 == kNegInf) {
    lout = l2;
    for (int64_t c = lane; c < dv; c += 32) st(o, p.o.elem, base + c, ld(p.o2, base + c));
  } else {
    const float mx = fmaxf(l1, l2);
    const float w1 = expf(l1 - mx), w2 = expf(l2 - mx);
    const float inv = 1.0f / (w1 + w2);
    const float c1 = w1 * inv, c2 = w2 * inv;
    for (int64_t c = lane; c < dv; c += 32) st(o, p.o.elem, base + c, c1 * ld(p.o, base + c) + c2 * ld(p.o2, base + c));
    lout = mx + logf(w1 + w2);
  }
  __syncwarp();
  if (lane == 0) p.lse[row] = lout;
}

// ---- CSR offsets scan ---------------------------------------------------------------------------

__global__ void __launch_bounds__(kNT) csr_scan_kernel(int32_t* offsets, int64_t n) {
  __shared__ int64_t ws[kNT / 32 + 1];
  int64_t carry = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kNT) {
    const int64_t i = i0 + threadIdx.x;
    const int64_t v = i < n ? int64_t(offsets[1 + i]) : 0;
    int64_t total = 0;
    const int64_t ex = block_exclusive_scan(v, ws, &total);
    if (i < n) offsets[1 + i] = int32_t(carry + ex + v);
    carry += total;
  }
  if (threadIdx.x == 0) offsets[0] = 0;
}

}  // namespace

cudaError_t csr_scan(int32_t* offsets, int64_t n, cudaStream_t s) {
  csr_scan_kernel<<<1, kNT, 0, s>>>(offsets, n);
  return cudaGetLastError();
}

cudaError_t pool_heads(const PoolHeadsP& p, cudaStream_t s) {
  const int64_t total = p.in.n0 * p.hout * p.rows * p.in.n3;
  if (total <= 0) return cudaSuccess;
  pool_heads_kernel<<<unsigned(std::min<int64_t>(grid1(total, 256), 65535 * 8)), 256, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t pool_rows(const PoolRowsP& p, cudaStream_t s) {
  if (p.segs <= 0 || p.in.n0 * p.in.n1 <= 0 || p.in.n3 <= 0) return cudaSuccess;
  pool_rows_kernel<<<dim3(unsigned(p.segs), unsigned(p.in.n0 * p.in.n1)), 128, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t window_contrast(const WindowContrastP& p, cudaStream_t s) {
  if (p.in.n2 <= 0 || p.in.n0 * p.in.n1 <= 0) return cudaSuccess;
  window_contrast_kernel<<<dim3(grid1(p.in.n2, 128), unsigned(p.in.n0 * p.in.n1)), 128, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t project_favor(const FavorP& p, cudaStream_t s) {
  const int64_t BH = p.x.n0 * p.x.n1, N = p.x.n2;
  if (BH <= 0 || N <= 0 || p.proj.n2 <= 0) return cudaSuccess;
  const dim3 grid(grid1(N, kRT), unsigned(BH));
  if (!p.row_stab) {
    cudaError_t e = cudaMemsetAsync(p.slice_max, 0, size_t(BH) * sizeof(uint32_t), s);
    if (e != cudaSuccess) return e;
  }
  favor_kernel<<<grid, kNT, 0, s>>>(p);
  if (!p.row_stab) favor_slice_kernel<<<grid, kNT, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t project_sign_code(const SignCodeP& p, cudaStream_t s) {
  const int64_t BH = p.x.n0 * p.x.n1, N = p.x.n2;
  if (BH <= 0 || N <= 0) return cudaSuccess;
  sign_code_kernel<<<dim3(grid1(N, kRT), unsigned(BH)), kNT, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t scores(const ScoresP& p, cudaStream_t s) {
  const int64_t B = p.q.n0, Hq = p.q.n1, nr = p.row_end - p.row_begin;
  cudaError_t e = cudaSuccess;
  const size_t out_bytes = size_t(B) * size_t(Hq) * sizeof(float);  // × rows × cols below
  switch (p.epilogue) {
    case 0:
      if (nr <= 0 || p.n_keys <= 0) return cudaSuccess;
      scores_raw_kernel<<<dim3(grid1(nr, kRT), grid1(p.n_keys, kKT), unsigned(B * Hq)), kNT, 0, s>>>(p);
      break;
    case 1: {
      const int64_t G = Hq / p.head_group;
      e = cudaMemsetAsync(p.out, 0, size_t(B * G) * size_t(nr) * size_t(p.n_keys) * sizeof(float), s);
      if (e != cudaSuccess || nr <= 0 || p.n_keys <= 0) return e;
      scores_head_mean_kernel<<<dim3(grid1(nr, kRT), unsigned(B * G)), kNT, 0, s>>>(p);
      break;
    }
    case 2: {
      const int64_t n_kb = (p.n_keys + p.key_block - 1) / p.key_block;
      e = cudaMemsetAsync(p.out, 0, out_bytes * size_t(p.out_rows) * size_t(n_kb), s);
      if (e != cudaSuccess || nr <= 0 || p.out_rows <= 0) return e;
      scores_block_pool_kernel<<<dim3(unsigned(p.out_rows), unsigned(B * Hq)), kNT, 0, s>>>(p);
      break;
    }
    case 3: {
      const int64_t n_groups = (p.q.n2 + p.row_group - 1) / p.row_group;
      if (B * Hq * n_groups == 0) {
        e = cudaMemsetAsync(p.lists.offsets, 0, sizeof(int32_t), s);
        break;
      }
      const dim3 grid(unsigned(n_groups), unsigned(B * Hq));
      scores_keys_reaching_kernel<<<grid, kNT, 0, s>>>(p, false);
      if ((e = cudaGetLastError()) != cudaSuccess) return e;
      if ((e = csr_scan(p.lists.offsets, B * Hq * n_groups, s)) != cudaSuccess) return e;
      scores_keys_reaching_kernel<<<grid, kNT, 0, s>>>(p, true);
      break;
    }
    case 4: {
      const int64_t n_groups = (nr + p.row_group - 1) / p.row_group;
      e = cudaMemsetAsync(p.out, 0, out_bytes * size_t(n_groups) * size_t(p.n_keys), s);
      if (e != cudaSuccess || nr <= 0 || p.n_keys <= 0) return e;
      scores_norm_sum_kernel<<<dim3(unsigned(n_groups), unsigned(B * Hq)), kNT, 0, s>>>(p);
      break;
    }
    default:
      return cudaErrorInvalidValue;
  }
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

cudaError_t lse_merge(const LseMergeP& p, cudaStream_t s) {
  const int64_t rows = p.o.n0 * p.o.n1 * p.o.n2;
  if (rows <= 0) return cudaSuccess;
  lse_merge_kernel<<<grid1(rows * 32, 256), 256, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace ab::cuda::sel
