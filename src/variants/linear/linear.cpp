// Kernelised linear attention with a feature map, normalised by φ(q)·Σφ(k).
// "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
// Katharopoulos et al., ICML 2020, arXiv 2006.16236.
// docs/variants.md §26 S4 (the substrate shared with §2-§4).
//
// o_i = φ(q_i)·Σ_j φ(k_j)ᵀ v_j / (φ(q_i)·Σ_j φ(k_j) + eps) over all keys (non-causal) or the
// prefix j <= i (causal: the prefix sums are the carried d×dv state, computed by blocks of
// 64 as in the chunked form of op 4). φ = elu+1 as in the paper, or relu.
#include <memory>

#include "core/errors.hpp"
#include "variants/linear_attention_base.hpp"

namespace ab {
namespace {

class Linear final : public LinearAttentionVariant {
 public:
  explicit Linear(ParamSet p) : LinearAttentionVariant(std::move(p)) {
    info_.name = "linear";
    info_.fidelity = {Fidelity::faithful, "the paper's feature-map linear attention (elu+1 or relu)"};
    info_.family = "linear";
    info_.paper = "Transformers are RNNs: Fast Autoregressive Transformers with Linear "
                  "Attention, Katharopoulos et al., ICML 2020, arXiv 2006.16236";
    info_.summary = "kernelised linear attention φ(q)·Σφ(k)ᵀv / φ(q)·Σφ(k), causal by prefix "
                    "sums or non-causal";
    info_.params = {
        {"feature_map", ParamType::string, std::string("elu_plus_one"),
         "φ: elu_plus_one (the paper's elu(x)+1) or relu", {"elu_plus_one", "relu"}},
        {"eps", ParamType::number, 1e-6, "added to the denominator; > 0"},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const double eps = params_.number("eps");
    if (!(eps > 0)) throw InputError("linear.eps = " + std::to_string(eps) + ": must be > 0");
    return shape_from_problem(p);
  }

  LinearAttnArgs options(const AttnShape& s, std::vector<float>& slopes) const override {
    (void)s;
    (void)slopes;
    LinearAttnArgs a;
    a.feature_map = feature_map_of(params_.string("feature_map"));
    a.normalizer = LinearNormalizer::denominator;
    a.eps = float(params_.number("eps"));
    return a;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_linear(const ParamSet& p) { return std::make_unique<Linear>(p); }

}  // namespace ab
