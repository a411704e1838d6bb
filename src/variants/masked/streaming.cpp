// StreamingLLM: attention sinks plus a sliding window of recent tokens.
// "Efficient Streaming Language Models with Attention Sinks", Xiao et al., ICLR 2024,
// arXiv 2309.17453 (mit-han-lab/streaming-llm kv_cache.py). docs/variants.md §16b.
//
// Prefill: dense causal SDPA under the mask "sinks or the last `window` positions". Decode:
// the cache holds the `sinks` first tokens and the `window` most recent ones; the step is
// dense SDPA over exactly those keys — the same mask with q_len = 1 (bottom-right aligned), so
// one code path serves both modes. The mask is the structured causal + window + sinks form
// that the CPU tiles skip by (empty tiles never computed) and the CUDA kernels understand.
// Positions are not re-indexed inside the cache (StreamingLLM's pos_shift concerns RoPE, which
// a Q/K-level harness does not apply).
#include <algorithm>
#include <memory>

#include "core/errors.hpp"
#include "core/mask_library.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

class Streaming final : public DenseSdpaVariant {
 public:
  explicit Streaming(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "streaming";
    info_.fidelity = {Fidelity::faithful, "sinks + window cache; RoPE position shift is outside a Q/K-level op"};
    info_.family = "masked";
    info_.paper = "Efficient Streaming Language Models with Attention Sinks, Xiao et al., "
                  "ICLR 2024, arXiv 2309.17453";
    info_.summary = "StreamingLLM: causal attention to `sinks` first tokens plus a window of "
                    "the `window` most recent positions (prefill mask, decode cache)";
    info_.params = {
        {"window", ParamType::integer, int64_t{2000},
         "recent positions each query sees, itself included (recent_size; 2000 in "
         "run_streaming_llama.py, 512 the class default); >= 1"},
        {"sinks", ParamType::integer, int64_t{4},
         "first tokens kept visible to every query (start_size); >= 0"},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const int64_t w = params_.integer("window");
    const int64_t s = params_.integer("sinks");
    if (w < 1) throw InputError("streaming.window = " + std::to_string(w) + ": must be >= 1");
    if (s < 0) throw InputError("streaming.sinks = " + std::to_string(s) + ": must be >= 0");
    AttnShape sh = shape_from_problem(p);
    if (!p.causal && p.mode == Mode::prefill)
      throw InputError("streaming: problem.causal = false: StreamingLLM is a causal LM's cache; "
                       "set problem.causal: true");
    sh.causal = true;  // a decode step of a causal model (q_len = 1: nothing changes)
    return sh;
  }

  Mask mask(const AttnShape& s) const override {
    (void)s;
    Mask m;
    m.causal = true;
    m.window = params_.integer("window");
    m.sinks = params_.integer("sinks");
    return m;
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c = DenseSdpaVariant::cost(s, plan);
    // Kept (query, key) pairs over the causal pairs dense attention would use.
    const double dense_pairs = s.allowed_pairs();
    c.density = dense_pairs > 0 ? allowed_pairs(mask(s), s) / dense_pairs : 1.0;
    // K/V bytes: only the keys some query sees are read (in decode: the sinks and the window
    // of the cache, not the evicted middle).
    const double e = dtype_bytes(s.dtype);
    const double kv_row = double(s.batch) * s.kv_heads * (s.head_dim + s.v_dim) * e;
    if (s.steps > 1) {  // every step reads its own sinks + window (dense_bytes_min counts all)
      c.bytes_min -= kv_row * (dense_pairs - allowed_pairs(mask(s), s));
      return c;
    }
    const int64_t off = s.q_offset(), w = params_.integer("window");
    const int64_t sinks = std::min(params_.integer("sinks"), s.kv_len);
    const int64_t recent0 = std::max<int64_t>(sinks, off - w + 1);
    const double seen = double(sinks + std::max<int64_t>(0, s.kv_len - recent0));
    c.bytes_min -= kv_row * double(s.kv_len - seen);
    return c;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_streaming(const ParamSet& p) { return std::make_unique<Streaming>(p); }

}  // namespace ab
