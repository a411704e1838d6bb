#include "workloads/workloads.hpp"

#include "core/errors.hpp"

namespace ab {

const std::vector<WorkloadDef>& workload_table() {
  static const std::vector<WorkloadDef> table = {
      {"gaussian", {{"std", 1.0}}, "i.i.d. normal Q, K, V (scores have std about `std`^2)",
       generate_gaussian},
      // docs/inputs.md: each knob with the statistic it moves.
      {"structured",
       // Defaults chosen with `attn-bench inspect` (docs/inputs.md) so that, at N = 2048, the
       // attention is as concentrated as layer 3 of the real capture (entropy ~3.5 nats, top-1%
       // mass ~0.7) with a sink in a quarter of the heads, as trained LLMs show.
       {{"sinks", 1},
        {"sink_strength", 9.0},
        {"locality", 9.0},
        {"length_scale", 32.0},
        {"rope_base", 10000.0},
        {"heavy_hitters", 8},
        {"heavy_strength", 6.0},
        {"slash_period", 0},
        {"slash_strength", 4.0},
        {"noise", 1.0},
        {"head_diversity", 0.4},
        {"v_std", 1.0},
        {"query_rho", 0.0},
        {"mix", true}},
       "attention sinks, locality (smooth latent + RoPE), heavy-hitter keys, slash diagonals and "
       "head diversity, each knob in nats of logit",
       generate_structured, validate_structured},
      {"needle",
       {{"base", "gaussian"},
        {"base_options", nlohmann::ordered_json::object()},
        {"depth", 0.5},
        {"margin", 2.0},
        {"probe_rows", 1},
        {"value_scale", 1.0}},
       "another input kind (base) with a needle key/value planted for the last probe_rows "
       "queries: dense attention gives it sigmoid(margin) of their mass",
       generate_needle, validate_needle},
      {"file",
       {{"path", ""},
        {"q", "q"},
        {"k", "k"},
        {"v", "v"},
        {"layout", "auto"},
        {"dtype", ""},
        {"slice", false}},
       "Q/K/V from a .safetensors file or .npy files (F32, F16, BF16), [B,H,N,D] or [B,N,H,D]",
       generate_file, validate_file},
  };
  return table;
}

const WorkloadDef* find_workload(const std::string& name) {
  for (const auto& w : workload_table())
    if (w.name == name) return &w;
  return nullptr;
}

nlohmann::ordered_json workload_options(const WorkloadDef& def, const nlohmann::ordered_json& given,
                                        const std::string& where) {
  nlohmann::ordered_json out = def.defaults;
  if (!given.is_null()) {
    if (!given.is_object()) throw InputError(where + ": expected a map of options");
    std::vector<std::string> allowed;
    for (auto it = def.defaults.begin(); it != def.defaults.end(); ++it) allowed.push_back(it.key());
    for (auto it = given.begin(); it != given.end(); ++it) {
      if (it.key() == "kind") continue;
      if (!def.defaults.contains(it.key()))
        throw InputError(where + "." + it.key() + ": unknown option of input kind '" + def.name +
                         "': " + suggest(it.key(), allowed));
      const auto& d = def.defaults[it.key()];
      nlohmann::ordered_json v = it.value();
      const bool ok = d.is_null() || (d.is_number() && v.is_number()) || d.type() == v.type();
      if (!ok) throw InputError(where + "." + it.key() + ": expected a value like " + d.dump());
      if (d.is_number_integer() && v.is_number_float())
        throw InputError(where + "." + it.key() + ": expected an integer");
      if (d.is_number_float() && v.is_number_integer()) v = v.get<double>();
      out[it.key()] = v;
    }
  }
  out["kind"] = def.name;
  return out;
}

uint64_t input_seed(uint64_t spec_seed, const std::string& problem_key) {
  // FNV-1a over the key, mixed with the spec's seed (splitmix64 finaliser).
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : problem_key) h = (h ^ c) * 1099511628211ull;
  uint64_t z = h ^ (spec_seed + 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void round_tensor(HostTensor& t, DType dtype) {
  if (dtype == DType::f32) return;
  for (auto& x : t.data) x = round_to(dtype, x);
}

}  // namespace ab
