// TransNormer's NormAttention: linear attention without the denominator, with a norm on the
// output instead ("The Devil in Linear Transformer", Qin et al., EMNLP 2022, arXiv 2210.10340;
// OpenNLPLab/fairseq-evo norm_linear_attention.py). docs/variants.md §2.
//
// o_i = Norm(φ(q_i)·Σ_j φ(k_j)ᵀ v_j), over all keys or the causal prefix; dropping 1/rowsum
// bounds the gradients and the norm bounds the activations. φ = plain ELU as in the LM presets
// (linear_act_fun="elu"; negative values are harmless without a denominator); the norm is
// RMSNorm ("simplermsnorm", no affine) or LayerNorm (the norm_ln presets), over the heads'
// outputs concatenated: the reference code rearranges "b h n d -> b n (h d)" and then norms
// over embed_dim (norm_scope heads, the default; `head` normalises each head on its own, as
// this tool did before, kept to compare the two). The causal form is
// computed by the chunked prefix-sum algorithm, equal to the masked product the code
// materialises.
#include <memory>

#include "variants/linear_attention_base.hpp"

namespace ab {
namespace {

class TransNormer final : public LinearAttentionVariant {
 public:
  explicit TransNormer(ParamSet p) : LinearAttentionVariant(std::move(p)) {
    info_.name = "transnormer";
    info_.fidelity = {Fidelity::faithful, "NormAttention as in the reference presets"};
    info_.family = "linear";
    info_.paper = "The Devil in Linear Transformer (TransNormer NormAttention), Qin et al., "
                  "EMNLP 2022, arXiv 2210.10340";
    info_.summary = "NormAttention: φ(q)·Σφ(k)ᵀv with no denominator, then RMSNorm or "
                    "LayerNorm of the heads' outputs concatenated";
    info_.params = {
        {"feature_map", ParamType::string, std::string("elu"),
         "φ: elu (LM presets), elu_plus_one, relu or identity",
         {"elu", "elu_plus_one", "relu", "identity"}},
        {"norm", ParamType::string, std::string("rms"),
         "output norm, no affine: rms (simplermsnorm) or layer",
         {"rms", "layer"}},
        {"norm_scope", ParamType::string, std::string("heads"),
         "what the norm spans: heads (all heads' outputs of a position together, as the paper's "
         "code) or head (each head alone)",
         {"heads", "head"}},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }

  LinearAttnArgs options(const AttnShape& s, std::vector<float>& slopes) const override {
    (void)s;
    (void)slopes;
    LinearAttnArgs a;
    a.feature_map = feature_map_of(params_.string("feature_map"));
    a.normalizer = LinearNormalizer::none;
    a.norm = norm_of(params_.string("norm"));
    a.norm_scope = params_.string("norm_scope") == "head" ? NormScope::head : NormScope::heads;
    return a;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_transnormer(const ParamSet& p) { return std::make_unique<TransNormer>(p); }

}  // namespace ab
