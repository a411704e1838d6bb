#pragma once
// Small statistics for reports: order statistics, the geometric mean, and the two-sided
// Mann–Whitney U test that `compare` uses to tell a latency change from noise.
#include <cstddef>
#include <string_view>
#include <vector>

namespace ab::stats {

// Median of the values (mean of the two middle ones for an even count). NaN when empty.
double median(std::vector<double> v);

// Quantile q in [0, 1] by linear interpolation between order statistics (Hyndman & Fan
// type 7, numpy's default): position (n - 1)·q. NaN when empty.
double quantile(std::vector<double> v, double q);

// exp(mean(log x)). NaN when empty or when any value is not strictly positive (a ratio of
// times is always positive; anything else is a bug upstream, not a number to average).
double geometric_mean(const std::vector<double>& v);

enum class MwuMethod {
  automatic,   // exact when no ties and min(n1, n2) <= 8, else asymptotic (scipy's rule)
  exact,       // exact null distribution of U (assumes no ties)
  asymptotic,  // normal approximation with tie correction and continuity correction
};

struct MannWhitney {
  double u1 = 0;        // U statistic of the first sample: #{(i,j): x_i > y_j} + ties/2
  double u2 = 0;        // n1·n2 − u1
  double z = 0;         // standardised statistic (asymptotic method only; 0 for exact)
  double p = 1;         // two-sided p-value, clipped to [0, 1]
  bool exact = false;   // which method produced p
  bool ties = false;    // whether the pooled sample had ties
  std::size_t n1 = 0, n2 = 0;
};

// Two-sided Mann–Whitney U test of x against y, matching scipy.stats.mannwhitneyu
// (alternative="two-sided", use_continuity=True). Asymptotic: mu = n1·n2/2,
// sigma² = n1·n2/12 · ((n+1) − Σ(t³−t)/(n(n−1))) over tie groups t, z = (max(U1,U2) − mu
// − 1/2)/sigma, p = 2·(1 − Φ(z)). Exact: p = 2·P(U ≤ min(U1,U2)) under H0, from the
// coefficients of the Gaussian binomial [n1+n2 choose n1]_q. Throws std::invalid_argument
// when a sample is empty.
MannWhitney mann_whitney_u(const std::vector<double>& x, const std::vector<double>& y,
                           MwuMethod method = MwuMethod::automatic);

// The smallest two-sided p-value any outcome can reach with these sample sizes, for the
// method `automatic` would use without ties: tells "not significant" from "could never be".
double mann_whitney_min_p(std::size_t n1, std::size_t n2);

// Standard normal survival function 1 − Φ(z), accurate in the tail.
double normal_sf(double z);

}  // namespace ab::stats
