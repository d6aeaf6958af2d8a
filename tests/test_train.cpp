// Training: deterministic per seed, learns easy problems with Adam and SGD, starts from the
// init-box sample 0, reports losses that agree with an independent computation from
// Network::forward, keeps theta in named_parameters() order, and writes/reads checkpoints.
#include <dirent.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "twosed/data/data.h"
#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/measure/measure.h"
#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"
#include "twosed/random.h"
#include "twosed/train/train.h"

using namespace twosed;

namespace {

// The training module and Network::forward run the same float64 kernels in a different order
// (and the evaluation sums in chunks): agreement to rounding.
constexpr double kTolerance = 1e-12;

Network make_net(const std::string& spec, Activation act = Activation::ReLU, bool bias = true) {
  ModelOptions o;
  o.activation = act;
  o.bias = bias;
  return Network(parse_model_spec(spec, o));
}

torch::Tensor inputs_of(const Network& net, const Dataset& data) {
  auto shape = net.spec().input_shape;
  shape.insert(shape.begin(), data.size());
  return torch::tensor(data.x, torch::kFloat64).reshape(shape);
}

// Mean loss (and accuracy) of theta on `data` (rows `rows`, or all), from Network::forward and
// plain loops: a log-sum-exp written out here, not LibTorch's cross_entropy.
double reference_loss(const Network& net, const std::vector<double>& theta, const Dataset& data, Task task,
                      double* accuracy = nullptr, const std::vector<int64_t>& rows = {}) {
  const auto out = net.forward(torch::tensor(theta, torch::kFloat64), inputs_of(net, data)).contiguous();
  const int64_t k = out.size(1);
  const double* f = out.data_ptr<double>();
  std::vector<int64_t> idx = rows;
  if (idx.empty())
    for (int64_t i = 0; i < data.size(); ++i) idx.push_back(i);
  double sum = 0.0;
  int64_t correct = 0;
  for (int64_t i : idx) {
    const double* fi = f + i * k;
    if (task == Task::Classify) {
      const int64_t y = data.labels[static_cast<size_t>(i)];
      double m = fi[0];
      int64_t best = 0;
      for (int64_t c = 1; c < k; ++c)
        if (fi[c] > m) m = fi[c], best = c;
      double s = 0.0;
      for (int64_t c = 0; c < k; ++c) s += std::exp(fi[c] - m);
      sum += m + std::log(s) - fi[y];
      correct += best == y;
    } else {
      for (int64_t c = 0; c < k; ++c) {
        const double y = data.targets.empty() ? static_cast<double>(data.labels[static_cast<size_t>(i)])
                                              : data.targets[static_cast<size_t>(i * k + c)];
        sum += 0.5 * (fi[c] - y) * (fi[c] - y);
      }
    }
  }
  if (accuracy) *accuracy = static_cast<double>(correct) / static_cast<double>(idx.size());
  return sum / static_cast<double>(idx.size());
}

std::vector<double> init_theta(const Network& net, uint64_t seed) {
  std::vector<double> theta(static_cast<size_t>(net.num_params()));
  ParameterSpace::parse("init", net).sample(seed, 0, theta.data());
  return theta;
}

// n examples of a linear teacher y = w.x + b in `dim` dimensions (exact targets).
Dataset linear_teacher(int64_t dim, int64_t n, uint64_t seed) {
  Dataset d;
  d.sample_shape = {dim};
  d.source = "linear-teacher";
  Rng rng(seed, Stream::Data, 0);
  std::vector<double> w(static_cast<size_t>(dim));
  for (auto& v : w) v = rng.normal();
  const double b = 0.5;
  for (int64_t i = 0; i < n; ++i) {
    double y = b;
    for (int64_t j = 0; j < dim; ++j) {
      const double x = rng.normal();
      d.x.push_back(x);
      y += w[static_cast<size_t>(j)] * x;
    }
    d.targets.push_back(y);
  }
  return d;
}

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

void expect_same_records(const std::vector<TrainingRecord>& a, const std::vector<TrainingRecord>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_EQ(a[i].step, b[i].step);
    EXPECT_TRUE(same_bits(a[i].train_loss, b[i].train_loss)) << i;
    EXPECT_TRUE(same_bits(a[i].train_accuracy, b[i].train_accuracy)) << i;
    EXPECT_TRUE(same_bits(a[i].test_loss, b[i].test_loss)) << i;
    EXPECT_TRUE(same_bits(a[i].test_accuracy, b[i].test_accuracy)) << i;
  }
}

