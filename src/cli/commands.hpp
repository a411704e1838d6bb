#pragma once
// One file per subcommand: each defines an options struct, a
// `setup_<cmd>(app, action)` that registers the subcommand and sets `action` when it is
// chosen, and a `run_<cmd>(opts)` returning the exit code (core/errors.hpp ExitCode).
// InputError thrown from a run function is turned into exit 2 by main.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace ab::cli {

using Action = std::function<int()>;

// The command line as typed, for the report's meta.argv (set by main).
std::vector<std::string>& program_argv();

void setup_run(CLI::App& app, Action& action);
void setup_list(CLI::App& app, Action& action);
void setup_validate(CLI::App& app, Action& action);
void setup_table(CLI::App& app, Action& action);
void setup_compare(CLI::App& app, Action& action);
void setup_ab(CLI::App& app, Action& action);
void setup_env(CLI::App& app, Action& action);
void setup_inspect(CLI::App& app, Action& action);
void setup_report(CLI::App& app, Action& action);
void setup_plot(CLI::App& app, Action& action);
void setup_merge(CLI::App& app, Action& action);
void setup_peaks(CLI::App& app, Action& action);

}  // namespace ab::cli
