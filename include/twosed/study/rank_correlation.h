// Rank correlations between a capacity measure and the losses reached after training (what
// `twosed study` reports), with bootstrap confidence intervals over the models.
//
// Ties get average ranks; Spearman's rho is Pearson's correlation of the ranks, Kendall's tau
// is tau-b (Kendall 1945), which accounts for ties in both variables.
//
// Example:
//   double rho = spearman({1, 2, 3, 4}, {10, 30, 20, 40});         // 0.8
//   auto ci = bootstrap_correlation(x, y, RankMethod::Kendall, {});  // value, lo, hi
#pragma once

#include <cstdint>
#include <vector>

namespace twosed {

enum class RankMethod { Spearman, Kendall };

/// 1-based ranks, ties replaced by the average of the ranks they span ({10, 20, 20} -> {1, 2.5, 2.5}).
/// O(n log n). Throws UsageError if a value is NaN.
std::vector<double> average_ranks(const std::vector<double>& x);

/// Spearman's rho (Pearson on average ranks). NaN if n < 2 or either variable is constant.
/// Throws UsageError if the sizes differ or a value is NaN.
double spearman(const std::vector<double>& x, const std::vector<double>& y);

/// Kendall's tau-b: (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 = n(n-1)/2, n1/n2 the tied pairs in
/// x/y. NaN if n < 2 or either variable is constant. Throws UsageError as spearman.
double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y);

/// Quantile p in [0, 1] of ascending `sorted` values, interpolating linearly between order
/// statistics: with h = p (m - 1), the value sorted[floor(h)] + (h - floor(h)) (sorted[floor(h)+1] -
/// sorted[floor(h)]) (Hyndman & Fan type 7, numpy's default). Throws UsageError if `sorted` is
/// empty or p is outside [0, 1].
double sorted_quantile(const std::vector<double>& sorted, double p);

struct CorrelationOptions {
  int64_t bootstrap = 2000;  ///< resamples of the n (x, y) pairs (>= 2)
  double confidence = 0.95;  ///< in (0, 1)
  uint64_t seed = 0;         ///< resample j uses Rng(seed, Stream::Bootstrap, 0x52414E4B00000000 + j)
};

struct CorrelationEstimate {
  double value = 0.0;  ///< on the data as given
  double lo = 0.0;     ///< percentile interval of the resampled values (NaN if too few valid)
  double hi = 0.0;
  int64_t n = 0;      ///< pairs
  int64_t valid = 0;  ///< resamples whose correlation was defined (not constant)
  double confidence = 0.95;
};

/// The correlation and a percentile bootstrap interval over resampled pairs (resamples where
/// the correlation is undefined, e.g. all one model, are skipped and not counted in `valid`).
/// The interval is [sorted_quantile(v, (1 - c) / 2), sorted_quantile(v, 1 - (1 - c) / 2)] of the
/// sorted valid resampled values v, c the confidence; lo and hi are NaN if fewer than 2 are valid.
/// Resample j draws its n indices from Rng(seed, Stream::Bootstrap, 0x52414E4B00000000 + j), an
/// index offset that the estimator's use of Stream::Bootstrap (index 0) never reaches.
/// Throws UsageError if the sizes differ, n < 2, a value is NaN, bootstrap < 2 or the confidence
/// is outside (0, 1).
CorrelationEstimate bootstrap_correlation(const std::vector<double>& x, const std::vector<double>& y, RankMethod method,
                                          const CorrelationOptions& opts);

}  // namespace twosed
