// Linear layer y = W x + b (x flattened first), with the Kronecker Gram of docs/math.md section 7:
// the per-example gradient of row (i,c) is b_ic (x) [x_i; 1], so
// <g_ic, g_jc'> = <b_ic, b_jc'> * (<x_i, x_j> + 1).
// Two parts, one per library (src/model/layers/descriptor.h): the descriptor, compiled into
// twosed_core (TWOSED_LAYER_DESCRIPTOR_PART), and the implementation, compiled into twosed.
#include "model/layers/descriptor.h"

#ifdef TWOSED_LAYER_DESCRIPTOR_PART
#include <fmt/format.h>

namespace twosed::layers {
namespace {

// fO: a Linear layer with O outputs; it flattens a CxHxW input first. mlp specs make Linear
// layers from their sizes directly (model_spec.cpp).
class LinearDescriptor final : public LayerDescriptor {
 public:
  LayerKind kind() const override { return LayerKind::Linear; }
  char head() const override { return 'f'; }
  std::string form() const override { return "fO"; }
  void parse(const std::string& tok, LayerSpec& l) const override {
    size_t pos = 1;
    if (!read_number(tok, pos, l.out) || l.out < 1 || pos != tok.size()) throw TokenError("expected fO, e.g. f10");
  }
  std::vector<std::string> examples() const override { return {"f4", "f1"}; }

  void infer_shape(LayerSpec& l) const override {
    l.in_shape = {prod(l.in_shape)};
    l.out_shape = {l.out};
  }
  bool flattens_input() const override { return true; }
  bool ends_network() const override { return true; }

  bool parametric() const override { return true; }
  std::vector<ParameterShape> parameter_shapes(const LayerSpec& l) const override {
    std::vector<ParameterShape> p{{"weight", {l.out, fan_in(l)}}};
    if (l.bias) p.push_back({"bias", {l.out}});
    return p;
  }
  int64_t fan_in(const LayerSpec& l) const override { return prod(l.in_shape); }

  std::string describe(const LayerSpec& l) const override { return fmt::format("linear {}->{}", fan_in(l), l.out); }

  bool shares_input_gram() const override { return true; }
};

}  // namespace

template <>
const LayerDescriptor& kind_descriptor<LayerKind::Linear>() {
  static const LinearDescriptor d;
  return d;
}

}  // namespace twosed::layers

#else  // the implementation part (twosed)
#include "linalg/scratch.h"
#include "model/layers/gram_forms.h"
#include "model/layers/layer.h"

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

  // Network::to_module() puts the nn::Flatten before it (LayerDescriptor::flattens_input).
  torch::nn::AnyModule to_module() const override {
    return torch::nn::AnyModule(
        torch::nn::Linear(torch::nn::LinearOptions(spec_.fan_in(), spec_.out).bias(spec_.bias)));
  }

  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor&,
                               const torch::Tensor& p) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1);
    // From the scratch pool: at 16,384 inputs these rows are the sample's largest tensor.
    auto g = linalg::scratch_empty({n * r, spec_.fan_in()}, g_out.options());
    torch::mm_out(g, g_out.reshape({n * r, spec_.out}), weight(p));
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

  torch::Tensor design_rows(const torch::Tensor& x) const override {
    auto a = x.flatten(1);
    if (spec_.bias) a = torch::cat({a, torch::ones({a.size(0), 1}, a.options())}, 1);
    return a.unsqueeze(1).contiguous();
  }

  void add_gram(const torch::Tensor& x, const torch::Tensor& g_out, torch::Tensor& gram, int64_t) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1);
    add_kronecker_gram(x.reshape({n, spec_.fan_in()}), spec_.bias, g_out.reshape({n * r, spec_.out}), gram);
  }
};

}  // namespace

template <>
std::unique_ptr<Layer> implement_kind<LayerKind::Linear>(const LayerSpec& spec) {
  return std::make_unique<Linear>(spec);
}

}  // namespace twosed::layers

#endif  // TWOSED_LAYER_DESCRIPTOR_PART
