// SpAtten: cascade token and head pruning by cumulative attention importance, with optional
// progressive (MSB-first) quantisation.
// "SpAtten: Efficient Sparse Attention Architecture with Cascade Token and Head Pruning", Wang,
// Zhang, Han, HPCA 2021, arXiv 2012.09852; LLM port mit-han-lab/spatten
// spatten_llm/kv_cache_token_pruning.py. docs/variants.md §15.
//
// Per (batch, kv head), in step order (the LLM port's cache policy):
//   1. The step's token joins the kept set C; the step attends to C.
//   2. Cumulative token importance s[j] += Σ_{h in group} p_hj over the step's probabilities.
//   3. When |C| > start + important + recent, keep the first `start` and the last `recent`
//      tokens of C and the `important` middle tokens of highest s; the rest are evicted for good
//      (cascade: a pruned token never returns).
// Cascade head pruning (head_keep < 1): kv heads accumulate Σ|O| over their query heads'
// outputs; after each step only the ceil(head_keep·Hkv) most important of the heads still
// alive stay; a pruned head's output is 0 (its list is empty) from the next step on. The
// paper prunes query heads; op 3's lists are per kv head, so pruning is per kv group here
// (the same thing for MHA).
// Progressive quantisation (msb_bits > 0), emulated: Q and K fake-quantised to msb_bits bits
// (symmetric, one scale per row) give the step's probabilities; when a group's most confident
// row has max_j p_j < confidence, the "LSBs are fetched" and the step is recomputed in full
// precision. The two precisions are two key sources (each row in exactly one), merged by LSE.
// The paper's first step has the prompt's importance from prefill; a decode case has no prompt
// queries, so step 0 attends to the whole cache and its probabilities seed the importance.
// Probabilities and (with head pruning) outputs are a second pass over the kept keys — a fused
// attention kernel returns neither — and are counted as estimation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "variants/decode_steps.hpp"
#include "variants/sparse_decode/sparse_decode_base.hpp"

namespace ab {
namespace {

class SpAtten final : public SparseDecodeVariant {
 public:
  explicit SpAtten(ParamSet p) : SparseDecodeVariant(std::move(p)) {
    info_.name = "spatten";
    info_.fidelity = {Fidelity::faithful, "the LLM port's token and head pruning cache policy"};
    info_.family = "token-selection-decode";
    info_.paper = "SpAtten: Efficient Sparse Attention Architecture with Cascade Token and Head "
                  "Pruning, Wang, Zhang, Han, HPCA 2021, arXiv 2012.09852";
    info_.summary = "cascade token pruning by cumulative attention importance (start + important + "
                    "recent kept, evicted for good), optional head pruning and MSB-first fake quantisation";
    info_.params = {
        {"start", ParamType::integer, int64_t{0}, "first tokens always kept (start_size; the port's run "
                                                  "script: 0, class default 4); >= 0"},
        {"important", ParamType::integer, int64_t{150}, "middle tokens kept by cumulative importance "
                                                        "(important_size; port: 150); >= 0"},
        {"recent", ParamType::integer, int64_t{150}, "most recent tokens always kept, the step's own "
                                                     "included (recent_size; port: 150); >= 1"},
        {"head_keep", ParamType::number, 1.0, "fraction of kv heads kept by accumulated output "
                                              "magnitude (cascade head pruning); in (0, 1], 1 = off"},
        {"msb_bits", ParamType::integer, int64_t{0}, "progressive quantisation: bits of the MSB pass "
                                                     "(fake-quantised Q and K); 0 = off, else 2..16"},
        {"confidence", ParamType::number, 0.1, "MSB pass kept when max_j p_j >= confidence for every "
                                               "row of the group, else recomputed at full precision; "
                                               "(0, 1] (the paper's value was not retrieved)"},
    };
  }

 protected:
  void check(const AttnShape&) const override {
    int_at_least("start", 0);
    int_at_least("important", 0);
    int_at_least("recent", 1, kOwnToken);
    const int64_t mb = params_.integer("msb_bits");
    const double hk = params_.number("head_keep"), cf = params_.number("confidence");
    if (!(hk > 0 && hk <= 1)) refuse("head_keep", std::to_string(hk), "must be in (0, 1]");
    if (mb != 0 && (mb < 2 || mb > 16)) refuse("msb_bits", std::to_string(mb), "must be 0 (off) or 2..16");
    if (!(cf > 0 && cf <= 1)) refuse("confidence", std::to_string(cf), "must be in (0, 1]");
  }

  double budget() const {
    return double(params_.integer("start") + params_.integer("important") + params_.integer("recent"));
  }
  double nominal_keys(const AttnShape& s, int64_t t) const override {
    const double T = double(step_position(s, t) + 1);
    return t == 0 ? T : std::min(T, budget() + 1);
  }
  double nominal_estimation_flops(const AttnShape& s) const override {
    double f = 0;
    for (int64_t t = 0; t < s.steps; ++t) f += 2.0 * s.batch * s.q_heads * s.head_dim * nominal_keys(s, t);
    return f;
  }

