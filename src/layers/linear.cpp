// Linear layer y = W x + b (x flattened first), with the Kronecker Gram of spec section 7:
// the per-example gradient of row (i,c) is b_ic (x) [x_i; 1], so
// <g_ic, g_jc'> = <b_ic, b_jc'> * (<x_i, x_j> + 1).
#include "layers/layer.h"

namespace twosed::layers {
namespace {

class Linear final : public Layer {
 public:
  using Layer::Layer;

  torch::Tensor weight(const torch::Tensor& p) const {
    return p.narrow(0, 0, spec_.weight_count()).view({spec_.out, spec_.fan_in()});
  }
  torch::Tensor bias(const torch::Tensor& p) const {
    return spec_.bias ? p.narrow(0, spec_.weight_count(), spec_.out) : torch::Tensor();
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& p) const override {
    return torch::nn::functional::linear(x.flatten(1), weight(p), bias(p));
  }

  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor&,
                               const torch::Tensor& p) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1);
    auto g = torch::mm(g_out.reshape({n * r, spec_.out}), weight(p));
    auto shape = x.sizes().vec();
    shape.insert(shape.begin() + 1, r);
    return g.view(shape);
  }

  torch::Tensor per_example_grads(const torch::Tensor& x, const torch::Tensor& g_out) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1), in = spec_.fan_in();
    auto b = g_out.reshape({n, r, spec_.out});
    auto w = (b.unsqueeze(3) * x.reshape({n, 1, 1, in})).reshape({n * r, spec_.out * in});
    if (!spec_.bias) return w;
    return torch::cat({w, b.reshape({n * r, spec_.out})}, 1);
  }

  void add_gram(const torch::Tensor& x, const torch::Tensor& g_out, torch::Tensor& gram, int64_t) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1);
    auto a = x.reshape({n, spec_.fan_in()});
    auto aa = torch::mm(a, a.t());
    if (spec_.bias) aa.add_(1.0);
    auto b = g_out.reshape({n * r, spec_.out});
    auto bb = torch::zeros({n * r, n * r}, b.options());
    syrk_lower(b, bb);
    gram.view({n, r, n, r}).addcmul_(bb.view({n, r, n, r}), aa.view({n, 1, n, 1}));
  }
};

}  // namespace

std::unique_ptr<Layer> make_linear(const LayerSpec& spec) {
  return std::make_unique<Linear>(spec);
}

}  // namespace twosed::layers
