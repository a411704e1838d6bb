// AnchorAttention: "AnchorAttention: Difference-Aware Sparse Attention with Stripe
// Granularity", EMNLP 2025, arXiv 2505.23520 — docs/variants.md §7
// (yuzhouzhang9/Anchor-Attention, anchor_attn/src/ops/anchor_step_1_2_v2.py, get_mask_test.py,
// anchor_attn_v4.py).
// Per query group of block·step rows:
//  1. anchor pass: exact online softmax over the initial region and the group's own (local)
//     region, causal; the running max m_i of each row is its anchor;
//  2. stripe identification: with block-mean-pooled queries q̄_r and pooled anchors ā_r (the
//     mean m_i of the same rows), key j outside both regions is a stripe of the group when
//     some r has scale·q̄_r·k_j + θ >= ā_r; stripes are shared by the whole group;
//  3. sparse pass: the anchor pass's state (m, ℓ, acc) is continued over the stripe keys and
//     finalised.
// Op 2 runs the anchor pass (key-block lists, state kept) in the plan and the stripe pass
// (key-index lists, resumed from that state) in run(); its lists and the state are in backend
// memory. As the reference code, a last group shorter than block·step is computed densely;
// unlike it, the scan skips the initial region, so no key is counted twice (docs/variants.md
// §7 asks for the de-duplication).
#include <algorithm>
#include <cmath>
#include <memory>

#include "variants/sparse_prefill/sparse_prefill_base.hpp"

namespace ab {
namespace {

// What run() continues: the stripes (host copies, and the backend's buffers when they are in
// device memory) and the anchor pass's softmax state in backend tensors. The plan frees its
// backend memory when it is destroyed (the backend must outlive it).
struct AnchorPlan : SparsePlanBase {
  Backend* backend = nullptr;
  std::shared_ptr<const HostIndexLists> stripes;  // per (b, h, group)
  CsrOut device;                                   // the stripes in device memory, if there
  SoftmaxState state;                              // after the anchor pass
  AnchorPlan() = default;
  AnchorPlan(const AnchorPlan&) = delete;
  AnchorPlan& operator=(const AnchorPlan&) = delete;
  ~AnchorPlan() override {
    if (!backend) return;
    for (const TensorRef* t : {&state.m, &state.l, &state.acc})
      if (t->data) backend->free(*t);
    for (const IndexBuffer* b : {&device.offsets, &device.entries})
      if (b->present()) backend->free_indices(*b);
  }
};

class Anchor final : public SparsePrefillVariant {
 public:
  explicit Anchor(ParamSet p) : SparsePrefillVariant(std::move(p)) {
    info_.name = "anchor";
    info_.fidelity = {Fidelity::faithful, "anchor pass, stripe identification and sparse pass of the reference code"};
    info_.family = "block-sparse-prefill";
    info_.paper = "AnchorAttention: Difference-Aware Sparse Attention with Stripe Granularity, "
                  "EMNLP 2025, arXiv 2505.23520";
    info_.summary = "exact anchor pass over initial + local region, stripes within θ of the pooled "
                    "anchor, the softmax state continued over the stripe keys";
    info_.params = {
        {"theta", ParamType::number, 12.0,
         "difference θ in nats of the scaled logit: keep key j when scale·q̄·k_j + θ >= ā (paper: 12)"},
        {"block", ParamType::integer, int64_t{128}, "query pooling block b (paper: 128)"},
        {"step", ParamType::integer, int64_t{16}, "pooling blocks per query group: groups of block·step rows (paper: 16)"},
        {"init_groups", ParamType::integer, int64_t{1},
         "initial region = the first init_groups·block·step keys (the code's init_cnt = 1)"},
    };
  }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = prefill_shape(p);
    require_causal(s, "AnchorAttention", "§7");
    require_self_attention(s, "the anchor and local regions assume self-attention");
    number_param("theta", 0.0, 1e30);
    const int64_t b = int_param("block", 1, 1 << 16);
    const int64_t st = int_param("step", 1, 1 << 16);
    if (b * st > (int64_t(1) << 30)) refuse("step", std::to_string(st), "block·step must stay below 2^30");
    int_param("init_groups", 0);
    return s;
  }

  // Op 2 and the estimation ops the plan calls.
  Support supports(const AttnShape& s, const Backend& b) const override {
    return first_refusal({SparsePrefillVariant::supports(s, b), b.supports_pool(PoolArgs{}), b.supports_scores(ScoresArgs{})});
  }
  Plan plan(const Inputs& in, Backend& be) override;
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) override {
    const AnchorPlan& st = state_of<AnchorPlan>(plan);
    run_op(in, *st.stripes, out, be, &st.state, st.device);
  }

 protected:
  StaticEstimate static_estimate(const AttnShape& s) const override {
    // Before any input: the anchor pass alone (init + local), the stripes unknown.
    const double g = double(params_.integer("block") * params_.integer("step"));
    const double init = g * double(params_.integer("init_groups"));
    StaticEstimate e;
    const double pairs = std::min(s.allowed_pairs(), double(s.q_len) * (init + g / 2));
    e.density = pairs / s.allowed_pairs();
    e.estimation_flops = s.batch * s.q_heads * (2.0 * pairs * (s.head_dim + s.v_dim) +
                                                2.0 * s.allowed_pairs() / double(params_.integer("block")) * s.head_dim);
    return e;
  }
};

