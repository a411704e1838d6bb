// ProxyAttn: "ProxyAttn: Guided Sparse Attention via Representative Heads", ICLR 2026,
// arXiv 2509.24745 — docs/variants.md §6. Block-sparse prefill whose estimation is compressed along
// the head axis: a proxy head per head group (the group's mean Q and mean K) scores strided
// queries against every key; the token probabilities are max-pooled to (query block, key
// block) scores shared by the group; each head gets its own block budget from the cumulative
// mass (γ) of its last query block's average-pooled probabilities; every query block keeps its
// top blocks plus the causal diagonal; op 2 runs over the kept blocks.
// The official code could not be read (docs/variants.md §6 works from a secondary summary); where
// the summary is silent the choices are named here: the strided query is the last row of each
// window (it sees every key its window sees), the average pooling of step 4 divides each
// tile's probability sum by the tile's full size, the γ budget is a fraction of the visible
// key blocks applied to every query block in proportion to its own visible blocks, and the
// 2048-token minimum applies per query block.
#include <algorithm>
#include <cmath>
#include <memory>

#include "variants/sparse_prefill/sparse_prefill_base.hpp"

namespace ab {
namespace {

struct ProxyPlan : BlockListsPlan {
  std::vector<double> budget_fraction;  // (B, Hq): b_i, for the report and tests
};

class ProxyAttn final : public SparsePrefillVariant {
 public:
  explicit ProxyAttn(ParamSet p) : SparsePrefillVariant(std::move(p)) {
    info_.name = "proxyattn";
    info_.fidelity = {Fidelity::simplified, "from a secondary summary, the official code was not read; open choices named in the source"};
    info_.family = "block-sparse-prefill";
    info_.paper = "ProxyAttn: Guided Sparse Attention via Representative Heads, ICLR 2026, arXiv 2509.24745";
    info_.summary = "proxy heads (group-mean Q/K) score strided queries, max-pooled block scores, "
                    "per-head cumulative-mass budget γ with a token minimum, block-sparse attention";
    info_.params = {
        {"gamma", ParamType::number, 0.95,
         "cumulative-probability threshold γ of each head's budget, in (0, 1] (paper: 0.95 or 0.90)"},
        {"min_budget", ParamType::integer, int64_t{2048},
         "minimum keys per query block, in tokens (rounded up to whole blocks; paper: 2048)"},
        {"stride", ParamType::integer, int64_t{4}, "score one query in each window of `stride` rows"},
        {"block", ParamType::integer, int64_t{128}, "query and key block size (FlexPrefill-style 128; unverified)"},
        {"groups", ParamType::integer, int64_t{0},
         "proxy head groups, dividing the query heads; 0 = one per kv head (groups aligned with GQA)"},
    };
  }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = prefill_shape(p);
    number_param("gamma", 0.0, 1.0, true);
    int_param("min_budget", 0);
    int_param("stride", 1);
    int_param("block", 1, 1 << 20);
    const int64_t g = int_param("groups", 0);
    if (g > 0 && s.q_heads % g != 0)
      refuse("groups", std::to_string(g), "must divide the query heads (" + std::to_string(s.q_heads) + ")");
    return s;
  }

  // Op 2 and the estimation ops the plan calls.
  Support supports(const AttnShape& s, const Backend& b) const override {
    return first_refusal({SparsePrefillVariant::supports(s, b), b.supports_pool(PoolArgs{}), b.supports_scores(ScoresArgs{}), b.supports_select(SelectArgs{})});
  }
  Plan plan(const Inputs& in, Backend& be) override;

