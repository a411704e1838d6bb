// Energy per call (docs/metrics.md, "energy"): the device's cumulative energy counter (NVML's
// total energy on a GPU, RAPL's package energy on the CPU) read around a window of back-to-back
// hot calls. Counters update every few to tens of milliseconds and a single call is often
// shorter, so one call cannot be measured alone; a window of min_time seconds (1 s by default)
// holds many calls and many counter updates, and joules per call is the window's energy over its
// calls. Like time per call, it is the whole device's: idle and static power included, as a
// wall-plug figure would be.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "core/errors.hpp"
#include "metrics/metrics.hpp"

namespace ab {

void validate_energy(const json& o) {
  const double min_time = o["min_time"].get<double>();
  if (!(min_time > 0 && min_time <= 3600))
    throw InputError("metrics.energy.min_time = " + o["min_time"].dump() + ": must be in (0, 3600] seconds");
  if (!o["warmup"].is_number_integer() || o["warmup"].get<int64_t>() < 0)
    throw InputError("metrics.energy.warmup = " + o["warmup"].dump() + ": must be an integer >= 0");
  if (!o["max_calls"].is_number_integer() || o["max_calls"].get<int64_t>() < 1)
    throw InputError("metrics.energy.max_calls = " + o["max_calls"].dump() + ": must be an integer >= 1");
}

json measure_energy(MetricContext& ctx) {
  const json& o = ctx.options;
  const double min_time = o.value("min_time", 1.0);
  const int64_t warmup = o.value("warmup", int64_t{1});
  const int64_t max_calls = o.value("max_calls", int64_t{1000000});
  Backend& be = ctx.backend;
  Variant& var = ctx.variant;
  std::string why;
  if (!be.read_energy(&why)) return json{{"available", false}, {"reason", why}};

  const std::vector<Inputs>& rot = *ctx.rotation;
  std::vector<Plan>& plans = *ctx.rotation_plans;
  Outputs& out = *ctx.mutable_outputs;
  const bool split = var.has_plan_phase();
  int64_t next = 0;
  // One call as the latency metric times it: plan (when the variant has that phase) + attention,
  // rotating through the input copies.
  auto call = [&] {
    const size_t r = static_cast<size_t>(next++) % rot.size();
    if (split) plans[r] = var.plan(rot[r], be);
    var.run(rot[r], plans[r], out, be);
  };
  for (int64_t i = 0; i < warmup; ++i) call();
  be.synchronize();

  const auto before = be.read_energy(&why);
  if (!before) throw std::runtime_error("energy counter stopped answering: " + why);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t calls = 0, batch = 1;
  double window = 0;
  std::string stop = "min_time";
  for (;;) {
    for (int64_t b = 0; b < batch; ++b) call();
    calls += batch;
    be.synchronize();  // the GPU's calls are asynchronous: the window closes when they finish
    window = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (window >= min_time) break;
    if (calls >= max_calls) {
      stop = "max_calls";
      break;
    }
    if (ctx.interrupted && ctx.interrupted()) {
      stop = "interrupted";
      break;
    }
    // Batches of about min_time / 20: few synchronisations, and the window overshoots
    // min_time by at most a twentieth.
    const double per_call = window / double(calls);
    batch = std::clamp<int64_t>(static_cast<int64_t>(min_time / 20.0 / std::max(per_call, 1e-9)), 1,
                                max_calls - calls);
  }
  const auto after = be.read_energy(&why);
  if (!after) throw std::runtime_error("energy counter stopped answering: " + why);
  const auto joules = energy_between(*before, *after);
  if (!joules) throw std::runtime_error("energy counters changed shape between two readings (" + before->source + ")");

  json j;
  j["available"] = true;
  j["source"] = before->source;
  j["unit"] = "J";
  j["warmup"] = warmup;
  j["calls"] = calls;
  j["window_s"] = window;
  j["stop"] = stop;
  j["joules"] = *joules;
  j["joules_per_call"] = *joules / double(calls);
  j["watts"] = window > 0 ? *joules / window : 0.0;
  const Cost c = var.cost(ctx.inputs.shape, &plans[0]);
  if (*joules > 0) j["tflop_per_joule"] = c.executed * double(calls) / *joules / 1e12;
  if (const int64_t S = ctx.inputs.shape.steps; S > 1) j["joules_per_step"] = *joules / double(calls) / double(S);
  json warnings = json::array();
  if (*joules <= 0)
    warnings.push_back("the counter did not advance in " + std::to_string(window) +
                       " s: the window is shorter than its update period; raise metrics.energy.min_time");
  if (stop != "min_time")
    warnings.push_back("window stopped by " + stop + " after " + std::to_string(window) + " s (min_time " +
                       std::to_string(min_time) + " s): fewer counter updates, a coarser figure");
  j["warnings"] = warnings;
  return j;
}

}  // namespace ab
