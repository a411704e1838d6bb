// Kinetics block top-k decode attention: pages scored by their mean-pooled key, top-k pages
// plus sink and local tokens. "Kinetics: Rethinking Test-Time Scaling Laws", Sadhukhan et al.,
// arXiv 2506.05333; Infini-AI-Lab/Kinetics LiteSys/litesys/attention/sparsity_utils.py
// (blockwise_topk_sparsity), benchmark/blocktopk_decoder.py. docs/variants.md §17. Its eFLOPs cost
// model is the `ecost` metric (src/metrics/ecost.cpp).
//
// Per decode step (T keys) and kv group, as blockwise_topk_sparsity:
//   dense when T ≤ n_full = ceil((sinks + local + topk_blocks·block_size) / block_size)·block_size;
//   else the dynamic part is the whole pages [sinks, sinks + n_dyn), n_dyn =
//   ⌊(T − local − sinks)/b⌋·b, and the local part the remaining T − n_dyn − sinks ≥ local keys;
//   page score u_p = mean over the group's query heads of q_h·k̄_p (k̄_p the mean key of the page:
//   the benchmark's compressed keys; the simulation's block-averaged exact logits are the same
//   number, since a mean of q·k_j is q·mean(k_j));
//   keep the top `topk_blocks` pages plus [0, sinks) and the local part.
#include <algorithm>
#include <cmath>
#include <memory>

#include "variants/decode_steps.hpp"
#include "variants/sparse_decode/sparse_decode_base.hpp"

namespace ab {
namespace {

class Kinetics final : public SparseDecodeVariant {
 public:
  explicit Kinetics(ParamSet p) : SparseDecodeVariant(std::move(p)) {
    info_.name = "kinetics";
    info_.fidelity = {Fidelity::faithful, "block top-k pages as in the reference code"};
    info_.family = "token-selection-decode";
    info_.paper = "Kinetics: Rethinking Test-Time Scaling Laws, Sadhukhan et al., arXiv 2506.05333";
    info_.summary = "block top-k decode attention: pages scored by the group-mean query against the "
                    "page's mean key, top-k pages plus sinks and a local window (eFLOPs: metric ecost)";
    info_.params = {
        {"block_size", ParamType::integer, int64_t{16}, "tokens per page (block_size / page_size 16); >= 1"},
        {"topk_blocks", ParamType::integer, int64_t{64}, "pages kept per step (topk_page 64: a 1024-token "
                                                         "budget); >= 1"},
        {"sinks", ParamType::integer, int64_t{4}, "first tokens always kept (sink = 4); >= 0"},
        {"local", ParamType::integer, int64_t{64}, "most recent tokens always kept, the step's own included "
                                                   "(attn_local; the code takes it as an argument, 64 here); >= 1"},
    };
  }

 protected:
  void check(const AttnShape&) const override {
    int_at_least("block_size", 1);
    int_at_least("topk_blocks", 1);
    int_at_least("sinks", 0);
    int_at_least("local", 1, kOwnToken);
  }

  int64_t n_full() const {
    const int64_t b = params_.integer("block_size");
    return (params_.integer("sinks") + params_.integer("local") + params_.integer("topk_blocks") * b + b - 1) / b * b;
  }
  double nominal_keys(const AttnShape& s, int64_t t) const override {
    const int64_t T = step_position(s, t) + 1;
    return T <= n_full() ? double(T)
                         : double(params_.integer("sinks") + params_.integer("local") +
                                  params_.integer("topk_blocks") * params_.integer("block_size"));
  }
  double nominal_estimation_flops(const AttnShape& s) const override {
    double f = 0;
    for (int64_t t = 0; t < s.steps; ++t)
      if (step_position(s, t) + 1 > n_full())
        f += 2.0 * s.batch * s.kv_heads * s.head_dim * double((step_position(s, t) + 1) / params_.integer("block_size"));
    return f;
  }

  Support supports_selection(const AttnShape& s, const Backend& b) const override {
    const Support ok = probe_block_means(s, b);
    return ok.ok ? probe_scores(s, b, DecodeQueryRows::group_mean, DecodeScoreEpilogue::raw, false) : ok;
  }

  Selected select(const Inputs& in, Backend& be) override {
    const AttnShape& s = in.shape;
    const int64_t bs = params_.integer("block_size"), topk = params_.integer("topk_blocks"),
                  sinks = params_.integer("sinks"), local = params_.integer("local");
    const int G = s.group(), d = s.head_dim;
    Selected out;
    // Mean keys of the pages [sinks + p·b, sinks + (p+1)·b) that the last step can score: the
    // prompt's full pages are prefill-time work (the benchmark's compressed keys are written
    // when a page fills), pooled once per cache and reused by later plans (reported as
    // prefill_pool_flops); pages filled during the steps are pooled here.
    const int64_t T_last = step_position(s, s.steps - 1) + 1, N = step_position(s, 0);
    const int64_t np_max = std::max<int64_t>(0, (T_last - local - sinks) / bs);
    const int64_t np_prompt = std::min(np_max, std::max<int64_t>(0, (N - sinks) / bs));
    const TensorRef means = block_means(in, be, sinks, bs, np_prompt, np_max, prompt_means_, out);
    // Every step's page scores in one op: mean_h q_h·k̄_p = (mean_h q_h)·k̄_p, one product per
    // page, for each (step, batch, kv head) past the dense threshold.
    std::vector<DecodeScoreItem> items;
    int64_t total = 0;
    for (int64_t t = 0; t < s.steps; ++t) {
      const int64_t T = step_position(s, t) + 1;
      if (T <= n_full()) continue;
      for (int b = 0; b < s.batch; ++b)
        for (int kh = 0; kh < s.kv_heads; ++kh) {
          DecodeScoreItem it;
          it.b = b;
          it.kv_head = kh;
          it.q_row = t;
          it.n = (T - local - sinks) / bs;
          it.out = total;
          total += it.n;
          items.push_back(it);
        }
    }
    DecodeScoresArgs a;
    a.shape = s;
    a.q = in.q;
    a.k = means;
    a.scale = 1.0f;
    a.rows = DecodeQueryRows::group_mean;
    a.epilogue = DecodeScoreEpilogue::raw;
    const std::vector<float> scores = scores_to_host(be, a, items);
    be.free(means);
    // The top pages of each list: small control on the host over the downloaded page scores.
    std::vector<int32_t> top;
    size_t item = 0;
    auto lists = fill_kv_head_lists(s, [&](int64_t t, int, int, std::vector<int32_t>& keys) {
      const int64_t T = step_position(s, t) + 1;
      if (T <= n_full()) {
        append_range(keys, 0, T);
        return;
      }
      const DecodeScoreItem& it = items[item++];
      const int64_t np = it.n, local_from = sinks + np * bs;
      top_k_host(scores.data() + it.out, np, topk, top);
      std::sort(top.begin(), top.end());
      append_range(keys, 0, sinks);
      for (int32_t p : top) append_range(keys, sinks + int64_t(p) * bs, sinks + int64_t(p + 1) * bs);
      append_range(keys, local_from, T);
      // What is computed: the group-mean query, then one product per page (the cost model's
      // search term counts a product per query head; ecost reports that form).
      out.estimation_flops += double(G) * d + 2.0 * d * double(np);
      out.estimation_bytes += double(np) * d * dtype_bytes(s.dtype);
    });
    out.sources.push_back({lists, 0, {}, {}});
    return out;
  }

 private:
  PromptMeans prompt_means_;
};

}  // namespace

std::unique_ptr<Variant> make_kinetics(const ParamSet& p) { return std::make_unique<Kinetics>(p); }

}  // namespace ab
