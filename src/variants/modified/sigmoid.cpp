// Sigmoid attention, with or without row normalisation, optional bias.
// "When Attention Sink Emerges in Language Models: An Empirical View", Gu et al., ICLR 2025,
// arXiv 2410.10781 (sail-sg/Attention-Sink lit_gpt/model_attn_sim.py,
// eager_scaled_dot_product_attention). docs/variants.md §16a.
//
// A = σ(QKᵀ·scale + b) ⊙ mask; with `normalize`, each row is divided by (Σ + 1e-8); the
// no_norm configurations skip that — the setting in which the paper finds no attention sink
// up to 1B parameters. A bias b = -log(N) is the usual choice to start rows near unit mass
// (Ramapuram et al., arXiv 2409.04431). Op 1 with the sigmoid score transform.
#include <memory>

#include "variants/transformed_sdpa.hpp"

namespace ab {
namespace {

class Sigmoid final : public TransformedSdpaVariant {
 public:
  explicit Sigmoid(ParamSet p) : TransformedSdpaVariant(std::move(p)) {
    info_.name = "sigmoid";
    info_.fidelity = {Fidelity::faithful, "sigmoid attention as in the reference code"};
    info_.family = "modified";
    info_.paper = "When Attention Sink Emerges in Language Models: An Empirical View, Gu et "
                  "al., ICLR 2025, arXiv 2410.10781";
    info_.summary = "sigmoid attention σ(q·k·scale + bias), rows unnormalised (no_norm) or "
                    "divided by their sum";
    info_.params = {
        {"normalize", ParamType::boolean, false,
         "divide each row by its sum + 1e-8 (attention_normalize); false = no_norm"},
        {"bias", ParamType::number, 0.0, "added to the scaled logits before σ (e.g. -log N)"},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }

  const VariantInfo& info() const override { return info_; }

  void set_transform(const AttnShape& s, SdpaArgs& a) const override {
    (void)s;
    a.transform = ScoreTransform::sigmoid;
    a.transform_bias = float(params_.number("bias"));
    a.transform_normalize = params_.boolean("normalize");
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_sigmoid(const ParamSet& p) { return std::make_unique<Sigmoid>(p); }

}  // namespace ab
