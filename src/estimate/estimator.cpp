// The 2sED estimator, the Abbas et al. effective dimension and their bootstrap standard
// errors (docs/math.md sections 4 and 5).
//
// Every estimate has the form
//     value = zeta*d + [LSE_j S_j(u) - log M] / |log eps|,   S_j(u) = sum_i T(u, lambda_i^(j)),
// with u = a*sqrt(d/t), a = eps^(zeta-1), t the mean trace and T the per-eigenvalue log term of
// the cover. Point estimates evaluate this exactly. The bootstrap recomputes t on each resample
// (docs/math.md section 5), so every resample b has its own u_b = a*exp(x_b), x_b = 0.5*log(d/t_b).
// Evaluating every S_j at every x_b directly costs B*M*eigenvalues log1p calls per point (~1e10
// for the default sizes); instead each S_j, an analytic function of x, is interpolated in x by
// Chebyshev polynomials on the small interval the x_b span (see make_grid below).
#include "twosed/estimate/estimator.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "twosed/error.h"
#include "twosed/random.h"

namespace twosed {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The default grid of docs/math.md section 5.
constexpr double kDefaultEpsLo = 1e-6;
constexpr double kDefaultEpsHi = 1e-1;
constexpr int64_t kDefaultEpsCount = 25;

// An upper bound on the eps grid's length (COUNT in "LO:HI:COUNT" or a list): every point costs
// a pass over all M x rank eigenvalues and B bootstrap resamples, so 10^6 points of a stored run
// take hours without progress; 10^4 is far finer than any curve needs.
constexpr int64_t kMaxGridCount = 10000;

// The largest eps accepted. The estimate divides [LSE_j S_j - log M] by |log eps|, which -> 0 as
// eps -> 1: at eps = 0.99 that amplifies the sum (and its Monte Carlo and rounding error) 100
// times, and beyond it the value is dominated by that amplification (eps = 1 - 1e-12 gives
// 1e13 for d = 27). 2sED is a small-eps quantity (the default grid ends at 0.1).
constexpr double kMaxEps = 0.99;

std::string eps_too_large(double eps) {
  return fmt::format("must be <= {} (|log eps| -> 0 as eps -> 1, and the estimate divides by it), got {:.17g}", kMaxEps,
                     eps);
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

// The whole token (surrounding blanks aside) must be one finite number. std::from_chars is
// locale-independent, unlike strtod, so "0.5" means the same everywhere.
bool parse_finite_double(std::string_view token, double& out) {
  token = trim(token);
  if (token.empty()) return false;
  const char* last = token.data() + token.size();
  const auto [ptr, ec] = std::from_chars(token.data(), last, out);
  return ec == std::errc() && ptr == last && std::isfinite(out);
}

bool parse_int64(std::string_view token, int64_t& out) {
  token = trim(token);
  if (token.empty()) return false;
  const char* last = token.data() + token.size();
  const auto [ptr, ec] = std::from_chars(token.data(), last, out);
  return ec == std::errc() && ptr == last;
}

// 10^(log10(lo) + i*(log10(hi)-log10(lo))/(count-1)), both ends set exactly (docs/math.md section 5).
std::vector<double> log_spaced(double lo, double hi, int64_t count) {
  if (count == 1) return {lo};
  const double l0 = std::log10(lo);
  const double l1 = std::log10(hi);
  std::vector<double> grid(static_cast<std::size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    grid[static_cast<std::size_t>(i)] =
        std::pow(10.0, l0 + static_cast<double>(i) * (l1 - l0) / static_cast<double>(count - 1));
  }
  grid.front() = lo;
  grid.back() = hi;
  return grid;
}

// ---------------------------------------------------------------------------------------------
// Per-eigenvalue terms
// ---------------------------------------------------------------------------------------------

// T(u, lambda) from w = u*sqrt(lambda). For huge a (eps -> 0, e.g. eps = 1e-300) w or w^2
// overflows; then log(1 + w) = log w and 0.5*log(1 + w^2) = log w to within 1/w (< 1e-150),
// and log w = log u + log sqrt(lambda) is formed from logs so that it stays finite even when u
// itself overflowed.
template <Cover kCover>
inline double term(double u, double log_u, double sqrt_lambda) {
  const double w = u * sqrt_lambda;
  if constexpr (kCover == Cover::Box) {
    if (w <= std::numeric_limits<double>::max()) return std::log1p(w);
  } else {
    if (w < 1e150) return 0.5 * std::log1p(w * w);
    if (w <= std::numeric_limits<double>::max()) return std::log(w);
  }
  if (sqrt_lambda == 0.0) return 0.0;  // u overflowed (w = inf*0 = NaN): a zero eigenvalue adds 0
  return log_u + std::log(sqrt_lambda);
}

// The spectra flattened: sqrt(lambda) of all samples back to back (computed once, not once per
// point and node), sample j in [offset[j], offset[j+1]).
// ---------------------------------------------------------------------------------------------
// Large spectra: binned Taylor expansion in log sqrt(lambda)
// ---------------------------------------------------------------------------------------------
//
// A Markov model of 1e7 parameters has ~3e5 eigenvalues per sample; summing log1p over all of
// them at every point and Chebyshev node costs ~1e10 calls for M = 100. Both terms are smooth
// functions of y = log u + log sqrt(lambda): T(y) = g(y) (box) or 0.5*g(2y) (ellipsoid), with
// g(y) = log(1 + e^y) the softplus, whose derivatives (the sigmoid's) are bounded. So each
// sample's eigenvalues are binned on a fixed grid of width h in log sqrt(lambda), and per bin
// only the moments m_k = sum_i delta_i^k / k! (delta_i = offset from the bin centre) are kept:
//     S(u) = sum_bins sum_{k<=P} T^(k)(log u + centre) * m_k,
// exact but for the Taylor remainder, at most max|T^(P+1)| (h/2)^(P+1) / (P+1)! per eigenvalue:
// with h = 0.5 and P = 16, below 2e-15 for both covers (the ellipsoid's 2^k factor included).
// The cost per point no longer depends on the number of eigenvalues, only on the bins (~100).
constexpr int kTaylorOrder = 16;
constexpr int kTaylorTerms = kTaylorOrder + 1;
constexpr double kBinWidth = 0.5;

// Coefficients of the sigmoid's derivatives as polynomials in s = sigmoid(z):
// sigma^(n)(z) = sum_i c[n][i] s^i, from sigma' = s(1-s) and d/dz s^i = i s^i (1 - s).
struct SigmoidPolynomials {
  double c[kTaylorTerms][kTaylorTerms + 1] = {};
  SigmoidPolynomials() {
    c[0][1] = 1.0;
    for (int n = 0; n + 1 < kTaylorTerms; ++n)
      for (int i = 1; i <= n + 1; ++i) {
        c[n + 1][i] += i * c[n][i];
        c[n + 1][i + 1] -= i * c[n][i];
      }
  }
};

// d^k/dy^k softplus(y), k = 0..P. The sigmoid's derivatives are evaluated at z = -|y|, where
// s <= 1/2 and the polynomials keep relative accuracy, then mapped back by symmetry:
// sigma(y) = 1 - sigma(-y), sigma^(n)(y) = (-1)^(n+1) sigma^(n)(-y) for n >= 1.
void softplus_derivatives(double y, double* out) {
  static const SigmoidPolynomials poly;
  const double z = -std::abs(y);
  const double ez = std::exp(z);
  const double s = ez / (1.0 + ez);
  out[0] = std::max(y, 0.0) + std::log1p(ez);
  out[1] = y <= 0 ? s : 1.0 - s;  // sigma(y) = g'(y)
  for (int n = 1; n + 1 < kTaylorTerms; ++n) {
    double v = 0.0;
    for (int i = n + 1; i >= 1; --i) v = v * s + poly.c[n][i];
    v *= s;
    out[n + 1] = (y > 0 && n % 2 == 0) ? -v : v;  // n even: odd function, sign flips for y > 0
  }
}

// T^(k)(y), k = 0..P, of the cover's term as a function of y = log u + log sqrt(lambda).
void term_derivatives(Cover cover, double y, double* out) {
  if (cover == Cover::Box) {
    softplus_derivatives(y, out);
    return;
  }
  softplus_derivatives(2.0 * y, out);
  double scale = 0.5;
  for (int k = 0; k < kTaylorTerms; ++k, scale *= 2.0) out[k] *= scale;
}

// The spectra flattened: sqrt(lambda) of all samples back to back (computed once, not once per
// point and node), sample j in [offset[j], offset[j+1]). Samples with more than
// EstimatorOptions::exact_limit eigenvalues are also binned (bins of sample j in
// [bin_offset[j], bin_offset[j+1]); bin index b has centre (b + 1/2) h).
struct FlatSpectra {
  std::vector<double> sqrt_lambda;
  std::vector<std::size_t> offset;
  std::vector<double> trace;
  std::vector<bool> binned;
  std::vector<int64_t> bin;     // bin index of each stored bin
  std::vector<double> moments;  // kTaylorTerms per stored bin
  std::vector<std::size_t> bin_offset;
  int64_t bin_lo = 0, bin_hi = -1;  // range of bin indices in use
};

void bin_sample(FlatSpectra& flat, std::size_t j) {
  const std::size_t begin = flat.offset[j], end = flat.offset[j + 1];
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  std::vector<int64_t> index(end - begin);
  for (std::size_t i = begin; i < end; ++i) {
    const double b = std::floor(std::log(flat.sqrt_lambda[i]) / kBinWidth);
    index[i - begin] = static_cast<int64_t>(b);
    lo = std::min(lo, index[i - begin]);
    hi = std::max(hi, index[i - begin]);
  }
  std::vector<double> dense(static_cast<std::size_t>(hi - lo + 1) * kTaylorTerms, 0.0);
  for (std::size_t i = begin; i < end; ++i) {
    const int64_t b = index[i - begin];
    const double delta = std::log(flat.sqrt_lambda[i]) - (static_cast<double>(b) + 0.5) * kBinWidth;
    double* m = &dense[static_cast<std::size_t>(b - lo) * kTaylorTerms];
    double p = 1.0;
    for (int k = 0; k < kTaylorTerms; ++k) {
      m[k] += p;
      p *= delta / static_cast<double>(k + 1);
    }
  }
  for (int64_t b = lo; b <= hi; ++b) {
    const double* m = &dense[static_cast<std::size_t>(b - lo) * kTaylorTerms];
    if (m[0] == 0.0) continue;  // empty bin
    flat.bin.push_back(b);
    flat.moments.insert(flat.moments.end(), m, m + kTaylorTerms);
  }
  if (flat.bin_hi < flat.bin_lo) {
    flat.bin_lo = lo;
    flat.bin_hi = hi;
  } else {
    flat.bin_lo = std::min(flat.bin_lo, lo);
    flat.bin_hi = std::max(flat.bin_hi, hi);
  }
}

template <Cover kCover>
void sample_sums_impl(const FlatSpectra& flat, double u, double log_u, double* out) {
  const std::size_t num_samples = flat.trace.size();
  for (std::size_t j = 0; j < num_samples; ++j) {
    if (flat.binned[j]) continue;
    double sum = 0.0;
    for (std::size_t i = flat.offset[j]; i < flat.offset[j + 1]; ++i) {
      sum += term<kCover>(u, log_u, flat.sqrt_lambda[i]);
    }
    out[j] = sum;
  }
}

// S_j(u) for every sample j.
void sample_sums(const FlatSpectra& flat, Cover cover, double u, double log_u, double* out) {
  if (cover == Cover::Box) {
    sample_sums_impl<Cover::Box>(flat, u, log_u, out);
  } else {
    sample_sums_impl<Cover::Ellipsoid>(flat, u, log_u, out);
  }
  if (flat.bin.empty()) return;
  // Binned samples: the term's derivatives at every bin centre in use, shared by all samples.
  const std::size_t range = static_cast<std::size_t>(flat.bin_hi - flat.bin_lo + 1);
  std::vector<double> deriv(range * kTaylorTerms);
  for (std::size_t r = 0; r < range; ++r) {
    const double centre = (static_cast<double>(flat.bin_lo + static_cast<int64_t>(r)) + 0.5) * kBinWidth;
    term_derivatives(cover, log_u + centre, &deriv[r * kTaylorTerms]);
  }
  for (std::size_t j = 0; j < flat.trace.size(); ++j) {
    if (!flat.binned[j]) continue;
    double sum = 0.0;
    for (std::size_t b = flat.bin_offset[j]; b < flat.bin_offset[j + 1]; ++b) {
      const double* d = &deriv[static_cast<std::size_t>(flat.bin[b] - flat.bin_lo) * kTaylorTerms];
      const double* m = &flat.moments[b * kTaylorTerms];
      for (int k = kTaylorOrder; k >= 0; --k) sum += d[k] * m[k];
    }
    out[j] = sum;
  }
}

// LSE_m s[idx[m]] - log n with max-subtraction (docs/math.md section 5): S_j reaches 1e5 for large
// models at small eps, far past where exp overflows. Every s is finite and >= 0 here.
double log_mean_exp(const double* s, const uint32_t* idx, std::size_t n) {
  double max = s[idx[0]];
  for (std::size_t m = 1; m < n; ++m) max = std::max(max, s[idx[m]]);
  double sum = 0.0;
  for (std::size_t m = 0; m < n; ++m) sum += std::exp(s[idx[m]] - max);
  return max + std::log(sum) - std::log(static_cast<double>(n));
}

// (1/n) sum_m s[idx[m]]: the Mean aggregate (lower 2sED).
double plain_mean(const double* s, const uint32_t* idx, std::size_t n) {
  double sum = 0.0;
  for (std::size_t m = 0; m < n; ++m) sum += s[idx[m]];
  return sum / static_cast<double>(n);
}

double aggregate_of(Aggregate aggregate, const double* s, const uint32_t* idx, std::size_t n) {
  return aggregate == Aggregate::Mean ? plain_mean(s, idx, n) : log_mean_exp(s, idx, n);
}

// The mean trace of a (re)sample. Summing then dividing is the plain definition of t (spec
// section 3); dividing first is only needed when the sum of finite traces overflows.
double mean_trace_of(const std::vector<double>& trace, const uint32_t* idx, std::size_t n) {
  double sum = 0.0;
  for (std::size_t m = 0; m < n; ++m) sum += trace[idx[m]];
  if (std::isfinite(sum)) return sum / static_cast<double>(n);
  sum = 0.0;
  for (std::size_t m = 0; m < n; ++m) sum += trace[idx[m]] / static_cast<double>(n);
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Chebyshev interpolation in x = 0.5*log(d/t)
// ---------------------------------------------------------------------------------------------
//
// With u = a*e^x, S_j(x) = sum_i T(a*e^x, lambda_i) is analytic in x except where a term's
// argument of log hits zero: 1 + a*e^x*sqrt(lambda) = 0 needs Im x = pi (box), 1 + a^2*e^(2x)*
// lambda = 0 needs Im x = pi/2 (ellipsoid). Interpolating in a strip of half the singular
// distance keeps |Re w| >= 0 there, so |log(1+w)| <= ~1.4|w| for small w and <= log|w| + pi/2
// for large w: the function on the Bernstein ellipse is within a small factor of its values on
// the real interval, and the Chebyshev error is a small multiple of rho^(-degree) *relative* to
// S_j (Trefethen, Approximation Theory and Approximation Practice, Thm 8.2).
constexpr double kBoxStripHalfWidth = kPi / 2;
constexpr double kEllipsoidStripHalfWidth = kPi / 4;
// rho^(-degree) target; the constants of the bound cost a digit or so, so the bound is ~1e-12.
// In practice the error stays at round-off (~2e-15 relative, measured on single-eigenvalue
// spectra whose knee a*e^x*sqrt(lambda) = 1 sweeps the interval, widths 0.05 to 10, both
// covers): the strip used is only half the distance to the singularities.
constexpr double kChebyshevTail = 1e-13;
constexpr int kMinNodes = 3;
constexpr int kMaxNodes = 64;  // wider intervals are split into panels instead
// Below this width all x_b are one point up to round-off: evaluate there exactly.
constexpr double kSinglePointWidth = 1e-13;

// Nodes on one panel of the given width: the degree n with rho^(-n) <= kChebyshevTail, rho the
// Bernstein-ellipse parameter of the strip after mapping the panel onto [-1, 1].
int nodes_for_width(double width, double strip_half_width) {
  const double beta = 2.0 * strip_half_width / width;  // semi-minor axis on [-1, 1]
  const double rho = beta + std::sqrt(beta * beta + 1.0);
  const double degree = std::ceil(-std::log(kChebyshevTail) / std::log(rho));
  if (!(degree < kMaxNodes)) return kMaxNodes + 1;  // too wide for one panel
  return std::max(kMinNodes, static_cast<int>(degree) + 1);
}

// Where S_j is tabulated, and for each resample b the weights that turn the table into S_j(x_b).
struct ChebyshevGrid {
  int num_nodes = 1;               // per panel, K
  std::vector<double> nodes;       // num_panels * K values of x
  std::vector<std::size_t> panel;  // panel of resample b
  std::vector<double> weight;      // B * K: S_j(x_b) = sum_k weight[b*K+k] * S_j(node_k)
};

// Chebyshev points of the second kind on each of P equal panels of [x_min, x_max], and the
// normalised barycentric weights of every x_b (the second barycentric formula, forward-stable
// for Chebyshev points; Berrut & Trefethen, SIAM Rev. 46 (2004)).
ChebyshevGrid make_grid(const std::vector<double>& x, double strip_half_width) {
  const auto [min_it, max_it] = std::minmax_element(x.begin(), x.end());
  const double x_min = *min_it;
  const double x_max = *max_it;
  const double width = x_max - x_min;
  ChebyshevGrid grid;
  if (width < kSinglePointWidth) {
    grid.nodes = {0.5 * (x_min + x_max)};
    grid.panel.assign(x.size(), 0);
    grid.weight.assign(x.size(), 1.0);
    return grid;
  }
  // The fewest panels whose node count stays <= kMaxNodes. The cost is panels x nodes; for
  // wide panels the node count grows about linearly with the width (rho ~ 1 + 2*strip/width),
  // for narrow ones more slowly, so splitting further never saves evaluations.
  std::size_t num_panels = 1;
  int num_nodes = nodes_for_width(width, strip_half_width);
  while (num_nodes > kMaxNodes) {
    ++num_panels;
    num_nodes = nodes_for_width(width / static_cast<double>(num_panels), strip_half_width);
  }
  const int degree = num_nodes - 1;
  const double panel_width = width / static_cast<double>(num_panels);
  grid.num_nodes = num_nodes;
  grid.nodes.resize(num_panels * static_cast<std::size_t>(num_nodes));
  for (std::size_t p = 0; p < num_panels; ++p) {
    const double lo = x_min + static_cast<double>(p) * panel_width;
    const double hi = (p + 1 == num_panels) ? x_max : lo + panel_width;
    const double mid = 0.5 * (lo + hi);
    const double half = 0.5 * (hi - lo);
    for (int k = 0; k < num_nodes; ++k) {
      // sin form of cos(k*pi/n): exactly symmetric about the panel's centre.
      const double c = std::sin(kPi * static_cast<double>(degree - 2 * k) / (2.0 * degree));
      grid.nodes[p * static_cast<std::size_t>(num_nodes) + static_cast<std::size_t>(k)] = mid + half * c;
    }
  }
  const std::size_t K = static_cast<std::size_t>(num_nodes);
  grid.panel.resize(x.size());
  grid.weight.assign(x.size() * K, 0.0);
  for (std::size_t b = 0; b < x.size(); ++b) {
    const double rel = std::floor((x[b] - x_min) / panel_width);
    const std::size_t p = std::min(num_panels - 1, static_cast<std::size_t>(std::max(0.0, rel)));
    grid.panel[b] = p;
    const double* node = &grid.nodes[p * K];
    double* w = &grid.weight[b * K];
    std::size_t exact = K;
    for (std::size_t k = 0; k < K; ++k) {
      if (x[b] == node[k]) exact = k;
    }
    if (exact < K) {
      w[exact] = 1.0;
      continue;
    }
    double total = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
      const double base = (k == 0 || k + 1 == K) ? 0.5 : 1.0;
      w[k] = ((k % 2 == 0) ? base : -base) / (x[b] - node[k]);
      total += w[k];
    }
    for (std::size_t k = 0; k < K; ++k) w[k] /= total;
  }
  return grid;
}

// ---------------------------------------------------------------------------------------------
// Estimates
// ---------------------------------------------------------------------------------------------

// One place where dhat is evaluated: value = zeta_d + [LSE_j S_j(u) - log M] / abs_log_eps.
struct EvalPoint {
  Cover cover = Cover::Box;
  Aggregate aggregate = Aggregate::LogMeanExp;
  double a = 1.0;            // eps^(zeta-1), or sqrt(kappa) for the Abbas ED
  double log_a = 0.0;        // log a, for overflow-safe terms
  double zeta_d = 0.0;       // zeta*d
  double abs_log_eps = 1.0;  // |log eps|, or 0.5*log(kappa)
};

// Everything the estimates share: the spectra, t, and the bootstrap resamples.
struct Problem {
  FlatSpectra flat;
  std::size_t num_samples = 0;
  double log_d = 0.0;
  double mean_trace = 0.0;
  double scale = 1.0;      // sqrt(d/t)
  double log_scale = 0.0;  // 0.5*log(d/t)
  std::size_t num_resamples = 0;
  std::vector<uint32_t> all;       // 0..M-1: the original sample as an index list
  std::vector<uint32_t> resample;  // B*M sample indices, resample b in [b*M, (b+1)*M)
  std::vector<double> resample_x;  // x_b = 0.5*log(d/t_b)
};

double exact_value(const Problem& pr, const EvalPoint& pt) {
  std::vector<double> s(pr.num_samples);
  sample_sums(pr.flat, pt.cover, pt.a * pr.scale, pt.log_a + pr.log_scale, s.data());
  return pt.zeta_d + aggregate_of(pt.aggregate, s.data(), pr.all.data(), pr.num_samples) / pt.abs_log_eps;
}

// Sample standard deviation (divide by B-1). Deviations are taken from the first value, so
// that B equal values give exactly 0 (e.g. M = 1, or M identical spectra).
double sample_std(const std::vector<double>& v) {
  const double shift = v[0];
  double mean = 0.0;
  for (double x : v) mean += x - shift;
  mean /= static_cast<double>(v.size());
  double ss = 0.0;
  for (double x : v) ss += (x - shift - mean) * (x - shift - mean);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

// The bootstrap standard error of one point: S_j tabulated exactly at the grid's nodes, then
// interpolated to every x_b; the resamples themselves are shared by all points.
double bootstrap_std_error(const Problem& pr, const ChebyshevGrid& grid, const EvalPoint& pt) {
  const std::size_t M = pr.num_samples;
  const std::size_t K = static_cast<std::size_t>(grid.num_nodes);
  std::vector<double> table(grid.nodes.size() * M);  // [node][j]
  for (std::size_t n = 0; n < grid.nodes.size(); ++n) {
    const double x = grid.nodes[n];
    sample_sums(pr.flat, pt.cover, pt.a * std::exp(x), pt.log_a + x, &table[n * M]);
  }
  std::vector<double> s(M);
  std::vector<double> values(pr.num_resamples);
  for (std::size_t b = 0; b < pr.num_resamples; ++b) {
    const double* w = &grid.weight[b * K];
    const double* rows = &table[grid.panel[b] * K * M];
    std::fill(s.begin(), s.end(), 0.0);
    for (std::size_t k = 0; k < K; ++k) {
      const double wk = w[k];
      const double* row = rows + k * M;
      for (std::size_t j = 0; j < M; ++j) s[j] += wk * row[j];
    }
    values[b] = pt.zeta_d + aggregate_of(pt.aggregate, s.data(), &pr.resample[b * M], M) / pt.abs_log_eps;
  }
  return sample_std(values);
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

// The n above which kappa(n) = n/(2*pi*log n) exceeds 1: the larger root of n = 2*pi*log n,
// by fixed-point iteration (a contraction there, factor 2*pi/n ~ 0.34).
double min_n_for_kappa() {
  double n = 20.0;
  for (int i = 0; i < 100; ++i) n = 2.0 * kPi * std::log(n);
  return n;
}

EvalPoint make_eps_point(Cover cover, double zeta, double eps, double d, const char* field) {
  EvalPoint pt;
  pt.cover = cover;
  pt.a = std::pow(eps, zeta - 1.0);
  pt.log_a = (zeta - 1.0) * std::log(eps);
  pt.zeta_d = zeta * d;
  pt.abs_log_eps = -std::log(eps);
  if (!std::isfinite(pt.a)) {
    throw UsageError(
        fmt::format("{} = {} is too small: a = eps^(zeta-1) overflows a double at zeta = {}", field, eps, zeta));
  }
  return pt;
}

void check_eps(double eps, const char* field) {
  if (!(eps > 0.0 && eps < 1.0)) {
    throw UsageError(fmt::format("{} must satisfy 0 < eps < 1, got {}", field, eps));
  }
}

FlatSpectra flatten_and_check(const std::vector<SampleSpectrum>& spectra, int64_t exact_limit) {
  FlatSpectra flat;
  std::size_t total = 0;
  for (const auto& s : spectra) total += s.eigenvalues.size();
  flat.sqrt_lambda.reserve(total);
  flat.offset.reserve(spectra.size() + 1);
  flat.trace.reserve(spectra.size());
  flat.offset.push_back(0);
  for (std::size_t j = 0; j < spectra.size(); ++j) {
    const SampleSpectrum& s = spectra[j];
    for (std::size_t i = 0; i < s.eigenvalues.size(); ++i) {
      const double lambda = s.eigenvalues[i];
      if (!(std::isfinite(lambda) && lambda >= 0.0)) {
        throw UsageError(fmt::format("spectra[{}].eigenvalues[{}] must be finite and >= 0, got {}", j, i, lambda));
      }
      flat.sqrt_lambda.push_back(std::sqrt(lambda));
    }
    // A Fisher matrix is positive semi-definite: its trace is >= 0, and > 0 as soon as it has a
    // positive eigenvalue. Bootstrap resamples then have t_b >= 0, and t_b = 0 only when every
    // drawn sample is the zero matrix (whose terms vanish for every u).
    if (!(std::isfinite(s.trace) && s.trace >= 0.0)) {
      throw UsageError(fmt::format("spectra[{}].trace must be finite and >= 0, got {}", j, s.trace));
    }
    const bool has_positive = std::any_of(s.eigenvalues.begin(), s.eigenvalues.end(), [](double l) { return l > 0.0; });
    if (has_positive && !(s.trace > 0.0)) {
      throw UsageError(
          fmt::format("spectra[{}].trace must be > 0 when a positive eigenvalue is kept, got {}", j, s.trace));
    }
    flat.trace.push_back(s.trace);
    flat.offset.push_back(flat.sqrt_lambda.size());
  }
  flat.bin_offset.push_back(0);
  for (std::size_t j = 0; j < spectra.size(); ++j) {
    const bool bin = static_cast<int64_t>(spectra[j].eigenvalues.size()) > exact_limit;
    flat.binned.push_back(bin);
    if (bin) bin_sample(flat, j);
    flat.bin_offset.push_back(flat.bin.size());
  }
  return flat;
}

// Every place where dhat is evaluated, in result order (curves, ED, at_n), after checking the
// options (field, rule, value). Shared by estimate_two_scale and validate_estimator_options.
struct Points {
  std::vector<double> eps_grid;
  std::vector<EvalPoint> points;
  std::vector<double> ed_eps, at_eps;
};

// `share`: estimate_group_share's points (Mean aggregate, no zeta*d term).
Points make_points(const EstimatorOptions& opts, double d, bool share = false) {
  Points out;
  auto& points = out.points;
  auto& ed_eps = out.ed_eps;
  auto& at_eps = out.at_eps;
  if (opts.bootstrap > 1'000'000) {
    throw OptionError("EstimatorOptions.bootstrap",
                      fmt::format("must satisfy bootstrap <= 1000000, got {}", opts.bootstrap));
  }
  if (opts.bootstrap < 2) {
    throw OptionError("EstimatorOptions.bootstrap", fmt::format("must satisfy bootstrap >= 2, got {}", opts.bootstrap));
  }
  out.eps_grid = opts.eps.empty() ? default_eps_grid() : opts.eps;
  const auto& eps_grid = out.eps_grid;
  for (double eps : eps_grid) {
    if (!(eps > 0.0 && eps < 1.0))
      throw OptionError("EstimatorOptions.eps", fmt::format("must satisfy 0 < eps < 1, got {}", eps));
    if (eps > kMaxEps) throw OptionError("EstimatorOptions.eps", eps_too_large(eps));
  }
  if (static_cast<int64_t>(eps_grid.size()) > kMaxGridCount)
    throw OptionError("EstimatorOptions.eps",
                      fmt::format("must hold at most {} values, got {}", kMaxGridCount, eps_grid.size()));
  for (double zeta : opts.zetas) {
    if (!(zeta >= 0.0 && zeta < 1.0)) {
      throw OptionError("EstimatorOptions.zetas", fmt::format("each zeta must satisfy 0 <= zeta < 1, got {}", zeta));
    }
  }
  for (double zeta : opts.zetas) {
    for (double eps : eps_grid) {
      points.push_back(make_eps_point(opts.cover, zeta, eps, d, "EstimatorOptions.eps"));
    }
  }
  for (double n : opts.ed_n) {
    const double kappa = abbas_kappa(n);
    if (!(std::isfinite(kappa) && kappa > 1.0)) {
      throw UsageError(
          fmt::format("EstimatorOptions.ed_n: kappa(n) = n/(2*pi*log n) must exceed 1, got kappa({}) = {:.6g}"
                      " (it does for every n above about {:.4g})",
                      n, kappa, min_n_for_kappa()));
    }
    // ED(n) = 2*[LSE_j sum_i 0.5*log1p(kappa*lambda_hat) - log M] / log kappa (docs/math.md section 4):
    // the ellipsoid form at zeta = 0, a = sqrt(kappa), |log eps| = 0.5*log kappa, whatever the
    // cover of the curves.
    EvalPoint pt;
    pt.cover = Cover::Ellipsoid;
    pt.a = std::sqrt(kappa);
    pt.log_a = 0.5 * std::log(kappa);
    pt.zeta_d = 0.0;
    pt.abs_log_eps = 0.5 * std::log(kappa);
    points.push_back(pt);
    ed_eps.push_back(1.0 / std::sqrt(kappa));
  }
  for (double zeta : opts.zetas) {
    for (double n : opts.at_n) {
      const double eps = eps_at_n(n, zeta);
      if (!(eps > 0.0 && eps < 1.0)) {
        throw UsageError(
            fmt::format("EstimatorOptions.at_n: eps_zeta(n) = (2*pi*log n/n)^(1/(2*(1-zeta))) must satisfy "
                        "0 < eps < 1, got eps = {} for n = {}, zeta = {} (n must exceed about {:.4g})",
                        eps, n, zeta, min_n_for_kappa()));
      }
      points.push_back(make_eps_point(opts.cover, zeta, eps, d, "EstimatorOptions.at_n eps"));
      at_eps.push_back(eps);
    }
  }
  for (EvalPoint& pt : points) {
    pt.aggregate = share ? Aggregate::Mean : opts.aggregate;
    if (share) pt.zeta_d = 0.0;
  }

  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public functions
// ---------------------------------------------------------------------------------------------

SampleSpectrum merge_spectra(const std::vector<SampleSpectrum>& blocks) {
  SampleSpectrum s;
  for (const auto& b : blocks) {
    s.eigenvalues.insert(s.eigenvalues.end(), b.eigenvalues.begin(), b.eigenvalues.end());
    s.trace += b.trace;
    s.num_cut += b.num_cut;
  }
  return s;
}

std::vector<double> default_eps_grid() {
  return log_spaced(kDefaultEpsLo, kDefaultEpsHi, kDefaultEpsCount);
}

std::vector<double> parse_eps_grid(const std::string& text, const std::string& option) {
  const std::string where = fmt::format("{} {}", option, text);
  if (text.find(':') != std::string::npos) {
    const std::vector<std::string_view> parts = split(text, ':');
    if (parts.size() != 3) {
      throw UsageError(fmt::format("{}: expected LO:HI:COUNT or a comma-separated list", where));
    }
    double lo = 0.0;
    double hi = 0.0;
    int64_t count = 0;
    if (!parse_finite_double(parts[0], lo)) {
      throw UsageError(fmt::format("{}: LO '{}' is not a number", where, parts[0]));
    }
    if (!parse_finite_double(parts[1], hi)) {
      throw UsageError(fmt::format("{}: HI '{}' is not a number", where, parts[1]));
    }
    if (!parse_int64(parts[2], count) || count < 1) {
      throw UsageError(
          fmt::format("{}: COUNT must be an integer >= 2 (or 1 when LO == HI), got '{}'", where, parts[2]));
    }
    if (!(lo > 0.0 && lo < 1.0 && hi > 0.0 && hi < 1.0)) {
      throw UsageError(fmt::format("{}: LO and HI must be in (0,1), got LO = {}, HI = {}", where, lo, hi));
    }
    if (lo > hi) {
      throw UsageError(fmt::format("{}: LO must not exceed HI, got LO = {} > HI = {}", where, lo, hi));
    }
    if (hi > kMaxEps) throw UsageError(fmt::format("{}: HI {}", where, eps_too_large(hi)));
    if (count == 1 && lo != hi) {
      throw UsageError(fmt::format("{}: COUNT must be an integer >= 2 unless LO == HI, got 1", where));
    }
    if (count > kMaxGridCount) {
      throw UsageError(fmt::format("{}: COUNT must be at most {}, got {}", where, kMaxGridCount, count));
    }
    return log_spaced(lo, hi, count);
  }
  std::vector<double> values;
  for (std::string_view token : split(text, ',')) {
    double v = 0.0;
    if (!parse_finite_double(token, v)) {
      throw UsageError(fmt::format("{}: '{}' is not a number", where, trim(token)));
    }
    if (!(v > 0.0 && v < 1.0)) {
      throw UsageError(fmt::format("{}: each value must be in (0,1), got {}", where, v));
    }
    if (v > kMaxEps) throw UsageError(fmt::format("{}: each value {}", where, eps_too_large(v)));
    values.push_back(v);
  }
  return values;
}

std::vector<double> parse_double_list(const std::string& text, const std::string& option) {
  std::vector<double> values;
  for (std::string_view token : split(text, ',')) {
    double v = 0.0;
    if (!parse_finite_double(token, v)) {
      throw UsageError(fmt::format("{} {}: '{}' is not a number", option, text, trim(token)));
    }
    values.push_back(v);
  }
  return values;
}

double abbas_kappa(double n) {
  return n / (2.0 * kPi * std::log(n));
}

double eps_at_n(double n, double zeta) {
  return std::pow(2.0 * kPi * std::log(n) / n, 1.0 / (2.0 * (1.0 - zeta)));
}

double log_det_term(Cover cover, double u, double lambda) {
  const double sqrt_lambda = std::sqrt(lambda);
  const double log_u = std::log(u);
  return cover == Cover::Box ? term<Cover::Box>(u, log_u, sqrt_lambda) : term<Cover::Ellipsoid>(u, log_u, sqrt_lambda);
}

void validate_estimator_options(const EstimatorOptions& opts) {
  make_points(opts, 1.0);
}

namespace {
TwoScaleResult estimate(const std::vector<SampleSpectrum>& spectra, int64_t num_params, const EstimatorOptions& opts,
                        bool share) {
  // --- Validate the options (field, rule, value), then the spectra.
  if (num_params < 1) {
    throw UsageError(fmt::format("num_params must satisfy num_params >= 1, got {}", num_params));
  }
  if (spectra.empty()) {
    throw UsageError("spectra must be non-empty (one spectrum per parameter sample, M >= 1), got 0 samples");
  }
  if (spectra.size() > std::numeric_limits<uint32_t>::max()) {
    throw UsageError(fmt::format("spectra must hold at most {} samples, got {}", std::numeric_limits<uint32_t>::max(),
                                 spectra.size()));
  }
  const double d = static_cast<double>(num_params);
  const Points pts = make_points(opts, d, share);
  const auto& eps_grid = pts.eps_grid;
  const auto& points = pts.points;
  const auto& ed_eps = pts.ed_eps;
  const auto& at_eps = pts.at_eps;

  Problem pr;
  pr.flat = flatten_and_check(spectra, opts.exact_limit);
  pr.num_samples = spectra.size();
  const std::size_t M = pr.num_samples;
  pr.all.resize(M);
  for (std::size_t j = 0; j < M; ++j) pr.all[j] = static_cast<uint32_t>(j);
  pr.mean_trace = mean_trace_of(pr.flat.trace, pr.all.data(), M);
  if (!(std::isfinite(pr.mean_trace) && pr.mean_trace > 0.0)) {
    throw UsageError(fmt::format("mean trace t = (1/M) sum_j trace_j must be finite and > 0, got {}", pr.mean_trace));
  }
  pr.log_d = std::log(d);
  pr.log_scale = 0.5 * (pr.log_d - std::log(pr.mean_trace));
  pr.scale = std::sqrt(d / pr.mean_trace);
  if (!std::isfinite(pr.scale)) pr.scale = std::exp(pr.log_scale);

  // --- Bootstrap resamples (docs/math.md section 5): one generator, used resample by resample, shared
  // by every point so that curves and point estimates see the same resamples.
  pr.num_resamples = static_cast<std::size_t>(opts.bootstrap);
  pr.resample.resize(pr.num_resamples * M);
  pr.resample_x.resize(pr.num_resamples);
  Rng rng(opts.seed, Stream::Bootstrap, 0);
  for (std::size_t b = 0; b < pr.num_resamples; ++b) {
    uint32_t* idx = &pr.resample[b * M];
    for (std::size_t m = 0; m < M; ++m) idx[m] = static_cast<uint32_t>(rng.below(M));
    const double t_b = mean_trace_of(pr.flat.trace, idx, M);
    // t_b = 0: every drawn sample is a zero Fisher with no eigenvalues, whose S_j vanish at
    // every x; any x will do, the interval's own minimum is set below.
    pr.resample_x[b] = t_b > 0.0 ? 0.5 * (pr.log_d - std::log(t_b)) : std::numeric_limits<double>::quiet_NaN();
  }
  {
    // Give the t_b = 0 resamples a finite x inside the data's own range (fmin ignores NaN).
    double x_min = pr.log_scale;
    for (double x : pr.resample_x) x_min = std::fmin(x_min, x);
    for (double& x : pr.resample_x) {
      if (std::isnan(x)) x = x_min;
    }
  }

  // The node count depends on the cover's strip of analyticity, so one grid per cover in use.
  std::vector<ChebyshevGrid> grids(2);
  std::vector<bool> have_grid(2, false);
  auto grid_for = [&](Cover cover) -> const ChebyshevGrid& {
    const std::size_t c = cover == Cover::Box ? 0 : 1;
    if (!have_grid[c]) {
      grids[c] = make_grid(pr.resample_x, cover == Cover::Box ? kBoxStripHalfWidth : kEllipsoidStripHalfWidth);
      have_grid[c] = true;
    }
    return grids[c];
  };

  std::vector<double> value(points.size());
  std::vector<double> std_error(points.size());
  for (std::size_t p = 0; p < points.size(); ++p) {
    value[p] = exact_value(pr, points[p]);
    std_error[p] = bootstrap_std_error(pr, grid_for(points[p].cover), points[p]);
  }

  // --- Assemble the result in the header's order.
  TwoScaleResult result;
  result.num_params = num_params;
  result.num_param_samples = static_cast<int64_t>(M);
  result.mean_trace = pr.mean_trace;
  for (const auto& s : spectra) result.num_cut += s.num_cut;
  result.cover = opts.cover;
  std::size_t p = 0;
  for (double zeta : opts.zetas) {
    Curve curve;
    curve.zeta = zeta;
    curve.eps = eps_grid;
    for (std::size_t e = 0; e < eps_grid.size(); ++e, ++p) {
      curve.value.push_back(value[p]);
      curve.std_error.push_back(std_error[p]);
    }
    result.curves.push_back(std::move(curve));
  }
  for (std::size_t i = 0; i < opts.ed_n.size(); ++i, ++p) {
    result.ed.push_back(PointEstimate{0.0, opts.ed_n[i], ed_eps[i], value[p], std_error[p]});
  }
  std::size_t q = 0;
  for (double zeta : opts.zetas) {
    for (double n : opts.at_n) {
      result.at_n.push_back(PointEstimate{zeta, n, at_eps[q++], value[p], std_error[p]});
      ++p;
    }
  }
  return result;
}
}  // namespace

struct TwoScaleFunction::Impl {
  Problem pr;
  double d = 0.0;
  Cover cover = Cover::Box;
  Aggregate aggregate = Aggregate::LogMeanExp;
};

TwoScaleFunction::TwoScaleFunction(const std::vector<SampleSpectrum>& spectra, int64_t num_params, Cover cover,
                                   Aggregate aggregate, int64_t exact_limit)
    : impl_(std::make_unique<Impl>()) {
  if (num_params < 1) throw UsageError(fmt::format("num_params must be >= 1, got {}", num_params));
  if (spectra.empty()) throw UsageError("spectra must be non-empty (M >= 1)");
  auto& pr = impl_->pr;
  impl_->d = static_cast<double>(num_params);
  impl_->cover = cover;
  impl_->aggregate = aggregate;
  pr.flat = flatten_and_check(spectra, exact_limit);
  pr.num_samples = spectra.size();
  pr.all.resize(pr.num_samples);
  for (std::size_t j = 0; j < pr.num_samples; ++j) pr.all[j] = static_cast<uint32_t>(j);
  pr.mean_trace = mean_trace_of(pr.flat.trace, pr.all.data(), pr.num_samples);
  if (!(std::isfinite(pr.mean_trace) && pr.mean_trace > 0.0))
    throw UsageError(fmt::format("mean trace t must be finite and > 0, got {}", pr.mean_trace));
  pr.log_d = std::log(impl_->d);
  pr.log_scale = 0.5 * (pr.log_d - std::log(pr.mean_trace));
  pr.scale = std::sqrt(impl_->d / pr.mean_trace);
  if (!std::isfinite(pr.scale)) pr.scale = std::exp(pr.log_scale);
}

TwoScaleFunction::~TwoScaleFunction() = default;
TwoScaleFunction::TwoScaleFunction(TwoScaleFunction&&) noexcept = default;

double TwoScaleFunction::operator()(double zeta, double eps) const {
  if (!(zeta >= 0.0 && zeta < 1.0)) throw UsageError(fmt::format("zeta must satisfy 0 <= zeta < 1, got {}", zeta));
  check_eps(eps, "eps");
  EvalPoint pt = make_eps_point(impl_->cover, zeta, eps, impl_->d, "eps");
  pt.aggregate = impl_->aggregate;
  return exact_value(impl_->pr, pt);
}

TwoScaleResult estimate_two_scale(const std::vector<SampleSpectrum>& spectra, int64_t num_params,
                                  const EstimatorOptions& opts) {
  return estimate(spectra, num_params, opts, /*share=*/false);
}

TwoScaleResult estimate_group_share(const std::vector<SampleSpectrum>& group_spectra, int64_t num_params,
                                    const EstimatorOptions& opts) {
  return estimate(group_spectra, num_params, opts, /*share=*/true);
}

}  // namespace twosed
