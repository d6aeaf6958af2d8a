// The generalisation estimate of docs/math.md section 6 and its minimisation over eps.
#include "twosed/estimate/generalization.h"

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include <fmt/core.h>

#include "twosed/error.h"

namespace twosed {
namespace {

// Golden-section stopping width in t = log eps: a width w in log eps is a relative width of
// about w in eps, so this is the 1e-10 relative eps tolerance of the header.
constexpr double kLogEpsTolerance = 1e-10;
constexpr double kInvPhi = 0.6180339887498948482;  // (sqrt(5) - 1) / 2

void check_n(double n) {
  if (!(std::isfinite(n) && n > 1.0)) {
    throw UsageError(fmt::format("n (training examples) must be finite and > 1, got {}", n));
  }
}

struct Terms {
  double lipschitz = 0.0;
  double complexity = 0.0;
};

Terms terms_of(double eps, double dimension, double n, const BoundOptions& opts) {
  Terms t;
  t.lipschitz = 2.0 * opts.lipschitz * eps;
  t.complexity =
      opts.loss_bound * std::sqrt((dimension * std::fabs(std::log(eps)) + std::log(2.0 / opts.delta)) / (2.0 * n));
  return t;
}

// Evaluates d_zeta at eps and the objective there, checking that both are usable.
GapEstimate evaluate(const std::function<double(double)>& dimension, double eps, double n, const BoundOptions& opts) {
  GapEstimate g;
  g.n = n;
  g.eps = eps;
  g.dimension = dimension(eps);
  if (!std::isfinite(g.dimension)) {
    throw UsageError(fmt::format("dimension at eps={} must be finite, got {}", eps, g.dimension));
  }
  const Terms t = terms_of(eps, g.dimension, n, opts);
  g.lipschitz_term = t.lipschitz;
  g.complexity_term = t.complexity;
  g.gap = t.lipschitz + t.complexity;
  if (std::isnan(g.gap)) {
    throw UsageError(
        fmt::format("dimension at eps={} is {}, which makes d |log eps| + log(2/delta) negative", eps, g.dimension));
  }
  return g;
}

// True if a is a better minimum than b: smaller gap, ties to the smaller eps.
bool better(const GapEstimate& a, const GapEstimate& b) {
  return a.gap < b.gap || (a.gap == b.gap && a.eps < b.eps);
}

}  // namespace

void validate_bound_options(const BoundOptions& opts) {
  if (!(std::isfinite(opts.loss_bound) && opts.loss_bound > 0.0)) {
    throw OptionError("BoundOptions.loss_bound", fmt::format("must be a finite number > 0, got {}", opts.loss_bound));
  }
  if (!(std::isfinite(opts.lipschitz) && opts.lipschitz > 0.0)) {
    throw OptionError("BoundOptions.lipschitz", fmt::format("must be a finite number > 0, got {}", opts.lipschitz));
  }
  if (!(opts.delta > 0.0 && opts.delta < 1.0)) {
    throw OptionError("BoundOptions.delta", fmt::format("must satisfy 0 < delta < 1, got {}", opts.delta));
  }
}

double gap_objective(double eps, double dimension, double n, const BoundOptions& opts) {
  const Terms t = terms_of(eps, dimension, n, opts);
  return t.lipschitz + t.complexity;
}

GapEstimate minimize_gap(const std::function<double(double)>& dimension, double n, const std::vector<double>& eps_grid,
                         const BoundOptions& opts) {
  validate_bound_options(opts);
  check_n(n);
  if (eps_grid.empty()) throw UsageError("eps grid must not be empty");
  double eps_min = eps_grid.front(), eps_max = eps_grid.front();
  for (double eps : eps_grid) {
    if (!(eps > 0.0 && eps < 1.0)) throw UsageError(fmt::format("eps grid: each eps must be in (0,1), got {}", eps));
    eps_min = std::fmin(eps_min, eps);
    eps_max = std::fmax(eps_max, eps);
  }
  GapEstimate best = evaluate(dimension, eps_grid.front(), n, opts);
  for (std::size_t i = 1; i < eps_grid.size(); ++i) {
    const GapEstimate g = evaluate(dimension, eps_grid[i], n, opts);
    if (better(g, best)) best = g;
  }
  // The edge is the smallest or largest eps searched: the first or last element of a sorted grid.
  best.at_grid_edge = eps_grid.size() > 1 && eps_min < eps_max && (best.eps == eps_min || best.eps == eps_max);
  return best;
}

GapEstimate minimize_gap_continuous(const std::function<double(double)>& dimension, double n, double lo, double hi,
                                    const BoundOptions& opts, int scan) {
  validate_bound_options(opts);
  check_n(n);
  if (!(lo > 0.0 && lo < 1.0)) throw UsageError(fmt::format("eps range: lo must be in (0,1), got {}", lo));
  if (!(hi > 0.0 && hi < 1.0)) throw UsageError(fmt::format("eps range: hi must be in (0,1), got {}", hi));
  if (!(lo < hi)) throw UsageError(fmt::format("eps range: lo must be < hi, got lo = {}, hi = {}", lo, hi));
  if (scan < 3) throw UsageError(fmt::format("scan must be >= 3 points, got {}", scan));

  // Log-spaced scan with exact endpoints.
  const double t_lo = std::log(lo), t_hi = std::log(hi);
  const auto count = static_cast<std::size_t>(scan);
  std::vector<double> t(count);
  for (std::size_t k = 0; k < count; ++k) {
    t[k] = t_lo + (t_hi - t_lo) * static_cast<double>(k) / static_cast<double>(count - 1);
  }
  auto eps_at = [&](std::size_t k) { return k == 0 ? lo : (k + 1 == count ? hi : std::exp(t[k])); };
  std::size_t k_best = 0;
  GapEstimate best = evaluate(dimension, lo, n, opts);
  for (std::size_t k = 1; k < count; ++k) {
    const GapEstimate g = evaluate(dimension, eps_at(k), n, opts);
    if (better(g, best)) {
      best = g;
      k_best = k;
    }
  }

  // Golden-section search in log eps on the scan neighbours' bracket. Every evaluation is a
  // candidate, so the result is never worse than the best scan point even if the objective is
  // not unimodal there.
  double a = t[k_best == 0 ? 0 : k_best - 1];
  double b = t[k_best + 1 == count ? count - 1 : k_best + 1];
  auto eval_t = [&](double tt) {
    const GapEstimate g = evaluate(dimension, std::exp(tt), n, opts);
    if (better(g, best)) best = g;
    return g.gap;
  };
  double c = b - kInvPhi * (b - a), d = a + kInvPhi * (b - a);
  double fc = eval_t(c), fd = eval_t(d);
  while (b - a > kLogEpsTolerance) {
    if (fc <= fd) {  // ties keep the smaller eps side
      b = d;
      d = c;
      fd = fc;
      c = b - kInvPhi * (b - a);
      fc = eval_t(c);
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + kInvPhi * (b - a);
      fd = eval_t(d);
    }
  }

  // At the edge: the minimum is at lo or hi, or within the search tolerance of them (the
  // objective still decreases towards the end of the range; widen it).
  const double t_best = std::log(best.eps);
  best.at_grid_edge = t_best - t_lo <= 2.0 * kLogEpsTolerance || t_hi - t_best <= 2.0 * kLogEpsTolerance;
  return best;
}

}  // namespace twosed
