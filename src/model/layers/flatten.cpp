// Explicit flatten: no parameters; every value keeps its channel, so a Markov channel map passes
// through unchanged.
// Two parts, one per library (src/model/layers/descriptor.h): the descriptor, compiled into
// twosed_core (TWOSED_LAYER_DESCRIPTOR_PART), and the implementation, compiled into twosed.
#include "model/layers/descriptor.h"

#ifdef TWOSED_LAYER_DESCRIPTOR_PART

namespace twosed::layers {
namespace {

class FlattenDescriptor final : public LayerDescriptor {
 public:
  LayerKind kind() const override { return LayerKind::Flatten; }
  std::vector<std::string> keywords() const override { return {"flatten"}; }
  void parse(const std::string&, LayerSpec&) const override {}
  std::vector<std::string> examples() const override { return keywords(); }

  void infer_shape(LayerSpec& l) const override { l.out_shape = {prod(l.in_shape)}; }

  std::string describe(const LayerSpec&) const override { return "flatten"; }

  bool channelwise() const override { return true; }
};

}  // namespace

template <>
const LayerDescriptor& kind_descriptor<LayerKind::Flatten>() {
  static const FlattenDescriptor d;
  return d;
}

}  // namespace twosed::layers

#else  // the implementation part (twosed)

#include "model/layers/layer.h"

namespace twosed::layers {
namespace {

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

  torch::nn::AnyModule to_module() const override { return torch::nn::AnyModule(torch::nn::Flatten()); }
};

}  // namespace

template <>
std::unique_ptr<Layer> implement_kind<LayerKind::Flatten>(const LayerSpec& spec) {
  return std::make_unique<Flatten>(spec);
}

}  // namespace twosed::layers

#endif  // TWOSED_LAYER_DESCRIPTOR_PART
