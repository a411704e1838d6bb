#include "analysis/compare.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>

#include "analysis/stats.hpp"
#include "core/errors.hpp"

namespace ab::analysis {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string status_of(const Json& c) {
  const std::string s = lookup_text(c, "status");
  return s.empty() ? "ok" : s;
}

std::vector<double> samples_of(const Json& c) {
  std::vector<double> out;
  const Json* node = &c;
  for (const char* k : {"metrics", "latency", "samples"}) {
    if (!node->is_object() || !node->contains(k)) return {};
    node = &(*node)[k];
  }
  if (!node->is_array()) return {};
  for (const auto& v : *node)
    if (v.is_number() && std::isfinite(v.get<double>())) out.push_back(v.get<double>());
  return out;
}

double ratio_of(double next, double base) {
  if (base == 0) return next == 0 ? 1.0 : kInf;
  return next / base;
}

// Cases by id in document order; a repeated id keeps the first and is reported.
std::vector<std::pair<std::string, const Json*>> index_cases(const Report& r,
                                                             std::vector<std::string>& notes) {
  std::vector<std::pair<std::string, const Json*>> out;
  std::map<std::string, int> seen;
  for (const auto& c : r.cases()) {
    const std::string id = c["id"].get<std::string>();
    if (seen[id]++) {
      notes.push_back(fmt::format("'{}' repeats case id {}; the first one is compared", r.path, id));
      continue;
    }
    out.emplace_back(id, &c);
  }
  return out;
}

constexpr const char* kRecallPath = "metrics.recall.mass_recall.mean";
constexpr const char* kAccuracyPath = "metrics.accuracy.rel";
constexpr const char* kOutputErrorPath = "metrics.recall.output_rel_error.mean";

}  // namespace

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::ok: return "ok";
    case Verdict::faster: return "faster";
    case Verdict::slower_not_significant: return "slower-not-significant";
    case Verdict::improved: return "improved";
    case Verdict::regressed: return "REGRESSED";
  }
  return "?";
}

std::vector<std::string> compare_metric_names() { return {"latency", "recall", "error"}; }

double parse_fraction(const std::string& text, const std::string& option) {
  std::string s = text;
  while (!s.empty() && s.back() == ' ') s.pop_back();
  const bool percent = !s.empty() && s.back() == '%';
  if (percent) s.pop_back();
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v) || v < 0)
    throw InputError(fmt::format("{}: '{}' is not a fraction (write 5% or 0.05)", option, text));
  if (percent) return v / 100.0;
  if (v > 1)
    throw InputError(fmt::format(
        "{}: '{}' is ambiguous: write {}% for a percentage, or a fraction such as 0.05", option,
        text, text));
  return v;
}

double parse_factor(const std::string& text, const std::string& option) {
  std::string s = text;
  if (s.size() >= 2 && s.compare(s.size() - 2, 2, "\xC3\x97") == 0) s.resize(s.size() - 2);  // ×
  else if (!s.empty() && (s.back() == 'x' || s.back() == 'X')) s.pop_back();
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v) || v < 1)
    throw InputError(
        fmt::format("{}: '{}' is not a factor >= 1 (write 2 or 2x)", option, text));
  return v;
}

