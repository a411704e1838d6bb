// attn-bench run SPEC: run every case, write the report, print a summary table.
#include "cli/commands.hpp"
#include "core/spec.hpp"
#include "runner/runner.hpp"

namespace ab::cli {

namespace {
struct RunCliOptions {
  std::string spec;
  std::string output;
  std::string device;
  std::string filter;
  std::vector<std::string> sets;
  int threads = -1;
  int64_t shuffle = -1;
  bool dry_run = false;
  bool quiet = false;
  std::string emit_cases;
};
}  // namespace

void setup_run(CLI::App& app, Action& action) {
  auto opt = std::make_shared<RunCliOptions>();
  auto* sub = app.add_subcommand("run", "Run every case of a spec and write a JSON report");
  sub->add_option("spec", opt->spec, "YAML experiment spec")->required();
  sub->add_option("-o,--output", opt->output, "report path (default results/runs/<name>-<time>.json)");
  sub->add_option("--device", opt->device, "cpu | cuda | auto (default: the spec's, else cpu)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  sub->add_option("--filter", opt->filter, "run only cases whose id matches this regex");
  sub->add_option("--set", opt->sets, "override a spec key: KEY=VALUE, e.g. problem.seq_len=[1024,4096]");
  sub->add_option("--threads", opt->threads, "CPU threads (0 = every core)")->check(CLI::Range(0, 4096));
  sub->add_option("--shuffle", opt->shuffle, "run the cases in an order shuffled by this seed (attn-bench ab)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--dry-run", opt->dry_run, "list the cases without running them");
  sub->add_flag("-q,--quiet", opt->quiet, "no progress lines on stderr");
  sub->add_option("--emit-cases", opt->emit_cases, "write the cases as JSON (for scripts/peers) and exit");
  sub->callback([opt, &action] {
    action = [opt] {
      const Experiment ex = load_experiment(opt->spec, opt->sets);
      RunOptions ro;
      ro.output = opt->output;
      ro.device = opt->device;
      ro.filter = opt->filter;
      ro.threads = opt->threads;
      ro.shuffle_seed = opt->shuffle;
      ro.dry_run = opt->dry_run;
      ro.quiet = opt->quiet;
      ro.emit_cases = opt->emit_cases;
      ro.argv = program_argv();
      return run_experiment(ex, ro);
    };
  });
}

}  // namespace ab::cli
