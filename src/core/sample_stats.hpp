#pragma once
// Summary statistics of timing samples.
#include <vector>

namespace ab {

struct SampleSummary {
  double min = 0, median = 0, p10 = 0, p90 = 0, mean = 0, stddev = 0;
};

// Linear-interpolated quantile (q in [0, 1]) of unsorted samples; 0 for none.
double quantile(std::vector<double> v, double q);
SampleSummary summarize(const std::vector<double>& v);
// Relative standard error of the median: 1.2533·σ/√n / median, the asymptotic standard error
// of a normal sample's median (large-sample efficiency π/2).
double median_rse(const std::vector<double>& v);

}  // namespace ab
