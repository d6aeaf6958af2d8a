// Networks: the forward pass equals PyTorch's own modules with the same parameters (so theta is
// in named_parameters() order), and every layer type's exact Jacobian equals central finite
// differences (docs/math.md section 8, invariant 6).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"

using namespace twosed;

namespace {

// Central differences in float64 with h = 1e-6 have truncation error ~h^2 and round-off ~1e-16/h:
// about 1e-10 relative; 1e-6 is the spec's bound (invariant 6).
constexpr double kFdTolerance = 1e-6;
// The module and our functional forward run the same float64 kernels in a different order.
constexpr double kForwardTolerance = 1e-12;

struct Case {
  const char* spec;
  Activation act;
  bool bias;
};

const Case kCases[] = {
    {"mlp:5-4-3", Activation::Tanh, true},
    {"mlp:5-4-4-3", Activation::Sigmoid, true},
    {"mlp:5-6-3", Activation::GELU, false},
    {"mlp:5-6-3", Activation::ReLU, true},
    {"cnn:2x7x7-c3k3s2p1-tanh-a2-f4", Activation::ReLU, true},
    {"cnn:2x8x8-c3k3-relu-p2s1-flatten-f3", Activation::ReLU, true},
    {"cnn:1x6x6-c2k2s2-gelu-c2k2-sigmoid-f3", Activation::ReLU, false},
    {"cnn:1x9x9-c2k3s2-tanh-c3k2p1-gelu-a2s1-f5-tanh-f2", Activation::ReLU, true},
};

Network make(const Case& c) {
  ModelOptions o;
  o.activation = c.act;
  o.bias = c.bias;
  return Network(parse_model_spec(c.spec, o));
}

torch::Tensor random_theta(const Network& net, uint64_t seed) {
  auto theta = torch::empty({net.num_params()}, torch::kFloat64);
  ParameterSpace::parse("box:1", net).sample(seed, 0, theta.data_ptr<double>());
  return theta;
}

torch::Tensor random_inputs(const Network& net, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto shape = net.spec().input_shape;
  shape.insert(shape.begin(), n);
  return torch::randn(shape, torch::kFloat64);
}

}  // namespace

TEST(NetworkTest, ForwardMatchesTorchModules) {
  for (const auto& c : kCases) {
    auto net = make(c);
    auto theta = random_theta(net, 1);
    auto x = random_inputs(net, 4, 2);
    auto module = net.to_module(theta);
    torch::NoGradGuard no_grad;
    auto expected = module->forward(x);
    auto got = net.forward(theta, x);
    EXPECT_LT((expected - got).abs().max().item<double>(), kForwardTolerance) << c.spec;
    // Same names in the same order as named_parameters().
    auto named = module->named_parameters();
    ASSERT_EQ(named.size(), net.parameters().size()) << c.spec;
    for (size_t i = 0; i < named.size(); ++i) {
      EXPECT_EQ(named[i].key(), net.parameters()[i].name) << c.spec;
      EXPECT_EQ(named[i].value().sizes().vec(), net.parameters()[i].shape) << c.spec;
    }
  }
}

TEST(NetworkTest, JacobianRowsMatchCentralDifferences) {
  for (const auto& c : kCases) {
    auto net = make(c);
    auto theta = random_theta(net, 3);
    auto x = random_inputs(net, 3, 4);
    const int64_t n = x.size(0), k = net.num_outputs(), d = net.num_params();
    torch::manual_seed(5);
    auto g0 = torch::randn({n, 2, k}, torch::kFloat64);  // two random covectors per example
    auto rows = net.jacobian_rows(theta, x, g0).view({n, 2, d});

    auto fd = torch::zeros({n, 2, d}, torch::kFloat64);
    const double h = 1e-6;
    for (int64_t p = 0; p < d; ++p) {
      auto tp = theta.clone(), tm = theta.clone();
      tp[p] += h;
      tm[p] -= h;
      auto df = (net.forward(tp, x) - net.forward(tm, x)) / (2 * h);  // (n, k)
      fd.select(2, p).copy_((g0 * df.unsqueeze(1)).sum(2));
    }
    const double scale = fd.abs().max().item<double>();
    ASSERT_GT(scale, 0) << c.spec;
    EXPECT_LE((rows - fd).abs().max().item<double>() / scale, kFdTolerance) << c.spec;
  }
}

TEST(NetworkTest, InitBoxIsPyTorchDefaultSupport) {
  auto net = Network(parse_model_spec("cnn:3x8x8-c4k3-relu-f5"));
  auto space = ParameterSpace::parse("init", net);
  // conv: fan_in = 3*3*3 = 27; linear: fan_in = 4*6*6 = 144.
  EXPECT_DOUBLE_EQ(space.upper(0), 1.0 / std::sqrt(27.0));
  EXPECT_DOUBLE_EQ(space.lower(4 * 27 + 3), -1.0 / std::sqrt(27.0));  // a conv bias
  EXPECT_DOUBLE_EQ(space.upper(4 * 27 + 4), 1.0 / std::sqrt(144.0));  // first linear weight
  auto theta = torch::empty({net.num_params()}, torch::kFloat64);
  space.sample(7, 0, theta.data_ptr<double>());
  for (int64_t i = 0; i < net.num_params(); ++i) {
    ASSERT_GE(theta[i].item<double>(), space.lower(i));
    ASSERT_LT(theta[i].item<double>(), space.upper(i));
  }
  // Same (seed, j): same theta; another j: different.
  auto again = torch::empty_like(theta), other = torch::empty_like(theta);
  space.sample(7, 0, again.data_ptr<double>());
  space.sample(7, 1, other.data_ptr<double>());
  EXPECT_TRUE(torch::equal(theta, again));
  EXPECT_FALSE(torch::equal(theta, other));
}
