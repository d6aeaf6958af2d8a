// The Markov chain model: structured per-unit block spectra against the brute-force autograd
// blocks, invariant 4 (lower <= chain, breakdown sums to the total), the sigma -> infinity limit,
// thread independence and the noise draw order (docs/math.md sections 2-4, 8).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>

#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/fisher/fisher.h"
#include "twosed/fisher/markov.h"
#include "twosed/measure/measure.h"
#include "twosed/model/parameter_space.h"
#include "twosed/random.h"

using namespace twosed;

namespace {

struct Case {
  const char* spec;
  Activation act;  // mlp activation
  Task task;
  int64_t draws;
  GramSide side;
  bool bias = true;
};

// Every tail the per-unit split handles: activations, max and average pooling (overlapping
// windows too), flatten, stride and padding, R > 1, both sides forced and auto.
const Case kCases[] = {
    {"mlp:5-4-3", Activation::Tanh, Task::Classify, 1, GramSide::Auto},
    {"mlp:5-6-4-3", Activation::ReLU, Task::Classify, 2, GramSide::Samples},
    {"mlp:4-3-5-2", Activation::Sigmoid, Task::Regress, 1, GramSide::Parameters},
    {"mlp:3-7-2", Activation::GELU, Task::Classify, 3, GramSide::Auto},
    {"cnn:2x6x6-c3k3-tanh-p2-f4", Activation::ReLU, Task::Classify, 1, GramSide::Auto},
    {"cnn:1x7x7-c2k3s2p1-sigmoid-c3k2-a2-f3", Activation::ReLU, Task::Classify, 2, GramSide::Samples},
    {"cnn:1x8x8-c3k3p1-tanh-p3s2-flatten-f5-tanh-f3", Activation::ReLU, Task::Regress, 1, GramSide::Parameters},
    {"cnn:2x5x5-c2k2-gelu-a2s1-c2k2-tanh-f3", Activation::ReLU, Task::Classify, 1, GramSide::Auto},
    // A pooling before the first parametric layer, two convolutions in a row, no biases.
    {"cnn:1x8x8-p2-c3k3-tanh-f2", Activation::ReLU, Task::Classify, 2, GramSide::Auto},
    {"cnn:1x8x8-c3k3-c2k3-tanh-f2", Activation::ReLU, Task::Regress, 1, GramSide::Auto, false},
    {"mlp:5-4-4-3", Activation::Tanh, Task::Classify, 1, GramSide::Auto, false},
};

torch::Tensor inputs(const Network& net, int64_t n, uint64_t seed = 11) {
  torch::manual_seed(seed);
  auto shape = net.spec().input_shape;
  shape.insert(shape.begin(), n);
  return torch::randn(shape, torch::kFloat64);
}

torch::Tensor theta_for(const Network& net, int64_t j = 0, const char* space = "box:0.9") {
  auto theta = torch::empty({net.num_params()}, torch::kFloat64);
  ParameterSpace::parse(space, net).sample(5, j, theta.data_ptr<double>());
  return theta;
}

std::vector<double> sorted(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

// The structured blocks (per unit / per channel, shared Gram, either side) have the spectrum of
// the dense block F_l built from autograd Jacobians: to 1e-10 relative (issue's tolerance).
TEST(MarkovTest, StructuredBlocksEqualDenseAutogradBlocks) {
  for (const auto& c : kCases) {
    ModelOptions mopts;
    mopts.activation = c.act;
    mopts.bias = c.bias;
    Network net(parse_model_spec(c.spec, mopts));
    MarkovOptions mo;
    mo.sigma = 0.3;
    mo.noise_draws = c.draws;
    mo.fisher.task = c.task;
    mo.fisher.out_noise = 0.7;
    mo.fisher.side = c.side;
    MarkovChainModel chain(net, mo);
    const int64_t n = 4;
    auto x = inputs(net, n);
    auto theta = theta_for(net);
    auto noise = draw_noise(3, 0, net.num_params(), chain.noise_rows(n), chain.noise_width());
    auto fast = chain.spectrum(theta, x, noise);
    auto dense = chain.dense_blocks(theta, x, noise);
    ASSERT_EQ(fast.layers.size(), chain.layers().size()) << c.spec;
    ASSERT_EQ(dense.size(), chain.layers().size()) << c.spec;
    for (size_t l = 0; l < dense.size(); ++l) {
      const std::string what = std::string(c.spec) + " layer " + std::to_string(l);
      auto want = spectrum_of(dense[l], kZeroCutoff);
      auto got = sorted(fast.layers[l].spectrum.eigenvalues);
      const auto& ref = want.spectrum.eigenvalues;
      ASSERT_FALSE(ref.empty()) << what;
      // Per-unit cutoffs can keep a unit's tiny eigenvalues that the whole block's cutoff drops:
      // compare everything above the block-level cutoff, and require the rest to be negligible.
      std::vector<double> big;
      for (double e : got)
        if (e > kZeroCutoff * ref.back()) big.push_back(e);
      ASSERT_EQ(big.size(), ref.size()) << what;
      for (size_t i = 0; i < ref.size(); ++i)
        EXPECT_LE(std::abs(big[i] - ref[i]), 1e-10 * ref[i] + 1e-13 * ref.back()) << what << " i=" << i;
      EXPECT_NEAR(fast.layers[l].spectrum.trace, dense[l].trace().item<double>(), 1e-12 * want.spectrum.trace) << what;
      if (chain.layers()[l].hidden) {
        EXPECT_GE(fast.layers[l].blocks, 1) << what;
        EXPECT_LE(fast.layers[l].blocks, chain.layers()[l].units) << what;
        if (c.side == GramSide::Samples) {
          EXPECT_EQ(fast.layers[l].blocks_parameter_side, 0) << what;
        }
        if (c.side == GramSide::Parameters) {
          EXPECT_EQ(fast.layers[l].blocks_samples_side, 0) << what;
        }
      }
    }
  }
}

// A hidden block is block diagonal over units, and the noise layout is as the spec says:
// H = sum of hidden output sizes, offsets in layer order.
TEST(MarkovTest, LayersAndNoiseLayout) {
  Network net(parse_model_spec("cnn:1x8x8-c3k3-relu-p2-f5-relu-f2"));
  MarkovOptions mo;
  mo.sigma = 1.0;
  MarkovChainModel chain(net, mo);
  ASSERT_EQ(chain.layers().size(), 3u);
  EXPECT_EQ(chain.layers()[0].noise_width, 3 * 3 * 3);
  EXPECT_EQ(chain.layers()[0].units, 3);
  EXPECT_EQ(chain.layers()[1].noise_offset, 27);
  EXPECT_EQ(chain.layers()[1].noise_width, 5);
  EXPECT_FALSE(chain.layers()[2].hidden);
  EXPECT_EQ(chain.noise_width(), 32);
  EXPECT_EQ(chain.layers()[0].name, "0");
  EXPECT_EQ(chain.layers()[1].name, "4");  // conv, relu, pool, implicit flatten, then the Linear
  int64_t total = 0;
  for (const auto& l : chain.layers()) total += l.params;
  EXPECT_EQ(total, net.num_params());
}

TEST(MarkovTest, RejectsBadSigmaAndDraws) {
  Network net(parse_model_spec("mlp:3-4-2"));
  for (double s : std::vector<double>{0.0, -1.0, std::nan(""), INFINITY}) {
    MarkovOptions mo;
    mo.sigma = s;
    EXPECT_THROW(MarkovChainModel(net, mo), UsageError) << s;
  }
  MarkovOptions mo;
  mo.sigma = 1;
  mo.noise_draws = 0;
  EXPECT_THROW(MarkovChainModel(net, mo), UsageError);
  mo.noise_draws = 1;
  MarkovChainModel chain(net, mo);
  auto x = inputs(net, 3);
  EXPECT_THROW(chain.spectrum(theta_for(net), x, torch::zeros({3, 5}, torch::kFloat64)), UsageError);
}

// The noise continues sample j's parameter stream after theta's d uniforms (docs/math.md section 3).
TEST(MarkovTest, NoiseFollowsThetaInTheParameterStream) {
  const int64_t d = 17;
  auto noise = draw_noise(9, 4, d, 3, 2);
  Rng rng(9, Stream::Parameters, 4);
  for (int i = 0; i < d; ++i) rng.uniform();
  const double* p = noise.data_ptr<double>();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(p[i], rng.normal());
}

namespace {
MeasureOptions markov_measure(const char* model, double sigma, uint64_t seed = 1) {
  MeasureOptions o;
  o.model = model;
  o.num_inputs = 12;
  o.num_param_samples = 6;
  o.markov = true;
  o.sigma = sigma;
  o.seed = seed;
  o.estimator.zetas = {0.0, 0.5};
  o.estimator.bootstrap = 100;
  return o;
}
}  // namespace

// Invariant 4 on random models: lower <= chain at every (zeta, eps) on the same samples, and
// the layer breakdown sums to lower - zeta*d.
TEST(MarkovTest, LowerBelowChainAndBreakdownSums) {
  const char* models[] = {"mlp:6-5-3", "mlp:6-8-4-3", "cnn:1x2x3-c2k2-relu-f4-tanh-f3"};
  for (uint64_t seed = 1; seed <= 3; ++seed)
    for (const char* model : models) {
      auto r = run_measure(markov_measure(model, 0.05 * static_cast<double>(seed), seed));
      ASSERT_TRUE(r.markov.enabled);
      const auto& lower = r.markov.lower;
      const auto& chain = r.estimate;
      ASSERT_EQ(lower.curves.size(), 2u);
      for (size_t z = 0; z < lower.curves.size(); ++z) {
        const double zeta_d = lower.curves[z].zeta * static_cast<double>(r.spec.num_params());
        for (size_t e = 0; e < lower.curves[z].eps.size(); ++e) {
          const double lo = lower.curves[z].value[e], ch = chain.curves[z].value[e];
          EXPECT_LE(lo, ch * (1 + 1e-12)) << model << " zeta " << lower.curves[z].zeta << " e " << e;
          double sum = zeta_d;
          for (const auto& layer : r.markov.layers) sum += layer.share.curves[z].value[e];
          EXPECT_NEAR(sum, lo, 1e-10 * std::max(1.0, lo)) << model;
          // Samples differ, so the bootstrap sees spread: a finite, positive standard error.
          EXPECT_TRUE(std::isfinite(lower.curves[z].std_error[e]));
          EXPECT_GT(lower.curves[z].std_error[e], 0.0) << model << " zeta " << lower.curves[z].zeta << " e " << e;
        }
      }
    }
}

// Invariant 3 for the Markov chain model: the ellipsoid chain 2sED at zeta = 0 and
// eps = eps_0(n) is the Abbas et al. ED(n) of the same (block-diagonal) Fisher matrices.
TEST(MarkovTest, EllipsoidChainAtZetaZeroIsTheAbbasED) {
  for (const char* model : {"mlp:6-5-3", "cnn:1x2x3-c2k2-relu-f4-tanh-f3"}) {
    auto opts = markov_measure(model, 0.2);
    opts.estimator.cover = Cover::Ellipsoid;
    opts.estimator.zetas = {0.0};
    opts.estimator.ed_n = {1000, 60000};
    opts.estimator.at_n = {1000, 60000};
    const auto r = run_measure(opts);
    ASSERT_EQ(r.estimate.ed.size(), 2u);
    ASSERT_EQ(r.estimate.at_n.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      const auto& ed = r.estimate.ed[i];
      const auto& chain = r.estimate.at_n[i];
      EXPECT_EQ(ed.n, chain.n);
      EXPECT_NEAR(chain.eps, ed.eps, 1e-15 * ed.eps) << model;
      EXPECT_NEAR(chain.value, ed.value, 1e-9 * std::max(1.0, ed.value)) << model << " n " << ed.n;
      // The lower 2sED (mean, Jensen) stays at or below it.
      EXPECT_LE(r.markov.lower.at_n[i].value, chain.value * (1 + 1e-12)) << model;
    }
  }
}

// sigma -> infinity: the first hidden block scales like 1/sigma^2 (its inputs are the data);
// later ReLU blocks stay O(1) (inputs ~ sigma, divided by sigma^2); the Gaussian output block
// grows like sigma^2 (inputs ~ sigma). So the hidden share of the trace falls like sigma^-2
// and, at fixed eps, the hidden layers' contribution (log1p(a*sqrt(lambda_hat)) with
// sqrt(lambda_hat) ~ 1/sigma) falls like 1/sigma.
TEST(MarkovTest, LargeSigmaLeavesOnlyTheOutputBlock) {
  double previous_fraction = 0, previous_hidden = 0, first_fraction = 0, first_hidden = 0;
  for (double sigma : {10.0, 100.0, 1000.0, 10000.0}) {
    auto opts = markov_measure("mlp:6-5-4-3", sigma);
    opts.fisher.task = Task::Regress;
    opts.estimator.eps = {1e-1};
    auto r = run_measure(opts);
    double hidden_trace = 0, total_trace = 0, hidden_contribution = 0;
    for (size_t l = 0; l < r.markov.layers.size(); ++l) {
      total_trace += r.markov.layers[l].mean_trace;
      if (l + 1 == r.markov.layers.size()) continue;
      hidden_trace += r.markov.layers[l].mean_trace;
      hidden_contribution += r.markov.layers[l].share.curves[0].value[0];
    }
    const double fraction = hidden_trace / total_trace;
    if (previous_fraction == 0) {
      first_fraction = fraction;
      first_hidden = hidden_contribution;
    } else {
      EXPECT_NEAR(fraction / previous_fraction, 1e-2, 0.5e-2) << sigma;        // sigma^-2
      EXPECT_NEAR(hidden_contribution / previous_hidden, 0.1, 0.05) << sigma;  // 1/sigma
    }
    previous_fraction = fraction;
    previous_hidden = hidden_contribution;
  }
  // Three decades: the hidden layers are ~1e-6 of the trace and ~1e-3 of their contribution.
  EXPECT_LT(previous_fraction, 2e-6 * first_fraction);
  EXPECT_LT(previous_hidden, 2e-3 * first_hidden);
  EXPECT_GT(first_hidden, 0.1);
}

// Invariant 5 for the Markov path: bit-identical for the same seed and threads; 1 vs 2
// threads within 1e-9 relative.
TEST(MarkovTest, ReproducibleAndThreadIndependent) {
  auto opts = markov_measure("cnn:1x6x6-c4k3-relu-p2-f6-relu-f3", 0.2);
  ExecutionContext two, one;
  two.threads = 2;
  one.threads = 1;
  auto a = run_measure(opts, two);
  auto b = run_measure(opts, two);
  auto c = run_measure(opts, one);
  for (size_t z = 0; z < a.markov.lower.curves.size(); ++z)
    for (size_t e = 0; e < a.markov.lower.curves[z].value.size(); ++e) {
      EXPECT_EQ(a.markov.lower.curves[z].value[e], b.markov.lower.curves[z].value[e]);
      EXPECT_EQ(a.estimate.curves[z].value[e], b.estimate.curves[z].value[e]);
      EXPECT_NEAR(a.markov.lower.curves[z].value[e], c.markov.lower.curves[z].value[e],
                  1e-9 * std::abs(a.markov.lower.curves[z].value[e]));
      EXPECT_NEAR(a.estimate.curves[z].value[e], c.estimate.curves[z].value[e],
                  1e-9 * std::abs(a.estimate.curves[z].value[e]));
    }
}

// --noise injects exactly the noise twosed draws: a run given the drawn noise (and the drawn
// thetas) as files reproduces the run that drew them, bit for bit. Both file layouts work.
TEST(MarkovTest, InjectedNoiseAndThetasReproduceDrawnOnes) {
  auto opts = markov_measure("mlp:6-5-4-3", 0.3);
  opts.noise_draws = 2;
  const auto drawn = run_measure(opts);
  Network net(parse_model_spec(opts.model));
  MarkovOptions mo;
  mo.sigma = opts.sigma;
  mo.noise_draws = opts.noise_draws;
  MarkovChainModel chain(net, mo);
  const int64_t m = opts.num_param_samples, n = opts.num_inputs, rows = chain.noise_rows(n), h = chain.noise_width();
  std::vector<double> noise, thetas;
  auto space = ParameterSpace::parse("init", net);
  std::vector<double> theta(static_cast<size_t>(net.num_params()));
  for (int64_t j = 0; j < m; ++j) {
    auto z = draw_noise(opts.seed, static_cast<uint64_t>(j), net.num_params(), rows, h);
    noise.insert(noise.end(), z.data_ptr<double>(), z.data_ptr<double>() + rows * h);
    space.sample(opts.seed, j, theta.data());
    thetas.insert(thetas.end(), theta.begin(), theta.end());
  }
  const std::string dir = ::testing::TempDir();
  write_npy(dir + "/noise3.npy", {m, rows, h}, noise);
  write_npy(dir + "/noise4.npy", {m, n, opts.noise_draws, h}, noise);
  write_npy(dir + "/thetas.npy", {m, net.num_params()}, thetas);
  for (const char* file : {"/noise3.npy", "/noise4.npy"}) {
    auto given = opts;
    given.noise_file = dir + file;
    given.thetas_file = dir + "/thetas.npy";
    const auto r = run_measure(given);
    for (size_t z = 0; z < r.estimate.curves.size(); ++z) {
      EXPECT_EQ(r.estimate.curves[z].value, drawn.estimate.curves[z].value) << file;
      EXPECT_EQ(r.markov.lower.curves[z].value, drawn.markov.lower.curves[z].value) << file;
    }
  }
  auto wrong = opts;
  wrong.noise_file = dir + "/noise3.npy";
  wrong.noise_draws = 1;
  EXPECT_THROW(run_measure(wrong), DataError);
}

// --spectra-out writes each sample's layer spectra as it finishes; --spectra-in recomputes the
// lower and chain 2sED and the breakdown from them, identically (17-digit round trip), also from
// a file whose last line was cut by a stopped run.
TEST(MarkovTest, SpectraFileRoundTrip) {
  auto opts = markov_measure("mlp:6-5-4-3", 0.3);
  const std::string path = ::testing::TempDir() + "/markov_spectra.jsonl";
  opts.spectra_out = path;
  const auto full = run_measure(opts);
  MeasureOptions again;
  again.spectra_in = path;
  again.seed = opts.seed;
  again.estimator = opts.estimator;
  const auto back = run_measure(again);
  ASSERT_TRUE(back.markov.enabled);
  EXPECT_EQ(back.markov.sigma, opts.sigma);
  ASSERT_EQ(back.markov.layers.size(), full.markov.layers.size());
  for (size_t z = 0; z < full.estimate.curves.size(); ++z) {
    EXPECT_EQ(back.estimate.curves[z].value, full.estimate.curves[z].value);
    EXPECT_EQ(back.markov.lower.curves[z].value, full.markov.lower.curves[z].value);
    EXPECT_EQ(back.markov.lower.curves[z].std_error, full.markov.lower.curves[z].std_error);
    for (size_t l = 0; l < full.markov.layers.size(); ++l) {
      EXPECT_EQ(back.markov.layers[l].name, full.markov.layers[l].name);
      EXPECT_EQ(back.markov.layers[l].share.curves[z].value, full.markov.layers[l].share.curves[z].value);
    }
  }
  // A run stopped while writing sample 5's line: the first five samples remain usable.
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t cut = text.rfind('\n', text.size() - 2);
  std::ofstream(path, std::ios::trunc) << text.substr(0, cut + 40);
  const auto partial = run_measure(again);
  EXPECT_EQ(partial.estimate.num_param_samples, opts.num_param_samples - 1);
  EXPECT_EQ(partial.markov.sample_traces.size(), static_cast<size_t>(opts.num_param_samples - 1));
}
