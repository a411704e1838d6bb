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

#include "analysis/stats.hpp"
#include "core/errors.hpp"
#include "variants/registry.hpp"

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
       NumberStyle::fixed2, +1},
      {"latency", "metrics.latency.median", 1e3, "ms",
       "latency = median time per call (plan + attention), ms", NumberStyle::significant3, -1},
      {"latency_attention", "metrics.latency.phases.attention.median", 1e3, "ms",
       "latency_attention = median time of the attention phase alone, ms",
       NumberStyle::significant3, -1},
      {"latency_plan", "metrics.latency.phases.plan.median", 1e3, "ms",
       "latency_plan = median time of the selection/estimation phase alone, ms",
       NumberStyle::significant3, -1},
      {"tflops", "metrics.latency.rates.tflops_executed", 1.0, "TFLOP/s",
       "tflops = executed TFLOP/s (FLOPs the variant really computes / median latency)",
       NumberStyle::significant3, +1},
      {"tflops_dense", "metrics.latency.rates.tflops_dense_equivalent", 1.0, "TFLOP/s",
       "tflops_dense = dense-equivalent TFLOP/s (dense attention FLOPs for the problem / "
       "median latency)",
       NumberStyle::significant3, +1},
      {"gbps", "metrics.latency.rates.gbps", 1.0, "GB/s",
       "gbps = bytes_min (inputs read once, outputs written once) / median latency, GB/s",
       NumberStyle::significant3, +1},
      {"error", "metrics.accuracy.rel", 1.0, "",
       "error = ||o - o*|| / ||o*|| against the float64 reference on the sampled rows",
       NumberStyle::scientific, -1},
      {"max_abs", "metrics.accuracy.max_abs", 1.0, "",
       "max_abs = max |o - o*| against the float64 reference", NumberStyle::scientific, -1},
      {"recall", "metrics.recall.mass_recall.mean", 1.0, "",
       "recall = mean dense attention probability mass inside the selected keys",
       NumberStyle::fixed3, +1},
      {"output_error", "metrics.recall.output_rel_error.mean", 1.0, "",
       "output_error = mean ||o - o*|| / ||o*|| of the selection against fp64 dense attention",
       NumberStyle::scientific, -1},
      {"density", "metrics.flops.density", 1.0, "",
       "density = fraction of the allowed (query, key) pairs the variant computes",
       NumberStyle::fixed3, 0},
      {"gflops", "metrics.flops.executed", 1e-9, "GFLOP",
       "gflops = executed GFLOP per call (multiply-add = 2)", NumberStyle::significant3, 0},
      {"energy", "metrics.energy.joules_per_call", 1e3, "mJ",
       "energy = device energy per call (plan + attention), mJ: the energy counter (NVML, RAPL) "
       "over a window of back-to-back calls, idle power included",
       NumberStyle::significant3, -1},
      {"tflop_per_joule", "metrics.energy.tflop_per_joule", 1.0, "TFLOP/J",
       "tflop_per_joule = executed TFLOP per joule of device energy (= TFLOP/s per watt)",
       NumberStyle::significant3, +1},
      {"niah", "metrics.niah.success_rate", 100.0, "%",
       "niah = % of needle probes whose output recovered the needle, over every length and "
       "depth (`-m niah` alone gives the whole heat map)",
       NumberStyle::fixed2, +1},
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
  if (!first.common.empty()) t.title += "; every column: " + first.common;
  t.row_marks = first.row_marks;
  t.common = first.common;
  t.caption = first.caption;
  t.intervals = first.intervals;
  for (const auto& part : parts) {
    t.bold = t.bold || part.bold;
    for (const auto& n : part.notes)
      if (std::find(t.notes.begin(), t.notes.end(), n) == t.notes.end()) t.notes.push_back(n);
  }
  t.legend = legend + "failed/skipped: case status; n/a: not recorded or no baseline.";
  return t;
}

}  // namespace

