// Average pooling aS[sT] (no padding): no parameters; a depthwise convolution with a constant
// kernel, so each pooled position of a Markov channel map averages its window's k*k rows.
// Two parts, one per library (src/model/layers/descriptor.h): the descriptor, compiled into
// twosed_core (TWOSED_LAYER_DESCRIPTOR_PART), and the implementation, compiled into twosed.
#include "model/layers/descriptor.h"

#ifdef TWOSED_LAYER_DESCRIPTOR_PART
#include <fmt/format.h>

namespace twosed::layers {
namespace {

class AvgPoolDescriptor final : public LayerDescriptor {
 public:
  LayerKind kind() const override { return LayerKind::AvgPool; }
  char head() const override { return 'a'; }
  std::string form() const override { return "aS[sT]"; }
  void parse(const std::string& tok, LayerSpec& l) const override {
    size_t pos = 1;
    const std::string form = "aS[sT], e.g. a2";
    if (!read_number(tok, pos, l.kernel) || l.kernel < 1) throw TokenError("expected " + form);
    l.stride = l.kernel;
    read_stride_padding(tok, pos, l, /*allow_padding=*/false, form);
  }
  std::vector<std::string> examples() const override { return {"a2", "a2s1", "a3s2"}; }

  void infer_shape(LayerSpec& l) const override {
    require_image(l);
    l.out_shape = {l.in_shape[0], window(l, l.in_shape[1], l.kernel, l.stride, 0),
                   window(l, l.in_shape[2], l.kernel, l.stride, 0)};
  }

  std::string describe(const LayerSpec& l) const override {
    return fmt::format("avgpool {}{}", l.kernel, l.stride != l.kernel ? fmt::format(" s{}", l.stride) : "");
  }

  bool channelwise() const override { return true; }
  int64_t map_terms(const LayerSpec& l) const override { return l.kernel * l.kernel; }
};

}  // namespace

template <>
const LayerDescriptor& kind_descriptor<LayerKind::AvgPool>() {
  static const AvgPoolDescriptor d;
  return d;
}

}  // namespace twosed::layers

#else  // the implementation part (twosed)

#include "model/layers/layer.h"

namespace twosed::layers {
namespace {

// Rows of `t` (N, C, P, K) at positions pos (L, J) of dim 2: (N, C, L, J*K).
torch::Tensor gather_positions(const torch::Tensor& t, const torch::Tensor& pos) {
  const int64_t n = t.size(0), c = t.size(1), k = t.size(3), l = pos.size(0), j = pos.size(1);
  return t.index_select(2, pos.reshape({l * j})).reshape({n, c, l, j * k});
}

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

  torch::nn::AnyModule to_module() const override {
    return torch::nn::AnyModule(torch::nn::AvgPool2d(torch::nn::AvgPool2dOptions(spec_.kernel).stride(spec_.stride)));
  }
};

}  // namespace

template <>
std::unique_ptr<Layer> implement_kind<LayerKind::AvgPool>(const LayerSpec& spec) {
  return std::make_unique<AvgPool>(spec);
}

}  // namespace twosed::layers

#endif  // TWOSED_LAYER_DESCRIPTOR_PART
