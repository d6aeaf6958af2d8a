// Fisher spectra: the Gram trick (sample side, Kronecker and chunked conv paths) and the
// parameter side both equal the brute-force autograd Fisher (docs/math.md section 8, invariant 2).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "linalg/scratch.h"
#include "twosed/fisher/fisher.h"
#include "twosed/model/parameter_space.h"

using namespace twosed;

namespace {

// Invariant 2: spectra agree to 1e-10 x lambda_max.
constexpr double kSpectrumTolerance = 1e-10;

struct Case {
  const char* spec;
  Task task;
  FisherKind kind;
};

const Case kCases[] = {
    {"mlp:6-5-4", Task::Classify, FisherKind::Exact},
    {"mlp:6-5-5-3", Task::Regress, FisherKind::Exact},
    {"mlp:6-5-4", Task::Classify, FisherKind::Sampled},
    {"mlp:6-5-4", Task::Regress, FisherKind::Sampled},
    {"cnn:2x6x6-c3k3-tanh-p2-f4", Task::Classify, FisherKind::Exact},
    {"cnn:1x7x7-c2k3s2p1-relu-c3k2-a2-f3", Task::Classify, FisherKind::Exact},
    {"cnn:1x7x7-c2k3s2p1-gelu-flatten-f3", Task::Regress, FisherKind::Sampled},
};

torch::Tensor inputs(const Network& net, int64_t n) {
  torch::manual_seed(11);
  auto shape = net.spec().input_shape;
  shape.insert(shape.begin(), n);
  return torch::randn(shape, torch::kFloat64);
}

torch::Tensor theta_for(const Network& net) {
  auto theta = torch::empty({net.num_params()}, torch::kFloat64);
  ParameterSpace::parse("box:0.8", net).sample(5, 0, theta.data_ptr<double>());
  return theta;
}

// Non-zero spectrum (ascending) of a symmetric matrix, cut at the spec's cutoff.
std::vector<double> kept_spectrum(const torch::Tensor& m) {
  return spectrum_of(m, kZeroCutoff).spectrum.eigenvalues;
}

void expect_same_spectrum(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  const double scale = std::max(a.back(), b.back());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_LE(std::abs(a[i] - b[i]), kSpectrumTolerance * scale) << what << " i=" << i;
}

}  // namespace

TEST(FisherTest, GramAndParameterSidesEqualDenseAutogradFisher) {
  for (const auto& c : kCases) {
    Network net(parse_model_spec(c.spec));
    auto theta = theta_for(net);
    FisherOptions o;
    o.task = c.task;
    o.out_noise = 0.7;
    o.kind = c.kind;
    o.label_seed = 3;
    // Small memory budget: forces conv Gram chunks of a single channel and input chunks.
    o.memory_budget = 2048;
    for (int64_t n : {3, 12}) {  // N*R below and above d
      auto x = inputs(net, n);
      const auto dense = dense_fisher(net, theta, x, o, 9);
      const auto gram = gram_matrix(net, theta, x, o, 9);
      const auto param = parameter_fisher(net, theta, x, o, 9);
      const std::string what = std::string(c.spec) + " N=" + std::to_string(n);
      expect_same_spectrum(kept_spectrum(dense), kept_spectrum(gram), what + " gram");
      expect_same_spectrum(kept_spectrum(dense), kept_spectrum(param), what + " parameter side");
      EXPECT_NEAR(dense.trace().item<double>(), gram.trace().item<double>(), 1e-12 * dense.trace().item<double>())
          << what;
      // The public entry point picks the smaller side and reports it.
      auto fs = fisher_spectrum(net, theta, x, o, 9);
      expect_same_spectrum(kept_spectrum(dense), fs.spectrum.eigenvalues, what + " fisher_spectrum");
      const int64_t rows = n * rows_per_example(net.num_outputs(), o);
      EXPECT_EQ(fs.side, rows <= net.num_params() ? GramSide::Samples : GramSide::Parameters) << what;
    }
  }
}

TEST(FisherTest, SoftmaxGramUsesRankKMinusOneFactor) {
  // Lambda = diag(p) - p p^T has rank k-1: the Gram is N(k-1) square and, for a wide network
  // with generic inputs, of full rank N(k-1).
  Network net(parse_model_spec("mlp:20-30-5"));
  auto theta = theta_for(net);
  auto x = inputs(net, 8);
  auto fs = fisher_spectrum(net, theta, x, FisherOptions{});
  EXPECT_EQ(fs.matrix_size, 8 * 4);
  EXPECT_EQ(static_cast<int64_t>(fs.spectrum.eigenvalues.size()), 8 * 4);
  EXPECT_EQ(fs.spectrum.num_cut, 0);
  // The factor reproduces Lambda exactly.
  auto f = torch::randn({3, 5}, torch::kFloat64) * 4;
  auto q = output_covectors(f, FisherOptions{}, 0);
  auto p = torch::softmax(f, 1);
  auto lambda = torch::diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1);
  EXPECT_LT((torch::bmm(q.transpose(1, 2), q) - lambda).abs().max().item<double>(), 1e-15);
}

TEST(FisherTest, CutoffRemovesRoundoffAndNegatives) {
  auto m = torch::diag(torch::tensor({-1e-17, 1e-20, 5e-13, 2e-12, 1.0}, torch::kFloat64));
  auto fs = spectrum_of(m, kZeroCutoff);
  ASSERT_EQ(fs.spectrum.eigenvalues.size(), 2u);  // 2e-12 > 1e-12 * 1 is kept, 5e-13 is not
  EXPECT_DOUBLE_EQ(fs.spectrum.eigenvalues[0], 2e-12);
  EXPECT_EQ(fs.spectrum.num_cut, 3);
  EXPECT_DOUBLE_EQ(fs.most_negative, -1e-17);
  EXPECT_NEAR(fs.spectrum.trace, 1.0 + 2e-12 + 5e-13, 1e-15);
}

// The engine's SampleWorker draws a sample's large temporaries (Linear layers' backprop rows)
// from a scratch pool that lives across samples. With every tensor counted as large, and the
// rows rewritten in place by the activations, a pool reused over several samples gives the
// same spectra, bit for bit, as fresh tensors.
TEST(FisherTest, ScratchPoolReusedAcrossSamplesChangesNothing) {
  for (const char* spec : {"mlp:6-5-4", "mlp:6-5-5-3", "cnn:1x7x7-c2k3s2p1-relu-c3k2-a2-f3"}) {
    Network net(parse_model_spec(spec));
    const auto x = inputs(net, 7);
    FisherOptions fo;
    linalg::ScratchPool pool(/*min_bytes=*/1);
    for (int64_t j = 0; j < 3; ++j) {
      auto theta = torch::empty({net.num_params()}, torch::kFloat64);
      ParameterSpace::parse("box:0.8", net).sample(5, static_cast<uint64_t>(j), theta.data_ptr<double>());
      const auto fresh = fisher_spectrum(net, theta, x, fo, static_cast<uint64_t>(j));
      linalg::ScratchScope scope(pool);
      const auto pooled = fisher_spectrum(net, theta, x, fo, static_cast<uint64_t>(j));
      EXPECT_EQ(pooled.spectrum.eigenvalues, fresh.spectrum.eigenvalues) << spec << " j=" << j;
      EXPECT_EQ(pooled.spectrum.trace, fresh.spectrum.trace) << spec << " j=" << j;
    }
    EXPECT_GT(pool.reuses(), 0) << spec;  // the rows of samples 1 and 2 came from the pool
  }
}
