// `attn-bench table REPORT... [--format md|csv|latex|long] [--metric M] [--baseline VARIANT]
//  [--rows AXIS] [--cols AXIS] [--aggregate] [--float] [--significance] [--plain]`: pivot
// report cases into a paper table (analysis/table.hpp; docs/tables.md).
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "analysis/table.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"

namespace ab::cli {

namespace {

struct TableOptions {
  std::vector<std::string> reports;
  std::string format = "md";
  analysis::TableOptions table;
  bool aggregate = false;
  bool float_env = false;
  bool plain = false;
};

int run_table(const TableOptions& o) {
  const std::vector<std::string> formats = {"md", "csv", "latex", "long"};
  if (std::find(formats.begin(), formats.end(), o.format) == formats.end())
    throw InputError(fmt::format("unknown --format '{}': {}", o.format, suggest(o.format, formats)));
  std::vector<analysis::Report> reports;
  for (const auto& path : o.reports) reports.push_back(analysis::load_report(path));
  if (o.aggregate) reports = {analysis::aggregate_reports(reports)};
  for (const auto& r : reports)
    for (const auto& w : r.warnings) std::cerr << "warning: " << w << "\n";
  analysis::TableOptions opts = o.table;
  if (o.plain) opts.intervals = opts.bold_best = false;

  if (o.format == "long") {
    std::cout << analysis::render_long_csv(reports, opts);
    std::cout.flush();
    return kExitOk;
  }
  const analysis::Table t =
      opts.metric == "niah" ? analysis::build_niah_table(reports, opts) : analysis::build_table(reports, opts);
  for (const auto& w : t.warnings) std::cerr << "warning: " << w << "\n";
  if (o.format == "md") {
    std::cout << analysis::render_markdown(t);
  } else if (o.format == "csv") {
    // stdout stays pure RFC 4180; the title, legend and notes go to stderr.
    std::cout << analysis::render_csv(t);
    std::cerr << t.title << "\n" << t.legend << "\n";
    for (const auto& n : t.notes) std::cerr << n << "\n";
  } else {
    std::cout << analysis::render_latex(t, o.float_env);
  }
  std::cout.flush();
  return kExitOk;
}

}  // namespace

void setup_table(CLI::App& app, Action& action) {
  auto opts = std::make_shared<TableOptions>();
  CLI::App* sub = app.add_subcommand(
      "table", "Turn reports into a table (markdown, CSV or LaTeX) of one metric per case");
  sub->add_option("reports", opts->reports, "Report JSON files (cases of all are pooled)")
      ->required();
  sub->add_option("--format,-f", opts->format,
                  "Output format: md, csv, latex, or long (one CSV row per case x metric, full "
                  "precision, for plotting elsewhere)")
      ->capture_default_str();
  sub->add_option("--metric,-m", opts->table.metric,
                  "speedup (default when a baseline exists), latency, latency_attention, "
                  "latency_plan, tflops, tflops_dense, gbps, error, max_abs, recall, "
                  "output_error, density, gflops, niah; or several, comma-separated, side by side "
                  "(e.g. recall,speedup). `niah` alone: the NIAH heat map (length x depth)");
  sub->add_option("--baseline,-b", opts->table.baseline,
                  "Variant or label of the speedup baseline (default: each report's "
                  "meta.run.baseline); looked up by problem key within each case's own report");
  sub->add_option("--rows", opts->table.rows,
                  "Row axis (default label): label, variant, key, id, backend, report, a "
                  "problem field (q_len, kv_len, seq_len, heads, kv_heads, head_dim, v_dim, "
                  "batch, causal, mode, dtype) or param.NAME");
  sub->add_option("--cols", opts->table.cols,
                  "Column axis (same names; default: the problem field that varies, or key)");
  sub->add_flag("--aggregate", opts->aggregate,
               "Merge repeated reports of one spec: pool each case's latency samples");
  sub->add_flag("--significance", opts->table.significance,
                "Mark with * the cells whose latency samples differ from the baseline's "
                "(two-sided Mann-Whitney U, p < --alpha)");
  sub->add_option("--alpha", opts->table.alpha, "Significance level for --significance")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_flag("--plain", opts->plain, "Numbers only: no ± interval, no bold best entry");
  sub->add_flag("--float", opts->float_env,
                "latex: wrap the tabular in a table float with a \\caption stating the conventions");
  sub->callback([opts, &action] { action = [opts] { return run_table(*opts); }; });
}

}  // namespace ab::cli
