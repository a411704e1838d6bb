// `attn-bench compare BASE NEW [--metric latency|recall|error] [--max-slowdown 5%]
//  [--alpha 0.05] [--max-drop 0.01] [--max-rise 2]`: the CI gate (analysis/compare.hpp).
// Exit 0: no regression; 1: a regression; 2: bad usage or input.
#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <string>

#include "analysis/compare.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"

namespace ab::cli {

namespace {

struct CompareOptions {
  std::string base, next;
  std::string metric = "latency";
  std::string max_slowdown = "5%";
  double alpha = 0.05;
  std::string max_drop = "0.01";
  std::string max_rise = "2";
};

int run_compare(const CompareOptions& o) {
  analysis::CompareOptions c;
  c.metric = o.metric;
  c.max_slowdown = analysis::parse_fraction(o.max_slowdown, "--max-slowdown");
  c.alpha = o.alpha;
  c.max_drop = analysis::parse_fraction(o.max_drop, "--max-drop");
  c.max_rise = analysis::parse_factor(o.max_rise, "--max-rise");
  const analysis::Report base = analysis::load_report(o.base);
  const analysis::Report next = analysis::load_report(o.next);
  for (const auto* r : {&base, &next})
    for (const auto& w : r->warnings) std::cerr << "warning: " << w << "\n";
  const analysis::Comparison cmp = analysis::compare_reports(base, next, c);
  std::cout << analysis::render_comparison(cmp);
  std::cout.flush();
  return analysis::comparison_exit_code(cmp);
}

}  // namespace

void setup_compare(CLI::App& app, Action& action) {
  auto opts = std::make_shared<CompareOptions>();
  CLI::App* sub = app.add_subcommand(
      "compare", "Compare two reports case by case; exit 1 when NEW regressed beyond noise");
  sub->add_option("base", opts->base, "Reference report (JSON)")->required();
  sub->add_option("new", opts->next, "Report to check (JSON)")->required();
  sub->add_option("--metric,-m", opts->metric, "latency, recall or error")->capture_default_str();
  sub->add_option("--max-slowdown", opts->max_slowdown,
                  "Latency: slowdown tolerated before a significant change counts (5% or 0.05)")
      ->capture_default_str();
  sub->add_option("--alpha", opts->alpha, "Latency: significance level of the Mann-Whitney U test")
      ->capture_default_str();
  sub->add_option("--max-drop", opts->max_drop, "Recall: largest tolerated absolute drop")
      ->capture_default_str();
  sub->add_option("--max-rise", opts->max_rise,
                  "Error: largest tolerated factor (new <= factor x base + 1e-6)")
      ->capture_default_str();
  sub->callback([opts, &action] { action = [opts] { return run_compare(*opts); }; });
}

}  // namespace ab::cli
