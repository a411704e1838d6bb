#pragma once
// The variant contract (DESIGN.md §4). One file per variant under src/variants/<family>/,
// one line in src/variants/variants.def.
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/params.hpp"
#include "core/problem.hpp"
#include "core/selection.hpp"
#include "core/tensor.hpp"

namespace ab {

struct VariantInfo {
  std::string name;
  std::string family;
  std::string paper;    // citation: title, venue/arXiv id
  std::string summary;  // one line
  std::vector<ParamSpec> params;
  std::vector<Mode> modes;            // modes it supports
  std::vector<std::string> backends;  // backends with an implementation of its ops
};

// FLOPs count a multiply-add as 2 (DESIGN.md §5).
struct Cost {
  double executed = 0;          // what the variant computes, estimation included
  double dense_equivalent = 0;  // dense attention for the same problem (causal-aware)
  double estimation = 0;        // the plan (selection) phase alone
  double bytes_min = 0;         // each input read once, each output written once
  double density = 1.0;         // selected / allowed (query, key) pairs
};

// Inputs as the backend sees them, plus the host copies the metrics read.
struct Inputs {
  AttnShape shape;
  HostTensor q, k, v;      // host fp32, values rounded to shape.dtype
  TensorRef dq, dk, dv;    // backend copies
  float scale = 0.0f;      // softmax scale (0 = 1/sqrt(D))
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
};

class Variant {
 public:
  virtual ~Variant() = default;
  virtual const VariantInfo& info() const = 0;
  // The attention shape this variant runs for a problem; throws InputError naming the field
  // and the rule when its parameters are impossible for the problem.
  virtual AttnShape shape(const Problem& p) const { return shape_from_problem(p); }
  // Answered by the backend's dispatch for the ops this variant would call.
  virtual Support supports(const AttnShape& s, const Backend& b) const = 0;
  // Plan may be null (before planning: the static estimate).
  virtual Cost cost(const AttnShape& s, const Plan* plan) const = 0;
  virtual Plan plan(const Inputs& in, Backend& b) { (void)in; (void)b; return {}; }
  virtual void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) = 0;
};

using VariantFactory = std::unique_ptr<Variant> (*)(const ParamSet&);

}  // namespace ab
