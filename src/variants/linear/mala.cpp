// MALA: magnitude-aware linear attention.
// "Rectifying Magnitude Neglect in Linear Attention", Fan et al., ICCV 2025, arXiv
// 2507.00698 (qhfan/MALA classfication_release/model.py AddLinearAttention). docs/variants.md §4.
//
// Normalised linear attention divides φ(q) by φ(q)·Σφ(k) and so forgets ‖φ(q)‖. MALA keeps it:
// with z_i = (s/N)·φ(q_i)·Σ_j φ(k_j),
//   o_i = (1 + 1/z_i)·(s/N)·φ(q_i)·Σ_j φ(k_j)ᵀ v_j - z_i·mean_j(v_j),
// weights a_ij = (1 + 1/z_i)(s/N) φ(q_i)·φ(k_j) - z_i/N that sum to 1 over j, spikier for
// larger queries. φ = elu+1, s = d^(-1/2). Non-causal as published. The causal form (prefix
// sums of φ(k), φ(k)ᵀv and v, with i+1 in place of N) is this harness's extension, not the
// paper's. The vision model's 2-D RoPE on the numerator, LePE and output gate are outside the
// attention op and left out.
#include <memory>

#include "core/errors.hpp"
#include "variants/linear_attention_base.hpp"

namespace ab {
namespace {

class Mala final : public LinearAttentionVariant {
 public:
  explicit Mala(ParamSet p) : LinearAttentionVariant(std::move(p)) {
    info_.name = "mala";
    info_.fidelity = {Fidelity::faithful, "the published non-causal formula; the causal form is this harness's extension"};
    info_.family = "linear";
    info_.paper = "Rectifying Magnitude Neglect in Linear Attention (MALA), Fan et al., "
                  "ICCV 2025, arXiv 2507.00698";
    info_.summary = "magnitude-aware linear attention: scale 1 + 1/z and offset z·mean(v) "
                    "instead of division (non-causal as published; causal form is our "
                    "extension)";
    info_.params = {
        {"scale", ParamType::number, 0.0, "s in z = (s/N)·φ(q)·Σφ(k); 0 = d^(-1/2); >= 0"},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const double sc = params_.number("scale");
    if (!(sc >= 0)) throw InputError("mala.scale = " + std::to_string(sc) + ": must be >= 0");
    return shape_from_problem(p);
  }

  LinearAttnArgs options(const AttnShape& s, std::vector<float>& slopes) const override {
    (void)s;
    (void)slopes;
    LinearAttnArgs a;
    a.feature_map = FeatureMap::elu_plus_one;
    a.normalizer = LinearNormalizer::mala;
    a.mala_scale = float(params_.number("scale"));
    return a;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_mala(const ParamSet& p) { return std::make_unique<Mala>(p); }

}  // namespace ab
