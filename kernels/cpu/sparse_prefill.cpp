// Op 2 on the CPU: sparse prefill SDPA over key-block or key-index lists, fp32, with the
// online softmax of FlashAttention-2 (Dao 2023) and a resumable (m, ℓ, acc) state.
// Per work item (batch, head, list, row tile): gather the tile's query rows, walk the list's
// keys as score tiles of at most kSpanKeys keys (consecutive blocks or consecutive indices
// are read in place, other indices are gathered), S = Q·Kᵀ and acc += P·V as Eigen products.
// Memory per thread: one query tile, one score tile, one gathered K/V tile, one accumulator.
// GCC 12 warns -Wmaybe-uninitialized inside its own AVX-512 intrinsic headers when Eigen's
// packet math is inlined (a false positive on _mm512_undefined_*, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "cpu/sparse_prefill.hpp"

#include "cpu/cpu_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <omp.h>

#include <Eigen/Core>

namespace ab::cpu {
namespace {

// Tile sizes. 256 keys per span, sdpa_flash's key tile, keeps the sparse and
// dense kernels' per-tile efficiency comparable (a speedup measures the selection, not a
// tiling difference); 128 query rows, half of sdpa_flash's, measured faster here (below).
constexpr int64_t kTileRows = 128;
constexpr int64_t kSpanKeys = 256;
// Rejected: 256-row tiles for index lists (to read each gathered key for more rows) measured
// slower on this machine — attention phase at N = 8192, H = 4, d = 64, structured input:
// hyperattention(min_seq_len 1024) 0.31 s -> 0.50 s, sea(k 8) 0.08 s -> 0.14 s, dhsa(1024)
// 0.21 s -> 0.24 s (the 256×256 score tile leaves L1/L2; the box was loaded, load average ~8).
int64_t tile_rows(const SparsePrefillArgs& a) {
  (void)a;
  return kTileRows;
}


[[noreturn]] void fail(const std::string& why) {
  throw std::invalid_argument("sparse_prefill: " + why);
}

void check_lists(const SparsePrefillArgs& a);

// One unit of work: `rows` query rows of head h in batch b, all reading list `list`.
struct Item {
  int b = 0, h = 0;
  int64_t list = 0;
  int64_t first = 0;      // first row (implicit groups) or offset into q_rows (explicit)
  int64_t rows = 0;
  bool explicit_rows = false;
  double cost = 0;
};

// A score tile: keys [k0, k0 + n) read in place, or the n indices at idx (gathered).
struct Span {
  bool direct;
  int64_t k0;
  const int32_t* idx;
  int64_t n;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t n_lists(const SparsePrefillArgs& a) {
  const AttnShape& s = a.shape;
  if (a.layout == SparseLayout::key_blocks)
    return int64_t(s.batch) * a.blocks.list_heads * ceil_div(s.q_len, a.blocks.q_block);
  return int64_t(s.batch) * a.indices.list_heads * a.indices.n_groups;
}

int list_heads(const SparsePrefillArgs& a) {
  return a.layout == SparseLayout::key_blocks ? a.blocks.list_heads : a.indices.list_heads;
}

int64_t groups_per_head(const SparsePrefillArgs& a) {
  return a.layout == SparseLayout::key_blocks ? ceil_div(a.shape.q_len, a.blocks.q_block)
                                              : a.indices.n_groups;
}

bool explicit_rows(const SparsePrefillArgs& a) {
  return a.layout == SparseLayout::key_indices && a.indices.q_rows != nullptr;
}

// Rows of group g of one (b, list head), for implicit groups.
void implicit_rows(const SparsePrefillArgs& a, int64_t g, int64_t& r0, int64_t& r1) {
  const int64_t size = a.layout == SparseLayout::key_blocks ? a.blocks.q_block : a.indices.q_group;
  r0 = std::min(a.shape.q_len, g * size);
  r1 = std::min(a.shape.q_len, r0 + size);
}

int64_t list_len(const SparsePrefillArgs& a, int64_t r) {
  const int32_t* off = a.layout == SparseLayout::key_blocks ? a.blocks.offsets : a.indices.offsets;
  return int64_t(off[r + 1]) - off[r];
}

std::vector<Item> make_items(const SparsePrefillArgs& a) {
  const AttnShape& s = a.shape;
  const int lh_count = list_heads(a);
  const int64_t groups = groups_per_head(a);
  const double keys_per_entry =
      a.layout == SparseLayout::key_blocks ? double(a.blocks.k_block) : 1.0;
  const int64_t tile = tile_rows(a);
  std::vector<Item> items;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.q_heads; ++h) {
      const int lh = lh_count == 1 ? 0 : h;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t r = (int64_t(b) * lh_count + lh) * groups + g;
        const double keys = double(list_len(a, r)) * keys_per_entry;
        int64_t r0, r1;
        if (explicit_rows(a)) {
          r0 = a.indices.q_offsets[r];
          r1 = a.indices.q_offsets[r + 1];
        } else {
          implicit_rows(a, g, r0, r1);
        }
        for (int64_t t = r0; t < r1; t += tile) {
          Item it;
          it.b = b;
          it.h = h;
          it.list = r;
          it.first = t;
          it.rows = std::min(r1, t + tile) - t;
          it.explicit_rows = explicit_rows(a);
          it.cost = double(it.rows) * (keys + 1.0);
          items.push_back(it);
        }
      }
    }
  // Heaviest first, so that dynamic scheduling ends on small items.
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& x, const Item& y) { return x.cost > y.cost; });
  return items;
}

