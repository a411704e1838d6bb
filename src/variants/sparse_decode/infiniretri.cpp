// InfiniRetri at the attention level: the context is read chunk by chunk, the probe (the
// step's query, the "question") keeps the tokens it attends to most, and the answer attends
// over what was kept. "Infinite Retrieval: Attention Enhanced LLMs in Long-Context Processing",
// Ye et al., arXiv 2502.12962. docs/variants.md §24 (from the abstract and a third-party summary;
// github.com/CapitalCode2020/InfiniRetri2 was not read).
//
// The paper is a pipeline around a whole model: for each chunk it runs the model on
// [cached sentences + chunk + question], reads the last layer's attention from the question to
// the context, smooths it with a 1-D convolution into phrase-level scores and caches the token
// ids of the whole sentences holding the top-K tokens. At the level of one attention layer:
//   cache = ∅; for each chunk [c·C, (c+1)·C) of the context before the first step's token:
//     candidates = cache ∪ chunk, in position order;
//     a_j = Σ_h softmax_j(q_h·k_j/√d) over the candidates, every query head of the batch
//           element (the question's attention, summed over heads; one set for all heads, as
//           the paper keeps token ids);
//     ã = a convolved with a box of `conv` taps along the candidate sequence (phrase scores);
//     cache = the top `keep` candidates by ã (tokens, not sentences: Q/K carry no sentence
//     boundaries).
//   Every step then attends to the cache plus the tokens from the first step's on (the question
//   and what has been generated since).
// The pipeline runs once, at the first step, as the paper reads the document once per question.
#include <algorithm>
#include <cmath>
#include <memory>

#include "variants/decode_steps.hpp"
#include "variants/sparse_decode/sparse_decode_base.hpp"

namespace ab {
namespace {

class InfiniRetri final : public SparseDecodeVariant {
 public:
  explicit InfiniRetri(ParamSet p) : SparseDecodeVariant(std::move(p)) {
    info_.name = "infiniretri";
    info_.fidelity = {Fidelity::stand_in, "re-scoped from a whole-model pipeline to one attention layer"};
    info_.family = "token-selection-decode";
    info_.paper = "Infinite Retrieval: Attention Enhanced LLMs in Long-Context Processing, Ye et al., "
                  "arXiv 2502.12962";
    info_.summary = "chunk-wise reading: per chunk, keep the top tokens of cache + chunk by the probe "
                    "query's head-summed, convolution-smoothed attention; attend over what was kept";
    info_.params = {
        {"chunk", ParamType::integer, int64_t{1024}, "context tokens per chunk C (not given in the "
                                                     "sources read); >= 1"},
        {"keep", ParamType::integer, int64_t{1024}, "tokens cached across chunks K; >= 1"},
        {"conv", ParamType::integer, int64_t{5}, "taps of the box convolution smoothing the scores into "
                                                 "phrase scores (odd, >= 1; 1 = none)"},
    };
  }

 protected:
  void check(const AttnShape&) const override {
    int_at_least("chunk", 1);
    int_at_least("keep", 1);
    const int64_t w = params_.integer("conv");
    if (w < 1 || w % 2 == 0) refuse("conv", std::to_string(w), "must be odd and >= 1");
  }

  double nominal_keys(const AttnShape& s, int64_t t) const override {
    const double N = double(step_position(s, 0));
    return std::min(N, double(params_.integer("keep"))) + double(t + 1);
  }
  double nominal_estimation_flops(const AttnShape& s) const override {
    const double N = double(step_position(s, 0)), C = double(params_.integer("chunk")),
                 K = double(params_.integer("keep"));
    return 2.0 * s.batch * s.q_heads * s.head_dim * std::ceil(N / C) * (C + std::min(K, N));
  }

  Support supports_selection(const AttnShape& s, const Backend& b) const override {
    return probe_scores(s, b, DecodeQueryRows::group, DecodeScoreEpilogue::soft_vote, true);
  }

