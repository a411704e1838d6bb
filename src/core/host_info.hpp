#pragma once
// Facts about the machine and the build, for reports and `attn-bench env`.
#include <nlohmann/json.hpp>

namespace ab {

nlohmann::ordered_json host_info();   // cpu_model, cores, memory_bytes, isa, hostname, os
nlohmann::ordered_json build_json();  // compiler, flags, build_type, cuda, cuda_archs
// {"sha": ..., "dirty": ...} of the source checkout this binary was built from; where that
// checkout is gone, the sha recorded at build time with "source": "build"; sha "" if neither.
nlohmann::ordered_json git_info();
// ISO 8601 UTC, now.
std::string utc_timestamp();

}  // namespace ab
