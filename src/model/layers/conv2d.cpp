// Conv2d layer (stride, zero padding, no dilation). Its per-example gradient does not factor
// as a single Kronecker product, so the Gram is accumulated from explicit per-example
// gradients, a block of output channels at a time to bound memory (docs/math.md section 7): for
// example i and channel o, dW_o = sum_p b_{o,p} * patch_p(x_i), a batched matrix product of the
// backpropagated map with the unfolded input.
// Two parts, one per library (src/model/layers/descriptor.h): the descriptor, compiled into
// twosed_core (TWOSED_LAYER_DESCRIPTOR_PART), and the implementation, compiled into twosed.
#include "model/layers/descriptor.h"

#ifdef TWOSED_LAYER_DESCRIPTOR_PART
#include <fmt/format.h>

namespace twosed::layers {
namespace {

// cOkS[sT][pP]: O filters of size SxS, stride T (default 1), zero padding P < S (default 0).
class Conv2dDescriptor final : public LayerDescriptor {
 public:
  LayerKind kind() const override { return LayerKind::Conv2d; }
  char head() const override { return 'c'; }
  std::string form() const override { return "cOkS[sT][pP]"; }
  void parse(const std::string& tok, LayerSpec& l) const override {
    size_t pos = 1;
    const TokenError bad("expected cOkS[sT][pP], e.g. c32k3");
    if (!read_number(tok, pos, l.out) || l.out < 1) throw bad;
    if (pos >= tok.size() || tok[pos] != 'k') throw bad;
    ++pos;
    if (!read_number(tok, pos, l.kernel) || l.kernel < 1) throw bad;
    read_stride_padding(tok, pos, l, /*allow_padding=*/true, form());
  }
  std::vector<std::string> examples() const override { return {"c3k3s2p1", "c2k2", "c1k6"}; }

  void infer_shape(LayerSpec& l) const override {
    require_image(l);
    if (l.padding >= l.kernel) throw TokenError("padding must be smaller than the kernel");
    const int64_t ho = window(l, l.in_shape[1], l.kernel, l.stride, l.padding);
    const int64_t wo = window(l, l.in_shape[2], l.kernel, l.stride, l.padding);
    l.out_shape = {l.out, ho, wo};
  }

  bool parametric() const override { return true; }
  std::vector<ParameterShape> parameter_shapes(const LayerSpec& l) const override {
    std::vector<ParameterShape> p{{"weight", {l.out, l.in_shape.at(0), l.kernel, l.kernel}}};
    if (l.bias) p.push_back({"bias", {l.out}});
    return p;
  }
  int64_t fan_in(const LayerSpec& l) const override { return l.in_shape.at(0) * l.kernel * l.kernel; }

  std::string describe(const LayerSpec& l) const override {
    return fmt::format("conv {}->{} k{}{}{}", l.in_shape[0], l.out, l.kernel,
                       l.stride != 1 ? fmt::format(" s{}", l.stride) : "",
                       l.padding != 0 ? fmt::format(" p{}", l.padding) : "");
  }
};

}  // namespace

template <>
const LayerDescriptor& kind_descriptor<LayerKind::Conv2d>() {
  static const Conv2dDescriptor d;
  return d;
}

}  // namespace twosed::layers

#else  // the implementation part (twosed)
#include "model/layers/gram_forms.h"
#include "model/layers/layer.h"

namespace twosed::layers {
namespace {

class Conv2d final : public Layer {
 public:
  using Layer::Layer;

  int64_t patch() const { return spec_.fan_in(); }  // C*k*k

  torch::Tensor weight(const torch::Tensor& p) const {
    return p.narrow(0, 0, spec_.weight_count()).view({spec_.out, spec_.in_shape[0], spec_.kernel, spec_.kernel});
  }
  torch::Tensor bias(const torch::Tensor& p) const {
    return spec_.bias ? p.narrow(0, spec_.weight_count(), spec_.out) : torch::Tensor();
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& p) const override {
    return torch::conv2d(x, weight(p), bias(p), spec_.stride, spec_.padding);
  }

  torch::nn::AnyModule to_module() const override {
    return torch::nn::AnyModule(torch::nn::Conv2d(torch::nn::Conv2dOptions(spec_.in_shape[0], spec_.out, spec_.kernel)
                                                      .stride(spec_.stride)
                                                      .padding(spec_.padding)
                                                      .bias(spec_.bias)));
  }

  torch::Tensor backward_input(const torch::Tensor& g_out, const torch::Tensor& x, const torch::Tensor&,
                               const torch::Tensor& p) const override {
    const int64_t n = g_out.size(0), r = g_out.size(1);
    const int64_t ho = spec_.out_shape[1], wo = spec_.out_shape[2];
    // The transposed convolution is the exact adjoint; output_padding recovers input rows and
    // columns that the stride skipped.
    const int64_t oph = x.size(2) + 2 * spec_.padding - ((ho - 1) * spec_.stride + spec_.kernel);
    const int64_t opw = x.size(3) + 2 * spec_.padding - ((wo - 1) * spec_.stride + spec_.kernel);
    auto g = torch::conv_transpose2d(g_out.reshape({n * r, spec_.out, ho, wo}), weight(p), {}, spec_.stride,
                                     spec_.padding, {oph, opw});
    return split_rows(g, n, r);
  }

  // Unfolded input: (N, C*k*k, L) with L = Ho*Wo output positions.
  torch::Tensor unfold(const torch::Tensor& x) const {
    return torch::nn::functional::unfold(x, torch::nn::functional::UnfoldFuncOptions({spec_.kernel, spec_.kernel})
                                                .padding(spec_.padding)
                                                .stride(spec_.stride));
  }

  ConvShape shape() const { return {spec_.out, 1, patch(), spec_.out_shape[1] * spec_.out_shape[2], spec_.bias}; }
  torch::Tensor maps(const torch::Tensor& g_out) const {  // (N, R, O, L)
    return g_out.reshape({g_out.size(0), g_out.size(1), spec_.out, spec_.out_shape[1] * spec_.out_shape[2]});
  }

  torch::Tensor design_rows(const torch::Tensor& x) const override {
    auto rows = unfold(x).transpose(1, 2);  // (N, L, C*k*k), channel-major like the weight
    if (spec_.bias) rows = torch::cat({rows, torch::ones({rows.size(0), rows.size(1), 1}, rows.options())}, 2);
    return rows.contiguous();
  }

  torch::Tensor per_example_grads(const torch::Tensor& x, const torch::Tensor& g_out) const override {
    auto [w, b] = conv_filter_grads(unfold(x), maps(g_out), shape(), 0, spec_.out);
    return spec_.bias ? torch::cat({w, b}, 1) : w;
  }

  void add_gram(const torch::Tensor& x, const torch::Tensor& g_out, torch::Tensor& gram,
                int64_t memory_budget) const override {
    add_conv_gram(unfold(x), maps(g_out), shape(), ConvGramForm::PerExample, memory_budget, gram);
  }
};

}  // namespace

template <>
std::unique_ptr<Layer> implement_kind<LayerKind::Conv2d>(const LayerSpec& spec) {
  return std::make_unique<Conv2d>(spec);
}

}  // namespace twosed::layers

#endif  // TWOSED_LAYER_DESCRIPTOR_PART