  Selected select(const Inputs& in, Backend& be) override {
    const AttnShape& s = in.shape;
    const int64_t C = params_.integer("chunk"), keep = params_.integer("keep"), conv = params_.integer("conv");
    const int G = s.group(), d = s.head_dim;
    const int64_t N = step_position(s, 0);  // context before the first step's token
    auto lists = kv_head_lists(s);
    Selected out;
    std::vector<std::vector<int32_t>> kept(static_cast<size_t>(s.batch));
    std::vector<std::vector<int32_t>> cand(static_cast<size_t>(s.batch));
    std::vector<int32_t> top, offsets, all;
    std::vector<float> smooth;
    std::vector<DecodeScoreItem> items;
    DecodeScoresArgs a;
    a.shape = s;
    a.q = in.q;
    a.k = in.k;
    a.scale = in.effective_scale();
    a.rows = DecodeQueryRows::group;
    a.epilogue = DecodeScoreEpilogue::soft_vote;
    int64_t chunks = 0;
    // Chunk by chunk (each chunk's candidates depend on the last's cache), every batch element
    // in one op: Σ_h softmax_j over the candidates, the candidates gathered by index.
    for (int64_t c0 = 0; c0 < N; c0 += C) {
      items.clear();
      offsets.assign(1, 0);
      all.clear();
      for (int b = 0; b < s.batch; ++b) {
        ++chunks;
        cand[size_t(b)] = kept[size_t(b)];
        append_range(cand[size_t(b)], c0, std::min(N, c0 + C));  // cache keys precede the chunk's
        const int64_t n = int64_t(cand[size_t(b)].size());
        for (int kh = 0; kh < s.kv_heads; ++kh) {
          DecodeScoreItem it;
          it.b = b;
          it.kv_head = kh;
          it.q_row = 0;
          it.k0 = int64_t(all.size());
          it.n = n;
          it.out = int64_t(all.size());  // one vote per batch element, its kv groups adding in
          items.push_back(it);
          out.estimation_flops += 2.0 * G * d * double(n);
          out.estimation_bytes += double(n) * d * dtype_bytes(s.dtype);
        }
        all.insert(all.end(), cand[size_t(b)].begin(), cand[size_t(b)].end());
        offsets.push_back(int32_t(all.size()));
      }
      a.key_lists = be.upload_indices(offsets, all);
      const std::vector<float> votes = scores_to_host(be, a, items);
      // The phrase smoothing and the cache's top-K: small control on the host.
      for (int b = 0; b < s.batch; ++b) {
        const std::vector<int32_t>& cb = cand[size_t(b)];
        const int64_t n = int64_t(cb.size());
        const float* v = votes.data() + offsets[size_t(b)];
        // Box convolution along the candidate sequence (zero padding).
        smooth.assign(size_t(n), 0.0f);
        const int64_t half = conv / 2;
        for (int64_t e = 0; e < n; ++e)
          for (int64_t o = std::max<int64_t>(0, e - half); o <= std::min(n - 1, e + half); ++o)
            smooth[size_t(e)] += v[o];
        top_k_host(smooth.data(), n, keep, top);
        std::vector<int32_t>& cache = kept[size_t(b)];
        cache.clear();
        for (int32_t e : top) cache.push_back(cb[size_t(e)]);
        sort_unique(cache);
      }
    }
    std::vector<int32_t> keys;
    for (int64_t t = 0; t < s.steps; ++t) {
      const int64_t P = step_position(s, t);
      for (int b = 0; b < s.batch; ++b) {
        keys = kept[size_t(b)];
        append_range(keys, N, P + 1);  // the question (first step) and the tokens since
        for (int kh = 0; kh < s.kv_heads; ++kh) lists->push(t, keys);
      }
    }
    out.stats["chunks"] = double(chunks) / double(s.batch);
    out.sources.push_back({lists, 0, {}, {}});
    return out;
  }
};

}  // namespace

std::unique_ptr<Variant> make_infiniretri(const ParamSet& p) { return std::make_unique<InfiniRetri>(p); }

}  // namespace ab
