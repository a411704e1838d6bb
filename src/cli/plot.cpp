// `attn-bench plot REPORT... --kind latency|speedup|pareto|niah|roofline --format svg|pgfplots
//  [-o FILE]`: the report's figures of one kind, for slides (SVG) or a LaTeX paper (PGFPlots).
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>

#include "analysis/table.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "figures/report_figures.hpp"

namespace ab::cli {

namespace {

struct PlotOptions {
  std::vector<std::string> reports;
  std::string kind;
  std::string format = "svg";
  std::string output;  // "" = stdout; with several figures, FILE gets -1, -2, … before its extension
  figures::FigureOptions fig;
  std::string peaks_file;
};

std::string numbered(const std::string& path, size_t i, size_t n) {
  if (n == 1) return path;
  const auto dot = path.rfind('.');
  const auto slash = path.rfind('/');
  const bool ext = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return ext ? fmt::format("{}-{}{}", path.substr(0, dot), i + 1, path.substr(dot))
             : fmt::format("{}-{}", path, i + 1);
}

int run_plot(const PlotOptions& o) {
  const figures::FigureKind kind = figures::parse_figure_kind(o.kind);
  const std::vector<std::string> formats = {"svg", "pgfplots"};
  if (std::find(formats.begin(), formats.end(), o.format) == formats.end())
    throw InputError(fmt::format("unknown --format '{}': {}", o.format, suggest(o.format, formats)));
  std::vector<analysis::Report> reports;
  for (const auto& path : o.reports) reports.push_back(analysis::load_report(path));
  for (const auto& r : reports)
    for (const auto& w : r.warnings) std::cerr << "warning: " << w << "\n";
  figures::FigureOptions fig = o.fig;
  if (!o.peaks_file.empty()) figures::load_peaks_file(o.peaks_file, fig);
  const figures::FigureSet fs = figures::build_figures(reports, kind, fig);
  if (fs.figures.empty())
    throw InputError(fmt::format("plot --kind {}: nothing to draw: {}", o.kind, fs.why_none));
  for (size_t i = 0; i < fs.figures.size(); ++i) {
    const auto& f = fs.figures[i];
    const std::string text = o.format == "svg" ? figures::to_svg(f) : figures::to_pgfplots(f);
    if (o.output.empty()) {
      std::cout << text;
      continue;
    }
    const std::string path = numbered(o.output, i, fs.figures.size());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(fmt::format("plot: cannot write '{}': {}", path, std::strerror(errno)));
    out << text;
    std::cerr << "wrote " << path << ": " << f.title << "\n";
  }
  return kExitOk;
}

}  // namespace

void setup_plot(CLI::App& app, Action& action) {
  auto opts = std::make_shared<PlotOptions>();
  CLI::App* sub = app.add_subcommand("plot", "Draw one kind of figure as SVG or PGFPlots (for LaTeX papers)");
  sub->add_option("reports", opts->reports, "Report JSON files")->required();
  sub->add_option("--kind,-k", opts->kind, "latency, speedup, pareto, niah or roofline")->required();
  sub->add_option("--format,-f", opts->format, "svg or pgfplots")->capture_default_str();
  sub->add_option("--output,-o", opts->output,
                  "File to write (default stdout); several figures become FILE-1.ext, FILE-2.ext, …");
  sub->add_option("--baseline,-b", opts->fig.baseline,
                  "Variant or label of the speedup baseline (default: each report's meta.run.baseline)");
  sub->add_option("--peak-tflops", opts->fig.peak_tflops, "Measured peak compute for the roofline, TFLOP/s")
      ->check(CLI::PositiveNumber);
  sub->add_option("--peak-gbps", opts->fig.peak_gbps, "Measured peak bandwidth for the roofline, GB/s")
      ->check(CLI::PositiveNumber);
  sub->add_option("--peaks", opts->peaks_file,
                  "The roofline's roof from a file of `attn-bench peaks -o FILE` (default: each report's "
                  "meta.peaks, from `run --measure-peaks`)")
      ->excludes("--peak-tflops")
      ->excludes("--peak-gbps");
  sub->callback([opts, &action] { action = [opts] { return run_plot(*opts); }; });
}

}  // namespace ab::cli
