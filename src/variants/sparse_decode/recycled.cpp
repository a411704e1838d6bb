// Recycled Attention: full attention every few steps, a recycled top-K cache in between.
// "Recycled Attention: Efficient inference for long-context language models", Xu et al.,
// arXiv 2411.05787 (later retitled RefreshKV). docs/variants.md §13 (details from a secondary
// reading note of v1; the code at github.com/carriex/recycled-attention was not readable).
//
// Per (batch, kv head), in step order:
//   full step (step 0, then every `stride` steps; or, with schedule: dynamic, at a multiple of
//     `stride` steps since the last full step when cos(q_now, q_last_full) < similarity):
//     attend to every key; the group's attention probabilities, pooled over its query heads
//     (`pool`: sum, or max — the paper leaves GQA pooling open), pick the top recycle_k keys
//     with their scores as the recycled cache C_r;
//   recycled step: the step's new token joins C_r and the lowest-scored entry leaves when C_r
//     would exceed recycle_k; attend to C_r only. New tokens rank above every scored key, so
//     they stay until the next full step (the note: "append the new token, evict the
//     lowest-scored entry"). The full cache is never evicted, so keys can come back.
// The paper selects C_r from the prompt's last token at prefill; a decode case holds no prompt
// queries, so its first step is a full step instead.
// The full step's scores are a second pass over the keys (a fused attention kernel does not
// return its probabilities, docs/variants.md §13 (e)): they are counted as estimation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "variants/decode_steps.hpp"
#include "variants/sparse_decode/sparse_decode_base.hpp"

namespace ab {
namespace {

class Recycled final : public SparseDecodeVariant {
 public:
  explicit Recycled(ParamSet p) : SparseDecodeVariant(std::move(p)) {
    info_.name = "recycled";
    info_.fidelity = {Fidelity::simplified, "from a reading note, the reference code was not read; GQA pooling chosen here"};
    info_.family = "token-selection-decode";
    info_.paper = "Recycled Attention: Efficient inference for long-context language models, Xu et "
                  "al., arXiv 2411.05787";
    info_.summary = "full attention every `stride` steps (or on a query-similarity trigger) recording "
                    "scores; in between each kv head attends to its recycled top-K cache";
    info_.params = {
        {"recycle_k", ParamType::integer, int64_t{4096}, "recycled cache size K per kv head (RULER: 4096; "
                                                         "LM at 16K: 2048); >= 1"},
        {"stride", ParamType::integer, int64_t{50}, "steps between full steps S (RULER: 50; LM: 10); >= 1"},
        {"schedule", ParamType::string, std::string("fixed"),
         "fixed: a full step every `stride` steps; dynamic: every `stride` steps, a full step only "
         "when cos(q_now, q_last_full) < similarity", {"fixed", "dynamic"}},
        {"similarity", ParamType::number, 0.8, "dynamic schedule's cosine threshold s; in [-1, 1]"},
        {"pool", ParamType::string, std::string("sum"),
         "how a kv group's query heads' probabilities are pooled into one score per key", {"sum", "max"}},
    };
  }

 protected:
  void check(const AttnShape&) const override {
    int_at_least("recycle_k", 1);
    int_at_least("stride", 1);
    cosine_param("similarity");
  }

  double nominal_keys(const AttnShape& s, int64_t t) const override {
    const double T = double(step_position(s, t) + 1);
    return t % params_.integer("stride") == 0 ? T : std::min(T, double(params_.integer("recycle_k")));
  }
  double nominal_estimation_flops(const AttnShape& s) const override {
    double f = 0;
    for (int64_t t = 0; t < s.steps; t += params_.integer("stride"))
      f += 2.0 * s.batch * s.q_heads * s.head_dim * double(step_position(s, t) + 1);
    return f;
  }

  Support supports_selection(const AttnShape& s, const Backend& b) const override {
    const bool pool_max = params_.string("pool") == "max";
    return probe_scores(s, b, DecodeQueryRows::group,
                        pool_max ? DecodeScoreEpilogue::probs_head_max : DecodeScoreEpilogue::probs_head_sum, false);
  }

