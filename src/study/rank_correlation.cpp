// Rank correlations (Spearman's rho, Kendall's tau-b) with percentile bootstrap intervals.
//
// Spearman: Pearson's correlation of average ranks. Ranks are multiples of 1/2 and their mean
// is (n + 1) / 2, so the centred ranks and their sums of squares and products are exact in
// double for any n this library sees; the only rounding is the final division and sqrt.
//
// Kendall's tau-b: Knight's O(n log n) algorithm (Knight 1966, as in scipy.stats.kendalltau):
// sort by (x, y), count the pairs tied in x and tied in both, then merge-sort y counting
// the swaps (discordant pairs); with n0 = n(n-1)/2, n1 / n2 the pairs tied in x / y and n3 those
// tied in both, C - D = n0 - n1 - n2 + n3 - 2 * swaps. All counts are exact 64-bit integers.
#include "twosed/study/rank_correlation.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "twosed/error.h"
#include "twosed/random.h"

namespace twosed {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Resample j of bootstrap_correlation uses Rng(seed, Stream::Bootstrap, kRankBootstrapIndexOffset + j).
// The estimator uses Stream::Bootstrap with index 0 only; this offset ("RANK" in the top 32 bits)
// keeps the two uses of one seed on different generators for any realistic number of resamples.
constexpr uint64_t kRankBootstrapIndexOffset = 0x52414E4B00000000ULL;

void check_no_nan(const std::vector<double>& v, const char* name) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i])) throw UsageError(fmt::format("{}[{}] must be a number, got NaN", name, i));
  }
}

void check_pairs(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size()) {
    throw UsageError(fmt::format("x and y must have the same size, got {} and {}", x.size(), y.size()));
  }
  check_no_nan(x, "x");
  check_no_nan(y, "y");
}

// Ranks of validated data (no NaN).
std::vector<double> ranks_of(const std::vector<double>& x) {
  const std::size_t n = x.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && x[order[j]] == x[order[i]]) ++j;
    // Positions i..j-1 (0-based) hold ranks i+1..j, whose average is (i + 1 + j) / 2.
    const double avg = 0.5 * static_cast<double>(i + 1 + j);
    for (std::size_t k = i; k < j; ++k) r[order[k]] = avg;
    i = j;
  }
  return r;
}

double clamp_unit(double v) {
  return std::isnan(v) ? v : std::min(1.0, std::max(-1.0, v));
}

double spearman_unchecked(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t n = x.size();
  if (n < 2) return kNaN;
  const std::vector<double> rx = ranks_of(x);
  const std::vector<double> ry = ranks_of(y);
  const double mean = 0.5 * static_cast<double>(n + 1);
  double sxx = 0.0, syy = 0.0, sxy = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double dx = rx[i] - mean, dy = ry[i] - mean;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
  }
  if (sxx == 0.0 || syy == 0.0) return kNaN;
  return clamp_unit(sxy / std::sqrt(sxx * syy));
}

// Number of pairs within runs of equal keys, for keys already sorted so that equal ones are adjacent.
template <typename Eq>
int64_t tied_pairs(std::size_t n, Eq equal) {
  int64_t total = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && equal(i, j)) ++j;
    const auto run = static_cast<int64_t>(j - i);
    total += run * (run - 1) / 2;
    i = j;
  }
  return total;
}

// Sorts v ascending (stable merge sort) and returns the number of inversions, i.e. pairs i < j
// with v[i] > v[j] strictly (equal values are not counted).
int64_t sort_count_inversions(std::vector<double>& v) {
  const std::size_t n = v.size();
  std::vector<double> buf(n);
  int64_t swaps = 0;
  for (std::size_t width = 1; width < n; width *= 2) {
    for (std::size_t lo = 0; lo < n; lo += 2 * width) {
      const std::size_t mid = std::min(lo + width, n), hi = std::min(lo + 2 * width, n);
      std::size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        if (v[j] < v[i]) {
          swaps += static_cast<int64_t>(mid - i);
          buf[k++] = v[j++];
        } else {
          buf[k++] = v[i++];
        }
      }
      while (i < mid) buf[k++] = v[i++];
      while (j < hi) buf[k++] = v[j++];
    }
    std::swap(v, buf);
  }
  return swaps;
}