int64_t row_of(const SparsePrefillArgs& a, const Item& it, int64_t t) {
  return it.explicit_rows ? a.indices.q_rows[it.first + t] : it.first + t;
}

// Calls f(span) for every score tile of the item's list, given the largest absolute query
// position in the tile (keys above it are masked for every row under causal).
template <class F>
void for_each_span(const SparsePrefillArgs& a, const Item& it, int64_t max_qpos, F&& f) {
  const AttnShape& s = a.shape;
  const int64_t limit = s.causal ? std::min<int64_t>(s.kv_len, max_qpos + 1) : s.kv_len;
  if (limit <= 0) return;
  if (a.layout == SparseLayout::key_blocks) {
    const int32_t* bl = a.blocks.blocks + a.blocks.offsets[it.list];
    const int64_t n = list_len(a, it.list), kb = a.blocks.k_block;
    int64_t i = 0;
    while (i < n) {
      const int64_t s0 = int64_t(bl[i]) * kb;
      int64_t e = std::min(s.kv_len, s0 + kb);
      int64_t j = i + 1;
      while (j < n && bl[j] == bl[j - 1] + 1) {
        e = std::min(s.kv_len, int64_t(bl[j]) * kb + kb);
        ++j;
      }
      i = j;
      if (s0 >= limit) break;  // ascending: every later block is masked too
      e = std::min(e, limit);
      for (int64_t k0 = s0; k0 < e; k0 += kSpanKeys) f(Span{true, k0, nullptr, std::min(e, k0 + kSpanKeys) - k0});
    }
  } else {
    const int32_t* ix = a.indices.indices + a.indices.offsets[it.list];
    int64_t n = list_len(a, it.list);
    if (s.causal) n = std::upper_bound(ix, ix + n, int32_t(limit - 1)) - ix;
    for (int64_t c0 = 0; c0 < n; c0 += kSpanKeys) {
      const int64_t m = std::min(n, c0 + kSpanKeys) - c0;
      // Ascending indices spanning m - 1 are m consecutive keys: read them in place.
      const bool direct = int64_t(ix[c0 + m - 1]) - ix[c0] == m - 1;
      f(Span{direct, ix[c0], ix + c0, m});
    }
  }
}

struct Workspace {
  Eigen::VectorXf q, s, acc, m, l, kg, vg;
  std::vector<int64_t> qpos;
  Workspace(int d, int dv)
      : q(kTileRows * d), s(kTileRows * kSpanKeys), acc(kTileRows * dv), m(kTileRows),
        l(kTileRows), kg(kSpanKeys * d), vg(kSpanKeys * dv), qpos(kTileRows) {}
};

int64_t state_row(const AttnShape& s, int b, int h, int64_t row) {
  return (int64_t(b) * s.q_heads + h) * s.q_len + row;
}

void load_state(const SparsePrefillArgs& a, int64_t srow, int64_t r, Workspace& w) {
  const int dv = a.shape.v_dim;
  if (a.state_in.present()) {
    w.m[r] = a.state_in.m.host_f32()[srow];
    w.l[r] = a.state_in.l.host_f32()[srow];
    std::memcpy(w.acc.data() + r * dv, a.state_in.acc.host_f32() + srow * dv, sizeof(float) * size_t(dv));
  } else {
    w.m[r] = kNegInf;
    w.l[r] = 0.0f;
    std::fill(w.acc.data() + r * dv, w.acc.data() + (r + 1) * dv, 0.0f);
  }
}