  Support supports_selection(const AttnShape& s, const Backend& b) const override {
    const bool heads = params_.number("head_keep") < 1.0;
    Support ok = probe_scores(s, b, DecodeQueryRows::group,
                              heads ? DecodeScoreEpilogue::probs_output_l1 : DecodeScoreEpilogue::probs, true);
    if (!ok.ok || params_.integer("msb_bits") == 0) return ok;
    FakeQuantizeArgs a;
    a.x.shape = a.out.shape = {s.batch, s.kv_heads, s.kv_len, s.head_dim};
    a.bits = int(params_.integer("msb_bits"));
    return b.supports_fake_quantize(a);
  }
  int max_sources() const override { return params_.integer("msb_bits") > 0 ? 2 : 1; }

  Selected select(const Inputs& in, Backend& be) override {
    const AttnShape& s = in.shape;
    const int64_t start = params_.integer("start"), important = params_.integer("important"),
                  recent = params_.integer("recent"), msb = params_.integer("msb_bits");
    const double confidence = params_.number("confidence");
    const int heads_kept = int(std::ceil(params_.number("head_keep") * s.kv_heads - 1e-9));
    const bool head_pruning = heads_kept < s.kv_heads;
    const int G = s.group(), d = s.head_dim, dv = s.v_dim;
    const int64_t nl = int64_t(s.batch) * s.kv_heads;
    auto full = std::make_shared<StepKeyLists>(s.steps, nl);
    std::shared_ptr<StepKeyLists> coarse;
    const QuantCopy* quant = nullptr;
    Selected out;
    if (msb > 0) {
      coarse = std::make_shared<StepKeyLists>(s.steps, nl);
      quant = &quantized(in, be, int(msb));
    }

    // The kept sets, importances and the eviction are small sequential control on the host;
    // each step's probabilities (and, with head pruning, the outputs' magnitudes) over the
    // kept keys are one op per pass over every live (batch, kv head).
    const int64_t N = step_position(s, 0);  // prompt tokens
    std::vector<std::vector<int32_t>> kept(static_cast<size_t>(nl));
    std::vector<std::vector<double>> imp(static_cast<size_t>(nl), std::vector<double>(size_t(s.kv_len), 0.0));
    for (int64_t r = 0; r < nl; ++r) append_range(kept[size_t(r)], 0, N);
    std::vector<double> head_imp(static_cast<size_t>(nl), 0.0);
    std::vector<char> alive(static_cast<size_t>(nl), 1), use_msb(static_cast<size_t>(nl), 0);
    std::vector<int32_t> empty, order, offsets, all;
    std::vector<DecodeScoreItem> items, refetch_items;
    std::vector<int64_t> item_of(static_cast<size_t>(nl), -1);
    DecodeScoresArgs a;
    a.shape = s;
    a.v = in.v;
    a.scale = in.effective_scale();
    a.rows = DecodeQueryRows::group;
    a.epilogue = head_pruning ? DecodeScoreEpilogue::probs_output_l1 : DecodeScoreEpilogue::probs;
    int64_t refetch = 0, checks = 0;
    for (int64_t t = 0; t < s.steps; ++t) {
      const int64_t P = step_position(s, t);
      items.clear();
      offsets.assign(1, 0);
      all.clear();
      int64_t total = 0;
      for (int64_t r = 0; r < nl; ++r) {
        auto& C = kept[size_t(r)];
        C.push_back(int32_t(P));
        item_of[size_t(r)] = -1;
        if (!alive[size_t(r)]) continue;
        DecodeScoreItem it;
        it.b = int32_t(r / s.kv_heads);
        it.kv_head = int32_t(r % s.kv_heads);
        it.q_row = t;
        it.k0 = int64_t(all.size());
        it.n = int64_t(C.size());
        it.out = total;
        total += a.item_size(it);
        item_of[size_t(r)] = int64_t(items.size());
        items.push_back(it);
        all.insert(all.end(), C.begin(), C.end());
        offsets.push_back(int32_t(all.size()));
      }
      std::vector<float> probs, probs_full;
      if (!items.empty()) {
        a.key_lists = be.upload_indices(offsets, all);
        // The step's probabilities over C: MSB pass first when enabled; a group whose most
        // confident row has max_j p_j < confidence is recomputed at full precision.
        refetch_items.clear();
        if (msb > 0) {
          a.q = quant->q;
          a.k = quant->k;
          probs = scores_to_host(be, a, items);
          for (int64_t r = 0; r < nl; ++r) {
            if (item_of[size_t(r)] < 0) continue;
            const DecodeScoreItem& it = items[size_t(item_of[size_t(r)])];
            const float* p = probs.data() + it.out;
            bool ok = true;
            for (int g = 0; g < G; ++g) ok &= *std::max_element(p + g * it.n, p + (g + 1) * it.n) >= confidence;
            use_msb[size_t(r)] = ok;
            out.estimation_flops += 2.0 * G * d * double(it.n);
            ++checks;
            refetch += ok ? 0 : 1;
            if (!ok) refetch_items.push_back(it);
          }
        } else {
          refetch_items = items;
        }
        if (!refetch_items.empty()) {
          a.q = in.q;
          a.k = in.k;
          probs_full = scores_to_host(be, a, refetch_items);  // same offsets as `items`
        }
      }
      for (int64_t r = 0; r < nl; ++r) {
        auto& C = kept[size_t(r)];
        if (item_of[size_t(r)] < 0) {  // a pruned head attends to nothing
          full->push(t, empty);
          if (coarse) coarse->push(t, empty);
          continue;
        }
        const DecodeScoreItem& it = items[size_t(item_of[size_t(r)])];
        const int64_t n = it.n;
        const bool m = msb > 0 && use_msb[size_t(r)];
        const float* p = (m ? probs : probs_full).data() + it.out;
        if (!m) out.estimation_flops += 2.0 * G * d * double(n);
        out.estimation_bytes += double(n) * d * dtype_bytes(s.dtype);
        full->push(t, m ? empty : C);
        if (coarse) coarse->push(t, m ? C : empty);
        auto& sc = imp[size_t(r)];
        for (int g = 0; g < G; ++g)
          for (int64_t e = 0; e < n; ++e) sc[size_t(C[size_t(e)])] += p[g * n + e];
        if (head_pruning) {  // Σ|O_h| of the group's outputs
          head_imp[size_t(r)] += double(p[int64_t(G) * n]);
          out.estimation_flops += 2.0 * G * dv * double(n);
        }
        // Evict down to start + important + recent (cascade: for good).
        if (n > start + important + recent) {
          std::vector<int32_t> next(C.begin(), C.begin() + start);
          order.assign(C.begin() + start, C.end() - recent);
          std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t c) { return sc[size_t(x)] > sc[size_t(c)]; });
          order.resize(size_t(important));
          next.insert(next.end(), order.begin(), order.end());
          next.insert(next.end(), C.end() - recent, C.end());
          sort_unique(next);
          C = std::move(next);
        }
      }
      if (head_pruning)  // after the step: only the most important live heads stay
        for (int b = 0; b < s.batch; ++b) {
          std::vector<int> live;
          for (int kh = 0; kh < s.kv_heads; ++kh)
            if (alive[size_t(b) * s.kv_heads + kh]) live.push_back(kh);
          std::stable_sort(live.begin(), live.end(), [&](int x, int c) {
            return head_imp[size_t(b) * s.kv_heads + x] > head_imp[size_t(b) * s.kv_heads + c];
          });
          for (size_t e = size_t(heads_kept); e < live.size(); ++e) alive[size_t(b) * s.kv_heads + live[e]] = 0;
        }
    }
    if (msb > 0) out.stats["lsb_refetch_rate"] = checks ? double(refetch) / double(checks) : 0.0;
    if (head_pruning) out.stats["kv_heads_kept"] = heads_kept;
    out.sources.push_back({full, 0, {}, {}});
    if (coarse) out.sources.push_back({coarse, int(msb), quant->q, quant->k});
    return out;
  }

