// HyperAttention: "HyperAttention: Long-context Attention in Near-Linear Time", Han et al.,
// ICLR 2024, arXiv 2310.05869 — docs/variants.md §10 (insuhan/hyper-attn
// models/attention/hyper_attn.py, angular_lsh.py, utils.py::add_self_attentions).
// Non-causal approximation of attn(Q, K, V) for n_q >= min_seq_len query rows:
//  1. sortLSH: hash queries and keys with angular LSH (sign bits of x·R, R ∈ ℝ^{d×bits},
//     mapped through the Gray code), stable-sort both by hash, and attend exactly within the
//     diagonal blocks of the sorted order (key blocks of block_size, query blocks of
//     ceil(n_q / #key blocks));
//  2. uniform column sampling: sample_size keys drawn uniformly with replacement, masked for
//     queries whose own sorted block holds them, each weighted n_k/m: the part's LSE gets
//     + ln(n_k/m);
//  3. LSE merge of the two parts.
// Causal, by the recursive split (n > min_seq_len): causal(first half), causal(second half),
// and the second half's queries against the first half's keys by the non-causal
// approximation, LSE-merged; n <= min_seq_len is exact.
// Here every exact piece (leaves, sorted diagonal blocks, node pairs below min_seq_len) is one
// online-softmax state continued by op 2 across the recursion's levels; each level's sampled
// columns are an op 2 call of their own, merged into the result by lse_merge with the node's
// ln(n_k/m). Merging by LSE is associative, so this equals the reference's nested merges.
// Not padded: the reference pads odd halves and partial sorted blocks with zero rows (zero
// keys then take part in the last block's softmax); here halves are ceil/floor and the last
// sorted block is short.
// On the backend: the LSH codes (project, sign_code), op 2 over the lists in backend memory,
// the online-softmax state between the exact pieces, and the LSE merge (lse_merge, with the
// row's ln(n_k/m) as row_offset). On the host, on the downloaded codes: the recursion, the
// stable sorts by code and the column draws, sequential control that builds the lists.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>

#include "core/random.hpp"
#include "variants/sparse_prefill/sparse_prefill_base.hpp"

namespace ab {
namespace {

// A HostIndexLists' copy in device memory, for op 2 (valid until the backend's release_all).
struct DeviceIndexLists {
  IndexBuffer offsets, indices, q_offsets, q_rows;
  int64_t q_group = 0, n_groups = 0;
  int list_heads = 0;
  KeyIndexLists view() const {
    KeyIndexLists v;
    v.q_group = q_group;
    v.n_groups = n_groups;
    v.list_heads = list_heads;
    v.offsets = offsets.data;
    v.indices = indices.data;
    v.q_offsets = q_offsets.data;
    v.q_rows = q_rows.data;
    v.on_device = offsets.on_device;
    return v;
  }
};

// The reflected Gray code sequence of `bits` bits, built as insuhan/hyper-attn's
// AngularLSH._unit_hamming_distance_array: a_1 = [0, 1], a_n = [a_{n-1}, reverse(a_{n-1}) +
// 2^{n-1}]; neighbouring entries differ in one bit.
std::vector<int32_t> gray_code_sequence(int bits) {
  std::vector<int32_t> a = {0, 1};
  for (int n = 2; n <= bits; ++n) {
    const size_t half = a.size();
    a.resize(2 * half);
    for (size_t i = 0; i < half; ++i) a[half + i] = a[half - 1 - i] + (int32_t(1) << (n - 1));
  }
  return a;
}

// The stable ascending order of n codes in [0, n_codes): rows with equal codes keep their
// original order. A counting sort where the buckets are few against the rows (the order is
// the same as a stable comparison sort's; this runs on one host thread).
std::vector<int32_t> stable_order(const int32_t* codes, int64_t n, int64_t n_codes) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  if (n_codes > 4 * n) {
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return codes[a] < codes[b]; });
    return order;
  }
  std::vector<int32_t> next(static_cast<size_t>(n_codes) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++next[size_t(codes[i]) + 1];
  for (int64_t c = 0; c < n_codes; ++c) next[size_t(c) + 1] += next[size_t(c)];
  for (int64_t i = 0; i < n; ++i) order[size_t(next[size_t(codes[i])]++)] = int32_t(i);
  return order;
}

