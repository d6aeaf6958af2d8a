#include "twosed/model/network.h"

#include <fmt/format.h>

#include "model/layers/layer.h"
#include "twosed/error.h"

namespace twosed {

int64_t ParameterSlice::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

namespace {
// A layer that reads its input flattened (a spec 'f' layer) after an image flattens implicitly;
// the PyTorch module needs an explicit nn::Flatten there, which takes a module index of its own.
bool needs_flatten(const ModelSpec& spec, size_t l) {
  const auto& prev = l == 0 ? spec.input_shape : spec.layers[l - 1].out_shape;
  return layers::descriptor(spec.layers[l].kind).flattens_input() && prev.size() != 1;
}
}  // namespace

Network::Network(ModelSpec spec) : spec_(std::move(spec)) {
  int64_t offset = 0, module_index = 0;
  for (size_t l = 0; l < spec_.layers.size(); ++l) {
    const auto& ls = spec_.layers[l];
    layers_.push_back(layers::make_layer(ls));
    offsets_.push_back(offset);
    if (needs_flatten(spec_, l)) ++module_index;
    const auto& type = layers_.back()->descriptor();
    if (type.parametric()) {
      // The layer's tensors, as its descriptor lists them, in named_parameters() order.
      const double bound = type.init_bound(ls);
      const auto prefix = std::to_string(module_index) + ".";
      for (const auto& p : type.parameter_shapes(ls)) {
        slices_.push_back({prefix + p.name, offset, p.shape, static_cast<int64_t>(l), bound});
        offset += p.numel();
      }
    }
    // to_module() creates one submodule per spec layer, so indices match.
    ++module_index;
  }
}

Network::~Network() = default;
Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;

torch::Tensor Network::layer_params(const torch::Tensor& theta, int64_t l) const {
  const auto& ls = spec_.layers[static_cast<size_t>(l)];
  if (!ls.is_parametric()) return {};
  return theta.narrow(0, offsets_[static_cast<size_t>(l)], ls.num_params());
}

std::vector<torch::Tensor> Network::forward_all(const torch::Tensor& theta, const torch::Tensor& x) const {
  std::vector<torch::Tensor> acts;
  acts.reserve(layers_.size() + 1);
  acts.push_back(x);
  for (size_t l = 0; l < layers_.size(); ++l)
    acts.push_back(layers_[l]->forward(acts.back(), layer_params(theta, static_cast<int64_t>(l))));
  return acts;
}

torch::Tensor Network::forward(const torch::Tensor& theta, const torch::Tensor& x) const {
  torch::Tensor h = x;
  for (size_t l = 0; l < layers_.size(); ++l) h = layers_[l]->forward(h, layer_params(theta, static_cast<int64_t>(l)));
  return h;
}

void Network::backward(const torch::Tensor& theta, const std::vector<torch::Tensor>& acts, const torch::Tensor& g_out,
                       const LayerVisitor& visit) const {
  torch::Tensor g = g_out;
  // The first parametric layer needs no input gradient: stop there.
  int64_t first_parametric = 0;
  while (!spec_.layers[static_cast<size_t>(first_parametric)].is_parametric()) ++first_parametric;
  for (int64_t l = static_cast<int64_t>(layers_.size()) - 1; l >= first_parametric; --l) {
    const auto& layer = *layers_[static_cast<size_t>(l)];
    const auto& in = acts[static_cast<size_t>(l)];
    if (layer.spec().is_parametric()) visit(layer, l, in, g);
    if (l > first_parametric) g = layer.backward_input(g, in, acts[static_cast<size_t>(l) + 1], layer_params(theta, l));
  }
}

torch::Tensor Network::jacobian_rows(const torch::Tensor& theta, const torch::Tensor& x,
                                     const torch::Tensor& g_out) const {
  const auto acts = forward_all(theta, x);
  auto rows = torch::zeros({g_out.size(0) * g_out.size(1), num_params()}, theta.options());
  backward(theta, acts, g_out,
           [&](const layers::Layer& layer, int64_t l, const torch::Tensor& in, const torch::Tensor& g) {
             rows.narrow(1, offsets_[static_cast<size_t>(l)], layer.num_params()).copy_(layer.per_example_grads(in, g));
           });
  return rows;
}

torch::nn::Sequential Network::to_module(const torch::Tensor& theta) const {
  check_theta(*this, theta);
  namespace nn = torch::nn;
  nn::Sequential seq;
  for (size_t l = 0; l < spec_.layers.size(); ++l) {
    if (needs_flatten(spec_, l)) seq->push_back(nn::Flatten());
    seq->push_back(layers_[l]->to_module());
  }
  seq->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  auto named = seq->named_parameters();
  if (static_cast<size_t>(named.size()) != slices_.size())
    throw std::logic_error("to_module: parameter count mismatch");
  for (size_t i = 0; i < slices_.size(); ++i) {
    const auto& s = slices_[i];
    if (named[i].key() != s.name)
      throw std::logic_error(
          fmt::format("to_module: parameter {} is '{}', the layer's descriptor says '{}'", i, named[i].key(), s.name));
    named[i].value().copy_(theta.narrow(0, s.offset, s.numel()).view(s.shape));
  }
  return seq;
}

void check_theta(const Network& net, const torch::Tensor& theta) {
  if (theta.dim() != 1 || theta.size(0) != net.num_params() || theta.scalar_type() != torch::kFloat64)
    throw UsageError(fmt::format("theta must be a float64 vector of length d = {}, got shape {}", net.num_params(),
                                 fmt::join(theta.sizes().vec(), "x")));
}

}  // namespace twosed
