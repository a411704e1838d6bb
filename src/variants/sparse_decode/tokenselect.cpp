// TokenSelect: dynamic token-level KV selection by per-head soft voting.
// "TokenSelect: Efficient Long-Context Inference and Length Extrapolation for LLMs via Dynamic
// Token-Level KV Cache Selection", Wu et al., arXiv 2411.02886; pzs19/TokenSelect
// patcher/token_retrieval.py (get_topk_tokens, retrieval_indices). VARIANTS.md §12.
//
// Per decode step, per batch element (§12 (d)):
//   1. T ≤ n_init + n_local + top_k: attend to everything (the code's `return None`).
//   2. Fingerprint f = the step's query, all heads (a chunk of one token: its own query).
//   3. Optional selection cache: if cos(f, f_cached) ≥ cache_threshold, reuse the cached top-k.
//   4. Candidates j ∈ [n_init, T − n_local): s_hj = q_h·k_{g(h),j}, raw dot products (the code
//      softmaxes them without the 1/√d scale; paged_matmul_kernel).
//   5. v_j = Σ_h softmax_j(s_h·) over every query head (the soft vote).
//   6. S = top_k(v); the set [0, n_init) ∪ S ∪ [T − n_local, T) is shared by all heads.
// Not carried over: QUERY_ROTATE (re-rotating the fingerprint at position n_local) is a RoPE
// length-extrapolation device and the harness's Q/K carry no separate rotation to undo;
// kernel_size max-pool smoothing is off in the released config (-1).
#include <cmath>
#include <memory>

#include "cpu/selection.hpp"
#include "cpu/selection_decode.hpp"
#include "variants/decode_steps.hpp"
#include "variants/sparse_decode/sparse_decode_base.hpp"

namespace ab {
namespace {

class TokenSelect final : public SparseDecodeVariant {
 public:
  explicit TokenSelect(ParamSet p) : SparseDecodeVariant(std::move(p)) {
    info_.name = "tokenselect";
    info_.fidelity = {Fidelity::simplified, "no RoPE query re-rotation (QUERY_ROTATE)"};
    info_.family = "token-selection-decode";
    info_.paper = "TokenSelect: Efficient Long-Context Inference and Length Extrapolation for LLMs "
                  "via Dynamic Token-Level KV Cache Selection, Wu et al., arXiv 2411.02886";
    info_.summary = "per-head softmax-normalised QK scores, soft vote across heads, init + top-k + "
                    "local tokens shared by all heads; optional cosine-keyed selection cache";
    info_.params = {
        {"top_k", ParamType::integer, int64_t{2048}, "tokens chosen by the soft vote (TOP_K); >= 1"},
        {"n_init", ParamType::integer, int64_t{128}, "initial tokens always kept (N_INIT); >= 0"},
        {"n_local", ParamType::integer, int64_t{512}, "most recent tokens always kept, the step's own "
                                                      "included (N_Local); >= 1"},
        {"cache", ParamType::boolean, false, "selection cache: reuse the last top-k while the query "
                                             "fingerprint stays similar (QUERY_CACHE; off in the released code)"},
        {"cache_threshold", ParamType::number, 0.9, "cosine similarity at or above which the cache is reused; "
                                                    "in [-1, 1]"},
    };
  }

 protected:
  void check(const AttnShape&) const override {
    int_at_least("top_k", 1);
    int_at_least("n_init", 0);
    int_at_least("n_local", 1, kOwnToken);
    cosine_param("cache_threshold");
  }

  double budget() const {
    return double(params_.integer("top_k") + params_.integer("n_init") + params_.integer("n_local"));
  }
  double nominal_keys(const AttnShape& s, int64_t t) const override {
    return std::min(budget(), double(step_position(s, t) + 1));
  }
  double nominal_estimation_flops(const AttnShape& s) const override {
    double f = 0;
    for (int64_t t = 0; t < s.steps; ++t) {
      const double T = double(step_position(s, t) + 1);
      if (T > budget())
        f += 2.0 * s.batch * s.q_heads * s.head_dim * (T - params_.integer("n_init") - params_.integer("n_local"));
    }
    return f;
  }

  Selected select(const Inputs& in) override {
    const AttnShape& s = in.shape;
    const int64_t top_k = params_.integer("top_k"), n_init = params_.integer("n_init"),
                  n_local = params_.integer("n_local");
    const bool use_cache = params_.boolean("cache");
    const int G = s.group(), d = s.head_dim;
    const HostTensor& Q = in.host->q;
    const HostTensor& K = in.host->k;
    auto lists = kv_head_lists(s);
    Selected out;
    std::vector<cpu::SelectionCache> caches(static_cast<size_t>(s.batch), cpu::SelectionCache(params_.number("cache_threshold")));
    std::vector<float> f(size_t(s.q_heads) * d), qg(size_t(G) * d), scores, votes;
    std::vector<int32_t> top, keys;
    int64_t scored_steps = 0;
    for (int64_t t = 0; t < s.steps; ++t) {
      const int64_t T = step_position(s, t) + 1;
      for (int b = 0; b < s.batch; ++b) {
        keys.clear();
        if (T <= n_init + n_local + top_k) {
          append_range(keys, 0, T);
        } else {
          gather_queries(Q, b, 0, s.q_heads, t, f.data());
          const std::vector<int32_t>* cached =
              use_cache ? caches[size_t(b)].lookup(f.data(), int64_t(f.size())) : nullptr;
          if (cached) {
            top = *cached;
          } else {
            const int64_t c0 = n_init, nc = T - n_local - n_init;
            scores.assign(size_t(G) * size_t(nc), 0.0f);
            votes.assign(size_t(nc), 0.0f);
            for (int kh = 0; kh < s.kv_heads; ++kh) {
              gather_queries(Q, b, kh * G, G, t, qg.data());
              cpu::group_scores(qg.data(), G, K.row(b, kh, c0), nc, d, 1.0f, scores.data());
              cpu::soft_vote(scores.data(), G, nc, votes.data());
            }
            cpu::top_k(votes.data(), nc, top_k, top);
            for (auto& j : top) j += int32_t(c0);
            out.estimation_flops += 2.0 * s.q_heads * d * double(nc);
            out.estimation_bytes += double(s.kv_heads) * d * double(nc) * dtype_bytes(s.dtype);
            ++scored_steps;
            if (use_cache) caches[size_t(b)].store(f.data(), int64_t(f.size()), top);
          }
          append_range(keys, 0, n_init);
          keys.insert(keys.end(), top.begin(), top.end());
          append_range(keys, T - n_local, T);
          sort_unique(keys);
        }
        for (int kh = 0; kh < s.kv_heads; ++kh) lists->push(t, keys);  // one set for every head
      }
    }
    if (use_cache) {
      double hits = 0, lookups = 0;
      for (const auto& c : caches) hits += double(c.hits()), lookups += double(c.hits() + c.misses());
      out.stats["cache_hit_rate"] = lookups > 0 ? hits / lookups : 0.0;
    }
    out.stats["scored_steps"] = double(scored_steps);
    out.sources.push_back({lists, nullptr, nullptr});
    return out;
  }
};

}  // namespace

std::unique_ptr<Variant> make_tokenselect(const ParamSet& p) { return std::make_unique<TokenSelect>(p); }

}  // namespace ab
