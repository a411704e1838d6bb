#pragma once
// The variant contract (docs/architecture.md). One file per variant under src/variants/<family>/,
// one line in src/variants/variants.def.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/params.hpp"
#include "core/problem.hpp"
#include "core/selection.hpp"
#include "core/tensor.hpp"

namespace ab {

// How closely a variant follows its paper (docs/figures.md, "Fidelity"): `faithful` implements
// the paper's method; `simplified` keeps its defining components with named departures;
// `stand_in` replaces a defining component (a trained estimator, index or weights) with a
// training-free substitute, so its numbers must never be presented under the paper's name.
enum class Fidelity { faithful, simplified, stand_in };
inline const char* fidelity_name(Fidelity f) {
  return f == Fidelity::faithful ? "faithful" : f == Fidelity::simplified ? "simplified" : "stand-in";
}
struct FidelityNote {
  Fidelity level = Fidelity::faithful;
  std::string reason;  // one line: what departs from the paper (or why nothing does)
};

struct VariantInfo {
  std::string name;
  std::string family;
  std::string paper;    // citation: title, venue/arXiv id
  std::string summary;  // one line
  std::vector<ParamSpec> params;
  std::vector<Mode> modes;            // modes it supports
  // No list of backends: which backends run a variant is what their dispatch answers to
  // supports() (runner/capabilities.hpp), so it cannot go stale.
  FidelityNote fidelity;
};

// FLOPs count a multiply-add as 2 (docs/architecture.md, "Cost").
struct Cost {
  double executed = 0;          // what the variant computes, estimation included
  double dense_equivalent = 0;  // dense attention for the same problem (causal-aware)
  double estimation = 0;        // the plan (selection) phase alone
  double bytes_min = 0;         // each input read once, each output written once
  double density = 1.0;         // selected / allowed (query, key) pairs
};

// Host copies of a case's inputs: fp32, values rounded to the case's dtype.
struct HostInputs {
  HostTensor q, k, v;                         // (B,Hq,Nq,D) (B,Hkv,Nkv,D) (B,Hkv,Nkv,Dv)
  std::map<std::string, HostTensor> extra;    // variant-specific inputs (e.g. gate logits)
};

// Inputs as the backend sees them, plus the host copies the metrics and host-side planning
// read. Several Inputs may share one HostInputs (input rotation on the GPU).
struct Inputs {
  AttnShape shape;
  std::shared_ptr<const HostInputs> host;
  TensorRef q, k, v;       // backend copies
  std::map<std::string, TensorRef> extra;
  float scale = 0.0f;      // softmax scale (0 = 1/sqrt(D))
  float effective_scale() const;
};

struct Outputs {
  TensorRef o;    // (B, Hq, Nq, Dv)
  TensorRef lse;  // (B, Hq, Nq, 1), fp32
};

// What the estimation phase produced. The selection is read by the recall metric.
struct Plan {
  std::shared_ptr<const Selection> selection;  // null: the variant selects nothing (n/a)
  std::string selection_na_reason;             // why, when selection is null
  std::shared_ptr<void> state;                 // variant-private
  double density = 1.0;
  double estimation_flops = 0;
  // (query, key) pairs per (batch, query head) that run() has the backend compute, as the
  // backend tiles them (Backend::sdpa_executed_pairs); < 0: not known, and cost() counts the
  // pairs the mask allows. Filled by plan(), so executed FLOPs describe the backend that runs.
  double run_pairs = -1;
  // Variant-specific figures of this plan for the report (metrics.flops.plan_stats), e.g. the
  // fraction of keys an index scanned per decode step. Names carry their unit.
  std::map<std::string, double> stats;
};

// An input a variant reads from a file the spec names (gated attention's trained gate logits,
// say). The workload layer reads it (.npy, or the tensor `tensor` of a .safetensors file) into
// HostInputs::extra[name] before prepare_inputs(), and checks it against `shape` when the spec
// is validated, so a variant never does file I/O (workloads/extra_inputs.hpp).
struct ExtraInputFile {
  std::string name;    // key in HostInputs::extra
  std::string path;
  std::string tensor;  // the tensor's name in a .safetensors file
  Shape4 shape{0, 0, 0, 0};
  std::string field;   // the spec field that names the file, for messages ("gated.gate_file")
  std::string shape_note;  // why that shape, for messages ("gate = headwise")
};

// Constructors store the ParamSet and must accept an empty one: the registry builds each
// variant once with no parameters to read its info().
class Variant {
 public:
  virtual ~Variant() = default;
  virtual const VariantInfo& info() const = 0;
  // The attention shape this variant runs for a problem; throws InputError naming the field
  // and the rule when its parameters are impossible for the problem.
  virtual AttnShape shape(const Problem& p) const { return shape_from_problem(p); }
  // Variant-specific inputs beyond Q, K, V (e.g. gate logits), added to `in.extra`,
  // deterministic from the seed.
  virtual void prepare_inputs(const AttnShape& s, HostInputs& in, uint64_t seed) const {
    (void)s; (void)in; (void)seed;
  }
  // Inputs read from files (ExtraInputFile), loaded before prepare_inputs(); none by default.
  virtual std::vector<ExtraInputFile> extra_input_files(const AttnShape& s) const {
    (void)s; return {};
  }
  // Decode variants that build an index from the prompt's queries (RetrievalAttention, §9)
  // return how many of the last prompt positions' queries they want; whoever makes the inputs
  // then adds them as extra["q_prompt"] (B, Hq, M, D) from the case's workload
  // (add_prompt_queries in execution/execute.hpp; docs/decode.md). 0: none.
  virtual int64_t prompt_queries(const AttnShape& s) const { (void)s; return 0; }
  // The output's shape; most variants give (B, Hq, Nq, Dv). A variant with another (pooled)
  // output declares it here and must then say why recall/NIAH do not apply.
  virtual Shape4 output_shape(const AttnShape& s) const {
    return {s.batch, s.q_heads, s.q_len, s.v_dim};
  }
  // Answered by the backend's dispatch for the ops this variant would call.
  virtual Support supports(const AttnShape& s, const Backend& b) const = 0;
  // Plan may be null (before planning: the static estimate).
  virtual Cost cost(const AttnShape& s, const Plan* plan) const = 0;
  // Estimation/selection phase; timed apart from run() when has_plan_phase().
  virtual bool has_plan_phase() const { return false; }
  virtual Plan plan(const Inputs& in, Backend& b) { (void)in; (void)b; return {}; }
  virtual void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) = 0;
  // Float64 reference of this variant's own formula (written in the most direct form, not a
  // copy of the fast path) for query row i of query head h in batch b: o has v_dim entries;
  // lse is NaN when the formula has none. Used by the accuracy metric.
  virtual void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i,
                             double* o, double* lse) const = 0;
};

using VariantFactory = std::unique_ptr<Variant> (*)(const ParamSet&);

}  // namespace ab
