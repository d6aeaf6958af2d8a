// Exact Fisher spectra of the standard model: the Gram trick of docs/math.md section 7.
#include "twosed/fisher/fisher.h"

#include <fmt/format.h>

#include <chrono>

#include "linalg/linalg.h"
#include "model/layers/layer.h"
#include "twosed/error.h"
#include "twosed/random.h"

namespace twosed {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

torch::Tensor output_covectors(const torch::Tensor& f, const FisherOptions& opts, uint64_t rng_index) {
  const int64_t n = f.size(0), k = f.size(1);
  if (opts.task == Task::Regress && !(opts.out_noise > 0))
    throw OptionError("FisherOptions.out_noise", fmt::format("must be > 0 for regression, got {}", opts.out_noise));
  if (opts.kind == FisherKind::Exact) {
    if (opts.task == Task::Regress)
      return (torch::eye(k, f.options()) / opts.out_noise).unsqueeze(0).expand({n, k, k}).contiguous();
    // Lambda = diag(p) - p p^T has rank k-1 (it annihilates the ones vector), so it factors as
    // Q^T Q with Q of k-1 rows, one fewer than the spec's R = diag(sqrt p) - sqrt(p) p^T. Both
    // give the same J^T Lambda J, hence the same non-zero spectrum, but Q makes the Gram
    // N(k-1) square instead of Nk: ~27% less eigen-solve time at k = 10, and no N structural zeros.
    // With v = sqrt(p) (a unit vector), R = (I - v v^T) diag(v); the Householder reflection H
    // with H v = -e_k has columns 1..k-1 spanning v's complement U, and Q = U^T diag(v):
    // Q[j][c] = (delta_jc - w_j w_c / (1 + v_k)) v_c, w = v + e_k.
    auto v = torch::sqrt(torch::softmax(f, 1));
    auto w = v.clone();
    w.select(1, k - 1).add_(1.0);
    auto denom = (1.0 + v.select(1, k - 1)).view({n, 1, 1});
    auto h = torch::eye(k, f.options()).unsqueeze(0) - w.unsqueeze(2) * w.unsqueeze(1) / denom;
    return (h.narrow(1, 0, k - 1) * v.unsqueeze(1)).contiguous();
  }
  // Sampled labels: one row per example, the gradient of log p(y|x) with respect to f.
  Rng rng(opts.label_seed, Stream::Labels, rng_index);
  auto out = torch::zeros({n, 1, k}, f.options());
  auto acc = out.accessor<double, 3>();
  if (opts.task == Task::Regress) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < k; ++c) acc[i][0][c] = rng.normal() / opts.out_noise;
    return out;
  }
  auto p = torch::softmax(f, 1).contiguous();
  auto pa = p.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const double u = rng.uniform();
    double cum = 0;
    int64_t y = k - 1;
    for (int64_t c = 0; c < k; ++c) {
      cum += pa[i][c];
      if (u < cum) {
        y = c;
        break;
      }
    }
    for (int64_t c = 0; c < k; ++c) acc[i][0][c] = (c == y ? 1.0 : 0.0) - pa[i][c];
  }
  return out;
}

namespace {
// K = (1/N) Jh Jh^T accumulated layer by layer during one backward sweep; `gram_seconds`
// receives the time spent in the layers' Gram products (apart from the passes themselves).
// With `lower_only`, the upper triangle is left unspecified (spectrum_of reads the lower one).
torch::Tensor build_gram(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                         const FisherOptions& opts, uint64_t rng_index, bool lower_only, double& gram_seconds) {
  torch::NoGradGuard no_grad;
  const auto acts = net.forward_all(theta, x);
  const auto g0 = output_covectors(acts.back(), opts, rng_index);
  const int64_t rows = g0.size(0) * g0.size(1);
  auto gram = torch::zeros({rows, rows}, theta.options());
  net.backward(theta, acts, g0,
               [&](const layers::Layer& layer, int64_t, const torch::Tensor& in, const torch::Tensor& g) {
                 const auto t0 = Clock::now();
                 layer.add_gram(in, g, gram, opts.memory_budget);
                 gram_seconds += seconds_since(t0);
               });
  // Layers accumulate the lower triangle only (half the flops, see syrk_lower).
  const auto t0 = Clock::now();
  if (!lower_only) gram = linalg::symmetrize_from_lower(gram);
  gram.div_(static_cast<double>(x.size(0)));
  gram_seconds += seconds_since(t0);
  return gram;
}
}  // namespace