std::string make_temp_dir() {
  std::string tmpl = ::testing::TempDir() + "twosed_train_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char* dir = ::mkdtemp(buf.data());
  EXPECT_NE(dir, nullptr);
  return dir ? std::string(dir) : std::string();
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// The DataError message of read_checkpoint_info (empty if it did not throw one).
std::string checkpoint_error(const std::string& npy) {
  CheckpointInfo info;
  try {
    read_checkpoint_info(npy, info);
  } catch (const DataError& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST(TrainTest, DeterministicPerSeed) {
  ScopedThreads threads(2);
  const Network net = make_net("mlp:5-8-3", Activation::Tanh);
  const Dataset data = make_blobs(3, 5, 200, 1);
  TrainOptions o;
  o.epochs = 3;
  o.batch = 16;
  o.seed = 7;
  o.log_steps = true;
  const auto a = train_network(net, data, &data, o);
  const auto b = train_network(net, data, &data, o);
  ASSERT_EQ(a.theta.size(), static_cast<size_t>(net.num_params()));
  ASSERT_EQ(a.theta.size(), b.theta.size());
  EXPECT_EQ(std::memcmp(a.theta.data(), b.theta.data(), a.theta.size() * sizeof(double)), 0);
  expect_same_records(a.records, b.records);

  o.seed = 8;
  const auto c = train_network(net, data, &data, o);
  EXPECT_NE(std::memcmp(a.theta.data(), c.theta.data(), a.theta.size() * sizeof(double)), 0);

  // Same initial theta, different seed: only the batch order differs, and that changes theta.
  o.initial_theta = init_theta(net, 7);
  const auto e = train_network(net, data, nullptr, o);
  EXPECT_TRUE(same_bits(e.records[0].train_loss, a.records[0].train_loss));
  EXPECT_NE(std::memcmp(a.theta.data(), e.theta.data(), a.theta.size() * sizeof(double)), 0);
}

TEST(TrainTest, LeavesTorchGlobalGeneratorAlone) {
  const Network net = make_net("mlp:5-8-3");
  const Dataset data = make_blobs(3, 5, 50, 2);
  TrainOptions o;
  o.epochs = 1;
  torch::manual_seed(123);
  const auto expected = torch::rand({4}, torch::kFloat64);
  torch::manual_seed(123);
  train_network(net, data, nullptr, o);
  const auto got = torch::rand({4}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(expected, got));
}

TEST(TrainTest, AdamAndSgdLearnBlobs) {
  const Network net = make_net("mlp:5-16-3");
  const Dataset data = make_blobs(3, 5, 600, 3);
  TrainOptions o;
  o.lr = 1e-2;
  o.epochs = 20;
  o.batch = 32;
  o.seed = 1;
  const auto adam = train_network(net, data, nullptr, o);
  ASSERT_EQ(adam.records.size(), 21u);
  const double initial = adam.records.front().train_loss;
  EXPECT_LT(adam.final_record.train_loss, 0.5 * initial);
  EXPECT_GT(adam.final_record.train_accuracy, 0.9);
  EXPECT_EQ(adam.final_record.epoch, 20);
  EXPECT_EQ(adam.steps, 20 * 19);  // ceil(600 / 32) = 19

  o.optimizer = "sgd";
  o.lr = 0.05;
  o.momentum = 0.9;
  const auto sgd = train_network(net, data, nullptr, o);
  EXPECT_TRUE(same_bits(sgd.records.front().train_loss, initial));  // same seed, same start
  EXPECT_LT(sgd.final_record.train_loss, 0.5 * initial);
  EXPECT_GT(sgd.final_record.train_accuracy, 0.9);

  // Weight decay pulls towards 0: a smaller final parameter norm.
  o.weight_decay = 0.1;
  const auto decayed = train_network(net, data, nullptr, o);
  auto norm = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return s;
  };
  EXPECT_LT(norm(decayed.theta), norm(sgd.theta));
}

TEST(TrainTest, RegressionFitsLinearTeacher) {
  const Network net = make_net("mlp:4-1");
  const Dataset data = linear_teacher(4, 256, 4);
  TrainOptions o;
  o.task = Task::Regress;
  o.optimizer = "sgd";
  o.lr = 0.05;
  o.epochs = 60;
  o.batch = 32;
  const auto r = train_network(net, data, nullptr, o);
  const double initial = r.records.front().train_loss;
  EXPECT_GT(initial, 0.1);
  EXPECT_LT(r.final_record.train_loss, 1e-3 * initial);
  EXPECT_TRUE(std::isnan(r.final_record.train_accuracy));
  EXPECT_NEAR(r.final_record.train_loss, reference_loss(net, r.theta, data, Task::Regress), kTolerance);

  o.optimizer = "adam";
  o.lr = 0.02;
  const auto a = train_network(net, data, nullptr, o);
  EXPECT_LT(a.final_record.train_loss, 1e-3 * initial);
}

TEST(TrainTest, RegressionTargetsAndLabels) {
  // k = 2 outputs with n * k targets.
  const Network net2 = make_net("mlp:3-4-2", Activation::Tanh);
  Dataset d2 = make_blobs(2, 3, 40, 5);
  d2.labels.clear();
  d2.num_classes = 0;
  for (int64_t i = 0; i < 80; ++i) d2.targets.push_back(0.1 * static_cast<double>(i % 7) - 0.3);
  TrainOptions o;
  o.task = Task::Regress;
  o.epochs = 0;
  const auto r2 = train_network(net2, d2, nullptr, o);
  EXPECT_NEAR(r2.records[0].train_loss, reference_loss(net2, r2.theta, d2, Task::Regress), kTolerance);

  // One output, no targets: the labels taken as numbers.
  const Network net1 = make_net("mlp:3-4-1");
  const Dataset blobs = make_blobs(3, 3, 30, 6);
  const auto r1 = train_network(net1, blobs, nullptr, o);
  EXPECT_NEAR(r1.records[0].train_loss, reference_loss(net1, r1.theta, blobs, Task::Regress), kTolerance);

  // Labels cannot serve several outputs; n targets cannot serve k = 2.
  EXPECT_THROW(train_network(net2, blobs, nullptr, o), DataError);
  Dataset short_targets = d2;
  short_targets.targets.resize(40);
  EXPECT_THROW(train_network(net2, short_targets, nullptr, o), DataError);
  Dataset none = d2;
  none.targets.clear();
  EXPECT_THROW(train_network(net1, none, nullptr, o), DataError);
}

TEST(TrainTest, EpochZeroIsTheInitSampleAndAnIndependentLoss) {
  const Network net = make_net("mlp:5-7-4", Activation::GELU);
  const Dataset train = make_blobs(4, 5, 90, 8);
  const Dataset test = make_blobs(4, 5, 33, 9);
  TrainOptions o;
  o.epochs = 0;
  o.seed = 11;
  const auto r = train_network(net, train, &test, o);
  const auto theta0 = init_theta(net, 11);
  ASSERT_EQ(r.theta.size(), theta0.size());
  EXPECT_EQ(std::memcmp(r.theta.data(), theta0.data(), theta0.size() * sizeof(double)), 0);
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.steps, 0);
  const auto& rec = r.records[0];
  EXPECT_EQ(rec.epoch, 0);
  EXPECT_EQ(rec.step, -1);
  double acc = 0, test_acc = 0;
  EXPECT_NEAR(rec.train_loss, reference_loss(net, theta0, train, Task::Classify, &acc), kTolerance);
  EXPECT_DOUBLE_EQ(rec.train_accuracy, acc);
  EXPECT_NEAR(rec.test_loss, reference_loss(net, theta0, test, Task::Classify, &test_acc), kTolerance);
  EXPECT_DOUBLE_EQ(rec.test_accuracy, test_acc);

  // The same when training starts: epoch 0 of a longer run is this record.
  o.epochs = 2;
  const auto longer = train_network(net, train, &test, o);
  EXPECT_TRUE(same_bits(longer.records[0].train_loss, rec.train_loss));
}

TEST(TrainTest, StepRecordsInOrder) {
  const Network net = make_net("mlp:5-6-3", Activation::Sigmoid);
  const Dataset data = make_blobs(3, 5, 100, 10);
  TrainOptions o;
  o.epochs = 3;
  o.batch = 32;  // ceil(100 / 32) = 4 steps per epoch, the last of 4 examples
  o.seed = 3;
  o.log_steps = true;
  std::vector<TrainingRecord> seen;
  o.on_record = [&](const TrainingRecord& r) { seen.push_back(r); };
  const auto r = train_network(net, data, nullptr, o);
  EXPECT_EQ(r.steps, 12);
  expect_same_records(seen, r.records);
  ASSERT_EQ(r.records.size(), 12u + 4u);
  int64_t steps = 0, epoch = 0;
  double seconds = 0;
  for (const auto& rec : r.records) {
    EXPECT_GE(rec.seconds, seconds);
    seconds = rec.seconds;
    if (rec.step < 0) {
      EXPECT_EQ(rec.epoch, epoch) << "epoch records 0, 1, 2, 3 after their steps";
      EXPECT_EQ(steps, 4 * epoch);
      ++epoch;
      EXPECT_FALSE(std::isnan(rec.train_accuracy));
    } else {
      EXPECT_EQ(rec.step, ++steps);
      EXPECT_EQ(rec.epoch, (rec.step - 1) / 4 + 1);
      EXPECT_TRUE(std::isnan(rec.train_accuracy));
      EXPECT_TRUE(std::isnan(rec.test_loss));
    }
  }
  EXPECT_EQ(epoch, 4);
  EXPECT_EQ(r.final_record.epoch, 3);
  EXPECT_TRUE(same_bits(r.final_record.train_loss, r.records.back().train_loss));

  // Step 1 is the loss, before the update, of the first 32 examples of the documented order:
  // a Fisher-Yates shuffle of 0..n-1 with Rng(seed, Training, 1).
  std::vector<int64_t> order(100);
  for (int64_t i = 0; i < 100; ++i) order[static_cast<size_t>(i)] = i;
  Rng rng(3, Stream::Training, 1);
  for (int64_t i = 99; i > 0; --i)
    std::swap(order[static_cast<size_t>(i)], order[rng.below(static_cast<uint64_t>(i) + 1)]);
  order.resize(32);
  EXPECT_NEAR(r.records[1].train_loss, reference_loss(net, init_theta(net, 3), data, Task::Classify, nullptr, order),
              kTolerance);
}

TEST(TrainTest, ThetaKeepsNetworkOrder) {
  struct Case {
    const char* spec;
    Activation act;
    bool bias;
    std::vector<int64_t> sample_shape;
  };
  const Case cases[] = {
      {"mlp:36-5-4-3", Activation::Tanh, true, {36}},
      {"mlp:36-5-3", Activation::ReLU, false, {36}},
      {"cnn:1x6x6-c2k3-relu-p2s1-f3", Activation::ReLU, true, {1, 6, 6}},
      {"cnn:1x6x6-c3k2s2p1-tanh-f4-gelu-f3", Activation::ReLU, false, {36}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spec);
    const Network net = make_net(c.spec, c.act, c.bias);
    Dataset data = make_blobs(3, 36, 60, 12);
    data.sample_shape = c.sample_shape;
    // Round trip: a theta with every coordinate distinct comes back unchanged (to_module, then
    // the module's parameters flattened).
    std::vector<double> theta(static_cast<size_t>(net.num_params()));
    ParameterSpace::parse("box:1", net).sample(99, 0, theta.data());
    TrainOptions o;
    o.epochs = 0;
    o.initial_theta = theta;
    const auto r0 = train_network(net, data, nullptr, o);
    ASSERT_EQ(r0.theta.size(), theta.size());
    EXPECT_EQ(std::memcmp(r0.theta.data(), theta.data(), theta.size() * sizeof(double)), 0);

    // After training, the module that was evaluated and Network::forward at the returned theta
    // agree: the final loss matches the independent one, and so do the outputs.
    o.epochs = 2;
    o.batch = 16;
    const auto r = train_network(net, data, nullptr, o);
    EXPECT_NEAR(r.final_record.train_loss, reference_loss(net, r.theta, data, Task::Classify), kTolerance);
    const auto th = torch::tensor(r.theta, torch::kFloat64);
    const auto x = inputs_of(net, data);
    auto module = net.to_module(th);
    EXPECT_LT((module->forward(x) - net.forward(th, x)).abs().max().item<double>(), kTolerance);
  }
}

TEST(TrainTest, TestSetEvaluatedIffGiven) {
  const Network net = make_net("mlp:5-6-3");
  const Dataset train = make_blobs(3, 5, 60, 13);
  const Dataset test = make_blobs(3, 5, 25, 14);
  TrainOptions o;
  o.epochs = 2;
  o.log_steps = true;
  const auto with = train_network(net, train, &test, o);
  for (const auto& rec : with.records) {
    EXPECT_EQ(std::isfinite(rec.test_loss), rec.step < 0);
    EXPECT_EQ(std::isfinite(rec.test_accuracy), rec.step < 0);
  }
  double acc = 0;
  EXPECT_NEAR(with.final_record.test_loss, reference_loss(net, with.theta, test, Task::Classify, &acc), kTolerance);
  EXPECT_DOUBLE_EQ(with.final_record.test_accuracy, acc);
  // No test set, or an empty one: not measured, and training is unchanged.
  Dataset empty;
  empty.sample_shape = {5};
  for (const Dataset* t : {static_cast<const Dataset*>(nullptr), static_cast<const Dataset*>(&empty)}) {
    const auto without = train_network(net, train, t, o);
    for (const auto& rec : without.records) {
      EXPECT_TRUE(std::isnan(rec.test_loss));
      EXPECT_TRUE(std::isnan(rec.test_accuracy));
    }
    EXPECT_EQ(std::memcmp(without.theta.data(), with.theta.data(), with.theta.size() * sizeof(double)), 0);
  }
}

TEST(TrainTest, BadOptionsNameTheFieldNotAFlag) {
  const Network net = make_net("mlp:5-6-3");
  const Dataset data = make_blobs(3, 5, 20, 15);
  // train_network and validate throw the same OptionError: the field, the rule and the value.
  auto expect_option = [&](const TrainOptions& o, const std::string& option, const std::string& what) {
    for (bool direct : {false, true}) {
      try {
        if (direct)
          validate(o);
        else
          train_network(net, data, nullptr, o);
        ADD_FAILURE() << "no OptionError for " << option;
      } catch (const OptionError& e) {
        EXPECT_EQ(e.option(), option);
        EXPECT_EQ(std::string(e.what()), what);
        EXPECT_EQ(std::string(e.what()).find("--"), std::string::npos) << e.what();
      }
    }
  };
  TrainOptions o;
  EXPECT_NO_THROW(validate(o));
  o.optimizer = "rmsprop";
  expect_option(o, "TrainOptions.optimizer", "TrainOptions.optimizer must be adam or sgd, got 'rmsprop'");
  for (double lr : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    o = TrainOptions();
    o.lr = lr;
    expect_option(o, "TrainOptions.lr", fmt::format("TrainOptions.lr must be a finite number > 0, got {}", lr));
  }
  o = TrainOptions();
  o.batch = 0;
  expect_option(o, "TrainOptions.batch", "TrainOptions.batch must be an integer >= 1, got 0");
  o = TrainOptions();
  o.epochs = -1;
  expect_option(o, "TrainOptions.epochs", "TrainOptions.epochs must be an integer >= 0, got -1");
  for (double m : {-0.1, 1.0, 1.5}) {
    o = TrainOptions();
    o.momentum = m;
    expect_option(o, "TrainOptions.momentum", fmt::format("TrainOptions.momentum must be in [0, 1), got {}", m));
  }
  o = TrainOptions();
  o.weight_decay = -1e-3;
  expect_option(o, "TrainOptions.weight_decay", "TrainOptions.weight_decay must be a finite number >= 0, got -0.001");
  o = TrainOptions();
  o.initial_theta.assign(5, std::nan(""));
  expect_option(o, "TrainOptions.initial_theta",
                "TrainOptions.initial_theta must hold finite values, got nan at index 0");
  // The length needs the network: train_network checks it, validate cannot.
  o.initial_theta.assign(5, 0.0);
  EXPECT_NO_THROW(validate(o));
  try {
    train_network(net, data, nullptr, o);
    ADD_FAILURE() << "no OptionError for a short initial_theta";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "TrainOptions.initial_theta");
    EXPECT_EQ(e.rule(), "has 5 values, but model 'mlp:5-6-3' has 57 parameters");
  }
}

