// Elementwise activations (relu, tanh, sigmoid, gelu): no parameters; they carry backpropagated
// rows through (backward_input) and scale a Markov channel map by phi'.
// Two parts, one per library (src/model/layers/descriptor.h): the descriptor, compiled into
// twosed_core (TWOSED_LAYER_DESCRIPTOR_PART), and the implementation, compiled into twosed.
#include "model/layers/descriptor.h"

#ifdef TWOSED_LAYER_DESCRIPTOR_PART

namespace twosed::layers {
namespace {

class ActivationDescriptor final : public LayerDescriptor {
 public:
  LayerKind kind() const override { return LayerKind::Activation; }
  std::vector<std::string> keywords() const override { return {"relu", "tanh", "sigmoid", "gelu"}; }
  void parse(const std::string& tok, LayerSpec& l) const override { l.activation = parse_activation(tok); }
  std::vector<std::string> examples() const override { return keywords(); }

  void infer_shape(LayerSpec& l) const override { l.out_shape = l.in_shape; }

  std::string describe(const LayerSpec& l) const override { return activation_name(l.activation); }

  bool channelwise() const override { return true; }
};

}  // namespace

template <>
const LayerDescriptor& kind_descriptor<LayerKind::Activation>() {
  static const ActivationDescriptor d;
  return d;
}

}  // namespace twosed::layers

#else  // the implementation part (twosed)

#include <cmath>

#include "model/layers/layer.h"

namespace twosed::layers {
namespace {

class ActivationLayer final : public Layer {
 public:
  using Layer::Layer;

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor&) const override {
    switch (spec_.activation) {
      case Activation::ReLU:
        return torch::relu(x);
      case Activation::Tanh:
        return torch::tanh(x);
      case Activation::Sigmoid:
        return torch::sigmoid(x);
      case Activation::GELU:
        return torch::gelu(x);  // exact (erf) form, PyTorch's default
    }
    return x;
  }

  // Derivative at the pre-activation x (using y where it is cheaper).
  torch::Tensor derivative(const torch::Tensor& x, const torch::Tensor& y) const {
    switch (spec_.activation) {
      case Activation::ReLU:
        return (x > 0).to(x.dtype());
      case Activation::Tanh:
        return 1.0 - y * y;
      case Activation::Sigmoid:
        return y * (1.0 - y);
      case Activation::GELU: {
        // d/dx [x Phi(x)] = Phi(x) + x phi(x)
        const double inv_sqrt2 = 1.0 / std::sqrt(2.0), inv_sqrt2pi = 1.0 / std::sqrt(2.0 * M_PI);
        return 0.5 * (1.0 + torch::erf(x * inv_sqrt2)) + x * torch::exp(-0.5 * x * x) * inv_sqrt2pi;
      }
    }
    return torch::ones_like(x);
  }

  // In place (Layer::backward_input allows it): the rows are the largest tensor of a wide
  // layer's backward sweep, and a fresh one costs an allocation and its page faults per sample.
  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor& y,
                               const torch::Tensor&) const override {
    auto g = g_out;
    if (spec_.activation == Activation::ReLU) return g.mul_((x > 0).unsqueeze(1));
    return g.mul_(derivative(x, y).unsqueeze(1));
  }

  // Elementwise: each output position scales its own row by phi'(x).
  ChannelMap map_channels(const ChannelMap& in, const torch::Tensor& x, const torch::Tensor& y) const override {
    const int64_t n = in.weight.size(0), c = in.weight.size(1), p = in.weight.size(2);
    return {in.index, in.weight * derivative(x, y).reshape({n, c, p, 1})};
  }

  torch::nn::AnyModule to_module() const override {
    namespace nn = torch::nn;
    switch (spec_.activation) {
      case Activation::ReLU:
        return nn::AnyModule(nn::ReLU());
      case Activation::Tanh:
        return nn::AnyModule(nn::Tanh());
      case Activation::Sigmoid:
        return nn::AnyModule(nn::Sigmoid());
      case Activation::GELU:
        return nn::AnyModule(nn::GELU());
    }
    TORCH_CHECK(false, "unknown activation in layer ", spec_.token);
  }
};

}  // namespace

template <>
std::unique_ptr<Layer> implement_kind<LayerKind::Activation>(const LayerSpec& spec) {
  return std::make_unique<ActivationLayer>(spec);
}

}  // namespace twosed::layers

#endif  // TWOSED_LAYER_DESCRIPTOR_PART
