// DiagAttention: attention restricted to non-overlapping diagonal blocks.
// "The Devil in Linear Transformer", Qin et al., EMNLP 2022, arXiv 2210.10340 (TransNormer;
// OpenNLPLab/fairseq-evo norm_local_attention.py). docs/variants.md §2.
//
// Logits (q/√d)·kᵀ inside each block of `block` positions, causal within the block when the
// problem is causal; weights softmax (TransNormer T2) or ReLU (T1, "ReLA": unnormalised).
// The block-diagonal mask is a predicate with an exact block classifier, so the tiled kernels
// compute only the tiles on the diagonal. The output norm and W_O of the layer are not part of
// the attention op and are left out.
#include <memory>

#include "core/errors.hpp"
#include "core/mask_library.hpp"
#include "variants/transformed_sdpa.hpp"

namespace ab {
namespace {

class Diag final : public TransformedSdpaVariant {
 public:
  explicit Diag(ParamSet p) : TransformedSdpaVariant(std::move(p)) {
    info_.name = "diag";
    info_.fidelity = {Fidelity::faithful, "block-diagonal softmax/ReLU attention as in the reference code"};
    info_.family = "masked";
    info_.paper = "The Devil in Linear Transformer (TransNormer DiagAttention), Qin et al., "
                  "EMNLP 2022, arXiv 2210.10340";
    info_.summary = "block-diagonal local attention: each query sees the keys of its own block "
                    "of `block` positions; softmax or ReLU weights";
    info_.params = {
        {"block", ParamType::integer, int64_t{64},
         "block length w (64 in the LM presets, 32 the module default); >= 1"},
        {"weights", ParamType::string, std::string("softmax"),
         "softmax (TransNormer T2) or relu (T1, unnormalised ReLU of the logits)",
         {"softmax", "relu"}},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const int64_t w = params_.integer("block");
    if (w < 1) throw InputError("diag.block = " + std::to_string(w) + ": must be >= 1");
    return shape_from_problem(p);
  }

  Mask mask(const AttnShape& s) const override {
    return to_mask(generate_block_diagonal(params_.integer("block")), s.causal);
  }

  void set_transform(const AttnShape& s, SdpaArgs& a) const override {
    (void)s;
    if (params_.string("weights") == "relu") a.transform = ScoreTransform::relu;
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c = TransformedSdpaVariant::cost(s, plan);
    const double dense_pairs = s.allowed_pairs();
    c.density = dense_pairs > 0 ? allowed_pairs(mask(s), s) / dense_pairs : 1.0;
    return c;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_diag(const ParamSet& p) { return std::make_unique<Diag>(p); }

}  // namespace ab
