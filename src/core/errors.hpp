#pragma once
// Error types and the exit codes of docs/architecture.md.
#include <stdexcept>
#include <string>
#include <vector>

namespace ab {

enum ExitCode : int { kExitOk = 0, kExitFailed = 1, kExitInput = 2, kExitRuntime = 3 };

// Bad usage or input (spec, parameter, file): the message names the place and the rule.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A device or runtime failure outside any single case.
struct RuntimeFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The closest candidate by edit distance, or "" when none is reasonably close.
std::string closest_name(const std::string& word, const std::vector<std::string>& candidates);
// "did you mean 'x'?" or "" ; plus the full list, for messages.
std::string suggest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace ab
