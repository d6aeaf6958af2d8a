// twosed as a C++ library: the 2sED of a network built in code, at inputs that are a tensor in
// memory, with no file read or written. Through the measurement engine (twosed/measure/engine.h)
// it measures
//   - the standard model's 2sED d_zeta(eps) at zeta = 0 and 0.5, and
//   - the Markov chain model's chain 2sED and lower 2sED at zeta = 0,
// at M parameter samples drawn from the default box ("init"), prints one line per eps, and checks
// the results: every value finite and >= 0, lower <= chain at every eps. It exits 1 if a check
// fails, so that the test suite can run it (tests/install_test.sh).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>

#include "twosed/twosed.h"

namespace {

constexpr const char* kModel = "mlp:8-16-3";
constexpr int64_t kInputs = 50;       // N
constexpr int64_t kParamSamples = 8;  // M
constexpr uint64_t kSeed = 1;         // parameter samples, noise, bootstrap
constexpr double kSigma = 0.5;        // the chain's noise after each hidden layer

bool finite_nonnegative(double v) {
  return std::isfinite(v) && v >= 0.0;
}

}  // namespace

int main() try {
  using namespace twosed;
  Network net(parse_model_spec(kModel));
  // N inputs x ~ N(0, I), float64, from a fixed generator (the same on every run).
  auto gen = at::detail::createCPUGenerator(/*seed_in=*/7);
  const MeasureInputs inputs{torch::randn({kInputs, net.spec().num_inputs()}, gen, torch::kFloat64),
                             "50 standard-normal inputs"};
  // theta^(j) from PyTorch's default init box, as `twosed measure` draws them.
  const DrawnParameters thetas(ParameterSpace::parse("init", net), kSeed, kParamSamples);

  EstimatorOptions estimator;  // eps: the default grid, 1e-6 .. 1e-1
  estimator.bootstrap = 200;
  estimator.zetas = {0.0, 0.5};
  ExecutionContext two_threads;
  two_threads.threads = 2;
  MeasureRun run;
  run.execution = two_threads;

  // The standard model: exact Fisher of the softmax classifier.
  const StandardModel standard_model(net, inputs, FisherOptions{});
  const MeasureResult standard = measure(standard_model, thetas, estimator, kSeed, run);

  // The Markov chain model: noise drawn by twosed from the seed (MarkovNoise{kSeed}).
  MarkovOptions chain_options;
  chain_options.sigma = kSigma;
  const MarkovModel chain_model(net, inputs, chain_options, MarkovNoise{kSeed, {}, ""});
  estimator.zetas = {0.0};
  const MeasureResult markov = measure(chain_model, thetas, estimator, kSeed, run);
  const auto& chain = markov.estimate.curves[0];      // the chain 2sED (log-mean-exp)
  const auto& lower = markov.markov.lower.curves[0];  // the lower 2sED (mean; <= chain by Jensen)

  std::printf("model %s: d = %lld, N = %lld inputs, M = %lld samples from %s, sigma = %g\n", kModel,
              static_cast<long long>(net.num_params()), static_cast<long long>(kInputs),
              static_cast<long long>(kParamSamples), thetas.description().c_str(), kSigma);
  std::printf("%-6s %-10s %10s %10s %10s %10s\n", "", "eps", "d_0", "d_0.5", "chain", "lower");
  int failures = 0;
  const auto& eps = standard.estimate.curves[0].eps;
  for (size_t e = 0; e < eps.size(); ++e) {
    const double d0 = standard.estimate.curves[0].value[e], d05 = standard.estimate.curves[1].value[e];
    const double c = chain.value[e], lo = lower.value[e];
    std::printf("%-6s %-10.3e %10.4f %10.4f %10.4f %10.4f\n", "2sED", eps[e], d0, d05, c, lo);
    for (double v : {d0, d05, c, lo})
      if (!finite_nonnegative(v)) {
        std::fprintf(stderr, "measure_tensor: a 2sED at eps %g is %g: expected a finite value >= 0\n", eps[e], v);
        ++failures;
      }
    if (!(lo <= c)) {
      std::fprintf(stderr, "measure_tensor: lower 2sED %.17g > chain 2sED %.17g at eps %g\n", lo, c, eps[e]);
      ++failures;
    }
  }
  for (const auto& layer : markov.markov.layers)
    std::printf("layer %s (%s): %lld parameters, contribution at eps = %.1e: %.3f\n", layer.name.c_str(),
                layer.description.c_str(), static_cast<long long>(layer.params), eps.back(),
                layer.share.curves[0].value.back());
  if (failures > 0) {
    std::fprintf(stderr, "measure_tensor: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("checks passed: %zu eps values, all finite and >= 0, lower <= chain\n", eps.size());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "measure_tensor: %s\n", e.what());
  return 1;
}
