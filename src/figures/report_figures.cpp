#include "figures/report_figures.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "core/errors.hpp"
#include "variants/registry.hpp"

namespace ab::figures {

using analysis::Json;
using analysis::lookup_number;
using analysis::lookup_text;
using analysis::Report;

const std::vector<std::string>& figure_kind_names() {
  static const std::vector<std::string> n = {"latency", "speedup", "pareto", "niah", "roofline"};
  return n;
}

FigureKind parse_figure_kind(const std::string& name) {
  const auto& n = figure_kind_names();
  const auto it = std::find(n.begin(), n.end(), name);
  if (it == n.end()) throw InputError(fmt::format("unknown figure kind '{}': {}", name, suggest(name, n)));
  return static_cast<FigureKind>(it - n.begin());
}

std::string case_fidelity(const Json& c) {
  const std::string own = lookup_text(c, "fidelity.level");
  if (!own.empty()) return own;
  if (const RegistryEntry* e = find_variant(lookup_text(c, "variant"))) return fidelity_name(e->info.fidelity.level);
  return "";
}

std::string fidelity_mark(const std::string& level) {
  if (level == "stand-in") return "†";
  if (level == "simplified") return "‡";
  return "";
}

std::vector<std::string> fidelity_notes(const std::vector<std::string>& levels) {
  std::vector<std::string> out;
  if (std::find(levels.begin(), levels.end(), "stand-in") != levels.end())
    out.push_back("† stand-in: a defining component of the paper's method is replaced (see `attn-bench list`)");
  if (std::find(levels.begin(), levels.end(), "simplified") != levels.end())
    out.push_back("‡ simplified: the paper's method with named departures (see `attn-bench list`)");
  return out;
}

namespace {

struct CaseRef {
  const Report* report;
  const Json* c;
};

bool is_ok(const Json& c) {
  const std::string s = lookup_text(c, "status");
  return s.empty() || s == "ok";
}

// A peer: a case measured by another tool (scripts/peers), recorded in a report whose
// meta.run.peers lists them, or of a variant this build does not know.
bool is_peer(const Report& r, const Json& c) {
  if (r.doc.contains("meta") && r.doc["meta"].contains("run") && r.doc["meta"]["run"].contains("peers")) return true;
  return find_variant(lookup_text(c, "variant")) == nullptr;
}

std::string display(const Json& c) {
  const std::string label = lookup_text(c, "label");
  return (label.empty() ? lookup_text(c, "variant") : label) + fidelity_mark(case_fidelity(c));
}

// The problem without its lengths: the cases of one sequence-length sweep share it.
std::string sweep_group(const Json& c) {
  return fmt::format("{} b{} h{}/kv{} d{} {} {} {}", lookup_text(c, "problem.mode"), lookup_text(c, "problem.batch"),
                     lookup_text(c, "problem.heads"), lookup_text(c, "problem.kv_heads"),
                     lookup_text(c, "problem.head_dim"), lookup_text(c, "problem.causal") == "true" ? "causal" : "full",
                     lookup_text(c, "problem.dtype"), lookup_text(c, "backend"));
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double pos = q * (v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  const double f = pos - i;
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

// Median and the p10–p90 interval of the stored latency samples (seconds), falling back to
// the stored statistics when the samples are absent.
struct Interval {
  double median = NAN, lo = NAN, hi = NAN;
};
Interval latency_interval(const Json& c) {
  Interval iv;
  iv.median = lookup_number(c, "metrics.latency.median").value_or(NAN);
  std::vector<double> s;
  if (c.contains("metrics") && c["metrics"].contains("latency") && c["metrics"]["latency"].is_object() &&
      c["metrics"]["latency"].contains("samples") && c["metrics"]["latency"]["samples"].is_array())
    for (const auto& x : c["metrics"]["latency"]["samples"])
      if (x.is_number()) s.push_back(x.get<double>());
  if (s.size() >= 2) {
    iv.lo = quantile(s, 0.1);
    iv.hi = quantile(s, 0.9);
  } else {
    iv.lo = lookup_number(c, "metrics.latency.p10").value_or(NAN);
    iv.hi = lookup_number(c, "metrics.latency.p90").value_or(NAN);
  }
  return iv;
}

std::vector<CaseRef> ok_cases(const std::vector<Report>& reports) {
  std::vector<CaseRef> out;
  for (const auto& r : reports)
    for (const auto& c : r.cases())
      if (is_ok(c)) out.push_back({&r, &c});
  return out;
}

// Colours by variant (one method, one colour, the same in every figure of one call: seeded
// with the variants of all reports in order of appearance), markers by label within it.
struct Styler {
  Styler() = default;
  explicit Styler(const std::vector<Report>& reports) {
    for (const auto& r : reports)
      for (const auto& c : r.cases()) colour_of(lookup_text(c, "variant"));
  }
  std::map<std::string, int> colour;
  std::map<std::string, std::vector<std::string>> labels;
  int colour_of(const std::string& variant) {
    auto it = colour.find(variant);
    if (it != colour.end()) return it->second;
    const int c = static_cast<int>(colour.size());
    colour[variant] = c;
    return c;
  }
  Marker marker_of(const std::string& variant, const std::string& label) {
    auto& l = labels[variant];
    auto it = std::find(l.begin(), l.end(), label);
    size_t i = static_cast<size_t>(it - l.begin());
    if (it == l.end()) l.push_back(label);
    static const Marker kM[] = {Marker::circle, Marker::square, Marker::triangle, Marker::diamond, Marker::cross};
    // Colours repeat after 8 methods: shift the marker cycle so the pair stays distinct.
    return kM[(i + static_cast<size_t>(colour_of(variant) / 8)) % 5];
  }
};

std::string baseline_of(const Report& r, const FigureOptions& o) { return o.baseline.empty() ? r.baseline() : o.baseline; }

// The baseline case for c: same problem key, label or variant = the baseline name, ok; in c's
// own report first, then in any report (peers measured apart from the suite).
const Json* find_baseline(const std::vector<Report>& reports, const Report& own, const Json& c, const FigureOptions& o) {
  const std::string key = lookup_text(c, "problem.key");
  auto search = [&](const Report& r, const std::string& b) -> const Json* {
    if (b.empty()) return nullptr;
    const Json* by_variant = nullptr;
    for (const auto& x : r.cases()) {
      if (!is_ok(x) || lookup_text(x, "problem.key") != key) continue;
      if (lookup_text(x, "label") == b) return &x;
      if (!by_variant && lookup_text(x, "variant") == b) by_variant = &x;
    }
    return by_variant;
  };
  if (const Json* b = search(own, baseline_of(own, o))) return b;
  for (const auto& r : reports)
    if (&r != &own)
      if (const Json* b = search(r, baseline_of(r, o).empty() ? baseline_of(own, o) : baseline_of(r, o))) return b;
  return nullptr;
}

std::string file_safe(std::string s) {
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_') ch = '_';
  return s;
}

std::vector<std::string> levels_of(const std::vector<CaseRef>& cs) {
  std::vector<std::string> l;
  for (const auto& cr : cs) l.push_back(case_fidelity(*cr.c));
  return l;
}

// ---- latency / speedup against N ---------------------------------------------------------------

FigureSet against_n(const std::vector<Report>& reports, bool speedup, const FigureOptions& o) {
  FigureSet out;
  std::map<std::string, std::vector<CaseRef>> groups;
  std::vector<std::string> order;
  for (const auto& cr : ok_cases(reports)) {
    if (!lookup_number(*cr.c, "metrics.latency.median")) continue;
    const std::string g = sweep_group(*cr.c);
    if (!groups.count(g)) order.push_back(g);
    groups[g].push_back(cr);
  }
  for (const auto& g : order) {
    const auto& cs = groups[g];
    std::set<double> ns;
    for (const auto& cr : cs) ns.insert(lookup_number(*cr.c, "problem.kv_len").value_or(NAN));
    if (ns.size() < 2) continue;
    Figure f;
    f.id = file_safe((speedup ? "speedup-" : "latency-") + g);
    f.x = {"sequence length N = kv_len (tokens, log scale)", Scale::log, NAN, NAN, true};
    Styler st(reports);
    std::map<std::string, Series> by_label;
    std::vector<std::string> labels;
    std::vector<CaseRef> used;
    for (const auto& cr : cs) {
      const double n = lookup_number(*cr.c, "problem.kv_len").value_or(NAN);
      Point p{n, NAN};
      if (speedup) {
        const Json* b = find_baseline(reports, *cr.report, *cr.c, o);
        if (!b || b == cr.c) continue;
        if (lookup_text(*b, "label") == lookup_text(*cr.c, "label")) continue;
        const double tb = lookup_number(*b, "metrics.latency.median").value_or(NAN);
        const Interval iv = latency_interval(*cr.c);
        p.y = tb / iv.median;
        // The case's own spread carried into the ratio (the baseline's median held fixed).
        p.lo = tb / iv.hi;
        p.hi = tb / iv.lo;
      } else {
        const Interval iv = latency_interval(*cr.c);
        p.y = iv.median * 1e3;
        p.lo = iv.lo * 1e3;
        p.hi = iv.hi * 1e3;
      }
      const std::string name = display(*cr.c) + (reports.size() > 1 && is_peer(*cr.report, *cr.c) ? " (peer)" : "");
      if (!by_label.count(name)) {
        Series s;
        s.name = name;
        const std::string variant = lookup_text(*cr.c, "variant");
        s.colour = st.colour_of(variant);
        s.marker = st.marker_of(variant, name);
        s.dashed = is_peer(*cr.report, *cr.c);
        s.band = !speedup;
        by_label[name] = s;
        labels.push_back(name);
      }
      by_label[name].points.push_back(p);
      used.push_back(cr);
    }
    if (labels.empty()) continue;
    std::vector<double> all_n(ns.begin(), ns.end());
    std::string crossovers;
    if (speedup) {
      Series one;
      one.name = "baseline (1×)";
      one.colour = -1;
      one.marker = Marker::none;
      one.dashed = true;
      one.points = {{all_n.front(), 1.0}, {all_n.back(), 1.0}};
      f.series.push_back(one);
    }
    for (const auto& l : labels) {
      Series s = by_label[l];
      std::sort(s.points.begin(), s.points.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
      if (speedup)  // the crossover: where the speedup first reaches 1, interpolated in log-log
        for (size_t i = 0; i + 1 < s.points.size(); ++i) {
          const Point &a = s.points[i], &b = s.points[i + 1];
          if (a.y < 1 && b.y >= 1) {
            const double t = -std::log(a.y) / (std::log(b.y) - std::log(a.y));
            const double nx = std::exp(std::log(a.x) + t * (std::log(b.x) - std::log(a.x)));
            f.marks.push_back({nx, 1.0, "N≈" + tick_text(nx), s.colour});
            crossovers += (crossovers.empty() ? "" : "; ") + l + " from N≈" + tick_text(nx);
            break;
          }
        }
      f.series.push_back(s);
    }
    std::set<std::string> bnames;  // the baselines these cases were divided by
    for (const auto& cr : used)
      if (const Json* b = find_baseline(reports, *cr.report, *cr.c, o)) bnames.insert(lookup_text(*b, "label"));
    std::string bl;
    for (const auto& b : bnames) bl += (bl.empty() ? "" : ", ") + b;
    if (speedup) {
      f.title = fmt::format("Speedup over {} vs sequence length ({})", bl, g);
      f.y = {"speedup (baseline median / case median, ×)", Scale::log};
      f.caption = fmt::format(
          "Speedup = median latency of the baseline ({}) / median latency of the case, same problem; > 1 is faster. "
          "Bars: the case's p10–p90 latency samples over the baseline median. A cross marks where a variant starts "
          "beating the baseline (log-log interpolation between measured N){}. Dashed lines: peers.",
          bl, crossovers.empty() ? ": none in this range" : ": " + crossovers);
    } else {
      f.title = fmt::format("Latency vs sequence length ({})", g);
      f.y = {"latency per call (ms, median, log scale)", Scale::log};
      f.caption =
          "Median latency per call (plan + attention) against N, log-log; the band spans the p10–p90 of the stored "
          "samples. Dashed lines: peers (other tools on the same problems).";
    }
    f.notes = fidelity_notes(levels_of(used));
    out.figures.push_back(std::move(f));
  }
  if (out.figures.empty())
    out.why_none = speedup ? "no sequence-length sweep with a baseline case (two or more kv_len of one problem shape)"
                           : "no sequence-length sweep (two or more kv_len of one problem shape) with latency";
  return out;
}

// ---- recall vs speedup --------------------------------------------------------------------------

FigureSet pareto(const std::vector<Report>& reports, const FigureOptions& o) {
  FigureSet out;
  std::map<std::string, std::vector<CaseRef>> groups;
  std::vector<std::string> order;
  for (const auto& cr : ok_cases(reports)) {
    const std::string k = lookup_text(*cr.c, "problem.key") + " " + lookup_text(*cr.c, "backend");
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(cr);
  }
  for (const auto& k : order) {
    const auto& cs = groups[k];
    bool any_recall = false;
    for (const auto& cr : cs)
      if (lookup_number(*cr.c, "metrics.recall.mass_recall.mean")) any_recall = true;
    const std::string ypath = any_recall ? "metrics.recall.mass_recall.mean" : "metrics.recall.output_rel_error.mean";
    Styler st(reports);
    std::map<std::string, Series> by_variant;
    std::vector<std::string> variants;
    std::vector<Point> all;
    std::vector<CaseRef> used;
    for (const auto& cr : cs) {
      const auto y = lookup_number(*cr.c, ypath);
      const Json* b = find_baseline(reports, *cr.report, *cr.c, o);
      if (!y || !b) continue;
      const double s = lookup_number(*b, "metrics.latency.median").value_or(NAN) /
                       lookup_number(*cr.c, "metrics.latency.median").value_or(NAN);
      if (!std::isfinite(s) || !(s > 0)) continue;
      const std::string variant = lookup_text(*cr.c, "variant");
      const std::string name = variant + fidelity_mark(case_fidelity(*cr.c));
      if (!by_variant.count(name)) {
        Series se;
        se.name = name;
        se.colour = st.colour_of(variant);
        se.marker = palette_marker(se.colour);
        by_variant[name] = se;
        variants.push_back(name);
      }
      by_variant[name].points.push_back({s, *y});
      all.push_back({s, *y});
      used.push_back(cr);
    }
    if (all.size() < 3) continue;
    Figure f;
    f.id = file_safe("pareto-" + k);
    f.title = fmt::format("{} vs speedup ({})", any_recall ? "Recall" : "Output error", k);
    f.x = {"speedup over the baseline (×, log scale)", Scale::log};
    f.y = any_recall ? Axis{"attention mass recall (mean over sampled rows)", Scale::linear}
                     : Axis{"output relative error (mean, log scale)", Scale::log};
    // Pareto front: no other point is both faster and better.
    std::vector<Point> sorted = all;
    std::sort(sorted.begin(), sorted.end(), [](const Point& a, const Point& b) { return a.x > b.x; });
    Series front;
    front.name = "Pareto front";
    front.colour = -1;
    front.marker = Marker::none;
    front.dashed = true;
    double best = any_recall ? -INFINITY : INFINITY;
    for (const auto& p : sorted) {
      const bool better = any_recall ? p.y > best : p.y < best;
      if (!better) continue;
      best = p.y;
      if (!front.points.empty()) front.points.push_back({p.x, front.points.back().y});  // a step
      front.points.push_back(p);
    }
    f.series.push_back(front);
    for (const auto& v : variants) {
      Series s = by_variant[v];
      std::sort(s.points.begin(), s.points.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
      s.line = s.points.size() > 1;
      f.series.push_back(s);
    }
    f.caption = fmt::format(
        "Each point is one budget of a method (one colour and marker per method; the budgets of a method are "
        "connected in speedup order). {} The dashed grey staircase is the Pareto front: no other point is both "
        "faster and {}.",
        any_recall ? "Recall = mean dense attention mass inside the selected keys." : "Output error = mean ||o − o*|| / ||o*||.",
        any_recall ? "higher in recall" : "lower in error");
    f.notes = fidelity_notes(levels_of(used));
    out.figures.push_back(std::move(f));
  }
  if (out.figures.empty()) out.why_none = "no problem with three or more cases that have both recall (or output error) and a baseline";
  return out;
}

// ---- NIAH heat maps -----------------------------------------------------------------------------

FigureSet niah(const std::vector<Report>& reports) {
  FigureSet out;
  for (const auto& r : reports) {
    Figure f;
    std::vector<CaseRef> used;
    std::string desc;
    for (const auto& c : r.cases()) {
      if (!is_ok(c) || !c.contains("metrics") || !c["metrics"].contains("niah")) continue;
      const Json& m = c["metrics"]["niah"];
      if (!m.is_object() || !m.contains("success") || !m["success"].is_array()) continue;
      Heatmap h;
      h.title = display(c);
      for (const auto& l : m.value("lengths", Json::array())) h.cols.push_back(tick_text(l.get<double>(), true));
      for (const auto& d : m.value("depths", Json::array())) h.rows.push_back(fmt::format("{:g}", d.get<double>()));
      for (const auto& row : m["success"]) {
        std::vector<double> vals;
        for (const auto& v : row) vals.push_back(v.is_number() ? v.get<double>() : NAN);
        h.values.push_back(vals);
      }
      if (desc.empty() && m.contains("options"))
        desc = fmt::format("{}, {} haystack, margin {} nats, τ {}, {} trials × {} probes per cell",
                           lookup_text(m, "mode"), lookup_text(m, "haystack"), lookup_text(m, "options.margin"),
                           lookup_text(m, "options.tau"), lookup_text(m, "options.trials"), lookup_text(m, "probes_per_trial"));
      f.maps.push_back(std::move(h));
      used.push_back({&r, &c});
    }
    if (f.maps.empty()) continue;
    f.id = file_safe("niah-" + r.name);
    f.title = fmt::format("Needle in a haystack: success rate ({})", r.name);
    f.map_x_label = "context length (tokens)";
    f.map_y_label = "needle depth (0 = start, 1 = end)";
    f.scale_label = "success (% of probes)";
    f.caption = fmt::format(
        "Percentage of probes whose output recovered the needle's value (cos ≥ τ), per context length and needle "
        "depth; one map per variant, one colour scale (0–100 %). {}.",
        desc);
    f.notes = fidelity_notes(levels_of(used));
    out.figures.push_back(std::move(f));
  }
  if (out.figures.empty()) out.why_none = "no case with a `niah` metric";
  return out;
}

// ---- roofline ------------------------------------------------------------------------------------


FigureSet roofline(const std::vector<Report>& reports, const FigureOptions& o) {
  FigureSet out;
  std::map<std::string, std::vector<CaseRef>> groups;
  std::vector<std::string> order;
  for (const auto& cr : ok_cases(reports)) {
    if (!lookup_number(*cr.c, "metrics.latency.rates.tflops_executed")) continue;
    // The machine the rates belong to: the GPU for CUDA cases, else the host CPU.
    std::string host = lookup_text(cr.report->doc, "meta.host.cpu_model");
    const Json& doc = cr.report->doc;
    if (lookup_text(*cr.c, "backend") == "cuda" && doc.contains("meta") && doc["meta"].contains("devices") &&
        doc["meta"]["devices"].is_array() && !doc["meta"]["devices"].empty())
      host = lookup_text(doc["meta"]["devices"][0], "name");
    const std::string k = lookup_text(*cr.c, "backend") + (host.empty() ? "" : " · " + host);
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(cr);
  }
  for (const auto& k : order) {
    Figure f;
    Styler st(reports);
    std::map<std::string, Series> by_variant;
    std::vector<std::string> variants;
    std::vector<CaseRef> used;
    double best_t = 0, best_b = 0, xmin = INFINITY, xmax = 0;
    for (const auto& cr : groups[k]) {
      const double ex = lookup_number(*cr.c, "metrics.flops.executed").value_or(NAN);
      const double bytes = lookup_number(*cr.c, "metrics.flops.bytes_min").value_or(NAN);
      const double t = lookup_number(*cr.c, "metrics.latency.rates.tflops_executed").value_or(NAN);
      const double gb = lookup_number(*cr.c, "metrics.latency.rates.gbps").value_or(NAN);
      if (!(ex > 0) || !(bytes > 0) || !(t > 0)) continue;
      const double ai = ex / bytes;
      best_t = std::max(best_t, t);
      if (gb > 0) best_b = std::max(best_b, gb);
      xmin = std::min(xmin, ai);
      xmax = std::max(xmax, ai);
      const std::string variant = lookup_text(*cr.c, "variant");
      const std::string name = variant + fidelity_mark(case_fidelity(*cr.c)) + (is_peer(*cr.report, *cr.c) ? " (peer)" : "");
      if (!by_variant.count(name)) {
        Series s;
        s.name = name;
        s.colour = st.colour_of(variant);
        s.marker = palette_marker(s.colour);
        s.line = false;
        by_variant[name] = s;
        variants.push_back(name);
      }
      by_variant[name].points.push_back({ai, t});
      used.push_back(cr);
    }
    if (variants.empty()) continue;
    // The roof: peaks given on the command line, else the peaks a report of this group
    // measured (`run --measure-peaks`, meta.peaks of the same backend), else the best achieved.
    double peak_t = o.peak_tflops, peak_b = o.peak_gbps;
    std::string source = std::isfinite(peak_t) && std::isfinite(peak_b)
                             ? (o.peaks_source.empty() ? std::string("given on the command line (--peak-tflops, --peak-gbps)")
                                                       : "measured by `attn-bench peaks` (" + o.peaks_source + ")")
                             : std::string();
    std::string methods;
    if (source.empty())
      for (const auto& cr : used) {
        const Json& doc = cr.report->doc;
        const auto t = lookup_number(doc, "meta.peaks.tflops.value");
        const auto b = lookup_number(doc, "meta.peaks.gbps.value");
        if (!t || !b || lookup_text(doc, "meta.peaks.device") != lookup_text(*cr.c, "backend")) continue;
        peak_t = *t;
        peak_b = *b;
        source = "measured before the run (`run --measure-peaks`, meta.peaks of " + cr.report->path + ")";
        methods = lookup_text(doc, "meta.peaks.tflops.method") + "; " + lookup_text(doc, "meta.peaks.gbps.method");
        break;
      }
    const bool measured = std::isfinite(peak_t) && std::isfinite(peak_b) && !source.empty();
    const double P = measured ? peak_t : best_t;
    const double B = measured ? peak_b : best_b;
    Series ceil;
    // Numbers typed on the command line may be a datasheet's: only a microbenchmark's are "measured".
    const bool typed = measured && o.peaks_source.empty() && std::isfinite(o.peak_tflops);
    ceil.name = measured ? fmt::format("{}: {} TFLOP/s, {} GB/s", typed ? "peaks given" : "measured peaks", tick_text(P), tick_text(B))
                         : fmt::format("best achieved here: {} TFLOP/s, {} GB/s (not a machine peak)", tick_text(P), tick_text(B));
    ceil.colour = -1;
    ceil.marker = Marker::none;
    ceil.dashed = !measured;
    const double x0 = xmin / 3, x1 = xmax * 3;
    if (B > 0) {
      const double knee = P * 1000 / B;  // FLOP/byte where bandwidth × intensity reaches P
      ceil.points.push_back({x0, std::min(P, x0 * B / 1000)});
      if (knee > x0 && knee < x1) ceil.points.push_back({knee, P});
      ceil.points.push_back({x1, std::min(P, x1 * B / 1000)});
    } else {
      ceil.points = {{x0, P}, {x1, P}};
    }
    f.series.push_back(ceil);
    for (const auto& v : variants) f.series.push_back(by_variant[v]);
    f.id = file_safe("roofline-" + k);
    f.title = fmt::format("Roofline ({})", k);
    f.x = {"arithmetic intensity (executed FLOP / bytes_min, log scale)", Scale::log};
    f.y = {"achieved TFLOP/s (executed, log scale)", Scale::log};
    f.caption = std::string(
                    "Each point is one case: executed FLOPs over the minimum bytes (inputs read once, outputs written "
                    "once), so the intensity is an upper bound on the real one. ") +
                (measured ? std::string(typed ? "The roof is the peak compute and bandwidth " : "The roof is the machine's peak compute and bandwidth, ") + source + "." +
                                (methods.empty() ? std::string() : " Measured with: " + methods + ".")
                          : std::string("No machine peak was measured (`run --measure-peaks`, or `attn-bench peaks -o F` "
                                        "and --peaks F): the dashed roof is the best TFLOP/s and GB/s achieved by any "
                                        "case here, not the machine's peak."));
    f.notes = fidelity_notes(levels_of(used));
    out.figures.push_back(std::move(f));
  }
  if (out.figures.empty()) out.why_none = "no case with latency rates and FLOP/byte counts";
  return out;
}

}  // namespace

FigureSet build_figures(const std::vector<Report>& reports, FigureKind kind, const FigureOptions& opts) {
  switch (kind) {
    case FigureKind::latency: return against_n(reports, false, opts);
    case FigureKind::speedup: return against_n(reports, true, opts);
    case FigureKind::pareto: return pareto(reports, opts);
    case FigureKind::niah: return niah(reports);
    case FigureKind::roofline: return roofline(reports, opts);
  }
  return {};
}

void load_peaks_file(const std::string& path, FigureOptions& opts) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("--peaks: cannot read '" + path + "'");
  Json j;
  try {
    j = Json::parse(f, nullptr, true, false);
  } catch (const std::exception& e) {
    throw InputError("--peaks: '" + path + "' is not JSON: " + e.what());
  }
  const auto t = j.is_object() ? lookup_number(j, "tflops.value") : std::nullopt;
  const auto b = j.is_object() ? lookup_number(j, "gbps.value") : std::nullopt;
  if (!j.is_object() || j.value("kind", std::string()) != "attn-bench peaks" || !t || !b || !(*t > 0) || !(*b > 0))
    throw InputError("--peaks: '" + path + "' is not a peaks file (write one with `attn-bench peaks -o FILE`)");
  opts.peak_tflops = *t;
  opts.peak_gbps = *b;
  opts.peaks_source = path + ", " + j.value("device", std::string("?")) + ": " + lookup_text(j, "tflops.method") +
                      "; " + lookup_text(j, "gbps.method");
}

}  // namespace ab::figures