 protected:
  StaticEstimate static_estimate(const AttnShape& s) const override {
    // Before any input: the minimum budget is the density floor, the estimate's cost as planned.
    const double block = double(params_.integer("block"));
    const double kept = std::max(block, double(params_.integer("min_budget")));
    StaticEstimate e;
    e.density = std::min(1.0, kept * double(s.q_len) / s.allowed_pairs());
    const int groups = params_.integer("groups") > 0 ? int(params_.integer("groups")) : s.kv_heads;
    e.estimation_flops = s.batch * (2.0 * groups * s.allowed_pairs() / double(params_.integer("stride")) * s.head_dim +
                                    2.0 * s.q_heads * block * s.kv_len * s.head_dim);
    return e;
  }
};

Plan ProxyAttn::plan(const Inputs& in, Backend& be) {
  const AttnShape& s = in.shape;
  const int d = s.head_dim;
  const int64_t block = params_.integer("block"), stride = params_.integer("stride");
  const double gamma = params_.number("gamma");
  const int64_t min_blocks = (params_.integer("min_budget") + block - 1) / block;
  const int G = params_.integer("groups") > 0 ? int(params_.integer("groups")) : s.kv_heads;
  const int heads_per_group = s.q_heads / G;
  const float scale = in.effective_scale();
  const int64_t n_qb = (s.q_len + block - 1) / block, n_kb = (s.kv_len + block - 1) / block;
  const int64_t n_rows = (s.q_len + stride - 1) / stride;  // strided query rows
  const int64_t off = s.q_offset();
  auto visible_blocks = [&](int64_t m) {  // key blocks the last row of query block m reaches
    const int64_t last = std::min(s.q_len, (m + 1) * block) - 1;
    return (s.visible_keys(last) + block - 1) / block;
  };

  // 1. Proxy keys K_g = mean of the group's heads' keys (B, G, Nkv, D), and proxy queries: the
  //    group's mean query at the last row of each window of `stride` rows (B, G, n_rows, D).
  const TensorRef kg = be.alloc({s.batch, G, s.kv_len, d}, DType::f32);
  const TensorRef qg = be.alloc({s.batch, G, n_rows, d}, DType::f32);
  PoolArgs pk;
  pk.axis = PoolAxis::heads;
  pk.how = Reduce::mean;
  pk.in = in.k;
  pk.out = kg;
  pk.group = heads_per_group;
  be.pool(pk);
  PoolArgs pq = pk;
  pq.in = in.q;
  pq.out = qg;
  pq.row_stride = stride;
  be.pool(pq);

  // 2–3. Strided proxy-query probabilities, max-pooled to block scores A_g (B, G, n_qb, n_kb):
  //      over each key block, then over the rows of each query block.
  const TensorRef A = be.alloc({s.batch, G, n_qb, n_kb}, DType::f32);
  ScoresArgs sa;
  sa.epilogue = ScoresEpilogue::probs_block_pool;
  sa.q = qg;
  sa.k = kg;
  sa.out = A;
  sa.scale = scale;
  sa.causal = s.causal;
  sa.positions = s.q_len;
  sa.row_stride = stride;
  sa.q_offset = off;
  sa.key_block = block;
  sa.key_pool = Reduce::max;
  sa.row_block = block;
  sa.row_reduce = Reduce::max;
  be.scores(sa);
  be.free(qg);
  be.free(kg);
  double flops_scores = 0;
  for (int64_t r = 0; r < n_rows; ++r)
    flops_scores += 2.0 * d * double(s.visible_keys(std::min(s.q_len - 1, r * stride + stride - 1)));
  flops_scores *= double(s.batch) * G;

  // 4. Each head's budget fraction from its last query block: average-pooled probabilities (the
  //    tile average over (row, key) = the mean over rows of each row's block mean), the smallest
  //    fraction of blocks reaching γ of their sum (cumulative-mass lists, whose lengths are read).
  const int64_t m_last = n_qb - 1, r0 = m_last * block, nr_last = s.q_len - r0;
  const int64_t nkb_last = visible_blocks(m_last);
  const int64_t n_heads = int64_t(s.batch) * s.q_heads;
  const TensorRef pooled = be.alloc({s.batch, s.q_heads, 1, n_kb}, DType::f32);
  ScoresArgs sb;
  sb.epilogue = ScoresEpilogue::probs_block_pool;
  sb.q = in.q;
  sb.k = in.k;
  sb.out = pooled;
  sb.scale = scale;
  sb.causal = s.causal;
  sb.q_offset = off;
  sb.row_begin = r0;
  sb.row_end = s.q_len;
  sb.key_block = block;
  sb.key_pool = Reduce::mean;
  sb.row_block = block;
  sb.row_reduce = Reduce::mean;
  sb.group_base = m_last;
  be.scores(sb);
  SelectArgs mass;
  mass.rule = SelectRule::cumulative_mass;
  mass.scores = pooled;
  mass.batch = s.batch;
  mass.list_heads = s.q_heads;
  mass.n_per = 1;
  mass.gamma = gamma;
  std::vector<int32_t> mass_rules;
  for (int64_t bh = 0; bh < n_heads; ++bh) mass_rules.insert(mass_rules.end(), {int32_t(nkb_last), 0, 0, 0, 0, 0, 0, 0});
  mass.rules = be.alloc_indices(int64_t(mass_rules.size()));
  be.upload_index_buffer(mass_rules, mass.rules);
  mass.lists = alloc_lists(be, n_heads, n_heads * nkb_last);
  be.select(mass);
  const std::vector<int32_t> counts = be.download_index_buffer(mass.lists.offsets, n_heads + 1);
  be.free_indices(mass.lists.offsets);
  be.free_indices(mass.lists.entries);
  be.free_indices(mass.rules);
  be.free(pooled);
  auto st = std::make_shared<ProxyPlan>();
  st->budget_fraction.assign(size_t(n_heads), 1.0);
  for (int64_t bh = 0; bh < n_heads; ++bh)
    st->budget_fraction[size_t(bh)] =
        double(std::max<int64_t>(counts[size_t(bh) + 1] - counts[size_t(bh)], 1)) / double(nkb_last);
  double flops_budget = 0;
  for (int64_t r = 0; r < nr_last; ++r) flops_budget += 2.0 * d * double(s.visible_keys(r0 + r));
  flops_budget *= double(n_heads);

  // 5. Per head and query block: the top ⌈b_i·N_m⌉ blocks by A_g (at least the minimum budget)
  //    plus the diagonal blocks, ascending.
  const int64_t n_lists = n_heads * n_qb;
  std::vector<int32_t> rules(static_cast<size_t>(n_lists * kSelectRuleInts), 0);
  int64_t capacity = 0;
  for (int64_t r = 0; r < n_lists; ++r) {
    const int64_t m = r % n_qb, bh = r / n_qb;
    const int64_t nm = std::min(n_kb, visible_blocks(m));
    if (nm <= 0) continue;
    const double frac = st->budget_fraction[size_t(bh)];
    const int64_t k = std::clamp<int64_t>(std::max<int64_t>(int64_t(std::ceil(frac * double(nm) - 1e-9)), min_blocks), 1, nm);
    const int64_t d0 = std::min(nm - 1, (m * block + off) / block);
    const int64_t d1 = std::min(nm - 1, (std::min(s.q_len, (m + 1) * block) - 1 + off) / block);
    int32_t* rule = rules.data() + r * kSelectRuleInts;
    rule[0] = int32_t(nm);
    rule[1] = int32_t(k);
    rule[4] = int32_t(d0);
    rule[5] = int32_t(d1 + 1);
    capacity += nm;
  }
  SelectArgs top;
  top.rule = SelectRule::top_k;
  top.scores = A;
  top.batch = s.batch;
  top.list_heads = s.q_heads;
  top.n_per = n_qb;
  top.rules = be.alloc_indices(int64_t(rules.size()));
  be.upload_index_buffer(rules, top.rules);
  top.lists = alloc_lists(be, n_lists, capacity);
  be.select(top);
  be.free_indices(top.rules);
  be.free(A);

  auto lists = std::make_shared<HostBlockLists>();
  lists->q_block = block;
  lists->k_block = block;
  lists->list_heads = s.q_heads;
  download_lists(be, top.lists, n_lists, lists->offsets, lists->blocks);
  st->lists = lists;
  st->device = keep_on_device(be, top.lists);
  // Proxy means (Q over strided rows, K) are additions; counted with the score products.
  return finish_plan(in, st->lists,
                     double(flops_scores + flops_budget) +
                         double(s.batch) * G * heads_per_group * (double(n_rows) + s.kv_len) * d,
                     st, be);
}

}  // namespace

std::unique_ptr<Variant> make_proxyattn(const ParamSet& p) { return std::make_unique<ProxyAttn>(p); }

}  // namespace ab
