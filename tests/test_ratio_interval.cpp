// Student's t and the intervals of the CI gate (analysis/ratio_interval.hpp). Quantiles are
// textbook values (e.g. Abramowitz & Stegun table 26.10); the intervals are worked by hand
// from the formulas in the header.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "analysis/ratio_interval.hpp"

using namespace ab::stats;
using doctest::Approx;

TEST_SUITE("ratio interval") {

TEST_CASE("Student's t quantiles and CDF") {
  CHECK(student_t_quantile(0.975, 1) == Approx(12.7062047).epsilon(1e-6));
  CHECK(student_t_quantile(0.975, 2) == Approx(4.30265273).epsilon(1e-6));
  CHECK(student_t_quantile(0.975, 3) == Approx(3.18244631).epsilon(1e-6));
  CHECK(student_t_quantile(0.975, 10) == Approx(2.22813885).epsilon(1e-6));
  CHECK(student_t_quantile(0.995, 10) == Approx(3.16927267).epsilon(1e-6));
  CHECK(student_t_quantile(0.95, 30) == Approx(1.69726089).epsilon(1e-6));
  CHECK(student_t_quantile(0.975, 1e6) == Approx(1.95996).epsilon(1e-4));  // -> normal
  CHECK(student_t_quantile(0.025, 3) == Approx(-3.18244631).epsilon(1e-6));
  CHECK(student_t_quantile(0.5, 7) == 0);
  // Fractional df (Welch–Satterthwaite) lies between its neighbours.
  const double q25 = student_t_quantile(0.975, 2.5);
  CHECK(q25 < student_t_quantile(0.975, 2));
  CHECK(q25 > student_t_quantile(0.975, 3));
  CHECK(student_t_cdf(0, 5) == Approx(0.5));
  CHECK(student_t_cdf(2.570581836, 5) == Approx(0.975).epsilon(1e-7));
  CHECK(student_t_cdf(-2.570581836, 5) == Approx(0.025).epsilon(1e-7));
  // t with 1 df is Cauchy: P(T <= 1) = 3/4.
  CHECK(student_t_cdf(1, 1) == Approx(0.75).epsilon(1e-9));
  CHECK(incomplete_beta(2, 3, 0.4) == Approx(0.5248).epsilon(1e-9));  // 1 - (1-x)^3 (1+3x)
}

TEST_CASE("paired rounds: t interval on the per-round differences") {
  // d = 0.10, 0.12, 0.08: mean 0.10, sd 0.02, se 0.02/sqrt(3), t(0.975, 2) = 4.30265.
  const std::vector<double> base = {0.0, 0.5, 1.0};
  const std::vector<double> next = {0.10, 0.62, 1.08};
  const auto iv = between_run_interval(base, next, true, 0.95, std::nullopt).value();
  CHECK(iv.method == "paired");
  CHECK(iv.estimate == Approx(0.10));
  CHECK(iv.df == Approx(2));
  CHECK(iv.se == Approx(0.02 / std::sqrt(3.0)));
  CHECK(iv.lo == Approx(0.10 - 4.30265273 * 0.02 / std::sqrt(3.0)).epsilon(1e-6));
  CHECK(iv.hi == Approx(0.10 + 4.30265273 * 0.02 / std::sqrt(3.0)).epsilon(1e-6));
  // Unpaired, the same numbers see the spread between rounds (0 .. 1) and learn nothing.
  const auto un = between_run_interval(base, next, false, 0.95, std::nullopt).value();
  CHECK(un.method == "pooled");
  CHECK(un.estimate == Approx(0.10));
  CHECK(un.lo < -0.5);
}

TEST_CASE("a calibrated run variance is pooled in, and makes one run per side testable") {
  // One run per side and no calibration: unknown.
  CHECK_FALSE(between_run_interval({0.0}, {0.1}, true, 0.95, std::nullopt).has_value());
  // sigma = 0.02 with 8 df: var(d) = 2 sigma^2, se = 0.02 sqrt(2), df 8.
  const auto one = between_run_interval({0.0}, {0.1}, true, 0.95, RunVariance{0.0004, 8}).value();
  CHECK(one.method == "calibrated");
  CHECK(one.df == Approx(8));
  CHECK(one.se == Approx(0.02 * std::sqrt(2.0)));
  // Paired with prior: var_d = (ss + 2 df_p var_p) / (R - 1 + df_p).
  const auto p = between_run_interval({0.0, 0.0, 0.0}, {0.10, 0.12, 0.08}, true, 0.95,
                                      RunVariance{0.0004, 8}).value();
  const double var_d = (0.0008 + 2 * 8 * 0.0004) / (2 + 8);
  CHECK(p.method == "paired+calibrated");
  CHECK(p.df == Approx(10));
  CHECK(p.se == Approx(std::sqrt(var_d / 3)));
  // A single run on one side borrows the other side's spread (pooled, df from that side).
  const auto mixed = between_run_interval({0.0, 0.02, -0.02}, {0.1}, true, 0.95, std::nullopt).value();
  CHECK(mixed.method == "pooled");
  CHECK(mixed.df == Approx(2));
  CHECK(mixed.se == Approx(std::sqrt(0.0004 * (1.0 / 3 + 1.0))));
}

TEST_CASE("digamma, trigamma and its inverse") {
  // psi(1) = -gamma (Euler's constant), psi'(1) = pi^2/6, psi(1/2) = -gamma - 2 ln 2,
  // psi'(1/2) = pi^2/2 (Abramowitz & Stegun 6.3.2, 6.3.3, 6.4.2, 6.4.4).
  const double pi = 3.14159265358979323846, euler = 0.57721566490153286;
  CHECK(digamma(1.0) == Approx(-euler).epsilon(1e-10));
  CHECK(digamma(0.5) == Approx(-euler - 2 * std::log(2.0)).epsilon(1e-10));
  CHECK(digamma(10.0) == Approx(2.251752589066721).epsilon(1e-10));
  CHECK(trigamma(1.0) == Approx(pi * pi / 6).epsilon(1e-10));
  CHECK(trigamma(0.5) == Approx(pi * pi / 2).epsilon(1e-10));
  CHECK(trigamma(30.0) == Approx(0.033895060357739926).epsilon(1e-10));  // pi^2/6 - sum 1/k^2, k < 30
  for (double x : {0.05, 0.7, 1.5, 3.0, 12.5, 400.0}) CHECK(trigamma_inverse(trigamma(x)) == Approx(x).epsilon(1e-7));
}

TEST_CASE("moderation prior: recovers the scale and degrees of freedom of the variances") {
  // Variances s_i^2 = s0^2 chi2(d)/d around per-case sigma_i^2 = s0^2 d0/chi2(d0): the fit
  // gets s0^2 and d0 back from 4000 cases within sampling error.
  std::mt19937_64 rng(7);
  const double s0 = 0.04 * 0.04, d0 = 8, d = 5;
  std::chi_squared_distribution<double> prior_draw(d0), own_draw(d);
  std::vector<RunVariance> own;
  for (int i = 0; i < 4000; ++i) {
    const double sigma2 = s0 * d0 / prior_draw(rng);
    own.push_back({sigma2 * own_draw(rng) / d, d});
  }
  const auto p = moderation_prior(own);
  REQUIRE(p);
  CHECK(p->var == Approx(s0).epsilon(0.08));
  CHECK(p->df == Approx(d0).epsilon(0.3));
  // Cases that share one variance: the prior's degrees of freedom go to the cap.
  std::vector<RunVariance> same;
  for (int i = 0; i < 4000; ++i) same.push_back({s0 * own_draw(rng) / d, d});
  const auto q = moderation_prior(same);
  REQUIRE(q);
  CHECK(q->df > 100);
  CHECK(q->var == Approx(s0).epsilon(0.05));
  // Too few usable cases: no prior.
  CHECK_FALSE(moderation_prior({{0.01, 3}, {0.0, 3}, {0.02, 3}}));
}

TEST_CASE("within-run bootstrap: centred on the ratio of medians, reproducible") {
  std::vector<double> base, next, same;
  for (int i = 0; i < 30; ++i) {
    base.push_back(1.0 + 0.01 * (i % 7));
    next.push_back(1.3 * (1.0 + 0.01 * ((i * 3) % 7)));
  }
  const auto iv = within_run_interval(base, next, 0.95, 2000, 42);
  CHECK(iv.estimate == Approx(std::log(1.3)));
  CHECK(iv.lo > std::log(1.2));
  CHECK(iv.hi < std::log(1.4));
  const auto again = within_run_interval(base, next, 0.95, 2000, 42);
  CHECK(again.lo == iv.lo);
  CHECK(again.hi == iv.hi);
  const auto aa = within_run_interval(base, base, 0.95, 2000, 7);
  CHECK(aa.estimate == Approx(0));
  CHECK(aa.lo <= 0);
  CHECK(aa.hi >= 0);
}

}  // TEST_SUITE
