#include "analysis/ratio_interval.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "analysis/stats.hpp"

namespace ab::stats {

namespace {

// Continued fraction of the incomplete beta function (modified Lentz; Press et al.,
// Numerical Recipes, 3rd ed., §6.4).
double beta_continued_fraction(double a, double b, double x) {
  constexpr double tiny = 1e-300, eps = 1e-15;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < eps) break;
  }
  return h;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

// Sum of squared deviations from the mean.
double ss_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double resampled_median(const std::vector<double>& v, std::vector<double>& buf, std::uint64_t& rng) {
  const std::size_t n = v.size();
  buf.resize(n);
  for (std::size_t i = 0; i < n; ++i) buf[i] = v[splitmix64(rng) % n];
  const std::size_t mid = n / 2;
  std::nth_element(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(mid), buf.end());
  const double hi = buf[mid];
  if (n % 2) return hi;
  const double lo = *std::max_element(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(mid));
  return (lo + hi) / 2;
}

LogRatioInterval with_t(double estimate, double se, double df, double level, std::string method) {
  LogRatioInterval r;
  r.estimate = estimate;
  r.se = se;
  r.df = df;
  const double q = student_t_quantile(0.5 + level / 2, df);
  r.lo = estimate - q * se;
  r.hi = estimate + q * se;
  r.method = std::move(method);
  return r;
}

}  // namespace

double incomplete_beta(double a, double b, double x) {
  if (!(a > 0) || !(b > 0)) throw std::invalid_argument("incomplete_beta: a and b must be positive");
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double ln_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) +
                          b * std::log1p(-x);
  const double front = std::exp(ln_front);
  // The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry
  // I_x(a,b) = 1 − I_{1−x}(b,a) beyond it.
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

double student_t_cdf(double t, double df) {
  if (!(df > 0)) throw std::invalid_argument("student_t_cdf: df must be positive");
  if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
  const double tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t));  // P(T > |t|)
  return t > 0 ? 1 - tail : tail;
}

double student_t_quantile(double p, double df) {
  if (!(p > 0 && p < 1)) throw std::invalid_argument("student_t_quantile: p must lie in (0, 1)");
  if (!(df > 0)) throw std::invalid_argument("student_t_quantile: df must be positive");
  if (p == 0.5) return 0;
  if (p < 0.5) return -student_t_quantile(1 - p, df);
  double lo = 0, hi = 1;
  while (student_t_cdf(hi, df) < p) {
    lo = hi;
    hi *= 2;
    if (hi > 1e12) return hi;
  }
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = (lo + hi) / 2;
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

std::optional<LogRatioInterval> between_run_interval(const std::vector<double>& base_log,
                                                     const std::vector<double>& next_log,
                                                     bool paired, double level,
                                                     const std::optional<RunVariance>& prior) {
  if (base_log.empty() || next_log.empty())
    throw std::invalid_argument("between_run_interval: a side has no run");
  const std::size_t ra = base_log.size(), rb = next_log.size();
  const double prior_df = prior ? prior->df : 0.0;
  const double prior_ss = prior ? prior->df * prior->var : 0.0;

  if (paired && ra == rb && ra >= 2) {
    // Round i's difference cancels what the two sides of that round shared (slow drift).
    std::vector<double> d(ra);
    for (std::size_t i = 0; i < ra; ++i) d[i] = next_log[i] - base_log[i];
    const double own_df = static_cast<double>(ra - 1);
    // var(d) = 2 var(run) for independent runs: the calibration enters with that factor.
    const double var_d = (ss_of(d) + 2 * prior_ss) / (own_df + prior_df);
    return with_t(mean_of(d), std::sqrt(var_d / static_cast<double>(ra)), own_df + prior_df, level,
                  prior ? "paired+calibrated" : "paired");
  }
  // Pooled two-sample t: both sides ran on the same machine with the same spec, so one
  // run-to-run variance is assumed; a side with a single run contributes no degree of freedom.
  const double own_df = static_cast<double>(ra - 1) + static_cast<double>(rb - 1);
  const double df = own_df + prior_df;
  if (!(df > 0)) return std::nullopt;
  const double var = (ss_of(base_log) + ss_of(next_log) + prior_ss) / df;
  const double se = std::sqrt(var * (1.0 / static_cast<double>(ra) + 1.0 / static_cast<double>(rb)));
  return with_t(mean_of(next_log) - mean_of(base_log), se, df, level,
                own_df > 0 ? (prior ? "pooled+calibrated" : "pooled") : "calibrated");
}

std::optional<RunVariance> own_run_variance(const std::vector<double>& base_log,
                                            const std::vector<double>& next_log, bool paired) {
  const std::size_t ra = base_log.size(), rb = next_log.size();
  if (paired && ra == rb && ra >= 2) {
    std::vector<double> d(ra);
    for (std::size_t i = 0; i < ra; ++i) d[i] = next_log[i] - base_log[i];
    const double df = static_cast<double>(ra - 1);
    return RunVariance{ss_of(d) / df / 2, df};
  }
  if (ra + rb < 3 || ra == 0 || rb == 0) return std::nullopt;
  const double df = static_cast<double>(ra + rb - 2);
  return RunVariance{(ss_of(base_log) + ss_of(next_log)) / df, df};
}

namespace {
// psi^(2)(x), the tetragamma function: recurrence up to x >= 6, then the asymptotic series.
double tetragamma(double x) {
  double acc = 0;
  while (x < 6) {
    acc -= 2 / (x * x * x);
    x += 1;
  }
  const double x2 = 1 / (x * x);
  return acc - 1 / (x * x) - 1 / (x * x * x) -
         x2 * x2 * (0.5 - x2 * (1.0 / 6 - x2 * (1.0 / 6 - x2 * 3.0 / 10)));
}
}  // namespace

double digamma(double x) {
  double acc = 0;
  while (x < 6) {
    acc -= 1 / x;
    x += 1;
  }
  const double x2 = 1 / (x * x);
  return acc + std::log(x) - 0.5 / x -
         x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 * (1.0 / 252 - x2 * (1.0 / 240 - x2 / 132))));
}

