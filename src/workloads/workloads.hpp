#pragma once
// Input generators (DESIGN.md §6): deterministic from a seed. One file per kind under
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
};

const std::vector<WorkloadDef>& workload_table();
const WorkloadDef* find_workload(const std::string& name);

// The seed of a case's inputs: every variant of one problem sees the same inputs.
uint64_t input_seed(uint64_t spec_seed, const std::string& problem_key);

// Round every element of t to the dtype (inputs must be representable in it).
void round_tensor(HostTensor& t, DType dtype);

HostInputs generate_gaussian(const AttnShape& s, const nlohmann::ordered_json& options, uint64_t seed);

}  // namespace ab
