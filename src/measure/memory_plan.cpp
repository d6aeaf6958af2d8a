// The pre-flight memory estimate and `--plan` (measure.h: plan_measure).
#include "measure/memory_plan.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "linalg/linalg.h"
#include "twosed/error.h"
#include "twosed/fisher/fisher.h"
#include "twosed/fisher/markov.h"
#include "twosed/model/network.h"
#include "twosed/model/torchscript.h"

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

// The memory a measurement may use: the machine's, or less where the process is limited by its
// address space (RLIMIT_AS, `ulimit -v`: what is already mapped counts against it) or by its
// cgroup (v2 memory.max, v1 memory.limit_in_bytes). `what` names the limit that applies.
struct MemoryLimit {
  double bytes = 0;
  std::string what;
};

double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

// A number in a one-line file ("max" or a missing file: no limit, 0).
double read_limit_file(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  return end && *end == '\0' && v > 0 ? v : 0;
}

// The process's cgroup paths from /proc/self/cgroup: "0::/path" (v2), "N:...memory...:/path" (v1).
void cgroup_paths(std::string& v2, std::string& v1) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) v2 = path;
    if (controllers.find("memory") != std::string::npos) v1 = path;
  }
}

double mapped_bytes() {
  std::ifstream in("/proc/self/statm");
  double pages = 0;
  in >> pages;
  const long page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? pages * static_cast<double>(page) : 0.0;
}

MemoryLimit memory_limit() {
  MemoryLimit m{physical_memory_bytes(), ""};
  m.what = fmt::format("this machine's {:.1f} GB of memory", m.bytes / 1e9);
  auto consider = [&](double bytes, const std::string& what) {
    if (bytes > 0 && (m.bytes <= 0 || bytes < m.bytes)) m = {bytes, what};
  };
  std::string v2, v1;
  cgroup_paths(v2, v1);
  for (const std::string& dir : {std::string("/sys/fs/cgroup") + v2, std::string("/sys/fs/cgroup")}) {
    const double v = read_limit_file(dir + "/memory.max");
    consider(v, fmt::format("the cgroup memory limit of {:.1f} GB ({}/memory.max)", v / 1e9, dir));
  }
  for (const std::string& dir : {"/sys/fs/cgroup/memory" + v1, std::string("/sys/fs/cgroup/memory")}) {
    const double v = read_limit_file(dir + "/memory.limit_in_bytes");
    consider(v, fmt::format("the cgroup memory limit of {:.1f} GB ({}/memory.limit_in_bytes)", v / 1e9, dir));
  }
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    const double limit = static_cast<double>(rl.rlim_cur);
    const double left = std::max(0.0, limit - mapped_bytes());
    consider(std::max(left, 1.0),
             fmt::format("the {:.2f} GB left under the address-space limit (ulimit -v) of {:.2f} GB", left / 1e9,
                         limit / 1e9));
  }
  return m;
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
  const MemoryLimit limit = memory_limit();
  const double have = limit.bytes;
  if (opts.markov && have > 0 && need.total() > 0.9 * have)
    throw UsageError(fmt::format(
        "Markov model '{}' (d = {}) with N = {} inputs and M = {} samples needs about {:.1f} GB (parameters {:.1f} GB, "
        "noise {:.1f} GB, largest layer {:.1f} GB, spectra {:.1f} GB), more than {}; use fewer --inputs or --samples "
        "or a smaller model (see --plan)",
        spec.text, spec.num_params(), n, opts.num_param_samples, need.total() / 1e9, need.theta / 1e9,
        need.activations / 1e9, need.temporaries / 1e9, need.matrix / 1e9, limit.what));
  if (have > 0 && need.total() > 0.9 * have)
    throw UsageError(fmt::format(
        "model '{}' (d = {}) with N = {} inputs needs about {:.1f} GB per parameter sample (parameters {:.1f} GB, "
        "Fisher/Gram matrix {:.1f} GB, activations and temporaries {:.1f} GB), more than {}; use fewer --inputs, a "
        "smaller model, or --fisher sampled (see --plan)",
        spec.text, spec.num_params(), n, need.total() / 1e9, need.theta / 1e9, need.matrix / 1e9,
        (need.activations + need.temporaries) / 1e9, limit.what));
}

