#pragma once
// The CI gate (`attn-bench compare BASE NEW`): match cases by id and decide, per case,
// whether NEW regressed against BASE beyond noise. Latency uses the stored samples and a
// two-sided Mann–Whitney U test (stats.hpp); recall and error have no samples and use
// absolute/relative thresholds only.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "analysis/table.hpp"

namespace ab::analysis {

struct CompareOptions {
  std::string metric = "latency";  // latency | recall | error
  double max_slowdown = 0.05;      // latency: regression needs ratio > 1 + max_slowdown …
  double alpha = 0.05;             // … and p < alpha
  double max_drop = 0.01;          // recall: regression when it drops by more (absolute)
  double max_rise = 2.0;           // error: regression when new > max_rise · base + abs_floor
  double abs_floor = 1e-6;
};

enum class Verdict { ok, faster, slower_not_significant, improved, regressed };
std::string_view verdict_name(Verdict v);  // ok, faster, slower-not-significant, improved, REGRESSED

struct CaseDelta {
  std::string id;
  double base = 0, next = 0;   // latency: medians in seconds; else the metric values
  double ratio = 0;            // next / base (inf when base is 0 and next is not)
  double delta = 0;            // next − base
  std::optional<double> p;     // latency with samples on both sides
  bool exact = false;          // p from the exact U distribution (else normal approximation)
  std::size_t n_base = 0, n_next = 0;
  std::string note;            // e.g. "no samples: medians only", "n=3/3 cannot reach p<0.05"
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
  std::string base_path, next_path;
  CompareOptions opts;
  std::vector<CaseDelta> rows;          // matched, ok on both sides, metric present
  std::vector<NotCompared> not_compared;
  std::vector<std::string> only_base, only_next;
  std::optional<double> summary;        // latency/error: geometric mean ratio; recall: mean delta
  std::size_t regressions = 0;
  std::vector<std::string> notes;
};

Comparison compare_reports(const Report& base, const Report& next, const CompareOptions& opts);
std::string render_comparison(const Comparison& c);
// 1 when any case regressed, else 0 (DESIGN.md §8).
int comparison_exit_code(const Comparison& c);

// "5%" -> 0.05, "0.05" -> 0.05. A bare number above 1 is refused as ambiguous ("5" may mean
// 5% or 500%). Throws InputError naming `option`.
double parse_fraction(const std::string& text, const std::string& option);
// "2", "2x", "2×" -> 2. Must be >= 1. Throws InputError naming `option`.
double parse_factor(const std::string& text, const std::string& option);

std::vector<std::string> compare_metric_names();

}  // namespace ab::analysis
