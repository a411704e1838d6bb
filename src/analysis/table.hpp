#pragma once
// Reading finished reports (docs/report-schema.md) and pivoting their cases into paper tables
// (markdown, RFC 4180 CSV, LaTeX booktabs). `attn-bench table` is a thin shell over this;
// docs/tables.md describes the output.
#include <nlohmann/json.hpp>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ab::analysis {

using Json = nlohmann::ordered_json;

// The schema major version these readers understand (docs/report-schema.md).
inline constexpr int kReportSchemaMajor = 1;

struct Report {
  std::string path;   // as given on the command line ("<memory>" for in-memory reports)
  std::string name;   // file stem, for the `report` axis and messages
  Json doc;
  std::vector<std::string> warnings;  // e.g. "incomplete sweep"; printed to stderr by the CLI
  const Json& cases() const { return doc.at("cases"); }
  std::string baseline() const;  // meta.run.baseline, "" when absent
};

// Read and check a report: unreadable file, invalid JSON, no `schema_version`/`cases`, or a
// schema major version other than kReportSchemaMajor all throw ab::InputError naming the file.
Report load_report(const std::string& path);
// The same checks on a document already in memory (tests, pipes).
Report report_from_json(Json doc, const std::string& name = "<memory>");

// Dotted-path lookup ("metrics.latency.median"): the number there, or nullopt when a key is
// missing, the value is not a number, or a block on the way is {"status": "n/a"}.
std::optional<double> lookup_number(const Json& node, const std::string& dotted_path);
// String form of a scalar at the path ("" when absent); numbers print without trailing zeros.
std::string lookup_text(const Json& node, const std::string& dotted_path);

// ---- metrics -------------------------------------------------------------------------------

enum class NumberStyle { fixed2, fixed3, significant3, scientific };

// One table metric: a JSON path inside a case, a scale and how to print it. `speedup` is the
// one derived metric (a time ratio against a baseline case); it has an empty path.
struct MetricDef {
  std::string name;
  std::string path;      // under the case object
  double scale = 1.0;    // value printed = value at path × scale
  std::string unit;      // for headers and the legend
  std::string definition;
  NumberStyle style = NumberStyle::significant3;
  int better = 0;  // +1: higher is better, -1: lower is better, 0: neither (no bold)
};

// The metric table (name → path). Adding a row here is all a new table metric needs.
const std::vector<MetricDef>& metric_defs();
// Throws InputError with the closest name for an unknown metric.
const MetricDef& find_metric(const std::string& name);
std::vector<std::string> metric_names();

// ---- axes ----------------------------------------------------------------------------------

// Axis names: label, variant, key, id, backend, report, the problem fields (q_len, kv_len,
// seq_len = kv_len, heads, kv_heads, head_dim, v_dim, batch, causal, mode, dtype), or
// param.NAME. Throws InputError with the closest name for an unknown axis.
void check_axis(const std::string& axis);
std::vector<std::string> axis_names();
// The value of an axis for one case of `report` ("-" when the case lacks it).
std::string axis_value(const Report& report, const Json& c, const std::string& axis);

// ---- the table -----------------------------------------------------------------------------

struct TableOptions {
  // "" = speedup when a baseline exists, else latency; "A,B,..." puts the metrics side by side,
  // one column per (column value, metric).
  std::string metric;
  std::string baseline;  // "" = each report's meta.run.baseline
  std::string rows;      // "" = label
  std::string cols;      // "" = the problem field that varies (or `key` when several do)
  bool intervals = true;     // "± h": half-width of the 95% CI of the median, from the samples
  bool bold_best = true;     // the best value of each column in bold (metrics with a direction)
  bool significance = false; // "*" when Mann–Whitney p < alpha against the baseline's samples
  double alpha = 0.05;
};

struct Cell {
  enum class Kind { empty, value, failed, skipped, na };
  Kind kind = Kind::empty;
  double value = 0;
  std::string why;  // for `na`: "no baseline", "no metric"
  std::optional<NumberStyle> style;  // the cell's metric's style (side-by-side tables), else the table's
  double lo = std::nan(""), hi = std::nan("");  // 95% CI of the value (NaN: none)
  bool best = false;         // best of its column
  bool significant = false;  // differs from the baseline at p < alpha
  bool is_baseline = false;  // the baseline case itself (speedup 1 by definition)
};

struct Table {
  std::string metric;       // resolved metric name
  std::string metric_unit;
  std::string title;        // one line naming metric and baseline
  std::string legend;       // one line: definition, baseline rule, rate labels
  std::string row_axis, col_axis;
  std::vector<std::string> rows, cols;
  std::vector<std::vector<Cell>> cells;  // [row][col]
  NumberStyle style = NumberStyle::significant3;
  std::vector<std::string> warnings;     // collisions, missing baselines, …
  std::vector<std::string> row_marks, col_marks;  // fidelity footnote marks ("†", "‡", "")
  std::vector<std::string> notes;        // one line per mark used
  std::string caption;                   // conventions: FLOP counting, cache, dtype, hardware
  std::string common;                    // with `key` columns: the key parts every column shares
  bool intervals = false, bold = false;  // how to print cells
};

Table build_table(const std::vector<Report>& reports, const TableOptions& opts);

// `table --aggregate`: repeated reports of one spec (same meta.spec.sha256) merged into one;
// each case id's latency samples are pooled and its median and p10/p90 recomputed from them,
// other metrics kept from the first report. Different specs are an InputError.
Report aggregate_reports(const std::vector<Report>& reports);

// NIAH success as a table (`table -m niah`): one row per case, one column per (length, depth)
// cell of the heat map plus the mean, in % of probes.
Table build_niah_table(const std::vector<Report>& reports, const TableOptions& opts);

// Distribution-free 95% confidence interval of the median (order statistics); none below 6
// samples, where no pair of order statistics reaches 95%.
std::optional<std::pair<double, double>> median_ci95(std::vector<double> samples);

// Printed form of one cell ("1.25", "failed", "skipped", "n/a", "").
std::string cell_text(const Table& t, const Cell& c);
std::string format_number(double v, NumberStyle style);

std::string render_markdown(const Table& t);  // title line, table, legend line
std::string render_csv(const Table& t);       // RFC 4180 (CRLF); no title/legend
std::string render_latex(const Table& t, bool float_env = false);  // booktabs tabular, title/legend as
                                                                    // % comments; float_env: in a table
                                                                    // with \caption
// Long format for plotting elsewhere: one row per case × metric, full precision (%.17g), with
// the case's axes, fidelity, status and reason, the unit, and the 95% CI when there is one.
std::string render_long_csv(const std::vector<Report>& reports, const TableOptions& opts);

std::string csv_field(const std::string& s);
std::string latex_escape(const std::string& s);
std::string markdown_escape(const std::string& s);

}  // namespace ab::analysis