void store_row(const SparsePrefillArgs& a, int64_t srow, int64_t r, const Workspace& w) {
  const int dv = a.shape.v_dim;
  const float m = w.m[r], l = w.l[r];
  const float* acc = w.acc.data() + r * dv;
  if (a.state_out.present()) {
    a.state_out.m.host_f32()[srow] = m;
    a.state_out.l.host_f32()[srow] = l;
    std::memcpy(a.state_out.acc.host_f32() + srow * dv, acc, sizeof(float) * size_t(dv));
  }
  if (a.finalize) {
    float* o = a.o.host_f32() + srow * dv;
    if (l > 0.0f) {
      const float inv = 1.0f / l;
      for (int c = 0; c < dv; ++c) o[c] = acc[c] * inv;
    } else {
      std::fill(o, o + dv, 0.0f);
    }
    if (a.lse.data) a.lse.host_f32()[srow] = l > 0.0f ? m + std::log(l) : kNegInf;
  }
}

void run_item(const SparsePrefillArgs& a, const Item& it, float scale, Workspace& w) {
  const AttnShape& s = a.shape;
  const int d = s.head_dim, dv = s.v_dim;
  const int kvh = a.kv_head_of(it.h);
  const int64_t nr = it.rows, off = s.q_offset();
  const float* K = a.k.host_f32() + (int64_t(it.b) * s.kv_heads + kvh) * s.kv_len * d;
  const float* V = a.v.host_f32() + (int64_t(it.b) * s.kv_heads + kvh) * s.kv_len * dv;
  const float* Q = a.q.host_f32() + (int64_t(it.b) * s.q_heads + it.h) * s.q_len * d;

  int64_t min_qpos = std::numeric_limits<int64_t>::max(), max_qpos = -1;
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t row = row_of(a, it, r);
    w.qpos[size_t(r)] = row + off;
    min_qpos = std::min(min_qpos, row + off);
    max_qpos = std::max(max_qpos, row + off);
    // Q tile (nr, D), pre-scaled.
    Eigen::Map<Eigen::VectorXf>(w.q.data() + r * d, d) =
        scale * Eigen::Map<const Eigen::VectorXf>(Q + row * d, d);
    load_state(a, state_row(s, it.b, it.h, row), r, w);
  }
  const CMapRM qt(w.q.data(), nr, d);
  MapRM acc(w.acc.data(), nr, dv);
  float* m = w.m.data();
  float* l = w.l.data();

  for_each_span(a, it, max_qpos, [&](const Span& sp) {
    const int64_t nc = sp.n;
    const float* Kp;
    const float* Vp;
    if (sp.direct) {
      Kp = K + sp.k0 * d;
      Vp = V + sp.k0 * dv;
    } else {
      for (int64_t c = 0; c < nc; ++c) {
        std::memcpy(w.kg.data() + c * d, K + int64_t(sp.idx[c]) * d, sizeof(float) * size_t(d));
        std::memcpy(w.vg.data() + c * dv, V + int64_t(sp.idx[c]) * dv, sizeof(float) * size_t(dv));
      }
      Kp = w.kg.data();
      Vp = w.vg.data();
    }
    // S (nr, nc) = (scale·Q) Kᵀ
    MapRM st(w.s.data(), nr, nc);
    st.noalias() = qt * CMapRM(Kp, nc, d).transpose();
    const int64_t last_key = sp.direct ? sp.k0 + nc - 1 : sp.idx[nc - 1];
    if (s.causal && last_key > min_qpos) {
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t qp = w.qpos[size_t(r)];
        float* srow = w.s.data() + r * nc;
        if (sp.direct) {
          for (int64_t c = std::max<int64_t>(0, qp - sp.k0 + 1); c < nc; ++c) srow[c] = kNegInf;
        } else {
          for (int64_t c = 0; c < nc; ++c)
            if (sp.idx[c] > qp) srow[c] = kNegInf;
        }
      }
    }
    online_softmax_tile(w.s.data(), nr, nc, m, l, acc);
    // acc (nr, Dv) += P V
    acc.noalias() += CMapRM(w.s.data(), nr, nc) * CMapRM(Vp, nc, dv);
  });

  for (int64_t r = 0; r < nr; ++r) store_row(a, state_row(s, it.b, it.h, row_of(a, it, r)), r, w);
}