struct Node {
  int64_t q0, q1, k0, k1;
  int depth;
  bool exact;  // fewer than min_seq_len query rows: exact non-causal attention
};

struct Level {
  std::shared_ptr<const HostIndexLists> exact;    // sorted diagonal blocks and exact nodes
  std::shared_ptr<const HostIndexLists> samples;  // sampled columns (repeats kept), or null
  std::vector<float> row_log_weight;              // (Nq): ln(n_k/m) of the row's node
  DeviceIndexLists exact_dev, samples_dev;        // their copies in device memory, when there
};

struct HyperPlan : SparsePlanBase {
  std::shared_ptr<const HostIndexLists> leaves;  // exact causal leaves (or null)
  DeviceIndexLists leaves_dev;
  std::vector<Level> levels;
  // The same lists as selections (the plan's union and the reference read them).
  std::shared_ptr<const TokenSelection> leaf_sel;
  std::vector<std::shared_ptr<const TokenSelection>> exact_sel, sample_sel;  // per level
};

class HyperAttention final : public SparsePrefillVariant {
 public:
  explicit HyperAttention(ParamSet p) : SparsePrefillVariant(std::move(p)) {
    info_.name = "hyperattention";
    info_.fidelity = {Fidelity::faithful, "sortLSH + uniform column sampling of the reference code"};
    info_.family = "lsh-approximate";
    info_.paper = "HyperAttention: Long-context Attention in Near-Linear Time, Han et al., ICLR 2024, "
                  "arXiv 2310.05869";
    info_.summary = "sortLSH block-diagonal attention + uniformly sampled columns weighted ln(n/m), "
                    "LSE-merged; causal by recursive halving, exact below min_seq_len";
    info_.params = {
        {"lsh_num_projs", ParamType::integer, int64_t{7}, "LSH projections: 2^bits buckets in Gray-code order (paper: 7)"},
        {"block_size", ParamType::integer, int64_t{256}, "key block of the sorted diagonal (paper: 256)"},
        {"sample_size", ParamType::integer, int64_t{256}, "uniformly sampled key columns m per node (paper: 256)"},
        {"min_seq_len", ParamType::integer, int64_t{4096}, "below this many rows attention is exact (paper: 4096)"},
        {"seed", ParamType::integer, int64_t{0}, "seed of the LSH projections and the column samples"},
    };
  }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = prefill_shape(p);
    if (s.causal && s.q_len != s.kv_len)
      throw InputError("hyperattention: causal with q_len = " + std::to_string(s.q_len) + " != kv_len = " +
                       std::to_string(s.kv_len) + ": the recursive causal split needs self-attention");
    int_param("lsh_num_projs", 1, 20);
    int_param("block_size", 1, 1 << 24);
    int_param("sample_size", 0, 1 << 24);
    int_param("min_seq_len", 1);
    int_param("seed", 0);
    return s;
  }

  Support supports(const AttnShape& s, const Backend& b) const override;

  Plan plan(const Inputs& in, Backend& be) override;
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) override;
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override;

 protected:
  StaticEstimate static_estimate(const AttnShape& s) const override {
    const double min_len = double(params_.integer("min_seq_len"));
    const double per_row = double(params_.integer("block_size") + params_.integer("sample_size"));
    StaticEstimate e;
    double pairs = 0;
    if (!s.causal) {
      pairs = double(s.q_len) < min_len ? s.allowed_pairs() : double(s.q_len) * std::min(per_row, double(s.kv_len));
    } else {
      double n = double(s.q_len), leaves = 1;
      while (n > min_len) {
        const double half = std::ceil(n / 2);
        pairs += leaves * (n - half) * (n - half < min_len ? half : std::min(per_row, half));
        n = half;
        leaves *= 2;
      }
      pairs += leaves * n * (n + 1) / 2;
    }
    e.density = std::min(1.0, pairs / s.allowed_pairs());
    e.estimation_flops = 2.0 * s.batch * (double(s.q_len) * s.q_heads + double(s.kv_len) * s.kv_heads) *
                         s.head_dim * double(params_.integer("lsh_num_projs"));
    return e;
  }

};

void collect_nodes(int64_t a, int64_t n, int depth, int64_t min_len, std::vector<std::pair<int64_t, int64_t>>& leaves,
                   std::vector<Node>& nodes) {
  if (n <= min_len) {
    leaves.push_back({a, n});
    return;
  }
  const int64_t h = (n + 1) / 2;
  collect_nodes(a, h, depth + 1, min_len, leaves, nodes);
  collect_nodes(a + h, n - h, depth + 1, min_len, leaves, nodes);
  nodes.push_back({a + h, a + n, a, a + h, depth, n - h < min_len});
}