namespace {

struct CellSource {
  const Json* c = nullptr;     // the case of the cell
  const Json* base = nullptr;  // its baseline case, when there is one
};
using CellSources = std::vector<std::vector<CellSource>>;

std::vector<double> numbers_at(const Json& c, const std::string& dotted) {
  std::vector<double> out;
  const Json* cur = &c;
  size_t start = 0;
  while (cur && start <= dotted.size()) {
    const size_t dot = dotted.find('.', start);
    const std::string key = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    cur = cur->is_object() && cur->contains(key) ? &(*cur)[key] : nullptr;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (cur && cur->is_array())
    for (const auto& v : *cur)
      if (v.is_number() && std::isfinite(v.get<double>())) out.push_back(v.get<double>());
  return out;
}

// The samples behind a latency-derived metric ("" when it has none): its own phase's samples
// for the latency metrics, the total's for the rates (a rate is a constant over the median).
std::string samples_path(const MetricDef& m) {
  if (m.name == "speedup" || m.name == "tflops" || m.name == "tflops_dense" || m.name == "gbps") return "metrics.latency.samples";
  const std::string med = ".median";
  if (m.path.rfind("metrics.latency", 0) == 0 && m.path.size() > med.size() &&
      m.path.compare(m.path.size() - med.size(), med.size(), med) == 0)
    return m.path.substr(0, m.path.size() - med.size()) + ".samples";
  return "";
}


std::string fidelity_level(const Json& c) {
  const std::string own = lookup_text(c, "fidelity.level");
  if (!own.empty()) return own;
  // Reports written before the field existed: the registry's entry for the variant.
  if (const RegistryEntry* e = find_variant(lookup_text(c, "variant"))) return fidelity_name(e->info.fidelity.level);
  return "";
}

std::string fidelity_mark_of(const std::string& level) {
  return level == "stand-in" ? "†" : level == "simplified" ? "‡" : "";
}

// Footnote marks on the rows (or columns) that name variants, and the legend lines for them.
void apply_marks(Table& t, const std::vector<CaseRef>& cases) {
  std::set<std::string> used;
  auto marks_for = [&](const std::string& axis, const std::vector<std::string>& values) {
    std::vector<std::string> out(values.size());
    if (axis != "label" && axis != "variant") return out;
    for (size_t i = 0; i < values.size(); ++i)
      for (const auto& cr : cases)
        if (axis_value(*cr.report, *cr.c, axis) == values[i]) {
          out[i] = fidelity_mark_of(fidelity_level(*cr.c));
          if (!out[i].empty()) used.insert(out[i]);
          break;
        }
    return out;
  };
  t.row_marks = marks_for(t.row_axis, t.rows);
  t.col_marks = marks_for(t.col_axis, t.cols);
  if (used.count("†"))
    t.notes.push_back("† stand-in: a defining component of the paper's method is replaced (attn-bench list says which); "
                      "not the paper's method.");
  if (used.count("‡")) t.notes.push_back("‡ simplified: the paper's method with named departures (attn-bench list).");
}

// `key` columns: drop the '_'-separated parts every key shares (shown once, in `common`), so
// the headers name only what varies ("q8192_k8192" rather than the whole problem key).
void shorten_keys(Table& t) {
  if (t.col_axis != "key" || t.cols.size() < 2) return;
  std::vector<std::vector<std::string>> parts;
  for (const auto& c : t.cols) {
    std::vector<std::string> p;
    size_t b = 0;
    while (b <= c.size()) {
      const size_t e = std::min(c.find('_', b), c.size());
      p.push_back(c.substr(b, e - b));
      b = e + 1;
    }
    parts.push_back(p);
  }
  for (const auto& p : parts)
    if (p.size() != parts[0].size()) return;
  std::vector<bool> same(parts[0].size(), true);
  for (const auto& p : parts)
    for (size_t i = 0; i < p.size(); ++i) same[i] = same[i] && p[i] == parts[0][i];
  std::string common;
  for (size_t i = 0; i < same.size(); ++i)
    if (same[i]) common += (common.empty() ? "" : "_") + parts[0][i];
  std::vector<std::string> cols;
  for (const auto& p : parts) {
    std::string h;
    for (size_t i = 0; i < p.size(); ++i)
      if (!same[i]) h += (h.empty() ? "" : "_") + p[i];
    cols.push_back(h);
  }
  if (std::set<std::string>(cols.begin(), cols.end()).size() != cols.size()) return;
  t.cols = cols;
  t.common = common;
}

}  // namespace

std::optional<std::pair<double, double>> median_ci95(std::vector<double> x) {
  // Distribution-free: the order statistics x(j) and x(n+1-j) with the largest j such that
  // P(Binomial(n, 1/2) < j) <= 0.025 cover the median with probability >= 95% (Conover,
  // "Practical Nonparametric Statistics", 3rd ed., §3.2). None below 6 samples.
  const size_t n = x.size();
  if (n < 6) return std::nullopt;
  std::sort(x.begin(), x.end());
  double cdf = 0, pmf = std::pow(0.5, static_cast<double>(n));  // P(B = 0)
  size_t j = 0;
  for (size_t k = 0; k < n; ++k) {
    cdf += pmf;  // P(B <= k)
    if (cdf > 0.025) break;
    j = k + 1;
    pmf *= static_cast<double>(n - k) / static_cast<double>(k + 1);
  }
  if (j == 0) return std::nullopt;
  return std::make_pair(x[j - 1], x[n - j]);
}

namespace {

std::string conventions_caption(const std::vector<Report>& reports, const Table& t) {
  std::set<std::string> dtypes, caches, hardware;
  for (const auto& r : reports) {
    for (const auto& c : r.cases()) {
      if (!lookup_text(c, "problem.dtype").empty()) dtypes.insert(lookup_text(c, "problem.dtype"));
      if (!lookup_text(c, "metrics.latency.cache").empty()) caches.insert(lookup_text(c, "metrics.latency.cache"));
    }
    std::string hw;
    if (r.doc.contains("meta") && r.doc["meta"].contains("devices") && r.doc["meta"]["devices"].is_array() &&
        !r.doc["meta"]["devices"].empty())
      hw = lookup_text(r.doc["meta"]["devices"][0], "name");
    if (hw.empty() && !lookup_text(r.doc, "meta.host.cpu_model").empty())
      hw = lookup_text(r.doc, "meta.host.cpu_model") +
           (lookup_text(r.doc, "meta.run.threads").empty() ? "" : ", " + lookup_text(r.doc, "meta.run.threads") + " threads");
    if (!hw.empty()) hardware.insert(hw);
  }
  auto join = [](const std::set<std::string>& v) {
    std::string o;
    for (const auto& x : v) o += (o.empty() ? "" : ", ") + x;
    return o.empty() ? std::string("not recorded") : o;
  };
  std::string cap = "FLOPs count a multiply-add as 2; latency is the median per call (plan + attention), cache " +
                    join(caches) + "; dtype " + join(dtypes) + "; hardware: " + join(hardware) + ".";
  if (t.intervals) cap += " ± is the half-width of the distribution-free 95% confidence interval of the median (from the samples).";
  if (t.bold) cap += " Bold: the best value of its column.";
  return cap;
}

void finish_cells(Table& t, const MetricDef& m, const CellSources& srcs, const TableOptions& opts,
                  const std::vector<Report>& reports) {
  const std::string sp = samples_path(m);
  const bool speedup = m.name == "speedup";
  bool any_sig = false;
  for (size_t r = 0; r < t.rows.size(); ++r)
    for (size_t c = 0; c < t.cols.size(); ++c) {
      Cell& cell = t.cells[r][c];
      const CellSource& s = srcs[r][c];
      if (cell.kind != Cell::Kind::value || !s.c || sp.empty()) continue;
      const std::vector<double> xs = numbers_at(*s.c, sp);
      const auto ci = median_ci95(xs);
      const double med = lookup_number(*s.c, "metrics.latency.median").value_or(NAN);
      if (ci) {
        if (speedup) {
          const auto bci = s.base ? median_ci95(numbers_at(*s.base, sp)) : std::nullopt;
          if (bci && !cell.is_baseline) {
            cell.lo = bci->first / ci->second;
            cell.hi = bci->second / ci->first;
          }
        } else if (m.name == "tflops" || m.name == "tflops_dense" || m.name == "gbps") {
          cell.lo = cell.value * med / ci->second;
          cell.hi = cell.value * med / ci->first;
        } else {
          cell.lo = ci->first * m.scale;
          cell.hi = ci->second * m.scale;
        }
      }
      if (opts.significance && s.base && !cell.is_baseline) {
        const std::vector<double> ys = numbers_at(*s.base, sp);
        if (xs.size() >= 2 && ys.size() >= 2 && stats::mann_whitney_u(xs, ys).p < opts.alpha) {
          cell.significant = true;
          any_sig = true;
        }
      }
    }
  t.intervals = opts.intervals;
  // Bold only where a column compares methods (rows are labels or variants): down a column of
  // sequence lengths, "best" would only say that shorter is faster.
  t.bold = opts.bold_best && m.better != 0 && (t.row_axis == "label" || t.row_axis == "variant");
  if (t.bold)
    for (size_t c = 0; c < t.cols.size(); ++c) {
      double best = m.better > 0 ? -INFINITY : INFINITY;
      size_t n = 0;
      for (size_t r = 0; r < t.rows.size(); ++r) {
        const Cell& cell = t.cells[r][c];
        if (cell.kind != Cell::Kind::value || (speedup && cell.is_baseline)) continue;
        ++n;
        best = m.better > 0 ? std::max(best, cell.value) : std::min(best, cell.value);
      }
      if (n < 2) continue;
      for (size_t r = 0; r < t.rows.size(); ++r) {
        Cell& cell = t.cells[r][c];
        // Equal as printed: values that print the same are all best.
        if (cell.kind == Cell::Kind::value && !(speedup && cell.is_baseline) &&
            format_number(cell.value, cell.style.value_or(t.style)) == format_number(best, cell.style.value_or(t.style)))
          cell.best = true;
      }
    }
  if (any_sig)
    t.notes.push_back(fmt::format("* differs from the baseline at p < {:g} (two-sided Mann–Whitney U on the latency samples).",
                                  opts.alpha));
  t.caption = conventions_caption(reports, t);
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
  CellSources srcs(t.rows.size(), std::vector<CellSource>(t.cols.size()));
  for (const auto& cr : cases) {
    const auto ri = std::find(t.rows.begin(), t.rows.end(), axis_value(*cr.report, *cr.c, t.row_axis)) - t.rows.begin();
    const auto ci = std::find(t.cols.begin(), t.cols.end(), axis_value(*cr.report, *cr.c, t.col_axis)) - t.cols.begin();
    Cell& cell = t.cells[ri][ci];
    if (cell.kind != Cell::Kind::empty) {
      ++collisions;
      continue;
    }
    CellSource& src = srcs[ri][ci];
    src.c = cr.c;
    {
      const std::string& bn = baseline[static_cast<size_t>(cr.report - reports.data())];
      bool unused = false;
      src.base = bn.empty() ? nullptr : find_baseline(*cr.report, *cr.c, bn, &unused);
      cell.is_baseline = src.base == cr.c;
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
  finish_cells(t, m, srcs, opts, reports);
  apply_marks(t, cases);
  shorten_keys(t);

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
  if (!t.common.empty()) t.title += "; every column: " + t.common;
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

namespace {

// Decimals of a printed number, so that its ± half-width is printed to the same place.
std::string same_places(double h, const std::string& printed) {
  if (printed.find('e') != std::string::npos) return fmt::format("{:.1e}", h);
  const auto dot = printed.find('.');
  const int places = dot == std::string::npos ? 0 : static_cast<int>(printed.size() - dot - 1);
  return fmt::format("{:.{}f}", h, places);
}

enum class Markup { markdown, latex };

// A cell as a paper prints it: value, "± h" (95% CI half-width), "*" (significant), bold.
std::string display_cell(const Table& t, const Cell& c, Markup mk) {
  if (c.kind != Cell::Kind::value) {
    const std::string s = cell_text(t, c);
    return mk == Markup::latex ? latex_escape(s) : markdown_escape(s);
  }
  std::string s = cell_text(t, c);
  if (t.intervals && std::isfinite(c.lo) && std::isfinite(c.hi))
    s += (mk == Markup::latex ? " $\\pm$ " : " ± ") + same_places((c.hi - c.lo) / 2, s);
  if (c.significant) s += mk == Markup::latex ? "$^{*}$" : "\\*";
  if (t.bold && c.best) s = mk == Markup::latex ? "\\textbf{" + s + "}" : "**" + s + "**";
  return s;
}

std::string latex_mark(const std::string& m) {
  return m == "†" ? "\\textsuperscript{\\dag}" : m == "‡" ? "\\textsuperscript{\\ddag}" : "";
}

std::string mark_at(const std::vector<std::string>& marks, size_t i) { return i < marks.size() ? marks[i] : ""; }

}  // namespace

std::string render_markdown(const Table& t) {
  std::string out = "**" + markdown_escape(t.title) + "**\n\n";
  out += "| " + markdown_escape(t.row_axis);
  for (size_t c = 0; c < t.cols.size(); ++c)
    out += " | " + markdown_escape(header_text(t.col_axis, t.cols[c])) + mark_at(t.col_marks, c);
  out += " |\n|:--";
  for (size_t i = 0; i < t.cols.size(); ++i) out += "|--:";
  out += "|\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    out += "| " + markdown_escape(t.rows[r]) + mark_at(t.row_marks, r);
    for (const auto& cell : t.cells[r]) out += " | " + display_cell(t, cell, Markup::markdown);
    out += " |\n";
  }
  out += "\n" + markdown_escape(t.legend) + "\n";
  for (const auto& n : t.notes) out += "\n" + markdown_escape(n) + "\n";
  if (!t.caption.empty()) out += "\n" + markdown_escape(t.caption) + "\n";
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
    out += csv_field(t.rows[r] + mark_at(t.row_marks, r));
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

std::string render_latex(const Table& t, bool float_env) {
  const size_t n = t.cols.size();
  std::string out = "% attn-bench table: " + t.title + "\n";
  if (float_env) out += "\\begin{table}\n\\centering\n";
  out += "\\begin{tabular}{l" + std::string(n, 'r') + "}\n\\toprule\n";
  const std::string col_name = canonical_axis(t.col_axis);
  const bool axis_header = is_problem_field(col_name) || col_name.rfind("param.", 0) == 0;
  if (axis_header && n > 0) {
    out += fmt::format(" & \\multicolumn{{{}}}{{c}}{{{}}} \\\\\n", n, latex_escape(col_name));
    out += fmt::format("\\cmidrule(lr){{2-{}}}\n", n + 1);
  }
  out += latex_escape(t.row_axis);
  for (size_t c = 0; c < n; ++c)
    out += " & " + latex_escape(axis_header ? t.cols[c] : header_text(t.col_axis, t.cols[c])) + latex_mark(mark_at(t.col_marks, c));
  out += " \\\\\n\\midrule\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    out += latex_escape(t.rows[r]) + latex_mark(mark_at(t.row_marks, r));
    for (const auto& cell : t.cells[r]) out += " & " + display_cell(t, cell, Markup::latex);
    out += " \\\\\n";
  }
  out += "\\bottomrule\n\\end{tabular}\n";
  if (float_env) {
    std::string cap = t.title + ". " + t.caption;
    for (const auto& note : t.notes) cap += " " + note;
    std::string tex_cap = latex_escape(cap);
    // The marks in the caption as the table prints them.
    for (const auto& [m, l] : {std::pair<std::string, std::string>{"†", latex_mark("†")}, {"‡", latex_mark("‡")}}) {
      for (size_t p = tex_cap.find(m); p != std::string::npos; p = tex_cap.find(m, p + l.size())) tex_cap.replace(p, m.size(), l);
    }
    for (size_t p = tex_cap.find("±"); p != std::string::npos; p = tex_cap.find("±", p)) tex_cap.replace(p, std::string("±").size(), "$\\pm$");
    for (size_t p = tex_cap.find("–"); p != std::string::npos; p = tex_cap.find("–", p)) tex_cap.replace(p, std::string("–").size(), "--");
    out += "\\caption{" + tex_cap + "}\n\\end{table}\n";
  }
  out += "% " + t.legend + "\n";
  for (const auto& note : t.notes) out += "% " + note + "\n";
  if (!t.caption.empty()) out += "% caption: " + t.caption + "\n";
  return out;
}

// ---- long format, NIAH, aggregation ------------------------------------------------------------

std::string render_long_csv(const std::vector<Report>& reports, const TableOptions& opts) {
  std::string out =
      "report,id,variant,label,fidelity,backend,status,reason,mode,batch,heads,kv_heads,head_dim,v_dim,q_len,"
      "kv_len,causal,dtype,metric,value,unit,ci95_lo,ci95_hi,samples\r\n";
  auto g17 = [](double v) { return std::isfinite(v) ? fmt::format("{:.17g}", v) : std::string(); };
  for (size_t ri = 0; ri < reports.size(); ++ri) {
    const Report& r = reports[ri];
    const std::string bname = opts.baseline.empty() ? r.baseline() : opts.baseline;
    for (const auto& c : r.cases()) {
      std::string head = csv_field(r.name);
      // Appending piecewise: `"," + std::string&&` trips GCC 12's false -Wrestrict (PR 105329).
      auto add = [&head](const std::string& field) {
        head += ',';
        head += csv_field(field);
      };
      for (const char* k : {"id", "variant", "label"}) add(lookup_text(c, k));
      add(fidelity_level(c));
      add(lookup_text(c, "backend"));
      add(status_of(c));
      add(lookup_text(c, "reason"));
      for (const char* k : {"mode", "batch", "heads", "kv_heads", "head_dim", "v_dim", "q_len", "kv_len", "causal", "dtype"})
        add(lookup_text(c, std::string("problem.") + k));
      bool ambiguous = false;
      const Json* b = bname.empty() ? nullptr : find_baseline(r, c, bname, &ambiguous);
      for (const auto& m : metric_defs()) {
        double v = NAN;
        if (m.name == "speedup") {
          if (!b || status_of(*b) != "ok") continue;
          v = lookup_number(*b, "metrics.latency.median").value_or(NAN) / lookup_number(c, "metrics.latency.median").value_or(NAN);
        } else {
          const auto x = lookup_number(c, m.path);
          if (!x) continue;
          v = *x * m.scale;
        }
        if (!std::isfinite(v)) continue;
        double lo = NAN, hi = NAN;
        const std::string sp = samples_path(m);
        const std::vector<double> xs = sp.empty() ? std::vector<double>{} : numbers_at(c, sp);
        if (const auto ci = median_ci95(xs)) {
          const double med = lookup_number(c, "metrics.latency.median").value_or(NAN);
          if (m.name == "speedup") {
            if (const auto bci = median_ci95(numbers_at(*b, sp))) lo = bci->first / ci->second, hi = bci->second / ci->first;
          } else if (m.name == "tflops" || m.name == "tflops_dense" || m.name == "gbps") {
            lo = v * med / ci->second, hi = v * med / ci->first;
          } else {
            lo = ci->first * m.scale, hi = ci->second * m.scale;
          }
        }
        out += head + "," + m.name + "," + g17(v) + "," + csv_field(m.unit) + "," + g17(lo) + "," + g17(hi) + "," +
               (xs.empty() ? "" : std::to_string(xs.size())) + "\r\n";
      }
      if (status_of(c) != "ok" && c.contains("metrics") && c["metrics"].empty())
        out += head + ",,,,,,\r\n";  // a failed/skipped case with no metric still gets its row
    }
  }
  return out;
}

Table build_niah_table(const std::vector<Report>& reports, const TableOptions& opts) {
  (void)opts;
  Table t;
  t.metric = "niah";
  t.metric_unit = "%";
  t.row_axis = "label";
  t.col_axis = "cell";
  t.style = NumberStyle::significant3;
  const Json* first = nullptr;
  std::vector<CaseRef> cases;
  for (const auto& r : reports)
    for (const auto& c : r.cases()) {
      if (!c.contains("metrics") || !c["metrics"].contains("niah")) continue;
      const Json& m = c["metrics"]["niah"];
      if (status_of(c) == "ok" && m.is_object() && m.contains("success") && !first) first = &m;
      cases.push_back({&r, &c});
    }
  if (!first)
    throw InputError("table -m niah: no case of these reports has a `niah` metric with a heat map (docs/metrics.md)");
  const Json lengths = first->value("lengths", Json::array()), depths = first->value("depths", Json::array());
  for (const auto& l : lengths) {
    const int64_t n = l.get<int64_t>();
    const std::string len = n % 1024 == 0 ? fmt::format("{}k", n / 1024) : std::to_string(n);
    for (const auto& d : depths) t.cols.push_back(fmt::format("{} d={:g}", len, d.get<double>()));
  }
  t.cols.push_back("mean");
  size_t mismatched = 0;
  for (const auto& cr : cases) {
    t.rows.push_back(axis_value(*cr.report, *cr.c, "label"));
    std::vector<Cell> row(t.cols.size());
    const std::string st = status_of(*cr.c);
    const Json& m = (*cr.c)["metrics"]["niah"];
    if (st != "ok" || !m.is_object() || !m.contains("success")) {
      for (auto& cell : row) {
        cell.kind = st == "failed" ? Cell::Kind::failed : st == "skipped" ? Cell::Kind::skipped : Cell::Kind::na;
        cell.why = lookup_text(m, "reason");
      }
    } else if (m.value("lengths", Json::array()) != lengths || m.value("depths", Json::array()) != depths) {
      ++mismatched;
      for (auto& cell : row) cell.kind = Cell::Kind::na, cell.why = "other grid";
    } else {
      for (size_t li = 0; li < lengths.size(); ++li)
        for (size_t di = 0; di < depths.size(); ++di) {
          Cell& cell = row[li * depths.size() + di];
          const Json& v = m["success"][di][li];
          if (v.is_number()) cell.kind = Cell::Kind::value, cell.value = 100 * v.get<double>();
          else cell.kind = Cell::Kind::na;
        }
      if (const auto rate = lookup_number(m, "success_rate")) row.back().kind = Cell::Kind::value, row.back().value = 100 * *rate;
    }
    t.cells.push_back(row);
  }
  if (mismatched)
    t.warnings.push_back(fmt::format("{} case(s) use another length/depth grid than the first (n/a); table their reports apart",
                                     mismatched));
  const Json& o = first->value("options", Json::object());
  t.title = fmt::format("niah success (% of probes); rows: label, columns: context length × needle depth ({}, {} haystack, "
                        "margin {} nats, tau {}, {} trials x {} probes per cell)",
                        lookup_text(*first, "mode"), lookup_text(*first, "haystack"), lookup_text(o, "margin"),
                        lookup_text(o, "tau"), lookup_text(o, "trials"), lookup_text(*first, "probes_per_trial"));
  t.legend = "niah = % of probes whose output recovered the needle's value (cos >= tau) at that context length and needle "
             "depth (0 = start, 1 = end); mean = over every cell (docs/metrics.md). failed/skipped: case status.";
  t.bold = false;
  t.intervals = false;
  apply_marks(t, cases);
  return t;
}

Report aggregate_reports(const std::vector<Report>& reports) {
  if (reports.empty()) throw InputError("table --aggregate: no reports given");
  const std::string sha = lookup_text(reports[0].doc, "meta.spec.sha256");
  for (const auto& r : reports)
    if (lookup_text(r.doc, "meta.spec.sha256") != sha)
      throw InputError(fmt::format(
          "table --aggregate: '{}' ran another spec than '{}' (meta.spec.sha256 {} vs {}); aggregate repeated runs of one spec",
          r.path, reports[0].path, lookup_text(r.doc, "meta.spec.sha256").substr(0, 12), sha.substr(0, 12)));
  Json doc = reports[0].doc;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < doc["cases"].size(); ++i) index[doc["cases"][i]["id"].get<std::string>()] = i;
  std::map<std::string, size_t> runs;
  for (const auto& [id, i] : index) runs[id] = 1;
  for (size_t k = 1; k < reports.size(); ++k)
    for (const auto& c : reports[k].cases()) {
      const std::string id = c["id"].get<std::string>();
      auto it = index.find(id);
      if (it == index.end()) {
        index[id] = doc["cases"].size();
        runs[id] = 1;
        doc["cases"].push_back(c);
        continue;
      }
      Json& into = doc["cases"][it->second];
      ++runs[id];
      if (status_of(into) != "ok" && status_of(c) == "ok") {  // keep a run that finished
        into = c;
        continue;
      }
      if (status_of(c) != "ok") continue;
      auto pool = [&](const std::string& block) {  // "" = total, else phases.<name>
        Json* dst = &into["metrics"]["latency"];
        const Json* src = c.contains("metrics") && c["metrics"].contains("latency") ? &c["metrics"]["latency"] : nullptr;
        if (!block.empty()) {
          if (!src || !src->contains("phases") || !(*src)["phases"].contains(block) || !dst->contains("phases")) return;
          dst = &(*dst)["phases"][block];
          src = &(*src)["phases"][block];
        }
        if (!src || !src->contains("samples") || !dst->contains("samples")) return;
        for (const auto& v : (*src)["samples"]) (*dst)["samples"].push_back(v);
        std::vector<double> xs;
        for (const auto& v : (*dst)["samples"])
          if (v.is_number()) xs.push_back(v.get<double>());
        (*dst)["median"] = stats::median(xs);
        if (block.empty()) {
          (*dst)["n"] = xs.size();
          (*dst)["p10"] = stats::quantile(xs, 0.1);
          (*dst)["p90"] = stats::quantile(xs, 0.9);
          (*dst)["min"] = *std::min_element(xs.begin(), xs.end());
        }
      };
      if (into.contains("metrics") && into["metrics"].contains("latency") && into["metrics"]["latency"].is_object()) {
        const double old_median = into["metrics"]["latency"].value("median", NAN);
        pool("");
        pool("plan");
        pool("attention");
        // Rates are constants over the median: rescale them to the pooled one.
        const double new_median = into["metrics"]["latency"].value("median", NAN);
        if (into["metrics"]["latency"].contains("rates") && std::isfinite(old_median) && new_median > 0)
          for (auto& [k, v] : into["metrics"]["latency"]["rates"].items())
            if (v.is_number()) v = v.get<double>() * old_median / new_median;
      }
    }
  for (auto& c : doc["cases"]) c["aggregated_runs"] = runs[c["id"].get<std::string>()];
  Report r = report_from_json(std::move(doc), reports[0].path);
  r.name = reports[0].name + fmt::format("+{}", reports.size() - 1);
  for (const auto& x : reports)
    for (const auto& w : x.warnings) r.warnings.push_back(w);
  return r;
}

}  // namespace ab::analysis
