#pragma once
// A small plotting layer (docs/figures.md): one figure model — axes, series, annotations, heat
// maps — written out as standalone SVG (the HTML report, slides) or as PGFPlots/TikZ (a LaTeX
// paper, in the paper's fonts). No layout engine: fixed sizes for a laptop screen, text widths
// estimated from the font size, the legend under the plot so it never covers data.
#include <cmath>
#include <string>
#include <vector>

namespace ab::figures {

enum class Scale { linear, log };

struct Axis {
  std::string label;          // with its unit: "sequence length N (tokens)"
  Scale scale = Scale::linear;
  double min = NAN, max = NAN;  // NaN: from the data (padded)
  bool ticks_at_data = false;   // ticks at the distinct data values (sequence lengths)
};

struct Point {
  double x = 0, y = 0;
  double lo = NAN, hi = NAN;  // interval of y (band or error bar); NaN: none
};

enum class Marker { circle, square, triangle, diamond, cross, none };

struct Series {
  std::string name;  // legend text; empty: not in the legend
  std::vector<Point> points;
  int colour = 0;     // palette index; -1 = grey (reference lines)
  Marker marker = Marker::circle;
  bool line = true;
  bool dashed = false;
  bool band = false;  // fill between lo and hi
};

// An annotated point: a crossover, a knee.
struct Mark {
  double x = 0, y = 0;
  std::string text;
  int colour = 0;
};

// One heat map of a small-multiples figure: values[row][col] in [vmin, vmax], NaN = no data.
struct Heatmap {
  std::string title;
  std::vector<std::string> cols, rows;
  std::vector<std::vector<double>> values;
};

struct Figure {
  std::string id;       // file-name-safe: "pareto-prefill_b1_h4_kv1_d64_q8192"
  std::string title;    // one line
  std::string caption;  // what is plotted and how (the figure's legend sentence)
  Axis x, y;
  std::vector<Series> series;
  std::vector<Mark> marks;
  std::vector<std::string> notes;  // extra legend lines (footnote marks: "† stand-in: …")
  // Heat-map figures (maps non-empty) draw maps instead of axes and series.
  std::vector<Heatmap> maps;
  std::string map_x_label, map_y_label, scale_label;
  double vmin = 0, vmax = 1;
  double value_scale = 100;  // cell text = value × value_scale, rounded ("100" for 1.0)
};

// ---- pieces with golden tests --------------------------------------------------------------

// Nice linear ticks covering [lo, hi] (steps of 1, 2 or 5 × 10^k), about `target` of them.
std::vector<double> linear_ticks(double lo, double hi, int target = 5);
// Log ticks: the powers of ten in [lo, hi]; 2 and 5 multiples added when fewer than 3.
std::vector<double> log_ticks(double lo, double hi);
// Tick text: 3 significant digits, no trailing zeros; multiples of 1024 ≥ 4096 as "32k".
std::string tick_text(double v, bool binary_k = false);
// Colour-blind-safe palette (Okabe & Ito, "Color Universal Design", 2008); -1 = grey.
std::string palette(int i);
Marker palette_marker(int i);  // a second cue when colours repeat (i ≥ palette size)
// Viridis (perceptually uniform, readable in grey and with colour-vision deficiency) at t in [0,1].
std::string colormap(double t);
// Estimated width in px of `s` in a sans-serif font of `px` size (UTF-8 aware).
double text_width(const std::string& s, double px);
std::string xml_escape(const std::string& s);

// ---- writers -------------------------------------------------------------------------------

// A standalone <svg> element (width/height attributes set; viewBox for scaling).
std::string to_svg(const Figure& f);
// A tikzpicture with pgfplots axes; needs \usepackage{pgfplots} (compat ≥ 1.16) in the paper.
std::string to_pgfplots(const Figure& f);

}  // namespace ab::figures
