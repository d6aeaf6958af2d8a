// Options that define the standard statistical model S on top of a network and how its
// Fisher information is computed (docs/math.md sections 1, 2, 5, 7). Kept free of LibTorch so that the
// CLI and reports can use them without its headers.
#pragma once

#include <cstdint>

namespace twosed {

/// The output distribution of the standard model S.
enum class Task {
  Classify,  ///< p(y|x) = Cat(softmax f(x)); Lambda = diag(p) - p p^T
  Regress,   ///< p(y|x) = N(f(x), s_out^2 I); Lambda = I / s_out^2
};

/// Exact Fisher (default) or one sampled label per input (rank N instead of N k; labelled).
enum class FisherKind { Exact, Sampled };

/// Which side of Jh the eigen-problem is solved on.
enum class GramSide {
  Auto,        ///< the smaller of N*R (samples) and d (parameters)
  Samples,     ///< K = (1/N) Jh Jh^T
  Parameters,  ///< F_N = (1/N) Jh^T Jh (d x d: tiny models only)
};

/// The spec's zero cutoff: eigenvalues <= 1e-12 * largest are exact zeros (section 5).
constexpr double kZeroCutoff = 1e-12;

struct FisherOptions {
  Task task = Task::Classify;
  double out_noise = 1.0;  ///< s_out for Task::Regress (> 0)
  FisherKind kind = FisherKind::Exact;
  GramSide side = GramSide::Auto;
  double cutoff = kZeroCutoff;          ///< relative zero cutoff
  int64_t memory_budget = 256LL << 20;  ///< bytes for any one temporary (conv chunks, parameter-side rows)
  uint64_t label_seed = 0;              ///< FisherKind::Sampled: labels from Rng(label_seed, Labels, sample)
};

/// Rows R per example of the factor of Lambda: k-1 (exact softmax), k (exact Gaussian), 1 (sampled).
/// Here, not in fisher.cpp, because results read back from the store (twosed_core) need it too.
inline int64_t rows_per_example(int64_t num_outputs, const FisherOptions& opts) {
  if (opts.kind == FisherKind::Sampled) return 1;
  return opts.task == Task::Classify ? num_outputs - 1 : num_outputs;
}

}  // namespace twosed
