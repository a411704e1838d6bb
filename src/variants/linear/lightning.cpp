// Lightning Attention-2 (chunked) and -1 (tiled quadratic): causal linear attention with a
// per-head exponential decay, o_i = Σ_{j<=i} λ_h^(i-j) (q_i·k_j) v_j, no softmax, no 1/√d, no
// denominator.
// "Lightning Attention-2: A Free Lunch for Handling Unlimited Sequence Lengths in Large
// Language Models", Qin et al., arXiv 2401.04658 (Algorithm 1); Lightning-1: "TransNormerLLM",
// Qin et al., arXiv 2307.14995. OpenNLPLab/lightning-attention lightning_attn2.py
// (BLOCK = 64), utils.py _build_slope_tensor. docs/variants.md §3.
//
// chunked: per block of 64, the intra-block masked left product ((QKᵀ)⊙D)V plus the
// inter-block right product against the carried d×dv state: linear in N, the "constant speed
// per token" of the paper. quadratic: Lightning-1's IO-aware tiled left product over all key
// blocks, O(N²) — the same output, so both algorithms are timed on the same problem.
// Decode: kv = λ·kv + kᵀv, o = q·kv (linear_attention_base.hpp says what is timed).
// Slopes are ALiBi's, λ_h = exp(-s_h), times `slope_scale` (TNL scales layer l of L by
// 1 - l/(L-1) + 1e-5). TNL's SiLU on q, k and its norm after attention are options; TNL
// norms the heads' outputs concatenated (after "b h n d -> b n (h d)"), norm_scope heads.
#include <memory>

#include "core/errors.hpp"
#include "variants/linear_attention_base.hpp"

namespace ab {
namespace {

class Lightning final : public LinearAttentionVariant {
 public:
  explicit Lightning(ParamSet p) : LinearAttentionVariant(std::move(p)) {
    info_.name = "lightning";
    info_.fidelity = {Fidelity::faithful, "chunked (Lightning-2) and tiled (Lightning-1) decayed linear attention as in the reference code"};
    info_.family = "linear";
    info_.paper = "Lightning Attention-2, Qin et al., arXiv 2401.04658 (and Lightning-1 in "
                  "TransNormerLLM, arXiv 2307.14995)";
    info_.summary = "causal linear attention with ALiBi-slope decay: block-64 intra masked "
                    "product + inter d×d state (chunked), or Lightning-1's tiled O(N²) form";
    info_.params = {
        {"algorithm", ParamType::string, std::string("chunked"),
         "chunked (Lightning-2, linear in N) or quadratic (Lightning-1 tiled left product)",
         {"chunked", "quadratic"}},
        {"block", ParamType::integer, int64_t{64}, "block size BLOCK; 1..1024"},
        {"decay", ParamType::string, std::string("alibi"),
         "per-head decay: alibi (λ_h = exp(-s_h), ALiBi slopes) or none (the no-decay kernel)",
         {"alibi", "none"}},
        {"slope_scale", ParamType::number, 1.0,
         "multiplies the slopes (TNL layer l of L: 1 - l/(L-1) + 1e-5); > 0"},
        {"feature_map", ParamType::string, std::string("identity"),
         "applied to q and k: identity (the op) or silu (TNL's pre-activation)",
         {"identity", "silu"}},
        {"norm", ParamType::string, std::string("none"),
         "output norm: none (the op), layer (TNL's LayerNorm, no affine) or rms",
         {"none", "layer", "rms"}},
        {"norm_scope", ParamType::string, std::string("heads"),
         "what the norm spans: heads (all heads' outputs of a position together, as TNL) or head",
         {"heads", "head"}},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const int64_t block = params_.integer("block");
    if (block < 1 || block > 1024)
      throw InputError("lightning.block = " + std::to_string(block) + ": must be in [1, 1024]");
    const double sc = params_.number("slope_scale");
    if (!(sc > 0))
      throw InputError("lightning.slope_scale = " + std::to_string(sc) + ": must be > 0");
    if (!p.causal)
      throw InputError("lightning: problem.causal = false: Lightning attention is causal (its "
                       "decay is defined for j <= i); set problem.causal: true");
    if (p.mode == Mode::decode && params_.string("algorithm") == "quadratic")
      throw InputError("lightning.algorithm = quadratic: decode needs the chunked algorithm "
                       "(the quadratic form keeps no state)");
    return shape_from_problem(p);
  }

  LinearAttnArgs options(const AttnShape& s, std::vector<float>& slopes) const override {
    LinearAttnArgs a;
    a.feature_map = params_.string("feature_map") == "silu" ? FeatureMap::silu : FeatureMap::identity;
    a.normalizer = LinearNormalizer::none;
    a.norm = norm_of(params_.string("norm"));
    a.norm_scope = params_.string("norm_scope") == "head" ? NormScope::head : NormScope::heads;
    a.algorithm = params_.string("algorithm") == "quadratic" ? LinearAlgorithm::quadratic
                                                              : LinearAlgorithm::chunked;
    a.block = int(params_.integer("block"));
    if (params_.string("decay") == "alibi") {
      slopes = alibi_slopes(s.q_heads);
      for (float& x : slopes) x *= float(params_.number("slope_scale"));
      a.slopes = slopes.data();
    }
    return a;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_lightning(const ParamSet& p) { return std::make_unique<Lightning>(p); }

}  // namespace ab
