// A network built from a ModelSpec: parameters as one flat float64 vector theta, ordered as
// PyTorch's named_parameters() (layer by layer, weight then bias, row-major; docs/math.md section 1).
//
// The Network is stateless with respect to parameters: every call takes theta, so one Network
// serves all M parameter samples. It runs the forward pass, carries backpropagated rows down
// the layers (exact Jacobians, one implementation per layer type in src/layers/), and can
// build an equivalent torch::nn::Sequential for training and for checking against PyTorch.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "twosed/model/model_spec.h"

namespace twosed {

namespace layers {
class Layer;
}

/// Where one named parameter tensor sits in theta.
struct ParameterSlice {
  std::string name;            ///< as in named_parameters(), e.g. "0.weight"
  int64_t offset = 0;          ///< first index in theta
  std::vector<int64_t> shape;  ///< e.g. {out, in} or {out, C, k, k} or {out}
  int64_t layer = 0;           ///< index of the layer in ModelSpec::layers
  double init_bound = 0.0;     ///< 1/sqrt(fan_in): PyTorch's default init support (docs/math.md section 3)
  int64_t numel() const;
};

class Network {
 public:
  explicit Network(ModelSpec spec);
  ~Network();
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;

  const ModelSpec& spec() const { return spec_; }
  int64_t num_params() const { return spec_.num_params(); }
  int64_t num_outputs() const { return spec_.num_outputs(); }
  const std::vector<ParameterSlice>& parameters() const { return slices_; }

  /// f(x; theta): x (N, input_shape...) float64, theta (d) float64 -> (N, k).
  torch::Tensor forward(const torch::Tensor& theta, const torch::Tensor& x) const;

  /// Forward pass keeping every layer's input: acts[l] enters layer l, acts.back() is f(x).
  std::vector<torch::Tensor> forward_all(const torch::Tensor& theta, const torch::Tensor& x) const;

  /// Called for each parametric layer during backward(): the layer, its index, its input and
  /// the rows backpropagated to its output, (N, R, out_shape...).
  using LayerVisitor = std::function<void(const layers::Layer&, int64_t layer_index, const torch::Tensor& input,
                                          const torch::Tensor& g_out)>;

  /// Backpropagates R rows per example from the output: g_out (N, R, k) holds, for each
  /// example, R covectors on the outputs. Visits parametric layers from last to first.
  void backward(const torch::Tensor& theta, const std::vector<torch::Tensor>& acts, const torch::Tensor& g_out,
                const LayerVisitor& visit) const;

  /// Per-example gradients of every row of g_out with respect to theta: (N*R, d). Memory N*R*d.
  torch::Tensor jacobian_rows(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& g_out) const;

  /// Layer l's implementation (forward pass and Jacobians; src/layers/layer.h).
  const layers::Layer& layer(int64_t l) const { return *layers_[static_cast<size_t>(l)]; }
  /// Index in theta of layer l's first parameter.
  int64_t param_offset(int64_t l) const { return offsets_[static_cast<size_t>(l)]; }

  /// This layer's slice of theta (empty tensor for non-parametric layers).
  torch::Tensor layer_params(const torch::Tensor& theta, int64_t layer_index) const;

  /// An equivalent PyTorch module with parameters copied from theta (float64).
  torch::nn::Sequential to_module(const torch::Tensor& theta) const;

 private:
  ModelSpec spec_;
  std::vector<std::unique_ptr<layers::Layer>> layers_;
  std::vector<int64_t> offsets_;  // per layer: first index of its parameters in theta
  std::vector<ParameterSlice> slices_;
};

/// Checks that theta is a float64 vector of length d (throws UsageError otherwise).
void check_theta(const Network& net, const torch::Tensor& theta);

}  // namespace twosed