namespace {

// The cost model of choose_parallel_samples, used only as ratios. dgemm runs at ~45 GFLOP/s per
// thread (a 2-core EPYC, 88-101 GFLOP/s on two) and scales with threads; the eigen-solve's
// tridiagonal reduction (4/3 m^3 flops) runs at ~15 GFLOP/s on one thread (bench/bench_eigen,
// m = 900, a 2-core Xeon with SkylakeX kernels) and gains only 1.6x from a second thread
// (docs/benchmarks.md, run A: dsyevd 900 x 900 in 96-99 ms on one thread, 60-64 ms on two),
// because half of it is matrix-vector products.
constexpr double kGemmFlopsPerThread = 45e9;
constexpr double kEigenFlopsOneThread = 15e9;
constexpr double kEigenSpeedupPerDoubling = 1.6;
// Below this predicted gain the extra memory of K samples at once is not worth it.
constexpr double kParallelMinGain = 1.1;

// Flops of one sample outside the eigen-solve: the forward pass, the backpropagated rows and
// the Gram (or Fisher) products, all GEMM-like (they scale with threads).
double gemm_flops_per_sample(const ModelSpec& spec, int64_t n, int64_t rows, bool samples_side) {
  const double nn = static_cast<double>(n), r = static_cast<double>(rows), d = static_cast<double>(spec.num_params());
  double flops = 0;
  bool first = true;
  for (const auto& l : spec.layers) {
    if (!l.is_parametric()) continue;
    double positions = 1;  // Conv2d: the weight is applied at every output position
    for (size_t i = 1; i < l.out_shape.size(); ++i) positions *= static_cast<double>(l.out_shape[i]);
    const double w = static_cast<double>(l.weight_count()) * positions;
    flops += 2 * nn * w + (first ? 0 : 2 * r * w);  // forward; rows backpropagated below the layer
    first = false;
    if (samples_side)  // Linear: rows^2 x out (B B^T) and N^2 x in (A A^T); Conv2d: per parameter
      flops += l.kind == LayerKind::Linear
                   ? r * r * static_cast<double>(l.out) + nn * nn * static_cast<double>(l.fan_in())
                   : r * r * static_cast<double>(l.num_params());
  }
  if (!samples_side) flops += d * d * r;  // the d x d Fisher: syrk of the rows x d Jacobian
  return flops;
}

}  // namespace

SampleParallelism choose_parallel_samples(const ModelSpec* spec, int64_t n, int64_t samples, const MeasureOptions& opts,
                                          int threads) {
  if (opts.parallel_samples < 0)
    throw OptionError("MeasureOptions.parallel_samples",
                      fmt::format("must be >= 0 (0: automatic), got {}", opts.parallel_samples));
  if (opts.parallel_samples > 0) return {opts.parallel_samples, "requested"};
  if (!spec) return {1, "a TorchScript model's forward passes are serialised"};
  if (opts.markov) return {1, "the Markov chain model runs its unit blocks on all threads"};
  const int k = static_cast<int>(std::min<int64_t>(threads, samples));
  if (k < 2) return {1, threads < 2 ? "one thread" : "one sample"};
  const int64_t rows = n * rows_per_example(spec->num_outputs(), opts.fisher);
  const bool samples_side = linalg::choose_side(opts.fisher.side, rows, spec->num_params()) == GramSide::Samples;
  const double m = static_cast<double>(samples_side ? rows : spec->num_params());
  const double gemm = gemm_flops_per_sample(*spec, n, rows, samples_side) / kGemmFlopsPerThread;
  const double eigen = 4.0 / 3.0 * m * m * m / kEigenFlopsOneThread;
  const double t = static_cast<double>(threads), mm = static_cast<double>(samples);
  const double sequential = mm * (gemm / t + eigen / std::pow(kEigenSpeedupPerDoubling, std::log2(t)));
  const double parallel = std::ceil(mm / k) * (gemm + eigen);
  const double gain = sequential / parallel;
  const double memory = estimate_memory(*spec, n, opts).total(), have = memory_limit().bytes;
  const std::string figures = fmt::format(
      "predicted {:.2f}x faster than in sequence (per sample: eigen-solve {:.0f} ms, products {:.0f} ms on one "
      "thread)",
      gain, 1e3 * eigen, 1e3 * gemm);
  if (gain < kParallelMinGain) return {1, figures};
  if (have > 0 && k * memory > 0.9 * have)
    return {1, fmt::format("{}, but {} samples at once need {:.1f} GB", figures, k, k * memory / 1e9)};
  return {k, figures};
}