// Every op plan() and run() call, probed with the argument kinds they pass (shapes and flags,
// no data: a backend answers for the memory and the kinds it can run).
Support HyperAttention::supports(const AttnShape& s, const Backend& b) const {
  Support ok = SparsePrefillVariant::supports(s, b);
  if (!ok.ok) return ok;
  const int bits = int(params_.integer("lsh_num_projs"));
  ProjectArgs pr;
  pr.epilogue = ProjectEpilogue::sign_code;
  pr.x.shape = {0, s.q_heads, s.q_len, s.head_dim};
  pr.proj.shape = {1, 1, s.head_dim, bits};
  pr.code.size = int64_t(1) << bits;
  pr.codes.size = 0;
  if (ok = b.supports_project(pr); !ok.ok) return ok;
  LseMergeArgs m;
  m.o.shape = m.o2.shape = {0, s.q_heads, s.q_len, s.v_dim};
  m.lse.shape = m.lse2.shape = {0, s.q_heads, s.q_len, 1};
  m.row_offset.shape = {1, 1, s.q_len, 1};
  return b.supports_lse_merge(m);
}

Plan HyperAttention::plan(const Inputs& in, Backend& be) {
  const AttnShape& s = in.shape;
  const int d = s.head_dim;
  const int bits = int(params_.integer("lsh_num_projs"));
  const int64_t bs = params_.integer("block_size"), m = params_.integer("sample_size");
  const int64_t min_len = params_.integer("min_seq_len");
  const uint64_t seed = uint64_t(params_.integer("seed"));

  // The recursion: exact causal leaves and the off-diagonal nodes, by depth.
  std::vector<std::pair<int64_t, int64_t>> leaves;
  std::vector<Node> nodes;
  if (s.causal) {
    collect_nodes(0, s.q_len, 0, min_len, leaves, nodes);
  } else {
    nodes.push_back({0, s.q_len, 0, s.kv_len, 0, s.q_len < min_len});
  }
  int depths = 0;
  for (const Node& n : nodes) depths = std::max(depths, n.depth + 1);

  // Codes of every query and key row, one projection set for all heads (AngularLSH: sign
  // bits of x·R, R (d, bits) ~ N(0, 1), through the Gray code), on the backend; the sorts
  // below read them on the host.
  const int64_t n_qh = int64_t(s.batch) * s.q_heads, n_kh = int64_t(s.batch) * s.kv_heads;
  std::vector<int32_t> qhash, khash;
  const bool any_lsh = std::any_of(nodes.begin(), nodes.end(), [](const Node& n) { return !n.exact; });
  if (any_lsh) {
    HostTensor R({1, 1, d, bits});
    SeededRandom rng(mix_seed(seed, 0x15));
    for (float& p : R.data) p = float(rng.normal());
    ProjectArgs pr;
    pr.epilogue = ProjectEpilogue::sign_code;
    pr.proj = be.alloc(R.shape, DType::f32);
    be.upload(R, pr.proj);
    const std::vector<int32_t> gray = gray_code_sequence(bits);
    pr.code = be.alloc_indices(int64_t(gray.size()));
    be.upload_index_buffer(gray, pr.code);
    pr.x = in.q;
    pr.codes = be.alloc_indices(n_qh * s.q_len);
    be.project(pr);
    qhash = be.download_index_buffer(pr.codes, n_qh * s.q_len);
    be.free_indices(pr.codes);
    pr.x = in.k;
    pr.codes = be.alloc_indices(n_kh * s.kv_len);
    be.project(pr);
    khash = be.download_index_buffer(pr.codes, n_kh * s.kv_len);
    be.free_indices(pr.codes);
    be.free_indices(pr.code);
    be.free(pr.proj);
  }

  auto st = std::make_shared<HyperPlan>();
  if (!leaves.empty()) {
    auto L = std::make_shared<HostIndexLists>();
    L->list_heads = 1;
    L->n_groups = int64_t(leaves.size());
    for (int b = 0; b < s.batch; ++b)
      for (auto [a, n] : leaves) {
        std::vector<int32_t> idx(static_cast<size_t>(n));
        std::iota(idx.begin(), idx.end(), int32_t(a));
        L->push_group_rows(idx);
        L->push_list(idx);  // keys = rows: causal within the leaf
      }
    st->leaves = L;
  }

  // Per depth: groups of every (b, h), in list order.
  struct Group {
    std::vector<int32_t> rows, keys, samples;
  };
  double sort_ops = 0;
  for (int depth = 0; depth < depths; ++depth) {
    std::vector<const Node*> at;
    for (const Node& n : nodes)
      if (n.depth == depth) at.push_back(&n);
    std::vector<std::vector<Group>> per_head(static_cast<size_t>(n_qh));
    bool sampled = false;
    for (int64_t bh = 0; bh < n_qh; ++bh) {
      const int b = int(bh / s.q_heads), h = int(bh % s.q_heads);
      const int64_t kvh = int64_t(b) * s.kv_heads + h / s.group();
      std::vector<Group>& groups = per_head[size_t(bh)];
      for (size_t ni = 0; ni < at.size(); ++ni) {
        const Node& nd = *at[ni];
        const int64_t nq = nd.q1 - nd.q0, nk = nd.k1 - nd.k0;
        if (nd.exact) {
          Group g;
          g.rows.resize(static_cast<size_t>(nq));
          std::iota(g.rows.begin(), g.rows.end(), int32_t(nd.q0));
          g.keys.resize(static_cast<size_t>(nk));
          std::iota(g.keys.begin(), g.keys.end(), int32_t(nd.k0));
          groups.push_back(std::move(g));
          continue;
        }
        // 1. Stable sort of the node's rows and keys by hash.
        std::vector<int32_t> qs = stable_order(qhash.data() + bh * s.q_len + nd.q0, nq, int64_t(1) << bits);
        std::vector<int32_t> ks = stable_order(khash.data() + kvh * s.kv_len + nd.k0, nk, int64_t(1) << bits);
        sort_ops += double(nq) * std::log2(double(std::max<int64_t>(2, nq))) + double(nk) * std::log2(double(std::max<int64_t>(2, nk)));
        const int64_t nb = (nk + bs - 1) / bs, qbs = (nq + nb - 1) / nb;
        // 2. Samples in sorted-key coordinates (uniform, with replacement), one stream per
        //    (b, h, node) so a larger sample_size extends a smaller one's draws.
        std::vector<int64_t> draw;
        if (m > 0 && nq > qbs && nk > bs) {
          SeededRandom rng(mix_seed(seed, uint64_t(bh), uint64_t(depth), uint64_t(nd.q0)));
          for (int64_t u = 0; u < m; ++u) draw.push_back(rng.uniform_int(nk));
          sampled = true;
        }
        for (int64_t t = 0; t < nb; ++t) {
          Group g;
          for (int64_t r = t * qbs; r < std::min(nq, (t + 1) * qbs); ++r) g.rows.push_back(int32_t(nd.q0 + qs[size_t(r)]));
          for (int64_t r = t * bs; r < std::min(nk, (t + 1) * bs); ++r) g.keys.push_back(int32_t(nd.k0 + ks[size_t(r)]));
          std::sort(g.keys.begin(), g.keys.end());
          for (int64_t sp : draw)
            if (sp / bs != t) g.samples.push_back(int32_t(nd.k0 + ks[size_t(sp)]));
          std::sort(g.samples.begin(), g.samples.end());
          if (!g.rows.empty()) groups.push_back(std::move(g));
        }
      }
    }
    Level lv;
    auto E = std::make_shared<HostIndexLists>();
    E->list_heads = s.q_heads;
    E->n_groups = int64_t(per_head[0].size());
    std::shared_ptr<HostIndexLists> S;
    if (sampled) {
      S = std::make_shared<HostIndexLists>();
      S->list_heads = s.q_heads;
      S->n_groups = E->n_groups;
    }
    for (const auto& groups : per_head) {
      if (int64_t(groups.size()) != E->n_groups)
        throw std::logic_error("hyperattention: heads differ in their group count");
      for (const Group& g : groups) {
        E->push_group_rows(g.rows);
        E->push_list(g.keys);
        if (S) {
          S->push_group_rows(g.rows);
          S->push_list(g.samples);
        }
      }
    }
    lv.row_log_weight.assign(static_cast<size_t>(s.q_len), 0.0f);
    for (const Node* nd : at)
      for (int64_t i = nd->q0; i < nd->q1; ++i)
        lv.row_log_weight[size_t(i)] = m > 0 ? float(std::log(double(nd->k1 - nd->k0) / double(m))) : 0.0f;
    lv.exact = E;
    lv.samples = S;
    st->exact_sel.push_back(std::make_shared<TokenSelection>(s, E));
    st->sample_sel.push_back(S ? std::make_shared<TokenSelection>(s, S) : nullptr);
    st->levels.push_back(std::move(lv));
  }

  // On a device, the lists in device memory for op 2 (in host memory op 2 reads the host
  // lists themselves).
  auto upload = [&](const std::vector<int32_t>& v) {
    IndexBuffer x = be.alloc_indices(int64_t(v.size()));
    be.upload_index_buffer(v, x);
    return x;
  };
  auto to_device = [&](const HostIndexLists& L) {
    DeviceIndexLists D;
    D.q_group = L.q_group;
    D.n_groups = L.n_groups;
    D.list_heads = L.list_heads;
    D.offsets = upload(L.offsets);
    if (!D.offsets.on_device) {
      be.free_indices(D.offsets);
      return DeviceIndexLists{};
    }
    D.indices = upload(L.indices);
    if (!L.q_offsets.empty()) {
      D.q_offsets = upload(L.q_offsets);
      D.q_rows = upload(L.q_rows);
    }
    return D;
  };
  if (st->leaves) st->leaves_dev = to_device(*st->leaves);
  for (Level& lv : st->levels) {
    lv.exact_dev = to_device(*lv.exact);
    if (lv.samples) lv.samples_dev = to_device(*lv.samples);
  }

  // Pairs the op computes, and the selection: the union of every part (disjoint key sets per
  // row: leaves, each level's blocks, each level's samples outside the row's own block).
  std::vector<std::shared_ptr<const Selection>> parts;
  double pairs = 0, selected = 0;
  auto count = [&](const std::shared_ptr<const TokenSelection>& sel) {
    pairs += executed_pairs(in, sel->lists(), be);
    selected += selected_pairs(sel->lists(), s);
    parts.push_back(sel);
  };
  if (st->leaves) {
    st->leaf_sel = std::make_shared<TokenSelection>(s, st->leaves);
    count(st->leaf_sel);
  }
  for (size_t l = 0; l < st->levels.size(); ++l) {
    count(st->exact_sel[l]);
    if (st->sample_sel[l]) count(st->sample_sel[l]);
  }
  st->executed_pairs = pairs;
  // LSE merges: per sampled level, ~4 flops per output element.
  for (const Level& lv : st->levels)
    if (lv.samples) st->extra_flops += 4.0 * double(n_qh) * s.q_len * s.v_dim;
  Plan p;
  p.selection = std::make_shared<UnionSelection>(parts);
  p.density = selected / (s.allowed_pairs() * s.batch * s.q_heads);
  p.estimation_flops = 2.0 * (double(n_qh) * s.q_len + double(n_kh) * s.kv_len) * d * bits * (any_lsh ? 1 : 0) + sort_ops;
  set_state(p, st);
  return p;
}