Comparison compare_reports(const Report& base, const Report& next, const CompareOptions& opts) {
  const auto names = compare_metric_names();
  if (std::find(names.begin(), names.end(), opts.metric) == names.end())
    throw InputError(fmt::format("unknown compare metric '{}': {}", opts.metric,
                                 suggest(opts.metric, names)));
  if (!(opts.alpha > 0 && opts.alpha < 1))
    throw InputError(fmt::format("--alpha must lie in (0, 1), got {}", opts.alpha));

  Comparison cmp;
  cmp.metric = opts.metric;
  cmp.opts = opts;
  cmp.base_path = base.path;
  cmp.next_path = next.path;
  const auto base_cases = index_cases(base, cmp.notes);
  const auto next_cases = index_cases(next, cmp.notes);
  std::map<std::string, const Json*> next_by_id(next_cases.begin(), next_cases.end());
  std::map<std::string, const Json*> base_by_id(base_cases.begin(), base_cases.end());

  if (opts.metric == "latency")
    cmp.metric_source = "metrics.latency.samples (medians in ms)";
  else if (opts.metric == "recall")
    cmp.metric_source = kRecallPath;
  else
    cmp.metric_source = std::string(kOutputErrorPath) + " when both sides have it, else " + kAccuracyPath;

  std::vector<double> ratios, deltas;
  bool any_untested = false;
  for (const auto& [id, bc] : base_cases) {
    auto it = next_by_id.find(id);
    if (it == next_by_id.end()) {
      cmp.only_base.push_back(id);
      continue;
    }
    const Json& nc = *it->second;
    const std::string bs = status_of(*bc), ns = status_of(nc);
    if (bs != "ok" || ns != "ok") {
      cmp.not_compared.push_back(
          {id, bs, ns, bs != "ok" ? lookup_text(*bc, "reason") : lookup_text(nc, "reason")});
      continue;
    }
    CaseDelta d;
    d.id = id;
    if (opts.metric == "latency") {
      const auto xs = samples_of(*bc), ys = samples_of(nc);
      if (!xs.empty() && !ys.empty()) {
        d.base = stats::median(xs);
        d.next = stats::median(ys);
        d.n_base = xs.size();
        d.n_next = ys.size();
        const auto mw = stats::mann_whitney_u(xs, ys);
        d.p = mw.p;
        d.exact = mw.exact;
        if (stats::mann_whitney_min_p(xs.size(), ys.size()) >= opts.alpha)
          d.note = fmt::format("n={}/{} cannot reach p<{}", xs.size(), ys.size(), opts.alpha);
      } else {
        const auto bm = lookup_number(*bc, "metrics.latency.median");
        const auto nm = lookup_number(nc, "metrics.latency.median");
        if (!bm || !nm) {
          cmp.not_compared.push_back({id, bs, ns, "no latency recorded"});
          continue;
        }
        d.base = *bm;
        d.next = *nm;
        d.note = "no samples: medians only, untested";
        any_untested = true;
      }
      d.ratio = ratio_of(d.next, d.base);
      d.delta = d.next - d.base;
      const bool significant = d.p && *d.p < opts.alpha;
      if (d.ratio > 1.0 + opts.max_slowdown)
        d.verdict = significant ? Verdict::regressed : Verdict::slower_not_significant;
      else if (d.ratio < 1.0 / (1.0 + opts.max_slowdown) && significant)
        d.verdict = Verdict::faster;
      else
        d.verdict = Verdict::ok;
      if (std::isfinite(d.ratio) && d.ratio > 0) ratios.push_back(d.ratio);
    } else {
      std::string path = opts.metric == "recall" ? kRecallPath : kAccuracyPath;
      if (opts.metric == "error" && lookup_number(*bc, kOutputErrorPath) &&
          lookup_number(nc, kOutputErrorPath))
        path = kOutputErrorPath;
      const auto bv = lookup_number(*bc, path);
      const auto nv = lookup_number(nc, path);
      if (!bv || !nv) {
        cmp.not_compared.push_back(
            {id, bs, ns,
             fmt::format("{} not recorded on {}", opts.metric,
                         !bv && !nv ? "either side" : (!bv ? "BASE" : "NEW"))});
        continue;
      }
      d.base = *bv;
      d.next = *nv;
      d.ratio = ratio_of(d.next, d.base);
      d.delta = d.next - d.base;
      if (opts.metric == "recall") {
        d.verdict = d.delta < -opts.max_drop  ? Verdict::regressed
                    : d.delta > opts.max_drop ? Verdict::improved
                                              : Verdict::ok;
        deltas.push_back(d.delta);
      } else {
        d.verdict = d.next > opts.max_rise * d.base + opts.abs_floor   ? Verdict::regressed
                    : d.base > opts.max_rise * d.next + opts.abs_floor ? Verdict::improved
                                                                       : Verdict::ok;
        if (d.base > 0 && d.next > 0) ratios.push_back(d.ratio);
        if (path == kOutputErrorPath) d.note = "output_rel_error";
      }
    }
    if (d.verdict == Verdict::regressed) ++cmp.regressions;
    cmp.rows.push_back(std::move(d));
  }
  for (const auto& [id, nc] : next_cases)
    if (!base_by_id.count(id)) cmp.only_next.push_back(id);

  if (opts.metric == "recall") {
    if (!deltas.empty()) {
      double s = 0;
      for (double v : deltas) s += v;
      cmp.summary = s / static_cast<double>(deltas.size());
    }
  } else if (!ratios.empty()) {
    cmp.summary = stats::geometric_mean(ratios);
  }
  if (opts.metric != "latency")
    cmp.notes.push_back(fmt::format(
        "{} has no samples in a report, so no significance test is made: the verdict is a "
        "threshold on the values alone",
        opts.metric));
  if (any_untested)
    cmp.notes.push_back(
        "some cases have no latency samples (metrics.latency.samples): their medians are "
        "compared but cannot be called significant, so they never count as regressions");
  return cmp;
}