Plan Anchor::plan(const Inputs& in, Backend& be) {
  const AttnShape& s = in.shape;
  const int d = s.head_dim;
  const int64_t block = params_.integer("block"), step = params_.integer("step");
  const int64_t G = block * step;
  const int64_t init = std::min(s.kv_len, G * params_.integer("init_groups"));
  const double theta = params_.number("theta");
  const float scale = in.effective_scale();
  const int64_t n_groups = (s.q_len + G - 1) / G;
  const int64_t init_blocks = (init + G - 1) / G;  // init is a whole number of groups
  const int64_t n_pooled = (s.q_len + block - 1) / block;

  // 1. Anchor pass: group g attends to the initial groups and itself; state kept.
  auto anchor_lists = std::make_shared<HostBlockLists>();
  anchor_lists->q_block = G;
  anchor_lists->k_block = G;
  anchor_lists->list_heads = 1;
  for (int b = 0; b < s.batch; ++b)
    for (int64_t g = 0; g < n_groups; ++g) {
      for (int64_t t = 0; t < std::min(init_blocks, g); ++t) anchor_lists->blocks.push_back(int32_t(t));
      anchor_lists->blocks.push_back(int32_t(g));
      anchor_lists->offsets.push_back(int32_t(anchor_lists->blocks.size()));
    }
  auto st = std::make_shared<AnchorPlan>();
  st->backend = &be;
  st->state.m = be.alloc({s.batch, s.q_heads, s.q_len, 1}, DType::f32);
  st->state.l = be.alloc({s.batch, s.q_heads, s.q_len, 1}, DType::f32);
  st->state.acc = be.alloc({s.batch, s.q_heads, s.q_len, s.v_dim}, DType::f32);
  const CsrOut anchor_device = upload_lists(be, anchor_lists->offsets, anchor_lists->blocks);
  SparsePrefillArgs a = op_args(in, *anchor_lists, anchor_device);
  a.finalize = false;
  a.state_out = st->state;
  be.sparse_prefill(a);
  free_lists(be, anchor_device);
  const double anchor_pairs = executed_pairs(in, *anchor_lists, be);

  // 2. Stripes of each (b, h, group): candidates are keys [init, g·G) (outside the initial
  //    and local regions); a short last group keeps them all (computed densely). Pooled
  //    queries q̄ and anchors ā (the mean running max m_i) per block of rows; key j is a stripe
  //    when scale·q̄_t·k_j >= ā_t − θ for some block t of the group.
  const TensorRef qbar = be.alloc({s.batch, s.q_heads, n_pooled, d}, DType::f32);
  const TensorRef abar = be.alloc({s.batch, s.q_heads, n_pooled, 1}, DType::f32);
  PoolArgs pq;
  pq.axis = PoolAxis::rows;
  pq.how = Reduce::mean;
  pq.in = in.q;
  pq.out = qbar;
  pq.block = block;
  be.pool(pq);
  PoolArgs pa = pq;
  pa.in = st->state.m;
  pa.out = abar;
  pa.f64_sum = true;
  be.pool(pa);
  const int64_t n_lists = int64_t(s.batch) * s.q_heads * n_groups;
  int64_t capacity = 0;
  double flops_scan = 0;
  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t c0 = init, c1 = g * G;
    if (c1 <= c0) continue;
    capacity += c1 - c0;
    const int64_t r0 = g * G, r1 = std::min(s.q_len, r0 + G);
    if (r1 - r0 == G) flops_scan += 2.0 * double(step) * double(c1 - c0) * d + double(r1 - r0) * d;
  }
  capacity *= int64_t(s.batch) * s.q_heads;
  flops_scan *= double(s.batch) * s.q_heads;
  ScoresArgs sc;
  sc.epilogue = ScoresEpilogue::keys_reaching;
  sc.q = qbar;
  sc.k = in.k;
  sc.scale = scale;
  sc.n_keys = s.kv_len;
  sc.positions = s.q_len;
  sc.row_stride = block;
  sc.row_group = step;
  sc.key_begin = init;
  sc.keys_per_group = G;
  sc.thr = abar;
  sc.thr_offset = float(theta);
  sc.partial_keeps_all = true;
  sc.lists = alloc_lists(be, n_lists, capacity);
  be.scores(sc);
  be.free(qbar);
  be.free(abar);

  auto stripes = std::make_shared<HostIndexLists>();
  stripes->q_group = G;
  stripes->n_groups = n_groups;
  stripes->list_heads = s.q_heads;
  download_lists(be, sc.lists, n_lists, stripes->offsets, stripes->indices);
  st->stripes = stripes;
  st->device = keep_on_device(be, sc.lists);
  st->executed_pairs = executed_pairs(in, *stripes, be);

  // The selection: initial region ∪ local region ∪ stripes, per (b, h, group).
  auto keys = std::make_shared<HostIndexLists>();
  keys->q_group = G;
  keys->n_groups = n_groups;
  keys->list_heads = s.q_heads;
  std::vector<int32_t> l;
  for (int64_t r = 0; r < n_lists; ++r) {
    const int64_t g = r % n_groups;
    l.clear();
    for (int64_t j = 0; j < std::min(init, g * G); ++j) l.push_back(int32_t(j));
    l.insert(l.end(), stripes->indices.begin() + stripes->offsets[size_t(r)],
             stripes->indices.begin() + stripes->offsets[size_t(r) + 1]);
    for (int64_t j = std::max(g * G, std::min(init, g * G)); j < std::min(s.kv_len, (g + 1) * G); ++j) l.push_back(int32_t(j));
    keys->push_list(l);
  }
  return selection_plan(s, keys, 2.0 * anchor_pairs * (s.head_dim + s.v_dim) + flops_scan, st);
}

}  // namespace

std::unique_ptr<Variant> make_anchor(const ParamSet& p) { return std::make_unique<Anchor>(p); }

}  // namespace ab
