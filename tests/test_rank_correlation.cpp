// Tests of the rank correlations and their bootstrap intervals.
//
// Expected values are computed by hand (in the comments), from properties (monotone
// invariance, +-1 for monotone data) and from brute-force implementations written here
// independently: ranks by counting, Pearson by its textbook formula, tau-b by a pair loop.
#include "twosed/study/rank_correlation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "twosed/error.h"
#include "twosed/random.h"

namespace twosed {
namespace {

// Library vs brute force: both are a few hundred exactly representable sums followed by one
// division and sqrt, so they agree to ~1e-16; 1e-12 is the tolerance asked of the library.
constexpr double kBruteTol = 1e-12;

// --- Independent brute-force references --------------------------------------------------

// Rank of x_i = 1 + #{j : x_j < x_i} + (#{j != i : x_j == x_i}) / 2, the average of the ranks
// the tie group spans.
std::vector<double> brute_ranks(const std::vector<double>& x) {
  std::vector<double> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    double less = 0.0, equal_others = 0.0;
    for (std::size_t j = 0; j < x.size(); ++j) {
      if (x[j] < x[i]) less += 1.0;
      if (j != i && x[j] == x[i]) equal_others += 1.0;
    }
    r[i] = 1.0 + less + 0.5 * equal_others;
  }
  return r;
}

double brute_pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double ma = 0.0, mb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  if (a.size() < 2 || saa == 0.0 || sbb == 0.0) return std::nan("");
  return sab / std::sqrt(saa * sbb);
}

double brute_spearman(const std::vector<double>& x, const std::vector<double>& y) {
  return brute_pearson(brute_ranks(x), brute_ranks(y));
}

double brute_tau_b(const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0.0, pairs = 0.0, tied_x = 0.0, tied_y = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    for (std::size_t j = i + 1; j < x.size(); ++j) {
      pairs += 1.0;
      if (x[i] == x[j]) tied_x += 1.0;
      if (y[i] == y[j]) tied_y += 1.0;
      const double sx = (x[i] < x[j]) - (x[i] > x[j]);
      const double sy = (y[i] < y[j]) - (y[i] > y[j]);
      s += sx * sy;  // +1 concordant, -1 discordant, 0 tied in either
    }
  }
  if (pairs == 0.0 || tied_x == pairs || tied_y == pairs) return std::nan("");
  return s / std::sqrt((pairs - tied_x) * (pairs - tied_y));
}

// Expects a UsageError whose message contains `needle`.
template <typename F>
void expect_usage_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected UsageError mentioning '" << needle << "'";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// --- Ranks and point values -------------------------------------------------------------

TEST(AverageRanks, TiesGetTheAverageOfTheirRanks) {
  EXPECT_EQ(average_ranks({10, 20, 20}), (std::vector<double>{1, 2.5, 2.5}));
  // Sorted: 1 (rank 1), 3 3 3 (ranks 2,3,4 -> 3), 5 (5), 7 7 (6,7 -> 6.5).
  EXPECT_EQ(average_ranks({7, 3, 5, 3, 1, 7, 3}), (std::vector<double>{6.5, 3, 5, 3, 1, 6.5, 3}));
  EXPECT_EQ(average_ranks({4, 4, 4, 4}), (std::vector<double>{2.5, 2.5, 2.5, 2.5}));
  EXPECT_EQ(average_ranks({-1.5}), (std::vector<double>{1}));
  EXPECT_TRUE(average_ranks({}).empty());
  expect_usage_error([] { average_ranks({1, std::nan(""), 2}); }, "x[1]");
}

