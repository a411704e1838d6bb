// Latency (docs/architecture.md): warm-up, then samples until the median's relative standard error
// reaches the target, with a minimum count, a maximum count and a time cap. The plan and
// attention phases are timed apart, each the backend's way (CUDA events on the GPU).
#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/sample_stats.hpp"
#include "metrics/metrics.hpp"

namespace ab {

namespace {
json summary(std::vector<double> v) {
  json j;
  const SampleSummary s = summarize(v);
  j["min"] = s.min;
  j["median"] = s.median;
  j["p10"] = s.p10;
  j["p90"] = s.p90;
  j["mean"] = s.mean;
  j["stddev"] = s.stddev;
  j["samples"] = v;
  return j;
}
}  // namespace

json measure_latency(MetricContext& ctx) {
  const json& o = ctx.options;
  const int warmup = o.value("warmup", 2);
  const int min_samples = std::max(1, o.value("min_samples", 5));
  const int max_samples = std::max(min_samples, o.value("max_samples", 200));
  const double target = o.value("target_rse", 0.01);
  const double max_time = o.value("max_time", 10.0);
  // Sampling goes on for at least min_time seconds before the RSE may stop it: an RSE from
  // three samples of a 0.4 ms call says little, and its median moves between runs by several
  // times the gate's threshold (docs/ci.md, "Short runs").
  const double min_time = o.value("min_time", 0.0);
  const std::string cache_name = o.value("cache", std::string("hot"));
  if (cache_name != "hot" && cache_name != "cold")
    throw std::runtime_error("metrics.latency.cache must be hot or cold, got '" + cache_name + "'");
  const CacheMode cache = cache_name == "cold" ? CacheMode::cold : CacheMode::hot;

  Variant& var = ctx.variant;
  Backend& be = ctx.backend;
  const std::vector<Inputs>& rot = *ctx.rotation;
  std::vector<Plan>& plans = *ctx.rotation_plans;
  Outputs& out = *ctx.mutable_outputs;
  const bool split = var.has_plan_phase();

  const auto clocks_before = be.read_clocks();
  for (int i = 0; i < warmup; ++i) {
    const Inputs& in = rot[static_cast<size_t>(i) % rot.size()];
    Plan& p = plans[static_cast<size_t>(i) % rot.size()];
    if (split) p = var.plan(in, be);
    var.run(in, p, out, be);
  }
  be.synchronize();

  std::vector<double> total, t_plan, t_attn;
  const auto start = std::chrono::steady_clock::now();
  std::string stop = "max_samples";
  double rse = 0;
  for (int s = 0; s < max_samples; ++s) {
    const size_t r = static_cast<size_t>(s) % rot.size();
    const Inputs& in = rot[r];
    Plan& p = plans[r];
    double tp = 0;
    if (split) tp = be.time([&] { p = var.plan(in, be); }, cache);
    const double ta = be.time([&] { var.run(in, p, out, be); }, cache);
    t_plan.push_back(tp);
    t_attn.push_back(ta);
    total.push_back(tp + ta);
    if (ctx.interrupted && ctx.interrupted()) {
      stop = "interrupted";
      break;
    }
    const int n = s + 1;
    if (n >= min_samples) {
      rse = median_rse(total);
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (rse <= target && elapsed >= min_time) {
        stop = "rse";
        break;
      }
      if (elapsed >= max_time) {
        stop = "max_time";
        break;
      }
    }
  }
  rse = median_rse(total);
  const auto clocks_after = be.read_clocks();

  json j;
  j["unit"] = "s";
  j["cache"] = cache_name;
  j["warmup"] = warmup;
  j["n"] = total.size();
  j["stop"] = stop;
  j["target_rse"] = target;
  j["rse"] = rse;
  json all = summary(total);
  for (auto it = all.begin(); it != all.end(); ++it) j[it.key()] = it.value();
  j["phases"] = {{"plan", summary(t_plan)}, {"attention", summary(t_attn)}};
  j["rotation_copies"] = rot.size();
  // Multi-step decode (docs/decode.md): one sample runs every step; per-step figures are the
  // sample's over the step count (the amortised cost of a step, full steps included).
  if (const int64_t S = ctx.inputs.shape.steps; S > 1) {
    auto per = [&](const json& src) {
      return json{{"median", src["median"].get<double>() / double(S)},
                  {"min", src["min"].get<double>() / double(S)},
                  {"p10", src["p10"].get<double>() / double(S)},
                  {"p90", src["p90"].get<double>() / double(S)}};
    };
    json ps = per(j);
    ps["steps"] = S;
    ps["plan"] = per(j["phases"]["plan"]);
    ps["attention"] = per(j["phases"]["attention"]);
    j["per_step"] = ps;
  }

  const Cost c = var.cost(ctx.inputs.shape, &plans[0]);
  const double med = j["median"].get<double>();
  if (med > 0)
    j["rates"] = {{"tflops_executed", c.executed / med / 1e12},
                  {"tflops_dense_equivalent", c.dense_equivalent / med / 1e12},
                  {"gbps", c.bytes_min / med / 1e9}};
  json warnings = json::array();
  if (clocks_before && clocks_after) {
    j["clocks"] = {{"before", {{"sm_mhz", clocks_before->sm_mhz}, {"temperature_c", clocks_before->temperature_c}}},
                   {"after", {{"sm_mhz", clocks_after->sm_mhz}, {"temperature_c", clocks_after->temperature_c}}}};
    if (clocks_after->sm_mhz < 0.95 * clocks_before->sm_mhz)
      warnings.push_back("SM clock dropped from " + std::to_string(int(clocks_before->sm_mhz)) +
                         " to " + std::to_string(int(clocks_after->sm_mhz)) + " MHz during sampling (throttling?)");
  }
  if (stop == "max_time" || stop == "max_samples")
    if (rse > target)
      warnings.push_back("relative standard error " + std::to_string(rse) + " above target " +
                         std::to_string(target) + " (stopped by " + stop + ")");
  j["warnings"] = warnings;
  return j;
}

}  // namespace ab
