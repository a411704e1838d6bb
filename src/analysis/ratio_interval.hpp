#pragma once
// Confidence intervals for the ratio of two latencies, new/base, on the log scale, for the CI
// gate (docs/ci.md). The unit of replication is the run (one process): the machine's state
// (clock, cache, neighbours) shifts between runs, so samples within one run are not
// independent of it, and only the spread of per-run medians says how far a result carries.
//
//   between_run_interval: per-run log medians of each side; paired t when the sides have one
//     run per round (ABBA rounds of `attn-bench ab`), Welch's t otherwise; an optional
//     calibrated run-to-run variance (from an A/A, `ab --aa`) is pooled into the estimate.
//   within_run_interval: one run per side and no calibration: a percentile bootstrap of the
//     ratio of medians over the samples. It knows nothing of run-to-run variance, and the
//     gate widens its threshold to make up for that (compare.hpp).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ab::stats {

// Student's t distribution with df > 0 degrees of freedom (fractional df allowed, for
// Welch–Satterthwaite): P(T <= t), and its inverse for p in (0, 1).
double student_t_cdf(double t, double df);
double student_t_quantile(double p, double df);

// Regularized incomplete beta function I_x(a, b), by its continued fraction.
double incomplete_beta(double a, double b, double x);

// A calibrated variance of one run's log median (from an A/A): var(log median of a run about
// its side's true value), estimated with `df` degrees of freedom.
struct RunVariance {
  double var = 0;
  double df = 0;
};

struct LogRatioInterval {
  double estimate = 0;  // log(new / base)
  double se = 0;        // standard error of the estimate (log scale)
  double df = 0;        // degrees of freedom of the t quantile; 0 for the bootstrap
  double lo = 0, hi = 0;
  std::string method;   // paired | welch | calibrated | within-run bootstrap
};

// Per-run log medians of base and new (one value per run). `level` is the two-sided
// coverage (0.95). Paired when `paired` and both sides have the same count >= 2 (round i of
// one side is paired with round i of the other). Returns nullopt when no variance is known:
// one run per side and no calibration.
std::optional<LogRatioInterval> between_run_interval(const std::vector<double>& base_log,
                                                     const std::vector<double>& next_log,
                                                     bool paired, double level,
                                                     const std::optional<RunVariance>& prior);

// A case's own estimate of the run-to-run variance of one run's log median, from its runs:
// paired, var(d)/2 with R − 1 degrees of freedom; else the pooled two-sample variance with
// Ra + Rb − 2. nullopt when it has no degree of freedom.
std::optional<RunVariance> own_run_variance(const std::vector<double>& base_log,
                                            const std::vector<double>& next_log, bool paired);

// Empirical-Bayes prior for the per-case variances of one comparison (Smyth 2004, "Linear
// models and empirical Bayes methods for assessing differential expression", Stat. Appl.
// Genet. Mol. Biol. 3(1); the moderated t of limma's eBayes): fits a scaled inverse-chi-square
// distribution s0² · d0 / chi²(d0) to the cases' own variances by the moments of their logs.
// Pooled into a case's own variance ((d·s² + d0·s0²)/(d + d0), d + d0 degrees of freedom) it
// turns a few rounds' 3–7 degrees of freedom into an interval whose width rests on all cases,
// while a case that is truly noisier keeps a wider interval. d0 is large (capped at
// kMaxPriorDf) when the cases' variances agree, small when they differ. nullopt with fewer
// than 3 usable cases.
constexpr double kMaxPriorDf = 1000;
std::optional<RunVariance> moderation_prior(const std::vector<RunVariance>& own);

double digamma(double x);
double trigamma(double x);
// The x with trigamma(x) = y (y > 0), by Newton's method on 1/trigamma as limma does.
double trigamma_inverse(double y);

// Percentile bootstrap of log(median(next) / median(base)) resampling the samples of each
// side (`resamples` draws, deterministic from `seed`). Samples must be positive.
LogRatioInterval within_run_interval(const std::vector<double>& base,
                                     const std::vector<double>& next, double level,
                                     int resamples, std::uint64_t seed);

}  // namespace ab::stats
