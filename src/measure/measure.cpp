#include "twosed/measure/measure.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>

#include "twosed/data/data.h"
#include "twosed/error.h"
#include "twosed/fisher/fisher.h"
#include "twosed/fisher/markov.h"
#include "twosed/model/network.h"
#include "twosed/data/npy.h"
#include "twosed/model/parameter_space.h"
#include "twosed/random.h"
#include "twosed/store/spectra_file.h"
#include "twosed/train/train.h"
#include "twosed/data/training_data.h"

namespace twosed {
namespace {

// Beyond this many parameter samples the bootstrap's index tables alone need gigabytes.
constexpr int64_t kMaxParamSamples = 10'000'000;

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
  const bool samples = side == GramSide::Samples || (side == GramSide::Auto && rows <= d);
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
MemoryEstimate estimate_markov_memory(const ModelSpec& spec, int64_t n, const MeasureOptions& opts,
                                      std::vector<MarkovLayerPlan>* plans = nullptr) {
  Network net(spec);
  MarkovChainModel chain(net, MarkovOptions{opts.sigma, opts.noise_draws, opts.fisher});
  const auto layers = chain.plan(n, std::max(1, num_threads()));
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

void check_memory(const ModelSpec& spec, int64_t n, const MeasureOptions& opts) {
  const auto need = opts.markov ? estimate_markov_memory(spec, n, opts) : estimate_memory(spec, n, opts);
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

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

torch::Tensor to_tensor(const std::vector<double>& v, std::vector<int64_t> shape) {
  return torch::from_blob(const_cast<double*>(v.data()), shape, torch::kFloat64).clone();
}

// The N inputs as a (N, input_shape...) float64 tensor, checked against the model.
torch::Tensor load_inputs(const MeasureOptions& opts, const ModelSpec& spec, std::string& description) {
  Dataset data;
  std::vector<int64_t> shape;
  const int64_t features = spec.num_inputs();
  if (!opts.inputs_file.empty()) {
    auto arr = read_npy(opts.inputs_file);
    if (arr.shape.size() < 2 || arr.shape[0] < 1)
      throw DataError(fmt::format("{}: expected an array of N x features (N >= 1), got shape ({})", opts.inputs_file,
                                  fmt::join(arr.shape, ", ")));
    if (arr.numel() / arr.shape[0] != features)
      throw DataError(fmt::format("{}: {} features per example, but model '{}' takes {}", opts.inputs_file,
                                  arr.numel() / arr.shape[0], spec.text, features));
    data.x = std::move(arr.data);
    data.sample_shape = spec.input_shape;
    data.source = opts.inputs_file;
    check_finite(data);
    description = fmt::format("{} ({} inputs, all rows in file order)", opts.inputs_file, data.size());
  } else {
    const std::string source = opts.data.empty() ? default_data_source(spec) : opts.data;
    auto ds = parse_data_spec(source);
    ds.real_targets = opts.fisher.task == Task::Regress;
    // Without --standardize only the chosen images are needed: IDX files are subset before
    // their pixels become float64 (same examples as select_subset, a fraction of the memory).
    const bool subset_first = ds.kind == DataSpec::Kind::Idx && !opts.standardize;
    int64_t available = 0;
    if (subset_first)
      data = load_idx_subset(ds.path, ds.labels_path, opts.num_inputs, opts.seed, &available);
    else if (ds.kind == DataSpec::Kind::Teacher)
      data = make_teacher_data(ds, opts.model_options, opts.seed);
    else
      data = load_dataset(ds, opts.seed);
    if (data.num_features() != features)
      throw DataError(fmt::format("data '{}' has {} features per example, but model '{}' takes {}", source,
                                  data.num_features(), spec.text, features));
    if (opts.fisher.task == Task::Classify && data.num_classes > spec.num_outputs())
      throw DataError(fmt::format("data '{}' has {} classes, but model '{}' has only {} outputs", source,
                                  data.num_classes, spec.text, spec.num_outputs()));
    check_finite(data);
    if (!subset_first) {
      if (opts.standardize) standardize(data);
      available = data.size();
      data = select_subset(data, opts.num_inputs, opts.seed);
    }
    description = fmt::format("{} ({} of {} examples, seeded subset{})", source, data.size(), available,
                              opts.standardize ? ", standardized" : "");
  }
  shape.push_back(data.size());
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  return to_tensor(data.x, shape);
}

// The first line of a --spectra-out file.
SpectraHeader spectra_header(const MeasureOptions& opts, int64_t d, int64_t n, int64_t k, const FisherOptions& fopts) {
  SpectraHeader h;
  h.model = opts.model;
  h.num_params = d;
  h.num_inputs = n;
  h.num_outputs = k;
  h.task = fopts.task == Task::Classify ? "classify" : "regress";
  h.fisher = fopts.kind == FisherKind::Exact ? "exact" : "sampled";
  h.seed = opts.seed;
  return h;
}

// The noise of every sample from --noise: (M, N*R, H) or (M, N, R, H), standard normals.
std::vector<double> read_noise(const std::string& path, int64_t m, int64_t n, int64_t r, int64_t h) {
  auto arr = read_npy(path);
  const auto& sh = arr.shape;
  const bool flat = sh.size() == 3 && sh[0] == m && sh[1] == n * r && sh[2] == h;
  const bool split = sh.size() == 4 && sh[0] == m && sh[1] == n && sh[2] == r && sh[3] == h;
  if (!flat && !split)
    throw DataError(fmt::format(
        "{}: expected noise of shape (M, N*R, H) = ({}, {}, {}) or (M, N, R, H) = ({}, {}, {}, {}) for M = {} "
        "samples, N = {} inputs, R = {} draws, H = {} hidden outputs; got ({})",
        path, m, n * r, h, m, n, r, h, m, n, r, h, fmt::join(sh, ", ")));
  for (size_t i = 0; i < arr.data.size(); ++i)
    if (!std::isfinite(arr.data[i])) {
      const auto k = static_cast<int64_t>(i);
      throw DataError(
          fmt::format("{}: NaN or Inf at sample {}, row {}, column {}", path, k / (n * r * h), k / h % (n * r), k % h));
    }
  return std::move(arr.data);
}

// The samples a resumed run takes back, by index; checks they fit this run.
std::map<int64_t, const SampleRecord*> completed_by_index(const MeasureOptions& opts, int64_t m, size_t blocks,
                                                          bool markov) {
  std::map<int64_t, const SampleRecord*> by_index;
  for (const auto& r : opts.completed) {
    if (r.index < 0 || r.index >= m)
      throw DataError(fmt::format("stored sample {} is outside this run's {} parameter samples", r.index, m));
    if (r.blocks.size() != blocks || (markov && r.costs.size() != blocks))
      throw DataError(
          fmt::format("stored sample {} has {} blocks; this model has {}", r.index, r.blocks.size(), blocks));
    if (!by_index.emplace(r.index, &r).second) throw DataError(fmt::format("stored sample {} appears twice", r.index));
  }
  return by_index;
}

// The chain 2sED (log-mean-exp), the lower 2sED (mean) and each layer's share of it, all with
// the same t and bootstrap resamples. per_layer[l][j]: layer l's spectrum at sample j.
void markov_estimates(const std::vector<SampleSpectrum>& merged, std::vector<std::vector<SampleSpectrum>> per_layer,
                      int64_t d, const EstimatorOptions& eopts, MeasureResult& result) {
  result.estimate = estimate_two_scale(merged, d, eopts);
  EstimatorOptions lower_opts = eopts;
  lower_opts.aggregate = Aggregate::Mean;
  result.markov.lower = estimate_two_scale(merged, d, lower_opts);
  for (size_t l = 0; l < per_layer.size(); ++l) {
    // The layer's eigenvalues with the whole Fisher's trace: t is the model's (spec section 4).
    for (size_t j = 0; j < per_layer[l].size(); ++j) per_layer[l][j].trace = merged[j].trace;
    result.markov.layers[l].share = estimate_group_share(per_layer[l], d, eopts);
  }
}

// The Markov chain model: block spectra per sample, then the chain 2sED (log-mean-exp), the
// lower 2sED (mean) and each layer's share of it, all with the same t and bootstrap resamples.
void run_markov(const MeasureOptions& opts, const Network& net, const torch::Tensor& x, int64_t m,
                const std::function<void(int64_t)>& theta_j, const torch::Tensor& theta, const FisherOptions& fopts,
                const EstimatorOptions& eopts, MeasureResult& result) {
  MarkovChainModel chain(net, MarkovOptions{opts.sigma, opts.noise_draws, fopts});
  const int64_t n = x.size(0), rows = chain.noise_rows(n), h = chain.noise_width(), d = net.num_params();
  auto& report = result.markov;
  report.enabled = true;
  report.sigma = opts.sigma;
  report.noise_draws = opts.noise_draws;
  report.noise_width = h;
  std::vector<double> given_noise;
  if (!opts.noise_file.empty()) {
    given_noise = read_noise(opts.noise_file, m, n, opts.noise_draws, h);
    report.noise_description = fmt::format("{} ({} x {} x {})", opts.noise_file, m, rows, h);
  } else {
    report.noise_description = fmt::format("drawn: Rng(seed {}, parameters, j) after theta^(j)", opts.seed);
  }
  const size_t num_layers = chain.layers().size();
  for (const auto& ml : chain.layers()) {
    MarkovLayerReport lr;
    lr.name = ml.name;
    lr.description = ml.description;
    lr.params = ml.params;
    lr.units = ml.units;
    lr.hidden = ml.hidden;
    report.layers.push_back(lr);
  }
  SpectraHeader header = spectra_header(opts, d, n, net.num_outputs(), fopts);
  header.markov = true;
  header.sigma = opts.sigma;
  header.noise_draws = opts.noise_draws;
  header.noise_width = h;
  for (const auto& ml : chain.layers()) header.layers.push_back({ml.name, ml.description, ml.params});
  if (opts.on_start) opts.on_start(header);
  std::unique_ptr<SpectraWriter> writer;
  if (!opts.spectra_out.empty()) writer = std::make_unique<SpectraWriter>(opts.spectra_out, header);
  std::vector<std::vector<SampleSpectrum>> per_layer(num_layers);
  std::vector<SampleSpectrum> merged;
  const auto completed = completed_by_index(opts, m, num_layers, true);
  result.resumed_samples = static_cast<int64_t>(completed.size());
  for (int64_t j = 0; j < m; ++j) {
    SampleRecord record;
    if (auto it = completed.find(j); it != completed.end()) {
      record = *it->second;
    } else {
      theta_j(j);
      torch::Tensor noise = given_noise.empty()
                                ? draw_noise(opts.seed, static_cast<uint64_t>(j), d, rows, h)
                                : torch::from_blob(given_noise.data() + j * rows * h, {rows, h}, torch::kFloat64);
      auto ms = chain.spectrum(theta, x, noise, static_cast<uint64_t>(j), [&](size_t l) {
        if (opts.layer_progress)
          opts.layer_progress(j, static_cast<int64_t>(l) + 1, static_cast<int64_t>(num_layers), m);
      });
      record.index = j;
      for (auto& b : ms.layers) {
        record.costs.push_back({b.blocks_samples_side, b.blocks_parameter_side, b.largest_block, b.seconds,
                                b.cpu_seconds_products, b.cpu_seconds_eigen});
        record.summary.matrix_size = std::max(record.summary.matrix_size, b.largest_block);
        record.blocks.push_back(std::move(b.spectrum));
      }
      const auto all = merge_spectra(record.blocks);
      record.summary.kept = static_cast<int64_t>(all.eigenvalues.size());
      record.summary.cut = all.num_cut;
      record.summary.trace = all.trace;
      for (double e : all.eigenvalues) record.summary.largest = std::max(record.summary.largest, e);
      if (opts.on_sample) opts.on_sample(record);
    }
    merged.push_back(merge_spectra(record.blocks));
    if (writer) writer->append_layers(j, record.blocks);
    report.sample_traces.emplace_back();
    for (size_t l = 0; l < num_layers; ++l) {
      const auto& c = record.costs[l];
      auto& b = record.blocks[l];
      report.sample_traces.back().push_back(b.trace);
      auto& lr = report.layers[l];
      lr.blocks_samples_side += c.blocks_samples_side;
      lr.blocks_parameter_side += c.blocks_parameter_side;
      lr.largest_block = std::max(lr.largest_block, c.largest_block);
      lr.num_cut += b.num_cut;
      lr.mean_trace += b.trace / static_cast<double>(m);
      lr.seconds += c.seconds;
      lr.cpu_seconds_products += c.cpu_seconds_products;
      lr.cpu_seconds_eigen += c.cpu_seconds_eigen;
      per_layer[l].push_back(std::move(b));
    }
    result.samples.push_back(record.summary);
    if (opts.progress) opts.progress(j + 1, m);
  }
  if (std::all_of(merged.begin(), merged.end(), [](const SampleSpectrum& s) { return s.trace == 0.0; }))
    throw DataError(fmt::format(
        "the Markov chain's Fisher information is exactly zero at all {} parameter samples; try a smaller --space", m));
  markov_estimates(merged, std::move(per_layer), d, eopts, result);
}
}  // namespace

namespace {
std::string plan_markov(const MeasureOptions& opts, const ModelSpec& spec) {
  const int64_t n = opts.num_inputs;
  std::vector<MarkovLayerPlan> plans;
  const auto need = estimate_markov_memory(spec, n, opts, &plans);
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

std::string plan_measure(const MeasureOptions& opts) {
  if (opts.num_inputs < 1) throw UsageError(fmt::format("--inputs must be >= 1, got {}", opts.num_inputs));
  const auto spec = parse_model_spec(opts.model, opts.model_options);
  const int64_t n = opts.num_inputs, d = spec.num_params();
  const int64_t rows = n * rows_per_example(spec.num_outputs(), opts.fisher);
  const bool samples = opts.fisher.side == GramSide::Samples || (opts.fisher.side == GramSide::Auto && rows <= d);
  if (opts.markov) return plan_markov(opts, spec);
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

std::string default_data_source(const ModelSpec& spec) {
  if (spec.num_inputs() == 784 && (is_file(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz") ||
                                   is_file(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte")))
    return std::string("idx:") + kFashionMnistDir;
  return fmt::format("synthetic:blobs:{}:{}", spec.num_outputs(), spec.num_inputs());
}

namespace {

// Curves from a spectra file written by an earlier (possibly stopped) run.
MeasureResult measure_from_spectra(const MeasureOptions& opts) {
  auto file = read_spectra(opts.spectra_in);
  std::vector<SampleRecord> records(file.spectra.size());
  for (size_t j = 0; j < records.size(); ++j) {
    records[j].index = static_cast<int64_t>(j);
    if (file.header.markov)
      records[j].blocks = std::move(file.layer_spectra[j]);
    else
      records[j].blocks.push_back(std::move(file.spectra[j]));
  }
  EstimatorOptions eopts = opts.estimator;
  eopts.seed = opts.seed;
  auto result =
      measure_from_records(file.header, records, eopts,
                           fmt::format("spectra of {} finished samples from {}{}", records.size(), opts.spectra_in,
                                       file.truncated_last_line ? " (an unfinished last line was ignored)" : ""));
  result.space_description = fmt::format("as in the run that wrote {} (seed {})", opts.spectra_in, file.header.seed);
  result.fisher.cutoff = opts.fisher.cutoff;
  return result;
}

}  // namespace

MeasureResult measure_from_records(const SpectraHeader& header, const std::vector<SampleRecord>& records,
                                   const EstimatorOptions& eopts, const std::string& description) {
  if (records.empty()) throw DataError(fmt::format("{}: no finished samples", description));
  MeasureResult result;
  result.spec.text = header.model;
  result.num_inputs = header.num_inputs;
  result.num_outputs = header.num_outputs;
  result.fisher.task = header.task == "regress" ? Task::Regress : Task::Classify;
  result.fisher.kind = header.fisher == "sampled" ? FisherKind::Sampled : FisherKind::Exact;
  result.rows_per_example = rows_per_example(result.num_outputs, result.fisher);
  result.data_description = description;
  result.space_description = fmt::format("as in the run that computed the spectra (seed {})", header.seed);
  result.side = records.front().side;
  const size_t num_blocks = header.markov ? header.layers.size() : 1;
  std::vector<SampleSpectrum> merged;
  for (const auto& r : records) {
    if (r.blocks.size() != num_blocks)
      throw DataError(
          fmt::format("{}: sample {} has {} blocks, expected {}", description, r.index, r.blocks.size(), num_blocks));
    merged.push_back(merge_spectra(r.blocks));
    SampleSummary summary = r.summary;
    const auto& s = merged.back();
    summary.kept = static_cast<int64_t>(s.eigenvalues.size());
    summary.cut = s.num_cut;
    summary.trace = s.trace;
    if (summary.matrix_size == 0) summary.matrix_size = summary.kept + summary.cut;
    if (summary.largest == 0)
      for (double e : s.eigenvalues) summary.largest = std::max(summary.largest, e);
    result.samples.push_back(summary);
  }
  if (!header.markov) {
    result.estimate = estimate_two_scale(merged, header.num_params, eopts);
    return result;
  }
  auto& mk = result.markov;
  mk.enabled = true;
  mk.sigma = header.sigma;
  mk.noise_draws = header.noise_draws;
  mk.noise_width = header.noise_width;
  mk.noise_description = "as in the run that computed the spectra";
  mk.from_spectra_file =
      std::any_of(records.begin(), records.end(), [&](const SampleRecord& r) { return r.costs.size() != num_blocks; });
  for (const auto& l : header.layers) {
    MarkovLayerReport lr;
    lr.name = l.name;
    lr.description = l.description;
    lr.params = l.params;
    mk.layers.push_back(lr);
  }
  mk.layers.back().hidden = false;
  const double m = static_cast<double>(records.size());
  std::vector<std::vector<SampleSpectrum>> per_layer(num_blocks);
  for (const auto& r : records) {
    mk.sample_traces.emplace_back();
    for (size_t l = 0; l < num_blocks; ++l) {
      auto& lr = mk.layers[l];
      mk.sample_traces.back().push_back(r.blocks[l].trace);
      lr.mean_trace += r.blocks[l].trace / m;
      lr.num_cut += r.blocks[l].num_cut;
      if (!mk.from_spectra_file) {
        const auto& c = r.costs[l];
        lr.blocks_samples_side += c.blocks_samples_side;
        lr.blocks_parameter_side += c.blocks_parameter_side;
        lr.largest_block = std::max(lr.largest_block, c.largest_block);
        lr.seconds += c.seconds;
        lr.cpu_seconds_products += c.cpu_seconds_products;
        lr.cpu_seconds_eigen += c.cpu_seconds_eigen;
      }
      per_layer[l].push_back(r.blocks[l]);
    }
  }
  markov_estimates(merged, std::move(per_layer), header.num_params, eopts, result);
  return result;
}

MeasureResult run_measure(const MeasureOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!opts.spectra_in.empty()) {
    validate_estimator_options(opts.estimator);
    auto result = measure_from_spectra(opts);
    result.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
  }
  if (opts.num_inputs < 1) throw UsageError(fmt::format("--inputs must be >= 1, got {}", opts.num_inputs));
  if (opts.thetas_file.empty() && (opts.num_param_samples < 1 || opts.num_param_samples > kMaxParamSamples))
    throw UsageError(fmt::format("--samples must be in [1, {}], got {}", kMaxParamSamples, opts.num_param_samples));
  if (opts.fisher.task == Task::Regress && !(opts.fisher.out_noise > 0 && std::isfinite(opts.fisher.out_noise)))
    throw UsageError(fmt::format("--out-noise must be a finite number > 0, got {}", opts.fisher.out_noise));
  validate_estimator_options(opts.estimator);

  MeasureResult result;
  const auto spec = parse_model_spec(opts.model, opts.model_options);
  Network net(spec);
  if (opts.markov) {
    MarkovChainModel(net, MarkovOptions{opts.sigma, opts.noise_draws, opts.fisher});  // checks sigma and R
  } else if (!opts.noise_file.empty()) {
    throw UsageError("--noise needs --markov (noise is only added in the Markov chain model)");
  }
  result.spec = net.spec();
  const int64_t d = net.num_params();
  const auto x = load_inputs(opts, net.spec(), result.data_description);
  result.num_inputs = x.size(0);
  result.num_outputs = net.num_outputs();
  result.rows_per_example = rows_per_example(result.num_outputs, opts.fisher);
  check_memory(spec, result.num_inputs, opts);

  if (opts.fisher.task == Task::Classify && result.num_outputs < 2)
    throw UsageError(
        fmt::format("model '{}' has 1 output: --task classify needs at least 2 (softmax of one "
                    "logit is constant); use --task regress",
                    opts.model));

  // Parameter samples: drawn on the fly from Theta, or read from --thetas.
  std::vector<double> given;
  int64_t m = opts.num_param_samples;
  ParameterSpace space;
  if (!opts.thetas_file.empty()) {
    CheckpointInfo info;
    if (read_checkpoint_info(opts.thetas_file, info) && (info.model != net.spec().text || info.num_params != d))
      throw DataError(fmt::format("{}: a checkpoint of '{}' (d = {}), but the model is '{}' (d = {})", opts.thetas_file,
                                  info.model, info.num_params, net.spec().text, d));
    auto arr = read_npy(opts.thetas_file);
    if (arr.shape.size() == 1 && arr.shape[0] == d) arr.shape = {1, d};
    if (arr.shape.size() != 2 || arr.shape[1] != d || arr.shape[0] < 1)
      throw DataError(fmt::format("{}: expected shape (M, {}) for model '{}' (d = {}), got ({})", opts.thetas_file, d,
                                  opts.model, d, fmt::join(arr.shape, ", ")));
    for (size_t i = 0; i < arr.data.size(); ++i)
      if (!std::isfinite(arr.data[i]))
        throw DataError(fmt::format("{}: NaN or Inf in sample {}, parameter {}", opts.thetas_file,
                                    static_cast<int64_t>(i) / d, static_cast<int64_t>(i) % d));
    m = arr.shape[0];
    given = std::move(arr.data);
    result.space_description = fmt::format("{} given samples from {}", m, opts.thetas_file);
  } else {
    space = ParameterSpace::parse(opts.space, net);
    result.space_description = space.description();
  }

  FisherOptions fopts = opts.fisher;
  fopts.label_seed = opts.seed;
  result.fisher = fopts;
  EstimatorOptions eopts = opts.estimator;
  eopts.seed = opts.seed;
  auto theta = torch::empty({d}, torch::kFloat64);
  auto theta_j = [&](int64_t j) {
    if (given.empty())
      space.sample(opts.seed, j, theta.data_ptr<double>());
    else
      std::copy_n(given.data() + j * d, d, theta.data_ptr<double>());
  };
  if (opts.markov) {
    run_markov(opts, net, x, m, theta_j, theta, fopts, eopts, result);
    result.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
  }
  const auto completed = completed_by_index(opts, m, 1, false);
  result.resumed_samples = static_cast<int64_t>(completed.size());
  const auto header = spectra_header(opts, d, result.num_inputs, result.num_outputs, fopts);
  if (opts.on_start) opts.on_start(header);
  std::unique_ptr<SpectraWriter> writer;
  if (!opts.spectra_out.empty()) writer = std::make_unique<SpectraWriter>(opts.spectra_out, header);
  std::vector<SampleSpectrum> spectra;
  spectra.reserve(static_cast<size_t>(m));
  for (int64_t j = 0; j < m; ++j) {
    SampleRecord record;
    if (auto it = completed.find(j); it != completed.end()) {
      record = *it->second;
    } else {
      theta_j(j);
      auto fs = fisher_spectrum(net, theta, x, fopts, static_cast<uint64_t>(j));
      record.index = j;
      record.side = fs.side;
      record.summary = {fs.matrix_size,
                        static_cast<int64_t>(fs.spectrum.eigenvalues.size()),
                        fs.spectrum.num_cut,
                        fs.spectrum.trace,
                        fs.largest,
                        fs.most_negative,
                        fs.seconds_forward_backward,
                        fs.seconds_gram,
                        fs.seconds_eigen};
      record.blocks.push_back(std::move(fs.spectrum));
      if (opts.on_sample) opts.on_sample(record);
    }
    if (j == 0) result.side = record.side;
    result.samples.push_back(record.summary);
    if (writer) writer->append(j, record.blocks.front());
    spectra.push_back(std::move(record.blocks.front()));
    if (opts.progress) opts.progress(j + 1, m);
  }
  if (std::all_of(spectra.begin(), spectra.end(), [](const SampleSpectrum& s) { return s.trace == 0.0; }))
    throw DataError(fmt::format(
        "the Fisher information is exactly zero at all {} parameter samples (the network's outputs do not move "
        "on these inputs: saturated softmax or dead ReLUs?); try a smaller --space or other inputs",
        m));
  result.estimate = estimate_two_scale(spectra, d, eopts);
  result.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace twosed

// OpenBLAS, which LibTorch uses for BLAS and LAPACK.
extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads();

namespace twosed {
void set_num_threads(int threads) {
  if (threads < 1) throw UsageError(fmt::format("--threads must be >= 1, got {}", threads));
  // The heavy work (Gram products, passes through Linear and Conv2d layers, eigen-solves) runs
  // in OpenBLAS, which gets the T threads. LibTorch's own OpenMP pool is kept at one thread:
  // both pools spin-wait, and with two of them on the same cores the passes and Gram stage
  // were up to 30% slower (docs/benchmarks.md). One pool also keeps results reproducible per T.
  torch::set_num_threads(1);
  openblas_set_num_threads(threads);
}
int num_threads() {
  return openblas_get_num_threads();
}
}  // namespace twosed
