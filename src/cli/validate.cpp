// attn-bench validate SPEC: parse and validate only.
#include <cstdio>

#include "cli/commands.hpp"
#include "core/spec.hpp"

namespace ab::cli {

namespace {
struct ValidateOptions {
  std::string spec;
  std::vector<std::string> sets;
  int show = 5;
};
}  // namespace

void setup_validate(CLI::App& app, Action& action) {
  auto opt = std::make_shared<ValidateOptions>();
  auto* sub = app.add_subcommand("validate", "Parse and validate a spec; print its cases");
  sub->add_option("spec", opt->spec, "YAML experiment spec")->required();
  sub->add_option("--set", opt->sets, "override a spec key: KEY=VALUE");
  sub->add_option("--show", opt->show, "how many case ids to print")->check(CLI::Range(0, 1000000));
  sub->callback([opt, &action] {
    action = [opt] {
      const Experiment ex = load_experiment(opt->spec, opt->sets);
      std::printf("%s: valid, %zu cases\n", opt->spec.c_str(), ex.cases.size());
      const size_t n = std::min(ex.cases.size(), static_cast<size_t>(opt->show));
      for (size_t i = 0; i < n; ++i) std::printf("  %s\n", ex.cases[i].id.c_str());
      if (n < ex.cases.size()) std::printf("  ... and %zu more\n", ex.cases.size() - n);
      return 0;
    };
  });
}

}  // namespace ab::cli