TEST(Spearman, HandComputedValues) {
  // x ranks {1,2,3,4,5}; y = {5,6,7,8,7} has ranks {1,2,3.5,5,3.5} (the two 7s share 3 and 4).
  // Centred (mean 3): dx = {-2,-1,0,1,2}, dy = {-2,-1,0.5,2,0.5}.
  // sum dx dy = 4+1+0+2+1 = 8, sum dx^2 = 10, sum dy^2 = 4+1+0.25+4+0.25 = 9.5,
  // rho = 8 / sqrt(95) = 0.8207826816681233.
  EXPECT_NEAR(spearman({1, 2, 3, 4, 5}, {5, 6, 7, 8, 7}), 0.8207826816681233, 1e-15);
  // Header example: ranks {1,2,3,4} vs {1,3,2,4}: sum dx dy = 2.25-0.25-0.25+2.25 = 4, sum dx^2 = 5.
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {10, 30, 20, 40}), 0.8, 1e-15);
}

TEST(KendallTauB, HandComputedValueWithTiesInBoth) {
  // Points (x, y): p0 (1,2), p1 (1,1), p2 (2,3), p3 (3,1), p4 (3,3), p5 (3,3). n0 = 15 pairs:
  //   concordant C = 6: 02 04 05 12 14 15
  //   discordant D = 2: 03 (y 2 -> 1), 23 (y 3 -> 1)
  //   tied in x only: 01 34 35;  tied in y only: 13 24 25;  tied in both: 45
  // n1 (tied in x) = 4, n2 (tied in y) = 4, and C + D + 3 + 3 + 1 = 15.
  // tau-b = (6 - 2) / sqrt((15 - 4)(15 - 4)) = 4 / 11.
  const std::vector<double> x{1, 1, 2, 3, 3, 3}, y{2, 1, 3, 1, 3, 3};
  EXPECT_NEAR(kendall_tau_b(x, y), 4.0 / 11.0, 1e-15);
  EXPECT_NEAR(kendall_tau_b(y, x), 4.0 / 11.0, 1e-15);
  // Fewer ties: drop p5. n0 = 10, C = 4, D = 2, n1 = 2 (01 34), n2 = 2 (13 24): 2 / sqrt(8 * 8).
  EXPECT_NEAR(kendall_tau_b({1, 1, 2, 3, 3}, {2, 1, 3, 1, 3}), 0.25, 1e-15);
  // Unequal tie counts: x = {1,2,3,4}, y = {1,1,2,3}: C = 5 (all but 01), D = 0, n1 = 0, n2 = 1,
  // tau-b = 5 / sqrt(6 * 5) = 0.9128709291752769.
  EXPECT_NEAR(kendall_tau_b({1, 2, 3, 4}, {1, 1, 2, 3}), 5.0 / std::sqrt(30.0), 1e-15);
}

TEST(RankCorrelation, MonotoneReversedAndConstant) {
  const std::vector<double> x{0.3, -2, 5, 1e3, 7, 7, 0.1};
  std::vector<double> up(x.size()), down(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    up[i] = std::cbrt(x[i]) + 4.0;  // strictly increasing, keeps the tie
    down[i] = -2.0 * x[i];
  }
  EXPECT_EQ(spearman(x, up), 1.0);
  EXPECT_EQ(spearman(x, down), -1.0);
  EXPECT_EQ(kendall_tau_b(x, up), 1.0);
  EXPECT_EQ(kendall_tau_b(x, down), -1.0);
  const std::vector<double> c(x.size(), 3.0);
  EXPECT_TRUE(std::isnan(spearman(x, c)));
  EXPECT_TRUE(std::isnan(spearman(c, x)));
  EXPECT_TRUE(std::isnan(kendall_tau_b(x, c)));
  EXPECT_TRUE(std::isnan(kendall_tau_b(c, x)));
  EXPECT_TRUE(std::isnan(spearman({1}, {2})));
  EXPECT_TRUE(std::isnan(kendall_tau_b({1}, {2})));
  EXPECT_TRUE(std::isnan(spearman({}, {})));
  EXPECT_TRUE(std::isnan(kendall_tau_b({}, {})));
}

