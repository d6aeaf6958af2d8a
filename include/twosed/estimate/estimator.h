// From Fisher spectra to dimensions: the 2sED estimator, the Abbas et al. effective dimension,
// and their bootstrap standard errors (docs/math.md sections 4 and 5).
//
// This part is pure arithmetic on eigenvalues: it never sees a network. The caller provides,
// for each parameter sample theta^(j), the non-zero eigenvalues of the *unnormalised* Fisher
// F(theta^(j)) and its trace; the estimator normalises (Fhat = (d/t) F, t the mean trace),
// evaluates
//     dhat_zeta(eps) = zeta*d + [LSE_j(sum_i log1p(a*sqrt(lambda_i^(j)))) - log M] / |log eps|,
//     a = eps^(zeta-1),
// (ellipsoid cover: 0.5*log1p(a^2*lambda) per eigenvalue), and bootstraps over the M samples,
// recomputing t on each resample.
//
// Example:
//   EstimatorOptions opts;
//   opts.zetas = {0.0, 0.5};
//   TwoScaleResult r = estimate_two_scale(spectra, /*num_params=*/d, opts);
//   r.curves[1].value[3]  // d_0.5 at opts.eps[3]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace twosed {

/// The spectrum of one parameter sample's (unnormalised) Fisher matrix F(theta^(j)).
struct SampleSpectrum {
  std::vector<double> eigenvalues;  ///< eigenvalues kept after the zero cutoff (all > 0)
  double trace = 0.0;               ///< tr F(theta^(j)) of the matrix itself, not of the kept eigenvalues
  int64_t num_cut = 0;              ///< eigenvalues removed by the zero cutoff (incl. negative round-off)
};

/// The spectrum of a block-diagonal Fisher from its blocks' spectra: all kept eigenvalues, in
/// block order, with tr F = the sum of the block traces (docs/math.md section 3) and the cuts added.
SampleSpectrum merge_spectra(const std::vector<SampleSpectrum>& blocks);

/// How the image of a meso-scale cube is covered (docs/math.md section 4).
enum class Cover {
  Box,        ///< prod_i (1 + a*sqrt(lambda_i)): the default
  Ellipsoid,  ///< prod_i sqrt(1 + a^2*lambda_i) = det(I + a^2 Fhat)^(1/2)
};

/// How the M per-sample log-determinant sums S_j are averaged (docs/math.md sections 4 and 5).
enum class Aggregate {
  LogMeanExp,  ///< log((1/M) sum_j exp S_j): the 2sED (and, for M_sigma, the chain 2sED)
  Mean,        ///< (1/M) sum_j S_j: the lower 2sED of a Markov chain model (<= LogMeanExp by Jensen)
};

/// Options of estimate_two_scale.
struct EstimatorOptions {
  std::vector<double> eps;            ///< covering radii, each in (0, 0.99], at most 10000; empty: default_eps_grid()
  std::vector<double> zetas = {0.0};  ///< scale mixes, each in [0,1)
  Cover cover = Cover::Box;
  Aggregate aggregate = Aggregate::LogMeanExp;
  std::vector<double> ed_n;  ///< n values for the Abbas ED (gamma = 1); each needs kappa(n) > 1
  std::vector<double> at_n;  ///< n values at which to evaluate d_zeta(eps_zeta(n)) for every zeta
  int64_t bootstrap = 1000;  ///< bootstrap resamples B (>= 2); spec asks B >= 500
  uint64_t seed = 0;         ///< seeds the bootstrap (Stream::Bootstrap)
  /// Samples with more kept eigenvalues than this are summed by a binned Taylor expansion in
  /// log sqrt(lambda) (remainder < 2e-15 per eigenvalue; cost independent of their count), the
  /// others term by term. Large Markov models have ~1e5 eigenvalues per sample.
  int64_t exact_limit = 4096;
};

/// One 2sED curve over the eps grid at a fixed zeta.
struct Curve {
  double zeta = 0.0;
  std::vector<double> eps;
  std::vector<double> value;      ///< dhat_zeta(eps)
  std::vector<double> std_error;  ///< bootstrap standard error of value
};

/// A single estimate at one (zeta, eps), e.g. the ED at one n or d_zeta at eps_zeta(n).
struct PointEstimate {
  double zeta = 0.0;
  double n = 0.0;
  double eps = 0.0;
  double value = 0.0;
  double std_error = 0.0;
};

