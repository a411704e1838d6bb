#pragma once
// Shared body of the variants that are dense SDPA (op 1) with a mask: they differ only in
// their head layout and mask. The selection they expose is every key the mask allows.
#include "core/variant.hpp"

namespace ab {

class DenseSdpaVariant : public Variant {
 public:
  explicit DenseSdpaVariant(ParamSet params) : params_(std::move(params)) {}
  // The mask this variant applies for a shape (causal from the problem by default).
  virtual Mask mask(const AttnShape& s) const;

  Support supports(const AttnShape& s, const Backend& b) const override;
  Cost cost(const AttnShape& s, const Plan* plan) const override;
  Plan plan(const Inputs& in, Backend& b) override;
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override;
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override;

 protected:
  SdpaArgs args(const Inputs& in, Outputs* out) const;
  // Op 1 with `a` (built for the whole problem, outputs set). Multi-step decode: one call per
  // step, as a decoder runs, each reading the cache afresh (docs/decode.md).
  static void run_sdpa(const Inputs& in, Outputs& out, Backend& b, SdpaArgs a);
  // Pairs per (batch, query head) that run_sdpa has the backend compute with `a` (built for the
  // whole problem `s`): one walk per step in multi-step decode; -1 when the backend does not
  // say (Plan::run_pairs).
  static double run_pairs(const Backend& b, SdpaArgs a, const AttnShape& s);
  ParamSet params_;
};

// FLOPs of dense attention over the pairs a mask allows: 2·pairs·(d + dv) per query head.
double dense_flops(const AttnShape& s, double pairs_per_head);
// Pairs (per batch and head) in the non-empty 64 × 64 blocks of mask m: the static estimate of
// the pairs a tiled kernel visits, before a backend's plan gives the real count.
double tiled_pairs(const Mask& m, const AttnShape& s);
// Each input read once and each output (O and LSE) written once, at the case's dtype.
double dense_bytes_min(const AttnShape& s);

}  // namespace ab
