// The pre-flight memory estimate and `--plan` (measure.h: plan_measure).
#include "measure/memory_plan.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

#include "linalg/linalg.h"
#include "twosed/error.h"
#include "twosed/fisher/fisher.h"
#include "twosed/fisher/markov.h"
#include "twosed/model/network.h"

namespace twosed {
namespace {

// A pre-flight estimate of the peak memory of one parameter sample, so that a model that cannot
// fit fails at once with the reason, not after loading data with an allocator error.
struct MemoryEstimate {
  double theta = 0, matrix = 0, activations = 0, temporaries = 0;
  double total() const { return theta + matrix + activations + temporaries; }
};

MemoryEstimate estimate_memory(const ModelSpec& spec, int64_t n, int64_t rows_per_example, GramSide side,
                               int64_t memory_budget) {
  MemoryEstimate m;
  const double b = sizeof(double), d = static_cast<double>(spec.num_params());
  const double rows = static_cast<double>(n) * static_cast<double>(rows_per_example);
  m.theta = 2 * d * b;  // the sample and the space's bounds or checkpoint
  const bool samples = linalg::choose_side(side, static_cast<int64_t>(rows), spec.num_params()) == GramSide::Samples;
  // The matrix, its copy inside the eigen-solver, and (Gram) one layer's B B^T.
  m.matrix = (samples ? 3 * rows * rows : 2 * d * d) * b;
  double widest = static_cast<double>(spec.num_inputs());
  for (const auto& l : spec.layers) {
    double size = 1;
    for (int64_t v : l.out_shape) size *= static_cast<double>(v);
    m.activations += static_cast<double>(n) * size * b;
    widest = std::max(widest, size);
  }
  // Backpropagated rows: a layer's input and output side at once, plus one elementwise temporary.
  m.temporaries = 3 * rows * widest * b + static_cast<double>(memory_budget);
  return m;
}

double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

MemoryEstimate estimate_memory(const ModelSpec& spec, int64_t n, const MeasureOptions& opts) {
  return estimate_memory(spec, n, rows_per_example(spec.num_outputs(), opts.fisher), opts.fisher.side,
                         opts.fisher.memory_budget);
}

// Markov: the parameters, the noise (drawn per sample, or the whole --noise file) and the
// most demanding layer (markov.h, MarkovChainModel::plan).
MemoryEstimate estimate_markov_memory(const ModelSpec& spec, int64_t n, const MeasureOptions& opts, int threads,
                                      std::vector<MarkovLayerPlan>* plans = nullptr) {
  Network net(spec);
  MarkovChainModel chain(net, MarkovOptions{opts.sigma, opts.noise_draws, opts.fisher});
  const auto layers = chain.plan(n, std::max(1, threads));
  MemoryEstimate m;
  const double b = sizeof(double);
  m.theta = 2 * static_cast<double>(spec.num_params()) * b;
  m.activations = static_cast<double>(chain.noise_rows(n)) * static_cast<double>(chain.noise_width()) * b;
  if (!opts.noise_file.empty()) m.activations *= static_cast<double>(opts.num_param_samples) + 1;
  // Every sample's eigenvalues are kept for the estimator (t needs all traces first): at most
  // blocks x matrix per layer, held about three times (per layer, merged, the estimator's copy).
  double eigenvalues = 0;
  for (const auto& l : layers) {
    m.temporaries = std::max(m.temporaries, l.bytes);
    eigenvalues += static_cast<double>(l.blocks) * static_cast<double>(l.matrix);
  }
  const double samples = opts.thetas_file.empty() ? static_cast<double>(opts.num_param_samples) : 1.0;
  m.matrix = 3 * samples * eigenvalues * b;
  if (plans) *plans = layers;
  return m;
}

}  // namespace

void check_memory(const ModelSpec& spec, int64_t n, const MeasureOptions& opts, int threads) {
  const auto need = opts.markov ? estimate_markov_memory(spec, n, opts, threads) : estimate_memory(spec, n, opts);
  const double have = physical_memory_bytes();
  if (opts.markov && have > 0 && need.total() > 0.9 * have)
    throw UsageError(fmt::format(
        "Markov model '{}' (d = {}) with N = {} inputs and M = {} samples needs about {:.1f} GB (parameters {:.1f} GB, "
        "noise {:.1f} GB, largest layer {:.1f} GB, spectra {:.1f} GB), more than this machine's {:.1f} GB; use fewer "
        "--inputs or --samples or a smaller model (see --plan)",
        spec.text, spec.num_params(), n, opts.num_param_samples, need.total() / 1e9, need.theta / 1e9,
        need.activations / 1e9, need.temporaries / 1e9, need.matrix / 1e9, have / 1e9));
  if (have > 0 && need.total() > 0.9 * have)
    throw UsageError(fmt::format(
        "model '{}' (d = {}) with N = {} inputs needs about {:.1f} GB per parameter sample (parameters {:.1f} GB, "
        "Fisher/Gram matrix {:.1f} GB, activations and temporaries {:.1f} GB), more than this machine's {:.1f} GB; "
        "use fewer --inputs, a smaller model, or --fisher sampled (see --plan)",
        spec.text, spec.num_params(), n, need.total() / 1e9, need.theta / 1e9, need.matrix / 1e9,
        (need.activations + need.temporaries) / 1e9, have / 1e9));
}

namespace {
std::string plan_markov(const MeasureOptions& opts, const ModelSpec& spec, int threads) {
  const int64_t n = opts.num_inputs;
  std::vector<MarkovLayerPlan> plans;
  const auto need = estimate_markov_memory(spec, n, opts, threads, &plans);
  Network net(spec);
  MarkovChainModel chain(net, MarkovOptions{opts.sigma, opts.noise_draws, opts.fisher});
  std::string out = spec.describe();
  out += fmt::format(
      "\nMarkov chain model, sigma = {:g}, R = {} noise draw(s) per input, H = {} noise values per row;\n"
      "per parameter sample, N = {} inputs:\n",
      opts.sigma, opts.noise_draws, chain.noise_width(), n);
  out += fmt::format("  {:>5} {:>8} {:>7} {:>12} {:>12} {:>8} {:>10}  {}\n", "name", "rows", "blocks", "sample side",
                     "param side", "matrix", "memory", "layers");
  for (size_t l = 0; l < plans.size(); ++l) {
    const auto& p = plans[l];
    const auto& ml = chain.layers()[l];
    out += fmt::format("  {:>5} {:>8} {:>7} {:>12} {:>12} {:>8} {:>7.3f} GB  {}\n", ml.name, p.rows, p.blocks,
                       p.block_rows, p.block_params, p.matrix, p.bytes / 1e9, ml.description);
  }
  out += fmt::format(
      "  (a block is solved on its smaller side, after dropping all-zero rows, e.g. inactive ReLU units)\n"
      "  memory    about {:.3f} GB: parameters {:.3f}, noise {:.3f}, largest layer {:.3f}, spectra of M = {} "
      "samples {:.3f} (at most)\n",
      need.total() / 1e9, need.theta / 1e9, need.activations / 1e9, need.temporaries / 1e9, opts.num_param_samples,
      need.matrix / 1e9);
  out += fmt::format("  machine   {:.1f} GB of memory: {}\n", physical_memory_bytes() / 1e9,
                     need.total() <= 0.9 * physical_memory_bytes() ? "fits" : "does NOT fit");
  return out;
}
}  // namespace

std::string plan_measure(const MeasureOptions& opts, const ExecutionContext& ctx) {
  const int threads = ctx.threads > 0 ? ctx.threads : current_threads();
  if (opts.num_inputs < 1)
    throw OptionError("MeasureOptions.num_inputs", fmt::format("must be >= 1, got {}", opts.num_inputs));
  const auto spec = parse_model_spec(opts.model, opts.model_options);
  const int64_t n = opts.num_inputs, d = spec.num_params();
  const int64_t rows = n * rows_per_example(spec.num_outputs(), opts.fisher);
  const bool samples = linalg::choose_side(opts.fisher.side, rows, d) == GramSide::Samples;
  if (opts.markov) return plan_markov(opts, spec, threads);
  const auto need = estimate_memory(spec, n, opts);
  std::string out = spec.describe();
  out += fmt::format("\nper parameter sample, N = {} inputs ({} rows of the Fisher factor each):\n", n,
                     rows_per_example(spec.num_outputs(), opts.fisher));
  out += fmt::format("  matrix    {} x {} ({})\n", samples ? rows : d, samples ? rows : d,
                     samples ? "Gram, sample side" : "Fisher, parameter side");
  out += fmt::format(
      "  memory    about {:.3f} GB: parameters {:.3f}, matrix {:.3f}, activations {:.3f}, temporaries {:.3f}\n",
      need.total() / 1e9, need.theta / 1e9, need.matrix / 1e9, need.activations / 1e9, need.temporaries / 1e9);
  out += fmt::format("  machine   {:.1f} GB of memory: {}\n", physical_memory_bytes() / 1e9,
                     need.total() <= 0.9 * physical_memory_bytes() ? "fits" : "does NOT fit");
  return out;
}

}  // namespace twosed
