#include "analysis/compare.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "analysis/stats.hpp"
#include "core/errors.hpp"

namespace ab::analysis {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Bootstrap draws of the within-run interval: enough for stable 2.5% / 97.5% quantiles
// (their Monte Carlo error is ~0.3% of the interval's width at 4000 draws).
constexpr int kBootstrapDraws = 4000;
// Below this many samples a side, a bootstrap of the median has too few distinct values to
// say anything (two samples give three possible medians).
constexpr std::size_t kMinSamplesWithin = 5;
// The common shift of a run is a median over cases: with fewer cases it is mostly the case's
// own change.
constexpr std::size_t kMinCasesForShift = 5;
// Fewer cases say too little about how their variances spread to fit a prior to them.
constexpr std::size_t kMinCasesForModeration = 5;

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
    if (v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0)
      out.push_back(v.get<double>());
  return out;
}

// The run's median latency: of the samples when present, else the recorded median.
std::optional<double> run_median(const Json& c) {
  const auto xs = samples_of(c);
  if (!xs.empty()) return stats::median(xs);
  const auto m = lookup_number(c, "metrics.latency.median");
  if (m && *m > 0) return m;
  return std::nullopt;
}

// The run stopped sampling (max_samples or max_time) before its median reached target_rse.
bool rse_unmet_of(const Json& c) {
  const std::string stop = lookup_text(c, "metrics.latency.stop");
  if (stop != "max_samples" && stop != "max_time") return false;
  const auto rse = lookup_number(c, "metrics.latency.rse");
  const auto target = lookup_number(c, "metrics.latency.target_rse");
  return rse && target && *rse > *target;
}

double ratio_of(double next, double base) {
  if (base == 0) return next == 0 ? 1.0 : kInf;
  return next / base;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ULL;
  return h;
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

// One side's view of a case over its runs: the case in run i, or null where run i lacks it.
struct SideCase {
  std::vector<const Json*> runs;
  std::string status = "ok", reason;
  const Json* first_ok = nullptr;
};

struct Side {
  std::vector<std::string> order;  // ids in first-seen order
  std::map<std::string, SideCase> cases;
};

Side index_side(const std::vector<Report>& reports, std::vector<std::string>& notes) {
  Side s;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    for (const auto& [id, c] : index_cases(reports[i], notes)) {
      auto [it, fresh] = s.cases.try_emplace(id);
      if (fresh) {
        s.order.push_back(id);
        it->second.runs.assign(reports.size(), nullptr);
      }
      SideCase& sc = it->second;
      sc.runs[i] = c;
      const std::string st = status_of(*c);
      if (st != "ok" && sc.status == "ok") {
        sc.status = st;
        sc.reason = lookup_text(*c, "reason");
      }
      if (st == "ok" && !sc.first_ok) sc.first_ok = c;
    }
  }
  return s;
}

struct MetricPath {
  const char* name;
  const char* path;
};
// The deterministic metrics: the same code, spec and seed give the same figure on any
// machine, so they gate where timing cannot.
constexpr MetricPath kCountMetrics[] = {
    {"flops", "metrics.flops.executed"},
    {"bytes", "metrics.flops.bytes_min"},
    {"density", "metrics.flops.density"},
};
constexpr const char* kRecallPath = "metrics.recall.mass_recall.mean";
constexpr const char* kAccuracyPath = "metrics.accuracy.rel";
constexpr const char* kOutputErrorPath = "metrics.recall.output_rel_error.mean";

const char* count_metric_path(const std::string& metric) {
  for (const auto& m : kCountMetrics)
    if (metric == m.name) return m.path;
  return nullptr;
}

// The meta fields that make two timings comparable (docs/ci.md, "Refusals").
constexpr const char* kMetaFields[] = {
    "meta.host.hostname", "meta.host.cpu_model", "meta.run.threads", "meta.run.device",
    "meta.build.flags",   "meta.build.build_type", "meta.build.compiler", "meta.spec.sha256",
};

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

std::vector<std::string> compare_metric_names() {
  return {"latency", "flops", "bytes", "density", "recall", "error"};
}

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

std::vector<std::string> meta_mismatches(const std::vector<Report>& base,
                                         const std::vector<Report>& next) {
  std::vector<std::string> out;
  if (base.empty()) return out;
  const Report& ref = base.front();
  for (const char* field : kMetaFields) {
    const std::string path = std::string(field).substr(5);  // under "meta."
    const Json& meta0 = ref.doc.contains("meta") ? ref.doc["meta"] : Json::object();
    const std::string want = lookup_text(meta0, path);
    auto check = [&](const std::vector<Report>& side, const char* label) {
      for (const auto& r : side) {
        const Json& meta = r.doc.contains("meta") ? r.doc["meta"] : Json::object();
        const std::string got = lookup_text(meta, path);
        if (got != want) {
          out.push_back(fmt::format("{}: '{}' in BASE {} but '{}' in {} {}", field, want, ref.path,
                                    got, label, r.path));
          return true;
        }
      }
      return false;
    };
    if (!check(base, "BASE")) check(next, "NEW");
  }
  return out;
}

std::map<std::string, double> run_log_medians(const Report& r) {
  std::map<std::string, double> out;
  std::vector<std::string> ignored;
  for (const auto& [id, c] : index_cases(r, ignored)) {
    if (status_of(*c) != "ok") continue;
    if (const auto m = run_median(*c)) out[id] = std::log(*m);
  }
  return out;
}

Comparison compare_reports(const Report& base, const Report& next, const CompareOptions& opts) {
  return compare_runs({base}, {next}, opts);
}

