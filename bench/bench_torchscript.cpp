// Benchmark of the structured Jacobian path on a TorchScript model (docs/benchmarks.md,
// "TorchScript models"): one parameter sample's exact Fisher spectrum at N inputs, the Gram form
// and FLOPs of each parametric op with its time against a plain GEMM of the same FLOPs (same
// run), peak memory, and the autograd path's time estimated from a few of its rows.
//
//   bench_torchscript MODEL.pt --input-shape 3x32x32 [-N 100] [--autograd-examples 2] [--threads 2]
#include <fmt/format.h>
#include <sys/resource.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>

#include "twosed/execution.h"
#include "twosed/fisher/fisher.h"
#include "twosed/model/torchscript.h"

using namespace twosed;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double peak_gb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB
}

// Seconds of a float64 square GEMM doing about `flops` (2 s^3) operations.
double gemm_seconds(double flops) {
  const auto s = std::max<int64_t>(8, static_cast<int64_t>(std::cbrt(flops / 2)));
  const auto a = torch::randn({s, s}, torch::kFloat64), b = torch::randn({s, s}, torch::kFloat64);
  torch::mm(a, b);  // warm-up
  const auto t0 = Clock::now();
  auto c = torch::mm(a, b);
  return since(t0) * flops / (2.0 * static_cast<double>(s) * s * s);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("bench_torchscript: structured Jacobian path timings");
  std::string path, shape_text;
  int64_t n = 100, autograd_examples = 2;
  int threads = 2;
  app.add_option("model", path, "TorchScript file")->required();
  app.add_option("--input-shape", shape_text, "CxHxW")->required();
  app.add_option("-N", n, "inputs");
  app.add_option("--autograd-examples", autograd_examples, "examples whose autograd rows are timed (0: none)");
  app.add_option("--threads", threads, "BLAS and LibTorch threads");
  CLI11_PARSE(app, argc, argv);
  ScopedThreads scoped(threads);
  try {
    TorchScriptNetwork net(path);
    auto shape = parse_input_shape(shape_text);
    shape.insert(shape.begin(), n);
    torch::manual_seed(0);
    const auto x = torch::randn(shape, torch::kFloat64);
    const auto theta = net.file_theta();
    FisherOptions opts;
    const int64_t k = net.forward(theta, x.narrow(0, 0, 1)).size(1), r = rows_per_example(k, opts);
    fmt::print("model {}  d = {}  N = {}  k = {}  R = {}  threads = {}\n", path, net.num_params(), n, k, r,
               torch::get_num_threads());
    const auto plan = net.structured_plan(x, n, r);
    if (!plan.usable()) {
      fmt::print("not structured: {}\n", plan.unknown.front());
      return 1;
    }
    JacobianOptions jac;
    jac.structured = true;
    auto t0 = Clock::now();
    const auto fs = torchscript_fisher_spectrum(net, theta, x, opts, 0, jac);
    const double total = since(t0);
    fmt::print("structured: {:.2f} s per sample (eigen {:.2f} s), side {}, {} kept, peak RSS {:.2f} GB\n", total,
               fs.seconds_eigen, fs.side == GramSide::Samples ? "samples" : "parameters",
               fs.spectrum.eigenvalues.size(), peak_gb());

    // Per op: the Gram term alone, from a second run that times each op.
    const auto q = output_covectors(net.forward(theta, x), opts, 0);
    auto gram = torch::zeros({n * r, n * r}, torch::kFloat64);
    std::vector<double> seconds;
    t0 = Clock::now();
    net.structured_gram(theta, x, q, ConvFormChoice::Cheapest, opts.memory_budget, gram, &seconds);
    const double gram_total = since(t0);
    double op_sum = 0;
    fmt::print("{:<22} {:<34} {:<12} {:>10} {:>9} {:>9} {:>7}\n", "op", "parameters", "form", "GFLOP", "s", "GEMM s",
               "ratio");
    for (size_t l = 0; l < plan.ops.size(); ++l) {
      const auto& op = plan.ops[l];
      const double g = gemm_seconds(op.flops);
      op_sum += seconds[l];
      fmt::print("{:<22} {:<34} {:<12} {:>10.3f} {:>9.4f} {:>9.4f} {:>7.2f}\n", op.op, op.params.substr(0, 34), op.form,
                 op.flops / 1e9, seconds[l], g, seconds[l] / std::max(g, 1e-9));
    }
    fmt::print("structured_gram {:.2f} s: Gram terms {:.2f} s, forward + {} backward passes {:.2f} s\n", gram_total,
               op_sum, r, gram_total - op_sum);
    if (autograd_examples > 0) {
      auto rows = torch::empty({autograd_examples * r, net.num_params()}, torch::kFloat64);
      t0 = Clock::now();
      net.jacobian_rows(theta, x, q.narrow(0, 0, autograd_examples), 0, rows);
      const double per_row = since(t0) / static_cast<double>(autograd_examples * r);
      fmt::print("autograd rows: {:.3f} s per row -> {:.1f} s for the N R = {} rows alone (>= {:.1f}x structured)\n",
                 per_row, per_row * n * r, n * r, per_row * n * r / total);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_torchscript: {}\n", e.what());
    return 1;
  }
  return 0;
}
