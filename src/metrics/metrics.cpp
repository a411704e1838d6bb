#include "metrics/metrics.hpp"

namespace ab {

const std::vector<MetricDef>& metric_table() {
  static const std::vector<MetricDef> table = {
      {"flops", json::object(),
       "executed, dense-equivalent and estimation FLOPs, minimum bytes (DESIGN.md §5)",
       measure_flops},
      {"accuracy", {{"rows", 64}},
       "max-abs and relative error of O (and LSE) against the float64 reference on sampled rows",
       measure_accuracy},
      {"latency",
       {{"warmup", 2},
        {"min_samples", 5},
        {"max_samples", 200},
        {"target_rse", 0.01},
        {"max_time", 10.0},
        {"cache", "hot"}},
       "repeat until the median's relative standard error is under target_rse (or max_samples"
       " / max_time seconds); plan and attention phases timed apart",
       measure_latency},
  };
  return table;
}

const MetricDef* find_metric(const std::string& name) {
  for (const auto& m : metric_table())
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace ab