namespace {

std::string fmt_p(const std::optional<double>& p) {
  if (!p) return "n/a";
  if (*p >= 0.001) return fmt::format("{:.3f}", *p);
  return fmt::format("{:.1e}", *p);
}

std::string fmt_value(const std::string& metric, double v) {
  if (metric == "latency") return format_number(v * 1e3, NumberStyle::significant3);
  if (metric == "recall") return fmt::format("{:.4f}", v);
  return v == 0 ? "0" : fmt::format("{:.3e}", v);
}

std::string fmt_ratio(double r) {
  if (!std::isfinite(r)) return "inf";
  return fmt::format("{:.3f}", r);
}

// Left-aligned first column, right-aligned numbers, then verdict and note left-aligned.
std::string aligned(const std::vector<std::vector<std::string>>& rows, size_t right_from,
                    size_t right_to) {
  std::vector<size_t> w;
  for (const auto& r : rows) {
    if (w.size() < r.size()) w.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      if (i) line += "  ";
      const bool right = i >= right_from && i < right_to;
      const std::string pad(w[i] - r[i].size(), ' ');
      line += right ? pad + r[i] : (i + 1 == r.size() ? r[i] : r[i] + pad);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace

std::string render_comparison(const Comparison& c) {
  const auto& o = c.opts;
  std::string out = fmt::format("compare {}: BASE {}  NEW {}\n", c.metric, c.base_path, c.next_path);
  if (c.metric == "latency")
    out += fmt::format(
        "rule: REGRESSED when new/base median > {:.4g} and two-sided Mann-Whitney U p < {:.4g} "
        "(exact U distribution when no ties and a side has <= 8 samples, else normal "
        "approximation with tie and continuity correction)\n",
        1.0 + o.max_slowdown, o.alpha);
  else if (c.metric == "recall")
    out += fmt::format("rule: REGRESSED when {} drops by more than {:.4g} (absolute); no "
                       "significance test (reports hold no recall samples)\n",
                       c.metric_source, o.max_drop);
  else
    out += fmt::format("rule: REGRESSED when new > {:.4g} x base + {:.3g} ({}); no significance "
                       "test (reports hold no error samples)\n",
                       o.max_rise, o.abs_floor, c.metric_source);
  out += "\n";

  if (c.rows.empty()) {
    out += "no matched cases to compare (no case id is ok on both sides";
    out += c.metric == "latency" ? ")\n" : " with the metric recorded)\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    const bool lat = c.metric == "latency";
    rows.push_back({"id", lat ? "base ms" : "base", lat ? "new ms" : "new",
                    c.metric == "recall" ? "delta" : "ratio", "p-value", "verdict", ""});
    for (const auto& d : c.rows)
      rows.push_back({d.id, fmt_value(c.metric, d.base), fmt_value(c.metric, d.next),
                      c.metric == "recall" ? fmt::format("{:+.4f}", d.delta) : fmt_ratio(d.ratio),
                      fmt_p(d.p), std::string(verdict_name(d.verdict)), d.note});
    out += aligned(rows, 1, 5);
    out += "\n";
    if (c.metric == "recall")
      out += c.summary ? fmt::format("mean recall change over {} matched cases: {:+.4f}\n",
                                     c.rows.size(), *c.summary)
                       : "";
    else if (c.summary)
      out += fmt::format("geometric mean of new/base {} over {} matched cases: {:.3f}\n",
                         c.metric == "latency" ? "median ratios" : "error ratios", c.rows.size(),
                         *c.summary);
  }
  if (!c.not_compared.empty()) {
    out += fmt::format("\nnot compared ({}):\n", c.not_compared.size());
    for (const auto& n : c.not_compared)
      out += fmt::format("  {}  base {}, new {}{}\n", n.id, n.base_status, n.next_status,
                         n.reason.empty() ? "" : ": " + n.reason);
  }
  auto list = [&](const char* what, const std::vector<std::string>& ids) {
    out += fmt::format("\nonly in {} ({}){}\n", what, ids.size(), ids.empty() ? "" : ":");
    for (const auto& id : ids) out += "  " + id + "\n";
  };
  list("BASE", c.only_base);
  list("NEW", c.only_next);
  for (const auto& n : c.notes) out += "\nnote: " + n + "\n";
  out += c.regressions
             ? fmt::format("\nresult: {} regression(s) in {} compared case(s)\n", c.regressions,
                           c.rows.size())
             : fmt::format("\nresult: no regression in {} compared case(s)\n", c.rows.size());
  return out;
}

int comparison_exit_code(const Comparison& c) { return c.regressions ? 1 : 0; }

}  // namespace ab::analysis
