// The measurement engine (engine.h): in-memory inputs and parameters give what the file
// loaders give, any schedule or order of samples gives the same records and results, resumed
// records are taken as they are, and a call leaves the process's thread setting as it was.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/measure/engine.h"

using namespace twosed;

namespace {

std::string write_array(const torch::Tensor& x, const std::string& name) {
  const auto path = ::testing::TempDir() + name;
  auto c = x.contiguous();
  write_npy(path, c.sizes().vec(), std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel()));
  return path;
}

torch::Tensor inputs_for(const Network& net, int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn({n, net.spec().num_inputs()}, gen, torch::kFloat64);
}

EstimatorOptions small_estimator() {
  EstimatorOptions e;
  e.eps = {1e-5, 1e-3, 1e-1};
  e.zetas = {0.0, 0.5};
  e.ed_n = {1000};
  e.at_n = {1000};
  e.bootstrap = 64;
  return e;
}

void expect_same_records(const SampleRecord& a, const SampleRecord& b) {
  EXPECT_EQ(a.index, b.index);
  ASSERT_EQ(a.blocks.size(), b.blocks.size());
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    EXPECT_EQ(a.blocks[l].eigenvalues, b.blocks[l].eigenvalues) << "sample " << a.index << " block " << l;
    EXPECT_EQ(a.blocks[l].trace, b.blocks[l].trace);
    EXPECT_EQ(a.blocks[l].num_cut, b.blocks[l].num_cut);
  }
}

void expect_same_estimates(const TwoScaleResult& a, const TwoScaleResult& b) {
  ASSERT_EQ(a.curves.size(), b.curves.size());
  for (size_t z = 0; z < a.curves.size(); ++z) {
    EXPECT_EQ(a.curves[z].value, b.curves[z].value);
    EXPECT_EQ(a.curves[z].std_error, b.curves[z].std_error);
  }
  ASSERT_EQ(a.ed.size(), b.ed.size());
  for (size_t i = 0; i < a.ed.size(); ++i) EXPECT_EQ(a.ed[i].value, b.ed[i].value);
  ASSERT_EQ(a.at_n.size(), b.at_n.size());
  for (size_t i = 0; i < a.at_n.size(); ++i) EXPECT_EQ(a.at_n[i].value, b.at_n[i].value);
}

// Computes the schedule backwards, as a worker pool or MPI ranks might deliver it.
class ReversedExecutor : public SampleExecutor {
 public:
  void run(const StatisticalModel& model, const ParameterSource& thetas, const std::vector<int64_t>& schedule,
           const MeasureHooks& hooks, const ExecutionContext& ctx,
           const std::function<void(SampleRecord&&)>& done) const override {
    std::vector<int64_t> reversed(schedule.rbegin(), schedule.rend());
    for (auto& r : run_samples(model, thetas, reversed, hooks, ctx)) done(std::move(r));
  }
};

}  // namespace

// The same measurement from tensors in memory and from .npy files through run_measure: equal
// bit for bit, standard and Markov.
TEST(EngineTest, InMemoryEqualsFiles) {
  for (bool markov : {false, true}) {
    Network net(parse_model_spec("mlp:5-7-4-3"));
    const auto x = inputs_for(net, 20, 3);
    const DrawnParameters drawn(ParameterSpace::parse("init", net), 9, 5);
    auto thetas = torch::empty({5, net.num_params()}, torch::kFloat64);
    for (int64_t j = 0; j < 5; ++j) drawn.fill(j, thetas[j].data_ptr<double>());

    MeasureOptions o;
    o.model = "mlp:5-7-4-3";
    o.inputs_file = write_array(x, "engine_x.npy");
    o.thetas_file = write_array(thetas, "engine_thetas.npy");
    o.estimator = small_estimator();
    o.seed = 9;
    o.markov = markov;
    o.sigma = 0.3;
    const auto from_files = run_measure(o);

    const GivenParameters given(thetas, net.num_params(), "5 given samples");
    FisherOptions fisher;
    fisher.label_seed = 9;
    MeasureResult in_memory;
    if (markov) {
      const MarkovModel model(net, {x, "20 inputs"}, MarkovOptions{0.3, 1, fisher}, MarkovNoise{9, {}, ""});
      in_memory = measure(model, given, small_estimator(), 9);
      expect_same_estimates(from_files.markov.lower, in_memory.markov.lower);
    } else {
      const StandardModel model(net, {x, "20 inputs"}, fisher);
      in_memory = measure(model, given, small_estimator(), 9);
    }
    expect_same_estimates(from_files.estimate, in_memory.estimate);
    // Drawn parameters are the given ones: the same numbers again.
    const StandardModel standard(net, {x, "20 inputs"}, fisher);
    if (!markov) expect_same_estimates(in_memory.estimate, measure(standard, drawn, small_estimator(), 9).estimate);
    // The result carries what produced it.
    EXPECT_EQ(in_memory.header.num_params, net.num_params());
    EXPECT_EQ(in_memory.header.num_inputs, 20);
    EXPECT_EQ(in_memory.header.seed, 9u);
    EXPECT_EQ(in_memory.header.markov, markov);
    EXPECT_EQ(in_memory.estimator.bootstrap, 64);
    EXPECT_EQ(in_memory.data_description, "20 inputs");
  }
}

