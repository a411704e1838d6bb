#include "metrics/metrics.hpp"

namespace ab {

const std::vector<MetricDef>& metric_table() {
  static const std::vector<MetricDef> table = {
      {"flops", json::object(),
       "executed, dense-equivalent and estimation FLOPs, minimum bytes (docs/architecture.md, Cost)",
       measure_flops},
      {"accuracy", {{"rows", 64}},
       "max-abs and relative error of O (and LSE) against the float64 reference on sampled rows",
       measure_accuracy},
      {"latency",
       {{"warmup", 2},
        {"min_samples", 5},
        {"max_samples", 200},
        {"target_rse", 0.01},
        {"min_time", 0.0},
        {"max_time", 10.0},
        {"cache", "hot"}},
       "repeat until the median's relative standard error is under target_rse and min_time"
       " seconds have passed (or max_samples / max_time seconds); plan and attention phases timed apart",
       measure_latency},
      {"recall",
       {{"queries", "256"}, {"topk", {16, 64}}, {"per_head", false}, {"min_mass_recall", 0.0}},
       "against float64 dense attention on sampled rows, every head: mass recall and top-k recall"
       " of the plan's selection, density, output relative error and cosine (docs/architecture.md)",
       measure_recall, validate_recall},
      {"niah",
       {{"lengths", {1024, 2048, 4096}},
        {"depths", {0.0, 0.25, 0.5, 0.75, 1.0}},
        {"trials", 4},
        {"margin", 2.0},
        {"tau", 0.5},
        {"probe_rows", 16},
        {"value_scale", 1.0},
        {"input", ""},
        {"full_prefill", false},
        {"min_success", 0.0},
        {"heatmap", true}},
       "model-free needle in a haystack: success rate (cos(o, v*) >= tau) and retained needle "
       "mass per context length x depth cell",
       measure_niah, validate_niah},
      {"sink",
       {{"epsilon", 0.3}, {"token", 0}, {"queries", "256"}},
       "Sink_k^eps of 'When Attention Sink Emerges': % of heads whose mean attention on token k "
       "exceeds epsilon, on the case's inputs",
       measure_sink, validate_sink},
      {"ecost",
       {{"E", 562.5}, {"params", 0.0}, {"trials", 1.0}, {"element_bytes", 2.0}, {"generation", 0.0}},
       "Kinetics eFLOPs = compute + E x memory bytes: the case's measured cost and the closed-form "
       "model for its shape (E: hardware FLOPs per byte; params: model parameters P, 0 = attention "
       "only; generation: tokens g, 0 = the case's steps)",
       measure_ecost, validate_ecost},
      {"energy",
       {{"min_time", 1.0}, {"warmup", 1}, {"max_calls", 1000000}},
       "joules per call, average watts and TFLOP per joule from the device's energy counter (NVML on a "
       "GPU, RAPL on the CPU) around min_time seconds of back-to-back hot calls; the whole device's "
       "energy, idle power included",
       measure_energy, validate_energy},
  };
  return table;
}

const MetricDef* find_metric(const std::string& name) {
  for (const auto& m : metric_table())
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace ab
