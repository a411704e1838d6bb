#include "workloads/workloads.hpp"

namespace ab {

const std::vector<WorkloadDef>& workload_table() {
  static const std::vector<WorkloadDef> table = {
      {"gaussian", {{"std", 1.0}}, "i.i.d. normal Q, K, V (scores have std about `std`^2)",
       generate_gaussian},
  };
  return table;
}

const WorkloadDef* find_workload(const std::string& name) {
  for (const auto& w : workload_table())
    if (w.name == name) return &w;
  return nullptr;
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