void HyperAttention::run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) {
  const HyperPlan& st = state_of<HyperPlan>(plan);
  const AttnShape& s = in.shape;
  // Op 2 over host lists L, or their copy D in device memory when there.
  auto args = [&](const HostIndexLists& L, const DeviceIndexLists& D) {
    SparsePrefillArgs a = op_args(in, L);
    if (D.offsets.present()) a.indices = D.view();
    return a;
  };
  // The exact pieces, one state: leaves, then each level's blocks; the last one finalises.
  std::vector<std::pair<const HostIndexLists*, const DeviceIndexLists*>> exact;
  if (st.leaves) exact.push_back({st.leaves.get(), &st.leaves_dev});
  for (const Level& lv : st.levels) exact.push_back({lv.exact.get(), &lv.exact_dev});
  SoftmaxState state;
  if (exact.size() > 1) {
    const Shape4 row{s.batch, s.q_heads, s.q_len, 1};
    state = {be.alloc(row, DType::f32), be.alloc(row, DType::f32), be.alloc({s.batch, s.q_heads, s.q_len, s.v_dim}, DType::f32)};
  }
  for (size_t c = 0; c < exact.size(); ++c) {
    SparsePrefillArgs a = args(*exact[c].first, *exact[c].second);
    if (c > 0) a.state_in = state;
    const bool last = c + 1 == exact.size();
    a.finalize = last;
    if (last) {
      a.o = out.o;
      a.lse = out.lse;
    } else {
      a.state_out = state;
    }
    be.sparse_prefill(a);
  }
  if (state.present())
    for (const TensorRef& t : {state.m, state.l, state.acc}) be.free(t);
  // Each level's sampled columns: O_s, LSE_s, LSE-merged into the result with the row's
  // ln(n_k/m) added to LSE_s.
  TensorRef part_o, part_lse, weight;
  HostTensor w({1, 1, s.q_len, 1});
  for (const Level& lv : st.levels) {
    if (!lv.samples) continue;
    if (!part_o.data) {
      part_o = be.alloc({s.batch, s.q_heads, s.q_len, s.v_dim}, DType::f32);
      part_lse = be.alloc({s.batch, s.q_heads, s.q_len, 1}, DType::f32);
      weight = be.alloc(w.shape, DType::f32);
    }
    SparsePrefillArgs a = args(*lv.samples, lv.samples_dev);
    a.o = part_o;
    a.lse = part_lse;
    be.sparse_prefill(a);
    std::copy(lv.row_log_weight.begin(), lv.row_log_weight.end(), w.ptr());
    be.upload(w, weight);
    LseMergeArgs m;
    m.o = out.o;
    m.lse = out.lse;
    m.o2 = part_o;
    m.lse2 = part_lse;
    m.row_offset = weight;
    be.lse_merge(m);
  }
  for (const TensorRef& t : {part_o, part_lse, weight})
    if (t.data) be.free(t);
}

