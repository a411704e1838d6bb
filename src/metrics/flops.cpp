#include "metrics/metrics.hpp"

namespace ab {

json measure_flops(MetricContext& ctx) {
  const Cost c = ctx.variant.cost(ctx.inputs.shape, &ctx.plan);
  json j;
  j["convention"] =
      "multiply-add = 2 FLOPs; dense = 2*B*Hq*pairs*(d + dv) with pairs = Nq*Nkv, causal "
      "counting allowed (query, key) pairs only; executed counts the kernel's non-empty tiles "
      "plus estimation; bytes_min reads Q, K, V once and writes O and LSE once";
  j["executed"] = c.executed;
  j["dense_equivalent"] = c.dense_equivalent;
  j["estimation"] = c.estimation;
  j["bytes_min"] = c.bytes_min;
  j["density"] = c.density;
  if (!ctx.plan.stats.empty()) j["plan_stats"] = ctx.plan.stats;
  if (const int64_t S = ctx.inputs.shape.steps; S > 1)  // multi-step decode: amortised per step
    j["per_step"] = {{"steps", S}, {"executed", c.executed / double(S)},
                     {"dense_equivalent", c.dense_equivalent / double(S)},
                     {"estimation", c.estimation / double(S)}};
  return j;
}

}  // namespace ab