Comparison compare_runs(const std::vector<Report>& base, const std::vector<Report>& next,
                        const CompareOptions& opts) {
  const auto names = compare_metric_names();
  if (std::find(names.begin(), names.end(), opts.metric) == names.end())
    throw InputError(fmt::format("unknown compare metric '{}': {}", opts.metric,
                                 suggest(opts.metric, names)));
  if (!(opts.alpha > 0 && opts.alpha < 1))
    throw InputError(fmt::format("--alpha must lie in (0, 1), got {}", opts.alpha));
  if (!(opts.aggregate_share > 0 && opts.aggregate_share < 1))
    throw InputError(fmt::format("--aggregate-share must lie in (0, 1), got {}", opts.aggregate_share));
  if (base.empty() || next.empty()) throw InputError("compare: a side has no report");

  Comparison cmp;
  cmp.metric = opts.metric;
  cmp.opts = opts;
  for (const auto& r : base) cmp.base_paths.push_back(r.path);
  for (const auto& r : next) cmp.next_paths.push_back(r.path);
  if (opts.noise) cmp.noise_path = opts.noise->path;

  cmp.mismatches = meta_mismatches(base, next);
  if (!cmp.mismatches.empty() && !opts.allow_mismatch) {
    std::string msg = "the reports were not made under the same conditions, so their timings "
                      "do not compare:";
    for (const auto& m : cmp.mismatches) msg += "\n  " + m;
    msg += "\npass --allow-mismatch to compare them anyway (the differences are then printed "
           "as warnings)";
    throw InputError(msg);
  }

  const Side bs = index_side(base, cmp.notes);
  const Side ns = index_side(next, cmp.notes);
  const bool lat = opts.metric == "latency";
  cmp.single_run = lat && base.size() == 1 && next.size() == 1;
  cmp.paired = lat && opts.paired && base.size() == next.size() && base.size() >= 2;

  if (lat)
    cmp.metric_source = "metrics.latency.samples (per-run medians, ms)";
  else if (const char* p = count_metric_path(opts.metric))
    cmp.metric_source = p;
  else if (opts.metric == "recall")
    cmp.metric_source = kRecallPath;
  else
    cmp.metric_source = std::string(kOutputErrorPath) + " when both sides have it, else " + kAccuracyPath;

  std::vector<double> ratios, deltas;
  // Per compared latency row: each run's log median (NaN where the run lacks the case).
  std::vector<std::vector<double>> row_base_logs, row_next_logs;
  struct LatRow {
    const Json* base_first;  // the first ok run of each side (its samples, one run per side)
    const Json* next_first;
  };
  std::vector<LatRow> lat_rows;
  bool any_untested = false;
  for (const std::string& id : bs.order) {
    auto it = ns.cases.find(id);
    if (it == ns.cases.end()) {
      cmp.only_base.push_back(id);
      continue;
    }
    const SideCase& b = bs.cases.at(id);
    const SideCase& n = it->second;
    if (b.status != "ok" || n.status != "ok") {
      cmp.not_compared.push_back({id, b.status, n.status, b.status != "ok" ? b.reason : n.reason});
      continue;
    }
    CaseDelta d;
    d.id = id;
    if (lat) {
      std::vector<double> bl, nl, bl_all(base.size(), NAN), nl_all(next.size(), NAN);
      std::vector<double> bsamp, nsamp;
      auto collect = [&](const SideCase& sc, std::vector<double>& logs, std::vector<double>& all,
                         std::vector<double>& samples, std::size_t& runs, std::size_t& n_samples) {
        for (std::size_t i = 0; i < sc.runs.size(); ++i) {
          if (!sc.runs[i]) continue;
          const auto m = run_median(*sc.runs[i]);
          if (!m) continue;
          logs.push_back(std::log(*m));
          all[i] = logs.back();
          const auto xs = samples_of(*sc.runs[i]);
          samples.insert(samples.end(), xs.begin(), xs.end());
          n_samples += xs.size();
          ++runs;
          if (rse_unmet_of(*sc.runs[i])) d.rse_unmet = true;
        }
      };
      collect(b, bl, bl_all, bsamp, d.runs_base, d.n_base);
      collect(n, nl, nl_all, nsamp, d.runs_next, d.n_next);
      if (bl.empty() || nl.empty()) {
        cmp.not_compared.push_back({id, b.status, n.status, "no latency recorded"});
        continue;
      }
      d.base = std::exp(mean_of(bl));
      d.next = std::exp(mean_of(nl));
      d.delta = d.next - d.base;
      d.ratio = d.next / d.base;
      if (d.rse_unmet) {
        ++cmp.rse_unmet;
        d.note = "rse>target";
      }
      row_base_logs.push_back(std::move(bl_all));
      row_next_logs.push_back(std::move(nl_all));
      lat_rows.push_back({b.first_ok, n.first_ok});
      cmp.rows.push_back(std::move(d));
      continue;  // decided below, once every row's runs are known
    } else {
      const Json& bc = *b.first_ok;
      const Json& nc = *n.first_ok;
      std::string path;
      if (const char* p = count_metric_path(opts.metric)) path = p;
      else if (opts.metric == "recall") path = kRecallPath;
      else {
        path = kAccuracyPath;
        if (lookup_number(bc, kOutputErrorPath) && lookup_number(nc, kOutputErrorPath))
          path = kOutputErrorPath;
      }
      const auto bv = lookup_number(bc, path);
      const auto nv = lookup_number(nc, path);
      if (!bv || !nv) {
        cmp.not_compared.push_back(
            {id, b.status, n.status,
             fmt::format("{} not recorded on {}", opts.metric,
                         !bv && !nv ? "either side" : (!bv ? "BASE" : "NEW"))});
        continue;
      }
      d.base = *bv;
      d.next = *nv;
      d.ratio = ratio_of(d.next, d.base);
      d.delta = d.next - d.base;
      d.runs_base = 1;
      d.runs_next = 1;
      if (opts.metric == "recall") {
        d.verdict = d.delta < -opts.max_drop  ? Verdict::regressed
                    : d.delta > opts.max_drop ? Verdict::improved
                                              : Verdict::ok;
        deltas.push_back(d.delta);
      } else if (opts.metric == "error") {
        d.verdict = d.next > opts.max_rise * d.base + opts.abs_floor   ? Verdict::regressed
                    : d.base > opts.max_rise * d.next + opts.abs_floor ? Verdict::improved
                                                                       : Verdict::ok;
        if (d.base > 0 && d.next > 0) ratios.push_back(d.ratio);
        if (path == kOutputErrorPath) d.note = "output_rel_error";
      } else {
        // More FLOPs, bytes or density for the same case is more work: a regression.
        const double tol = opts.tolerance * std::fabs(d.base);
        d.verdict = d.delta > tol ? Verdict::regressed : d.delta < -tol ? Verdict::improved : Verdict::ok;
        if (d.base > 0 && d.next > 0) ratios.push_back(d.ratio);
      }
    }
    if (d.verdict == Verdict::regressed) ++cmp.regressions;
    cmp.rows.push_back(std::move(d));
  }
  for (const std::string& id : ns.order)
    if (!bs.cases.count(id)) cmp.only_next.push_back(id);

  if (lat && !cmp.rows.empty()) {
    // The gate fails when any one of its tests regresses: the m compared cases and, with several
    // runs a side, the per-variant groups and the summary. Each test's interval has level
    // 1 − w/k so that the levels' complements sum to alpha (Bonferroni, weighted): an A/A
    // crosses some bound with probability below alpha. With several runs a side, the groups
    // and the summary (the aggregates) share aggregate_share of alpha and the cases the rest,
    // rather than every test alpha over all of them: a change to one variant's code moves all
    // of its cases, and the variant's mean is where it shows first (docs/ci.md, "Per
    // variant"), so its tests get the larger share each; a change confined to one case still
    // has its own test.
    const std::size_t m = cmp.rows.size();
    // Groups: the cases of one variant (the id up to its first '/'), two or more of them.
    std::vector<std::pair<std::string, std::vector<std::size_t>>> groups;
    if (!cmp.single_run) {
      std::map<std::string, std::size_t> at;
      for (std::size_t r = 0; r < m; ++r) {
        const std::string v = cmp.rows[r].id.substr(0, cmp.rows[r].id.find('/'));
        auto [it, fresh] = at.emplace(v, groups.size());
        if (fresh) groups.push_back({v, {}});
        groups[it->second].second.push_back(r);
      }
      std::erase_if(groups, [](const auto& g) { return g.second.size() < 2; });
    }
    cmp.aggregate_tests = cmp.single_run ? 0 : groups.size() + 1;
    cmp.tests = m + cmp.aggregate_tests;
    const double aggregate_alpha = cmp.aggregate_tests ? opts.alpha * opts.aggregate_share : 0.0;
    cmp.case_level = 1 - (opts.alpha - aggregate_alpha) / static_cast<double>(m);
    cmp.aggregate_level =
        cmp.aggregate_tests ? 1 - aggregate_alpha / static_cast<double>(cmp.aggregate_tests) : cmp.case_level;
    // Common shift: per run, the median over cases of the run's log medians about their means
    // over all runs. Load on the machine slows every case of a run alike (measured: the
    // prefill cases of one run move together by up to 40% between runs of one binary); taking
    // it out leaves each case's change relative to the spec's other cases. The summary below
    // is not adjusted, so a change that slows every case alike is seen there.
    // A case's shift is taken over the *other* variants' cases: a change to one variant moves
    // its own cases, and with them the median over all cases, so a shift that counted them
    // would take part of the change away (measured on configs/quick.yaml, 20 cases of which 4
    // are mha's: a real 5% slowdown of mha read as 1.034 with the shift over all cases, 1.04
    // raw; docs/ci.md, "Common shift").
    cmp.adjusted = opts.adjust_common_shift && !cmp.single_run && m >= kMinCasesForShift;
    std::vector<std::string> row_variant(m);
    for (std::size_t r = 0; r < m; ++r) row_variant[r] = cmp.rows[r].id.substr(0, cmp.rows[r].id.find('/'));
    // Per variant, the shift of each run of each side (zeros when not adjusted).
    std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> shift_of;
    for (const std::string& v : row_variant)
      shift_of.try_emplace(v, std::vector<double>(base.size(), 0.0), std::vector<double>(next.size(), 0.0));
    if (cmp.adjusted) {
      std::vector<double> row_mean(m, 0.0);
      for (std::size_t r = 0; r < m; ++r) {
        std::vector<double> all;
        for (double x : row_base_logs[r]) if (!std::isnan(x)) all.push_back(x);
        for (double x : row_next_logs[r]) if (!std::isnan(x)) all.push_back(x);
        row_mean[r] = mean_of(all);
      }
      for (auto& entry : shift_of) {
        // Named, not a structured binding: the lambda below uses it (clang before 16 cannot
        // capture a binding).
        const std::string& variant = entry.first;
        auto& sides = entry.second;
        std::size_t others = 0;
        for (std::size_t r = 0; r < m; ++r) others += row_variant[r] != variant;
        // Too few other cases for a median: every case counts, the variant's own included.
        const bool leave_out = others >= kMinCasesForShift;
        auto shifts = [&](const std::vector<std::vector<double>>& logs, std::vector<double>& out) {
          for (std::size_t i = 0; i < out.size(); ++i) {
            std::vector<double> dev;
            for (std::size_t r = 0; r < m; ++r)
              if ((!leave_out || row_variant[r] != variant) && !std::isnan(logs[r][i]))
                dev.push_back(logs[r][i] - row_mean[r]);
            out[i] = dev.empty() ? 0.0 : stats::median(dev);
          }
        };
        shifts(row_base_logs, sides.first);
        shifts(row_next_logs, sides.second);
      }
    }
    std::vector<std::vector<double>> adj_base(m), adj_next(m);
    std::vector<bool> pair_row(m, false);
    std::vector<stats::RunVariance> own_variances;
    for (std::size_t r = 0; r < m; ++r) {
      const auto& [shift_base, shift_next] = shift_of.at(row_variant[r]);
      for (std::size_t i = 0; i < base.size(); ++i)
        if (!std::isnan(row_base_logs[r][i])) adj_base[r].push_back(row_base_logs[r][i] - shift_base[i]);
      for (std::size_t i = 0; i < next.size(); ++i)
        if (!std::isnan(row_next_logs[r][i])) adj_next[r].push_back(row_next_logs[r][i] - shift_next[i]);
      pair_row[r] = cmp.paired && adj_base[r].size() == base.size() && adj_next[r].size() == next.size();
      if (auto v = stats::own_run_variance(adj_base[r], adj_next[r], pair_row[r])) own_variances.push_back(*v);
    }
    // Moderated variances (ratio_interval.hpp, moderation_prior): a few rounds give each case
    // 3-7 degrees of freedom of its own, and a t quantile at the Bonferroni level with so few
    // is 5-10, wide enough to hide a 10% change. Measured on the 2-core machine here
    // (docs/ci.md, "Measurements"): with 4 rounds the intervals of mha's cases under a real 10%
    // slowdown were [0.67, 1.71]-wide while the estimates sat at 1.05-1.12.
    std::optional<stats::RunVariance> moderation;
    if (opts.moderate && !cmp.single_run && m >= kMinCasesForModeration)
      moderation = stats::moderation_prior(own_variances);
    if (moderation) {
      cmp.prior_var = moderation->var;
      cmp.prior_df = moderation->df;
    }
    for (std::size_t r = 0; r < m; ++r) {
      CaseDelta& d = cmp.rows[r];
      const std::vector<double>& bl = adj_base[r];
      const std::vector<double>& nl = adj_next[r];
      d.threshold = opts.max_slowdown;
      std::optional<stats::RunVariance> prior;
      if (opts.noise)
        if (auto nit = opts.noise->cases.find(d.id); nit != opts.noise->cases.end() && nit->second.df > 0)
          prior = stats::RunVariance{nit->second.sigma * nit->second.sigma, nit->second.df};
      const bool moderated = !prior && moderation;
      if (moderated) prior = moderation;
      std::optional<stats::LogRatioInterval> iv;
      const bool one_each = bl.size() == 1 && nl.size() == 1;
      if (!one_each || prior) iv = stats::between_run_interval(bl, nl, pair_row[r], cmp.case_level, prior);
      if (iv && moderated)  // the prior is the cases' own pooled spread, not a calibration
        if (const auto at = iv->method.find("+calibrated"); at != std::string::npos)
          iv->method.replace(at, 11, "+moderated");
      if (one_each && !prior) {
        // Run-to-run variance unknown: a within-run interval, and a threshold widened by the
        // noise floor (docs/ci.md, "One report per side").
        const auto xs = samples_of(*lat_rows[r].base_first), ys = samples_of(*lat_rows[r].next_first);
        // A run whose own samples spread over a factor s (p90/p10) was timed while the
        // machine's share of the CPU moved by about that much; the next run's median can land
        // anywhere in such a range, so the threshold grows by s too.
        auto spread = [](const std::vector<double>& v) {
          if (v.size() < kMinSamplesWithin) return 1.0;
          const double lo = stats::quantile(v, 0.1), hi = stats::quantile(v, 0.9);
          return lo > 0 ? std::max(1.0, hi / lo) : 1.0;
        };
        const double s = std::max(spread(xs), spread(ys));
        d.threshold = (1 + opts.max_slowdown) * (1 + opts.noise_floor) * s - 1;
        if (s > 1.5) d.note = fmt::format("spread x{:.3g}", s) + (d.note.empty() ? "" : "; " + d.note);
        if (xs.size() >= kMinSamplesWithin && ys.size() >= kMinSamplesWithin) {
          iv = stats::within_run_interval(xs, ys, cmp.case_level, kBootstrapDraws, fnv1a(d.id));
          d.p = stats::mann_whitney_u(xs, ys).p;
        } else {
          const std::string why = !xs.empty() && !ys.empty()
                                      ? fmt::format("n={}/{}: too few samples for an interval, untested",
                                                    xs.size(), ys.size())
                                      : "no samples: medians only, untested";
          d.note = d.note.empty() ? why : why + "; " + d.note;
          any_untested = true;
        }
      }
      const double log_t = std::log1p(d.threshold);
      const double est = iv ? iv->estimate : std::log(d.next / d.base);
      d.ratio = std::exp(est);
      if (iv) {
        d.ci_lo = std::exp(iv->lo);
        d.ci_hi = std::exp(iv->hi);
        d.method = iv->method + (cmp.adjusted ? ", shift-adjusted" : "");
        // Several runs (or a calibration): significant (the interval excludes 1) and larger
        // than the threshold (the estimate exceeds it). One report per side without a
        // calibration: the lower bound must clear the widened threshold, as the interval then
        // knows only the noise inside one process (docs/ci.md, "One report per side").
        const bool within_only = iv->df == 0;
        const double bound = within_only ? log_t : 0.0;
        if (iv->lo > bound && est > log_t) d.verdict = Verdict::regressed;
        else if (iv->hi < -bound && est < -log_t) d.verdict = Verdict::faster;
        else if (est > log_t) d.verdict = Verdict::slower_not_significant;
      } else if (est > log_t) {
        d.verdict = Verdict::slower_not_significant;
      }
      if (d.verdict == Verdict::regressed) ++cmp.regressions;
      ratios.push_back(d.ratio);
    }
    // Per-variant groups: each run's mean over the group's cases of their (shift-adjusted) log
    // medians, compared like a case.
    if (!groups.empty()) {
      auto group_runs = [&](const std::vector<std::vector<double>>& logs, const std::vector<double>& shift,
                            const std::vector<std::size_t>& members, std::size_t runs) {
        std::vector<double> out;
        for (std::size_t i = 0; i < runs; ++i) {
          double sum = 0;
          bool complete = true;
          for (std::size_t r : members) {
            if (std::isnan(logs[r][i])) complete = false;
            sum += logs[r][i] - shift[i];
          }
          if (complete) out.push_back(sum / static_cast<double>(members.size()));
        }
        return out;
      };
      std::vector<std::vector<double>> gb(groups.size()), gn(groups.size());
      std::vector<bool> gpair(groups.size());
      for (std::size_t g = 0; g < groups.size(); ++g) {
        const auto& [shift_base, shift_next] = shift_of.at(groups[g].first);
        gb[g] = group_runs(row_base_logs, shift_base, groups[g].second, base.size());
        gn[g] = group_runs(row_next_logs, shift_next, groups[g].second, next.size());
        gpair[g] = cmp.paired && gb[g].size() == base.size() && gn[g].size() == next.size();
      }
      // Each group keeps its own run-to-run variance (R − 1 degrees of freedom): a spec has a
      // handful of variants, too few to fit a prior, and their noise differs (measured, A/A on
      // configs/quick.yaml: xsqa's sub-0.1 ms decode cases spread 2-4x mha's). Pooling over
      // five groups shrank xsqa's variance and flagged it against itself (docs/ci.md, "Per
      // variant").
      const double log_t = std::log1p(opts.max_slowdown);
      for (std::size_t g = 0; g < groups.size(); ++g) {
        GroupDelta gd;
        gd.variant = groups[g].first;
        gd.cases = groups[g].second.size();
        if (gb[g].empty() || gn[g].empty()) continue;
        const auto iv = stats::between_run_interval(gb[g], gn[g], gpair[g], cmp.aggregate_level, std::nullopt);
        if (!iv) continue;
        gd.ratio = std::exp(iv->estimate);
        gd.ci_lo = std::exp(iv->lo);
        gd.ci_hi = std::exp(iv->hi);
        if (iv->lo > 0 && iv->estimate > log_t) gd.verdict = Verdict::regressed;
        else if (iv->hi < 0 && iv->estimate < -log_t) gd.verdict = Verdict::faster;
        else if (iv->estimate > log_t) gd.verdict = Verdict::slower_not_significant;
        if (gd.verdict == Verdict::regressed) ++cmp.group_regressions;
        cmp.groups.push_back(std::move(gd));
      }
    }
    if (cmp.adjusted) {
      // The summary is the plain geometric mean (not adjusted); computed below.
      ratios.clear();
      for (std::size_t r = 0; r < m; ++r) ratios.push_back(cmp.rows[r].next / cmp.rows[r].base);
    }
  }

  if (opts.metric == "recall") {
    if (!deltas.empty()) cmp.summary = mean_of(deltas);
  } else if (!ratios.empty()) {
    cmp.summary = stats::geometric_mean(ratios);
  }
  // The summary's interval: each run's mean log median over the compared cases is one value
  // per run, so the correlation between cases (one machine state per run) is in its spread.
  if (lat && !cmp.rows.empty() && !cmp.single_run) {
    auto per_run = [](const std::vector<std::vector<double>>& rows, std::size_t runs) {
      std::vector<double> out;
      for (std::size_t i = 0; i < runs; ++i) {
        double s = 0;
        bool complete = true;
        for (const auto& r : rows) {
          if (std::isnan(r[i])) complete = false;
          s += r[i];
        }
        if (complete) out.push_back(s / static_cast<double>(rows.size()));
      }
      return out;
    };
    const auto gb = per_run(row_base_logs, base.size());
    const auto gn = per_run(row_next_logs, next.size());
    if (!gb.empty() && !gn.empty() && gb.size() + gn.size() >= 3) {
      const bool pair = cmp.paired && gb.size() == base.size() && gn.size() == next.size();
      if (const auto iv = stats::between_run_interval(gb, gn, pair, cmp.aggregate_level, std::nullopt)) {
        cmp.summary = std::exp(iv->estimate);
        cmp.summary_lo = std::exp(iv->lo);
        cmp.summary_hi = std::exp(iv->hi);
        cmp.summary_regressed = iv->lo > 0 && iv->estimate > std::log1p(opts.max_slowdown);
      }
    }
  }

  if (lat && cmp.single_run) {
    if (opts.noise)
      cmp.notes.push_back(fmt::format(
          "one report per side: the run-to-run variance comes from the noise calibration {} "
          "(cases it lacks use a within-run interval and the widened threshold)",
          opts.noise->path));
    else
      cmp.notes.push_back(fmt::format(
          "one report per side: run-to-run variance is unknown. The interval is within-run (the "
          "samples of one process) and does not cover the machine's drift between runs, so the "
          "threshold is widened by the noise floor {:.0f}%: REGRESSED needs the lower bound "
          "above {:.3f} = {:.3f} x {:.3f}. To see smaller changes, give several runs per side "
          "(directories of reports), a calibration (--noise, from `attn-bench ab --aa`), or "
          "use `attn-bench ab` (docs/ci.md)",
          opts.noise_floor * 100, (1 + opts.max_slowdown) * (1 + opts.noise_floor),
          1 + opts.max_slowdown, 1 + opts.noise_floor));
  }
  if (lat && cmp.rse_unmet)
    cmp.notes.push_back(fmt::format(
        "rse>target: in {} case(s) a run stopped at max_samples or max_time with the median's "
        "relative standard error above metrics.latency.target_rse; more samples (max_time, "
        "max_samples) or more runs would tighten them",
        cmp.rse_unmet));
  if (!lat)
    cmp.notes.push_back(fmt::format(
        "{} is one number per case, with no samples, so no significance test is made: the "
        "verdict is a threshold on the values alone{}",
        opts.metric, base.size() > 1 || next.size() > 1 ? " (the first run of each side)" : ""));
  if (any_untested)
    cmp.notes.push_back(
        "some cases have too few or no latency samples (metrics.latency.samples): their medians "
        "are compared but cannot be called significant, so they never count as regressions");
  return cmp;
}

