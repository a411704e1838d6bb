// Token-gather decode on the CPU (op 3): online-softmax attention of a kv group's query rows
// over the keys named by an index list, one key tile at a time. Keys are gathered into a
// contiguous tile (or read in place when the tile's indices are one contiguous run, as local
// windows and pages are), then S = Q·Kᵀ and acc += P·V are Eigen products.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC PR 105593 in AVX-512 headers
#endif
#include "cpu/gather_decode.hpp"

#include "cpu/cpu_common.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

namespace ab::cpu {
namespace {


// The one place where the tile size is chosen: keys per gathered tile.
// Measured with tests/bench/bench_gather_decode.cpp on the 2-core Xeon dev machine (shared,
// load ~8, so CPU time, 1 thread, mean of 3 interleaved runs), 32 query / 8 kv heads, d = 128,
// 2048 keys per list over a 32k cache:
//   keys/tile     64      128     256     512
//   random keys   4.47    4.02    3.57    4.09  ms
//   16-key pages  2.65    2.56    2.60    3.20  ms
// 256 it is (a gathered K+V tile of 256 KiB at d = 128 stays in L2; 512 spills).
constexpr int gather_key_tile() { return 256; }
// A chunk of at least this many tiles keeps the LSE merge (rows·dv per chunk) negligible.
constexpr int64_t kMinChunkTiles = 8;

struct Item {
  int64_t list;   // b*Hkv + kv head
  int64_t begin;  // into the list
  int64_t end;
};

struct Workspace {
  Eigen::VectorXf q, s, acc, m, l, kt, vt;
  Workspace(int64_t rows, int d, int dv, int bc)
      : q(rows * d), s(rows * bc), acc(rows * dv), m(rows), l(rows), kt(int64_t(bc) * d),
        vt(int64_t(bc) * dv) {}
};

void check_args(const GatherDecodeArgs& a) {
  const AttnShape& s = a.shape;
  auto fail = [](const std::string& why) { throw std::invalid_argument("cpu gather_decode: " + why); };
  check_host_qkv(s, a.q, a.k, a.v, true, fail);
  check_host_out(s, a.o, a.lse, fail);
  if (a.lists.on_device) fail("index lists are not in host memory");
  if (a.lists.lists != int64_t(s.batch) * s.kv_heads)
    fail("expected B·Hkv = " + std::to_string(int64_t(s.batch) * s.kv_heads) + " index lists, got " +
         std::to_string(a.lists.lists));
  if (a.lists.lists > 0 && !a.lists.offsets) fail("offsets is null");
  for (int64_t r = 0; r < a.lists.lists; ++r)
    if (a.lists.offsets[r] < 0 || a.lists.offsets[r + 1] < a.lists.offsets[r] ||
        a.lists.offsets[r + 1] > a.lists.total)
      fail("offsets must be non-decreasing within [0, total]");
  const int32_t* idx = a.lists.indices;
  for (int64_t e = 0; e < a.lists.total; ++e)
    if (idx[e] < 0 || idx[e] >= s.kv_len)
      fail("index " + std::to_string(idx[e]) + " outside the cache [0, " + std::to_string(s.kv_len) + ")");
}

// Rows of list `x.list`'s kv group (G heads × Nq rows, row g·Nq + i) over keys
// indices[begin, end) of the list. Leaves the unnormalised state (m, ℓ, acc) in w.
void run_item(const GatherDecodeArgs& a, const Item& x, float scale, Workspace& w) {
  const AttnShape& s = a.shape;
  const int d = s.head_dim, dv = s.v_dim, G = s.q_heads / s.kv_heads, bc = gather_key_tile();
  const int64_t nq = s.q_len, rows = int64_t(G) * nq;
  const int b = int(x.list / s.kv_heads), kh = int(x.list % s.kv_heads);
  const float* K = a.k.host_f32() + (int64_t(b) * s.kv_heads + kh) * s.kv_len * d;
  const float* V = a.v.host_f32() + (int64_t(b) * s.kv_heads + kh) * s.kv_len * dv;
  // The group's heads kh·G .. kh·G+G-1 are adjacent in Q, so their rows are one block.
  const float* Q = a.q.host_f32() + (int64_t(b) * s.q_heads + int64_t(kh) * G) * nq * d;
  MapRM(w.q.data(), rows, d) = scale * CMapRM(Q, rows, d);
  const CMapRM qt(w.q.data(), rows, d);
  MapRM acc(w.acc.data(), rows, dv);
  acc.setZero();
  float* m = w.m.data();
  float* l = w.l.data();
  std::fill(m, m + rows, kNegInf);
  std::fill(l, l + rows, 0.0f);
  const int32_t* idx = a.lists.indices + a.lists.offsets[x.list];

  for (int64_t k0 = x.begin; k0 < x.end; k0 += bc) {
    const int64_t nc = std::min<int64_t>(bc, x.end - k0);
    const int32_t* ix = idx + k0;
    const float* kt;
    const float* vt;
    bool run = true;  // the tile's indices are one contiguous ascending run
    for (int64_t c = 1; c < nc && run; ++c) run = ix[c] == ix[c - 1] + 1;
    if (run) {
      kt = K + int64_t(ix[0]) * d;
      vt = V + int64_t(ix[0]) * dv;
    } else {
      for (int64_t c = 0; c < nc; ++c) {
        std::copy_n(K + int64_t(ix[c]) * d, d, w.kt.data() + c * d);
        std::copy_n(V + int64_t(ix[c]) * dv, dv, w.vt.data() + c * dv);
      }
      kt = w.kt.data();
      vt = w.vt.data();
    }
    MapRM st(w.s.data(), rows, nc);
    st.noalias() = qt * CMapRM(kt, nc, d).transpose();
    online_softmax_tile(w.s.data(), rows, nc, m, l, acc);
    acc.noalias() += CMapRM(w.s.data(), rows, nc) * CMapRM(vt, nc, dv);
  }
}

// O and LSE of the list's rows from a finished state; ℓ = 0 (empty list) gives O = 0, -inf.
void write_rows(const GatherDecodeArgs& a, int64_t list, const float* acc, const float* m,
                const float* l) {
  const AttnShape& s = a.shape;
  const int dv = s.v_dim, G = s.q_heads / s.kv_heads;
  const int b = int(list / s.kv_heads), kh = int(list % s.kv_heads);
  const int64_t rows = int64_t(G) * s.q_len;
  const int64_t row0 = (int64_t(b) * s.q_heads + int64_t(kh) * G) * s.q_len;  // into O, LSE
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::Map<Eigen::VectorXf> o(a.o.host_f32() + (row0 + r) * dv, dv);
    if (l[r] > 0.0f) o = Eigen::Map<const Eigen::VectorXf>(acc + r * dv, dv) / l[r];
    else o.setZero();
    if (a.lse.data) a.lse.host_f32()[row0 + r] = l[r] > 0.0f ? m[r] + std::log(l[r]) : kNegInf;
  }
}

}  // namespace