double kendall_unchecked(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t n = x.size();
  if (n < 2) return kNaN;
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return x[a] < x[b] || (x[a] == x[b] && y[a] < y[b]); });
  const int64_t n1 = tied_pairs(n, [&](std::size_t i, std::size_t j) { return x[order[i]] == x[order[j]]; });
  const int64_t n3 = tied_pairs(
      n, [&](std::size_t i, std::size_t j) { return x[order[i]] == x[order[j]] && y[order[i]] == y[order[j]]; });
  std::vector<double> ys(n);
  for (std::size_t i = 0; i < n; ++i) ys[i] = y[order[i]];
  // Within a run of equal x, y is ascending, so inversions are exactly the discordant pairs.
  const int64_t swaps = sort_count_inversions(ys);
  const int64_t n2 = tied_pairs(n, [&](std::size_t i, std::size_t j) { return ys[i] == ys[j]; });
  const auto un = static_cast<int64_t>(n);
  const int64_t n0 = un * (un - 1) / 2;
  if (n1 == n0 || n2 == n0) return kNaN;  // a variable is constant
  const int64_t c_minus_d = n0 - n1 - n2 + n3 - 2 * swaps;
  // The product is exact below 2^53 (n up to ~10^4), so the sqrt is the only rounding; with equal
  // factors (y a monotone function of x) sqrt(a * a) == a exactly and tau-b is exactly +-1.
  const double denom = std::sqrt(static_cast<double>(n0 - n1) * static_cast<double>(n0 - n2));
  return clamp_unit(static_cast<double>(c_minus_d) / denom);
}

double correlation_unchecked(const std::vector<double>& x, const std::vector<double>& y, RankMethod method) {
  return method == RankMethod::Spearman ? spearman_unchecked(x, y) : kendall_unchecked(x, y);
}

}  // namespace

std::vector<double> average_ranks(const std::vector<double>& x) {
  check_no_nan(x, "x");
  return ranks_of(x);
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  check_pairs(x, y);
  return spearman_unchecked(x, y);
}

double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y) {
  check_pairs(x, y);
  return kendall_unchecked(x, y);
}

double sorted_quantile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) throw UsageError("sorted_quantile: the sorted values must not be empty");
  if (!(p >= 0.0 && p <= 1.0)) throw UsageError(fmt::format("sorted_quantile: p must satisfy 0 <= p <= 1, got {}", p));
  const double h = p * static_cast<double>(sorted.size() - 1);
  const auto k = static_cast<std::size_t>(std::floor(h));
  if (k + 1 >= sorted.size()) return sorted.back();
  const double frac = h - static_cast<double>(k);
  return sorted[k] + frac * (sorted[k + 1] - sorted[k]);
}

CorrelationEstimate bootstrap_correlation(const std::vector<double>& x, const std::vector<double>& y, RankMethod method,
                                          const CorrelationOptions& opts) {
  check_pairs(x, y);
  if (x.size() < 2) {
    throw UsageError(fmt::format("x and y must hold at least 2 pairs for a bootstrap, got {}", x.size()));
  }
  if (opts.bootstrap < 2) {
    throw OptionError("CorrelationOptions.bootstrap",
                      fmt::format("must satisfy bootstrap >= 2, got {}", opts.bootstrap));
  }
  if (!(opts.confidence > 0.0 && opts.confidence < 1.0)) {
    throw OptionError("CorrelationOptions.confidence",
                      fmt::format("must satisfy 0 < confidence < 1, got {}", opts.confidence));
  }
  const std::size_t n = x.size();
  CorrelationEstimate est;
  est.value = correlation_unchecked(x, y, method);
  est.n = static_cast<int64_t>(n);
  est.confidence = opts.confidence;

  std::vector<double> values;
  values.reserve(static_cast<std::size_t>(opts.bootstrap));
  std::vector<double> xb(n), yb(n);
  for (int64_t b = 0; b < opts.bootstrap; ++b) {
    Rng rng(opts.seed, Stream::Bootstrap, kRankBootstrapIndexOffset + static_cast<uint64_t>(b));
    for (std::size_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(rng.below(n));
      xb[i] = x[k];
      yb[i] = y[k];
    }
    const double v = correlation_unchecked(xb, yb, method);
    if (!std::isnan(v)) values.push_back(v);
  }
  est.valid = static_cast<int64_t>(values.size());
  if (values.size() < 2) {
    est.lo = est.hi = kNaN;
  } else {
    std::sort(values.begin(), values.end());
    const double tail = 0.5 * (1.0 - opts.confidence);
    est.lo = sorted_quantile(values, tail);
    est.hi = sorted_quantile(values, 1.0 - tail);
  }
  return est;
}

}  // namespace twosed
