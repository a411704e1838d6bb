#include "analysis/stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace ab::stats {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// P(U <= u) under H0 for sample sizes (m, n), no ties. The number of arrangements with
// U = k is the coefficient of q^k in the Gaussian binomial [m+n choose m]_q
// = Π_{i=1..m} (1 − q^{n+i}) / (1 − q^i); every partial product is itself a polynomial
// with non-negative coefficients, so we build it factor by factor. Doubles: the counts
// can exceed 2^53 but only the absolute error of the probability matters here.
double exact_cdf(std::size_t m, std::size_t n, double u) {
  if (m > n) std::swap(m, n);
  const std::size_t deg = m * n;
  std::vector<double> c(deg + 1, 0.0);
  c[0] = 1.0;
  std::size_t cur = 0;  // degree of the current partial product
  for (std::size_t i = 1; i <= m; ++i) {
    const std::size_t up = n + i;
    const std::size_t next = cur + n;  // degree of [n+i choose i]_q is i·n
    // multiply by (1 − q^{n+i}); terms above the new degree cancel in the division, so
    // they are never written (the buffer above `next` stays zero)
    for (std::size_t k = next; k >= up; --k) c[k] -= c[k - up];
    // divide by (1 − q^i): c_new[k] = c[k] + c_new[k − i]
    for (std::size_t k = i; k <= next; ++k) c[k] += c[k - i];
    cur = next;
  }
  double total = 0, below = 0;
  for (std::size_t k = 0; k <= deg; ++k) {
    total += c[k];
    if (static_cast<double>(k) <= u + 1e-9) below += c[k];
  }
  return below / total;
}

// Average ranks (1-based) of the pooled sample, and the tie term Σ(t³ − t).
std::pair<std::vector<double>, double> average_ranks(const std::vector<double>& pooled) {
  const std::size_t n = pooled.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return pooled[a] < pooled[b]; });
  std::vector<double> rank(n);
  double tie_term = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && pooled[order[j]] == pooled[order[i]]) ++j;
    const double avg = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (std::size_t k = i; k < j; ++k) rank[order[k]] = avg;
    const double t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  return {rank, tie_term};
}

bool use_exact(std::size_t n1, std::size_t n2, bool ties) {
  return !ties && std::min(n1, n2) <= 8;
}
}  // namespace

double median(std::vector<double> v) { return quantile(std::move(v), 0.5); }

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return kNaN;
  q = std::clamp(q, 0.0, 1.0);
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return v[lo] + (v[hi] - v[lo]) * frac;
}

double geometric_mean(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double s = 0;
  for (double x : v) {
    if (!(x > 0) || !std::isfinite(x)) return kNaN;
    s += std::log(x);
  }
  return std::exp(s / static_cast<double>(v.size()));
}

double normal_sf(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

MannWhitney mann_whitney_u(const std::vector<double>& x, const std::vector<double>& y,
                           MwuMethod method) {
  if (x.empty() || y.empty()) throw std::invalid_argument("mann_whitney_u: empty sample");
  MannWhitney r;
  r.n1 = x.size();
  r.n2 = y.size();
  const double n1 = static_cast<double>(r.n1), n2 = static_cast<double>(r.n2);
  std::vector<double> pooled(x);
  pooled.insert(pooled.end(), y.begin(), y.end());
  const auto [rank, tie_term] = average_ranks(pooled);
  double r1 = 0;
  for (std::size_t i = 0; i < r.n1; ++i) r1 += rank[i];
  r.u1 = r1 - n1 * (n1 + 1) / 2.0;
  r.u2 = n1 * n2 - r.u1;
  r.ties = tie_term > 0;

  const bool exact = method == MwuMethod::exact ||
                     (method == MwuMethod::automatic && use_exact(r.n1, r.n2, r.ties));
  r.exact = exact;
  if (exact) {
    r.p = std::min(1.0, 2.0 * exact_cdf(r.n1, r.n2, std::min(r.u1, r.u2)));
    return r;
  }
  const double n = n1 + n2;
  const double mu = n1 * n2 / 2.0;
  const double var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
  if (!(var > 0)) {  // every value identical: no evidence of any difference
    r.z = 0;
    r.p = 1;
    return r;
  }
  const double u = std::max(r.u1, r.u2);
  r.z = (u - mu - 0.5) / std::sqrt(var);
  r.p = std::clamp(2.0 * normal_sf(r.z), 0.0, 1.0);
  return r;
}

double mann_whitney_min_p(std::size_t n1, std::size_t n2) {
  if (n1 == 0 || n2 == 0) return 1.0;
  if (use_exact(n1, n2, false)) {
    // 2 / C(n1+n2, n1): only the single most extreme arrangement on each side.
    double c = 1;
    const std::size_t k = std::min(n1, n2), n = n1 + n2;
    for (std::size_t i = 1; i <= k; ++i) c = c * static_cast<double>(n - k + i) / static_cast<double>(i);
    return std::min(1.0, 2.0 / c);
  }
  const double a = static_cast<double>(n1), b = static_cast<double>(n2);
  const double var = a * b / 12.0 * (a + b + 1.0);
  return std::clamp(2.0 * normal_sf((a * b / 2.0 - 0.5) / std::sqrt(var)), 0.0, 1.0);
}

}  // namespace ab::stats
