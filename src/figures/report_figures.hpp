#pragma once
// The figures of finished reports (docs/figures.md): latency and speedup against sequence
// length, recall against speedup with the Pareto front, NIAH heat maps, a roofline. Each
// builder returns zero or more figures (one per problem group) and, when it draws nothing, why.
#include <cmath>
#include <string>
#include <vector>

#include "analysis/table.hpp"
#include "figures/plot.hpp"

namespace ab::figures {

enum class FigureKind { latency, speedup, pareto, niah, roofline };
const std::vector<std::string>& figure_kind_names();  // latency, speedup, pareto, niah, roofline
FigureKind parse_figure_kind(const std::string& name);  // InputError with the closest name

struct FigureOptions {
  std::string baseline;          // "" = each report's meta.run.baseline
  double peak_tflops = NAN;      // measured machine peaks for the roofline; NaN = none given
  double peak_gbps = NAN;        // (else each report's meta.peaks, from `run --measure-peaks`)
  std::string peaks_source;      // where the given peaks come from (a file of `attn-bench peaks`)
};

// Reads a file written by `attn-bench peaks -o FILE` into opts (peak_tflops, peak_gbps,
// peaks_source); InputError when it is not one.
void load_peaks_file(const std::string& path, FigureOptions& opts);

struct FigureSet {
  std::vector<Figure> figures;
  std::string why_none;  // when figures is empty: what the reports lack
};

FigureSet build_figures(const std::vector<analysis::Report>& reports, FigureKind kind,
                        const FigureOptions& opts = {});

// Fidelity of a case (docs/figures.md): its own "fidelity.level", else the registry's for its
// variant (reports written before the field existed), else "" (peers, unknown variants).
std::string case_fidelity(const analysis::Json& c);
// The footnote mark of a fidelity level: "†" stand-in, "‡" simplified, "" otherwise.
std::string fidelity_mark(const std::string& level);
// The legend lines explaining the marks that occur among `levels`.
std::vector<std::string> fidelity_notes(const std::vector<std::string>& levels);

}  // namespace ab::figures
