#pragma once
// Input generators (docs/inputs.md): deterministic from a seed. One file per kind under
// src/workloads/, one row in workload_table().
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/variant.hpp"

namespace ab {

struct WorkloadDef {
  std::string name;
  nlohmann::ordered_json defaults;  // every option with its default ("kind" excluded)
  std::string summary;
  // Q (B,Hq,Nq,D), K (B,Hkv,Nkv,D), V (B,Hkv,Nkv,Dv) in fp32, rounded to shape.dtype.
  std::function<HostInputs(const AttnShape&, const nlohmann::ordered_json& options, uint64_t seed)> generate;
  // Optional: checks the options against a shape when the spec is loaded, before any case
  // runs (files exist, headers agree with the shape, values in range); throws InputError
  // naming the option and the rule. Null: nothing to check beyond the option types.
  std::function<void(const AttnShape&, const nlohmann::ordered_json& options)> validate = nullptr;
};

const std::vector<WorkloadDef>& workload_table();
const WorkloadDef* find_workload(const std::string& name);

// The seed of a case's inputs: every variant of one problem sees the same inputs.
uint64_t input_seed(uint64_t spec_seed, const std::string& problem_key);

// Round every element of t to the dtype (inputs must be representable in it).
void round_tensor(HostTensor& t, DType dtype);

HostInputs generate_gaussian(const AttnShape& s, const nlohmann::ordered_json& options, uint64_t seed);

// Options given for a workload merged over its defaults: unknown names are refused with the
// closest one, types must match the default's. `where` names the block in messages
// ("input.base_options"). The result carries "kind".
nlohmann::ordered_json workload_options(const WorkloadDef& def, const nlohmann::ordered_json& given,
                                        const std::string& where);

// structured.cpp: sinks, locality (smooth latent + RoPE), heavy hitters, slash diagonals,
// head diversity; docs/inputs.md lists each knob with the statistic it moves.
HostInputs generate_structured(const AttnShape& s, const nlohmann::ordered_json& options, uint64_t seed);
void validate_structured(const AttnShape& s, const nlohmann::ordered_json& options);

// file.cpp: Q/K/V loaded from .npy or .safetensors (docs/inputs.md).
HostInputs generate_file(const AttnShape& s, const nlohmann::ordered_json& options, uint64_t seed);
void validate_file(const AttnShape& s, const nlohmann::ordered_json& options);

// needle.cpp: the needle overlay (docs/metrics.md NIAH). Shared by the `needle` input kind and
// the niah metric.
struct NeedleSpec {
  double depth = 0.5;       // needle key at position round(depth · P0), P0 = the first probe
                            // row's position (kv_len − 1 without a causal mask)
  double margin = 2.0;      // needle logit = the haystack's log-partition + margin (nats)
  int64_t probe_rows = 1;   // probes: the last min(probe_rows, q_len) query rows
  double value_scale = 1.0; // |v*| = value_scale × the head's RMS value norm
};
struct PlantedNeedle {
  int64_t position = 0;
  std::vector<int64_t> probes;     // query rows aligned with the needle
  HostTensor value;                // v* per (batch, kv head): (B, Hkv, 1, Dv)
  // Dense probability of the needle for each (b, h, probe): index (b·Hq + h)·probes + r,
  // measured on the final inputs (in fp32 from the log-partition before the probe's last
  // rounding: within ~1e-7 relative).
  std::vector<double> dense_mass;
};
// Plants one needle per (batch, kv head) into `in` (already rounded to s.dtype); deterministic
// from the seed. `scale` 0 = 1/sqrt(D).
PlantedNeedle plant_needle(HostInputs& in, const AttnShape& s, const NeedleSpec& spec, double scale,
                           uint64_t seed);
HostInputs generate_needle(const AttnShape& s, const nlohmann::ordered_json& options, uint64_t seed);
void validate_needle(const AttnShape& s, const nlohmann::ordered_json& options);

}  // namespace ab