// Float64 of HyperAttention's own formula for one row: softmax over its exact keys (weight 1)
// and its sampled keys (weight n_k/m per draw, repeats counted), causal-cut.
void HyperAttention::reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i,
                                   double* o, double* lse) const {
  const HyperPlan& st = state_of<HyperPlan>(plan);
  const AttnShape& s = in.shape;
  const int kh = h / s.group();
  const double scale = in.effective_scale();
  std::vector<std::pair<int64_t, double>> terms;  // (key, log weight)
  std::vector<int64_t> keys;
  auto add_exact = [&](const TokenSelection& sel) {
    sel.keys(b, h, i, keys);
    for (int64_t j : keys) terms.push_back({j, 0.0});
  };
  if (st.leaf_sel) add_exact(*st.leaf_sel);
  for (size_t l = 0; l < st.levels.size(); ++l) {
    add_exact(*st.exact_sel[l]);
    if (!st.sample_sel[l]) continue;
    const TokenSelection& sel = *st.sample_sel[l];
    const int64_t g = sel.group_of(b, h, i);
    if (g < 0) continue;
    const HostIndexLists& L = sel.lists();
    const int64_t r = (int64_t(b) * L.list_heads + h) * L.n_groups + g;
    for (int32_t p = L.offsets[size_t(r)]; p < L.offsets[size_t(r) + 1]; ++p)
      if (!s.causal || L.indices[size_t(p)] <= i + s.q_offset())
        terms.push_back({L.indices[size_t(p)], double(st.levels[l].row_log_weight[size_t(i)])});
  }
  for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
  if (terms.empty()) {
    if (lse) *lse = -std::numeric_limits<double>::infinity();
    return;
  }
  const float* q = in.host->q.row(b, h, i);
  std::vector<double> logit(terms.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t t = 0; t < terms.size(); ++t) {
    const float* k = in.host->k.row(b, kh, terms[t].first);
    double dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += double(q[c]) * k[c];
    logit[t] = dot * scale + terms[t].second;
    mx = std::max(mx, logit[t]);
  }
  double sum = 0;
  for (double v : logit) sum += std::exp(v - mx);
  const double l = mx + std::log(sum);
  for (size_t t = 0; t < terms.size(); ++t) {
    const double p = std::exp(logit[t] - l);
    const float* v = in.host->v.row(b, kh, terms[t].first);
    for (int c = 0; c < s.v_dim; ++c) o[c] += p * v[c];
  }
  if (lse) *lse = l;
}

}  // namespace

std::unique_ptr<Variant> make_hyperattention(const ParamSet& p) { return std::make_unique<HyperAttention>(p); }

}  // namespace ab
