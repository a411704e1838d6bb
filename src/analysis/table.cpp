#include "analysis/table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/errors.hpp"

namespace ab::analysis {

// ---- reading reports ---------------------------------------------------------------------------

namespace {
constexpr int kMaxReportDepth = 64;
}

namespace {

std::string stem_of(const std::string& path) {
  const std::string s = std::filesystem::path(path).stem().string();
  return s.empty() ? path : s;
}

int major_of(const std::string& version) {
  int major = -1;
  const char* end = version.data() + version.size();
  auto [p, ec] = std::from_chars(version.data(), end, major);
  if (ec != std::errc() || (p != end && *p != '.')) return -1;
  return major;
}

}  // namespace

std::string Report::baseline() const {
  return lookup_text(doc, "meta.run.baseline");
}

Report report_from_json(Json doc, const std::string& name) {
  if (!doc.is_object() || !doc.contains("schema_version") || !doc["schema_version"].is_string() ||
      !doc.contains("cases") || !doc["cases"].is_array())
    throw InputError(fmt::format(
        "'{}' is not an attn-bench report (expected an object with \"schema_version\" and "
        "\"cases\"; see docs/report-schema.md)",
        name));
  const std::string version = doc["schema_version"].get<std::string>();
  if (major_of(version) != kReportSchemaMajor)
    throw InputError(fmt::format(
        "'{}' has schema_version {}; this attn-bench reads schema {}.x (a major version "
        "change renames or removes keys, so its numbers would be misread)",
        name, version, kReportSchemaMajor));
  Report r;
  r.path = name;
  r.name = stem_of(name);
  for (const auto& c : doc["cases"]) {
    if (!c.is_object() || !c.contains("id") || !c["id"].is_string())
      throw InputError(fmt::format("'{}': every entry of \"cases\" needs a string \"id\"", name));
  }
  if (doc.contains("complete") && doc["complete"].is_boolean() && !doc["complete"].get<bool>())
    r.warnings.push_back(fmt::format(
        "'{}' is incomplete (\"complete\": false): the sweep was interrupted or is still running",
        name));
  r.doc = std::move(doc);
  return r;
}

Report load_report(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot read report '{}': {}", path, std::strerror(errno)));
  if (std::filesystem::is_directory(path))
    throw InputError(fmt::format("cannot read report '{}': it is a directory", path));
  std::stringstream ss;
  ss << in.rdbuf();
  Json doc;
  try {
    // A report is a few levels deep (cases[i].metrics.latency.phases.plan); nesting beyond
    // kMaxReportDepth is refused while parsing, before anything recursive (copies, dump) walks it.
    doc = Json::parse(ss.str(), [&](int depth, Json::parse_event_t, Json&) {
      if (depth > kMaxReportDepth)
        throw InputError(fmt::format("'{}' nests deeper than {} levels: not an attn-bench report", path, kMaxReportDepth));
      return true;
    });
  } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers like 1e400 (out_of_range)
    throw InputError(fmt::format("'{}' is not valid JSON: {}", path, e.what()));
  }
  return report_from_json(std::move(doc), path);
}

