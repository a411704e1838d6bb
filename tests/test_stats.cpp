// Order statistics, geometric mean and the Mann–Whitney U test. Reference values are from
// numpy 2 / scipy 1.17 (scipy.stats.mannwhitneyu(x, y, alternative="two-sided",
// method=...)) and, for the exact case, from the definition by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "analysis/stats.hpp"

using ab::stats::MwuMethod;
using doctest::Approx;

TEST_SUITE("stats") {

TEST_CASE("median and quantiles follow numpy's linear interpolation") {
  const std::vector<double> v = {3, 1, 4, 1, 5, 9, 2, 6};
  CHECK(ab::stats::median(v) == Approx(3.5));
  CHECK(ab::stats::median({7, 1, 3}) == Approx(3));
  CHECK(ab::stats::median({2.5}) == Approx(2.5));
  CHECK(ab::stats::quantile(v, 0.1) == Approx(1.0));
  CHECK(ab::stats::quantile(v, 0.9) == Approx(6.9));
  CHECK(ab::stats::quantile(v, 0.25) == Approx(1.75));
  CHECK(ab::stats::quantile(v, 0.0) == Approx(1));
  CHECK(ab::stats::quantile(v, 1.0) == Approx(9));
  CHECK(std::isnan(ab::stats::median({})));
  CHECK(std::isnan(ab::stats::quantile({}, 0.5)));
}

TEST_CASE("geometric mean") {
  CHECK(ab::stats::geometric_mean({1.1, 0.9, 1.3, 1.05}) == Approx(1.0781817129778513));
  CHECK(ab::stats::geometric_mean({2, 8}) == Approx(4));
  CHECK(ab::stats::geometric_mean({1.5}) == Approx(1.5));
  CHECK(std::isnan(ab::stats::geometric_mean({})));
  CHECK(std::isnan(ab::stats::geometric_mean({1.0, 0.0})));
  CHECK(std::isnan(ab::stats::geometric_mean({1.0, -2.0})));
}

TEST_CASE("normal survival function") {
  CHECK(ab::stats::normal_sf(0) == Approx(0.5));
  CHECK(ab::stats::normal_sf(1.959963984540054) == Approx(0.025));
  CHECK(ab::stats::normal_sf(-1.0) == Approx(0.8413447460685429));
  CHECK(ab::stats::normal_sf(8.0) == Approx(6.22096057427178e-16).epsilon(1e-6));
}

TEST_CASE("Mann-Whitney: textbook example, exact") {
  // By hand, pairs with x_i > y_j: 19 > {11,17,12} = 3, 22 > all 4, 16 > {11,12} = 2,
  // 29 > 4, 24 > 4 -> U1 = 17.
  const std::vector<double> x = {19, 22, 16, 29, 24}, y = {20, 11, 17, 12};
  const auto r = ab::stats::mann_whitney_u(x, y);
  CHECK(r.u1 == Approx(17));
  CHECK(r.u2 == Approx(3));
  CHECK(r.exact);
  CHECK_FALSE(r.ties);
  // P(U <= 3) for (5, 4): 1,1,2,3 arrangements with U = 0..3 -> 7 / C(9,4) = 7/126.
  CHECK(r.p == Approx(2.0 * 7.0 / 126.0));
  CHECK(r.p == Approx(0.1111111111111111));
  const auto a = ab::stats::mann_whitney_u(x, y, MwuMethod::asymptotic);
  CHECK_FALSE(a.exact);
  CHECK(a.p == Approx(0.11134688653314041));
}

TEST_CASE("Mann-Whitney: exact at the size limit agrees with scipy") {
  const std::vector<double> x = {1.1, 2.3, 3.5, 4.2, 5.9, 6.1, 7.7, 8.4};
  const std::vector<double> y = {3.3, 4.4, 5.5, 6.6, 7.1, 8.8, 9.9, 10.5, 11.2};
  const auto r = ab::stats::mann_whitney_u(x, y);
  CHECK(r.exact);
  CHECK(r.u1 == Approx(18));
  CHECK(r.p == Approx(0.09271904566022213));
  const auto a = ab::stats::mann_whitney_u(x, y, MwuMethod::asymptotic);
  CHECK(a.p == Approx(0.09219359636573936));
}

TEST_CASE("Mann-Whitney: ties force the asymptotic method with tie correction") {
  const std::vector<double> x = {1, 2, 2, 3, 3, 3, 4, 5};
  const std::vector<double> y = {3, 4, 4, 5, 5, 6, 7, 7, 8};
  const auto r = ab::stats::mann_whitney_u(x, y);
  CHECK(r.ties);
  CHECK_FALSE(r.exact);
  CHECK(r.u1 == Approx(7.5));
  CHECK(r.u2 == Approx(64.5));
  CHECK(r.p == Approx(0.006373133838085873));
}

TEST_CASE("Mann-Whitney: larger samples use the normal approximation") {
  const std::vector<double> x = {1.0,    1.0909, 1.1818, 1.2727, 1.3636, 1.4545,
                                 1.5455, 1.6364, 1.7273, 1.8182, 1.9091, 2.0};
  const std::vector<double> y = {1.301,  1.4192, 1.5374, 1.6555, 1.7737, 1.8919,
                                 2.0101, 2.1283, 2.2465, 2.3646, 2.4828, 2.601};
  const auto r = ab::stats::mann_whitney_u(x, y);
  CHECK_FALSE(r.exact);
  CHECK(r.u1 == Approx(30));
  CHECK(r.p == Approx(0.01657492674985327));
  CHECK(ab::stats::mann_whitney_u(x, y, MwuMethod::exact).p == Approx(0.014492507089088058));
  // Symmetric: swapping the samples swaps U1 and U2 and keeps p.
  const auto s = ab::stats::mann_whitney_u(y, x);
  CHECK(s.u1 == Approx(114));
  CHECK(s.p == Approx(r.p));
}

TEST_CASE("Mann-Whitney: complete separation and degenerate inputs") {
  const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<double> y = {10, 11, 12, 13, 14, 15, 16, 17, 18};
  CHECK(ab::stats::mann_whitney_u(x, y).p == Approx(0.00041229480206169127));
  CHECK(ab::stats::mann_whitney_u(x, y, MwuMethod::exact).p == Approx(2.0 / 48620.0));
  // One observation against ten: exact.
  const auto one = ab::stats::mann_whitney_u({5.5}, {1, 2, 3, 4, 6, 7, 8, 9, 10, 11});
  CHECK(one.exact);
  CHECK(one.u1 == Approx(4));
  CHECK(one.p == Approx(0.9090909090909092));
  // Identical samples: no evidence at all.
  const auto same = ab::stats::mann_whitney_u({2, 2, 2, 2, 2, 2, 2, 2, 2}, {2, 2, 2, 2, 2, 2, 2, 2, 2});
  CHECK(same.p == Approx(1.0));
  CHECK_THROWS_AS(ab::stats::mann_whitney_u({}, {1.0}), std::invalid_argument);
}

TEST_CASE("Mann-Whitney: smallest reachable p-value") {
  CHECK(ab::stats::mann_whitney_min_p(3, 3) == Approx(0.1));
  CHECK(ab::stats::mann_whitney_min_p(4, 4) == Approx(2.0 / 70.0));
  CHECK(ab::stats::mann_whitney_min_p(9, 9) == Approx(0.00041229480206169127));
  CHECK(ab::stats::mann_whitney_min_p(0, 5) == Approx(1.0));
}

}  // TEST_SUITE