 private:
  // Fake-quantised copies of Q and K on the backend, made once per input set (the MSB copy of
  // a key is written with the key; the old code's plan paid no estimation FLOPs for it
  // either) and kept while plans of those inputs may run: the last few input sets (rotation
  // copies), so that a plan never outlives its operands.
  struct QuantCopy {
    InputsKey inputs;
    int bits = 0;
    TensorRef q, k;
  };
  const QuantCopy& quantized(const Inputs& in, Backend& be, int bits) {
    const InputsKey key = InputsKey::of(in, be);
    for (const QuantCopy& c : quant_)
      if (c.inputs == key && c.bits == bits) return c;
    if (quant_.size() >= 16) {
      be.free(quant_.front().q);
      be.free(quant_.front().k);
      quant_.erase(quant_.begin());
    }
    QuantCopy c;
    c.inputs = key;
    c.bits = bits;
    for (auto [x, o] : {std::pair{&in.q, &c.q}, std::pair{&in.k, &c.k}}) {
      *o = be.alloc(x->shape, in.shape.dtype);
      FakeQuantizeArgs f;
      f.x = *x;
      f.out = *o;
      f.bits = bits;
      be.fake_quantize(f);
    }
    quant_.push_back(c);
    return quant_.back();
  }
  std::vector<QuantCopy> quant_;
};

}  // namespace

std::unique_ptr<Variant> make_spatten(const ParamSet& p) { return std::make_unique<SpAtten>(p); }

}  // namespace ab