TEST(TrainTest, DataThatDoesNotFit) {
  const Network net = make_net("mlp:5-6-3");
  const Dataset good = make_blobs(3, 5, 20, 16);
  auto expect_data = [&](const Dataset& train, const Dataset* test, const std::string& part) {
    try {
      train_network(net, train, test, TrainOptions());
      ADD_FAILURE() << "no DataError for " << part;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  const Dataset wide = make_blobs(3, 6, 20, 16);
  expect_data(wide, nullptr, "has 6 features per example, but model 'mlp:5-6-3' takes 5");
  expect_data(good, &wide, "test data");
  Dataset unlabelled = good;
  unlabelled.labels.clear();
  unlabelled.num_classes = 0;
  expect_data(unlabelled, nullptr, "no labels");
  const Dataset many = make_blobs(4, 5, 20, 16);
  expect_data(many, nullptr, "4 classes");
  Dataset empty;
  empty.sample_shape = {5};
  empty.source = "nothing";
  expect_data(empty, nullptr, "'nothing'");
  Dataset nan = good;
  nan.x[7] = std::nan("");
  expect_data(nan, nullptr, "NaN");
}

TEST(TrainTest, CheckpointRoundTrip) {
  const std::string dir = make_temp_dir();
  ASSERT_FALSE(dir.empty());
  EXPECT_EQ(checkpoint_sidecar("a/x.npy"), "a/x.json");
  EXPECT_EQ(checkpoint_sidecar("a/x"), "a/x.json");
  EXPECT_EQ(checkpoint_sidecar("a.npy/x.bin"), "a.npy/x.bin.json");

  const Network net = make_net("mlp:4-8-3", Activation::Tanh, false);
  std::vector<double> theta(static_cast<size_t>(net.num_params()));
  ParameterSpace::parse("box:3", net).sample(5, 0, theta.data());
  theta[0] = 1.0 / 3.0;
  theta[1] = -0.0;
  theta[2] = 1e-300;
  const CheckpointInfo info{"mlp:4-8-3", ModelOptions{Activation::Tanh, false}, Task::Regress, 0};
  const std::string path = dir + "/ck.npy";
  write_checkpoint(path, info, theta);
  const NpyArray a = read_npy(path);
  EXPECT_EQ(a.shape, std::vector<int64_t>{net.num_params()});
  EXPECT_EQ(a.dtype, "<f8");
  ASSERT_EQ(a.data.size(), theta.size());
  EXPECT_EQ(std::memcmp(a.data.data(), theta.data(), theta.size() * sizeof(double)), 0);

  CheckpointInfo got;
  ASSERT_TRUE(read_checkpoint_info(path, got));
  EXPECT_EQ(got.model, "mlp:4-8-3");
  EXPECT_EQ(got.model_options.activation, Activation::Tanh);
  EXPECT_FALSE(got.model_options.bias);
  EXPECT_EQ(got.task, Task::Regress);
  EXPECT_EQ(got.num_params, net.num_params());
  // Overwriting works and leaves only the two files.
  write_checkpoint(path, info, theta);
  auto names = list_dir(dir);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"ck.json", "ck.npy"}));

  // No sidecar: false, info untouched.
  CheckpointInfo untouched;
  untouched.model = "keep";
  write_npy(dir + "/bare.npy", {3}, {1, 2, 3});
  EXPECT_FALSE(read_checkpoint_info(dir + "/bare.npy", untouched));
  EXPECT_EQ(untouched.model, "keep");

  // Malformed sidecars: DataError naming the sidecar and the key.
  const std::string sidecar = dir + "/ck.json";
  const std::string good =
      "{\"twosed_checkpoint\": 1, \"model\": \"mlp:4-8-3\", \"activation\": \"tanh\", "
      "\"bias\": false, \"task\": \"regress\", \"d\": 56";
  auto expect_error = [&](const std::string& text, const std::vector<std::string>& parts) {
    write_text(sidecar, text);
    const std::string msg = checkpoint_error(path);
    ASSERT_FALSE(msg.empty()) << text;
    EXPECT_NE(msg.find(sidecar), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  };
  write_text(sidecar, good + "}");
  EXPECT_TRUE(read_checkpoint_info(path, got));  // twosed_version is optional
  expect_error(good, {"JSON"});
  expect_error("[1, 2]", {"object"});
  expect_error(
      "{\"model\": \"mlp:4-8-3\", \"activation\": \"tanh\", \"bias\": false, \"task\": \"regress\", \"d\": 56}",
      {"\"twosed_checkpoint\""});
  expect_error(good.substr(0, good.find(", \"d\"")) + "}", {"\"d\"", "integer"});
  expect_error(good + ", \"twosed_version\": 3}", {"\"twosed_version\"", "string"});
  std::string bad_bias = good;
  bad_bias.replace(bad_bias.find("false"), 5, "\"no\"");
  expect_error(bad_bias + "}", {"\"bias\"", "true or false"});
  std::string bad_d = good;
  bad_d.replace(bad_d.find("56"), 2, "\"56\"");
  expect_error(bad_d + "}", {"\"d\"", "integer"});
  std::string bad_task = good;
  bad_task.replace(bad_task.find("regress"), 7, "cluster");
  expect_error(bad_task + "}", {"\"task\"", "classify or regress"});
  std::string bad_act = good;
  bad_act.replace(bad_act.find("tanh"), 4, "swish");
  expect_error(bad_act + "}", {"\"activation\""});
  std::string bad_model = good;
  bad_model.replace(bad_model.find("mlp:4-8-3"), 9, "mlp:4");
  expect_error(bad_model + "}", {"\"model\""});
  std::string wrong_d = good;
  wrong_d.replace(wrong_d.find("56"), 2, "57");
  expect_error(wrong_d + "}", {"\"d\" is 57", "56 parameters"});
  expect_error("{\"twosed_checkpoint\": 2}", {"\"twosed_checkpoint\""});

  // A sidecar that matches the model, but an .npy of another length.
  write_text(sidecar, good + "}");
  write_npy(path, {55}, std::vector<double>(55, 0.0));
  const std::string msg = checkpoint_error(path);
  EXPECT_NE(msg.find("55 values"), std::string::npos) << msg;

  // A theta that does not fit the model is not written.
  EXPECT_THROW(write_checkpoint(dir + "/short.npy", info, std::vector<double>(55, 0.0)), DataError);

  // Unwritable: DataError naming the path, no temporary left behind.
  const std::string missing = dir + "/no/such/dir/ck.npy";
  try {
    write_checkpoint(missing, info, theta);
    ADD_FAILURE() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  for (const auto& name : list_dir(dir)) EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
  for (const auto& name : list_dir(dir)) std::remove((dir + "/" + name).c_str());
  ::rmdir(dir.c_str());
}

// Timing (not run by default): mlp:784-64-10 on 10,000 synthetic 784-feature examples, batch
// 128, one epoch. Run with --gtest_also_run_disabled_tests --gtest_filter='*Speed*'.
TEST(TrainTest, DISABLED_Speed) {
  for (int threads : {1, 2}) {
    ScopedThreads scoped(threads);
    const Network net = make_net("mlp:784-64-10");
    const Dataset data = make_blobs(10, 784, 10000, 17);
    TrainOptions o;
    o.epochs = 1;
    o.batch = 128;
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = train_network(net, data, &data, o);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("threads %d: %.3f s for 1 epoch (%lld steps, 3 evaluation passes), loss %.4f -> %.4f\n", threads, s,
                static_cast<long long>(r.steps), r.records.front().train_loss, r.final_record.train_loss);
  }
}

// The message of the DataError or OptionError f throws (empty if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  } catch (const OptionError& e) {
    return e.what();
  }
  return {};
}