namespace {
const Json* find_path(const Json& node, const std::string& dotted) {
  const Json* cur = &node;
  size_t start = 0;
  while (start <= dotted.size()) {
    const size_t dot = dotted.find('.', start);
    const std::string key = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return nullptr;
    // A metric block that does not apply: {"status": "n/a", "reason": …}.
    if (cur->contains("status") && (*cur)["status"] == "n/a") return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}
}  // namespace

std::optional<double> lookup_number(const Json& node, const std::string& dotted_path) {
  const Json* v = find_path(node, dotted_path);
  if (!v || !v->is_number()) return std::nullopt;
  const double d = v->get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

std::string lookup_text(const Json& node, const std::string& dotted_path) {
  const Json* v = find_path(node, dotted_path);
  if (!v) return "";
  if (v->is_string()) return v->get<std::string>();
  if (v->is_boolean()) return v->get<bool>() ? "true" : "false";
  if (v->is_number_integer()) return std::to_string(v->get<int64_t>());
  if (v->is_number()) return fmt::format("{}", v->get<double>());
  if (v->is_null()) return "";
  return v->dump();
}

// ---- metrics -----------------------------------------------------------------------------------

const std::vector<MetricDef>& metric_defs() {
  static const std::vector<MetricDef> defs = {
      {"speedup", "", 1.0, "x",
       "speedup = baseline median latency / case median latency (a time ratio, never a FLOP "
       "ratio; > 1 is faster)",
       NumberStyle::fixed2},
      {"latency", "metrics.latency.median", 1e3, "ms",
       "latency = median time per call (plan + attention), ms", NumberStyle::significant3},
      {"latency_attention", "metrics.latency.phases.attention.median", 1e3, "ms",
       "latency_attention = median time of the attention phase alone, ms",
       NumberStyle::significant3},
      {"latency_plan", "metrics.latency.phases.plan.median", 1e3, "ms",
       "latency_plan = median time of the selection/estimation phase alone, ms",
       NumberStyle::significant3},
      {"tflops", "metrics.latency.rates.tflops_executed", 1.0, "TFLOP/s",
       "tflops = executed TFLOP/s (FLOPs the variant really computes / median latency)",
       NumberStyle::significant3},
      {"tflops_dense", "metrics.latency.rates.tflops_dense_equivalent", 1.0, "TFLOP/s",
       "tflops_dense = dense-equivalent TFLOP/s (dense attention FLOPs for the problem / "
       "median latency)",
       NumberStyle::significant3},
      {"gbps", "metrics.latency.rates.gbps", 1.0, "GB/s",
       "gbps = bytes_min (inputs read once, outputs written once) / median latency, GB/s",
       NumberStyle::significant3},
      {"error", "metrics.accuracy.rel", 1.0, "",
       "error = ||o - o*|| / ||o*|| against the float64 reference on the sampled rows",
       NumberStyle::scientific},
      {"max_abs", "metrics.accuracy.max_abs", 1.0, "",
       "max_abs = max |o - o*| against the float64 reference", NumberStyle::scientific},
      {"recall", "metrics.recall.mass_recall.mean", 1.0, "",
       "recall = mean dense attention probability mass inside the selected keys",
       NumberStyle::fixed3},
      {"output_error", "metrics.recall.output_rel_error.mean", 1.0, "",
       "output_error = mean ||o - o*|| / ||o*|| of the selection against fp64 dense attention",
       NumberStyle::scientific},
      {"density", "metrics.flops.density", 1.0, "",
       "density = fraction of the allowed (query, key) pairs the variant computes",
       NumberStyle::fixed3},
      {"gflops", "metrics.flops.executed", 1e-9, "GFLOP",
       "gflops = executed GFLOP per call (multiply-add = 2)", NumberStyle::significant3},
  };
  return defs;
}

std::vector<std::string> metric_names() {
  std::vector<std::string> n;
  for (const auto& d : metric_defs()) n.push_back(d.name);
  return n;
}

const MetricDef& find_metric(const std::string& name) {
  for (const auto& d : metric_defs())
    if (d.name == name) return d;
  throw InputError(fmt::format("unknown metric '{}': {}", name, suggest(name, metric_names())));
}

// ---- axes --------------------------------------------------------------------------------------

namespace {
const std::vector<std::string> kProblemFields = {"kv_len", "q_len",   "heads", "kv_heads",
                                                 "head_dim", "v_dim", "batch", "causal",
                                                 "mode",   "dtype"};
const std::vector<std::string> kNumericAxes = {"kv_len", "q_len", "heads", "kv_heads",
                                               "head_dim", "v_dim", "batch"};

std::string canonical_axis(const std::string& a) { return a == "seq_len" ? "kv_len" : a; }

bool is_problem_field(const std::string& a) {
  return std::find(kProblemFields.begin(), kProblemFields.end(), a) != kProblemFields.end();
}
}  // namespace

std::vector<std::string> axis_names() {
  std::vector<std::string> n = {"label", "variant", "key", "id", "backend", "report", "seq_len"};
  n.insert(n.end(), kProblemFields.begin(), kProblemFields.end());
  n.push_back("param.NAME");
  return n;
}

void check_axis(const std::string& axis) {
  if (axis.rfind("param.", 0) == 0 && axis.size() > 6) return;
  const auto names = axis_names();
  if (std::find(names.begin(), names.end(), axis) != names.end() && axis != "param.NAME") return;
  throw InputError(fmt::format("unknown axis '{}': {}", axis, suggest(axis, names)));
}

std::string axis_value(const Report& report, const Json& c, const std::string& axis_in) {
  const std::string axis = canonical_axis(axis_in);
  std::string v;
  if (axis == "report") return report.name;
  if (axis == "label" || axis == "variant" || axis == "id" || axis == "backend")
    v = lookup_text(c, axis);
  else if (axis == "key")
    v = lookup_text(c, "problem.key");
  else if (is_problem_field(axis))
    v = lookup_text(c, "problem." + axis);
  else if (axis.rfind("param.", 0) == 0) {
    // Parameter names may contain dots; look the rest up as one key.
    const std::string name = axis.substr(6);
    if (c.contains("params") && c["params"].is_object() && c["params"].contains(name)) {
      const Json& p = c["params"][name];
      v = p.is_string() ? p.get<std::string>() : p.dump();
    }
  }
  return v.empty() ? "-" : v;
}

// ---- building the table ------------------------------------------------------------------------

namespace {

struct CaseRef {
  const Report* report;
  const Json* c;
};

std::string status_of(const Json& c) {
  const std::string s = lookup_text(c, "status");
  return s.empty() ? "ok" : s;
}

// Baseline case for `c` in its own report: same problem key, label or variant == name.
// Label matches win over variant matches, and `ok` cases over others.
const Json* find_baseline(const Report& r, const Json& c, const std::string& name,
                          bool* ambiguous) {
  const std::string key = lookup_text(c, "problem.key");
  const Json* best = nullptr;
  int best_score = -1;
  std::set<std::string> variant_labels;
  for (const auto& b : r.cases()) {
    if (lookup_text(b, "problem.key") != key) continue;
    const bool by_label = lookup_text(b, "label") == name;
    const bool by_variant = lookup_text(b, "variant") == name;
    if (!by_label && !by_variant) continue;
    if (!by_label) variant_labels.insert(lookup_text(b, "label"));
    const int score = (by_label ? 2 : 0) + (status_of(b) == "ok" ? 1 : 0);
    if (score > best_score) {
      best_score = score;
      best = &b;
    }
  }
  if (best && best_score < 2 && variant_labels.size() > 1) *ambiguous = true;
  return best;
}

bool report_has_name(const Report& r, const std::string& name) {
  for (const auto& c : r.cases())
    if (lookup_text(c, "label") == name || lookup_text(c, "variant") == name) return true;
  return false;
}

bool all_numeric(const std::vector<std::string>& v) {
  for (const auto& s : v) {
    double d;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec != std::errc() || p != s.data() + s.size()) return false;
  }
  return true;
}

std::vector<std::string> ordered_values(const std::vector<CaseRef>& cases, const std::string& axis) {
  std::vector<std::string> vals;
  std::set<std::string> seen;
  for (const auto& cr : cases) {
    std::string v = axis_value(*cr.report, *cr.c, axis);
    if (seen.insert(v).second) vals.push_back(std::move(v));
  }
  if (all_numeric(vals))
    std::stable_sort(vals.begin(), vals.end(),
                     [](const std::string& a, const std::string& b) { return std::stod(a) < std::stod(b); });
  return vals;
}

// Default column axis: the problem field that varies across cases (given the row axis), or
// the problem key when several vary independently.
std::string default_cols(const std::vector<CaseRef>& cases, const std::string& rows) {
  std::vector<std::string> varying;
  for (const auto& f : kProblemFields) {
    if (f == rows) continue;
    std::set<std::string> vals;
    std::map<std::string, std::set<std::string>> per_row;
    for (const auto& cr : cases) {
      const std::string v = axis_value(*cr.report, *cr.c, f);
      vals.insert(v);
      per_row[axis_value(*cr.report, *cr.c, rows)].insert(v);
    }
    if (vals.size() < 2) continue;
    // A field fixed by the row (e.g. q_len when rows = kv_len of square prefill) adds nothing.
    const bool determined_by_row =
        is_problem_field(rows) &&
        std::all_of(per_row.begin(), per_row.end(), [](const auto& kv) { return kv.second.size() == 1; });
    if (!determined_by_row) varying.push_back(f);
  }
  if (varying.empty()) return rows == "label" ? "key" : "label";
  // One field that determines all the others (q_len == kv_len in square prefill sweeps).
  std::set<std::string> combos;
  for (const auto& cr : cases) {
    std::string t;
    for (const auto& f : varying) t += axis_value(*cr.report, *cr.c, f) + "\x1f";
    combos.insert(t);
  }
  for (const auto& f : varying) {  // kProblemFields order: kv_len first
    std::set<std::string> vals;
    for (const auto& cr : cases) vals.insert(axis_value(*cr.report, *cr.c, f));
    if (vals.size() == combos.size()) return f;
  }
  return "key";
}

std::string header_text(const std::string& axis, const std::string& value) {
  if (is_problem_field(canonical_axis(axis)) || axis.rfind("param.", 0) == 0)
    return canonical_axis(axis) + "=" + value;
  return value;
}

}  // namespace

namespace {

std::vector<std::string> split_metrics(const std::string& list) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= list.size()) {
    const size_t e = std::min(list.find(',', b), list.size());
    if (e > b) out.push_back(list.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

// Several metrics side by side (recall beside speedup, say): one table per metric, merged
// column by column, so each column value carries every metric next to each other.
Table side_by_side(const std::vector<Report>& reports, const TableOptions& opts,
                   const std::vector<std::string>& metrics) {
  std::vector<Table> parts;
  for (const auto& name : metrics) {
    TableOptions o = opts;
    o.metric = name;
    parts.push_back(build_table(reports, o));
  }
  Table t;
  const Table& first = parts.front();
  t.metric = opts.metric;
  t.row_axis = first.row_axis;
  t.col_axis = "column";  // headers below are complete ("kv_len=8192 recall")
  t.rows = first.rows;
  t.cells.assign(t.rows.size(), {});
  std::set<std::string> warned;
  for (const auto& c : first.cols)
    for (size_t k = 0; k < parts.size(); ++k) {
      const Table& part = parts[k];
      t.cols.push_back(header_text(first.col_axis, c) + " " + part.metric);
      const size_t ci = size_t(std::find(part.cols.begin(), part.cols.end(), c) - part.cols.begin());
      for (size_t r = 0; r < t.rows.size(); ++r) {
        const size_t ri = size_t(std::find(part.rows.begin(), part.rows.end(), t.rows[r]) - part.rows.begin());
        Cell cell = ri < part.rows.size() && ci < part.cols.size() ? part.cells[ri][ci] : Cell{};
        cell.style = part.style;
        t.cells[r].push_back(cell);
      }
    }
  std::string names, legend;
  for (const auto& part : parts) {
    names += (names.empty() ? "" : ", ") + part.metric + (part.metric_unit.empty() || part.metric == "speedup" ? "" : " (" + part.metric_unit + ")");
    legend += part.legend.substr(0, part.legend.find(". ") + 1) + " ";
    for (const auto& w : part.warnings)
      if (warned.insert(w).second) t.warnings.push_back(w);
  }
  std::string base;  // "speedup vs baseline dense"
  for (const auto& part : parts)
    if (part.metric == "speedup") base = part.title.substr(0, part.title.find("; rows:"));
  t.title = fmt::format("{}{}; rows: {}, columns: {} x metric", names,
                        base.empty() ? "" : " (" + base + ")", t.row_axis, first.col_axis);
  t.legend = legend + "failed/skipped: case status; n/a: not recorded or no baseline.";
  return t;
}

}  // namespace

Table build_table(const std::vector<Report>& reports, const TableOptions& opts) {
  if (reports.empty()) throw InputError("table: no reports given");
  if (opts.metric.find(',') != std::string::npos) {
    const auto metrics = split_metrics(opts.metric);
    for (const auto& m : metrics) find_metric(m);
    if (metrics.size() > 1) return side_by_side(reports, opts, metrics);
  }
  Table t;
  t.row_axis = opts.rows.empty() ? "label" : opts.rows;
  check_axis(t.row_axis);
  if (!opts.cols.empty()) check_axis(opts.cols);
  if (!opts.metric.empty()) find_metric(opts.metric);

  // Baseline per report: --baseline, else the report's meta.run.baseline.
  std::vector<std::string> baseline(reports.size());
  bool any_baseline_case = false;
  for (size_t i = 0; i < reports.size(); ++i) {
    baseline[i] = opts.baseline.empty() ? reports[i].baseline() : opts.baseline;
    if (!baseline[i].empty() && report_has_name(reports[i], baseline[i])) any_baseline_case = true;
  }
  if (!opts.baseline.empty() && !any_baseline_case) {
    std::set<std::string> names;
    for (const auto& r : reports)
      for (const auto& c : r.cases()) {
        names.insert(lookup_text(c, "variant"));
        names.insert(lookup_text(c, "label"));
      }
    names.erase("");
    throw InputError(fmt::format("unknown baseline '{}' (no case has that variant or label): {}",
                                 opts.baseline,
                                 suggest(opts.baseline, {names.begin(), names.end()})));
  }
  t.metric = opts.metric.empty() ? (any_baseline_case ? "speedup" : "latency") : opts.metric;
  const MetricDef& m = find_metric(t.metric);
  const bool speedup = t.metric == "speedup";
  if (speedup && !any_baseline_case)
    throw InputError(
        "metric 'speedup' needs a baseline: pass --baseline VARIANT (the reports' "
        "meta.run.baseline names no case in them)");
  t.metric_unit = m.unit;
  t.style = m.style;

  std::vector<CaseRef> cases;
  for (const auto& r : reports)
    for (const auto& c : r.cases()) cases.push_back({&r, &c});
  if (cases.empty()) t.warnings.push_back("the reports hold no cases");

  t.col_axis = opts.cols.empty() ? default_cols(cases, canonical_axis(t.row_axis)) : opts.cols;
  t.rows = ordered_values(cases, t.row_axis);
  t.cols = ordered_values(cases, t.col_axis);
  t.cells.assign(t.rows.size(), std::vector<Cell>(t.cols.size()));

  size_t collisions = 0, no_baseline = 0;
  bool ambiguous = false;
  for (const auto& cr : cases) {
    const auto ri = std::find(t.rows.begin(), t.rows.end(), axis_value(*cr.report, *cr.c, t.row_axis)) - t.rows.begin();
    const auto ci = std::find(t.cols.begin(), t.cols.end(), axis_value(*cr.report, *cr.c, t.col_axis)) - t.cols.begin();
    Cell& cell = t.cells[ri][ci];
    if (cell.kind != Cell::Kind::empty) {
      ++collisions;
      continue;
    }
    const std::string st = status_of(*cr.c);
    if (st == "failed" || st == "skipped") {
      cell.kind = st == "failed" ? Cell::Kind::failed : Cell::Kind::skipped;
      continue;
    }
    cell.kind = Cell::Kind::na;
    if (speedup) {
      const size_t ri_report = static_cast<size_t>(cr.report - reports.data());
      const std::string& bname = baseline[ri_report];
      const Json* b = bname.empty() ? nullptr : find_baseline(*cr.report, *cr.c, bname, &ambiguous);
      if (!b) {
        cell.why = "no baseline";
        ++no_baseline;
        continue;
      }
      if (status_of(*b) != "ok") {
        cell.why = "baseline " + status_of(*b);
        continue;
      }
      const auto tb = lookup_number(*b, "metrics.latency.median");
      const auto tc = lookup_number(*cr.c, "metrics.latency.median");
      if (!tb || !tc || !(*tc > 0)) {
        cell.why = "no latency";
        continue;
      }
      cell.kind = Cell::Kind::value;
      cell.value = *tb / *tc;
    } else {
      const auto v = lookup_number(*cr.c, m.path);
      if (!v) {
        cell.why = "not recorded";
        continue;
      }
      cell.kind = Cell::Kind::value;
      cell.value = *v * m.scale;
    }
  }
  if (collisions)
    t.warnings.push_back(fmt::format(
        "{} case(s) fell into a cell already taken (first one kept): separate them with --rows/"
        "--cols (e.g. --rows report, --cols key)",
        collisions));
  if (no_baseline)
    t.warnings.push_back(fmt::format(
        "{} case(s) have no baseline case with the same problem key in their report (n/a)",
        no_baseline));
  if (ambiguous)
    t.warnings.push_back(
        "the baseline name matches several labels of one variant; the first was used (pass a "
        "label to --baseline to choose)");

  // Title and legend: one line each.
  std::set<std::string> bnames(baseline.begin(), baseline.end());
  bnames.erase("");
  std::string bdesc;
  for (const auto& b : bnames) bdesc += (bdesc.empty() ? "" : ", ") + b;
  const std::string unit = m.unit.empty() || speedup ? "" : " (" + m.unit + ")";
  t.title = speedup ? fmt::format("{} vs baseline {}; rows: {}, columns: {}", t.metric, bdesc,
                                  t.row_axis, t.col_axis)
                    : fmt::format("{}{}; rows: {}, columns: {}", t.metric, unit, t.row_axis,
                                  t.col_axis);
  std::string legend = m.definition + ".";
  if (speedup)
    legend += fmt::format(
        " Baseline: the case whose variant or label is {} with the same problem key in the "
        "same report.",
        bdesc);
  legend +=
      " Rates are labelled 'executed' (FLOPs the variant computes) or 'dense-equivalent' "
      "(dense FLOPs of the problem), both over the median latency. failed/skipped: case "
      "status; n/a: not recorded or no baseline.";
  t.legend = legend;
  return t;
}

// ---- printing ----------------------------------------------------------------------------------

std::string format_number(double v, NumberStyle style) {
  if (!std::isfinite(v)) return "n/a";
  switch (style) {
    case NumberStyle::fixed2: return fmt::format("{:.2f}", v);
    case NumberStyle::fixed3: return fmt::format("{:.3f}", v);
    case NumberStyle::scientific: return v == 0 ? "0" : fmt::format("{:.2e}", v);
    case NumberStyle::significant3: {
      const double a = std::fabs(v);
      if (a == 0) return "0";
      if (a >= 100) return fmt::format("{:.0f}", v);
      if (a < 1e-3) return fmt::format("{:.2e}", v);
      const int decimals = std::max(0, 2 - static_cast<int>(std::floor(std::log10(a))));
      return fmt::format("{:.{}f}", v, decimals);
    }
  }
  return fmt::format("{}", v);
}

std::string cell_text(const Table& t, const Cell& c) {
  switch (c.kind) {
    case Cell::Kind::empty: return "";
    case Cell::Kind::value: return format_number(c.value, c.style.value_or(t.style));
    case Cell::Kind::failed: return "failed";
    case Cell::Kind::skipped: return "skipped";
    case Cell::Kind::na: return "n/a";
  }
  return "";
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '\\': out += "\\textbackslash{}"; break;
      case '&': out += "\\&"; break;
      case '%': out += "\\%"; break;
      case '$': out += "\\$"; break;
      case '#': out += "\\#"; break;
      case '_': out += "\\_"; break;
      case '{': out += "\\{"; break;
      case '}': out += "\\}"; break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      // OT1 fonts print < > | as other glyphs in text mode.
      case '<': out += "\\textless{}"; break;
      case '>': out += "\\textgreater{}"; break;
      case '|': out += "\\textbar{}"; break;
      case '\n': case '\r': out += ' '; break;
      default: out += ch;
    }
  }
  return out;
}