  Selected select(const Inputs& in, Backend& be) override {
    const AttnShape& s = in.shape;
    const int64_t K = params_.integer("recycle_k"), stride = params_.integer("stride");
    const bool dynamic = params_.string("schedule") == "dynamic";
    const double similarity = params_.number("similarity");
    const bool pool_max = params_.string("pool") == "max";
    const int G = s.group(), d = s.head_dim;
    auto lists = kv_head_lists(s);
    Selected out;

    // State per (batch, kv head): the recycled cache as (score, key); per batch: the query of
    // the last full step (all heads) and its step. The schedule and the cache updates are
    // small sequential control on the host; the full steps' scores are one op per step.
    struct Entry { float score; int32_t key; };
    std::vector<std::vector<Entry>> cache(size_t(s.batch) * s.kv_heads);
    std::vector<std::vector<float>> q_full(static_cast<size_t>(s.batch));
    std::vector<int64_t> last_full(static_cast<size_t>(s.batch), -1);
    std::vector<char> full(static_cast<size_t>(s.batch));
    std::vector<int32_t> top, keys;
    std::vector<DecodeScoreItem> items;
    DecodeScoresArgs a;
    a.shape = s;
    a.q = in.q;
    a.k = in.k;
    a.scale = in.effective_scale();
    a.rows = DecodeQueryRows::group;
    a.epilogue = pool_max ? DecodeScoreEpilogue::probs_head_max : DecodeScoreEpilogue::probs_head_sum;
    const int64_t fl = int64_t(s.q_heads) * d;
    int64_t full_steps = 0;
    for (int64_t t = 0; t < s.steps; ++t) {
      const int64_t T = step_position(s, t) + 1;
      // The dynamic schedule compares the step's queries (Hq·D floats per batch element).
      HostTensor qnow;
      if (dynamic) qnow = step_queries(be, in, t);
      items.clear();
      for (int b = 0; b < s.batch; ++b) {
        bool f = last_full[size_t(b)] < 0;
        const int64_t since = t - last_full[size_t(b)];
        if (!f && since % stride == 0)
          f = !dynamic || cosine_host(qnow.ptr() + b * fl, q_full[size_t(b)].data(), fl) < similarity;
        full[size_t(b)] = f;
        if (!f) continue;
        ++full_steps;
        last_full[size_t(b)] = t;
        if (dynamic) q_full[size_t(b)].assign(qnow.ptr() + b * fl, qnow.ptr() + (b + 1) * fl);
        for (int kh = 0; kh < s.kv_heads; ++kh) {  // the group's probabilities, pooled over its heads
          DecodeScoreItem it;
          it.b = b;
          it.kv_head = kh;
          it.q_row = t;
          it.n = T;
          it.out = int64_t(items.size()) * T;
          items.push_back(it);
        }
      }
      const std::vector<float> pooled = items.empty() ? std::vector<float>{} : scores_to_host(be, a, items);
      size_t item = 0;
      for (int b = 0; b < s.batch; ++b)
        for (int kh = 0; kh < s.kv_heads; ++kh) {
          auto& c = cache[size_t(b) * s.kv_heads + kh];
          keys.clear();
          if (full[size_t(b)]) {
            append_range(keys, 0, T);
            const float* p = pooled.data() + items[item++].out;
            top_k_host(p, T, K, top);
            c.clear();
            for (int32_t j : top) c.push_back({p[j], j});
            out.estimation_flops += 2.0 * G * d * double(T);
            out.estimation_bytes += double(d) * double(T) * dtype_bytes(s.dtype);
          } else {
            // The new token joins with a score above every scored key; the lowest leaves.
            c.push_back({std::numeric_limits<float>::infinity(), int32_t(T - 1)});
            if (int64_t(c.size()) > K) {
              auto lowest = std::min_element(c.begin(), c.end(), [](const Entry& x, const Entry& e) {
                return x.score < e.score || (x.score == e.score && x.key > e.key);
              });
              c.erase(lowest);
            }
            for (const Entry& e : c) keys.push_back(e.key);
            sort_unique(keys);
          }
          lists->push(t, keys);
        }
    }
    out.stats["full_steps"] = double(full_steps) / double(s.batch);
    out.sources.push_back({lists, 0, {}, {}});
    return out;
  }
};

}  // namespace

std::unique_ptr<Variant> make_recycled(const ParamSet& p) { return std::make_unique<Recycled>(p); }

}  // namespace ab
