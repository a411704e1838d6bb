#pragma once
// The metric table: names the spec may use under `metrics:`, their options with defaults, and
// the function that measures each on a case. One file per metric under src/metrics/.
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/experiment.hpp"
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
  // Optional: checks the options when the spec is loaded (before any case runs); throws
  // InputError naming the option and the rule.
  std::function<void(const json& options)> validate = nullptr;
};

const std::vector<MetricDef>& metric_table();
const MetricDef* find_metric(const std::string& name);

json measure_flops(MetricContext& ctx);
json measure_latency(MetricContext& ctx);
json measure_accuracy(MetricContext& ctx);

// recall.cpp, niah.cpp, sink.cpp (docs/metrics.md: definitions and conventions).
json measure_recall(MetricContext& ctx);
void validate_recall(const json& options);
json measure_niah(MetricContext& ctx);
void validate_niah(const json& options);
json measure_sink(MetricContext& ctx);
void validate_sink(const json& options);
// ecost.cpp: the Kinetics eFLOPs cost model (docs/variants.md §17).
json measure_ecost(MetricContext& ctx);
void validate_ecost(const json& options);
// energy.cpp: joules per call from the device's energy counter around back-to-back calls.
json measure_energy(MetricContext& ctx);
void validate_energy(const json& options);
// "all" or a positive integer given as a string or a number: the sampled query rows of the
// recall and sink metrics (0 = all). Throws InputError naming `field`.
int64_t parse_query_rows(const json& value, const std::string& field);

}  // namespace ab