namespace {
// "  machine   ...: fits" with the limit that applies (physical memory, cgroup or ulimit -v).
std::string machine_line(double need) {
  const MemoryLimit limit = memory_limit();
  return fmt::format("  machine   {}: {}\n", limit.what,
                     limit.bytes <= 0 || need <= 0.9 * limit.bytes ? "fits" : "does NOT fit");
}

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
  out += machine_line(need.total());
  return out;
}
}  // namespace

// ---- TorchScript models ----

namespace {

// One parametric submodule of an imported model: its name, class and parameter count.
struct ImportedLayer {
  std::string name, type;
  int64_t params = 0;
};

std::vector<ImportedLayer> imported_layers(const TorchScriptNetwork& net) {
  std::vector<ImportedLayer> out;
  for (const auto& p : net.parameters()) {
    const auto dot = p.name.rfind('.');
    const std::string owner = dot == std::string::npos ? "<root>" : p.name.substr(0, dot);
    if (out.empty() || out.back().name != owner) out.push_back({owner, p.module_type, 0});
    out.back().params += p.numel();
  }
  return out;
}

// One parameter sample of the autograd path: theta and the space's bounds, the matrix and the
// eigen-solver's copy (samples side: also the blocks' products), and the Jacobian row blocks
// (two alive on the samples side, each within half the budget or one example).
MemoryEstimate estimate_torchscript_memory(int64_t d, int64_t n, int64_t k, const MeasureOptions& opts,
                                           const StructuredPlan* structured) {
  MemoryEstimate m;
  const double b = sizeof(double), dd = static_cast<double>(d);
  const int64_t r = rows_per_example(k, opts.fisher);
  const double rows = static_cast<double>(n) * static_cast<double>(r);
  const bool samples = linalg::choose_side(opts.fisher.side, n * r, d) == GramSide::Samples;
  m.theta = 3 * dd * b;
  m.matrix = (samples ? 3 * rows * rows : 2 * dd * dd) * b;
  const double block = std::max(static_cast<double>(opts.fisher.memory_budget) / 2, static_cast<double>(r) * dd * b);
  m.temporaries = (samples ? 2 : 1) * std::min(block, rows * dd * b);
  // The structured pass: the largest group's backprop vectors, and the recorded forward pass,
  // whose tensors are most of what autograd's graph saves (measured peaks: ResNet-20 1.8 GB,
  // CIFAR ResNet-18 5.1 GB at N = 100, against 1.7 and 6.1 GB from this).
  if (structured && samples)
    m.temporaries = static_cast<double>(structured->backprop_bytes) + static_cast<double>(structured->forward_bytes);
  return m;
}

// How measure will compute the Jacobians (the choice TorchScriptModel and its sample() make):
// the structured path's ops, Gram forms and backward groups, or the autograd rows and why.
std::string jacobian_lines(const TorchScriptNetwork& net, const StructuredPlan* plan, int64_t n, bool samples,
                           const MeasureOptions& opts) {
  if (opts.jacobian == "autograd") return "jacobian  autograd rows (as asked)\n";
  if (!plan->usable()) {
    if (opts.jacobian == "structured")
      throw OptionError("MeasureOptions.jacobian",
                        fmt::format("structured: {} does not know {}", net.path(), plan->unknown.front()));
    return fmt::format("jacobian  autograd rows: the structured path does not know {}\n",
                       fmt::join(plan->unknown, "; "));
  }
  const auto size = [](int64_t bytes) {
    const double b = static_cast<double>(bytes);
    return b >= 1e9 ? fmt::format("{:.2f} GB", b / 1e9) : fmt::format("{:.1f} MB", b / 1e6);
  };
  std::string how;
  if (samples)
    how = fmt::format(
        "one forward pass over all {} inputs ({} recorded), backward passes in {} group{} of ops (largest {} "
        "of backprop vectors; --memory-budget {})",
        n, size(plan->forward_bytes), plan->groups, plan->groups == 1 ? "" : "s", size(plan->backprop_bytes),
        size(opts.fisher.memory_budget));
  else
    how = "explicit gradient rows in blocks (parameter side)";
  std::string out = fmt::format("jacobian  structured, {}\n", how);
  out += fmt::format("  {:<22} {:<40} {:<12} {:>10}\n", "op", "parameters", "Gram form", "GFLOP");
  for (const auto& op : plan->ops)
    out += fmt::format("  {:<22} {:<40} {:<12} {:>10}\n", op.op, op.params, samples ? op.form : "rows",
                       samples ? fmt::format("{:.3g}", op.flops / 1e9) : std::string("-"));
  return out;
}

std::string torchscript_too_big(const TorchScriptNetwork& net, int64_t n, const MemoryEstimate& need,
                                const MemoryLimit& limit) {
  return fmt::format(
      "model {} (d = {}) with N = {} inputs needs about {:.1f} GB per parameter sample (parameters {:.1f} GB, "
      "Fisher/Gram matrix {:.1f} GB, Jacobian passes {:.1f} GB), more than {}; use fewer --inputs, "
      "--fisher sampled or a smaller --memory-budget (see --plan)",
      net.path(), net.num_params(), n, need.total() / 1e9, need.theta / 1e9, need.matrix / 1e9, need.temporaries / 1e9,
      limit.what);
}

// The graph's operations, most frequent first, and its skip connections.
std::string graph_lines(const ImportedGraphSummary& g) {
  auto ops = g.ops;
  std::stable_sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string list;
  for (const auto& [kind, count] : ops) list += fmt::format("{}{} x{}", list.empty() ? "" : ", ", kind, count);
  std::string out = fmt::format("graph     {} operations: {}\n", g.nodes, list);
  out += fmt::format("skips     {}\n", g.skips.empty() ? "none (a chain)" : fmt::format("{}", g.skips.size()));
  for (const auto& s : g.skips) out += fmt::format("  {}\n", s);
  return out;
}

// --plan --markov on an imported chain: its Markov layers, their unit blocks and noise.
std::string plan_torchscript_markov(const MeasureOptions& opts, const TorchScriptNetwork& net, const torch::Tensor& x,
                                    int64_t k) {
  const int64_t n = opts.num_inputs, r = opts.noise_draws;
  const auto layers = net.markov_layers(x, MarkovOptions{opts.sigma, r, opts.fisher});
  std::string out = fmt::format("TorchScript model {}: input {}, k = {} outputs, d = {} parameters\n", net.path(),
                                fmt::join(x.sizes().slice(1), "x"), k, net.num_params());
  out += fmt::format("Markov chain model, sigma = {}, R = {} noise draws, N = {} inputs:\n", opts.sigma, r, n);
  out += fmt::format("  {:<3} {:<12} {:>10} {:>7} {:>12} {:>8}  {}\n", "l", "name", "parameters", "blocks",
                     "block (rows x params)", "noise", "layer");
  int64_t noise = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& ml = layers[l];
    const int64_t rows = l == 0 ? n : n * r;
    const int64_t positions = ml.hidden ? ml.noise_width / ml.units : 1;
    const int64_t block_rows = ml.hidden ? rows * positions : rows * rows_per_example(k, opts.fisher);
    out += fmt::format("  {:<3} {:<12} {:>10} {:>7} {:>21} {:>8}  {}\n", l + 1, ml.name, ml.params, ml.units,
                       fmt::format("{} x {}", block_rows, ml.params / ml.units), ml.noise_width, ml.description);
    noise += ml.noise_width;
  }
  out += fmt::format("  noise     H = {} values per row, N*R = {} rows\n", noise, n * r);
  return out;
}

