#pragma once
// Shared body of the variants that are op 1 with a score transform other than softmax
// (sigmoid attention, ReLU DiagAttention, LAMA's tanh scores): dense SDPA with a mask whose
// weights are not a softmax distribution, so recall against dense softmax is undefined
// (docs/variants.md §0) and the plan exposes no selection. With the softmax transform the class
// behaves exactly as DenseSdpaVariant.
#include <string>

#include "variants/decode_steps.hpp"
#include "variants/dense_sdpa_base.hpp"
#include "reference/attention_reference.hpp"

namespace ab {

class TransformedSdpaVariant : public DenseSdpaVariant {
 public:
  using DenseSdpaVariant::DenseSdpaVariant;

  // The transform and its options for a shape (softmax by default).
  virtual void set_transform(const AttnShape& s, SdpaArgs& a) const { (void)s; (void)a; }
  // Why recall does not apply, when the transform is not softmax.
  virtual std::string selection_na_reason() const {
    return "the weights are not a softmax distribution over keys: recall against dense "
           "softmax attention is undefined (docs/variants.md §0); output error is reported instead";
  }

  SdpaArgs transformed_args(const Inputs& in, Outputs* out) const {
    SdpaArgs a = args(in, out);
    set_transform(in.shape, a);
    return a;
  }
  bool is_softmax(const AttnShape& s) const {
    SdpaArgs a;
    set_transform(s, a);
    return a.transform == ScoreTransform::softmax;
  }

  Support supports(const AttnShape& s, const Backend& b) const override {
    Inputs probe;
    probe.shape = s;
    SdpaArgs a = transformed_args(probe, nullptr);
    if (s.steps > 1) {
      a.shape = step_shape(s);
      a.mask = step_mask(a.mask, s, 0);
    }
    return b.supports_sdpa(a);
  }

  Plan plan(const Inputs& in, Backend& b) override {
    if (is_softmax(in.shape)) return DenseSdpaVariant::plan(in, b);
    Plan p;
    p.selection_na_reason = selection_na_reason();
    // The backend walks the transformed kernel's tiles (cost() reads them from the plan).
    p.run_pairs = run_pairs(b, transformed_args(in, nullptr), in.shape);
    return p;
  }

  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    if (is_softmax(in.shape)) return DenseSdpaVariant::run(in, plan, out, b);
    run_sdpa(in, out, b, transformed_args(in, &out));
  }

  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override {
    (void)plan;
    ab::sdpa_transformed_reference_row(transformed_args(in, nullptr), in.host->q, in.host->k,
                                        in.host->v, b, h, i, o, lse);
  }
};

}  // namespace ab
