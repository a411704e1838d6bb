#pragma once
// Shared body of the linear-attention variants (linear, transnormer, lightning, mala): op 4
// (core/ops_linear.hpp) with the options each variant fixes or exposes.
//
// Prefill: one call of op 4 over every row. Decode (q_len rows, usually 1, against kv_len
// keys): a decoder carries the d×dv state, it does not rebuild it from the KV cache. So plan()
// builds the state of the prefix keys [0, kv_len - q_len) once (untimed: has_plan_phase() is
// false, as a running decoder already holds it), and run() — what latency times — is the
// per-token step: read the state, add the new token(s), write the updated state to a second
// buffer (state_out; never in place, so repeated timed runs see the same input) and the output.
// Multi-step decode (problem.steps = S, docs/decode.md): the prefix is the cache before the
// first step, and run() applies the recurrence S times, one token per op call, the state
// passed from step to step through two scratch buffers.
//
// Recall is n/a: linear attention does not select keys, and its weights are not a softmax
// distribution (docs/variants.md §0); the accuracy metric checks each against its own exact
// formula, and the output error against dense softmax is the recall metric's to report.
#include <memory>
#include <string>
#include <vector>

#include "core/ops_linear.hpp"
#include "core/variant.hpp"

namespace ab {

class LinearAttentionVariant : public Variant {
 public:
  explicit LinearAttentionVariant(ParamSet params) : params_(std::move(params)) {}

  // The op's options for a shape (feature map, normaliser, norm, algorithm, block); a decay
  // fills `slopes` (Hq entries) and points a.slopes at it.
  virtual LinearAttnArgs options(const AttnShape& s, std::vector<float>& slopes) const = 0;

  Support supports(const AttnShape& s, const Backend& b) const override;
  Cost cost(const AttnShape& s, const Plan* plan) const override;
  Plan plan(const Inputs& in, Backend& b) override;
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override;
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override;

  // Executed FLOPs of op 4 with these options (exposed for tests of the formula).
  static double linear_flops(const LinearAttnArgs& a, bool state_in);

 protected:
  // options() plus the tensors; the decay slopes live in slopes_.
  LinearAttnArgs args(const Inputs& in, Outputs* out) const;
  // Parameter helpers: string choices to enums.
  static FeatureMap feature_map_of(const std::string& name);
  static OutputNorm norm_of(const std::string& name);
  ParamSet params_;
  mutable std::vector<float> slopes_;
};

}  // namespace ab