torch::Tensor gram_matrix(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                          const FisherOptions& opts, uint64_t rng_index) {
  double unused = 0;
  return build_gram(net, theta, x, opts, rng_index, /*lower_only=*/false, unused);
}

torch::Tensor parameter_fisher(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                               const FisherOptions& opts, uint64_t rng_index) {
  torch::NoGradGuard no_grad;
  const int64_t n = x.size(0), d = net.num_params();
  // Covectors for all inputs first, so that sampled labels do not depend on the chunking.
  const auto g0 = output_covectors(net.forward(theta, x), opts, rng_index);
  const int64_t per_example = g0.size(1) * d * static_cast<int64_t>(sizeof(double));
  const int64_t chunk = std::max<int64_t>(1, opts.memory_budget / std::max<int64_t>(per_example, 1));
  auto fisher = torch::zeros({d, d}, theta.options());
  for (int64_t i0 = 0; i0 < n; i0 += chunk) {
    const int64_t c = std::min(chunk, n - i0);
    const auto jrows = net.jacobian_rows(theta, x.narrow(0, i0, c), g0.narrow(0, i0, c));
    fisher.addmm_(jrows.t(), jrows);
  }
  return fisher.div_(static_cast<double>(n));
}

torch::Tensor dense_fisher(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                           const FisherOptions& opts, uint64_t rng_index) {
  auto th = theta.detach().clone().requires_grad_(true);
  auto f = net.forward(th, x);
  const auto g0 = output_covectors(f.detach(), opts, rng_index);
  const int64_t n = x.size(0), r = g0.size(1);
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < r; ++c) {
      auto out = (g0[i][c] * f[i]).sum();
      rows.push_back(torch::autograd::grad({out}, {th}, {}, /*retain_graph=*/true, false, /*allow_unused=*/true)[0]);
    }
  auto jh = torch::stack(rows);
  return torch::mm(jh.t(), jh) / static_cast<double>(n);
}

FisherSpectrum spectrum_of(const torch::Tensor& symmetric, double cutoff) {
  FisherSpectrum out;
  out.matrix_size = symmetric.size(0);
  out.spectrum.trace = symmetric.trace().item<double>();
  auto cs = linalg::symmetric_spectrum(symmetric, cutoff);
  out.largest = cs.largest;
  out.most_negative = cs.most_negative;
  out.spectrum.eigenvalues = std::move(cs.kept);
  out.spectrum.num_cut = cs.cut;
  return out;
}

FisherSpectrum fisher_spectrum(const Network& net, const torch::Tensor& theta, const torch::Tensor& x,
                               const FisherOptions& opts, uint64_t rng_index) {
  check_theta(net, theta);
  torch::NoGradGuard no_grad;
  const int64_t rows = x.size(0) * rows_per_example(net.num_outputs(), opts);
  const GramSide side = linalg::choose_side(opts.side, rows, net.num_params());

  const auto t0 = Clock::now();
  torch::Tensor matrix;
  double gram_seconds = 0;
  if (side == GramSide::Samples) {
    matrix = build_gram(net, theta, x, opts, rng_index, /*lower_only=*/true, gram_seconds);
  } else {
    matrix = parameter_fisher(net, theta, x, opts, rng_index);
  }
  const double built = seconds_since(t0);
  const auto te = Clock::now();
  auto out = spectrum_of(matrix, opts.cutoff);
  out.seconds_eigen = seconds_since(te);
  out.side = side;
  if (side == GramSide::Samples) {
    out.seconds_gram = gram_seconds;
    out.seconds_forward_backward = built - gram_seconds;
  } else {
    out.seconds_gram = built;  // forward/backward and products are interleaved per chunk
  }
  return out;
}

}  // namespace twosed
