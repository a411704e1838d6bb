// `attn-bench report REPORT... -o report.html [--baseline B] [--peak-tflops T --peak-gbps G]`:
// one self-contained HTML page of figures (figures/html_report.hpp; docs/figures.md).
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>

#include "analysis/table.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "figures/html_report.hpp"

namespace ab::cli {

namespace {

struct ReportOptions {
  std::vector<std::string> reports;
  std::string output;
  figures::FigureOptions fig;
  std::string peaks_file;
};

int run_report(const ReportOptions& o) {
  std::vector<analysis::Report> reports;
  for (const auto& path : o.reports) reports.push_back(analysis::load_report(path));
  for (const auto& r : reports)
    for (const auto& w : r.warnings) std::cerr << "warning: " << w << "\n";
  figures::FigureOptions fig = o.fig;
  if (!o.peaks_file.empty()) figures::load_peaks_file(o.peaks_file, fig);
  const std::string html = figures::html_report(reports, fig);
  std::ofstream f(o.output, std::ios::binary | std::ios::trunc);
  if (!f) throw InputError(fmt::format("report: cannot write '{}': {}", o.output, std::strerror(errno)));
  f << html;
  f.close();
  if (!f) throw InputError(fmt::format("report: write to '{}' failed: {}", o.output, std::strerror(errno)));
  std::cerr << fmt::format("wrote {} ({} KiB)\n", o.output, (html.size() + 1023) / 1024);
  return kExitOk;
}

}  // namespace

void setup_report(CLI::App& app, Action& action) {
  auto opts = std::make_shared<ReportOptions>();
  CLI::App* sub = app.add_subcommand(
      "report", "Write one self-contained HTML page of figures (latency, speedup, Pareto, NIAH, roofline)");
  sub->add_option("reports", opts->reports, "Report JSON files")->required();
  sub->add_option("--output,-o", opts->output, "The HTML file to write")->required();
  sub->add_option("--baseline,-b", opts->fig.baseline,
                  "Variant or label of the speedup baseline (default: each report's meta.run.baseline)");
  sub->add_option("--peak-tflops", opts->fig.peak_tflops,
                  "Measured peak compute of the machine for the roofline, TFLOP/s")
      ->check(CLI::PositiveNumber);
  sub->add_option("--peak-gbps", opts->fig.peak_gbps, "Measured peak memory bandwidth for the roofline, GB/s")
      ->check(CLI::PositiveNumber);
  sub->add_option("--peaks", opts->peaks_file,
                  "The roofline's roof from a file of `attn-bench peaks -o FILE` (default: each report's "
                  "meta.peaks, from `run --measure-peaks`)")
      ->excludes("--peak-tflops")
      ->excludes("--peak-gbps");
  sub->callback([opts, &action] { action = [opts] { return run_report(*opts); }; });
}

}  // namespace ab::cli
