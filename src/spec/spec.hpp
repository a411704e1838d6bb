#pragma once
// The experiment spec (YAML) and its expansion into cases (docs/architecture.md, "Layers"):
// the parser sits above the metric, workload and variant tables it checks names against.
#include <string>
#include <vector>

#include "core/experiment.hpp"

namespace ab {

// Parse and validate a spec file. `overrides` are --set KEY=VALUE strings applied to the YAML
// tree before validation. Throws InputError with file:line:col, the field and the rule.
// Every case is checked either way; `lazy` keeps none in memory (Experiment::cases stays
// empty: case_count() and case_at() make them on demand), for sweeps of very many cases.
Experiment load_experiment(const std::string& path, const std::vector<std::string>& overrides, bool lazy = false);
// The same from a string (tests); `path` names it in messages.
Experiment parse_experiment(const std::string& text, const std::string& path,
                            const std::vector<std::string>& overrides, bool lazy = false);

std::string sha256_hex(const std::string& bytes);

}  // namespace ab
