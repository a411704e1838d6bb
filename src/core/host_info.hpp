#pragma once
// Facts about the machine and the build, for reports and `attn-bench env`.
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace ab {

nlohmann::ordered_json host_info();   // cpu_model, cores, memory_bytes, isa, hostname, os
nlohmann::ordered_json build_json();  // compiler, flags, build_type, cuda, cuda_archs
// {"sha": ..., "dirty": ...} of the source checkout this binary was built from; where that
// checkout is gone, the sha recorded at build time with "source": "build"; sha "" if neither.
nlohmann::ordered_json git_info();
// ISO 8601 UTC, now.
std::string utc_timestamp();

// The CPUs a CFS bandwidth limit (a container's CPU quota) grants: cgroup v2 `cpu.max`
// ("QUOTA PERIOD" or "max PERIOD") or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none).
// nullopt for no limit or text that is not one.
std::optional<double> parse_cgroup_v2_cpu_max(std::string_view text);
std::optional<double> parse_cgroup_v1_cpu_quota(std::string_view quota_us, std::string_view period_us);
// The tightest such limit over this process's cgroup and its ancestors, under `root`
// (/sys/fs/cgroup); nullopt where none is set or none can be read.
std::optional<double> cgroup_cpu_limit(const std::string& root = "/sys/fs/cgroup");

// How many threads the CPU kernels use when neither --threads, the spec nor OMP_NUM_THREADS
// says: the CPUs this process may run on, capped by the cgroup CPU limit (rounded down, at
// least 1). OpenMP alone sees only the CPUs: under a quota smaller than that, its threads use
// up the quota early in each scheduling period and then all wait for the next one.
struct ThreadDefault {
  int threads = 1;
  std::string source;  // e.g. "4 CPUs", "cgroup CPU limit 2 (of 16 CPUs)"
};
ThreadDefault default_cpu_threads();

}  // namespace ab
