// attn-bench run SPEC: run every case, write the report, print a summary table.
#include "cli/commands.hpp"
#include "backends/backends.hpp"
#include "core/errors.hpp"
#include "spec/spec.hpp"
#include "runner/runner.hpp"
#include "runner/shard.hpp"

#include <cstdlib>

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
  bool isolate = false;
  double timeout = 0;
  std::string resume;
  bool yes = false;
  double budget = 0;
  std::string shard;
  int workers = 0;
  std::string gpus;
  bool measure_peaks = false;
};

// The worker `run --isolate` starts for each case (not listed in --help).
struct WorkerOptions {
  std::string spec;
  std::vector<std::string> sets;
  int index = -1;
  std::string device = "cpu";
  int threads = 0;
  std::string sha256;
  std::string result;
};
}  // namespace

void setup_run(CLI::App& app, Action& action) {
  auto opt = std::make_shared<RunCliOptions>();
  auto* sub = app.add_subcommand("run", "Run every case of a spec and write a JSON report");
  sub->add_option("spec", opt->spec, "YAML experiment spec")->required();
  sub->add_option("-o,--output", opt->output, "report path (default results/runs/<name>-<time>.json; with --resume, that report)");
  sub->add_option("--device", opt->device, "cpu | cuda | fake | auto (default: the spec's, else cpu; fake: the CPU's ops behind device memory, for tests)")
      ->check(CLI::IsMember(device_names()));
  sub->add_option("--filter", opt->filter, "run only cases whose id matches this POSIX extended regex");
  sub->add_option("--set", opt->sets, "override a spec key: KEY=VALUE, e.g. problem.seq_len=[1024,4096] or variants[1].kv_heads=2");
  sub->add_option("--threads", opt->threads, "CPU threads (0 = every CPU this process may use, capped by a cgroup CPU limit)")->check(CLI::Range(0, 4096));
  sub->add_option("--shuffle", opt->shuffle, "run the cases in an order shuffled by this seed (attn-bench ab)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--measure-peaks", opt->measure_peaks,
                "first measure the device's peak compute and bandwidth (seconds) into meta.peaks: the "
                "roofline of `report` and `plot` then uses them");
  sub->add_flag("--dry-run", opt->dry_run, "list the cases with their memory, FLOP and time estimates; run nothing");
  sub->add_flag("-q,--quiet", opt->quiet, "no progress lines on stderr");
  sub->add_option("--emit-cases", opt->emit_cases, "write the cases as JSON (for scripts/peers) and exit");
  sub->add_flag("--isolate", opt->isolate, "run each case in its own worker process: a crash, abort or hang fails that case only");
  sub->add_option("--timeout", opt->timeout, "with --isolate (or a worker pool): seconds a case may take before it is killed and failed")
      ->check(CLI::Range(0.001, 1e7));
  sub->add_option("--resume", opt->resume, "keep the ok/skipped cases of this earlier report of the same spec; run the rest");
  sub->add_flag("--yes", opt->yes, "run even when the estimated time exceeds the budget");
  sub->add_option("--budget", opt->budget, "time budget in seconds above which --yes is needed (default $ATTN_BUDGET_S, else 3600)")
      ->check(CLI::Range(1.0, 1e9));
  sub->add_option("--shard", opt->shard,
                  "run one part of the cases: I/N (0 <= I < N), balanced by estimated cost and the same on every machine; "
                  "auto = this Slurm array task (docs/cluster.md)");
  sub->add_option("--workers", opt->workers, "CPU: run the cases in N worker processes, each pinned to its own cores")
      ->check(CLI::Range(1, 4096));
  sub->add_option("--gpus", opt->gpus, "all | 0,1,...: one worker process per GPU (one GPU too), largest case first");
  sub->callback([opt, &action] {
    action = [opt] {
      if (opt->timeout > 0 && !opt->isolate && opt->workers <= 1 && opt->gpus.empty())
        throw InputError("--timeout needs --isolate, --workers N or --gpus (a case can only be stopped safely in its own process)");
      // Lazily: the runner makes only the cases it runs (a shard of a very large sweep).
      const Experiment ex = load_experiment(opt->spec, opt->sets, /*lazy=*/true);
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
      ro.overrides = opt->sets;
      ro.isolate = opt->isolate;
      ro.timeout_s = opt->timeout;
      ro.resume = opt->resume;
      ro.yes = opt->yes;
      ro.budget_s = opt->budget;
      if (!opt->shard.empty()) ro.shard = parse_shard(opt->shard, [](const char* k) { return std::getenv(k); });
      ro.workers = opt->workers;
      ro.gpus = opt->gpus;
      ro.measure_peaks = opt->measure_peaks;
      if ((ro.workers > 1 || !ro.gpus.empty()) && !opt->emit_cases.empty())
        throw InputError("--emit-cases: not with --workers or --gpus");
      return run_experiment(ex, ro);
    };
  });

  auto w = std::make_shared<WorkerOptions>();
  auto* worker = app.add_subcommand("__case", "worker of run --isolate (internal)");
  worker->group("");  // hidden from --help
  worker->add_option("spec", w->spec)->required();
  worker->add_option("--set", w->sets);
  worker->add_option("--index", w->index)->required();
  worker->add_option("--device", w->device);
  worker->add_option("--threads", w->threads);
  worker->add_option("--sha256", w->sha256)->required();
  worker->add_option("--result", w->result)->required();
  worker->callback([w, &action] {
    action = [w] {
      const Experiment ex = load_experiment(w->spec, w->sets, /*lazy=*/true);  // it needs one case
      if (ex.sha256 != w->sha256)
        throw InputError(w->spec + ": the spec changed while the sweep was running (sha256 differs)");
      return run_case_worker(ex, w->index, w->device, w->threads, w->result);
    };
  });
}

}  // namespace ab::cli
