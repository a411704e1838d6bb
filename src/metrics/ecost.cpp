// Kinetics eFLOPs (docs/variants.md §17; "Kinetics: Rethinking Test-Time Scaling Laws", arXiv
// 2506.05333; Infini-AI-Lab/Kinetics cost_model/utils.py): cost = compute FLOPs + E × memory
// bytes, E the hardware's FLOPs per byte (562.5 in the repo's cost models). Test-time scaling is
// bound by KV-cache traffic, so a decode method is judged by both at once.
//
// Two blocks:
//  - "case": the case as run. Compute = the variant's executed FLOPs (estimation included);
//    memory = the K/V bytes the steps read (each decode step reads its keys afresh: the
//    selected keys of every step, or every visible key for dense attention) plus what the
//    estimation reads (plan_stats.estimation_bytes), at the case's dtype. Against the same
//    for dense attention over every visible key.
//  - "model": the closed-form model for the case's shape as a whole generation (prompt L =
//    kv_len − steps, g generated tokens, n trials sharing the prompt, P parameters):
//      dense   compute = (2Pg + 2(2L+g)·g·H·d)·n,  memory = e·(2L + g·n)·g·H_kv·d
//      sparse  kv = B·g − ½·max(0, B − L)²   (Σ over steps of min(B, context))
//              compute = (2Pg + 4·kv·H·d + search)·n,  memory = 2e·kv·H_kv·d·n + search_mem
//    kinetics: block_sparse_cost, B = local + sinks + block_size·topk_blocks, search =
//    ⌊(2L+g)/b⌋·g·H·d and search_mem = (e/2)·⌊(2L+g·n)/b⌋·g·H_kv·d; other selecting variants:
//    B = their measured keys per step (plan_stats.keys_per_step_per_kv_head) and their measured
//    estimation per step as search. The repo's zero_overhead_sparse_cost writes +½·max(0,B−L)²
//    where block_sparse_cost writes −½; the count of keys read is the latter, used here.
#include <algorithm>
#include <cmath>

#include "core/errors.hpp"
#include "metrics/metrics.hpp"

namespace ab {

void validate_ecost(const json& o) {
  auto positive = [&](const char* k, bool allow_zero) {
    const double v = o[k].get<double>();
    if (!(allow_zero ? v >= 0 : v > 0))
      throw InputError(std::string("metrics.ecost.") + k + " = " + o[k].dump() + ": must be " +
                       (allow_zero ? ">= 0" : "> 0"));
  };
  positive("E", false);
  positive("params", true);
  positive("trials", false);
  positive("element_bytes", false);
  positive("generation", true);
}

json measure_ecost(MetricContext& ctx) {
  const json& o = ctx.options;
  const double E = o["E"].get<double>(), P = o["params"].get<double>(), n = o["trials"].get<double>(),
               eb = o["element_bytes"].get<double>();
  const AttnShape& s = ctx.inputs.shape;
  const Cost c = ctx.variant.cost(s, &ctx.plan);
  const double H = s.q_heads, Hkv = s.kv_heads, d = s.head_dim, dv = s.v_dim;
  const double lists = double(s.batch) * s.kv_heads;

  // The case: per-step K/V traffic.
  const double case_e = dtype_bytes(s.dtype);
  const double dense_entries = lists * s.allowed_pairs();  // every visible key of every step
  const double entries = c.density * dense_entries;
  const auto& st = ctx.plan.stats;
  const double est_bytes = st.count("estimation_bytes") ? st.at("estimation_bytes") : 0.0;
  const double mem = entries * (d + dv) * case_e + est_bytes;
  const double dense_mem = dense_entries * (d + dv) * case_e;
  json cs = {{"compute", c.executed},
             {"memory_bytes", mem},
             {"eflops", c.executed + E * mem},
             {"dense_compute", c.dense_equivalent},
             {"dense_memory_bytes", dense_mem},
             {"dense_eflops", c.dense_equivalent + E * dense_mem}};
  cs["ratio"] = cs["eflops"].get<double>() > 0 ? cs["dense_eflops"].get<double>() / cs["eflops"].get<double>() : 1.0;

  // The closed-form model.
  const double L = double(s.kv_len - s.steps);
  const double g = o["generation"].get<double>() > 0 ? o["generation"].get<double>() : double(s.steps);
  const double dense_compute = (2 * P * g + 2 * (2 * L + g) * g * H * d) * n;
  const double dense_memory = eb * (2 * L + g * n) * g * Hkv * d;
  json model = {{"context", L}, {"generation", g}, {"trials", n}, {"params", P}, {"heads", H},
                {"kv_heads", Hkv}, {"head_dim", d}, {"element_bytes", eb},
                {"dense", {{"compute", dense_compute}, {"memory_bytes", dense_memory},
                           {"eflops", dense_compute + E * dense_memory}}}};
  const ParamSet& vp = ctx.c.variant.params;
  double B = -1, search = 0, search_mem = 0;
  std::string form;
  if (ctx.c.variant.name == "kinetics") {
    const double b = double(vp.integer("block_size"));
    B = double(vp.integer("local") + vp.integer("sinks")) + b * double(vp.integer("topk_blocks"));
    search = std::floor((2 * L + g) / b) * g * H * d;
    search_mem = eb / 2 * std::floor((2 * L + g * n) / b) * g * Hkv * d;
    form = "block_topk (Kinetics block_sparse_cost)";
    model["block_size"] = b;
  } else if (st.count("keys_per_step_per_kv_head")) {
    B = st.at("keys_per_step_per_kv_head");
    search = c.estimation / double(s.steps) / double(s.batch) * g;
    search_mem = est_bytes / double(s.steps) / double(s.batch) / case_e * eb * g;
    form = "measured budget and estimation per step";
  }
  if (B >= 0) {
    const double kv = B * g - 0.5 * std::pow(std::max(0.0, B - L), 2);
    const double compute = (2 * P * g + 4 * kv * H * d + search) * n;
    const double memory = 2 * eb * kv * Hkv * d * n + search_mem;
    model["sparse"] = {{"form", form}, {"budget", B}, {"kv", kv}, {"search_compute", search},
                       {"search_memory_bytes", search_mem}, {"compute", compute}, {"memory_bytes", memory},
                       {"eflops", compute + E * memory}};
    model["ratio"] = (dense_compute + E * dense_memory) / (compute + E * memory);
  } else {
    model["sparse"] = nullptr;
    model["ratio"] = 1.0;
  }
  json j;
  j["convention"] =
      "eFLOPs = compute FLOPs + E x memory bytes (Kinetics, arXiv 2506.05333, cost_model/utils.py); "
      "case: executed FLOPs and the K/V bytes each decode step reads (plus estimation reads) at the "
      "case's dtype, against dense attention over every visible key; model: the closed-form Kinetics "
      "cost of generating `generation` tokens after a prompt of kv_len - steps, with kv = B*g - "
      "0.5*max(0, B-L)^2; ratio = dense eFLOPs / this variant's";
  j["E"] = E;
  j["case"] = cs;
  j["model"] = model;
  return j;
}

}  // namespace ab
