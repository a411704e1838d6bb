#pragma once
// The CI gate (`attn-bench compare BASE NEW`, `attn-bench ab`): match cases by id and decide,
// per case, whether NEW regressed against BASE beyond noise. docs/ci.md states the rule.
//
// Latency: each side is one or more runs (reports). The unit of replication is the run: per
// case the estimate is the ratio of the geometric means of per-run medians, with a confidence
// interval from the spread of per-run medians (ratio_interval.hpp). A case REGRESSED when the
// interval's lower bound exceeds 1 + max_slowdown: slower by more than the threshold with the
// interval's confidence. With one run per side and no noise calibration, run-to-run variance
// is unknown: the interval is a within-run bootstrap and the threshold is widened by a noise
// floor (kDefaultNoiseFloor, or --noise-floor).
//
// flops, bytes, density, recall, error: deterministic figures, compared exactly or within a
// tolerance, with no significance test.
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "analysis/ratio_interval.hpp"
#include "analysis/table.hpp"

namespace ab::analysis {

// The noise floor a single-run comparison adds to its threshold when no calibration is
// given: the largest |log ratio| of per-run medians between two runs of one binary on
// configs/quick.yaml measured on a loaded 2-core machine (docs/ci.md, "The noise floor").
inline constexpr double kDefaultNoiseFloor = 0.35;

// A machine's run-to-run noise per case, measured by `attn-bench ab --aa` (docs/ci.md).
struct CaseNoise {
  double sigma = 0;  // standard deviation of one run's log median (≈ relative spread)
  double df = 0;     // degrees of freedom of that estimate
  double median_s = 0;
};
struct NoiseCalibration {
  std::string path;
  Json meta;                               // spec, host, threads, rounds of the A/A
  std::map<std::string, CaseNoise> cases;  // by case id
};
NoiseCalibration load_noise(const std::string& path);  // InputError when unreadable/invalid

struct CompareOptions {
  std::string metric = "latency";  // latency | flops | bytes | density | recall | error
  // Latency: REGRESSED needs the ratio above 1 + this (and the interval above 1). 3%: in A/A
  // decisions of one binary on the 2-core machine here, one variant's mean sat 2-2.5% off on
  // one side through all 8 rounds of a decision (e.g. sqa 1.025 [1.003, 1.047]), a shift no
  // number of rounds averages away (docs/ci.md, "Choosing a threshold").
  double max_slowdown = 0.03;
  double alpha = 0.05;             // latency: the interval covers 1 − alpha
  // Latency, several runs a side: the share of alpha spent on the per-variant tests and the
  // summary; the cases share the rest (weighted Bonferroni; compare.cpp says why).
  double aggregate_share = 0.5;
  double noise_floor = kDefaultNoiseFloor;  // latency, one run per side, no calibration
  const NoiseCalibration* noise = nullptr;  // latency: pooled into the run-to-run variance
  bool paired = true;              // pair run i of BASE with run i of NEW when counts match
  bool adjust_common_shift = true; // latency, >= 2 runs a side, >= 5 cases: see compare.cpp
  bool moderate = true;            // latency, >= 2 runs a side, >= 5 cases: pool case variances
  double max_drop = 0.01;          // recall: regression when it drops by more (absolute)
  double max_rise = 2.0;           // error: regression when new > max_rise · base + abs_floor
  double abs_floor = 1e-6;
  double tolerance = 1e-9;         // flops/bytes/density: relative change tolerated
  bool allow_mismatch = false;     // different host/threads/build/device/spec: warn, not refuse
};

enum class Verdict { ok, faster, slower_not_significant, improved, regressed };
std::string_view verdict_name(Verdict v);  // ok, faster, slower-not-significant, improved, REGRESSED

struct CaseDelta {
  std::string id;
  double base = 0, next = 0;   // latency: geometric mean of per-run medians (s); else values
  double ratio = 0;            // next / base (inf when base is 0 and next is not)
  double delta = 0;            // next − base
  std::optional<double> ci_lo, ci_hi;  // latency: the interval of the ratio
  std::string method;          // latency: how the interval was made (ratio_interval.hpp)
  double threshold = 0;        // latency: the ratio the lower bound must exceed, minus 1
  std::optional<double> p;     // latency, one run per side: Mann–Whitney U p (information)
  std::size_t runs_base = 0, runs_next = 0;
  std::size_t n_base = 0, n_next = 0;  // samples, all runs together
  bool rse_unmet = false;      // a run stopped at max_samples/max_time above its target RSE
  std::string note;
  Verdict verdict = Verdict::ok;
};

// Latency with several runs a side: the cases of one variant (label) together. A change in a
// variant's kernel moves all its cases, and their mean log ratio has a smaller standard error
// than any one case's, so a slowdown too small to flag in any case can be flagged here.
struct GroupDelta {
  std::string variant;         // the case ids' part before the first '/'
  std::size_t cases = 0;
  double ratio = 0;            // geometric mean over the cases of new/base (shift-adjusted)
  std::optional<double> ci_lo, ci_hi;
  Verdict verdict = Verdict::ok;
};

struct NotCompared {
  std::string id;
  std::string base_status, next_status;  // ok | skipped | failed
  std::string reason;
};

struct Comparison {
  std::string metric;
  std::string metric_source;   // the JSON path(s) the values came from
  std::vector<std::string> base_paths, next_paths;
  CompareOptions opts;
  std::string noise_path;      // the calibration used, "" for none
  bool single_run = false;     // latency: one run per side (run-to-run variance unknown)
  bool paired = false;         // latency: runs paired by round
  bool adjusted = false;       // latency: per-case ratios relative to each run's common shift
  double case_level = 0;       // latency: coverage of each case's interval
  double aggregate_level = 0;  // latency, several runs a side: coverage of the variants' and the summary's
  double prior_var = 0, prior_df = 0;  // latency: the moderation prior (0 df: none)
  std::size_t tests = 0;       // latency: the cases, plus the groups and the summary with several runs a side
  std::size_t aggregate_tests = 0;  // latency: the groups and the summary (0 with one run a side)
  std::vector<CaseDelta> rows;          // matched, ok on both sides, metric present
  std::vector<GroupDelta> groups;       // latency, >= 2 runs a side: variants with >= 2 cases
  std::size_t group_regressions = 0;    // groups REGRESSED
  std::vector<NotCompared> not_compared;
  std::vector<std::string> only_base, only_next;
  // latency/error/flops/bytes/density: geometric mean ratio; recall: mean delta
  std::optional<double> summary;
  std::optional<double> summary_lo, summary_hi;  // latency with >= 2 runs on a side
  bool summary_regressed = false;       // the summary's lower bound exceeds 1 + max_slowdown
  std::size_t regressions = 0;          // cases REGRESSED
  std::size_t rse_unmet = 0;            // rows with rse_unmet
  std::vector<std::string> mismatches;  // allowed by allow_mismatch; printed as warnings
  std::vector<std::string> notes;
};

// One report per side.
Comparison compare_reports(const Report& base, const Report& next, const CompareOptions& opts);
// Several runs per side (the runs of one side in the order they were made).
Comparison compare_runs(const std::vector<Report>& base, const std::vector<Report>& next,
                        const CompareOptions& opts);

// How the reports' meta differ in what makes timings comparable (host, CPU, threads, device,
// build flags, compiler, spec sha256): one line per difference, empty when none.
std::vector<std::string> meta_mismatches(const std::vector<Report>& base,
                                         const std::vector<Report>& next);

std::string render_comparison(const Comparison& c);           // text for a terminal
std::string render_comparison_markdown(const Comparison& c);  // a pull-request comment
Json comparison_json(const Comparison& c);
// 2 when nothing was compared (no matched case), 1 when a case or the summary regressed,
// else 0.
int comparison_exit_code(const Comparison& c);

// Reports from paths: a file is one run; a directory is every *.json in it, sorted by name.
std::vector<Report> load_runs(const std::string& path);

// "5%" -> 0.05, "0.05" -> 0.05. A bare number above 1 is refused as ambiguous ("5" may mean
// 5% or 500%). Throws InputError naming `option`.
double parse_fraction(const std::string& text, const std::string& option);
// "2", "2x", "2×" -> 2. Must be >= 1. Throws InputError naming `option`.
double parse_factor(const std::string& text, const std::string& option);

std::vector<std::string> compare_metric_names();

// The per-run log medians of latency (samples when present, else metrics.latency.median),
// by case id, of ok cases: the input of a noise calibration.
std::map<std::string, double> run_log_medians(const Report& r);
// A calibration from the runs of an A/A (both sides the same binary, paired by round):
// sigma² = Σ d_i² / (2R) over rounds (d_i = log median difference of round i; its mean is 0
// by construction), df = R. `meta` is stored as is.
Json noise_from_aa(const std::vector<Report>& a, const std::vector<Report>& b, const Json& meta);

}  // namespace ab::analysis
