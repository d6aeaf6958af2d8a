// Tests of the 2sED estimator (docs/math.md sections 4, 5 and invariants 1 and 3 of section 8).
//
// Expected values come from closed forms (constant Fisher), from the Abbas et al. formula
// written out independently with products of determinants, and from a brute-force bootstrap
// that evaluates every resample directly with the same random stream.
#include "twosed/estimate/estimator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "twosed/error.h"
#include "twosed/random.h"

namespace twosed {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Closed form vs estimator: both sum a few dozen log terms whose arguments differ by a few
// roundings (d/t*lambda vs d*s_i/sum s), so agreement is ~1e-15; 1e-12 leaves ample room.
constexpr double kClosedFormRelTol = 1e-12;
// M identical spectra: every resample is the same multiset, so the bootstrap has no spread;
// only round-off could show, and the estimator's shifted variance makes even that exactly 0.
constexpr double kIdenticalStdErrorTol = 1e-12;
// Abbas ED via long-double products of sqrt(1 + kappa*lambda) vs the estimator's log sums:
// both accurate to ~1e-15 relative; 1e-12 leaves room for log(mean) of products near 1e100.
constexpr double kAbbasRelTol = 1e-12;
// Chebyshev-interpolated bootstrap vs direct evaluation: the interpolant is built for ~1e-14
// relative error in each S_j; the standard error is a difference of values ~10-100x larger
// than itself, so 1e-10 relative on it is a demanding but sound bound.
constexpr double kBootstrapRelTol = 1e-10;
// Point estimates are evaluated exactly in both paths, only rounding in u differs.
constexpr double kPointRelTol = 1e-13;
// eps -> 0 asymptotics: (value - limit)*|log eps| equals 0.5*sum log lambda_hat up to terms of
// size 1/(a*sqrt(lambda)) < 1e-20 and the rounding of value (~1e-15 * 10) times |log eps|
// (<= 691): ~1e-11 in all.
constexpr double kAsymptoticAbsTol = 1e-9;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

// Eigenvalues of a small symmetric matrix (row-major n x n) by cyclic Jacobi rotations
// (Numerical Recipes, section 11.1): enough for the 5 x 5 moment matrix of invariant 1.
std::vector<double> jacobi_eigenvalues(std::vector<double> A, int n) {
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0;
    double diag = 0.0;
    for (int p = 0; p < n; ++p) {
      diag += A[p * n + p] * A[p * n + p];
      for (int q = p + 1; q < n; ++q) off += A[p * n + q] * A[p * n + q];
    }
    if (off <= 1e-34 * diag) break;
    for (int p = 0; p < n; ++p) {
      for (int q = p + 1; q < n; ++q) {
        const double apq = A[p * n + q];
        if (apq == 0.0) continue;
        const double theta = (A[q * n + q] - A[p * n + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1.0 / std::sqrt(t * t + 1.0);
        const double s = t * c;
        for (int k = 0; k < n; ++k) {  // A <- A P
          const double akp = A[k * n + p];
          const double akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {  // A <- P^T A
          const double apk = A[p * n + k];
          const double aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  std::vector<double> eig(n);
  for (int i = 0; i < n; ++i) eig[i] = A[i * n + i];
  return eig;
}

// A spectrum of `size` eigenvalues uniform in scale*[lo, hi]; trace = kept sum * trace_factor
// (the matrix's trace also holds what the zero cutoff removed).
SampleSpectrum random_spectrum(Rng& rng, int size, double scale, double lo = 0.1, double hi = 2.0,
                               double trace_factor = 1.0) {
  SampleSpectrum s;
  double sum = 0.0;
  for (int i = 0; i < size; ++i) {
    s.eigenvalues.push_back(scale * (lo + (hi - lo) * rng.uniform()));
    sum += s.eigenvalues.back();
  }
  s.trace = sum * trace_factor;
  return s;
}

// One evaluation point, described independently of the estimator's internals.
struct DirectPoint {
  Cover cover;
  double a;            // multiplies sqrt(d/t)
  double zeta_d;       // zeta*d
  double abs_log_eps;  // divisor
};

DirectPoint eps_point(Cover cover, double zeta, double eps, int64_t d) {
  return {cover, std::pow(eps, zeta - 1.0), zeta * static_cast<double>(d), -std::log(eps)};
}

DirectPoint ed_point(double n) {
  const double kappa = n / (2.0 * kPi * std::log(n));
  return {Cover::Ellipsoid, std::sqrt(kappa), 0.0, 0.5 * std::log(kappa)};
}

// dhat on the samples idx with t recomputed from them: the docs/math.md section 5 formula, evaluated
// term by term.
double direct_value(const std::vector<SampleSpectrum>& spectra, const std::vector<uint64_t>& idx, int64_t d,
                    const DirectPoint& pt) {
  double t = 0.0;
  for (uint64_t j : idx) t += spectra[j].trace;
  t /= static_cast<double>(idx.size());
  const double u = pt.a * std::sqrt(static_cast<double>(d) / t);
  std::vector<double> s(idx.size(), 0.0);
  for (std::size_t m = 0; m < idx.size(); ++m) {
    for (double lambda : spectra[idx[m]].eigenvalues) s[m] += log_det_term(pt.cover, u, lambda);
  }
  const double max = *std::max_element(s.begin(), s.end());
  double sum = 0.0;
  for (double v : s) sum += std::exp(v - max);
  const double lme = max + std::log(sum) - std::log(static_cast<double>(idx.size()));
  return pt.zeta_d + lme / pt.abs_log_eps;
}

struct BruteForce {
  double value = 0.0;
  double std_error = 0.0;
};

// The bootstrap of docs/math.md section 5 done the slow way: every resample evaluated directly.
// Resamples follow the estimator's documented order: one Rng(seed, Bootstrap, 0), b-major.
BruteForce brute_force(const std::vector<SampleSpectrum>& spectra, int64_t d, const DirectPoint& pt,
                       int64_t num_resamples, uint64_t seed) {
  const std::size_t M = spectra.size();
  std::vector<uint64_t> all(M);
  for (std::size_t j = 0; j < M; ++j) all[j] = j;
  BruteForce out;
  out.value = direct_value(spectra, all, d, pt);
  Rng rng(seed, Stream::Bootstrap, 0);
  std::vector<double> values;
  std::vector<uint64_t> idx(M);
  for (int64_t b = 0; b < num_resamples; ++b) {
    for (std::size_t m = 0; m < M; ++m) idx[m] = rng.below(M);
    values.push_back(direct_value(spectra, idx, d, pt));
  }
  double mean = 0.0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double ss = 0.0;
  for (double v : values) ss += (v - mean) * (v - mean);
  out.std_error = std::sqrt(ss / static_cast<double>(values.size() - 1));
  return out;
}

// max_b x_b - min_b x_b, x_b = 0.5*log(d/t_b): how wide the Chebyshev interval must be.
double bootstrap_x_range(const std::vector<SampleSpectrum>& spectra, int64_t num_resamples, uint64_t seed) {
  const std::size_t M = spectra.size();
  Rng rng(seed, Stream::Bootstrap, 0);
  double lo = INFINITY;
  double hi = -INFINITY;
  for (int64_t b = 0; b < num_resamples; ++b) {
    double t = 0.0;
    for (std::size_t m = 0; m < M; ++m) t += spectra[rng.below(M)].trace;
    const double x = -0.5 * std::log(t / static_cast<double>(M));
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  return hi - lo;
}

void expect_rel_near(double actual, double expected, double rel_tol, const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), rel_tol * std::abs(expected))
      << what << ": actual " << actual << ", expected " << expected;
}

template <class F>
void expect_usage_error(F&& f, const std::string& substring) {
  try {
    f();
    ADD_FAILURE() << "expected UsageError containing '" << substring << "'";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(substring), std::string::npos)
        << "message '" << e.what() << "' lacks '" << substring << "'";
  }
}

std::vector<SampleSpectrum> small_spectra() {
  Rng rng(3, Stream::Data);
  return {random_spectrum(rng, 4, 1.0), random_spectrum(rng, 3, 2.0)};
}

// ---------------------------------------------------------------------------------------------
// Invariant 1: constant Fisher (linear-Gaussian model without bias)
// ---------------------------------------------------------------------------------------------

TEST(EstimatorTest, ConstantFisherMatchesClosedForm_Invariant1) {
  // S = (1/N) X^T X from N = 40 random inputs in d = 5 dimensions; F = S/s_out^2.
  constexpr int kD = 5;
  constexpr int kN = 40;
  const double s_out = 0.3;
  Rng rng(11, Stream::Data);
  std::vector<double> x(kN * kD);
  for (double& v : x) v = rng.normal();
  std::vector<double> S(kD * kD, 0.0);
  for (int i = 0; i < kN; ++i) {
    for (int p = 0; p < kD; ++p) {
      for (int q = 0; q < kD; ++q) S[p * kD + q] += x[i * kD + p] * x[i * kD + q] / kN;
    }
  }
  const std::vector<double> s = jacobi_eigenvalues(S, kD);
  double sum_s = 0.0;
  double trace_S = 0.0;
  for (int i = 0; i < kD; ++i) {
    sum_s += s[i];
    trace_S += S[i * kD + i];
  }
  ASSERT_NEAR(sum_s, trace_S, 1e-13 * trace_S) << "Jacobi eigenvalues must preserve the trace";

  // The estimator sees the spectrum and trace of F itself, unnormalised.
  SampleSpectrum fisher;
  for (double si : s) fisher.eigenvalues.push_back(si / (s_out * s_out));
  fisher.trace = trace_S / (s_out * s_out);

  std::vector<double> eps_grid = default_eps_grid();
  eps_grid.push_back(1e-12);
  for (int M : {1, 4, 13}) {
    for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
      EstimatorOptions opts;
      opts.eps = eps_grid;
      opts.zetas = {0.0, 0.25, 0.7};
      opts.cover = cover;
      opts.bootstrap = 50;
      const TwoScaleResult r = estimate_two_scale(std::vector<SampleSpectrum>(M, fisher), kD, opts);
      for (const Curve& c : r.curves) {
        for (std::size_t e = 0; e < c.eps.size(); ++e) {
          const double eps = c.eps[e];
          const double a = std::pow(eps, c.zeta - 1.0);
          double sum = 0.0;
          for (double si : s) {
            const double lambda_hat = kD * si / sum_s;
            sum += cover == Cover::Box ? std::log1p(a * std::sqrt(lambda_hat)) : 0.5 * std::log1p(a * a * lambda_hat);
          }
          const double expected = c.zeta * kD + sum / std::abs(std::log(eps));
          expect_rel_near(c.value[e], expected, kClosedFormRelTol,
                          "M=" + std::to_string(M) + " zeta=" + std::to_string(c.zeta) + " eps=" + std::to_string(eps));
          EXPECT_LE(c.std_error[e], kIdenticalStdErrorTol);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Invariant 3: ellipsoid at zeta = 0 is the Abbas et al. effective dimension
// ---------------------------------------------------------------------------------------------

TEST(EstimatorTest, EllipsoidAtZetaZeroIsAbbasED_Invariant3) {
  constexpr int64_t kD = 40;
  Rng rng(5, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 9; ++j) {
    const int size = 1 + static_cast<int>(rng.below(30));
    const double scale = std::pow(10.0, 2.0 * rng.uniform() - 1.0);
    spectra.push_back(random_spectrum(rng, size, scale, 0.01, 3.0, 1.0 + rng.uniform()));
  }
  double t = 0.0;
  for (const auto& s : spectra) t += s.trace;
  t /= static_cast<double>(spectra.size());

  const std::vector<double> ns = {100.0, 1e3, 1e5, 1e7};
  EstimatorOptions ed_opts;
  ed_opts.ed_n = ns;
  ed_opts.cover = Cover::Box;  // the ED must use the ellipsoid term whatever the curves' cover
  ed_opts.bootstrap = 100;
  const TwoScaleResult r = estimate_two_scale(spectra, kD, ed_opts);
  ASSERT_EQ(r.ed.size(), ns.size());

  for (std::size_t k = 0; k < ns.size(); ++k) {
    const double n = ns[k];
    const double kappa = n / (2.0 * kPi * std::log(n));
    // Abbas et al.: ED = 2 log( mean_j det(I + kappa*Fhat_j)^(1/2) ) / log kappa, the
    // determinant as a product over the eigenvalues of Fhat_j = (d/t) F_j.
    long double mean_det = 0.0L;
    for (const auto& s : spectra) {
      long double det_sqrt = 1.0L;
      for (double lambda : s.eigenvalues) {
        det_sqrt *= std::sqrt(1.0L + static_cast<long double>(kappa) * kD / t * lambda);
      }
      mean_det += det_sqrt / static_cast<long double>(spectra.size());
    }
    const double ed = static_cast<double>(2.0L * std::log(mean_det) / std::log(kappa));

    EXPECT_EQ(r.ed[k].zeta, 0.0);
    EXPECT_EQ(r.ed[k].n, n);
    expect_rel_near(r.ed[k].eps, 1.0 / std::sqrt(kappa), 1e-15, "ED eps");
    expect_rel_near(r.ed[k].value, ed, kAbbasRelTol, "ED(" + std::to_string(n) + ")");

    // The same number as a point of an ellipsoid curve at zeta = 0, eps = kappa^(-1/2).
    EstimatorOptions curve_opts;
    curve_opts.eps = {std::pow(kappa, -0.5)};
    curve_opts.cover = Cover::Ellipsoid;
    curve_opts.bootstrap = 100;
    const TwoScaleResult rc = estimate_two_scale(spectra, kD, curve_opts);
    expect_rel_near(rc.curves[0].value[0], ed, kAbbasRelTol, "ellipsoid curve at kappa^-1/2");
    // Same resamples, same term, a = sqrt(kappa) vs (kappa^(-1/2))^(-1): equal standard errors.
    expect_rel_near(rc.curves[0].std_error[0], r.ed[k].std_error, kBootstrapRelTol, "ED std_error vs curve std_error");
  }
}

// ---------------------------------------------------------------------------------------------
// eps -> 0: d_zeta -> zeta*d + (1-zeta)*rank (docs/math.md section 4)
// ---------------------------------------------------------------------------------------------

TEST(EstimatorTest, EpsToZeroApproachesRankLimit_ConstantSpectrum) {
  // With a = eps^(zeta-1), log(1 + a*sqrt(l)) = (1-zeta)|log eps| + 0.5 log l + log1p(1/(a sqrt l))
  // (and the same leading terms for the ellipsoid), so for one constant spectrum of rank r
  //   (value - limit) * |log eps| = 0.5 * sum_i log lambda_hat_i + O(r / (a*sqrt(lambda_min))).
  constexpr int64_t kD = 12;
  Rng rng(21, Stream::Data);
  const SampleSpectrum s = random_spectrum(rng, 7, 3.0, 0.1, 10.0, 1.3);
  double half_log_sum = 0.0;
  for (double l : s.eigenvalues) half_log_sum += 0.5 * std::log(kD * l / s.trace);
  const std::vector<double> eps = {1e-100, 1e-200, 1e-300};
  for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
    EstimatorOptions opts;
    opts.eps = eps;
    opts.zetas = {0.0, 0.5, 0.8};
    opts.cover = cover;
    opts.bootstrap = 10;
    const TwoScaleResult r = estimate_two_scale({s, s, s}, kD, opts);
    for (const Curve& c : r.curves) {
      const double limit = c.zeta * kD + (1.0 - c.zeta) * 7.0;
      for (std::size_t e = 0; e < eps.size(); ++e) {
        EXPECT_NEAR((c.value[e] - limit) * -std::log(eps[e]), half_log_sum, kAsymptoticAbsTol)
            << "zeta=" << c.zeta << " eps=" << eps[e];
      }
    }
  }
}

TEST(EstimatorTest, EpsToZeroApproachesRankLimit_MixedRanks) {
  // Samples of rank 3, 5, 4, 5. With L = |log eps| and c_j = 0.5*sum_i log lambda_hat_ij,
  // S_j = (1-zeta) r_j L + c_j + delta_j, delta_j = O(r_j / (a*sqrt(lambda_min))) < 1e-20 for the
  // eps used here. Hence value - limit = N(L)/L with limit = zeta*d + (1-zeta)*r_max and
  //   N(L) = log mean_j exp(c_j + delta_j - (1-zeta)(r_max - r_j) L),
  // which decreases in L and lies in [c_top - log M, c_all] (up to delta), c_top the largest c_j
  // of a top-rank sample. So if c_top > log M, value - limit is positive, strictly decreasing as
  // eps -> 0, and at most c_all/L.
  constexpr int64_t kD = 50;
  const std::vector<int> ranks = {3, 5, 4, 5};
  Rng rng(8, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int r : ranks) spectra.push_back(random_spectrum(rng, r, 1.0, 0.5, 2.0));
  double t = 0.0;
  for (const auto& s : spectra) t += s.trace;
  t /= static_cast<double>(spectra.size());
  double c_top = -INFINITY;  // max_j c_j over the top-rank samples
  double c_all = -INFINITY;  // max_j c_j over all samples
  for (std::size_t j = 0; j < spectra.size(); ++j) {
    double c = 0.0;
    for (double l : spectra[j].eigenvalues) c += 0.5 * std::log(kD * l / t);
    c_all = std::max(c_all, c);
    if (ranks[j] == 5) c_top = std::max(c_top, c);
  }
  const double log_m = std::log(static_cast<double>(spectra.size()));
  // Precondition for the monotone check: N_inf >= c_top - log M > 0 (lambda_hat ~ d/rank ~ 10).
  ASSERT_GT(c_top - log_m, 0.0);

  const std::vector<double> eps = {1e-50, 1e-100, 1e-200, 1e-300};
  for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
    EstimatorOptions opts;
    opts.eps = eps;
    opts.zetas = {0.0, 0.5};
    opts.cover = cover;
    opts.bootstrap = 10;
    const TwoScaleResult r = estimate_two_scale(spectra, kD, opts);
    for (const Curve& c : r.curves) {
      const double limit = c.zeta * kD + (1.0 - c.zeta) * 5.0;
      double previous = INFINITY;
      for (std::size_t e = 0; e < eps.size(); ++e) {
        const double gap = c.value[e] - limit;
        const double L = -std::log(eps[e]);
        EXPECT_GT(gap, 0.0) << "zeta=" << c.zeta << " eps=" << eps[e];
        EXPECT_LT(gap, previous) << "zeta=" << c.zeta << " eps=" << eps[e];
        // + 1e-12: rounding of value (~30 * 1e-16) and delta (< 1e-20).
        EXPECT_LE(gap, c_all / L + 1e-12) << "zeta=" << c.zeta << " eps=" << eps[e];
        previous = gap;
      }
      // At eps = 1e-300 the limit is reached to within c_all/691 (c_all ~ 6): under 1%.
      EXPECT_LT(std::abs(c.value.back() - limit), 0.01 * limit);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bootstrap
// ---------------------------------------------------------------------------------------------

// Compares every curve, ED and at_n point with the brute-force bootstrap.
void check_against_brute_force(const std::vector<SampleSpectrum>& spectra, int64_t d, const EstimatorOptions& opts) {
  const TwoScaleResult r = estimate_two_scale(spectra, d, opts);
  for (const Curve& c : r.curves) {
    for (std::size_t e = 0; e < c.eps.size(); ++e) {
      const BruteForce bf =
          brute_force(spectra, d, eps_point(opts.cover, c.zeta, c.eps[e], d), opts.bootstrap, opts.seed);
      const std::string what = "zeta=" + std::to_string(c.zeta) + " eps=" + std::to_string(c.eps[e]);
      expect_rel_near(c.value[e], bf.value, kPointRelTol, what + " value");
      expect_rel_near(c.std_error[e], bf.std_error, kBootstrapRelTol, what + " std_error");
    }
  }
  for (const PointEstimate& p : r.ed) {
    const BruteForce bf = brute_force(spectra, d, ed_point(p.n), opts.bootstrap, opts.seed);
    expect_rel_near(p.value, bf.value, kPointRelTol, "ED value");
    expect_rel_near(p.std_error, bf.std_error, kBootstrapRelTol, "ED std_error");
  }
  for (const PointEstimate& p : r.at_n) {
    const BruteForce bf = brute_force(spectra, d, eps_point(opts.cover, p.zeta, p.eps, d), opts.bootstrap, opts.seed);
    expect_rel_near(p.value, bf.value, kPointRelTol, "at_n value");
    expect_rel_near(p.std_error, bf.std_error, kBootstrapRelTol, "at_n std_error");
  }
}

TEST(EstimatorTest, ChebyshevBootstrapMatchesBruteForce) {
  // Traces spread over six decades, so t_b moves a lot between resamples.
  constexpr int64_t kD = 80;
  Rng rng(13, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 20; ++j) {
    const int size = 1 + static_cast<int>(rng.below(60));
    spectra.push_back(
        random_spectrum(rng, size, std::pow(10.0, 6.0 * rng.uniform() - 3.0), 1e-4, 5.0, 1.0 + 0.5 * rng.uniform()));
  }
  EstimatorOptions opts;
  opts.zetas = {0.0, 0.5};
  opts.ed_n = {1e4};
  opts.at_n = {1e3, 1e6};
  opts.bootstrap = 200;
  opts.seed = 99;
  // Precondition: the interval of x_b is wide (a real test of the interpolation).
  ASSERT_GT(bootstrap_x_range(spectra, opts.bootstrap, opts.seed), 1.0);
  for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
    opts.cover = cover;
    check_against_brute_force(spectra, kD, opts);
  }
}

TEST(EstimatorTest, ChebyshevBootstrapMatchesBruteForce_ExtremeTraces) {
  // Five samples whose traces span sixteen decades: x_b spans several units, so the interval
  // is split into panels.
  constexpr int64_t kD = 30;
  Rng rng(17, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 5; ++j) {
    spectra.push_back(
        random_spectrum(rng, 3 + static_cast<int>(rng.below(20)), std::pow(10.0, -8.0 + 4.0 * j), 0.01, 1.0));
  }
  EstimatorOptions opts;
  opts.zetas = {0.0, 0.3};
  opts.eps = {1e-1, 1e-3, 1e-6, 1e-9};
  opts.ed_n = {1e5};
  opts.bootstrap = 300;
  opts.seed = 5;
  ASSERT_GT(bootstrap_x_range(spectra, opts.bootstrap, opts.seed), 6.0);
  for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
    opts.cover = cover;
    check_against_brute_force(spectra, kD, opts);
  }
}

TEST(EstimatorTest, ZeroFisherSamplesAreHandled) {
  // A parameter sample where every ReLU is dead has F = 0: trace 0, no eigenvalues. With M = 2
  // a quarter of the resamples draw it twice, so t_b = 0 there; its S_j vanish at every u.
  Rng rng(4, Stream::Data);
  SampleSpectrum zero;
  zero.num_cut = 6;
  const std::vector<SampleSpectrum> spectra = {zero, random_spectrum(rng, 6, 1.0)};
  EstimatorOptions opts;
  opts.zetas = {0.0, 0.4};
  opts.eps = {0.1, 1e-4};
  opts.bootstrap = 64;
  for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
    opts.cover = cover;
    check_against_brute_force(spectra, 6, opts);
  }
  const TwoScaleResult r = estimate_two_scale(spectra, 6, opts);
  EXPECT_EQ(r.num_cut, 6);
  EXPECT_GT(r.curves[0].std_error[0], 0.0);
}

TEST(EstimatorTest, SingleSampleHasZeroStdError) {
  Rng rng(6, Stream::Data);
  const std::vector<SampleSpectrum> spectra = {random_spectrum(rng, 9, 2.0)};
  EstimatorOptions opts;
  opts.ed_n = {1e4};
  opts.at_n = {1e4};
  const TwoScaleResult r = estimate_two_scale(spectra, 9, opts);
  for (double se : r.curves[0].std_error) EXPECT_EQ(se, 0.0);
  EXPECT_EQ(r.ed[0].std_error, 0.0);
  EXPECT_EQ(r.at_n[0].std_error, 0.0);
}

TEST(EstimatorTest, BootstrapIsDeterministicPerSeed) {
  Rng rng(7, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 15; ++j) {
    spectra.push_back(random_spectrum(rng, 10, std::pow(10.0, rng.uniform())));
  }
  EstimatorOptions opts;
  opts.zetas = {0.0, 0.5};
  opts.ed_n = {1e5};
  opts.bootstrap = 300;
  opts.seed = 123;
  const TwoScaleResult a = estimate_two_scale(spectra, 20, opts);
  const TwoScaleResult b = estimate_two_scale(spectra, 20, opts);
  opts.seed = 124;
  const TwoScaleResult c = estimate_two_scale(spectra, 20, opts);
  for (std::size_t z = 0; z < a.curves.size(); ++z) {
    EXPECT_EQ(a.curves[z].value, b.curves[z].value);          // bit-identical
    EXPECT_EQ(a.curves[z].std_error, b.curves[z].std_error);  // bit-identical
    EXPECT_EQ(a.curves[z].value, c.curves[z].value);          // the seed only moves the bootstrap
    for (std::size_t e = 0; e < a.curves[z].eps.size(); ++e) {
      EXPECT_NE(a.curves[z].std_error[e], c.curves[z].std_error[e]);
    }
  }
  EXPECT_EQ(a.ed[0].std_error, b.ed[0].std_error);
  EXPECT_NE(a.ed[0].std_error, c.ed[0].std_error);
}

TEST(EstimatorTest, StdErrorShrinksLikeInverseSqrtM) {
  // i.i.d. samples with light tails (8 eigenvalues, scale within one decade): the estimate is a
  // smooth function of two sample means (of traces and of exp S_j), so its standard deviation
  // goes like 1/sqrt(M). 16x the samples should give 4x smaller errors; the window [2, 8]
  // absorbs the bootstrap's own noise (~1/sqrt(2B)) and the scatter of one data set at M = 25.
  auto make = [](int M) {
    Rng rng(31, Stream::Data);
    std::vector<SampleSpectrum> spectra;
    for (int j = 0; j < M; ++j) {
      spectra.push_back(random_spectrum(rng, 8, std::pow(10.0, rng.uniform() - 0.5), 0.5, 1.5));
    }
    return spectra;
  };
  EstimatorOptions opts;
  opts.eps = {0.01};
  opts.zetas = {0.0, 0.5};
  for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
    opts.cover = cover;
    const TwoScaleResult small = estimate_two_scale(make(25), 20, opts);
    const TwoScaleResult large = estimate_two_scale(make(400), 20, opts);
    for (std::size_t z = 0; z < opts.zetas.size(); ++z) {
      const double ratio = small.curves[z].std_error[0] / large.curves[z].std_error[0];
      EXPECT_GT(ratio, 2.0) << "zeta=" << opts.zetas[z];
      EXPECT_LT(ratio, 8.0) << "zeta=" << opts.zetas[z];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Numerics
// ---------------------------------------------------------------------------------------------

TEST(EstimatorTest, LogSumExpStaysFiniteForHugeSums) {
  // 10^4 eigenvalues near 1 at eps = 1e-6: S_j ~ 1.4e5, far beyond exp's range (~709).
  constexpr int64_t kD = 10000;
  Rng rng(9, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 4; ++j) spectra.push_back(random_spectrum(rng, 10000, 1.0, 0.5, 1.5));
  EstimatorOptions opts;
  opts.eps = {1e-6};
  opts.bootstrap = 20;
  const TwoScaleResult r = estimate_two_scale(spectra, kD, opts);
  const double value = r.curves[0].value[0];
  ASSERT_TRUE(std::isfinite(value));
  ASSERT_TRUE(std::isfinite(r.curves[0].std_error[0]));
  // LSE_j S_j - log M lies in [max S - log M, max S].
  double t = 0.0;
  for (const auto& s : spectra) t += s.trace;
  t /= static_cast<double>(spectra.size());
  double max_s = 0.0;
  for (const auto& s : spectra) {
    double sum = 0.0;
    for (double l : s.eigenvalues) sum += std::log1p(1e6 * std::sqrt(kD * l / t));
    max_s = std::max(max_s, sum);
  }
  ASSERT_GT(max_s, 1e5);
  const double L = -std::log(1e-6);
  EXPECT_GE(value * L, (max_s - std::log(4.0)) * (1.0 - 1e-12));
  EXPECT_LE(value * L, max_s * (1.0 + 1e-12));
}

TEST(EstimatorTest, LogDetTerm) {
  EXPECT_DOUBLE_EQ(log_det_term(Cover::Box, 2.0, 4.0), std::log(5.0));
  EXPECT_DOUBLE_EQ(log_det_term(Cover::Ellipsoid, 2.0, 4.0), 0.5 * std::log(17.0));
  EXPECT_EQ(log_det_term(Cover::Box, 3.0, 0.0), 0.0);
  EXPECT_EQ(log_det_term(Cover::Ellipsoid, 3.0, 0.0), 0.0);
  // u^2*lambda overflows a double; the term does not.
  const double big = log_det_term(Cover::Ellipsoid, 1e200, 1e10);
  EXPECT_NEAR(big, std::log(1e205), 1e-12 * std::log(1e205));
  const double huge = log_det_term(Cover::Box, 1e300, 1e100);
  EXPECT_NEAR(huge, std::log(1e300) + 0.5 * std::log(1e100), 1e-12 * 1000);
}

TEST(EstimatorTest, KappaAndEpsAtN) {
  EXPECT_DOUBLE_EQ(abbas_kappa(1e5), 1e5 / (2.0 * kPi * std::log(1e5)));
  // eps_zeta(n) is where a^2 = eps^(2(zeta-1)) equals kappa(n).
  for (double n : {100.0, 6e4, 1e9}) {
    for (double zeta : {0.0, 0.3, 0.9}) {
      const double eps = eps_at_n(n, zeta);
      expect_rel_near(std::pow(eps, 2.0 * (zeta - 1.0)), abbas_kappa(n), 1e-12, "a^2 = kappa");
    }
  }
}

TEST(EstimatorTest, ResultFieldsAndOrder) {
  Rng rng(12, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 6; ++j) {
    spectra.push_back(random_spectrum(rng, 5, 1.0 + j));
    spectra.back().num_cut = j;
  }
  EstimatorOptions opts;  // eps empty: default grid
  opts.zetas = {0.6, 0.0};
  opts.ed_n = {1e3, 1e6};
  opts.at_n = {500.0, 1e4, 1e8};
  opts.cover = Cover::Ellipsoid;
  opts.bootstrap = 40;
  const TwoScaleResult r = estimate_two_scale(spectra, 25, opts);
  double t = 0.0;
  for (const auto& s : spectra) t += s.trace;
  EXPECT_EQ(r.num_params, 25);
  EXPECT_EQ(r.num_param_samples, 6);
  EXPECT_DOUBLE_EQ(r.mean_trace, t / 6.0);
  EXPECT_EQ(r.num_cut, 0 + 1 + 2 + 3 + 4 + 5);
  EXPECT_EQ(r.cover, Cover::Ellipsoid);
  ASSERT_EQ(r.curves.size(), 2u);
  EXPECT_EQ(r.curves[0].zeta, 0.6);
  EXPECT_EQ(r.curves[1].zeta, 0.0);
  for (const Curve& c : r.curves) {
    EXPECT_EQ(c.eps, default_eps_grid());
    EXPECT_EQ(c.value.size(), c.eps.size());
    EXPECT_EQ(c.std_error.size(), c.eps.size());
  }
  ASSERT_EQ(r.ed.size(), 2u);
  EXPECT_EQ(r.ed[1].n, 1e6);
  ASSERT_EQ(r.at_n.size(), 6u);  // zeta-major, then n
  for (std::size_t z = 0; z < 2; ++z) {
    for (std::size_t k = 0; k < 3; ++k) {
      const PointEstimate& p = r.at_n[z * 3 + k];
      EXPECT_EQ(p.zeta, opts.zetas[z]);
      EXPECT_EQ(p.n, opts.at_n[k]);
      EXPECT_EQ(p.eps, eps_at_n(opts.at_n[k], opts.zetas[z]));
      // d_zeta(eps_zeta(n)) is the curve formula at that eps.
      EstimatorOptions one = opts;
      one.eps = {p.eps};
      one.zetas = {p.zeta};
      one.ed_n.clear();
      one.at_n.clear();
      const TwoScaleResult rc = estimate_two_scale(spectra, 25, one);
      EXPECT_EQ(p.value, rc.curves[0].value[0]);
      EXPECT_EQ(p.std_error, rc.curves[0].std_error[0]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Grids and lists
// ---------------------------------------------------------------------------------------------

TEST(EpsGridTest, DefaultGrid) {
  const std::vector<double> g = default_eps_grid();
  ASSERT_EQ(g.size(), 25u);
  EXPECT_EQ(g.front(), 1e-6);
  EXPECT_EQ(g.back(), 1e-1);
  for (std::size_t i = 1; i < g.size(); ++i) {
    EXPECT_LT(g[i - 1], g[i]);
    // log-spaced: 10^(-6 + 5i/24)
    expect_rel_near(g[i], std::pow(10.0, -6.0 + 5.0 * static_cast<double>(i) / 24.0), 1e-14,
                    "grid point " + std::to_string(i));
  }
}

TEST(EpsGridTest, ParsesRangeAndList) {
  EXPECT_EQ(parse_eps_grid("1e-6:1e-1:25", "--eps"), default_eps_grid());
  const std::vector<double> r = parse_eps_grid("0.001:0.1:3", "--eps");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0], 0.001);
  expect_rel_near(r[1], 0.01, 1e-15, "middle of 0.001:0.1:3");
  EXPECT_EQ(r[2], 0.1);
  EXPECT_EQ(parse_eps_grid("0.01:0.01:1", "--eps"), std::vector<double>{0.01});
  EXPECT_EQ(parse_eps_grid("0.1,0.01", "--eps"), (std::vector<double>{0.1, 0.01}));
  EXPECT_EQ(parse_eps_grid(" 0.1 , 1e-3 ", "--eps"), (std::vector<double>{0.1, 1e-3}));
  EXPECT_EQ(parse_eps_grid("0.5", "--eps"), std::vector<double>{0.5});
}

TEST(EpsGridTest, RejectsBadGrids) {
  auto parse = [](const std::string& text) { return [text] { parse_eps_grid(text, "--eps"); }; };
  expect_usage_error(parse("1.5"), "--eps 1.5: each value must be in (0,1)");
  expect_usage_error(parse("0.1,0"), "--eps 0.1,0: each value must be in (0,1)");
  expect_usage_error(parse("0.1,abc"), "--eps 0.1,abc: 'abc' is not a number");
  expect_usage_error(parse("0.1,"), "'' is not a number");
  expect_usage_error(parse(""), "'' is not a number");
  expect_usage_error(parse("0.1,nan"), "'nan' is not a number");
  expect_usage_error(parse("1e-6:1e-1:x"), "--eps 1e-6:1e-1:x: COUNT must be an integer >= 2");
  expect_usage_error(parse("1e-6:1e-1:2.5"), "COUNT must be an integer >= 2");
  expect_usage_error(parse("1e-6:1e-1:0"), "COUNT must be an integer >= 2");
  expect_usage_error(parse("1e-6:1e-1:1"), "COUNT must be an integer >= 2 unless LO == HI");
  expect_usage_error(parse("1e-6:1e-1:100000000000"), "COUNT must be at most");
  expect_usage_error(parse("0.1:0.01:5"), "LO must not exceed HI");
  expect_usage_error(parse("0:0.1:5"), "LO and HI must be in (0,1)");
  expect_usage_error(parse("0.01:1:5"), "LO and HI must be in (0,1)");
  expect_usage_error(parse("a:0.1:5"), "LO 'a' is not a number");
  expect_usage_error(parse("0.01:b:5"), "HI 'b' is not a number");
  expect_usage_error(parse("1e-6:1e-1"), "expected LO:HI:COUNT");
  expect_usage_error(parse("1e-6:1e-1:5:7"), "expected LO:HI:COUNT");
  // |log eps| -> 0 as eps -> 1 amplifies the estimate without bound; the grid length is capped.
  expect_usage_error(parse("0.999999999999"), "each value must be <= 0.99 (|log eps| -> 0 as eps -> 1");
  expect_usage_error(parse("0.5:0.995:3"), "HI must be <= 0.99");
  expect_usage_error(parse("1e-6:1e-1:10001"), "COUNT must be at most 10000, got 10001");
  EXPECT_EQ(parse_eps_grid("0.99", "--eps"), std::vector<double>{0.99});
  EXPECT_EQ(parse_eps_grid("1e-6:1e-1:10000", "--eps").size(), 10000u);
}

TEST(DoubleListTest, ParsesAndRejects) {
  EXPECT_EQ(parse_double_list("0,0.5,0.75", "--zeta"), (std::vector<double>{0.0, 0.5, 0.75}));
  EXPECT_EQ(parse_double_list("-2.5e3", "--x"), std::vector<double>{-2500.0});
  auto parse = [](const std::string& text) { return [text] { parse_double_list(text, "--zeta"); }; };
  expect_usage_error(parse("abc"), "--zeta abc: 'abc' is not a number");
  expect_usage_error(parse("0.5x"), "'0.5x' is not a number");
  expect_usage_error(parse("0.5,,1"), "'' is not a number");
  expect_usage_error(parse("inf"), "'inf' is not a number");
  expect_usage_error(parse("1e400"), "'1e400' is not a number");
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

TEST(EstimatorValidationTest, RejectsBadOptionsAndSpectra) {
  const std::vector<SampleSpectrum> good = small_spectra();
  auto run = [](std::vector<SampleSpectrum> spectra, int64_t d, EstimatorOptions opts) {
    return [=] { estimate_two_scale(spectra, d, opts); };
  };
  const EstimatorOptions base;
  EstimatorOptions o;

  expect_usage_error(run(good, 0, base), "num_params must satisfy num_params >= 1, got 0");
  expect_usage_error(run({}, 5, base), "spectra must be non-empty");

  o = base;
  o.eps = {0.1, 1.5};
  expect_usage_error(run(good, 5, o), "eps must satisfy 0 < eps < 1, got 1.5");
  o.eps = {0.0};
  expect_usage_error(run(good, 5, o), "eps must satisfy 0 < eps < 1, got 0");
  o.eps = {NAN};
  expect_usage_error(run(good, 5, o), "eps must satisfy 0 < eps < 1, got nan");
  o.eps = {1e-320};  // a = eps^-1 overflows
  expect_usage_error(run(good, 5, o), "too small");

  o = base;
  o.zetas = {0.0, 1.0};
  expect_usage_error(run(good, 5, o), "zeta must satisfy 0 <= zeta < 1, got 1");
  o.zetas = {-0.1};
  expect_usage_error(run(good, 5, o), "zeta must satisfy 0 <= zeta < 1, got -0.1");

  o = base;
  o.bootstrap = 1;
  expect_usage_error(run(good, 5, o), "bootstrap must satisfy bootstrap >= 2, got 1");

  o = base;
  o.ed_n = {1e4, 10.0};
  expect_usage_error(run(good, 5, o), "kappa(n) = n/(2*pi*log n) must exceed 1, got kappa(10) = 0.6912");
  o.ed_n = {1.0};
  expect_usage_error(run(good, 5, o), "must exceed 1, got kappa(1) = inf");
  o.ed_n = {-3.0};
  expect_usage_error(run(good, 5, o), "must exceed 1, got kappa(-3)");

  o = base;
  o.at_n = {10.0};
  expect_usage_error(run(good, 5, o), "must satisfy 0 < eps < 1, got eps = ");
  expect_usage_error(run(good, 5, o), "for n = 10, zeta = 0");

  std::vector<SampleSpectrum> bad = good;
  bad[1].eigenvalues[2] = -1.0;
  expect_usage_error(run(bad, 5, base), "spectra[1].eigenvalues[2] must be finite and >= 0, got -1");
  bad = good;
  bad[0].eigenvalues[0] = INFINITY;
  expect_usage_error(run(bad, 5, base), "spectra[0].eigenvalues[0] must be finite and >= 0, got inf");
  bad = good;
  bad[0].trace = NAN;
  expect_usage_error(run(bad, 5, base), "spectra[0].trace must be finite and >= 0, got nan");
  bad = good;
  bad[1].trace = -2.0;
  expect_usage_error(run(bad, 5, base), "spectra[1].trace must be finite and >= 0, got -2");
  bad = good;
  bad[1].trace = 0.0;
  expect_usage_error(run(bad, 5, base), "spectra[1].trace must be > 0 when a positive eigenvalue is kept");
  std::vector<SampleSpectrum> zero(3);  // every Fisher zero: t = 0
  expect_usage_error(run(zero, 5, base), "mean trace t = (1/M) sum_j trace_j must be finite and > 0, got 0");
  bad = good;
  bad[0].trace = 1e308;
  bad[1].trace = 1e308;
  // The mean of two 1e308 traces is finite (summed with a fallback), so this is accepted.
  EXPECT_NO_THROW(estimate_two_scale(bad, 5, base));
}

// ---------------------------------------------------------------------------------------------
// Speed (reported, not asserted tightly)
// ---------------------------------------------------------------------------------------------

// Large spectra are summed by the binned Taylor expansion (estimator.cpp): it must agree with
// term-by-term summation to round-off, for both covers, every kind of point and the bootstrap,
// on spectra spanning 24 decades (including eigenvalues far on both sides of every knee).
TEST(EstimatorTest, BinnedTaylorSumsEqualExactSums) {
  Rng rng(4, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 12; ++j) {
    SampleSpectrum s;
    for (int i = 0; i < 3000 + 100 * j; ++i) s.eigenvalues.push_back(std::pow(10.0, -16.0 + 24.0 * rng.uniform()));
    for (double e : s.eigenvalues) s.trace += e;
    s.trace *= 1.0 + 0.1 * rng.uniform();  // cut eigenvalues count in the trace, not in the sums
    spectra.push_back(std::move(s));
  }
  for (Cover cover : {Cover::Box, Cover::Ellipsoid})
    for (Aggregate aggregate : {Aggregate::LogMeanExp, Aggregate::Mean}) {
      EstimatorOptions opts;
      opts.zetas = {0.0, 0.3, 0.9};
      opts.eps = parse_eps_grid("1e-12:0.5:9", "--eps");
      opts.cover = cover;
      opts.aggregate = aggregate;
      opts.ed_n = {1e3, 1e7};
      opts.at_n = {1e4};
      opts.bootstrap = 50;
      opts.exact_limit = 1 << 30;
      const auto exact = estimate_two_scale(spectra, 1000000, opts);
      opts.exact_limit = 0;
      const auto binned = estimate_two_scale(spectra, 1000000, opts);
      for (size_t z = 0; z < exact.curves.size(); ++z)
        for (size_t e = 0; e < exact.curves[z].value.size(); ++e) {
          const double zeta_d = exact.curves[z].zeta * 1e6;
          // Compare the log-det part (value - zeta*d): zeta*d alone would hide errors.
          const double a = exact.curves[z].value[e] - zeta_d, b = binned.curves[z].value[e] - zeta_d;
          EXPECT_NEAR(b, a, 1e-13 * std::abs(a)) << "zeta " << exact.curves[z].zeta << " e " << e;
          EXPECT_NEAR(binned.curves[z].std_error[e], exact.curves[z].std_error[e],
                      1e-9 * exact.curves[z].std_error[e] + 1e-12);
        }
      for (size_t i = 0; i < exact.ed.size(); ++i)
        EXPECT_NEAR(binned.ed[i].value, exact.ed[i].value, 1e-13 * exact.ed[i].value);
      for (size_t i = 0; i < exact.at_n.size(); ++i)
        EXPECT_NEAR(binned.at_n[i].value, exact.at_n[i].value, 1e-13 * exact.at_n[i].value);
    }
}

TEST(EstimatorTest, TwoScaleFunctionEqualsTheEstimatesValues) {
  // The function used by searches over eps must give the curve values bit for bit, for both
  // aggregates, both covers, and binned (large) samples.
  Rng rng(9, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 7; ++j) spectra.push_back(random_spectrum(rng, j == 3 ? 5000 : 40 + j, 1.0 + j, 0.01, 3.0, 1.2));
  for (Cover cover : {Cover::Box, Cover::Ellipsoid})
    for (Aggregate aggregate : {Aggregate::LogMeanExp, Aggregate::Mean}) {
      EstimatorOptions opts;
      opts.zetas = {0.0, 0.6};
      opts.eps = parse_eps_grid("1e-9:0.5:7", "--eps");
      opts.cover = cover;
      opts.aggregate = aggregate;
      opts.bootstrap = 2;
      const auto r = estimate_two_scale(spectra, 900, opts);
      const TwoScaleFunction f(spectra, 900, cover, aggregate);
      for (const auto& c : r.curves)
        for (size_t e = 0; e < c.eps.size(); ++e) EXPECT_EQ(f(c.zeta, c.eps[e]), c.value[e]);
    }
  const TwoScaleFunction f(spectra, 900);
  EXPECT_THROW(f(1.0, 0.1), UsageError);
  EXPECT_THROW(f(0.0, 1.5), UsageError);
  EXPECT_THROW(TwoScaleFunction({}, 900), UsageError);
}

TEST(EstimatorSpeedTest, DefaultSizes) {
  // M = 100 samples of 1000 eigenvalues, 25 eps x 2 zetas, B = 1000: direct evaluation would
  // need ~5e9 log1p calls; the interpolated bootstrap should take well under 3 s in Release.
  Rng rng(1, Stream::Data);
  std::vector<SampleSpectrum> spectra;
  for (int j = 0; j < 100; ++j) {
    SampleSpectrum s;
    const double scale = std::pow(10.0, rng.uniform() - 0.5);
    double sum = 0.0;
    for (int i = 1; i <= 1000; ++i) {
      s.eigenvalues.push_back(scale * (0.5 + rng.uniform()) / (static_cast<double>(i) * i));
      sum += s.eigenvalues.back();
    }
    s.trace = sum;
    spectra.push_back(std::move(s));
  }
  EstimatorOptions opts;
  opts.zetas = {0.0, 0.5};
  opts.bootstrap = 1000;
  const auto start = std::chrono::steady_clock::now();
  const TwoScaleResult r = estimate_two_scale(spectra, 5000, opts);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ speed    ] M=100, 1000 eigenvalues, 25 eps x 2 zetas, B=1000: %.3f s\n", seconds);
  RecordProperty("seconds", std::to_string(seconds));
  EXPECT_TRUE(std::isfinite(r.curves[1].std_error.back()));
  EXPECT_LT(seconds, 20.0);
}

}  // namespace
}  // namespace twosed

TEST(EstimatorTest, MergeSpectraConcatenatesAndAddsTraces) {
  const auto m = twosed::merge_spectra({{{1.0, 2.0}, 5.0, 1}, {{}, 0.5, 3}, {{0.25}, 0.25, 0}});
  EXPECT_EQ(m.eigenvalues, (std::vector<double>{1.0, 2.0, 0.25}));
  EXPECT_EQ(m.trace, 5.75);
  EXPECT_EQ(m.num_cut, 4);
  EXPECT_TRUE(twosed::merge_spectra({}).eigenvalues.empty());
}
