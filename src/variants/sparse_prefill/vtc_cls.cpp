// VTC-CLS: "[CLS] Token Tells Everything Needed for Training-free Efficient MLLMs", arXiv
// 2412.05819 — docs/variants.md §22 (THU-MIG/VTC-CLS llava/model/multimodal_encoder/clip_encoder.py::
// cls_token_only). VTC-CLS prunes visual tokens by the [CLS] row's attention, averaged over
// heads (and summed over a range of layers), keeping the top token_num in their original
// order. As an attention-level operator (§25: "a [CLS]-attention token selector"): the probe
// row's softmax attention is averaged over the query heads, the top keys are kept, and every
// query row of every head attends to the kept keys only (causal-cut); op 2 runs one key list
// per batch.
// The probe: the first row (a [CLS] token in front; its own key is not a candidate, as
// A[0, 1:]) for non-causal problems, and the last row — the one that sees every key — for
// causal ones (auto), or as chosen. One layer is scored (the paper sums a range of layers).
// keep_first also keeps key 0 (the [CLS] token itself / the attention sink), so that no row
// is left without a key under a causal mask.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "variants/sparse_prefill/sparse_prefill_base.hpp"

namespace ab {
namespace {

class VtcCls final : public SparsePrefillVariant {
 public:
  explicit VtcCls(ParamSet p) : SparsePrefillVariant(std::move(p)) {
    info_.name = "vtc_cls";
    info_.fidelity = {Fidelity::stand_in, "re-scoped from visual-token pruning across layers to one attention layer"};
    info_.family = "token-selection-prefill";
    info_.paper = "[CLS] Token Tells Everything Needed for Training-free Efficient MLLMs (VTC-CLS), "
                  "arXiv 2412.05819";
    info_.summary = "keep the top keys by the [CLS] (probe) row's head-averaged attention, then "
                    "every row attends over the kept keys";
    info_.params = {
        {"token_num", ParamType::integer, int64_t{0},
         "keys kept (the paper: 64/128/192 of 576 patches); 0 = keep_fraction of the keys"},
        {"keep_fraction", ParamType::number, 128.0 / 576.0,
         "fraction of keys kept when token_num = 0, in (0, 1] (default: the paper's 128 of 576)"},
        {"probe", ParamType::string, std::string("auto"),
         "row whose attention ranks the keys: first ([CLS] in front), last (sees every key under "
         "causal), auto = first when non-causal, last when causal",
         {"auto", "first", "last"}},
        {"keep_first", ParamType::boolean, true, "also keep key 0 (the [CLS] token / attention sink)"},
    };
  }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = prefill_shape(p);
    int_param("token_num", 0);
    number_param("keep_fraction", 0.0, 1.0, true);
    return s;
  }

  // Op 2 and the estimation ops the plan calls.
  Support supports(const AttnShape& s, const Backend& b) const override {
    return first_refusal({SparsePrefillVariant::supports(s, b), b.supports_scores(ScoresArgs{}), b.supports_select(SelectArgs{})});
  }
  Plan plan(const Inputs& in, Backend& be) override;

 protected:
  StaticEstimate static_estimate(const AttnShape& s) const override {
    StaticEstimate e;
    const double kept = double(kept_count(s.kv_len));
    e.density = std::min(1.0, kept * double(s.q_len) / s.allowed_pairs());  // an upper bound under causal
    e.estimation_flops = 2.0 * s.batch * s.q_heads * double(s.kv_len) * s.head_dim;
    return e;
  }

 private:
  int64_t kept_count(int64_t n) const {
    const int64_t t = params_.integer("token_num");
    if (t > 0) return std::min(t, n);
    return std::clamp<int64_t>(int64_t(std::ceil(params_.number("keep_fraction") * double(n) - 1e-9)), 1, n);
  }
};

Plan VtcCls::plan(const Inputs& in, Backend& be) {
  const AttnShape& s = in.shape;
  const int d = s.head_dim;
  const std::string probe_p = params_.string("probe");
  const bool last = probe_p == "last" || (probe_p == "auto" && s.causal);
  const int64_t probe = last ? s.q_len - 1 : 0;
  const int64_t visible = s.visible_keys(probe);
  const int64_t kept = kept_count(s.kv_len);
  const bool keep_first = params_.boolean("keep_first");

  // Head-averaged probabilities of the probe row over its visible keys: (B, 1, 1, visible).
  const TensorRef avg = be.alloc({s.batch, 1, 1, visible}, DType::f32);
  ScoresArgs sc;
  sc.epilogue = ScoresEpilogue::probs_head_mean;
  sc.q = in.q;
  sc.k = in.k;
  sc.out = avg;
  sc.scale = in.effective_scale();
  sc.n_keys = visible;
  sc.row_begin = probe;
  sc.row_end = probe + 1;
  sc.head_group = s.q_heads;
  be.scores(sc);

  // The top keys of each batch; a first-row [CLS] probe does not rank its own key (A[0, 1:]);
  // keep_first adds key 0.
  const int64_t self = probe + s.q_offset();
  const bool skip_self = !last && self < visible;
  std::vector<int32_t> rules;
  for (int b = 0; b < s.batch; ++b) {
    const std::vector<int64_t> r = {visible, std::min(kept, visible), skip_self ? self : 0, skip_self ? self + 1 : 0,
                                    0, keep_first ? 1 : 0, 0, 0};
    rules.insert(rules.end(), r.begin(), r.end());
  }
  SelectArgs sel;
  sel.rule = SelectRule::top_k;
  sel.scores = avg;
  sel.batch = s.batch;
  sel.list_heads = 1;
  sel.n_per = 1;
  sel.rules = be.alloc_indices(int64_t(rules.size()));
  be.upload_index_buffer(rules, sel.rules);
  sel.lists = alloc_lists(be, s.batch, s.batch * (std::min(kept, visible) + 1));
  be.select(sel);
  be.free_indices(sel.rules);
  be.free(avg);

  auto lists = std::make_shared<HostIndexLists>();
  lists->q_group = s.q_len;
  lists->n_groups = 1;
  lists->list_heads = 1;
  download_lists(be, sel.lists, s.batch, lists->offsets, lists->indices);
  auto st = std::make_shared<IndexListsPlan>();
  st->lists = lists;
  st->device = keep_on_device(be, sel.lists);
  return finish_plan<HostIndexLists>(in, lists,
                                     2.0 * s.batch * s.q_heads * double(visible) * d +
                                         double(s.batch) * visible * std::log2(double(std::max<int64_t>(2, visible))),
                                     st, be);
}

}  // namespace

std::unique_ptr<Variant> make_vtc_cls(const ParamSet& p) { return std::make_unique<VtcCls>(p); }

}  // namespace ab
