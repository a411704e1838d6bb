#pragma once
// Reading finished reports (docs/report-schema.md) and pivoting their cases into paper tables
// (markdown, RFC 4180 CSV, LaTeX booktabs). `attn-bench table` is a thin shell over this;
// docs/tables.md describes the output.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
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
};

struct Cell {
  enum class Kind { empty, value, failed, skipped, na };
  Kind kind = Kind::empty;
  double value = 0;
  std::string why;  // for `na`: "no baseline", "no metric"
  std::optional<NumberStyle> style;  // the cell's metric's style (side-by-side tables), else the table's
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
};

Table build_table(const std::vector<Report>& reports, const TableOptions& opts);

// Printed form of one cell ("1.25", "failed", "skipped", "n/a", "").
std::string cell_text(const Table& t, const Cell& c);
std::string format_number(double v, NumberStyle style);

std::string render_markdown(const Table& t);  // title line, table, legend line
std::string render_csv(const Table& t);       // RFC 4180 (CRLF); no title/legend
std::string render_latex(const Table& t);     // booktabs tabular, title/legend as % comments

std::string csv_field(const std::string& s);
std::string latex_escape(const std::string& s);
std::string markdown_escape(const std::string& s);

}  // namespace ab::analysis