std::string markdown_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '|' || ch == '\\' || ch == '*' || ch == '`') out += '\\';
    if (ch == '\n' || ch == '\r') {
      out += ' ';
      continue;
    }
    out += ch;
  }
  return out;
}

std::string render_markdown(const Table& t) {
  std::string out = "**" + markdown_escape(t.title) + "**\n\n";
  out += "| " + markdown_escape(t.row_axis);
  for (const auto& c : t.cols) out += " | " + markdown_escape(header_text(t.col_axis, c));
  out += " |\n|:--";
  for (size_t i = 0; i < t.cols.size(); ++i) out += "|--:";
  out += "|\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    out += "| " + markdown_escape(t.rows[r]);
    for (const auto& cell : t.cells[r]) out += " | " + markdown_escape(cell_text(t, cell));
    out += " |\n";
  }
  out += "\n" + markdown_escape(t.legend) + "\n";
  return out;
}

std::string render_csv(const Table& t) {
  // Value columns hold numbers only (empty when there is none), so a spreadsheet or pandas
  // reads them as numeric; the last column says why a cell is empty.
  std::string out = csv_field(t.row_axis);
  // Appending piecewise: `"," + std::string&&` trips GCC 12's false -Wrestrict (PR 105329).
  for (const auto& c : t.cols) {
    out += ',';
    out += csv_field(header_text(t.col_axis, c));
  }
  out += ",status\r\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    out += csv_field(t.rows[r]);
    std::string status;
    for (size_t c = 0; c < t.cols.size(); ++c) {
      const Cell& cell = t.cells[r][c];
      out += ",";
      if (cell.kind == Cell::Kind::value) {
        out += csv_field(format_number(cell.value, cell.style.value_or(t.style)));
      } else if (cell.kind != Cell::Kind::empty) {
        std::string why = cell_text(t, cell);
        if (!cell.why.empty()) why += " (" + cell.why + ")";
        status += (status.empty() ? "" : "; ") + header_text(t.col_axis, t.cols[c]) + ": " + why;
      }
    }
    out += ',';
    out += csv_field(status.empty() ? "ok" : status);
    out += "\r\n";
  }
  return out;
}

std::string render_latex(const Table& t) {
  const size_t n = t.cols.size();
  std::string out = "% attn-bench table: " + t.title + "\n";
  out += "\\begin{tabular}{l" + std::string(n, 'r') + "}\n\\toprule\n";
  const std::string col_name = canonical_axis(t.col_axis);
  const bool axis_header = is_problem_field(col_name) || col_name.rfind("param.", 0) == 0;
  if (axis_header && n > 0) {
    out += fmt::format(" & \\multicolumn{{{}}}{{c}}{{{}}} \\\\\n", n, latex_escape(col_name));
    out += fmt::format("\\cmidrule(lr){{2-{}}}\n", n + 1);
  }
  out += latex_escape(t.row_axis);
  for (const auto& c : t.cols) out += " & " + latex_escape(axis_header ? c : header_text(t.col_axis, c));
  out += " \\\\\n\\midrule\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    out += latex_escape(t.rows[r]);
    for (const auto& cell : t.cells[r]) out += " & " + latex_escape(cell_text(t, cell));
    out += " \\\\\n";
  }
  out += "\\bottomrule\n\\end{tabular}\n";
  out += "% " + t.legend + "\n";
  return out;
}

}  // namespace ab::analysis