std::string plan_torchscript(const MeasureOptions& opts) {
  const TorchScriptNetwork net(opts.model);
  if (opts.markov) refuse_torchscript_skips(net);
  const auto shape = torchscript_input_shape(opts);
  std::vector<int64_t> probe{1};
  probe.insert(probe.end(), shape.begin(), shape.end());
  const int64_t k = net.forward(net.file_theta(), torch::zeros(probe, torch::kFloat64)).size(1);
  if (opts.markov) return plan_torchscript_markov(opts, net, torch::zeros(probe, torch::kFloat64), k);
  const int64_t n = opts.num_inputs, d = net.num_params(), r = rows_per_example(k, opts.fisher);
  std::string out = fmt::format("TorchScript model {}: input {}, k = {} outputs, d = {} parameters\n", net.path(),
                                fmt::join(shape, "x"), k, d);
  out += graph_lines(summarize_graph(net));
  const bool samples = linalg::choose_side(opts.fisher.side, n * r, d) == GramSide::Samples;
  StructuredPlan plan;
  if (opts.jacobian != "autograd")
    plan = net.structured_plan(torch::zeros(probe, torch::kFloat64), n, r, ConvFormChoice::Cheapest,
                               opts.fisher.memory_budget);
  const bool structured = opts.jacobian != "autograd" && plan.usable();
  out += jacobian_lines(net, &plan, n, samples, opts);
  out += fmt::format("  {:<28} {:<14} {:>12}\n", "layer", "type", "parameters");
  for (const auto& l : imported_layers(net)) out += fmt::format("  {:<28} {:<14} {:>12}\n", l.name, l.type, l.params);
  const auto need = estimate_torchscript_memory(d, n, k, opts, structured ? &plan : nullptr);
  out += fmt::format("\nper parameter sample, N = {} inputs ({} rows of the Fisher factor each):\n", n, r);
  out += fmt::format("  matrix    {} x {} ({})\n", samples ? n * r : d, samples ? n * r : d,
                     samples ? "Gram, sample side" : "Fisher, parameter side");
  out += fmt::format("  memory    about {:.3f} GB: parameters {:.3f}, matrix {:.3f}, {} {:.3f}\n", need.total() / 1e9,
                     need.theta / 1e9, need.matrix / 1e9,
                     structured && samples ? "forward record, autograd graph and backprop vectors"
                                           : "Jacobian row blocks (autograd's own graph of one example not counted)",
                     need.temporaries / 1e9);
  out += machine_line(need.total());
  return out;
}

}  // namespace

