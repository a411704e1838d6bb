#pragma once
// Shared body of the selection-based prefill variants (docs/variants.md §6–§11, §18, §22): each
// estimates in plan() which keys every query row attends to, exposes that as the plan's
// Selection (read by the recall and NIAH metrics), and runs op 2 (core/ops_sparse.hpp) over
// the selected keys in run(). The cost is split in two: estimation FLOPs (plan),
// executed FLOPs (estimation + the op's computed pairs), the dense-equivalent FLOPs of the
// same shape, and the density reached (selected / allowed pairs, causal-aware).
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"
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

// A plan whose run phase is op 2 over one set of lists, also its selection (the base's run()).
// `lists` are the host copies (selection, density, executed pairs); `device`, when present, the
// same lists where the backend wrote them in device memory, which op 2 then reads (kept until
// the backend's release_all). On a host-memory backend op 2 reads the host copies.
template <class Lists>
struct ListsPlan : SparsePlanBase {
  std::shared_ptr<const Lists> lists;
  CsrOut device;
};
using IndexListsPlan = ListsPlan<HostIndexLists>;
using BlockListsPlan = ListsPlan<HostBlockLists>;

// An online-softmax state in plan-owned host memory, for the variants whose plans are not yet
// on backend memory (hyperattention); anchor keeps its state in Backend::alloc tensors.
struct HostSoftmaxState {
  std::vector<float> m, l, acc;
  Shape4 row_shape{0, 0, 0, 0}, acc_shape{0, 0, 0, 0};
  explicit HostSoftmaxState(const AttnShape& s);
  SoftmaxState view() const;
};

class SparsePrefillVariant : public Variant {
 public:
  explicit SparsePrefillVariant(ParamSet p) : params_(std::move(p)) {
    info_.modes = {Mode::prefill};
  }
  const VariantInfo& info() const override { return info_; }
  Support supports(const AttnShape& s, const Backend& b) const override;
  bool has_plan_phase() const override { return true; }
  // With a plan: its estimation FLOPs, density and the op's computed pairs. Without one (a
  // static estimate before any input exists): static_estimate().
  Cost cost(const AttnShape& s, const Plan* plan) const override;
  // Op 2 over a ListsPlan's lists; a variant with another run phase overrides it.
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) override;
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
  // The first refusal among `s` (the base's supports() and the backend's answers for the ops
  // a plan calls, probed with their default arguments), else yes.
  static Support first_refusal(std::initializer_list<Support> s) {
    for (const Support& x : s)
      if (!x.ok) return x;
    return Support::yes();
  }

  // Op 2's arguments over `lists` on the case's inputs (state and outputs left to the caller);
  // with `device` present, op 2 reads those buffers (the same lists in backend memory).
  static SparsePrefillArgs op_args(const Inputs& in, const HostIndexLists& lists, const CsrOut& device = {});
  static SparsePrefillArgs op_args(const Inputs& in, const HostBlockLists& lists, const CsrOut& device = {});
  // run(): op 2 over the plan's lists into the case's outputs, continuing `resume` if given.
  static void run_op(const Inputs& in, const HostIndexLists& lists, Outputs& out, Backend& be,
                     const SoftmaxState* resume = nullptr, const CsrOut& device = {});
  static void run_op(const Inputs& in, const HostBlockLists& lists, Outputs& out, Backend& be,
                     const CsrOut& device = {});

  // Lists written by the backend's ops (select, scores, int4_block_scan): `lists` CSR lists in
  // buffers of `capacity` entries.
  static CsrOut alloc_lists(Backend& be, int64_t lists, int64_t capacity);
  // Host copies of them (the selection's bookkeeping): offsets (lists + 1) and the entries.
  static void download_lists(Backend& be, const CsrOut& c, int64_t lists, std::vector<int32_t>& offsets,
                             std::vector<int32_t>& entries);
  // Host lists copied into backend index buffers (op 2's input where the backend reads them),
  // and the buffers of a CsrOut freed (either may be absent).
  static CsrOut upload_lists(Backend& be, const std::vector<int32_t>& offsets, const std::vector<int32_t>& entries);
  static void free_lists(Backend& be, const CsrOut& c);
  // What a plan keeps of buffers it downloaded: on a device, the buffers for op 2 in run();
  // in host memory they are freed (op 2 reads the host copies).
  static CsrOut keep_on_device(Backend& be, const CsrOut& c);
  // Integer and number parameters with their range rules (InputError naming the field).
  int64_t int_param(const std::string& name, int64_t lo, int64_t hi = INT64_MAX) const;
  double number_param(const std::string& name, double lo, double hi, bool lo_open = false) const;
  // InputError "<variant>.<field> = <value>: <rule>".
  [[noreturn]] void refuse(const std::string& field, const std::string& value, const std::string& rule) const;
  // Refuses decode-mode and non-square-self-attention problems where the variant needs them.
  void require_prefill(const Problem& p) const;
  // shape_from_problem after require_prefill.
  AttnShape prefill_shape(const Problem& p) const;
  // "<variant>: problem.causal = false: <method> is a causal prefill method (docs/variants.md <section>)".
  void require_causal(const AttnShape& s, const std::string& method, const std::string& section) const;
  // "<variant>: problem q_len = .. != kv_len = ..: <why>".
  void require_self_attention(const AttnShape& s, const std::string& why) const;

  // Plan helpers: store the state, read it back.
  static void set_state(Plan& plan, std::shared_ptr<SparsePlanBase> st);
  // The pairs op 2 computes over `lists` (SparsePlanBase::executed_pairs) as the backend's
  // kernel tiles them (Backend::sparse_prefill_executed_pairs), else the selected pairs.
  static double executed_pairs(const Inputs& in, const HostIndexLists& lists, const Backend& be);
  static double executed_pairs(const Inputs& in, const HostBlockLists& lists, const Backend& be);
  // A plan whose selection is `sel`: its density, the estimation FLOPs and the state.
  static Plan selection_plan(const AttnShape& s, std::shared_ptr<const HostIndexLists> sel,
                             double estimation_flops, std::shared_ptr<SparsePlanBase> st);
  static Plan selection_plan(const AttnShape& s, std::shared_ptr<const HostBlockLists> sel,
                             double estimation_flops, std::shared_ptr<SparsePlanBase> st);
  // Both, where the lists op 2 runs over are also the selection.
  template <class Lists>
  static Plan finish_plan(const Inputs& in, std::shared_ptr<const Lists> lists, double estimation_flops,
                          std::shared_ptr<SparsePlanBase> st, const Backend& be) {
    st->executed_pairs = executed_pairs(in, *lists, be);
    return selection_plan(in.shape, std::move(lists), estimation_flops, std::move(st));
  }
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

// Block lists of the given geometry holding `per_list` in order (b, list head, query block).
std::shared_ptr<HostBlockLists> block_lists(int64_t q_block, int64_t k_block, int list_heads,
                                            const std::vector<std::vector<int32_t>>& per_list);

// Float64 softmax attention of row i over `keys` (each listed once), from the host inputs.
void f64_attention_row(const Inputs& in, int b, int h, int64_t i, const std::vector<int64_t>& keys,
                       double* o, double* lse);

}  // namespace ab