/// Everything estimate_two_scale returns.
struct TwoScaleResult {
  int64_t num_params = 0;         ///< d
  int64_t num_param_samples = 0;  ///< M
  double mean_trace = 0.0;        ///< t = (1/M) sum_j tr F(theta^(j))
  int64_t num_cut = 0;            ///< sum over samples of SampleSpectrum::num_cut
  Cover cover = Cover::Box;
  std::vector<Curve> curves;        ///< one per zeta, in the order of EstimatorOptions::zetas
  std::vector<PointEstimate> ed;    ///< Abbas ED, one per ed_n (zeta = 0, eps = kappa^(-1/2))
  std::vector<PointEstimate> at_n;  ///< d_zeta(eps_zeta(n)), zeta-major then n
};

/// The spec's default grid: 25 values log-spaced over [1e-6, 1e-1], both ends included.
std::vector<double> default_eps_grid();

/// Parses "LO:HI:COUNT" (log-spaced, both ends included, COUNT >= 1; COUNT = 1 gives {LO}
/// only if LO == HI, COUNT <= 10000) or a comma-separated list "0.1,0.01". Every value must be in
/// (0, 0.99]: the estimate divides by |log eps|, which -> 0 as eps -> 1.
/// Throws UsageError naming `option` (e.g. "--eps") and the offending value.
std::vector<double> parse_eps_grid(const std::string& text, const std::string& option);

/// Parses a comma-separated list of doubles; throws UsageError naming `option`.
std::vector<double> parse_double_list(const std::string& text, const std::string& option);

/// Abbas et al.'s kappa(n) = gamma*n / (2*pi*log n), gamma = 1.
double abbas_kappa(double n);

/// eps_zeta(n) = (2*pi*log n / n)^(1/(2*(1-zeta))): the eps at which a^2 equals kappa(n).
double eps_at_n(double n, double zeta);

/// The per-eigenvalue log term: log1p(u*sqrt(lambda)) (Box) or 0.5*log1p(u^2*lambda)
/// (Ellipsoid). lambda >= 0, u > 0.
double log_det_term(Cover cover, double u, double lambda);

/// Checks every option that estimate_two_scale checks before seeing spectra (eps, zeta,
/// bootstrap, ed_n, at_n), so that a long run fails before it starts. Throws UsageError;
/// OptionError naming the field for a bad eps, zetas or bootstrap ("EstimatorOptions.bootstrap").
void validate_estimator_options(const EstimatorOptions& opts);

/// Computes all curves and point estimates. Validates: d >= 1, spectra non-empty (M >= 1),
/// every eps in (0,1), zeta in [0,1), positive mean trace, bootstrap >= 2; throws UsageError.
TwoScaleResult estimate_two_scale(const std::vector<SampleSpectrum>& spectra, int64_t num_params,
                                  const EstimatorOptions& opts);

/// One group's share of a Mean-aggregated estimate (the layer breakdown of the lower 2sED):
///     (1/M) sum_j sum_{i in group} T(a*sqrt(d/t), lambda_i^(j)) / |log eps|,
/// without the zeta*d term, so that the groups' shares add up to value - zeta*d. Each
/// `group_spectra[j]` holds the group's eigenvalues of sample j but the trace of sample j's
/// *whole* Fisher, so that t (and every bootstrap t_b) is the whole model's. Curves, ED and
/// at_n as in estimate_two_scale, with bootstrap standard errors; opts.aggregate is ignored.
TwoScaleResult estimate_group_share(const std::vector<SampleSpectrum>& group_spectra, int64_t num_params,
                                    const EstimatorOptions& opts);

/// d_zeta(eps) of fixed spectra at any (zeta, eps), exactly as estimate_two_scale computes its
/// values but without standard errors: for searches over eps (the generalisation estimate).
class TwoScaleFunction {
 public:
  /// Validates as estimate_two_scale (d >= 1, M >= 1, eigenvalues > 0, t > 0); throws UsageError.
  TwoScaleFunction(const std::vector<SampleSpectrum>& spectra, int64_t num_params, Cover cover = Cover::Box,
                   Aggregate aggregate = Aggregate::LogMeanExp, int64_t exact_limit = 4096);
  ~TwoScaleFunction();
  TwoScaleFunction(TwoScaleFunction&&) noexcept;
  /// dhat_zeta(eps); throws UsageError for zeta outside [0,1) or eps outside (0,1).
  double operator()(double zeta, double eps) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace twosed