int comparison_exit_code(const Comparison& c) {
  if (c.rows.empty()) return kExitInput;
  return c.regressions || c.group_regressions || c.summary_regressed ? 1 : 0;
}

std::vector<Report> load_runs(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {load_report(path)};
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path().string());
  if (ec) throw InputError(fmt::format("cannot list '{}': {}", path, ec.message()));
  std::sort(files.begin(), files.end());
  if (files.empty()) throw InputError(fmt::format("'{}' is a directory without *.json reports", path));
  std::vector<Report> out;
  for (const auto& f : files) out.push_back(load_report(f));
  return out;
}

Json noise_from_aa(const std::vector<Report>& a, const std::vector<Report>& b, const Json& meta) {
  if (a.size() != b.size() || a.empty())
    throw InputError("a noise calibration needs the same number (>= 1) of runs on both sides");
  std::vector<std::map<std::string, double>> la, lb;
  for (const auto& r : a) la.push_back(run_log_medians(r));
  for (const auto& r : b) lb.push_back(run_log_medians(r));
  Json cases = Json::object();
  std::vector<double> sigmas;
  std::vector<std::string> ignored;
  // Each round's common shift (the median difference over cases) is taken out, as compare
  // does with several runs a side, when there are enough cases for a median.
  std::vector<double> round_shift(a.size(), 0.0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::vector<double> ds;
    for (const auto& [id, xa] : la[i])
      if (auto ib = lb[i].find(id); ib != lb[i].end()) ds.push_back(ib->second - xa);
    if (ds.size() >= kMinCasesForShift) round_shift[i] = stats::median(ds);
  }
  for (const auto& [id, c] : index_cases(a.front(), ignored)) {
    double ss = 0, sum_log = 0;
    int rounds = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      auto ia = la[i].find(id), ib = lb[i].find(id);
      if (ia == la[i].end() || ib == lb[i].end()) continue;
      const double d = ib->second - ia->second - round_shift[i];
      ss += d * d;
      sum_log += ia->second + ib->second;
      ++rounds;
    }
    if (!rounds) continue;
    const double sigma = std::sqrt(ss / (2.0 * rounds));
    sigmas.push_back(sigma);
    cases[id] = {{"sigma", sigma},
                 {"df", rounds},
                 {"median_s", std::exp(sum_log / (2.0 * rounds))},
                 // Two single runs of one binary differ by more than this in 1% of pairs
                 // (two-sided), if run medians are log-normal with this sigma.
                 {"two_run_spread_99", std::expm1(2.5758 * std::sqrt(2.0) * sigma)}};
  }
  Json doc;
  doc["kind"] = "attn-bench noise calibration";
  doc["version"] = 1;
  doc["meta"] = meta;
  doc["rule"] = "sigma^2 = sum over rounds of d^2 / (2 R), d = log(median of B's run) - "
                "log(median of A's run) in the same round minus the round's median d over cases "
                "(with >= 5 cases), both sides the same binary; df = R";
  if (!sigmas.empty())
    doc["summary"] = {{"cases", sigmas.size()},
                      {"median_sigma", stats::median(sigmas)},
                      {"max_sigma", *std::max_element(sigmas.begin(), sigmas.end())}};
  doc["cases"] = cases;
  return doc;
}