void check_torchscript_memory(const TorchScriptNetwork& net, int64_t k, int64_t n, const MeasureOptions& opts,
                              const StructuredPlan* structured) {
  const auto need = estimate_torchscript_memory(net.num_params(), n, k, opts, structured);
  const MemoryLimit limit = memory_limit();
  if (limit.bytes > 0 && need.total() > 0.9 * limit.bytes) throw UsageError(torchscript_too_big(net, n, need, limit));
}

std::string plan_measure(const MeasureOptions& opts, const ExecutionContext& ctx) {
  const int threads = ctx.threads > 0 ? ctx.threads : current_threads();
  if (opts.num_inputs < 1)
    throw OptionError("MeasureOptions.num_inputs", fmt::format("must be >= 1, got {}", opts.num_inputs));
  if (is_torchscript_path(opts.model)) return plan_torchscript(opts);
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
  out += machine_line(need.total());
  const auto parallel = choose_parallel_samples(&spec, n, opts.num_param_samples, opts, threads);
  out += fmt::format("  samples   {} at once on {} thread(s): {}\n", parallel.workers, threads, parallel.reason);
  out += fmt::format("  eigen     LAPACK {} (on {} thread(s) per sample)\n",
                     linalg::eigen_routine_name(linalg::eigen_routine(static_cast<int64_t>(samples ? rows : d),
                                                                      parallel.workers > 1 ? 1 : threads)),
                     parallel.workers > 1 ? 1 : threads);
  return out;
}

}  // namespace twosed
