// TokenSelect: dynamic token-level KV selection by per-head soft voting.
// "TokenSelect: Efficient Long-Context Inference and Length Extrapolation for LLMs via Dynamic
// Token-Level KV Cache Selection", Wu et al., arXiv 2411.02886; pzs19/TokenSelect
// patcher/token_retrieval.py (get_topk_tokens, retrieval_indices). docs/variants.md §12.
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

  Support supports_selection(const AttnShape& s, const Backend& b) const override {
    return probe_scores(s, b, DecodeQueryRows::group, DecodeScoreEpilogue::soft_vote, false);
  }

  Selected select(const Inputs& in, Backend& be) override {
    const AttnShape& s = in.shape;
    const int64_t top_k = params_.integer("top_k"), n_init = params_.integer("n_init"),
                  n_local = params_.integer("n_local");
    const bool use_cache = params_.boolean("cache");
    const int d = s.head_dim;
    auto lists = kv_head_lists(s);
    Selected out;
    std::vector<SelectionCache> caches(static_cast<size_t>(s.batch), SelectionCache(params_.number("cache_threshold")));
    std::vector<std::vector<int32_t>> tops(static_cast<size_t>(s.batch));
    std::vector<char> scored(static_cast<size_t>(s.batch));
    std::vector<int32_t> keys;
    std::vector<DecodeScoreItem> items;
    int64_t scored_steps = 0;
    DecodeScoresArgs a;
    a.shape = s;
    a.q = in.q;
    a.k = in.k;
    a.scale = 1.0f;  // the code's raw dot products (paged_matmul_kernel)
    a.rows = DecodeQueryRows::group;
    a.epilogue = DecodeScoreEpilogue::soft_vote;
    for (int64_t t = 0; t < s.steps; ++t) {
      const int64_t T = step_position(s, t) + 1;
      if (T <= n_init + n_local + top_k) {  // everything, for every batch element
        keys.clear();
        append_range(keys, 0, T);
        for (int64_t r = 0; r < int64_t(s.batch) * s.kv_heads; ++r) lists->push(t, keys);
        continue;
      }
      // The selection cache is small sequential control on the host: it reads the step's
      // query fingerprints (Hq·D floats per batch element), downloaded.
      HostTensor f;
      if (use_cache) f = step_queries(be, in, t);
      const int64_t c0 = n_init, nc = T - n_local - n_init;
      const int64_t fl = int64_t(s.q_heads) * d;
      items.clear();
      for (int b = 0; b < s.batch; ++b) {
        const std::vector<int32_t>* cached = use_cache ? caches[size_t(b)].lookup(f.ptr() + b * fl, fl) : nullptr;
        scored[size_t(b)] = cached == nullptr;
        if (cached) {
          tops[size_t(b)] = *cached;
          continue;
        }
        // Every kv group of batch element b votes into one vector over the candidates.
        for (int kh = 0; kh < s.kv_heads; ++kh) {
          DecodeScoreItem it;
          it.b = b;
          it.kv_head = kh;
          it.q_row = t;
          it.k0 = c0;
          it.n = nc;
          it.out = int64_t(b) * nc;
          items.push_back(it);
        }
      }
      const std::vector<float> votes = items.empty() ? std::vector<float>{} : scores_to_host(be, a, items);
      for (int b = 0; b < s.batch; ++b) {
        std::vector<int32_t>& top = tops[size_t(b)];
        if (scored[size_t(b)]) {
          top_k_host(votes.data() + int64_t(b) * nc, nc, top_k, top);
          for (auto& j : top) j += int32_t(c0);
          out.estimation_flops += 2.0 * s.q_heads * d * double(nc);
          out.estimation_bytes += double(s.kv_heads) * d * double(nc) * dtype_bytes(s.dtype);
          ++scored_steps;
          if (use_cache) caches[size_t(b)].store(f.ptr() + b * fl, fl, top);
        }
        keys.clear();
        append_range(keys, 0, n_init);
        keys.insert(keys.end(), top.begin(), top.end());
        append_range(keys, T - n_local, T);
        sort_unique(keys);
        for (int kh = 0; kh < s.kv_heads; ++kh) lists->push(t, keys);  // one set for every head
      }
    }
    if (use_cache) {
      double hits = 0, lookups = 0;
      for (const auto& c : caches) hits += double(c.hits()), lookups += double(c.hits() + c.misses());
      out.stats["cache_hit_rate"] = lookups > 0 ? hits / lookups : 0.0;
    }
    out.stats["scored_steps"] = double(scored_steps);
    out.sources.push_back({lists, 0, {}, {}});
    return out;
  }

 private:
  // The cosine-keyed selection cache (§12 step 3): the selection made for a query fingerprint
  // is reused while later fingerprints stay within `threshold` cosine of it.
  class SelectionCache {
   public:
    explicit SelectionCache(double threshold) : threshold_(threshold) {}
    // The cached selection when a fingerprint is stored and cos(f, stored) >= threshold.
    const std::vector<int32_t>* lookup(const float* f, int64_t n) {
      if (int64_t(fingerprint_.size()) == n && n > 0 && cosine_host(f, fingerprint_.data(), n) >= threshold_) {
        ++hits_;
        return &selection_;
      }
      ++misses_;
      return nullptr;
    }
    void store(const float* f, int64_t n, std::vector<int32_t> selection) {
      fingerprint_.assign(f, f + n);
      selection_ = std::move(selection);
    }
    int64_t hits() const { return hits_; }
    int64_t misses() const { return misses_; }

   private:
    double threshold_;
    std::vector<float> fingerprint_;
    std::vector<int32_t> selection_;
    int64_t hits_ = 0, misses_ = 0;
  };
};

}  // namespace

std::unique_ptr<Variant> make_tokenselect(const ParamSet& p) { return std::make_unique<TokenSelect>(p); }

}  // namespace ab
