#pragma once
// The metric table: names the spec may use under `metrics:`, their options with defaults, and
// the function that measures each on a case. One file per metric under src/metrics/.
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/spec.hpp"
#include "core/variant.hpp"

namespace ab {

using json = nlohmann::ordered_json;

// Everything a metric may use. `inputs`, `plan` and `outputs` hold one finished run of the
// case (outputs already checked for completion). make_inputs builds fresh inputs for another
// problem (metrics such as NIAH generate their own).
struct MetricContext {
  const Experiment& experiment;
  const Case& c;
  Variant& variant;
  Backend& backend;
  const Inputs& inputs;
  const Plan& plan;
  const Outputs& outputs;
  const json& options;
  std::function<bool()> interrupted;  // true after Ctrl-C: stop early
  // Input copies to rotate through between timed samples (rotation[0] is `inputs`), each with
  // its own plan (Backend::rotation_copies).
  const std::vector<Inputs>* rotation = nullptr;
  std::vector<Plan>* rotation_plans = nullptr;
  Outputs* mutable_outputs = nullptr;
};

struct MetricDef {
  std::string name;
  json defaults;        // every option with its default; unknown keys are refused
  std::string summary;  // one line, for docs and errors
  // Returns the metric's JSON. Throwing marks the case failed. A result holding
  // "pass": false also marks the case failed (e.g. accuracy out of tolerance).
  std::function<json(MetricContext&)> measure;
};

const std::vector<MetricDef>& metric_table();
const MetricDef* find_metric(const std::string& name);

json measure_flops(MetricContext& ctx);
json measure_latency(MetricContext& ctx);
json measure_accuracy(MetricContext& ctx);

}  // namespace ab
