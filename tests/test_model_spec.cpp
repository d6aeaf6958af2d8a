// Model spec parsing: shapes, parameter counts (checked against hand-computed PyTorch counts),
// and errors that point at the offending token.
#include <gtest/gtest.h>

#include "twosed/error.h"
#include "twosed/model/model_spec.h"

using namespace twosed;

TEST(ModelSpecTest, MlpShapesAndCounts) {
  auto s = parse_model_spec("mlp:784-64-32-10");
  EXPECT_EQ(s.num_inputs(), 784);
  EXPECT_EQ(s.num_outputs(), 10);
  // 784*64+64 + 64*32+32 + 32*10+10
  EXPECT_EQ(s.num_params(), 50240 + 2080 + 330);
  ASSERT_EQ(s.layers.size(), 5u);  // linear, act, linear, act, linear
  EXPECT_EQ(s.layers[1].kind, LayerKind::Activation);
  EXPECT_EQ(s.layers[1].activation, Activation::ReLU);
  ModelOptions o;
  o.bias = false;
  o.activation = Activation::Tanh;
  auto nb = parse_model_spec("mlp:784-64-32-10", o);
  EXPECT_EQ(nb.num_params(), 784 * 64 + 64 * 32 + 32 * 10);
  EXPECT_EQ(nb.layers[1].activation, Activation::Tanh);
}

TEST(ModelSpecTest, CnnShapesAndCounts) {
  auto s = parse_model_spec("cnn:3x32x32-c32k3-relu-p2-c64k3-relu-p2-f256-relu-f10");
  // conv 3->32 k3: 32*27+32 = 896; 30x30 -> pool 15x15; conv 32->64 k3: 64*288+64 = 18496;
  // 13x13 -> pool 6x6; f256: 64*36*256 + 256 = 590080; f10: 2570.
  EXPECT_EQ(s.num_params(), 896 + 18496 + 590080 + 2570);
  EXPECT_EQ(s.layers[2].out_shape, (std::vector<int64_t>{32, 15, 15}));
  EXPECT_EQ(s.layers[5].out_shape, (std::vector<int64_t>{64, 6, 6}));
  EXPECT_EQ(s.num_outputs(), 10);
}

TEST(ModelSpecTest, StridePaddingAndAveragePooling) {
  auto s = parse_model_spec("cnn:1x28x28-c8k5s2p2-tanh-a2s1-flatten-f10");
  // (28 + 4 - 5)/2 + 1 = 14; avg pool 2 stride 1: 13
  EXPECT_EQ(s.layers[0].out_shape, (std::vector<int64_t>{8, 14, 14}));
  EXPECT_EQ(s.layers[2].kind, LayerKind::AvgPool);
  EXPECT_EQ(s.layers[2].out_shape, (std::vector<int64_t>{8, 13, 13}));
  EXPECT_EQ(s.layers[3].out_shape, (std::vector<int64_t>{8 * 13 * 13}));
  EXPECT_EQ(s.layers[0].fan_in(), 25);
}

void expect_usage_error(const std::string& spec, const std::string& fragment) {
  try {
    parse_model_spec(spec);
    FAIL() << "no error for " << spec;
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(spec), std::string::npos) << e.what();
  }
}

TEST(ModelSpecTest, ErrorsNameTheToken) {
  expect_usage_error("cnn:3x32x32-c32k3-relu-q2-f10", "token 4 'q2'");
  expect_usage_error("cnn:3x32x32-c32k3-relu-p2", "must end with a linear layer");
  expect_usage_error("mlp:784-x-10", "token 2 'x'");
  expect_usage_error("mlp:784", "at least two sizes");
  expect_usage_error("rnn:1-2", "unknown model kind 'rnn'");
  expect_usage_error("cnn:3x4x4-c8k5-f2", "does not fit");
  expect_usage_error("mlp:10-5-f3", "token 3 'f3'");
  expect_usage_error("cnn:3x32-c8k3-f2", "CxHxW");
  expect_usage_error("cnn:3x8x8-f4-c2k3-f2", "needs a CxHxW input");
  expect_usage_error("cnn:3x8x8-c2k3p3-f2", "padding must be smaller");
  expect_usage_error("cnn:3x8x8--f2", "empty token");
  expect_usage_error("mlp:0-10", "positive integer");
  expect_usage_error("mlp:99999999999-10", "positive integer");
  expect_usage_error("cnn:100000x100000x100000-f2", "larger than 1e10");
  expect_usage_error("mlp:100000000-100000000-2", "more than 1e10 parameters");
  expect_usage_error("nospec", "expected 'mlp:");
}

TEST(ModelSpecTest, ActivationNames) {
  EXPECT_EQ(parse_activation("gelu"), Activation::GELU);
  EXPECT_THROW(parse_activation("swish"), UsageError);
  EXPECT_STREQ(activation_name(Activation::Sigmoid), "sigmoid");
}
