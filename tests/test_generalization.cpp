// Tests of the generalisation estimate (docs/math.md section 6) and its minimisation over eps.
//
// References: explicit loops over the same grid, a brute-force scan of 10^6 log-spaced eps,
// and, for a constant dimension, the zero of the derivative found by bisection here.
#include "twosed/estimate/generalization.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "twosed/error.h"

namespace twosed {
namespace {

// Continuous minimum vs a 10^6-point brute-force scan: the brute force can only be above the
// true minimum, and golden-section search locates it to ~1e-16 relative in the value, so
// the continuous value must not exceed the brute-force one by more than rounding.
constexpr double kValueRelTol = 1e-12;
// The brute-force grid over [1e-9, 0.9] has spacing 2.1e-5 in log eps, so its argmin is within
// ~1e-5 relative of the true one (or a little more where the objective is very flat).
constexpr double kBruteEpsRelTol = 1e-4;
constexpr int kBrutePoints = 1000000;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

template <typename F>
void expect_usage_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected UsageError mentioning '" << needle << "'";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

BoundOptions options(double b, double l, double delta = 0.05) {
  BoundOptions o;
  o.loss_bound = b;
  o.lipschitz = l;
  o.delta = delta;
  return o;
}

// Linear-Gaussian closed form: d(eps) = zeta d + sum_i log(1 + a sqrt(lambda_i)) / |log eps|,
// a = eps^(zeta - 1), lambda = {0.5, 2, 10, 1e-3}, d = 4.
std::function<double(double)> linear_gaussian(double zeta) {
  return [zeta](double eps) {
    const double a = std::pow(eps, zeta - 1.0);
    double s = 0.0;
    for (double lambda : {0.5, 2.0, 10.0, 1e-3}) s += std::log(1.0 + a * std::sqrt(lambda));
    return zeta * 4.0 + s / std::fabs(std::log(eps));
  };
}

// The objective written out from the spec, independently of gap_objective.
double spec_gap(double eps, double dim, double n, const BoundOptions& o) {
  return 2.0 * o.lipschitz * eps +
         o.loss_bound * std::sqrt((dim * -std::log(eps) + std::log(2.0 / o.delta)) / (2.0 * n));
}

TEST(Generalization, ValidatesOptionsNamingThem) {
  EXPECT_NO_THROW(validate_bound_options(BoundOptions{}));
  // The library names the field, never a CLI flag.
  auto expect_option = [](const std::function<void()>& f, const std::string& option, const std::string& rule) {
    try {
      f();
      ADD_FAILURE() << "expected OptionError for " << option;
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option(), option);
      EXPECT_NE(e.rule().find(rule), std::string::npos) << e.rule();
      EXPECT_EQ(std::string(e.what()).find("--"), std::string::npos) << e.what();
    }
  };
  for (double b : {0.0, -1.0, kInf, kNaN}) {
    expect_option([&] { validate_bound_options(options(b, 1.0)); }, "BoundOptions.loss_bound",
                  "must be a finite number > 0, got ");
  }
  for (double l : {0.0, -2.0, kInf, kNaN}) {
    expect_option([&] { validate_bound_options(options(1.0, l)); }, "BoundOptions.lipschitz",
                  "must be a finite number > 0, got ");
  }
  for (double d : {0.0, 1.0, -0.1, 1.5, kNaN}) {
    expect_option([&] { validate_bound_options(options(1.0, 1.0, d)); }, "BoundOptions.delta",
                  "must satisfy 0 < delta < 1, got ");
  }
  expect_usage_error([&] { validate_bound_options(options(1.0, 1.0, 2)); },
                     "BoundOptions.delta must satisfy 0 < delta < 1, got 2");
  const auto dim = [](double) { return 3.0; };
  const std::vector<double> grid{0.1, 0.2};
  expect_usage_error([&] { minimize_gap(dim, 100, grid, options(-1, 1)); }, "BoundOptions.loss_bound");
  expect_usage_error([&] { minimize_gap_continuous(dim, 100, 0.01, 0.5, options(1, 0)); }, "BoundOptions.lipschitz");
  for (double n : {1.0, 0.5, kNaN, kInf}) {
    expect_usage_error([&] { minimize_gap(dim, n, grid, {}); }, "n (training examples)");
    expect_usage_error([&] { minimize_gap_continuous(dim, n, 0.01, 0.5, {}); }, "n (training examples)");
  }
  expect_usage_error([&] { minimize_gap(dim, 100, {}, {}); }, "eps grid");
  expect_usage_error([&] { minimize_gap(dim, 100, {0.1, 1.0}, {}); }, "eps grid");
  expect_usage_error([&] { minimize_gap(dim, 100, {0.0, 0.1}, {}); }, "eps grid");
  expect_usage_error([&] { minimize_gap_continuous(dim, 100, 0.0, 0.5, {}); }, "lo");
  expect_usage_error([&] { minimize_gap_continuous(dim, 100, 0.01, 1.0, {}); }, "hi");
  expect_usage_error([&] { minimize_gap_continuous(dim, 100, 0.5, 0.5, {}); }, "lo must be < hi");
  expect_usage_error([&] { minimize_gap_continuous(dim, 100, 0.5, 0.1, {}); }, "lo must be < hi");
  expect_usage_error([&] { minimize_gap_continuous(dim, 100, 0.01, 0.5, {}, 2); }, "scan");
  const auto bad_dim = [](double eps) { return eps > 0.15 ? kNaN : 2.0; };
  expect_usage_error([&] { minimize_gap(bad_dim, 100, grid, {}); }, "dimension at eps=0.2");
  expect_usage_error([&] { minimize_gap_continuous(bad_dim, 100, 0.01, 0.5, {}); }, "dimension at eps=");
  const auto inf_dim = [](double) { return kInf; };
  expect_usage_error([&] { minimize_gap(inf_dim, 100, grid, {}); }, "dimension at eps=0.1");
}

TEST(Generalization, ObjectiveHandValue) {
  // eps = 0.1, d = 2, n = 100, B = 1, L = 1, delta = 0.05:
  // 2 * 0.1 + sqrt((2 ln 10 + ln 40) / 200) = 0.2 + sqrt((4.605170186 + 3.688879454) / 200)
  //   = 0.2 + sqrt(0.0414702482005) = 0.2 + 0.2036424518624 = 0.4036424518624.
  EXPECT_NEAR(gap_objective(0.1, 2.0, 100.0, {}), 0.4036424518624, 1e-12);
  // B scales the complexity term only, L the Lipschitz term only.
  EXPECT_NEAR(gap_objective(0.1, 2.0, 100.0, options(3.0, 1.0)), 0.2 + 3 * 0.2036424518624, 1e-12);
  EXPECT_NEAR(gap_objective(0.1, 2.0, 100.0, options(1.0, 5.0)), 1.0 + 0.2036424518624, 1e-12);
  // delta enters as log(2/delta): delta = 0.5 gives sqrt((2 ln 10 + ln 4) / 200) = 0.1752048...
  EXPECT_NEAR(gap_objective(0.1, 2.0, 100.0, options(1.0, 1.0, 0.5)),
              0.2 + std::sqrt((2 * std::log(10.0) + std::log(4.0)) / 200), 1e-15);
}

TEST(MinimizeGap, EqualsAnExplicitLoop) {
  const std::vector<double> grid{1e-6, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.5, 0.8};
  for (double zeta : {0.0, 0.5}) {
    const auto dim = linear_gaussian(zeta);
    for (double n : {1e2, 1e4, 1e6}) {
      for (const auto& o : {options(1, 1), options(2.5, 0.3, 0.01)}) {
        double best_gap = kInf, best_eps = 0.0;
        std::size_t best_i = 0;
        for (std::size_t i = 0; i < grid.size(); ++i) {
          const double g = spec_gap(grid[i], dim(grid[i]), n, o);
          if (g < best_gap) {
            best_gap = g;
            best_eps = grid[i];
            best_i = i;
          }
        }
        const auto r = minimize_gap(dim, n, grid, o);
        EXPECT_EQ(r.eps, best_eps) << "zeta " << zeta << " n " << n;
        EXPECT_NEAR(r.gap, best_gap, 1e-14 * best_gap);
        EXPECT_EQ(r.n, n);
        EXPECT_EQ(r.dimension, dim(best_eps));
        EXPECT_EQ(r.lipschitz_term, 2.0 * o.lipschitz * best_eps);
        EXPECT_EQ(r.gap, r.lipschitz_term + r.complexity_term);
        EXPECT_EQ(r.at_grid_edge, best_i == 0 || best_i + 1 == grid.size());
      }
    }
  }
}

TEST(MinimizeGap, TiesGoToTheSmallerEpsAndEdgesAreFlagged) {
  // Gap at eps = 1/4: 2 * 1/4 + sqrt(r1 / 4) with r1 = 9 -> 0.5 + 1.5 = 2 (n = 2, B = L = 1);
  // at eps = 1/2: 1 + sqrt(4 / 4) = 2. Find dimensions that hit these exactly.
  const BoundOptions o{};
  auto solve = [&](double eps, double target) {
    double d = (target - std::log(2.0 / o.delta)) / -std::log(eps);
    for (int k = 0; k < 200 && gap_objective(eps, d, 2.0, o) != 2.0; ++k) {
      d = std::nextafter(d, gap_objective(eps, d, 2.0, o) < 2.0 ? kInf : -kInf);
    }
    return d;
  };
  const double d1 = solve(0.25, 9.0), d2 = solve(0.5, 4.0);
  ASSERT_EQ(gap_objective(0.25, d1, 2.0, o), 2.0);
  ASSERT_EQ(gap_objective(0.5, d2, 2.0, o), 2.0);
  const auto dim = [&](double eps) { return eps == 0.25 ? d1 : (eps == 0.5 ? d2 : 1e3); };
  EXPECT_EQ(minimize_gap(dim, 2.0, {0.5, 0.25}, o).eps, 0.25);
  EXPECT_EQ(minimize_gap(dim, 2.0, {0.25, 0.5}, o).eps, 0.25);
  EXPECT_EQ(minimize_gap(dim, 2.0, {0.7, 0.5, 0.25, 0.1}, o).eps, 0.25);
  EXPECT_FALSE(minimize_gap(dim, 2.0, {0.7, 0.5, 0.25, 0.1}, o).at_grid_edge);
  EXPECT_TRUE(minimize_gap(dim, 2.0, {0.5, 0.25}, o).at_grid_edge);
  // A single point is never "at the edge".
  EXPECT_FALSE(minimize_gap(dim, 2.0, {0.25}, o).at_grid_edge);
  // Huge n: the Lipschitz term dominates and the smallest eps wins, at the edge.
  const auto seven = [](double) { return 7.0; };
  const auto r = minimize_gap(seven, 1e12, {0.1, 0.2, 0.4}, o);
  EXPECT_EQ(r.eps, 0.1);
  EXPECT_TRUE(r.at_grid_edge);
}

struct ContinuousCase {
  std::string name;
  std::function<double(double)> dim;
};

TEST(MinimizeGapContinuous, MatchesAMillionPointBruteForce) {
  const std::vector<ContinuousCase> cases{
      {"linear-Gaussian zeta=0", linear_gaussian(0.0)},
      {"linear-Gaussian zeta=0.5", linear_gaussian(0.5)},
      {"constant 7", [](double) { return 7.0; }},
  };
  const double lo = 1e-9, hi = 0.9;
  const double t_lo = std::log(lo), t_hi = std::log(hi);
  int interior = 0;
  for (const auto& c : cases) {
    for (double n : {1e2, 1e4, 1e6}) {
      for (const auto& o : {options(1, 1), options(4, 0.25, 0.01)}) {
        double bf_gap = kInf, bf_eps = 0.0;
        int bf_k = 0;
        for (int k = 0; k < kBrutePoints; ++k) {
          const double eps = std::exp(t_lo + (t_hi - t_lo) * k / (kBrutePoints - 1));
          const double g = spec_gap(eps, c.dim(eps), n, o);
          if (g < bf_gap) {
            bf_gap = g;
            bf_eps = eps;
            bf_k = k;
          }
        }
        const auto r = minimize_gap_continuous(c.dim, n, lo, hi, o);
        const std::string where = c.name + " n=" + std::to_string(n) + " B=" + std::to_string(o.loss_bound);
        EXPECT_LE(r.gap, bf_gap * (1.0 + kValueRelTol)) << where;
        EXPECT_NEAR(r.gap, spec_gap(r.eps, c.dim(r.eps), n, o), 1e-14 * r.gap) << where;
        EXPECT_EQ(r.dimension, c.dim(r.eps)) << where;
        if (bf_k > 0 && bf_k + 1 < kBrutePoints) {
          ++interior;
          EXPECT_NEAR(r.eps / bf_eps, 1.0, kBruteEpsRelTol) << where;
          EXPECT_FALSE(r.at_grid_edge) << where;
        }
      }
    }
  }
  EXPECT_EQ(interior, 18);  // every case has its minimum inside [lo, hi], so the argmins were compared
}

TEST(MinimizeGapContinuous, ConstantDimensionMatchesTheDerivativeZero) {
  // B = 1, d constant = D: f(eps) = 2 L eps + sqrt(g), g = (D (-ln eps) + ln(2/delta)) / (2n),
  // f'(eps) = 2 L - D / (4 n eps sqrt(g)), increasing in eps; its zero by bisection in log eps.
  for (double D : {1.0, 7.0, 60.0}) {
    for (double n : {1e2, 1e4, 1e6}) {
      for (double L : {0.2, 1.0, 5.0}) {
        const BoundOptions o = options(1.0, L, 0.05);
        auto fprime = [&](double eps) {
          const double g = (D * -std::log(eps) + std::log(2.0 / o.delta)) / (2.0 * n);
          return 2.0 * L - D / (4.0 * n * eps * std::sqrt(g));
        };
        double a = std::log(1e-12), b = std::log(0.99);
        ASSERT_LT(fprime(std::exp(a)), 0.0);
        if (fprime(std::exp(b)) <= 0.0) continue;  // the minimum is beyond 0.99
        for (int it = 0; it < 200; ++it) {
          const double m = 0.5 * (a + b);
          (fprime(std::exp(m)) < 0.0 ? a : b) = m;
        }
        const double eps_star = std::exp(0.5 * (a + b));
        const auto r = minimize_gap_continuous([D](double) { return D; }, n, 1e-12, 0.99, o);
        EXPECT_NEAR(r.eps / eps_star, 1.0, 1e-6) << "D " << D << " n " << n << " L " << L;
        EXPECT_NEAR(r.gap, spec_gap(eps_star, D, n, o), 1e-14 * r.gap);
        EXPECT_LE(r.gap, spec_gap(eps_star, D, n, o) * (1.0 + 1e-15));
        EXPECT_FALSE(r.at_grid_edge);
      }
    }
  }
}

TEST(MinimizeGapContinuous, FlagsMinimaBeyondTheRange) {
  const auto seven = [](double) { return 7.0; };
  // Huge n: the optimum eps is ~1e-5, far below lo = 0.1.
  const auto small = minimize_gap_continuous(seven, 1e12, 0.1, 0.5, {});
  EXPECT_EQ(small.eps, 0.1);
  EXPECT_TRUE(small.at_grid_edge);
  // Small n, large B: the optimum is near 0.3, above hi = 1e-3.
  const auto large = minimize_gap_continuous(seven, 5, 1e-6, 1e-3, options(10, 1));
  EXPECT_EQ(large.eps, 1e-3);
  EXPECT_TRUE(large.at_grid_edge);
  // The same objective on a range containing its optimum is not at the edge.
  EXPECT_FALSE(minimize_gap_continuous(seven, 1e4, 1e-8, 0.5, {}).at_grid_edge);
}

TEST(MinimizeGapContinuous, NeverWorseThanTheBestScanPoint) {
  // A wiggly dimension makes the objective multimodal, so golden-section search alone could
  // end at a local minimum; the result still must not exceed the best scan point.
  const auto wiggly = [](double eps) { return 5.0 + 3.0 * std::sin(40.0 * std::log(eps)); };
  const double lo = 1e-6, hi = 0.5;
  for (int scan : {3, 7, 50, 200}) {
    for (double n : {1e2, 1e4}) {
      double scan_best = kInf;
      for (int k = 0; k < scan; ++k) {
        const double eps = std::exp(std::log(lo) + (std::log(hi) - std::log(lo)) * k / (scan - 1));
        scan_best = std::fmin(scan_best, spec_gap(eps, wiggly(eps), n, {}));
      }
      const auto r = minimize_gap_continuous(wiggly, n, lo, hi, {}, scan);
      EXPECT_LE(r.gap, scan_best * (1.0 + 1e-14)) << "scan " << scan << " n " << n;
    }
  }
}

}  // namespace
}  // namespace twosed
