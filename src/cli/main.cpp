// attn-bench: benchmark and evaluate attention mechanisms from a YAML spec.
#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "core/errors.hpp"

namespace ab::cli {
std::vector<std::string>& program_argv() {
  static std::vector<std::string> argv;
  return argv;
}
}  // namespace ab::cli

int main(int argc, char** argv) {
  ab::cli::program_argv().assign(argv, argv + argc);
  CLI::App app{"attn-bench: measure attention variants (FLOPs, latency, accuracy) from a YAML spec",
               "attn-bench"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "attn-bench 0.1.0");
  ab::cli::Action action;
  ab::cli::setup_run(app, action);
  ab::cli::setup_validate(app, action);
  ab::cli::setup_list(app, action);
  ab::cli::setup_table(app, action);
  ab::cli::setup_compare(app, action);
  ab::cli::setup_ab(app, action);
  ab::cli::setup_env(app, action);
  ab::cli::setup_inspect(app, action);
  ab::cli::setup_report(app, action);
  ab::cli::setup_plot(app, action);
  ab::cli::setup_merge(app, action);
  ab::cli::setup_peaks(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are not errors (exit 0); usage errors exit 2.
    const int rc = app.exit(e);
    return rc == 0 ? 0 : ab::kExitInput;
  }
  try {
    return action ? action() : ab::kExitInput;
  } catch (const ab::InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return ab::kExitInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return ab::kExitRuntime;
  }
}