TEST(RankCorrelation, InvariantUnderStrictlyMonotoneTransforms) {
  Rng rng(11, Stream::Data, 0);
  std::vector<double> x(40), y(40), fx(40), gy(40);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<double>(rng.below(15)) * 0.25 - 1.0;  // ties
    y[i] = x[i] + rng.normal();
    fx[i] = std::exp(x[i]);       // increasing
    gy[i] = -y[i] * y[i] * y[i];  // decreasing: flips the sign
  }
  const double rho = spearman(x, y), tau = kendall_tau_b(x, y);
  ASSERT_GT(rho, 0.3);
  EXPECT_EQ(spearman(fx, y), rho);
  EXPECT_EQ(spearman(x, gy), -rho);
  EXPECT_EQ(kendall_tau_b(fx, y), tau);
  EXPECT_EQ(kendall_tau_b(fx, gy), -tau);
}

TEST(RankCorrelation, AgreesWithBruteForceOnTieHeavyData) {
  Rng rng(2024, Stream::Data, 1);
  int nan_cases = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 2 + rng.below(79);  // 2..80
    std::vector<double> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = static_cast<double>(rng.below(5));  // integers 0..4: many ties
      y[i] = static_cast<double>(rng.below(5));
    }
    EXPECT_EQ(average_ranks(x), brute_ranks(x)) << "trial " << trial;
    const double s = spearman(x, y), sb = brute_spearman(x, y);
    const double t = kendall_tau_b(x, y), tb = brute_tau_b(x, y);
    EXPECT_EQ(std::isnan(s), std::isnan(sb)) << "trial " << trial;
    EXPECT_EQ(std::isnan(t), std::isnan(tb)) << "trial " << trial;
    if (std::isnan(sb)) {
      ++nan_cases;
      continue;
    }
    EXPECT_NEAR(s, sb, kBruteTol) << "trial " << trial << " n " << n;
    EXPECT_NEAR(t, tb, kBruteTol) << "trial " << trial << " n " << n;
  }
  EXPECT_LT(nan_cases, 20);  // the comparison mostly ran on defined values
}

TEST(RankCorrelation, RejectsBadInput) {
  expect_usage_error([] { spearman({1, 2, 3}, {1, 2}); }, "same size");
  expect_usage_error([] { kendall_tau_b({1, 2}, {1, 2, 3}); }, "same size");
  expect_usage_error([] { spearman({1, std::nan(""), 3}, {1, 2, 3}); }, "x[1]");
  expect_usage_error([] { kendall_tau_b({1, 2, 3}, {1, 2, std::nan("")}); }, "y[2]");
}

// --- Bootstrap --------------------------------------------------------------------------

TEST(SortedQuantile, LinearInterpolationBetweenOrderStatistics) {
  const std::vector<double> v{1, 2, 3, 4, 5};
  EXPECT_EQ(sorted_quantile(v, 0.0), 1.0);
  EXPECT_EQ(sorted_quantile(v, 1.0), 5.0);
  EXPECT_EQ(sorted_quantile(v, 0.5), 3.0);
  EXPECT_EQ(sorted_quantile(v, 0.25), 2.0);            // h = 1
  EXPECT_NEAR(sorted_quantile(v, 0.1), 1.4, 1e-15);    // h = 0.4
  EXPECT_NEAR(sorted_quantile(v, 0.975), 4.9, 1e-15);  // h = 3.9
  // Unequal gaps: {0, 10, 11}, p = 0.25 -> h = 0.5 -> 5; p = 0.75 -> h = 1.5 -> 10.5.
  EXPECT_EQ(sorted_quantile({0, 10, 11}, 0.25), 5.0);
  EXPECT_EQ(sorted_quantile({0, 10, 11}, 0.75), 10.5);
  EXPECT_EQ(sorted_quantile({7}, 0.3), 7.0);
  expect_usage_error([] { sorted_quantile({}, 0.5); }, "empty");
  expect_usage_error([] { sorted_quantile({1, 2}, 1.5); }, "p must");
}

