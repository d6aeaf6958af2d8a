// The Layer base class's defaults, the identity channel map, and the registry of the layer
// implementations (one per TWOSED_LAYER_KINDS entry; each in src/model/layers/<kind>.cpp).
#include "model/layers/layer.h"

#include <algorithm>

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
  TORCH_CHECK(false, "map_channels called on a layer that does not act channel by channel: ", spec_.token);
}

ChannelMap ChannelMap::identity(const torch::Tensor& z) {
  const int64_t n = z.size(0), c = z.size(1), q = z.numel() / std::max<int64_t>(n * c, 1);
  ChannelMap map;
  map.index = torch::arange(q, z.options().dtype(torch::kInt64)).view({1, 1, q, 1}).expand({n, c, q, 1}).contiguous();
  map.weight = torch::ones({n, c, q, 1}, z.options());
  return map;
}

std::unique_ptr<Layer> make_layer(const LayerSpec& spec) {
  using Factory = std::unique_ptr<Layer> (*)(const LayerSpec&);
  static const Factory factories[] = {
#define TWOSED_LAYER_FACTORY(kind) &implement_kind<LayerKind::kind>,
      TWOSED_LAYER_KINDS(TWOSED_LAYER_FACTORY)
#undef TWOSED_LAYER_FACTORY
  };
  const auto k = static_cast<size_t>(spec.kind);
  TORCH_CHECK(k < std::size(factories), "unregistered layer kind of token ", spec.token);
  return factories[k](spec);
}

}  // namespace twosed::layers
