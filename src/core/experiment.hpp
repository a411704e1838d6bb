#pragma once
// An experiment: what the spec parser (spec/spec.hpp) makes of a YAML spec, as plain values.
// YAML types stop at the parser: everything below it sees these (docs/architecture.md).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/params.hpp"
#include "core/problem.hpp"

namespace ab {

struct VariantChoice {
  std::string name;                // registry name
  std::string label;               // unique within the experiment
  ParamSet params;                 // every parameter (defaults filled in)
  std::vector<std::string> given;  // parameters the spec set explicitly
};

struct Case {
  int index = 0;
  std::string id;  // label + "/" + problem key: stable across runs
  Problem problem;
  VariantChoice variant;
  // Non-empty: the variant cannot run this point of the sweep (a mode it lacks, a parameter
  // that does not fit the shape); the case is reported `skipped` with this reason.
  std::string skip_reason;
};

struct Experiment {
  std::string path;    // spec file
  std::string sha256;  // of the file's bytes
  std::string name;
  std::string description;
  uint64_t seed = 1;
  std::string device = "cpu";
  int threads = 0;     // 0: every core
  std::string baseline;
  nlohmann::ordered_json input = {{"kind", "gaussian"}};  // workload options
  // Metric name -> its options (defaults filled in), in the spec's order.
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
  std::vector<Case> cases;  // every case in order; empty when loaded lazily

  // The sweep's grid: case i runs point i / choices.size() with choice i % choices.size().
  std::vector<Problem> points;
  std::vector<VariantChoice> choices;
  bool lazy = false;
  size_t skipped_cases = 0;  // cases the variant cannot run (skip_reason set)
  // Why a choice cannot run a point ("" when it can); set by the spec parser.
  std::function<std::string(const Problem&, const VariantChoice&)> refusal;

  size_t case_count() const { return lazy ? points.size() * choices.size() : cases.size(); }
  // Case i's id without making the case.
  std::string case_id(size_t i) const {
    if (!lazy) return cases[i].id;
    return choices[i % choices.size()].label + "/" + points[i / choices.size()].key();
  }
  // Case i (made on demand when lazy; a copy of cases[i] otherwise).
  Case case_at(size_t i) const {
    if (!lazy) return cases[i];
    Case c;
    c.index = static_cast<int>(i);
    c.problem = points[i / choices.size()];
    c.variant = choices[i % choices.size()];
    c.id = c.variant.label + "/" + c.problem.key();
    if (refusal) c.skip_reason = refusal(c.problem, c.variant);
    return c;
  }
};

}  // namespace ab
