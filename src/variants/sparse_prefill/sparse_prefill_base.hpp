#pragma once
// Shared body of the selection-based prefill variants (VARIANTS.md §6–§11, §18, §22): each
// estimates in plan() which keys every query row attends to, exposes that as the plan's
// Selection (read by the recall and NIAH metrics), and runs op 2 (core/ops_sparse.hpp) over
// the selected keys in run(). The cost is split as issue 5 §5 asks: estimation FLOPs (plan),
// executed FLOPs (estimation + the op's computed pairs), the dense-equivalent FLOPs of the
// same shape, and the density reached (selected / allowed pairs, causal-aware).
#include <memory>
#include <string>
#include <vector>

#include "core/errors.hpp"
#include "core/selection_lists.hpp"
#include "core/variant.hpp"

namespace ab {

// The part of every sparse prefill plan the base reads; a variant's plan state derives from it.
struct SparsePlanBase {
  virtual ~SparsePlanBase() = default;
  double executed_pairs = 0;  // (query, key) pairs op 2 computes, every batch and head
  double extra_flops = 0;     // run-phase work besides op 2 (e.g. LSE merges)
};

// An online-softmax state in plan-owned host memory (the CPU backend's tensors are host
// memory; a device backend would allocate it with Backend::alloc instead).
struct HostSoftmaxState {
  std::vector<float> m, l, acc;
  Shape4 row_shape{0, 0, 0, 0}, acc_shape{0, 0, 0, 0};
  explicit HostSoftmaxState(const AttnShape& s);
  SoftmaxState view() const;
};

class SparsePrefillVariant : public Variant {
 public:
  explicit SparsePrefillVariant(ParamSet p) : params_(std::move(p)) {}
  const VariantInfo& info() const override { return info_; }
  Support supports(const AttnShape& s, const Backend& b) const override;
  bool has_plan_phase() const override { return true; }
  // With a plan: its estimation FLOPs, density and the op's computed pairs. Without one (a
  // static estimate before any input exists): static_estimate().
  Cost cost(const AttnShape& s, const Plan* plan) const override;
  // Float64 attention over exactly the keys plan.selection names for the row, straight from
  // the definition (softmax of scale·q·k_j over those keys): checks the sparse kernel; the
  // recall metric reports the error against dense attention separately.
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override;

 protected:
  struct StaticEstimate {
    double estimation_flops = 0;
    double density = 1.0;  // of the selected pairs among the allowed ones
  };
  virtual StaticEstimate static_estimate(const AttnShape& s) const = 0;

  // Op 2's arguments on the case's inputs (layout, lists, state and outputs left to the caller).
  static SparsePrefillArgs op_args(const Inputs& in);
  // Integer and number parameters with their range rules (InputError naming the field).
  int64_t int_param(const std::string& name, int64_t lo, int64_t hi = INT64_MAX) const;
  double number_param(const std::string& name, double lo, double hi, bool lo_open = false) const;
  // InputError "<variant>.<field> = <value>: <rule>".
  [[noreturn]] void refuse(const std::string& field, const std::string& value, const std::string& rule) const;
  // Refuses decode-mode and non-square-self-attention problems where the variant needs them.
  void require_prefill(const Problem& p) const;

  // Plan helpers: store the state, read it back.
  static void set_state(Plan& plan, std::shared_ptr<SparsePlanBase> st);
  template <class T>
  static const T& state_of(const Plan& plan) {
    const auto* base = static_cast<const SparsePlanBase*>(plan.state.get());
    const T* t = dynamic_cast<const T*>(base);
    if (!t) throw std::logic_error("sparse prefill: the plan was not made by this variant");
    return *t;
  }

  ParamSet params_;
  VariantInfo info_;
};

// Float64 softmax attention of row i over `keys` (each listed once), from the host inputs.
void f64_attention_row(const Inputs& in, int b, int h, int64_t i, const std::vector<int64_t>& keys,
                       double* o, double* lse);

}  // namespace ab