NoiseCalibration load_noise(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(fmt::format("cannot read noise calibration '{}'", path));
  Json doc;
  try {
    doc = Json::parse(f);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("'{}' is not valid JSON: {}", path, e.what()));
  }
  if (!doc.is_object() || doc.value("kind", std::string()) != "attn-bench noise calibration" ||
      !doc.contains("cases") || !doc["cases"].is_object())
    throw InputError(fmt::format(
        "'{}' is not a noise calibration (write one with `attn-bench ab --aa`)", path));
  NoiseCalibration n;
  n.path = path;
  n.meta = doc.value("meta", Json::object());
  for (auto it = doc["cases"].begin(); it != doc["cases"].end(); ++it) {
    const auto sigma = lookup_number(it.value(), "sigma");
    const auto df = lookup_number(it.value(), "df");
    if (!sigma || !df || *sigma < 0 || *df <= 0)
      throw InputError(fmt::format("'{}': case {} has no valid sigma/df", path, it.key()));
    n.cases[it.key()] = {*sigma, *df, lookup_number(it.value(), "median_s").value_or(0)};
  }
  return n;
}

namespace {

std::string fmt_value(const std::string& metric, double v) {
  if (metric == "latency") return format_number(v * 1e3, NumberStyle::significant3);
  if (metric == "recall" || metric == "density") return fmt::format("{:.4f}", v);
  if (metric == "flops" || metric == "bytes") return fmt::format("{:.6g}", v);
  return v == 0 ? "0" : fmt::format("{:.3e}", v);
}

std::string fmt_ratio(double r) {
  if (!std::isfinite(r)) return "inf";
  return fmt::format("{:.3f}", r);
}

std::string fmt_ci(const CaseDelta& d) {
  if (!d.ci_lo || !d.ci_hi) return "n/a";
  return fmt::format("[{}, {}]", fmt_ratio(*d.ci_lo), fmt_ratio(*d.ci_hi));
}

std::string fmt_paths(const std::vector<std::string>& paths) {
  if (paths.size() == 1) return paths.front();
  std::filesystem::path dir = std::filesystem::path(paths.front()).parent_path();
  return fmt::format("{} runs ({}/...)", paths.size(), dir.string());
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


std::string rule_text(const Comparison& c) {
  const auto& o = c.opts;
  if (c.metric == "latency") {
    const double level = c.case_level * 100;
    std::string how;
    if (c.single_run)
      how = c.noise_path.empty()
                ? fmt::format("{:.4g}% within-run bootstrap interval of the ratio of medians; "
                              "threshold widened by the noise floor {:.4g}% (one run per side)",
                              level, o.noise_floor * 100)
                : fmt::format("{:.4g}% t interval from the calibrated run-to-run variance ({})",
                              level, c.noise_path);
    else
      how = fmt::format("t intervals from the spread of per-run medians ({}{}{}{})",
                        c.paired ? "paired by round" : "pooled two-sample",
                        c.adjusted ? "; each run's common shift over cases taken out" : "",
                        c.noise_path.empty() ? "" : "; pooled with the calibration " + c.noise_path,
                        c.prior_df > 0
                            ? fmt::format("; variances moderated over cases: prior sigma {:.3g}, {:.3g} df",
                                          std::sqrt(c.prior_var), c.prior_df)
                            : "");
    const bool widened = c.single_run && c.noise_path.empty();
    const std::string levels =
        c.aggregate_tests
            ? fmt::format("alpha {:.3g} shared by {} tests (Bonferroni, weighted): each of the {} cases at 1 - "
                          "{:.3g}/{}, each of the {} variant group(s) and the summary at 1 - {:.3g}/{}",
                          o.alpha, c.tests, c.rows.size(), o.alpha * (1 - o.aggregate_share), c.rows.size(),
                          c.aggregate_tests - 1, o.alpha * o.aggregate_share, c.aggregate_tests)
            : fmt::format("intervals at 1 - {:.3g}/{} ({} cases)", o.alpha, c.tests, c.rows.size());
    return fmt::format("rule: ratio = new/base of per-run medians (geometric mean over runs); "
                       "{}; {}; REGRESSED when {} (threshold {:.4g}%{}){}",
                       how, levels,
                       widened ? "a case's lower bound exceeds 1 + threshold"
                               : "a case's interval lies above 1 and its ratio exceeds 1 + threshold",
                       o.max_slowdown * 100,
                       widened ? fmt::format(", {:.4g}% with the floor",
                                             ((1 + o.max_slowdown) * (1 + o.noise_floor) - 1) * 100)
                               : "",
                       c.single_run ? "" : ", or when the summary's (not adjusted) does");
  }
  if (c.metric == "recall")
    return fmt::format("rule: REGRESSED when {} drops by more than {:.4g} (absolute); no "
                       "significance test (reports hold no recall samples)",
                       c.metric_source, o.max_drop);
  if (c.metric == "error")
    return fmt::format("rule: REGRESSED when new > {:.4g} x base + {:.3g} ({}); no significance "
                       "test (reports hold no error samples)",
                       o.max_rise, o.abs_floor, c.metric_source);
  return fmt::format("rule: REGRESSED when {} rises by more than a relative {:.3g}, improved when "
                     "it falls by more; a deterministic figure, no significance test",
                     c.metric_source, o.tolerance);
}

std::string result_text(const Comparison& c) {
  if (c.rows.empty()) return "result: nothing compared (no case id is ok on both sides with the metric recorded)";
  if (c.regressions || c.group_regressions || c.summary_regressed)
    return fmt::format("result: {} regression(s) in {} compared case(s){}{}", c.regressions, c.rows.size(),
                       c.group_regressions ? fmt::format(", {} variant(s) regressed", c.group_regressions) : "",
                       c.summary_regressed ? ", and the summary regressed" : "");
  return fmt::format("result: no regression in {} compared case(s)", c.rows.size());
}

std::string groups_text(const Comparison& c) {
  if (c.groups.empty()) return "";
  std::string s = fmt::format("per variant (geometric mean of its cases' ratios, shift-adjusted; {:.4g}% CI):\n",
                              c.aggregate_level * 100);
  for (const auto& g : c.groups)
    s += fmt::format("  {:<40} {:>2} cases  {:.3f}  [{:.3f}, {:.3f}]  {}\n", g.variant, g.cases, g.ratio,
                     g.ci_lo.value_or(NAN), g.ci_hi.value_or(NAN), verdict_name(g.verdict));
  return s;
}

std::string summary_text(const Comparison& c) {
  if (!c.summary) return "";
  if (c.metric == "recall")
    return fmt::format("mean recall change over {} matched cases: {:+.4f}", c.rows.size(), *c.summary);
  std::string s = fmt::format("geometric mean of new/base over {} matched cases: {:.3f}",
                              c.rows.size(), *c.summary);
  if (c.summary_lo && c.summary_hi)
    s += fmt::format(" [{:.3f}, {:.3f}]{}", *c.summary_lo, *c.summary_hi,
                     c.summary_regressed ? "  REGRESSED" : "");
  else if (c.metric == "latency")
    s += " (no interval: one run per side)";
  return s;
}

}  // namespace

std::string render_comparison(const Comparison& c) {
  std::string out = fmt::format("compare {}: BASE {}  NEW {}\n", c.metric, fmt_paths(c.base_paths),
                                fmt_paths(c.next_paths));
  for (const auto& m : c.mismatches) out += "WARNING: not comparable: " + m + "\n";
  out += rule_text(c) + "\n\n";
  const bool lat = c.metric == "latency";
  if (c.rows.empty()) {
    out += "no matched cases to compare (no case id is ok on both sides";
    out += lat ? ")\n" : " with the metric recorded)\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    if (lat) {
      rows.push_back({"id", "runs", "n", "base ms", "new ms", "ratio",
                      fmt::format("{:.4g}% CI", c.case_level * 100), "verdict", ""});
      for (const auto& d : c.rows)
        rows.push_back({d.id, fmt::format("{}/{}", d.runs_base, d.runs_next),
                        fmt::format("{}/{}", d.n_base, d.n_next), fmt_value(c.metric, d.base),
                        fmt_value(c.metric, d.next), fmt_ratio(d.ratio), fmt_ci(d),
                        std::string(verdict_name(d.verdict)), d.note});
      out += aligned(rows, 1, 7);
    } else {
      rows.push_back({"id", "base", "new", c.metric == "recall" ? "delta" : "ratio", "verdict", ""});
      for (const auto& d : c.rows)
        rows.push_back({d.id, fmt_value(c.metric, d.base), fmt_value(c.metric, d.next),
                        c.metric == "recall" ? fmt::format("{:+.4f}", d.delta) : fmt_ratio(d.ratio),
                        std::string(verdict_name(d.verdict)), d.note});
      out += aligned(rows, 1, 4);
    }
    out += "\n";
    out += groups_text(c);
    if (const std::string s = summary_text(c); !s.empty()) out += s + "\n";
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
  if (!c.mismatches.empty())
    out += fmt::format("\nWARNING: the two sides differ in {} condition(s) listed at the top; "
                       "the verdict may reflect that, not the code\n",
                       c.mismatches.size());
  out += "\n" + result_text(c) + "\n";
  return out;
}

std::string render_comparison_markdown(const Comparison& c) {
  const bool lat = c.metric == "latency";
  const bool bad = c.regressions || c.group_regressions || c.summary_regressed;
  std::string out = fmt::format("### attn-bench {}: {}\n\n", c.metric,
                                c.rows.empty() ? "nothing compared"
                                : bad          ? "**regression**"
                                               : "no regression");
  out += fmt::format("BASE: `{}` · NEW: `{}`\n\n", fmt_paths(c.base_paths), fmt_paths(c.next_paths));
  for (const auto& m : c.mismatches) out += "> **Warning**: not comparable: " + markdown_escape(m) + "\n";
  if (!c.mismatches.empty()) out += "\n";
  if (!c.rows.empty()) {
    if (lat) {
      out += fmt::format("| case | runs | n | base ms | new ms | ratio | {:.4g}% CI | verdict |\n",
                         c.case_level * 100);
      out += "|---|---:|---:|---:|---:|---:|---:|---|\n";
    } else {
      out += fmt::format("| case | base | new | {} | verdict |\n", c.metric == "recall" ? "delta" : "ratio");
      out += "|---|---:|---:|---:|---|\n";
    }
    for (const auto& d : c.rows) {
      std::string verdict(verdict_name(d.verdict));
      if (d.verdict == Verdict::regressed) verdict = "**" + verdict + "**";
      if (!d.note.empty()) verdict += " (" + markdown_escape(d.note) + ")";
      if (lat)
        out += fmt::format("| {} | {}/{} | {}/{} | {} | {} | {} | {} | {} |\n", markdown_escape(d.id),
                           d.runs_base, d.runs_next, d.n_base, d.n_next, fmt_value(c.metric, d.base),
                           fmt_value(c.metric, d.next), fmt_ratio(d.ratio), fmt_ci(d), verdict);
      else
        out += fmt::format("| {} | {} | {} | {} | {} |\n", markdown_escape(d.id),
                           fmt_value(c.metric, d.base), fmt_value(c.metric, d.next),
                           c.metric == "recall" ? fmt::format("{:+.4f}", d.delta) : fmt_ratio(d.ratio),
                           verdict);
    }
    out += "\n";
    if (!c.groups.empty()) {
      out += fmt::format("| variant | cases | ratio | {:.4g}% CI | verdict |\n|---|---:|---:|---:|---|\n",
                         c.aggregate_level * 100);
      for (const auto& g : c.groups)
        out += fmt::format("| {} | {} | {} | [{:.3f}, {:.3f}] | {} |\n", markdown_escape(g.variant), g.cases,
                           fmt_ratio(g.ratio), g.ci_lo.value_or(NAN), g.ci_hi.value_or(NAN),
                           g.verdict == Verdict::regressed ? "**REGRESSED**" : std::string(verdict_name(g.verdict)));
      out += "\n";
    }
    if (const std::string s = summary_text(c); !s.empty()) out += s + "\n\n";
  }
  if (!c.not_compared.empty() || !c.only_base.empty() || !c.only_next.empty())
    out += fmt::format("Not compared: {} · only in BASE: {} · only in NEW: {}\n\n",
                       c.not_compared.size(), c.only_base.size(), c.only_next.size());
  out += markdown_escape(rule_text(c)) + "\n\n";
  for (const auto& n : c.notes) out += "- " + markdown_escape(n) + "\n";
  out += "\n**" + result_text(c) + "**\n";
  return out;
}

Json comparison_json(const Comparison& c) {
  auto opt = [](const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); };
  auto num = [](double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); };
  Json j;
  j["metric"] = c.metric;
  j["metric_source"] = c.metric_source;
  j["base"] = c.base_paths;
  j["new"] = c.next_paths;
  j["rule"] = rule_text(c);
  j["options"] = {{"max_slowdown", c.opts.max_slowdown}, {"alpha", c.opts.alpha},
                  {"aggregate_share", c.opts.aggregate_share},
                  {"noise_floor", c.opts.noise_floor}, {"noise", c.noise_path},
                  {"max_drop", c.opts.max_drop},       {"max_rise", c.opts.max_rise},
                  {"tolerance", c.opts.tolerance}};
  j["single_run"] = c.single_run;
  if (c.metric == "latency") j["levels"] = {{"case", c.case_level}, {"aggregate", c.aggregate_level}, {"tests", c.tests}};
  j["paired"] = c.paired;
  if (c.prior_df > 0) j["moderation"] = {{"sigma", std::sqrt(c.prior_var)}, {"df", c.prior_df}};
  j["rows"] = Json::array();
  for (const auto& d : c.rows)
    j["rows"].push_back({{"id", d.id},
                         {"base", num(d.base)},
                         {"new", num(d.next)},
                         {"ratio", num(d.ratio)},
                         {"ci", {opt(d.ci_lo), opt(d.ci_hi)}},
                         {"method", d.method},
                         {"threshold", d.threshold},
                         {"p", opt(d.p)},
                         {"runs", {d.runs_base, d.runs_next}},
                         {"samples", {d.n_base, d.n_next}},
                         {"rse_unmet", d.rse_unmet},
                         {"verdict", std::string(verdict_name(d.verdict))},
                         {"note", d.note}});
  j["groups"] = Json::array();
  for (const auto& g : c.groups)
    j["groups"].push_back({{"variant", g.variant},
                           {"cases", g.cases},
                           {"ratio", num(g.ratio)},
                           {"ci", {opt(g.ci_lo), opt(g.ci_hi)}},
                           {"verdict", std::string(verdict_name(g.verdict))}});
  j["group_regressions"] = c.group_regressions;
  j["summary"] = {{"value", opt(c.summary)},
                  {"ci", {opt(c.summary_lo), opt(c.summary_hi)}},
                  {"regressed", c.summary_regressed}};
  j["not_compared"] = Json::array();
  for (const auto& n : c.not_compared)
    j["not_compared"].push_back({{"id", n.id}, {"base", n.base_status}, {"new", n.next_status},
                                 {"reason", n.reason}});
  j["only_base"] = c.only_base;
  j["only_new"] = c.only_next;
  j["mismatches"] = c.mismatches;
  j["notes"] = c.notes;
  j["regressions"] = c.regressions;
  j["exit_code"] = comparison_exit_code(c);
  j["result"] = result_text(c);
  return j;
}

}  // namespace ab::analysis
