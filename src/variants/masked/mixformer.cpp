// MixFormer's asymmetric mixed attention.
// "MixFormer: End-to-End Tracking with Iterative Mixed Attention", Cui et al., CVPR 2022,
// arXiv 2203.11082 (MCG-NJU/MixFormer mixformer_vit/mixformer.py Attention.forward).
// VARIANTS.md §23.
//
// Tokens are [templates; search]. Template queries attend to template keys only; search
// queries attend to every key. Non-causal (vision). Dense softmax SDPA under that two-block
// mask: the tiled kernel skips the template-row × search-key tiles, so the cost is
// 4·(N_t² + N_s·(N_t + N_s))·d per head against 4·(N_t + N_s)²·d (VARIANTS.md §23 (e)).
#include <memory>

#include "core/errors.hpp"
#include "core/mask_library.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

class MixFormer final : public DenseSdpaVariant {
 public:
  explicit MixFormer(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "mixformer";
    info_.family = "masked";
    info_.paper = "MixFormer: End-to-End Tracking with Iterative Mixed Attention, Cui et al., "
                  "CVPR 2022, arXiv 2203.11082";
    info_.summary = "asymmetric mixed attention: template tokens see templates only, search "
                    "tokens see all (non-causal)";
    info_.params = {
        {"templates", ParamType::integer, int64_t{128},
         "template tokens N_t at the start (MixViT: 2 templates x 64 patches = 128); >= 1"},
        {"search", ParamType::integer, int64_t{0},
         "search tokens N_s (MixViT: 324); 0 = N - templates; N_t + N_s must equal N"},
    };
    info_.modes = {Mode::prefill};
    info_.backends = {"cpu"};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const int64_t t = params_.integer("templates"), srch = params_.integer("search");
    if (t < 1) throw InputError("mixformer.templates = " + std::to_string(t) + ": must be >= 1");
    if (srch < 0) throw InputError("mixformer.search = " + std::to_string(srch) + ": must be >= 0");
    if (p.causal)
      throw InputError("mixformer: problem.causal = true: mixed attention is non-causal (vision "
                       "tokens); set problem.causal: false");
    if (t >= p.kv_len)
      throw InputError("mixformer.templates = " + std::to_string(t) + ": must be below N = " +
                       std::to_string(p.kv_len) + " (at least one search token)");
    if (srch > 0 && t + srch != p.kv_len)
      throw InputError("mixformer.search = " + std::to_string(srch) + ": templates + search = " +
                       std::to_string(t + srch) + " must equal N = " + std::to_string(p.kv_len));
    return shape_from_problem(p);
  }

  Mask mask(const AttnShape& s) const override {
    return to_mask(generate_mixformer(params_.integer("templates")), s.causal);
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c = DenseSdpaVariant::cost(s, plan);
    const double dense_pairs = s.allowed_pairs();
    c.density = dense_pairs > 0 ? allowed_pairs(mask(s), s) / dense_pairs : 1.0;
    return c;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_mixformer(const ParamSet& p) { return std::make_unique<MixFormer>(p); }

}  // namespace ab