// A record depends only on its index: a partial schedule gives the full run's records, and an
// executor that delivers them in reverse gives the same result, with on_record in index order.
TEST(EngineTest, AnyScheduleAndOrderGiveTheSameRecords) {
  Network net(parse_model_spec("cnn:1x5x5-c2k3-relu-f3"));
  const StandardModel model(net, {inputs_for(net, 8, 1), "8 inputs"}, FisherOptions{});
  const DrawnParameters thetas(ParameterSpace::parse("init", net), 4, 6);
  const auto all = run_samples(model, thetas, {0, 1, 2, 3, 4, 5});
  const auto some = run_samples(model, thetas, {4, 1});
  expect_same_records(some[0], all[4]);
  expect_same_records(some[1], all[1]);

  MeasureRun run;
  std::vector<int64_t> sampled, recorded;
  run.hooks.on_sample = [&](const SampleRecord& r) { sampled.push_back(r.index); };
  run.hooks.on_record = [&](const SampleRecord& r) { recorded.push_back(r.index); };
  const ReversedExecutor reversed;
  run.execution.executor = &reversed;
  const auto backwards = measure(model, thetas, small_estimator(), 4, run);
  EXPECT_EQ(sampled, (std::vector<int64_t>{5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(recorded, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  expect_same_estimates(backwards.estimate, measure(model, thetas, small_estimator(), 4).estimate);
}

// Resumed records are taken, not recomputed: only the rest of the schedule runs, and the
// result equals an uninterrupted run's.
TEST(EngineTest, CompletedRecordsAreTaken) {
  Network net(parse_model_spec("mlp:4-6-3"));
  MarkovOptions mo;
  mo.sigma = 0.5;
  const MarkovModel model(net, {inputs_for(net, 10, 2), "10 inputs"}, mo, MarkovNoise{5, {}, ""});
  const DrawnParameters thetas(ParameterSpace::parse("init", net), 5, 7);
  const auto full = measure(model, thetas, small_estimator(), 5);
  MeasureRun run;
  run.completed = run_samples(model, thetas, {0, 2, 6});
  std::vector<int64_t> computed;
  run.hooks.on_sample = [&](const SampleRecord& r) { computed.push_back(r.index); };
  const auto resumed = measure(model, thetas, small_estimator(), 5, run);
  EXPECT_EQ(computed, (std::vector<int64_t>{1, 3, 4, 5}));
  EXPECT_EQ(resumed.resumed_samples, 3);
  expect_same_estimates(full.estimate, resumed.estimate);
  expect_same_estimates(full.markov.lower, resumed.markov.lower);
  for (size_t l = 0; l < full.markov.layers.size(); ++l)
    expect_same_estimates(full.markov.layers[l].share, resumed.markov.layers[l].share);
  // A stored record that does not fit is refused.
  run.completed = {run.completed.front(), run.completed.front()};
  EXPECT_THROW(measure(model, thetas, small_estimator(), 5, run), DataError);
}

// Inputs: converted to float64 once, reshaped to the model's input shape, checked.
TEST(EngineTest, InputsAreChecked) {
  Network net(parse_model_spec("cnn:1x3x3-c2k2-relu-f3"));
  const auto x32 = torch::randn({4, 9}, torch::kFloat32);
  const auto in = checked_inputs(net, {x32, "float32 inputs"});
  EXPECT_EQ(in.x.scalar_type(), torch::kFloat64);
  EXPECT_EQ(in.x.sizes().vec(), (std::vector<int64_t>{4, 1, 3, 3}));
  EXPECT_TRUE(torch::equal(in.x.view({4, 9}), x32.to(torch::kFloat64)));
  try {
    checked_inputs(net, {torch::zeros({4, 8}, torch::kFloat64), "x"});
    FAIL();
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "x: 8 features per example, but model 'cnn:1x3x3-c2k2-relu-f3' takes 9");
  }
  auto bad = torch::zeros({4, 9}, torch::kFloat64);
  bad[2][5] = std::nan("");
  try {
    checked_inputs(net, {bad, "x"});
    FAIL();
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "x: NaN or Inf at example 2, feature 5");
  }
  EXPECT_THROW(checked_inputs(net, {torch::Tensor(), "x"}), DataError);
  EXPECT_THROW(GivenParameters(torch::zeros({2, 5}, torch::kFloat64), 7, "t"), DataError);
  auto inf = torch::zeros({2, 7}, torch::kFloat64);
  inf[1][3] = INFINITY;
  try {
    GivenParameters(inf, 7, "t");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "t: NaN or Inf in sample 1, parameter 3");
  }
  try {
    DrawnParameters(ParameterSpace::parse("init", net), 0, 0);
    FAIL();
  } catch (const OptionError& e) {
    EXPECT_EQ(e.option(), "MeasureOptions.num_param_samples");
  }
}

// Threads are scoped to the call: the process's setting is the same afterwards, and 1 and 2
// threads agree (invariant 5).
TEST(EngineTest, ThreadsAreScoped) {
  Network net(parse_model_spec("mlp:6-9-3"));
  const StandardModel model(net, {inputs_for(net, 15, 8), "15 inputs"}, FisherOptions{});
  const DrawnParameters thetas(ParameterSpace::parse("init", net), 1, 4);
  const int before = current_threads();
  MeasureRun one, two;
  one.execution.threads = 1;
  two.execution.threads = 2;
  const auto a = measure(model, thetas, small_estimator(), 1, one);
  EXPECT_EQ(current_threads(), before);
  const auto b = measure(model, thetas, small_estimator(), 1, two);
  EXPECT_EQ(current_threads(), before);
  for (size_t z = 0; z < a.estimate.curves.size(); ++z)
    for (size_t e = 0; e < a.estimate.curves[z].value.size(); ++e)
      EXPECT_NEAR(a.estimate.curves[z].value[e], b.estimate.curves[z].value[e],
                  1e-9 * std::abs(a.estimate.curves[z].value[e]));
  {
    ScopedThreads scoped(1);
    EXPECT_EQ(current_threads(), 1);
  }
  EXPECT_EQ(current_threads(), before);
  EXPECT_THROW(ScopedThreads(-1), OptionError);
}

namespace {

// A model whose sample 3 fails, to check that a worker's error reaches the caller.
class FailingModel : public StatisticalModel {
 public:
  explicit FailingModel(const StatisticalModel& inner) : inner_(inner) {}
  SpectraHeader header() const override { return inner_.header(); }
  ResultSources sources() const override { return inner_.sources(); }
  const FisherOptions& fisher() const override { return inner_.fisher(); }
  SampleRecord sample(int64_t j, const torch::Tensor& theta,
                      const std::function<void(int64_t, int64_t)>& after_layer) const override {
    if (j == 3) throw DataError("sample 3 failed");
    return inner_.sample(j, theta, after_layer);
  }

 private:
  const StatisticalModel& inner_;
};

}  // namespace

// Samples in parallel: the records of a sequential run on one thread, bit for bit, standard
// and Markov; a failing sample's error reaches the caller and the other workers stop.
TEST(EngineTest, ParallelSamplesEqualSequentialOnOneThread) {
  Network net(parse_model_spec("cnn:1x6x6-c3k3-relu-p2-f5-tanh-f3"));
  const auto x = inputs_for(net, 12, 6);
  const DrawnParameters thetas(ParameterSpace::parse("init", net), 2, 9);
  MarkovOptions mo;
  mo.sigma = 0.2;
  const StandardModel standard(net, {x, "12 inputs"}, FisherOptions{});
  const MarkovModel markov(net, {x, "12 inputs"}, mo, MarkovNoise{2, {}, ""});
  const ParallelExecutor parallel(3);
  for (const StatisticalModel* model :
       {static_cast<const StatisticalModel*>(&standard), static_cast<const StatisticalModel*>(&markov)}) {
    MeasureRun sequential, threaded;
    sequential.execution.threads = 1;
    threaded.execution.executor = &parallel;
    std::vector<int64_t> recorded;
    threaded.hooks.on_record = [&](const SampleRecord& r) { recorded.push_back(r.index); };
    const auto a = measure(*model, thetas, small_estimator(), 2, sequential);
    const auto b = measure(*model, thetas, small_estimator(), 2, threaded);
    expect_same_estimates(a.estimate, b.estimate);
    if (a.markov.enabled) expect_same_estimates(a.markov.lower, b.markov.lower);
    EXPECT_EQ(recorded, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  }
  const FailingModel failing(standard);
  MeasureRun threaded;
  threaded.execution.executor = &parallel;
  try {
    measure(failing, thetas, small_estimator(), 2, threaded);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "sample 3 failed");
  }
  EXPECT_THROW(ParallelExecutor(0), OptionError);
}
