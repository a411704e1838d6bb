#include "core/sample_stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ab {

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

SampleSummary summarize(const std::vector<double>& v) {
  SampleSummary s;
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.median = quantile(v, 0.5);
  s.p10 = quantile(v, 0.1);
  s.p90 = quantile(v, 0.9);
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

double median_rse(const std::vector<double>& v) {
  if (v.size() < 2) return 1.0;
  const SampleSummary s = summarize(v);
  if (s.median <= 0) return 1.0;
  return 1.2533 * s.stddev / std::sqrt(static_cast<double>(v.size())) / s.median;
}

}  // namespace ab
