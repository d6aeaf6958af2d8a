// The generalisation estimate of docs/math.md section 6: for a loss in [0, B], L-Lipschitz in the
// normalised Fisher metric, n training examples and confidence 1 - delta,
//     gap(n) ~ min over eps of [ 2 L eps + B sqrt( (d_zeta(eps) |log eps| + log(2/delta)) / (2n) ) ].
// It is an estimate, not a certified bound: covering constants are set to one and
// log vol(Theta) is dropped (kBoundCaveat says so wherever it is printed).
//
// Example:
//   BoundOptions o;  // B = 1, L = 1, delta = 0.05
//   auto g = minimize_gap([&](double eps) { return d_zeta_at(eps); }, 1e4, grid, o);
//   g.gap, g.eps
#pragma once

#include <functional>
#include <vector>

namespace twosed {

/// Printed beside every generalisation estimate.
constexpr const char* kBoundCaveat =
    "an estimate, not a certified bound: covering constants are set to one and log vol(Theta) is dropped";

struct BoundOptions {
  double loss_bound = 1.0;  ///< B > 0
  double lipschitz = 1.0;   ///< L > 0
  double delta = 0.05;      ///< in (0, 1)
};

struct GapEstimate {
  double n = 0.0;
  double eps = 0.0;              ///< the minimising eps
  double dimension = 0.0;        ///< d_zeta at that eps
  double lipschitz_term = 0.0;   ///< 2 L eps
  double complexity_term = 0.0;  ///< B sqrt((d |log eps| + log(2/delta)) / (2n))
  double gap = 0.0;              ///< their sum
  bool at_grid_edge = false;     ///< the minimum is at the first or last eps searched (widen the range)
};

/// Throws OptionError naming the field ("BoundOptions.loss_bound", "BoundOptions.lipschitz",
/// "BoundOptions.delta") if invalid.
void validate_bound_options(const BoundOptions& opts);

/// The objective at one eps for a given dimension value.
double gap_objective(double eps, double dimension, double n, const BoundOptions& opts);

/// Minimum over the given eps values (docs/math.md section 6, literally). `dimension(eps)` returns d_zeta(eps).
/// Ties go to the smaller eps. at_grid_edge: the grid has more than one distinct eps and the
/// minimum is at its smallest or largest (the first or last element of a sorted grid).
/// Throws UsageError for bad options, if n is not finite and > 1, the grid is empty, an eps is
/// outside (0, 1), or a dimension value is not finite ("dimension at eps=...").
GapEstimate minimize_gap(const std::function<double(double)>& dimension, double n, const std::vector<double>& eps_grid,
                         const BoundOptions& opts);

/// Minimum over the whole interval [lo, hi] (0 < lo < hi < 1): a log-spaced scan of `scan`
/// points, then golden-section search (in log eps) between the best point's neighbours, to a
/// relative eps tolerance of 1e-10. For d_zeta computed from spectra, which can be evaluated
/// at any eps. Every point evaluated is a candidate, so the result is never worse than the
/// best scan point; ties go to the smaller eps. at_grid_edge: the minimum is at lo or hi (or
/// within the search tolerance of them). Throws UsageError for bad options, if n is not finite
/// and > 1, lo or hi is outside (0, 1), lo >= hi, scan < 3, or a dimension value is not finite.
GapEstimate minimize_gap_continuous(const std::function<double(double)>& dimension, double n, double lo, double hi,
                                    const BoundOptions& opts, int scan = 200);

}  // namespace twosed
