// `attn-bench table REPORT... [--format md|csv|latex] [--metric M] [--baseline VARIANT]
//  [--rows AXIS] [--cols AXIS]`: pivot report cases into a paper table (analysis/table.hpp).
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
};

int run_table(const TableOptions& o) {
  const std::vector<std::string> formats = {"md", "csv", "latex"};
  if (std::find(formats.begin(), formats.end(), o.format) == formats.end())
    throw InputError(fmt::format("unknown --format '{}': {}", o.format, suggest(o.format, formats)));
  std::vector<analysis::Report> reports;
  for (const auto& path : o.reports) reports.push_back(analysis::load_report(path));
  for (const auto& r : reports)
    for (const auto& w : r.warnings) std::cerr << "warning: " << w << "\n";

  const analysis::Table t = analysis::build_table(reports, o.table);
  for (const auto& w : t.warnings) std::cerr << "warning: " << w << "\n";
  if (o.format == "md") {
    std::cout << analysis::render_markdown(t);
  } else if (o.format == "csv") {
    // stdout stays pure RFC 4180; the title and legend go to stderr.
    std::cout << analysis::render_csv(t);
    std::cerr << t.title << "\n" << t.legend << "\n";
  } else {
    std::cout << analysis::render_latex(t);
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
  sub->add_option("--format,-f", opts->format, "Output format: md, csv or latex")
      ->capture_default_str();
  sub->add_option("--metric,-m", opts->table.metric,
                  "speedup (default when a baseline exists), latency, latency_attention, "
                  "latency_plan, tflops, tflops_dense, gbps, error, max_abs, recall, "
                  "output_error, density, gflops; or several, comma-separated, side by side "
                  "(e.g. recall,speedup)");
  sub->add_option("--baseline,-b", opts->table.baseline,
                  "Variant or label of the speedup baseline (default: each report's "
                  "meta.run.baseline); looked up by problem key within each case's own report");
  sub->add_option("--rows", opts->table.rows,
                  "Row axis (default label): label, variant, key, id, backend, report, a "
                  "problem field (q_len, kv_len, seq_len, heads, kv_heads, head_dim, v_dim, "
                  "batch, causal, mode, dtype) or param.NAME");
  sub->add_option("--cols", opts->table.cols,
                  "Column axis (same names; default: the problem field that varies, or key)");
  sub->callback([opts, &action] { action = [opts] { return run_table(*opts); }; });
}

}  // namespace ab::cli