void check_state(const SoftmaxState& st, const AttnShape& s, const char* name) {
  if (!st.present()) return;
  const Shape4 row{s.batch, s.q_heads, s.q_len, 1};
  const Shape4 acc{s.batch, s.q_heads, s.q_len, s.v_dim};
  if (st.m.on_device || st.l.on_device || st.acc.on_device)
    fail(std::string(name) + " is not in host memory");
  if (st.m.shape != row || st.l.shape != row || st.acc.shape != acc || !st.l.data || !st.acc.data)
    fail(std::string(name) + ": m and l must be (B, Hq, Nq, 1) and acc (B, Hq, Nq, Dv)");
}

// Which rows of each (b, list head) some group names; throws when a row is named twice.
std::vector<char> coverage(const SparsePrefillArgs& a) {
  const AttnShape& s = a.shape;
  const int lhn = a.indices.list_heads;
  std::vector<char> seen(size_t(int64_t(s.batch) * lhn * s.q_len), 0);
  for (int b = 0; b < s.batch; ++b)
    for (int lh = 0; lh < lhn; ++lh)
      for (int64_t g = 0; g < a.indices.n_groups; ++g) {
        const int64_t r = (int64_t(b) * lhn + lh) * a.indices.n_groups + g;
        for (int32_t p = a.indices.q_offsets[r]; p < a.indices.q_offsets[r + 1]; ++p) {
          const int32_t row = a.indices.q_rows[p];
          if (row < 0 || row >= s.q_len)
            fail("q_rows entry " + std::to_string(row) + " outside [0, " + std::to_string(s.q_len) + ")");
          char& c = seen[size_t((int64_t(b) * lhn + lh) * s.q_len + row)];
          if (c) fail("query row " + std::to_string(row) + " is in two groups");
          c = 1;
        }
      }
  return seen;
}

}  // namespace

void sparse_prefill_check(const SparsePrefillArgs& a) {
  const AttnShape& s = a.shape;
  check_host_qkv(s, a.q, a.k, a.v, true, fail);
  if (a.finalize) {
    check_host_out(s, a.o, a.lse, fail);
  } else if (!a.state_out.present()) {
    fail("neither finalize nor state_out: the result would be lost");
  }
  check_state(a.state_in, s, "state_in");
  check_state(a.state_out, s, "state_out");
  check_lists(a);
}