// Noisy linear relation y = x + sigma z, n pairs.
void noisy_linear(std::size_t n, double sigma, uint64_t seed, std::vector<double>& x, std::vector<double>& y) {
  Rng rng(seed, Stream::Data, 2);
  x.resize(n);
  y.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = rng.uniform();
    y[i] = x[i] + sigma * rng.normal();
  }
}

TEST(BootstrapCorrelation, MatchesTheDocumentedResamplesAndPercentiles) {
  // Reproduce the documented contract: resample j draws indices from
  // Rng(seed, Stream::Bootstrap, 0x52414E4B00000000 + j); the interval is the type-7 percentile
  // interval of the defined resampled values.
  std::vector<double> x, y;
  noisy_linear(12, 0.3, 5, x, y);
  for (double& v : x) v = std::round(v * 4.0);  // x in {0, ..., 4}: ties in x
  CorrelationOptions o;
  o.bootstrap = 300;
  o.confidence = 0.9;
  o.seed = 77;
  for (RankMethod m : {RankMethod::Spearman, RankMethod::Kendall}) {
    std::vector<double> vals;
    for (int64_t j = 0; j < o.bootstrap; ++j) {
      Rng rng(o.seed, Stream::Bootstrap, 0x52414E4B00000000ULL + static_cast<uint64_t>(j));
      std::vector<double> xb(x.size()), yb(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const auto k = rng.below(x.size());
        xb[i] = x[k];
        yb[i] = y[k];
      }
      const double v = m == RankMethod::Spearman ? brute_spearman(xb, yb) : brute_tau_b(xb, yb);
      if (!std::isnan(v)) vals.push_back(v);
    }
    std::sort(vals.begin(), vals.end());
    const auto est = bootstrap_correlation(x, y, m, o);
    EXPECT_EQ(est.valid, static_cast<int64_t>(vals.size()));
    EXPECT_EQ(est.n, 12);
    EXPECT_EQ(est.confidence, 0.9);
    // Hand-written type-7 percentile: h = p (m - 1).
    auto q = [&](double p) {
      const double h = p * static_cast<double>(vals.size() - 1);
      const auto k = static_cast<std::size_t>(h);
      return k + 1 < vals.size() ? vals[k] + (h - static_cast<double>(k)) * (vals[k + 1] - vals[k]) : vals[k];
    };
    EXPECT_NEAR(est.lo, q(0.05), kBruteTol);
    EXPECT_NEAR(est.hi, q(0.95), kBruteTol);
    const double value = m == RankMethod::Spearman ? brute_spearman(x, y) : brute_tau_b(x, y);
    EXPECT_NEAR(est.value, value, kBruteTol);
  }
}

TEST(BootstrapCorrelation, DeterministicForASeed) {
  std::vector<double> x, y;
  noisy_linear(30, 0.5, 1, x, y);
  CorrelationOptions o;
  o.bootstrap = 500;
  o.seed = 9;
  for (RankMethod m : {RankMethod::Spearman, RankMethod::Kendall}) {
    const auto a = bootstrap_correlation(x, y, m, o);
    const auto b = bootstrap_correlation(x, y, m, o);
    EXPECT_EQ(a.value, b.value);
    EXPECT_EQ(a.lo, b.lo);
    EXPECT_EQ(a.hi, b.hi);
    EXPECT_EQ(a.valid, b.valid);
    o.seed = 10;
    const auto c = bootstrap_correlation(x, y, m, o);
    o.seed = 9;
    EXPECT_EQ(c.value, a.value);                // the data's value does not depend on the seed
    EXPECT_TRUE(c.lo != a.lo || c.hi != a.hi);  // the resamples do
  }
}

TEST(BootstrapCorrelation, IntervalContainsAStrongCorrelation) {
  std::vector<double> x, y;
  noisy_linear(40, 0.1, 3, x, y);
  CorrelationOptions o;
  o.bootstrap = 1000;
  for (RankMethod m : {RankMethod::Spearman, RankMethod::Kendall}) {
    const auto e = bootstrap_correlation(x, y, m, o);
    EXPECT_GT(e.value, 0.6);
    EXPECT_LE(e.lo, e.value);
    EXPECT_GE(e.hi, e.value);
    EXPECT_LT(e.lo, e.hi);
    EXPECT_GT(e.lo, 0.3);
    EXPECT_LE(e.hi, 1.0);
    EXPECT_EQ(e.valid, 1000);  // 40 distinct x: a resample is constant with negligible probability
  }
}