TEST(TrainTest, CheckpointMetadataMustMatchTheModel) {
  const std::string dir = make_temp_dir();
  const Network tanh_net = make_net("mlp:4-8-3", Activation::Tanh);
  const Network relu_net = make_net("mlp:4-8-3", Activation::ReLU);
  std::vector<double> theta(static_cast<size_t>(tanh_net.num_params()), 0.25);
  const std::string path = dir + "/ck.npy";
  write_checkpoint(path, {"mlp:4-8-3", ModelOptions{Activation::Tanh, true}, Task::Classify, 0}, theta);
  const std::string space = "local:" + path + ":0.01";
  const ModelOptions relu{Activation::ReLU, true}, tanh{Activation::Tanh, true}, no_bias{Activation::Tanh, false};
  EXPECT_NO_THROW(ParameterSpace::parse(space, tanh_net, tanh, Task::Classify));
  EXPECT_EQ(error_of([&] { ParameterSpace::parse(space, relu_net, relu, Task::Classify); }),
            path + ": a checkpoint of 'mlp:4-8-3' with activation tanh, but the model's activation is relu");
  EXPECT_NE(error_of([&] {
              ParameterSpace::parse(space, tanh_net, tanh, Task::Regress);
            }).find("trained for task classify, but the task is regress"),
            std::string::npos);
  CheckpointInfo info;
  ASSERT_TRUE(read_checkpoint_info(path, info));
  EXPECT_NE(error_of([&] {
              check_checkpoint_matches(path, info, tanh_net.spec(), no_bias, Task::Classify);
            }).find("with biases, but the model has none"),
            std::string::npos);
  // The two-argument parse checks the spec only, as before.
  EXPECT_NO_THROW(ParameterSpace::parse(space, relu_net));
}

TEST(TrainTest, ParameterValuesOutOfRangeAreRefused) {
  const std::string dir = make_temp_dir();
  const Network net = make_net("mlp:4-8-3");
  std::vector<double> theta(static_cast<size_t>(net.num_params()), 0.5);
  theta[7] = -1e200;
  const std::string path = dir + "/big.npy";
  write_npy(path, {net.num_params()}, theta);
  EXPECT_NE(error_of([&] {
              ParameterSpace::parse("local:" + path + ":0.1", net);
            }).find(path + ": value -1e+200 at index 7 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ParameterSpace::parse("box:1e300", net); }).find("half-width A 1e300 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ParameterSpace::parse("local:" + path + ":1e151", net); }).find("radius R"),
            std::string::npos);
  EXPECT_NO_THROW(ParameterSpace::parse("box:1e150", net));
}
