// The Markov chain model M_sigma of a network and the spectra of its block-diagonal Fisher
// information, layer by layer (docs/math.md sections 1, 2, 3 and 7).
//
// M_sigma adds Gaussian noise sigma*xi after every hidden Markov layer (a parametric layer
// with the activations and pooling that follow it). Its Fisher is exactly block diagonal,
// F = diag(F_1, ..., F_L). A hidden block splits further into one small block per output unit
// (Linear) or output channel (Conv2d), A_u = (1/(N sigma^2)) sum_i P_iu^T P_iu, because the
// activations and pooling act channel by channel; each A_u is diagonalised on its smaller side.
// The units of a Linear layer share the inputs' Gram matrix. The output block is the standard
// model's (softmax or Gaussian) Fisher of the last layer at the noisy inputs.
//
// MarkovChainModel::spectrum() walks the chain once per parameter sample: propagate the inputs
// through layer l (its slice of theta, then its noise), take the spectra of F_l's blocks, move
// on; only one layer's activations and blocks are alive at a time.
//
// Example:
//   Network net(parse_model_spec("mlp:784-256-10"));
//   MarkovOptions mo;  mo.sigma = 0.1;
//   MarkovChainModel chain(net, mo);
//   auto noise = draw_noise(seed, j, net.num_params(), chain.noise_rows(N), chain.noise_width());
//   MarkovSpectrum s = chain.spectrum(theta, x, noise, j);
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "twosed/estimate/estimator.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/model/network.h"

namespace twosed {

struct MarkovOptions {
  double sigma = 0.0;       ///< noise standard deviation after each hidden layer (> 0, finite; required)
  int64_t noise_draws = 1;  ///< R: noise draws per input (rows of every hidden and output block: N*R)
  FisherOptions fisher;     ///< output block (task, out_noise, exact/sampled); side, cutoff, memory for all blocks
};

/// One Markov layer of the chain: a parametric layer and the non-parametric layers after it.
struct MarkovLayer {
  std::string name;         ///< module index of the parametric layer in Network::to_module(), e.g. "0"
                            ///< (imported chains: its weight's module path, e.g. "conv1")
  std::string description;  ///< e.g. "linear 784->256, relu" or "conv 3->32 k3, relu, maxpool 2"
  int64_t first = 0;        ///< spec layers [first, last) form this Markov layer (imported: parametric ops)
  int64_t last = 0;
  int64_t params = 0;        ///< parameters of the layer
  int64_t param_offset = 0;  ///< index of its first parameter in theta
  bool hidden = true;        ///< false for the output layer (no noise after it)
  int64_t units = 1;         ///< blocks of F_l: output units / channels (hidden), 1 (output)
  int64_t noise_width = 0;   ///< m_l: values of noise after the layer (its flattened output size); 0 for output
  int64_t noise_offset = 0;  ///< first column of its noise in the (rows, H) noise layout
};

/// The spectra of one Markov layer's block F_l at one parameter sample.
struct LayerBlockSpectrum {
  SampleSpectrum spectrum;            ///< all kept eigenvalues of F_l (its unit blocks in unit order), tr F_l, cut
  int64_t blocks = 0;                 ///< blocks diagonalised (units with an all-zero Jacobian are skipped)
  int64_t blocks_samples_side = 0;    ///< of which on the sample (Gram) side
  int64_t blocks_parameter_side = 0;  ///< of which on the parameter side
  int64_t largest_block = 0;          ///< size of the largest matrix diagonalised
  double seconds = 0.0;               ///< wall time for this layer (forward, blocks, eigen-solves)
  double cpu_seconds_products = 0.0;  ///< hidden: thread time forming the unit blocks (rows, products)
  double cpu_seconds_eigen = 0.0;     ///< hidden: thread time in the unit blocks' eigen-solves
};

/// What one Markov layer will cost per parameter sample (MarkovChainModel::plan), before any
/// tensor exists: for `measure --plan` and the pre-flight memory check.
struct MarkovLayerPlan {
  int64_t rows = 0;          ///< rows entering the layer (N for the first layer, N*R after)
  int64_t blocks = 0;        ///< blocks (units or channels; 1 for the output layer)
  int64_t block_rows = 0;    ///< sample side of a block before all-zero rows are dropped
  int64_t block_params = 0;  ///< parameter side of a block
  int64_t matrix = 0;        ///< the larger of the two sides that auto picks: min(block_rows, block_params)
  double bytes = 0.0;        ///< peak bytes while the layer is processed (maps, design rows, blocks)
};

/// The spectrum of F(theta) = diag(F_1..F_L) of one parameter sample, by layer.
struct MarkovSpectrum {
  std::vector<LayerBlockSpectrum> layers;
  /// All layers' eigenvalues together, with tr F = sum of the block traces: the spectrum of F.
  SampleSpectrum merged() const;
};

class MarkovChainModel {
 public:
  /// Splits `net` into Markov layers. Throws UsageError for sigma <= 0 or non-finite, or
  /// noise_draws < 1. `net` must outlive the model.
  MarkovChainModel(const Network& net, MarkovOptions opts);
  ~MarkovChainModel();
  MarkovChainModel(MarkovChainModel&&) noexcept;

  const Network& network() const { return *net_; }
  const MarkovOptions& options() const { return opts_; }
  const std::vector<MarkovLayer>& layers() const { return layers_; }
  /// H: noise values per row (sum of the hidden layers' noise widths).
  int64_t noise_width() const { return noise_width_; }
  /// Rows of the noise (and of every block after the first layer) for N inputs: N * R, input-major.
  int64_t noise_rows(int64_t num_inputs) const { return num_inputs * opts_.noise_draws; }

  /// The spectra of F_l(theta), l = 1..L, at inputs x (N, input_shape...) and standard-normal
  /// noise (N*R, H) (row i*R + r: draw r of input i; layer l in its noise columns).
  /// `rng_index` picks the sampled labels of the output block (use the sample index j).
  /// `after_layer(l)`, if given, is called as each layer's blocks are done (progress reports).
  MarkovSpectrum spectrum(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& noise,
                          uint64_t rng_index = 0, const std::function<void(size_t)>& after_layer = {}) const;

  /// Per-layer sizes and peak memory for N inputs with `threads` worker threads.
  std::vector<MarkovLayerPlan> plan(int64_t num_inputs, int threads) const;

  /// Brute-force oracle for tests: every F_l as a dense (params_l x params_l) matrix from
  /// autograd Jacobians of the layer's outputs, one backward pass per output value.
  std::vector<torch::Tensor> dense_blocks(const torch::Tensor& theta, const torch::Tensor& x,
                                          const torch::Tensor& noise, uint64_t rng_index = 0) const;

 private:
  // Runs the chain, calling visit(l, layer input (rows, ...), layer params) for each layer.
  template <typename Visit>
  void walk(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& noise, Visit&& visit) const;

  const Network* net_;
  MarkovOptions opts_;
  std::vector<MarkovLayer> layers_;
  int64_t noise_width_ = 0;
  std::unique_ptr<Network> output_net_;  // the output Markov layer alone (standard-model Fisher)
};

/// Sample j's noise as drawn by twosed (docs/math.md section 3): the generator Rng(seed, Parameters, j),
/// after the d uniforms of theta^(j), then rows*width standard normals, row-major
/// (input-major). The same whether theta^(j) was drawn or given with --thetas.
torch::Tensor draw_noise(uint64_t seed, uint64_t j, int64_t num_params, int64_t rows, int64_t width);

}  // namespace twosed
