// `attn-bench compare BASE NEW`: the CI gate (analysis/compare.hpp, docs/ci.md). BASE and NEW
// are each a report or a directory of reports (repeated runs of one side).
// Exit 0: no regression; 1: a regression; 2: bad usage or input, or nothing compared.
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "analysis/compare.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "core/host_info.hpp"

namespace ab::cli {

namespace {

struct CompareCliOptions {
  std::string base, next;
  std::string metric = "latency";
  std::string max_slowdown = "3%";  // analysis::CompareOptions::max_slowdown says why
  double alpha = 0.05;
  double aggregate_share = 0.5;
  std::string noise;
  std::string noise_floor = fmt::format("{:g}%", analysis::kDefaultNoiseFloor * 100);
  bool unpaired = false;
  bool no_adjust = false;
  bool no_moderate = false;
  std::string save_noise;
  std::string max_drop = "0.01";
  std::string max_rise = "2";
  double tolerance = 1e-9;
  bool allow_mismatch = false;
  std::string markdown, json;
};

void write_file(const std::string& path, const std::string& text, const char* option) {
  std::ofstream f(path);
  if (!f) throw InputError(fmt::format("{}: cannot write '{}'", option, path));
  f << text;
}

int run_compare(const CompareCliOptions& o) {
  analysis::CompareOptions c;
  c.metric = o.metric;
  c.max_slowdown = analysis::parse_fraction(o.max_slowdown, "--max-slowdown");
  c.alpha = o.alpha;
  c.aggregate_share = o.aggregate_share;
  c.noise_floor = analysis::parse_fraction(o.noise_floor, "--noise-floor");
  c.paired = !o.unpaired;
  c.adjust_common_shift = !o.no_adjust;
  c.moderate = !o.no_moderate;
  c.max_drop = analysis::parse_fraction(o.max_drop, "--max-drop");
  c.max_rise = analysis::parse_factor(o.max_rise, "--max-rise");
  if (!(o.tolerance >= 0)) throw InputError("--tolerance must be >= 0");
  c.tolerance = o.tolerance;
  c.allow_mismatch = o.allow_mismatch;
  std::optional<analysis::NoiseCalibration> noise;
  if (!o.noise.empty()) {
    noise = analysis::load_noise(o.noise);
    c.noise = &*noise;
  }
  const auto base = analysis::load_runs(o.base);
  const auto next = analysis::load_runs(o.next);
  for (const auto* side : {&base, &next})
    for (const auto& r : *side)
      for (const auto& w : r.warnings) std::cerr << "warning: " << w << "\n";
  if (!o.save_noise.empty()) {
    // BASE and NEW are the two sides of A/A runs of one binary (e.g. several `ab --aa` output
    // directories' A/ and B/ run files gathered in two directories, paired by name): their
    // calibration, as `ab --aa --save-noise` writes it, with one degree of freedom per pair.
    if (base.size() != next.size() || base.size() < 2)
      throw InputError("--save-noise: BASE and NEW must be directories with the same number (>= 2) of A/A runs");
    analysis::Json meta = {{"spec", {{"sha256", analysis::lookup_text(base.front().doc, "meta.spec.sha256")}}},
                           {"host", base.front().doc["meta"].value("host", analysis::Json::object())},
                           {"threads", analysis::lookup_text(base.front().doc, "meta.run.threads")},
                           {"rounds", base.size()},
                           {"created", utc_timestamp()},
                           {"runs", o.base + " | " + o.next}};
    write_file(o.save_noise, analysis::noise_from_aa(base, next, meta).dump(2) + "\n", "--save-noise");
    std::cerr << fmt::format("wrote the A/A noise calibration of {} run pairs to {}\n", base.size(), o.save_noise);
  }
  const analysis::Comparison cmp = analysis::compare_runs(base, next, c);
  for (const auto& m : cmp.mismatches) std::cerr << "WARNING: not comparable: " << m << "\n";
  std::cout << analysis::render_comparison(cmp);
  std::cout.flush();
  if (!o.markdown.empty()) write_file(o.markdown, analysis::render_comparison_markdown(cmp), "--markdown");
  if (!o.json.empty()) write_file(o.json, analysis::comparison_json(cmp).dump(2) + "\n", "--json");
  if (cmp.rows.empty())
    std::cerr << "error: no case was compared: the two sides share no case id that is ok on "
                 "both with the metric recorded\n";
  return analysis::comparison_exit_code(cmp);
}

}  // namespace

void setup_compare(CLI::App& app, Action& action) {
  auto opts = std::make_shared<CompareCliOptions>();
  CLI::App* sub = app.add_subcommand(
      "compare", "Compare two reports (or two directories of runs) case by case; exit 1 when NEW "
                 "regressed beyond noise");
  sub->add_option("base", opts->base, "Reference: a report, or a directory of reports (runs)")->required();
  sub->add_option("new", opts->next, "To check: a report, or a directory of reports (runs)")->required();
  sub->add_option("--metric,-m", opts->metric, "latency, flops, bytes, density, recall or error")
      ->capture_default_str();
  sub->add_option("--max-slowdown", opts->max_slowdown,
                  "Latency: REGRESSED when new/base exceeds 1 + this and its interval lies above 1 "
                  "(5% or 0.05)")
      ->capture_default_str();
  sub->add_option("--alpha", opts->alpha,
                  "Latency: the chance that identical code fails the gate stays below this (split over the tests)")
      ->capture_default_str();
  sub->add_option("--aggregate-share", opts->aggregate_share,
                  "Latency, several runs a side: the share of alpha spent on the per-variant and summary tests")
      ->capture_default_str();
  sub->add_option("--noise", opts->noise,
                  "Latency: a noise calibration from `attn-bench ab --aa` (run-to-run variance per case)");
  sub->add_option("--noise-floor", opts->noise_floor,
                  "Latency, one report per side without --noise: widen the threshold by this")
      ->capture_default_str();
  sub->add_flag("--unpaired", opts->unpaired,
                "Latency: do not pair run i of BASE with run i of NEW (runs not made in rounds)");
  sub->add_flag("--no-adjust", opts->no_adjust,
                "Latency: do not take out each run's common shift over cases (several runs a side)");
  sub->add_option("--save-noise", opts->save_noise,
                  "Latency: BASE and NEW are A/A runs of one binary (same count, paired by name): also write "
                  "their noise calibration here, for --noise");
  sub->add_flag("--no-moderate", opts->no_moderate,
                "Latency: each case's interval from its own runs only (no variance pooled over cases)");
  sub->add_option("--max-drop", opts->max_drop, "Recall: largest tolerated absolute drop")
      ->capture_default_str();
  sub->add_option("--max-rise", opts->max_rise,
                  "Error: largest tolerated factor (new <= factor x base + 1e-6)")
      ->capture_default_str();
  sub->add_option("--tolerance", opts->tolerance,
                  "flops, bytes, density: relative change tolerated")
      ->capture_default_str();
  sub->add_flag("--allow-mismatch", opts->allow_mismatch,
                "Compare reports made on other hosts, threads, builds, devices or specs (warns)");
  sub->add_option("--markdown", opts->markdown, "Also write the comparison as markdown (a PR comment)");
  sub->add_option("--json", opts->json, "Also write the comparison as JSON");
  sub->callback([opts, &action] { action = [opts] { return run_compare(*opts); }; });
}

}  // namespace ab::cli
