// Exact Fisher information spectra of the standard model (docs/math.md sections 2, 5 and 7).
//
// For one parameter sample theta and N inputs, F_N = (1/N) sum_i J_i^T Lambda_i J_i. Its non-zero
// eigenvalues are those of the Gram matrix K = (1/N) Jh Jh^T, (N R) x (N R), where the rows of
// Jh are R_i J_i (Lambda = R^T R; R = k rows for the exact Fisher, 1 row for sampled labels).
// fisher_spectrum() builds whichever of K and F_N is smaller, never both, in float64, layer by
// layer (Kronecker form for Linear, chunked per-example gradients for Conv2d), and applies the
// zero cutoff of docs/math.md section 5. dense_fisher() is the brute-force oracle (autograd, d x d).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "twosed/estimate/estimator.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/model/network.h"

namespace twosed {

/// The spectrum of one F_N(theta) with how it was obtained.
struct FisherSpectrum {
  SampleSpectrum spectrum;            ///< kept eigenvalues (ascending), trace, number cut
  double largest = 0.0;               ///< largest eigenvalue before the cutoff
  double most_negative = 0.0;         ///< most negative raw eigenvalue (round-off), 0 if none
  int64_t matrix_size = 0;            ///< size of the matrix that was diagonalised
  GramSide side = GramSide::Samples;  ///< side actually used
  double seconds_forward_backward = 0, seconds_gram = 0, seconds_eigen = 0;
};

/// Rows R per example of the factor of Lambda: k-1 (exact softmax), k (exact Gaussian), 1 (sampled).
int64_t rows_per_example(int64_t num_outputs, const FisherOptions& opts);

/// Output covectors Q_i (N, R, k) with Q_i^T Q_i = Lambda_i at logits/outputs `f` (N, k)
/// (docs/math.md section 2): exact classify: the k-1 rows of a rank-(k-1) factor of diag(p) - p p^T;
/// regress: row c = e_c / s_out; sampled: one row, e_y - p (classify, y ~ p) or xi / s_out
/// (regress, xi ~ N(0, I)), drawn from Rng(label_seed, Labels, rng_index).
torch::Tensor output_covectors(const torch::Tensor& f, const FisherOptions& opts, uint64_t rng_index);

/// The Gram matrix K = (1/N) Jh Jh^T, (N R) x (N R), built layer by layer.
torch::Tensor gram_matrix(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                          const FisherOptions& opts, uint64_t rng_index = 0);

/// The Fisher F_N (d x d) from explicit Jacobian rows, in input chunks within the memory budget.
torch::Tensor parameter_fisher(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                               const FisherOptions& opts, uint64_t rng_index = 0);

/// Brute-force oracle: F_N (d x d) from autograd gradients of every row of R_i f(x_i), one
/// backward pass per row. For tests on tiny networks.
torch::Tensor dense_fisher(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                           const FisherOptions& opts, uint64_t rng_index = 0);

/// Eigenvalues of a symmetric matrix, given by its lower triangle (the upper one is not read),
/// with the zero cutoff applied; `trace` is the matrix trace.
FisherSpectrum spectrum_of(const torch::Tensor& symmetric, double cutoff);

/// The spectrum of F_N(theta) at inputs x (N, input_shape...), float64. `rng_index` selects the
/// sampled labels' generator (use the parameter sample's index j).
FisherSpectrum fisher_spectrum(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                               const FisherOptions& opts, uint64_t rng_index = 0);

}  // namespace twosed