TEST(BootstrapCorrelation, IdenticalVariablesGiveADegenerateIntervalAtOne) {
  std::vector<double> x, y;
  noisy_linear(25, 0.0, 4, x, y);
  for (RankMethod m : {RankMethod::Spearman, RankMethod::Kendall}) {
    const auto e = bootstrap_correlation(x, x, m, {});
    EXPECT_EQ(e.value, 1.0);
    EXPECT_EQ(e.lo, 1.0);
    EXPECT_EQ(e.hi, 1.0);
    EXPECT_EQ(e.valid, 2000);
  }
}

TEST(BootstrapCorrelation, IntervalNarrowsWithMoreModels) {
  CorrelationOptions o;
  o.bootstrap = 800;
  o.seed = 5;
  for (RankMethod m : {RankMethod::Spearman, RankMethod::Kendall}) {
    std::vector<double> x, y;
    noisy_linear(10, 0.3, 21, x, y);
    const auto small = bootstrap_correlation(x, y, m, o);
    noisy_linear(200, 0.3, 22, x, y);
    const auto large = bootstrap_correlation(x, y, m, o);
    // Width shrinks ~ 1/sqrt(n): a factor ~4.5 from 10 to 200; ask for 2.
    EXPECT_LT(2.0 * (large.hi - large.lo), small.hi - small.lo);
  }
}

TEST(BootstrapCorrelation, UndefinedResamplesAreSkipped) {
  // x constant: the value and every resample are undefined.
  const auto e = bootstrap_correlation({3, 3, 3}, {1, 2, 3}, RankMethod::Spearman, {});
  EXPECT_TRUE(std::isnan(e.value));
  EXPECT_EQ(e.valid, 0);
  EXPECT_TRUE(std::isnan(e.lo));
  EXPECT_TRUE(std::isnan(e.hi));
  // Two pairs: a resample is defined iff it draws both (probability 1/2), and then equals 1.
  CorrelationOptions o;
  o.bootstrap = 400;
  const auto two = bootstrap_correlation({1, 2}, {5, 9}, RankMethod::Kendall, o);
  EXPECT_EQ(two.value, 1.0);
  EXPECT_GT(two.valid, 150);
  EXPECT_LT(two.valid, 250);
  EXPECT_EQ(two.lo, 1.0);
  EXPECT_EQ(two.hi, 1.0);
}

TEST(BootstrapCorrelation, RejectsBadInput) {
  const std::vector<double> x{1, 2, 3}, y{3, 1, 2};
  CorrelationOptions o;
  expect_usage_error([&] { bootstrap_correlation(x, {1, 2}, RankMethod::Spearman, o); }, "same size");
  expect_usage_error([&] { bootstrap_correlation({1}, {1}, RankMethod::Spearman, o); }, "at least 2");
  expect_usage_error([&] { bootstrap_correlation({1, std::nan("")}, {1, 2}, RankMethod::Kendall, o); }, "x[1]");
  expect_usage_error([&] { bootstrap_correlation({1, 2}, {std::nan(""), 2}, RankMethod::Kendall, o); }, "y[0]");
  o.bootstrap = 1;
  expect_usage_error([&] { bootstrap_correlation(x, y, RankMethod::Spearman, o); }, "bootstrap");
  o.bootstrap = 100;
  for (double c : {0.0, 1.0, -0.5, std::nan("")}) {
    o.confidence = c;
    expect_usage_error([&] { bootstrap_correlation(x, y, RankMethod::Spearman, o); }, "confidence");
  }
}

}  // namespace
}  // namespace twosed