void gather_decode(const GatherDecodeArgs& a, int64_t chunk_keys) {
  check_args(a);
  const AttnShape& s = a.shape;
  if (s.batch == 0 || s.q_len == 0) return;
  const int threads = omp_get_max_threads();
  const int d = s.head_dim, dv = s.v_dim, bc = gather_key_tile();
  const int64_t rows = int64_t(s.q_heads / s.kv_heads) * s.q_len;
  const int64_t n_lists = a.lists.lists;
  auto len = [&](int64_t r) { return int64_t(a.lists.offsets[r + 1]) - a.lists.offsets[r]; };

  // Chunk length: enough items for four per thread when the lists allow it (B·Hkv is often
  // below the thread count at decode), never under kMinChunkTiles tiles.
  int64_t chunk = chunk_keys;
  if (chunk <= 0) {
    const int64_t total = a.lists.offsets[n_lists] - a.lists.offsets[0];
    const int64_t want = 4 * int64_t(threads);
    chunk = std::max<int64_t>(kMinChunkTiles * bc, (total + want - 1) / std::max<int64_t>(1, want));
    chunk = (chunk + bc - 1) / bc * bc;
  }
  std::vector<Item> items;
  std::vector<int64_t> first_item(size_t(n_lists) + 1);
  for (int64_t r = 0; r < n_lists; ++r) {
    first_item[size_t(r)] = int64_t(items.size());
    const int64_t n = len(r);
    if (n == 0) items.push_back({r, 0, 0});
    for (int64_t b0 = 0; b0 < n; b0 += chunk) items.push_back({r, b0, std::min(n, b0 + chunk)});
  }
  first_item[size_t(n_lists)] = int64_t(items.size());
  const int64_t n_items = int64_t(items.size());
  const bool split = n_items > n_lists;
  std::vector<float> part_acc, part_ml;
  if (split) {
    part_acc.resize(size_t(n_items * rows * dv));
    part_ml.resize(size_t(n_items * rows * 2));
  }
  const float scale = a.effective_scale();

#pragma omp parallel num_threads(int(std::max<int64_t>(1, std::min<int64_t>(threads, n_items))))
  {
    Workspace w(rows, d, dv, bc);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; ++it) {
      const Item& x = items[size_t(it)];
      run_item(a, x, scale, w);
      const bool alone = first_item[size_t(x.list) + 1] - first_item[size_t(x.list)] == 1;
      if (alone) {
        write_rows(a, x.list, w.acc.data(), w.m.data(), w.l.data());
      } else {
        std::copy_n(w.acc.data(), rows * dv, part_acc.data() + it * rows * dv);
        std::copy_n(w.m.data(), rows, part_ml.data() + it * rows * 2);
        std::copy_n(w.l.data(), rows, part_ml.data() + it * rows * 2 + rows);
      }
    }
    if (split) {
      // Merge the chunks of a list by LSE: M = max m_c, ℓ = Σ ℓ_c e^{m_c-M}, acc likewise.
#pragma omp for schedule(dynamic, 1)
      for (int64_t r = 0; r < n_lists; ++r) {
        const int64_t c0 = first_item[size_t(r)], c1 = first_item[size_t(r) + 1];
        if (c1 - c0 == 1) continue;
        MapRM acc(w.acc.data(), rows, dv);
        for (int64_t row = 0; row < rows; ++row) {
          float mx = kNegInf;
          for (int64_t c = c0; c < c1; ++c) mx = std::max(mx, part_ml[size_t(c * rows * 2 + row)]);
          float l = 0;
          acc.row(row).setZero();
          if (mx != kNegInf)
            for (int64_t c = c0; c < c1; ++c) {
              const float mc = part_ml[size_t(c * rows * 2 + row)];
              if (mc == kNegInf) continue;
              const float wgt = std::exp(mc - mx);
              l += wgt * part_ml[size_t(c * rows * 2 + rows + row)];
              acc.row(row) += wgt * Eigen::Map<const Eigen::RowVectorXf>(
                                        part_acc.data() + (c * rows + row) * dv, dv);
            }
          w.m[row] = mx;
          w.l[row] = l;
        }
        write_rows(a, r, w.acc.data(), w.m.data(), w.l.data());
      }
    }
  }
}

}  // namespace ab::cpu
