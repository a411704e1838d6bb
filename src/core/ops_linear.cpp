#include "core/ops_linear.hpp"

#include <algorithm>
#include <cmath>

namespace ab {

std::vector<float> alibi_slopes(int heads) {
  auto pow2 = [](int n) {
    const double start = std::pow(2.0, -8.0 / n);
    std::vector<float> s(static_cast<size_t>(n));
    for (int h = 0; h < n; ++h) s[size_t(h)] = float(std::pow(start, h + 1));
    return s;
  };
  if (heads <= 0) return {};
  int n = 1;
  while (n * 2 <= heads) n *= 2;
  std::vector<float> s = pow2(n);
  if (n == heads) return s;
  const std::vector<float> twice = pow2(2 * n);
  for (int h = 0; int(s.size()) < heads; h += 2) s.push_back(twice[size_t(h)]);
  return s;
}

double feature_map_value(FeatureMap f, double x) {
  switch (f) {
    case FeatureMap::identity: return x;
    case FeatureMap::elu: return x > 0 ? x : std::expm1(x);
    case FeatureMap::elu_plus_one: return x > 0 ? x + 1 : std::exp(x);
    case FeatureMap::relu: return std::max(x, 0.0);
    case FeatureMap::silu: return x / (1 + std::exp(-x));
  }
  return x;
}

}  // namespace ab
