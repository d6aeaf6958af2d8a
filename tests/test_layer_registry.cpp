// The layer registry (src/model/layers/descriptor.h): every registered layer type, in a tiny
// network of its own, agrees with itself. Its parameters are the shapes its descriptor declares,
// its LibTorch module computes what the Network computes at the same theta, and it describes
// itself. A new layer type is checked here as soon as it has its registry line.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/layers/descriptor.h"
#include "model/layers/layer.h"
#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"

using namespace twosed;

namespace {

// The module and our functional forward run the same float64 kernels in a different order.
constexpr double kForwardTolerance = 1e-12;

// Every LayerKind the registry list names.
std::vector<LayerKind> registered_kinds() {
  return {
#define TWOSED_KIND_ENTRY(kind) LayerKind::kind,
      TWOSED_LAYER_KINDS(TWOSED_KIND_ENTRY)
#undef TWOSED_KIND_ENTRY
  };
}

// The tiny network of one example token: on a 2x6x6 input (descriptor.h, examples()), followed
// by the output layer every network needs.
std::string tiny_spec(const std::string& token) {
  return "cnn:2x6x6-" + token + "-f3";
}

int64_t declared_params(const LayerSpec& l) {
  int64_t n = 0;
  for (const auto& p : layers::descriptor(l.kind).parameter_shapes(l)) n += p.numel();
  return n;
}

}  // namespace

TEST(LayerRegistryTest, EveryKindIsRegisteredOnceInOrder) {
  const auto kinds = registered_kinds();
  ASSERT_EQ(layers::descriptors().size(), kinds.size());
  for (size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ(layers::descriptors()[i]->kind(), kinds[i]) << i;
    EXPECT_EQ(&layers::descriptor(kinds[i]), layers::descriptors()[i]) << i;
    EXPECT_FALSE(layers::descriptors()[i]->examples().empty()) << i;
  }
  // The token help names every type's form or keywords.
  const auto help = layers::token_help();
  for (const auto* d : layers::descriptors()) {
    if (d->head() != 0) {
      EXPECT_NE(help.find(d->form()), std::string::npos) << help;
    }
    for (const auto& k : d->keywords()) EXPECT_NE(help.find(k), std::string::npos) << help;
    EXPECT_TRUE(d->head() != 0 || !d->keywords().empty()) << "kind " << static_cast<int>(d->kind());
  }
}

TEST(LayerRegistryTest, EveryKindBuildsAConsistentTinyNetwork) {
  int checked = 0;
  for (const auto* d : layers::descriptors()) {
    for (const auto& token : d->examples()) {
      for (bool bias : {true, false}) {
        ModelOptions opts;
        opts.bias = bias;
        const auto text = tiny_spec(token);
        SCOPED_TRACE(text + (bias ? "" : " (no bias)"));
        Network net(parse_model_spec(text, opts));
        const auto& spec = net.spec();
        ASSERT_EQ(spec.layers.front().kind, d->kind());

        // Parameters: the Network's slices are exactly the declared shapes, layer by layer.
        int64_t total = 0;
        size_t slice = 0;
        for (size_t l = 0; l < spec.layers.size(); ++l) {
          const auto& ls = spec.layers[l];
          const auto& type = layers::descriptor(ls.kind);
          EXPECT_EQ(ls.is_parametric(), type.parametric());
          EXPECT_EQ(ls.num_params(), declared_params(ls));
          EXPECT_EQ(net.layer(static_cast<int64_t>(l)).num_params(), declared_params(ls));
          EXPECT_EQ(type.parametric(), !type.parameter_shapes(ls).empty());
          for (const auto& p : type.parameter_shapes(ls)) {
            ASSERT_LT(slice, net.parameters().size());
            const auto& s = net.parameters()[slice++];
            EXPECT_EQ(s.layer, static_cast<int64_t>(l));
            EXPECT_EQ(s.shape, p.shape);
            EXPECT_EQ(s.offset, total);
            EXPECT_EQ(s.name.substr(s.name.find('.') + 1), p.name);
            EXPECT_EQ(s.init_bound, type.init_bound(ls));
            EXPECT_TRUE(s.init_bound > 0 && std::isfinite(s.init_bound)) << s.init_bound;
            total += p.numel();
          }
          EXPECT_FALSE(type.describe(ls).empty()) << ls.token;
        }
        EXPECT_EQ(slice, net.parameters().size());
        EXPECT_EQ(net.num_params(), total);

        // The LibTorch module: the same parameters (names, shapes, count) and the same forward.
        auto theta = torch::empty({net.num_params()}, torch::kFloat64);
        ParameterSpace::parse("box:1", net).sample(11, 0, theta.data_ptr<double>());
        auto module = net.to_module(theta);
        int64_t module_params = 0;
        for (const auto& p : module->parameters()) module_params += p.numel();
        EXPECT_EQ(module_params, total);
        torch::manual_seed(12);
        auto x = torch::randn({4, 2, 6, 6}, torch::kFloat64);
        torch::NoGradGuard no_grad;
        auto expected = module->forward(x);
        ASSERT_EQ(expected.scalar_type(), torch::kFloat64);
        auto got = net.forward(theta, x);
        ASSERT_EQ(got.sizes(), expected.sizes());
        EXPECT_LT((expected - got).abs().max().item<double>(), kForwardTolerance);
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 2 * static_cast<int>(layers::descriptors().size()));
}
