// libFuzzer harness: the spec parser and its expansion into cases (parse_experiment). The
// input is a YAML spec; bytes after a NUL are --set overrides, one per further NUL, so the
// override path (list indices, values that are YAML themselves) is fuzzed too. Every input
// must either parse or throw ab::InputError; anything else (a crash, another exception, a
// sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/errors.hpp"
#include "spec/spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= all.size(); ++i)
    if (i == all.size() || all[i] == '\0') parts.push_back(all.substr(start, i - start)), start = i + 1;
  const std::vector<std::string> sets(parts.begin() + 1, parts.end());
  try {
    const ab::Experiment ex = ab::parse_experiment(parts[0], "fuzz.yaml", sets);
    (void)ex.cases.size();
  } catch (const ab::InputError&) {
  }
  return 0;
}
