// VTC-CLS: "[CLS] Token Tells Everything Needed for Training-free Efficient MLLMs", arXiv
// 2412.05819 — VARIANTS.md §22 (THU-MIG/VTC-CLS llava/model/multimodal_encoder/clip_encoder.py::
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

#include "cpu/selection.hpp"
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
  (void)be;
  const AttnShape& s = in.shape;
  const HostInputs& x = *in.host;
  const int d = s.head_dim;
  const std::string probe_p = params_.string("probe");
  const bool last = probe_p == "last" || (probe_p == "auto" && s.causal);
  const int64_t probe = last ? s.q_len - 1 : 0;
  const int64_t visible = s.visible_keys(probe);
  const int64_t kept = kept_count(s.kv_len);
  const bool keep_first = params_.boolean("keep_first");
  const float scale = in.effective_scale();

  auto lists = std::make_shared<HostIndexLists>();
  lists->q_group = s.q_len;
  lists->n_groups = 1;
  lists->list_heads = 1;
  for (int b = 0; b < s.batch; ++b) {
    // Head-averaged probabilities of the probe row.
    std::vector<float> avg(static_cast<size_t>(visible), 0.0f), p(static_cast<size_t>(visible));
    for (int h = 0; h < s.q_heads; ++h) {
      cpu::softmax_probs(x.q.row(b, h, probe), 1, &visible, x.k.row(b, h / s.group(), 0), visible, d, scale, p.data());
      for (int64_t j = 0; j < visible; ++j) avg[size_t(j)] += p[size_t(j)] / float(s.q_heads);
    }
    // A first-row [CLS] probe does not rank its own key (A[0, 1:]).
    const int64_t self = probe + s.q_offset();
    if (!last && self < visible) avg[size_t(self)] = -std::numeric_limits<float>::infinity();
    std::vector<int32_t> top;
    cpu::top_k(avg.data(), visible, std::min(kept, visible), top);
    if (keep_first) top.push_back(0);
    std::sort(top.begin(), top.end());
    top.erase(std::unique(top.begin(), top.end()), top.end());
    lists->push_list(top);
  }
  auto st = std::make_shared<IndexListsPlan>();
  st->lists = lists;
  return finish_plan<HostIndexLists>(in, lists,
                                     2.0 * s.batch * s.q_heads * double(visible) * d +
                                         double(s.batch) * visible * std::log2(double(std::max<int64_t>(2, visible))),
                                     st);
}

}  // namespace

std::unique_ptr<Variant> make_vtc_cls(const ParamSet& p) { return std::make_unique<VtcCls>(p); }

}  // namespace ab
