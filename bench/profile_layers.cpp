// Per-layer profile of one parameter sample: the forward pass, each layer's Gram contribution
// and each layer's vector-Jacobian product with respect to its input, on N random inputs.
// Shows which layer type carries the cost, e.g. for CNNs, where bench_fisher's Linear-only
// replay does not apply.
//
//   build-bench/bench/profile_layers [SPEC] [--inputs N] [--threads T] [--repeats R]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/layers/layer.h"
#include "twosed/fisher/fisher.h"
#include "twosed/measure/measure.h"
#include "twosed/model/parameter_space.h"

using namespace twosed;
using Clock = std::chrono::steady_clock;

static double ms_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count() * 1e3;
}

int main(int argc, char** argv) {
  std::string spec_text = "cnn:3x32x32-c32k3-relu-p2-c64k3-relu-p2-f256-relu-f10";
  int64_t n = 100, repeats = 2;
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--inputs" && i + 1 < argc)
      n = std::atoll(argv[++i]);
    else if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc)
      repeats = std::atoll(argv[++i]);
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "profile_layers: unknown option %s\n", a.c_str());
      return 2;
    } else
      spec_text = a;
  }
  try {
    ScopedThreads scoped(threads);
    Network net(parse_model_spec(spec_text));
    auto theta = torch::empty({net.num_params()}, torch::kFloat64);
    ParameterSpace::parse("init", net).sample(0, 0, theta.data_ptr<double>());
    auto shape = net.spec().input_shape;
    shape.insert(shape.begin(), n);
    torch::manual_seed(0);
    const auto x = torch::randn(shape, torch::kFloat64);
    const FisherOptions opts;
    std::printf("%s, d = %lld, N = %lld, %d thread(s); ms per sample, repeat by repeat\n", spec_text.c_str(),
                static_cast<long long>(net.num_params()), static_cast<long long>(n), threads);
    for (int64_t rep = 0; rep < repeats; ++rep) {
      torch::NoGradGuard no_grad;
      auto t = Clock::now();
      const auto acts = net.forward_all(theta, x);
      std::printf("repeat %lld\n  forward            %9.1f\n", static_cast<long long>(rep), ms_since(t));
      auto g = output_covectors(acts.back(), opts, 0);
      const int64_t rows = g.size(0) * g.size(1);
      auto gram = torch::zeros({rows, rows}, torch::kFloat64);
      for (int64_t l = static_cast<int64_t>(net.spec().layers.size()) - 1; l >= 0; --l) {
        const auto& ls = net.spec().layers[static_cast<size_t>(l)];
        const auto layer = layers::make_layer(ls);
        if (ls.is_parametric()) {
          t = Clock::now();
          layer->add_gram(acts[static_cast<size_t>(l)], g, gram, opts.memory_budget);
          std::printf("  gram     %-9s %9.1f\n", ls.token.c_str(), ms_since(t));
        }
        if (l == 0) break;
        t = Clock::now();
        g = layer->backward_input(g, acts[static_cast<size_t>(l)], acts[static_cast<size_t>(l) + 1],
                                  net.layer_params(theta, l));
        std::printf("  backward %-9s %9.1f\n", ls.token.c_str(), ms_since(t));
      }
      t = Clock::now();
      const auto fs = spectrum_of(gram, opts.cutoff);
      std::printf("  eigen              %9.1f  (%lld x %lld)\n", ms_since(t), static_cast<long long>(rows),
                  static_cast<long long>(rows));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "profile_layers: %s\n", e.what());
    return 1;
  }
  return 0;
}
