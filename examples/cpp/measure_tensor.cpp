// twosed as a C++ library: the 2sED of a network built in code, at inputs that are a tensor in
// memory, with no file read or written. It measures
//   - the standard model's 2sED d_zeta(eps) (zeta = 0 and 0.5) from exact Fisher spectra, and
//   - the Markov chain model's chain 2sED and lower 2sED (zeta = 0),
// at M parameter samples drawn from the default box ("init"), prints one line per eps, and
// checks the results: every value finite and >= 0, lower <= chain at every eps. It exits 1 if a
// check fails, so that the test suite can run it (tests/install_test.sh).
//
// Each step is one function (spectra of the standard model, spectra of the chain, estimates) so
// that a higher-level engine call can replace them one by one.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include "twosed/twosed.h"

namespace {

constexpr const char* kModel = "mlp:8-16-3";
constexpr int64_t kInputs = 50;       // N
constexpr int64_t kParamSamples = 8;  // M
constexpr uint64_t kSeed = 1;         // parameter samples, noise, bootstrap
constexpr double kSigma = 0.5;        // the chain's noise after each hidden layer

// N inputs x ~ N(0, I), float64, from a fixed generator (the same on every run).
torch::Tensor make_inputs(const twosed::Network& net) {
  auto gen = at::detail::createCPUGenerator(/*seed_in=*/7);
  const int64_t width = net.spec().input_shape.at(0);
  return torch::randn({kInputs, width}, gen, torch::kFloat64);
}

// Sample j's theta^(j) from the parameter space, as `twosed measure` draws it.
torch::Tensor draw_theta(const twosed::ParameterSpace& space, int64_t j) {
  auto theta = torch::empty({space.num_params()}, torch::kFloat64);
  space.sample(kSeed, j, theta.data_ptr<double>());
  return theta;
}

// The standard model: one exact Fisher spectrum per parameter sample.
std::vector<twosed::SampleSpectrum> standard_spectra(const twosed::Network& net, const twosed::ParameterSpace& space,
                                                     const torch::Tensor& x, const twosed::FisherOptions& fopts) {
  std::vector<twosed::SampleSpectrum> spectra;
  for (int64_t j = 0; j < kParamSamples; ++j)
    spectra.push_back(twosed::fisher_spectrum(net, draw_theta(space, j), x, fopts, static_cast<uint64_t>(j)).spectrum);
  return spectra;
}

// The Markov chain model: per sample, its block spectra merged into the spectrum of the whole
// block-diagonal Fisher (as src/measure/measure.cpp does), with the noise twosed draws.
std::vector<twosed::SampleSpectrum> chain_spectra(const twosed::Network& net, const twosed::ParameterSpace& space,
                                                  const torch::Tensor& x, const twosed::FisherOptions& fopts) {
  twosed::MarkovOptions mo;
  mo.sigma = kSigma;
  mo.fisher = fopts;
  twosed::MarkovChainModel chain(net, mo);
  std::vector<twosed::SampleSpectrum> merged;
  for (int64_t j = 0; j < kParamSamples; ++j) {
    const auto ju = static_cast<uint64_t>(j);
    auto noise = twosed::draw_noise(kSeed, ju, net.num_params(), chain.noise_rows(x.size(0)), chain.noise_width());
    merged.push_back(chain.spectrum(draw_theta(space, j), x, noise, ju).merged());
  }
  return merged;
}

bool finite_nonnegative(double v) {
  return std::isfinite(v) && v >= 0.0;
}

}  // namespace

int main() try {
  twosed::Network net(twosed::parse_model_spec(kModel));
  const auto space = twosed::ParameterSpace::parse("init", net);
  const torch::Tensor x = make_inputs(net);
  const int64_t d = net.num_params();

  twosed::FisherOptions fopts;  // exact Fisher of the softmax classifier
  fopts.label_seed = kSeed;
  twosed::EstimatorOptions eopts;  // eps: the default grid, 1e-6 .. 1e-1
  eopts.bootstrap = 200;
  eopts.seed = kSeed;

  eopts.zetas = {0.0, 0.5};
  const auto standard = twosed::estimate_two_scale(standard_spectra(net, space, x, fopts), d, eopts);

  // Chain 2sED: log-mean-exp over samples; lower 2sED: the mean (<= chain by Jensen).
  eopts.zetas = {0.0};
  const auto merged = chain_spectra(net, space, x, fopts);
  const auto chain = twosed::estimate_two_scale(merged, d, eopts);
  auto lower_opts = eopts;
  lower_opts.aggregate = twosed::Aggregate::Mean;
  const auto lower = twosed::estimate_two_scale(merged, d, lower_opts);

  std::printf("model %s: d = %lld, N = %lld inputs, M = %lld samples from %s, sigma = %g\n", kModel,
              static_cast<long long>(d), static_cast<long long>(kInputs), static_cast<long long>(kParamSamples),
              space.description().c_str(), kSigma);
  std::printf("%-6s %-10s %10s %10s %10s %10s\n", "", "eps", "d_0", "d_0.5", "chain", "lower");
  int failures = 0;
  const auto& eps = standard.curves[0].eps;
  for (size_t e = 0; e < eps.size(); ++e) {
    const double d0 = standard.curves[0].value[e], d05 = standard.curves[1].value[e];
    const double c = chain.curves[0].value[e], lo = lower.curves[0].value[e];
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