double trigamma(double x) {
  double acc = 0;
  while (x < 6) {
    acc += 1 / (x * x);
    x += 1;
  }
  const double x2 = 1 / (x * x);
  return acc + 1 / x + x2 / 2 + x2 / x * (1.0 / 6 - x2 * (1.0 / 30 - x2 * (1.0 / 42 - x2 / 30)));
}

double trigamma_inverse(double y) {
  if (!(y > 0)) throw std::invalid_argument("trigamma_inverse: y must be positive");
  if (y > 1e7) return 1 / std::sqrt(y);
  if (y < 1e-6) return 1 / y;
  double x = 0.5 + 1 / y;
  for (int i = 0; i < 50; ++i) {
    const double tri = trigamma(x);
    const double dif = tri * (1 - tri / y) / tetragamma(x);
    x += dif;
    if (-dif / x < 1e-8) break;
  }
  return x;
}

std::optional<RunVariance> moderation_prior(const std::vector<RunVariance>& own) {
  // e_i = log s_i² − digamma(d_i/2) + log(d_i/2) has mean log s0² − digamma(d0/2) + log(d0/2)
  // and variance trigamma(d_i/2) + trigamma(d0/2) (Smyth 2004, section 6.2).
  std::vector<double> e;
  double mean_tri = 0;
  for (const RunVariance& v : own) {
    if (!(v.var > 0) || !(v.df > 0) || !std::isfinite(v.var)) continue;
    e.push_back(std::log(v.var) - digamma(v.df / 2) + std::log(v.df / 2));
    mean_tri += trigamma(v.df / 2);
  }
  if (e.size() < 3) return std::nullopt;
  const double n = static_cast<double>(e.size());
  mean_tri /= n;
  const double e_mean = mean_of(e);
  const double excess = ss_of(e) / (n - 1) - mean_tri;
  double d0 = kMaxPriorDf;
  if (excess > 0) d0 = std::min(kMaxPriorDf, 2 * trigamma_inverse(excess));
  const double s0 = std::exp(e_mean + digamma(d0 / 2) - std::log(d0 / 2));
  return RunVariance{s0, d0};
}

LogRatioInterval within_run_interval(const std::vector<double>& base,
                                     const std::vector<double>& next, double level,
                                     int resamples, std::uint64_t seed) {
  if (base.empty() || next.empty())
    throw std::invalid_argument("within_run_interval: a side has no sample");
  LogRatioInterval r;
  r.method = "within-run bootstrap";
  r.estimate = std::log(median(next) / median(base));
  std::vector<double> draws;
  draws.reserve(static_cast<std::size_t>(std::max(resamples, 1)));
  std::vector<double> buf;
  std::uint64_t rng = seed;
  for (int i = 0; i < resamples; ++i) {
    const double mb = resampled_median(base, buf, rng);
    const double mn = resampled_median(next, buf, rng);
    draws.push_back(std::log(mn / mb));
  }
  r.lo = quantile(draws, (1 - level) / 2);
  r.hi = quantile(draws, 0.5 + level / 2);
  return r;
}

}  // namespace ab::stats
