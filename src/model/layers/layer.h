// Internal: one network operation, with its forward pass and its exact Jacobians.
//
// Everything the Fisher code needs from a layer lives here, once per layer type (docs/math.md section 7),
// beside the type's torch-free LayerDescriptor in src/model/layers/<kind>.cpp (descriptor.h):
// the forward pass, the vector-Jacobian product with respect to the layer's input (to carry
// backpropagated rows down the network), and, for parametric layers, per-example parameter
// gradients and their Gram matrix. The standard model, the dense oracle and the benchmarks all
// go through these functions.
//
// Shapes: x is (N, in_shape...), one row per example. Backpropagated quantities carry R rows
// per example (R = k for the exact Fisher, 1 for sampled labels): g is (N, R, shape...).
#pragma once

#include <torch/torch.h>

#include <memory>

#include "model/layers/descriptor.h"
#include "twosed/model/model_spec.h"

namespace twosed::layers {

/// The Jacobian of a Markov layer's non-parametric tail, channel by channel (docs/math.md section 2,
/// per-unit split). z is the parametric layer's output, (N, C, Q positions); y the tail's
/// output, (N, C, P positions). Because the tail acts channel by channel, y[i,c,p] depends on
/// z[i,c,:] only:  d y[i,c,p] / d z[i,c,:] = sum_k weight[i,c,p,k] * e_{index[i,c,p,k]}.
/// For a Linear layer C is the number of output units and Q = P = 1.
struct ChannelMap {
  torch::Tensor index;   ///< (N, C, P, K) int64: positions within channel c of z
  torch::Tensor weight;  ///< (N, C, P, K) float64
  /// The identity on z (N, C, Q...): K = 1.
  static ChannelMap identity(const torch::Tensor& z);
};

class Layer {
 public:
  explicit Layer(LayerSpec spec) : spec_(std::move(spec)) {}
  virtual ~Layer() = default;

  const LayerSpec& spec() const { return spec_; }
  /// What its type says about it without LibTorch: shapes, parameter shapes, description.
  const LayerDescriptor& descriptor() const { return layers::descriptor(spec_.kind); }

  /// y = layer(x) at parameters `params` (this layer's slice of theta; empty if non-parametric).
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& params) const = 0;

  /// g_in = g_out * dy/dx for every row: g_out (N, R, out...), returns (N, R, in...).
  /// `x` and `y` are this layer's input and output from forward(). It may overwrite g_out's
  /// values and return them (elementwise layers do: one pass over the rows instead of a new
  /// (N, R, ...) tensor); callers pass a g_out they do not read again.
  virtual torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor& y,
                                       const torch::Tensor& params) const = 0;

  /// Parametric layers: per-row parameter gradients, (N*R, num_params()), in the layer's
  /// parameter order (weight row-major, then bias).
  virtual torch::Tensor per_example_grads(const torch::Tensor& x, const torch::Tensor& g_out) const;

  /// Parametric layers: K += G G^T with G = per_example_grads(x, g_out), (N*R) x (N*R), without
  /// necessarily forming G (Kronecker form for Linear, output-channel chunks for Conv2d).
  /// Only the lower triangle (with the diagonal) of K is updated; the upper triangle is left as
  /// is (see linalg::symmetrize_from_lower). `memory_budget` bounds the bytes of any temporary.
  virtual void add_gram(const torch::Tensor& x, const torch::Tensor& g_out, torch::Tensor& gram,
                        int64_t memory_budget) const;

  /// Parametric layers: the design rows of every example, (N, Q, D). Row q holds what the
  /// pre-activation of any channel at output position q is linear in: a Linear layer's input
  /// (Q = 1), a Conv2d layer's input patch at q (C*k*k values in weight order); then a 1 for the
  /// bias. Channel c's parameters (its weight row or filter, then its bias) dotted with row q
  /// give z[i,c,q], so d z[i,c,q] / d theta_c = row q (docs/math.md section 2, P_iu).
  virtual torch::Tensor design_rows(const torch::Tensor& x) const;

  /// Non-parametric layers that act channel by channel (activations, pooling, flatten): the map
  /// of this layer's output from `in`, the map of its input `x` (forward output `y`).
  virtual ChannelMap map_channels(const ChannelMap& in, const torch::Tensor& x, const torch::Tensor& y) const;

  /// The equivalent LibTorch module (float32, freshly initialised; Network::to_module() copies
  /// theta into it). A layer whose descriptor flattens_input() gets its nn::Flatten from there.
  virtual torch::nn::AnyModule to_module() const = 0;

  int64_t num_params() const { return spec_.num_params(); }

 protected:
  LayerSpec spec_;
};

/// The implementation of spec's layer type (the registry table, layer.cpp).
std::unique_ptr<Layer> make_layer(const LayerSpec& spec);

/// Defined once per layer type, in src/model/layers/<kind>.cpp.
template <LayerKind K>
std::unique_ptr<Layer> implement_kind(const LayerSpec& spec);
#define TWOSED_DECLARE_IMPLEMENTATION(kind) \
  template <>                               \
  std::unique_ptr<Layer> implement_kind<LayerKind::kind>(const LayerSpec& spec);
TWOSED_LAYER_KINDS(TWOSED_DECLARE_IMPLEMENTATION)
#undef TWOSED_DECLARE_IMPLEMENTATION

/// (N, R, rest...) -> (N*R, rest...) and back: rows of backpropagated quantities.
inline torch::Tensor merge_rows(const torch::Tensor& g) {
  auto sizes = g.sizes().vec();
  std::vector<int64_t> out{sizes[0] * sizes[1]};
  out.insert(out.end(), sizes.begin() + 2, sizes.end());
  return g.reshape(out);
}
inline torch::Tensor split_rows(const torch::Tensor& g, int64_t n, int64_t r) {
  auto sizes = g.sizes().vec();
  std::vector<int64_t> out{n, r};
  out.insert(out.end(), sizes.begin() + 1, sizes.end());
  return g.reshape(out);
}

}  // namespace twosed::layers
