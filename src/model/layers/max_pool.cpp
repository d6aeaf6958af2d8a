// Max pooling pS[sT] (no padding): no parameters; backpropagated rows and Markov channel maps
// follow each window's argmax (ties as in PyTorch).
// Two parts, one per library (src/model/layers/descriptor.h): the descriptor, compiled into
// twosed_core (TWOSED_LAYER_DESCRIPTOR_PART), and the implementation, compiled into twosed.
#include "model/layers/descriptor.h"

#ifdef TWOSED_LAYER_DESCRIPTOR_PART
#include <fmt/format.h>

namespace twosed::layers {
namespace {

class MaxPoolDescriptor final : public LayerDescriptor {
 public:
  LayerKind kind() const override { return LayerKind::MaxPool; }
  char head() const override { return 'p'; }
  std::string form() const override { return "pS[sT]"; }
  void parse(const std::string& tok, LayerSpec& l) const override {
    size_t pos = 1;
    const std::string form = "pS[sT], e.g. p2";
    if (!read_number(tok, pos, l.kernel) || l.kernel < 1) throw TokenError("expected " + form);
    l.stride = l.kernel;
    read_stride_padding(tok, pos, l, /*allow_padding=*/false, form);
  }
  std::vector<std::string> examples() const override { return {"p2", "p3s1"}; }

  void infer_shape(LayerSpec& l) const override {
    require_image(l);
    l.out_shape = {l.in_shape[0], window(l, l.in_shape[1], l.kernel, l.stride, 0),
                   window(l, l.in_shape[2], l.kernel, l.stride, 0)};
  }

  std::string describe(const LayerSpec& l) const override {
    return fmt::format("maxpool {}{}", l.kernel, l.stride != l.kernel ? fmt::format(" s{}", l.stride) : "");
  }

  bool channelwise() const override { return true; }
};

}  // namespace

template <>
const LayerDescriptor& kind_descriptor<LayerKind::MaxPool>() {
  static const MaxPoolDescriptor d;
  return d;
}

}  // namespace twosed::layers

#else  // the implementation part (twosed)

#include "model/layers/layer.h"

namespace twosed::layers {
namespace {

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

  torch::nn::AnyModule to_module() const override {
    return torch::nn::AnyModule(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(spec_.kernel).stride(spec_.stride)));
  }
};

}  // namespace

template <>
std::unique_ptr<Layer> implement_kind<LayerKind::MaxPool>(const LayerSpec& spec) {
  return std::make_unique<MaxPool>(spec);
}

}  // namespace twosed::layers

#endif  // TWOSED_LAYER_DESCRIPTOR_PART