namespace {
void check_lists(const SparsePrefillArgs& a) {
  const AttnShape& s = a.shape;
  const int lh = list_heads(a);
  if (lh != 1 && lh != s.q_heads) fail("list_heads must be 1 or Hq = " + std::to_string(s.q_heads));
  if (a.layout == SparseLayout::key_blocks) {
    const KeyBlockLists& L = a.blocks;
    if (L.on_device) fail("block lists are not in host memory");
    if (L.q_block <= 0 || L.k_block <= 0) fail("q_block and k_block must be >= 1");
    if (!L.offsets || (!L.blocks && n_lists(a) > 0 && L.offsets[n_lists(a)] > 0)) fail("block lists are null");
    const int64_t n_kb = ceil_div(s.kv_len, L.k_block);
    const int64_t nl = n_lists(a);
    if (L.offsets[0] != 0) fail("block list offsets must start at 0");
    // A parallel pass finds whether anything is wrong; the serial pass below names it.
    bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad) if (nl > 256)
    for (int64_t r = 0; r < nl; ++r) {
      bad = bad || L.offsets[r + 1] < L.offsets[r];
      for (int32_t p = L.offsets[r]; p < L.offsets[r + 1] && !bad; ++p)
        bad = L.blocks[p] < 0 || L.blocks[p] >= n_kb || (p > L.offsets[r] && L.blocks[p] <= L.blocks[p - 1]);
    }
    for (int64_t r = 0; r < nl && bad; ++r) {
      if (L.offsets[r + 1] < L.offsets[r]) fail("block list offsets decrease at list " + std::to_string(r));
      for (int32_t p = L.offsets[r]; p < L.offsets[r + 1]; ++p) {
        if (L.blocks[p] < 0 || L.blocks[p] >= n_kb)
          fail("key block " + std::to_string(L.blocks[p]) + " outside [0, " + std::to_string(n_kb) + ")");
        if (p > L.offsets[r] && L.blocks[p] <= L.blocks[p - 1])
          fail("key blocks of list " + std::to_string(r) + " are not strictly ascending");
      }
    }
  } else {
    const KeyIndexLists& L = a.indices;
    if (L.on_device) fail("index lists are not in host memory");
    if (!L.offsets) fail("index list offsets are null");
    if (!L.q_rows) {
      if (L.q_group <= 0) fail("q_group must be >= 1 when q_rows is not given");
      if (L.n_groups != ceil_div(s.q_len, L.q_group))
        fail("n_groups must be ceil(Nq / q_group) = " + std::to_string(ceil_div(s.q_len, L.q_group)));
    } else {
      if (!L.q_offsets) fail("q_rows needs q_offsets");
      if (L.n_groups < 0) fail("n_groups must be >= 0");
    }
    const int64_t nl = n_lists(a);
    if (L.offsets[0] != 0) fail("index list offsets must start at 0");
    bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad) if (nl > 256)
    for (int64_t r = 0; r < nl; ++r) {
      bad = bad || L.offsets[r + 1] < L.offsets[r];
      for (int32_t p = L.offsets[r]; p < L.offsets[r + 1] && !bad; ++p)
        bad = L.indices[p] < 0 || L.indices[p] >= s.kv_len || (p > L.offsets[r] && L.indices[p] < L.indices[p - 1]);
    }
    for (int64_t r = 0; r < nl && bad; ++r) {
      if (L.offsets[r + 1] < L.offsets[r]) fail("index list offsets decrease at list " + std::to_string(r));
      for (int32_t p = L.offsets[r]; p < L.offsets[r + 1]; ++p) {
        if (L.indices[p] < 0 || L.indices[p] >= s.kv_len)
          fail("key index " + std::to_string(L.indices[p]) + " outside [0, " + std::to_string(s.kv_len) + ")");
        if (p > L.offsets[r] && L.indices[p] < L.indices[p - 1])
          fail("key indices of list " + std::to_string(r) + " are not ascending");
      }
    }
    if (L.q_rows) {
      if (L.q_offsets[0] != 0) fail("q_offsets must start at 0");
      for (int64_t r = 0; r < nl; ++r)
        if (L.q_offsets[r + 1] < L.q_offsets[r]) fail("q_offsets decrease at group " + std::to_string(r));
      (void)coverage(a);
    }
  }
}
}  // namespace

void sparse_prefill(const SparsePrefillArgs& a) {
  sparse_prefill_check(a);
  const AttnShape& s = a.shape;
  if (s.batch == 0 || s.q_len == 0) return;
  const std::vector<Item> items = make_items(a);
  const float scale = a.effective_scale();
  const int threads = omp_get_max_threads();
  const int64_t n_items = int64_t(items.size());
#pragma omp parallel num_threads(int(std::max<int64_t>(1, std::min<int64_t>(threads, n_items))))
  {
    Workspace w(s.head_dim, s.v_dim);
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n_items; ++i) run_item(a, items[size_t(i)], scale, w);
  }
  if (!explicit_rows(a)) return;
  // Rows in no group saw no keys: their state passes through unchanged.
  const std::vector<char> seen = coverage(a);
  const int lhn = a.indices.list_heads;
#pragma omp parallel
  {
    Workspace w(s.head_dim, s.v_dim);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < int64_t(s.batch) * s.q_heads; ++bh) {
      const int b = int(bh / s.q_heads), h = int(bh % s.q_heads);
      const int lh = lhn == 1 ? 0 : h;
      for (int64_t row = 0; row < s.q_len; ++row) {
        if (seen[size_t((int64_t(b) * lhn + lh) * s.q_len + row)]) continue;
        const int64_t srow = state_row(s, b, h, row);
        load_state(a, srow, 0, w);
        store_row(a, srow, 0, w);
      }
    }
  }
}

double sparse_prefill_executed_pairs(const SparsePrefillArgs& a) {
  check_lists(a);  // only the lists and the shape are read
  const std::vector<Item> items = make_items(a);
  const int64_t off = a.shape.q_offset();
  double pairs = 0;
  for (const Item& it : items) {
    int64_t max_qpos = -1;
    for (int64_t r = 0; r < it.rows; ++r) max_qpos = std::max(max_qpos, row_of(a, it, r) + off);
    for_each_span(a, it, max_qpos, [&](const Span& sp) { pairs += double(it.rows) * double(sp.n); });
  }
  return pairs;
}

}  // namespace ab::cpu
