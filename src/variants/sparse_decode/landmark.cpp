// Landmark Attention at inference, with the block-mean key standing in for the trained landmark.
// "Landmark Attention: Random-Access Infinite Context Length for Transformers", Mohtashami &
// Jaggi, NeurIPS 2023, arXiv 2305.16300; epfml/landmark-attention llama/llama_mem.py
// (cache_top_k path). docs/variants.md §14.
//
// The paper inserts a trained landmark token after every block of mem_freq tokens; a query
// scores the landmarks, keeps the top-k blocks and attends to them plus the current block.
// Without fine-tuned weights there are no landmark keys, so this variant scores each complete
// block by the MEAN OF ITS KEYS (a training-free stand-in, named so in `list`): per step and
// kv group,
//   s_hb = softmax_b(q_h·k̄_b/√d) over the complete blocks before the step's own block,
//   pooled over the group's query heads by summing (exactly per head for MHA; the repo's
//   max_over_tokens aggregation concerns several queries of one head),
//   keep the top `top_k` blocks (ascending), plus the step's own block up to its token.
// Attention over the gathered keys is plain softmax (the repo's last section reuses the
// grouped-softmax path; with mean keys there is no landmark probability to group by).
#include <algorithm>
#include <cmath>
#include <memory>

#include "variants/decode_steps.hpp"
#include "variants/sparse_decode/sparse_decode_base.hpp"

namespace ab {
namespace {

class Landmark final : public SparseDecodeVariant {
 public:
  explicit Landmark(ParamSet p) : SparseDecodeVariant(std::move(p)) {
    info_.name = "landmark";
    info_.fidelity = {Fidelity::stand_in, "block-mean keys instead of trained landmark tokens"};
    info_.family = "token-selection-decode";
    info_.paper = "Landmark Attention: Random-Access Infinite Context Length for Transformers, "
                  "Mohtashami & Jaggi, NeurIPS 2023, arXiv 2305.16300";
    info_.summary = "block retrieval with the BLOCK-MEAN KEY standing in for trained landmark tokens: "
                    "top-k blocks by softmax over block scores, plus the current block";
    info_.params = {
        {"block_size", ParamType::integer, int64_t{50}, "tokens per block (mem_freq; the landmark token "
                                                        "itself is absent); >= 1"},
        {"top_k", ParamType::integer, int64_t{5}, "blocks retrieved per step (cache_top_k in run_test.py); >= 1"},
    };
  }

 protected:
  void check(const AttnShape&) const override {
    int_at_least("block_size", 1);
    int_at_least("top_k", 1);
  }

  double nominal_keys(const AttnShape& s, int64_t t) const override {
    const int64_t L = params_.integer("block_size"), P = step_position(s, t);
    return std::min(double(P + 1), double(params_.integer("top_k") * L + P % L + 1));
  }
  double nominal_estimation_flops(const AttnShape& s) const override {
    double f = 0;
    for (int64_t t = 0; t < s.steps; ++t)
      f += 2.0 * s.batch * s.q_heads * s.head_dim * double(step_position(s, t) / params_.integer("block_size"));
    return f;
  }

  Support supports_selection(const AttnShape& s, const Backend& b) const override {
    const Support ok = probe_block_means(s, b);
    return ok.ok ? probe_scores(s, b, DecodeQueryRows::group, DecodeScoreEpilogue::soft_vote, false) : ok;
  }

  Selected select(const Inputs& in, Backend& be) override {
    const AttnShape& s = in.shape;
    const int64_t L = params_.integer("block_size"), top_k = params_.integer("top_k");
    const int G = s.group(), d = s.head_dim;
    Selected out;
    // Block means (the landmark stand-ins): the prompt's complete blocks are prefill-time work,
    // pooled once per cache and reused by later plans (reported as prefill_pool_flops); blocks
    // completed during the steps are pooled here (one add per pooled element). A block's mean
    // exists once its last key has arrived; only blocks before the step's own are scored.
    const int64_t last = step_position(s, s.steps - 1), nb_max = last / L, nb_prompt = step_position(s, 0) / L;
    const TensorRef means = block_means(in, be, 0, L, nb_prompt, nb_max, prompt_means_, out);
    // Every step's block votes in one op: Σ_h softmax_b(q_h·k̄_b/√d) over the complete blocks
    // before the step's own, per (step, batch, kv head) with more than top_k of them.
    std::vector<DecodeScoreItem> items;
    int64_t total = 0;
    for (int64_t t = 0; t < s.steps; ++t) {
      const int64_t cb = step_position(s, t) / L;
      if (cb <= top_k) continue;
      for (int b = 0; b < s.batch; ++b)
        for (int kh = 0; kh < s.kv_heads; ++kh) {
          DecodeScoreItem it;
          it.b = b;
          it.kv_head = kh;
          it.q_row = t;
          it.n = cb;
          it.out = total;
          total += cb;
          items.push_back(it);
        }
    }
    DecodeScoresArgs a;
    a.shape = s;
    a.q = in.q;
    a.k = means;
    a.scale = in.effective_scale();
    a.rows = DecodeQueryRows::group;
    a.epilogue = DecodeScoreEpilogue::soft_vote;
    const std::vector<float> votes = scores_to_host(be, a, items);
    be.free(means);
    // The top blocks of each list: small control on the host over the downloaded votes.
    std::vector<int32_t> top;
    size_t item = 0;
    auto lists = fill_kv_head_lists(s, [&](int64_t t, int, int, std::vector<int32_t>& keys) {
      const int64_t P = step_position(s, t), cb = P / L;
      if (cb <= top_k) {
        append_range(keys, 0, P + 1);
        return;
      }
      const DecodeScoreItem& it = items[item++];
      top_k_host(votes.data() + it.out, cb, top_k, top);
      std::sort(top.begin(), top.end());
      for (int32_t blk : top) append_range(keys, int64_t(blk) * L, int64_t(blk + 1) * L);
      append_range(keys, cb * L, P + 1);
      out.estimation_flops += 2.0 * G * d * double(cb);
      out.estimation_bytes += double(cb) * d * dtype_bytes(s.dtype);
    });
    out.sources.push_back({lists, 0, {}, {}});
    return out;
  }

 private:
  PromptMeans prompt_means_;
};

}  // namespace

std::unique_ptr<Variant> make_landmark(const ParamSet& p) { return std::make_unique<Landmark>(p); }

}  // namespace ab
