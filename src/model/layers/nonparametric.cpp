// Layers without parameters: elementwise activations, pooling, flatten. They only carry
// backpropagated rows through (backward_input) and never contribute to the Fisher directly.
#include <algorithm>
#include <cmath>

#include "model/layers/layer.h"

namespace twosed::layers {

torch::Tensor Layer::per_example_grads(const torch::Tensor&, const torch::Tensor&) const {
  TORCH_CHECK(false, "per_example_grads called on non-parametric layer ", spec_.token);
}

void Layer::add_gram(const torch::Tensor&, const torch::Tensor&, torch::Tensor&, int64_t) const {
  TORCH_CHECK(false, "add_gram called on non-parametric layer ", spec_.token);
}

torch::Tensor Layer::design_rows(const torch::Tensor&) const {
  TORCH_CHECK(false, "design_rows called on non-parametric layer ", spec_.token);
}

ChannelMap Layer::map_channels(const ChannelMap&, const torch::Tensor&, const torch::Tensor&) const {
  TORCH_CHECK(false, "map_channels called on parametric layer ", spec_.token);
}

ChannelMap ChannelMap::identity(const torch::Tensor& z) {
  const int64_t n = z.size(0), c = z.size(1), q = z.numel() / std::max<int64_t>(n * c, 1);
  ChannelMap map;
  map.index = torch::arange(q, z.options().dtype(torch::kInt64)).view({1, 1, q, 1}).expand({n, c, q, 1}).contiguous();
  map.weight = torch::ones({n, c, q, 1}, z.options());
  return map;
}

namespace {

// Rows of `t` (N, C, P, K) at positions pos (L, J) of dim 2: (N, C, L, J*K).
torch::Tensor gather_positions(const torch::Tensor& t, const torch::Tensor& pos) {
  const int64_t n = t.size(0), c = t.size(1), k = t.size(3), l = pos.size(0), j = pos.size(1);
  return t.index_select(2, pos.reshape({l * j})).reshape({n, c, l, j * k});
}

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

  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor& y,
                               const torch::Tensor&) const override {
    return g_out * derivative(x, y).unsqueeze(1);
  }

  // Elementwise: each output position scales its own row by phi'(x).
  ChannelMap map_channels(const ChannelMap& in, const torch::Tensor& x, const torch::Tensor& y) const override {
    const int64_t n = in.weight.size(0), c = in.weight.size(1), p = in.weight.size(2);
    return {in.index, in.weight * derivative(x, y).reshape({n, c, p, 1})};
  }
};

class MaxPool final : public Layer {
 public:
  using Layer::Layer;

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor&) const override {
    return torch::max_pool2d(x, spec_.kernel, spec_.stride);
  }

  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor&,
                               const torch::Tensor&) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1), c = x.size(1), hw = x.size(2) * x.size(3);
    const int64_t l = g_out.size(3) * g_out.size(4);
    // Recomputing the argmax is cheaper than keeping it; ties resolve as in PyTorch.
    auto idx = std::get<1>(torch::max_pool2d_with_indices(x, spec_.kernel, spec_.stride));
    auto g = torch::zeros({n, r, c, hw}, g_out.options());
    g.scatter_add_(3, idx.reshape({n, 1, c, l}).expand({n, r, c, l}), g_out.reshape({n, r, c, l}));
    return g.view({n, r, c, x.size(2), x.size(3)});
  }

  // Each pooled position takes the row of its window's argmax (ties as in PyTorch).
  ChannelMap map_channels(const ChannelMap& in, const torch::Tensor& x, const torch::Tensor&) const override {
    const int64_t n = x.size(0), c = x.size(1), k = in.index.size(3);
    auto idx = std::get<1>(torch::max_pool2d_with_indices(x, spec_.kernel, spec_.stride));
    const int64_t l = idx.size(2) * idx.size(3);
    auto where = idx.reshape({n, c, l, 1}).expand({n, c, l, k});
    return {in.index.gather(2, where), in.weight.gather(2, where)};
  }
};

class AvgPool final : public Layer {
 public:
  using Layer::Layer;

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor&) const override {
    return torch::avg_pool2d(x, spec_.kernel, spec_.stride);
  }

  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor&,
                               const torch::Tensor&) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1), c = x.size(1), k = spec_.kernel, s = spec_.stride;
    const int64_t ho = g_out.size(3), wo = g_out.size(4);
    // Average pooling is a depthwise convolution with a constant kernel; its adjoint is the
    // transposed convolution.
    auto kernel = torch::full({c, 1, k, k}, 1.0 / static_cast<double>(k * k), g_out.options());
    const int64_t oph = x.size(2) - ((ho - 1) * s + k), opw = x.size(3) - ((wo - 1) * s + k);
    auto g = torch::conv_transpose2d(g_out.reshape({n * r, c, ho, wo}), kernel, {}, s, 0, {oph, opw}, c);
    return split_rows(g, n, r);
  }

  // Each pooled position averages its window's k*k rows: K grows k*k-fold.
  ChannelMap map_channels(const ChannelMap& in, const torch::Tensor& x, const torch::Tensor& y) const override {
    const int64_t k = spec_.kernel, s = spec_.stride, w = x.size(3), ho = y.size(2), wo = y.size(3);
    auto pos = torch::empty({ho * wo, k * k}, in.index.options());
    auto pa = pos.accessor<int64_t, 2>();
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox)
        for (int64_t dy = 0; dy < k; ++dy)
          for (int64_t dx = 0; dx < k; ++dx) pa[oy * wo + ox][dy * k + dx] = (oy * s + dy) * w + (ox * s + dx);
    return {gather_positions(in.index, pos), gather_positions(in.weight, pos) / static_cast<double>(k * k)};
  }
};

class Flatten final : public Layer {
 public:
  using Layer::Layer;

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor&) const override { return x.flatten(1); }

  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor&,
                               const torch::Tensor&) const override {
    auto shape = x.sizes().vec();
    shape.insert(shape.begin() + 1, g_out.size(1));
    return g_out.reshape(shape);
  }

  // Flattening keeps every value in its channel: positions are unchanged.
  ChannelMap map_channels(const ChannelMap& in, const torch::Tensor&, const torch::Tensor&) const override {
    return in;
  }
};

}  // namespace

std::unique_ptr<Layer> make_nonparametric(const LayerSpec& spec) {
  switch (spec.kind) {
    case LayerKind::Activation:
      return std::make_unique<ActivationLayer>(spec);
    case LayerKind::MaxPool:
      return std::make_unique<MaxPool>(spec);
    case LayerKind::AvgPool:
      return std::make_unique<AvgPool>(spec);
    case LayerKind::Flatten:
      return std::make_unique<Flatten>(spec);
    default:
      break;
  }
  TORCH_CHECK(false, "not a non-parametric layer: ", spec.token);
}

std::unique_ptr<Layer> make_layer(const LayerSpec& spec) {
  if (spec.kind == LayerKind::Linear) return make_linear(spec);
  if (spec.kind == LayerKind::Conv2d) return make_conv2d(spec);
  return make_nonparametric(spec);
}

}  // namespace twosed::layers
