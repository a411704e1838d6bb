#pragma once
// Runs an experiment's cases: workload -> plan -> run -> metrics -> report (docs/architecture.md).
#include <atomic>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/backend.hpp"
#include "runner/shard.hpp"
#include "spec/spec.hpp"

namespace ab {

struct RunOptions {
  std::string output;      // report path; "" = results/runs/<name>-<UTC time>.json
  std::string device;      // "" = the spec's
  std::string filter;      // POSIX extended regex on case ids; "" = all
  int threads = -1;        // -1 = the spec's (0 = every core)
  bool dry_run = false;    // list the cases, run nothing
  bool quiet = false;      // no progress lines
  std::string emit_cases;  // write the cases as JSON (for peers) and run nothing
  int64_t shuffle_seed = -1;  // >= 0: run the cases in an order shuffled by this seed
  std::vector<std::string> argv;
  std::FILE* table_out = stdout;  // the summary table; nullptr = none
  // Reliability (docs/reliability.md).
  std::vector<std::string> overrides;  // the --set strings the spec was loaded with (for workers, resume)
  bool isolate = false;        // each case in its own worker process
  double timeout_s = 0;        // per case, with isolate; 0 = none
  std::string resume;          // a report of the same spec: keep its ok/skipped cases
  bool yes = false;            // run even when the estimate exceeds the budget
  double budget_s = 0;         // time budget; 0 = $ATTN_BUDGET_S, else 1 hour
  bool preflight = true;       // estimate memory before each case (false: tests of the runner)
  // Scale out (docs/cluster.md).
  std::optional<ShardSpec> shard;  // run only this shard of the (filtered) cases
  int workers = 0;                 // > 1: that many CPU worker processes, each on its own cores
  std::string gpus;                // "all" | "0,1,...": one worker process per GPU ("" = none)
  bool measure_peaks = false;      // measure the device's peaks first, into meta.peaks
};

// The device's measured peaks (Backend::measure_peaks) as the report's meta.peaks and
// `attn-bench peaks` write them: {kind, device, threads, timestamp, tflops: {value, method},
// gbps: {value, method}}. Throws InputError when the backend has no peak microbenchmark.
nlohmann::ordered_json measure_peaks_json(Backend& backend, int threads);
// Sets the CPU kernels' thread count: `requested` when > 0 (from `requested_by`), else
// OMP_NUM_THREADS when set, else default_cpu_threads() (host_info.hpp). Returns the count in
// force and, in *source, where it came from (recorded as meta.run.threads_source).
int apply_cpu_threads(int requested, const std::string& requested_by, std::string* source);

// Runs one case on a backend and returns its report entry (never throws for a case's own
// failure: that is recorded as status "failed" with the reason).
nlohmann::ordered_json run_case(const Experiment& ex, const Case& c, Backend& backend,
                                const std::function<bool()>& interrupted);

// The whole sweep. Returns the exit code: 0 all ok/skipped, 1 a case failed, 130 interrupted
// (SIGINT), 143 terminated (SIGTERM).
int run_experiment(const Experiment& ex, const RunOptions& opts);

// The worker of `run --isolate`: runs case `index` of the spec and writes its report entry to
// `result` (hidden subcommand `attn-bench __case`). Returns 0 when the entry was written.
int run_case_worker(const Experiment& ex, int index, const std::string& device, int threads,
                    const std::string& result);

// A case's report entry before it runs (id, variant, params, problem; status ok, no metrics):
// what a worker that died leaves to report.
nlohmann::ordered_json case_entry_stub(const Case& c, const std::string& backend);

// Cases whose id matches the filter (InputError for a bad regex): their indices (any
// experiment), or pointers into ex.cases (an experiment loaded eagerly).
std::vector<size_t> select_case_indices(const Experiment& ex, const std::string& filter);
std::vector<const Case*> select_cases(const Experiment& ex, const std::string& filter);

// The case's problem, the shape its variant runs and the mask, as JSON (report and peers).
nlohmann::ordered_json problem_json(const Problem& p);
nlohmann::ordered_json shape_json(const AttnShape& s);

}  // namespace ab
