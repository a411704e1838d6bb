#pragma once
// The table `run` prints when a sweep ends: one row per case, speedup against the baseline
// case of the same problem in the same report.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace ab {
void print_run_summary(const nlohmann::ordered_json& report, const std::string& baseline, FILE* out);
}  // namespace ab
