// attn-bench validate SPEC: parse and validate; print the cases and their pre-flight estimates.
#include <cstdio>

#include "backends/backends.hpp"
#include "cli/commands.hpp"
#include "spec/spec.hpp"
#include "runner/preflight.hpp"

namespace ab::cli {

namespace {
struct ValidateOptions {
  std::string spec;
  std::vector<std::string> sets;
  std::string device;
  int show = 5;
};
}  // namespace

void setup_validate(CLI::App& app, Action& action) {
  auto opt = std::make_shared<ValidateOptions>();
  auto* sub = app.add_subcommand("validate", "Parse and validate a spec; print its cases with memory, FLOP and time estimates");
  sub->add_option("spec", opt->spec, "YAML experiment spec")->required();
  sub->add_option("--set", opt->sets, "override a spec key: KEY=VALUE (KEY may index lists: variants[1].kv_heads)");
  sub->add_option("--device", opt->device, "estimate for cpu | cuda | fake | auto (default: the spec's; the CPU when no GPU is usable)")
      ->check(CLI::IsMember(device_names()));
  sub->add_option("--show", opt->show, "how many cases to print")->check(CLI::Range(0, 1000000));
  sub->callback([opt, &action] {
    action = [opt] {
      // Lazily: a spec of very many cases is checked and estimated one case at a time.
      const Experiment ex = load_experiment(opt->spec, opt->sets, /*lazy=*/true);
      const size_t n = ex.case_count();
      const size_t skipped = ex.skipped_cases;
      std::printf("%s: valid, %zu cases", opt->spec.c_str(), n);
      if (skipped) std::printf(" (%zu skipped: the variant does not fit that point of the sweep)", skipped);
      std::printf("\n");
      // The estimates are for the device the run would use; validating a GPU spec on a
      // machine without one estimates for the CPU, and says so.
      std::string note;
      std::unique_ptr<Backend> backend;
      try {
        backend = make_backend(opt->device.empty() ? ex.device : opt->device, &note);
      } catch (const std::exception& e) {
        note = std::string(e.what()) + "; estimating for the CPU";
        backend = make_backend("cpu", nullptr);
      }
      if (!note.empty()) std::printf("note: %s\n", note.c_str());
      print_preflight(ex, n, [&](size_t i) { return ex.case_at(i); }, *backend, static_cast<size_t>(opt->show), stdout);
      return 0;
    };
  });
}

}  // namespace ab::cli
