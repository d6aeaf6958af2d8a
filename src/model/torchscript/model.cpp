// The standard model S on a TorchScript network: Fisher spectra from per-example autograd
// rows, the imported parameter spaces, and prepare_measurement() for a .pt model.
#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "linalg/linalg.h"
#include "measure/loaders.h"
#include "measure/memory_plan.h"
#include "twosed/data/data.h"
#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/model/torchscript.h"
#include "twosed/random.h"

namespace twosed {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (auto s : v) p *= s;
  return p;
}

// The samples-side Gram's lower triangle, K = G G^T (not yet divided by N), block by block:
// block a's rows are paired with every earlier block, recomputed (see the header).
torch::Tensor samples_gram(int64_t rows, int64_t block_examples, int64_t r,
                           const std::function<torch::Tensor(int64_t, int64_t)>& rows_of, int64_t n) {
  auto k = torch::zeros({rows, rows}, torch::kFloat64);
  for (int64_t a0 = 0; a0 < n; a0 += block_examples) {
    const int64_t na = std::min(block_examples, n - a0);
    const auto ga = rows_of(a0, na);
    auto kaa = torch::zeros({na * r, na * r}, torch::kFloat64);
    linalg::syrk_lower(ga, kaa);
    k.narrow(0, a0 * r, na * r).narrow(1, a0 * r, na * r).copy_(kaa);
    for (int64_t b0 = 0; b0 < a0; b0 += block_examples) {
      const int64_t nb = std::min(block_examples, n - b0);
      k.narrow(0, a0 * r, na * r).narrow(1, b0 * r, nb * r).copy_(torch::mm(ga, rows_of(b0, nb).t()));
    }
  }
  return k;
}

}  // namespace

FisherSpectrum torchscript_fisher_spectrum(const TorchScriptNetwork& net, const torch::Tensor& theta,
                                           const torch::Tensor& x, const FisherOptions& opts, uint64_t rng_index,
                                           const JacobianOptions& jac) {
  const auto t0 = Clock::now();
  const int64_t n = x.size(0), d = net.num_params();
  // Covectors of all inputs at once, so that sampled labels do not depend on the blocks.
  const auto q = output_covectors(net.forward(theta, x), opts, rng_index);
  const int64_t r = q.size(1), rows = n * r;
  const GramSide side = linalg::choose_side(opts.side, rows, d);
  double jacobian_seconds = 0;  // stays 0 on the structured samples side: passes and Gram terms interleave
  // Two blocks are alive at once on the samples side: each gets half the budget.
  const int64_t per_example = r * d * static_cast<int64_t>(sizeof(double));
  const int64_t block_examples = std::max<int64_t>(1, opts.memory_budget / 2 / std::max<int64_t>(per_example, 1));
  auto rows_of = [&](int64_t i0, int64_t count) {
    const auto tj = Clock::now();
    auto g = torch::empty({count * r, d}, torch::kFloat64);
    if (jac.structured)
      net.structured_rows(theta, x, q.narrow(0, i0, count), i0, g);
    else
      net.jacobian_rows(theta, x, q.narrow(0, i0, count), i0, g);
    jacobian_seconds += seconds_since(tj);
    return g;
  };
  torch::Tensor matrix;
  if (jac.structured && side == GramSide::Samples) {
    // All N examples in one forward pass; the backward passes hold one group of ops at a time.
    matrix = torch::zeros({rows, rows}, torch::kFloat64);
    net.structured_gram(theta, x, q, jac.conv_form, opts.memory_budget, matrix);
  } else if (side == GramSide::Samples) {
    matrix = samples_gram(rows, block_examples, r, rows_of, n);
  } else {
    matrix = torch::zeros({d, d}, torch::kFloat64);
    for (int64_t i0 = 0; i0 < n; i0 += block_examples) {
      const int64_t c = std::min(block_examples, n - i0);
      const auto g = rows_of(i0, c).contiguous();
      linalg::syrk_lower(g.data_ptr<double>(), d, c * r, /*trans=*/true, 1.0, 1.0, matrix.data_ptr<double>());
    }
  }
  matrix.div_(static_cast<double>(n));
  const double built = seconds_since(t0);
  const auto te = Clock::now();
  auto out = spectrum_of(matrix, opts.cutoff);
  out.seconds_eigen = seconds_since(te);
  out.side = side;
  out.seconds_forward_backward = jacobian_seconds;
  out.seconds_gram = built - jacobian_seconds;
  return out;
}

// ---- the model ----

namespace {

// The inputs as float64, (N, input_shape...) when the shape is given; DataError naming them.
void checked_inputs(MeasureInputs& inputs, const std::vector<int64_t>& input_shape) {
  const std::string what = inputs.description.empty() ? "inputs" : inputs.description;
  auto& x = inputs.x;
  if (!x.defined() || x.dim() < 1 || x.size(0) < 1)
    throw DataError(fmt::format("{}: expected a tensor of N >= 1 examples", what));
  x = x.to(torch::kFloat64).contiguous();
  if (!input_shape.empty()) {
    const int64_t features = x.numel() / x.size(0);
    if (features != product(input_shape))
      throw DataError(fmt::format("{}: {} features per example, but input shape {} has {}", what, features,
                                  fmt::join(input_shape, "x"), product(input_shape)));
    std::vector<int64_t> shape{x.size(0)};
    shape.insert(shape.end(), input_shape.begin(), input_shape.end());
    x = x.view(shape);
  }
  if (!torch::isfinite(x).all().item<bool>()) throw DataError(fmt::format("{}: NaN or Inf in the inputs", what));
}

void check_output_options(const TorchScriptNetwork& net, int64_t k, const FisherOptions& fisher) {
  if (fisher.task == Task::Regress && !(fisher.out_noise > 0 && std::isfinite(fisher.out_noise)))
    throw OptionError("FisherOptions.out_noise", fmt::format("must be a finite number > 0, got {}", fisher.out_noise));
  if (fisher.task == Task::Classify && k < 2)
    throw OptionError("FisherOptions.task",
                      fmt::format("classify needs at least 2 outputs, but {} has 1; use regress", net.path()));
}

}  // namespace

TorchScriptModel::TorchScriptModel(std::shared_ptr<const TorchScriptNetwork> net, MeasureInputs inputs,
                                   FisherOptions fisher, std::vector<int64_t> input_shape, const std::string& jacobian,
                                   ConvFormChoice conv_form)
    : net_(std::move(net)), inputs_(std::move(inputs)), fisher_(fisher) {
  if (jacobian != "auto" && jacobian != "autograd" && jacobian != "structured")
    throw OptionError("MeasureOptions.jacobian", fmt::format("'{}': expected auto, autograd or structured", jacobian));
  checked_inputs(inputs_, input_shape);
  const auto& x = inputs_.x;
  num_outputs_ = net_->forward(net_->file_theta(), x).size(1);
  check_output_options(*net_, num_outputs_, fisher_);
  jacobian_.conv_form = conv_form;
  if (jacobian == "autograd") {
    autograd_reason_ = "as asked";
    return;
  }
  plan_ =
      net_->structured_plan(x, x.size(0), rows_per_example(num_outputs_, fisher_), conv_form, fisher_.memory_budget);
  if (plan_.usable()) {
    jacobian_.structured = true;
  } else if (jacobian == "structured") {
    throw OptionError(
        "MeasureOptions.jacobian",
        fmt::format("structured: {} does not know {}{}", net_->path(), plan_.unknown.front(),
                    plan_.unknown.size() > 1 ? fmt::format(" (and {} more)", plan_.unknown.size() - 1) : ""));
  } else {
    autograd_reason_ = "the structured path does not know " + fmt::format("{}", fmt::join(plan_.unknown, "; "));
  }
}

std::string TorchScriptModel::jacobian_description() const {
  if (!jacobian_.structured) return "autograd (" + autograd_reason_ + ")";
  std::vector<std::string> ops;
  for (const auto& op : plan_.ops) ops.push_back(fmt::format("{} [{}]: {}", op.op, op.params, op.form));
  return fmt::format("structured ({})", fmt::join(ops, "; "));
}

namespace {
// What the records of either statistical model on an imported network fit.
SpectraHeader imported_header(const TorchScriptNetwork& net, int64_t n, int64_t k, const FisherOptions& fisher) {
  SpectraHeader h;
  h.model = net.path();
  h.num_params = net.num_params();
  h.num_inputs = n;
  h.num_outputs = k;
  h.task = fisher.task == Task::Classify ? "classify" : "regress";
  h.fisher = fisher.kind == FisherKind::Exact ? "exact" : "sampled";
  return h;
}
}  // namespace

SpectraHeader TorchScriptModel::header() const {
  return imported_header(*net_, inputs_.x.size(0), num_outputs_, fisher_);
}

ResultSources TorchScriptModel::sources() const {
  ResultSources s;
  s.data = inputs_.description;
  s.jacobian = jacobian_description();
  return s;
}

SampleRecord TorchScriptModel::sample(int64_t j, const torch::Tensor& theta,
                                      const std::function<void(int64_t, int64_t)>& /*after_layer*/) const {
  auto fs = torchscript_fisher_spectrum(*net_, theta, inputs_.x, fisher_, static_cast<uint64_t>(j), jacobian_);
  return spectrum_record(j, std::move(fs));
}

// ---- the Markov chain model on an imported chain ----

TorchScriptMarkovModel::TorchScriptMarkovModel(std::shared_ptr<const TorchScriptNetwork> net, MeasureInputs inputs,
                                               MarkovOptions options, MarkovNoise noise,
                                               std::vector<int64_t> input_shape)
    : net_(std::move(net)), inputs_(std::move(inputs)), options_(std::move(options)), noise_(std::move(noise)) {
  checked_inputs(inputs_, input_shape);
  num_outputs_ = net_->forward(net_->file_theta(), inputs_.x).size(1);
  check_output_options(*net_, num_outputs_, options_.fisher);
  layers_ = net_->markov_layers(inputs_.x, options_);
  for (const auto& l : layers_) noise_width_ += l.noise_width;
  if (noise_.given.defined()) {
    const int64_t rows = inputs_.x.size(0) * options_.noise_draws;
    auto& g = noise_.given;
    if (g.dim() != 3 || g.size(1) != rows || g.size(2) != noise_width_)
      throw DataError(fmt::format("{}: expected noise of shape (M, N*R, H) = (M, {}, {}), got ({})", noise_.description,
                                  rows, noise_width_, fmt::join(g.sizes(), ", ")));
    g = g.to(torch::kFloat64).contiguous();
  }
  if (noise_.description.empty())
    noise_.description = fmt::format("drawn: Rng(seed {}, parameters, j) after theta^(j)", noise_.seed);
}

SpectraHeader TorchScriptMarkovModel::header() const {
  auto h = imported_header(*net_, inputs_.x.size(0), num_outputs_, options_.fisher);
  h.markov = true;
  h.sigma = options_.sigma;
  h.noise_draws = options_.noise_draws;
  h.noise_width = noise_width_;
  for (const auto& ml : layers_) h.layers.push_back({ml.name, ml.description, ml.params});
  return h;
}

ResultSources TorchScriptMarkovModel::sources() const {
  ResultSources s;
  s.data = inputs_.description;
  s.noise = noise_.description;
  s.jacobian = "Markov chain: per-unit blocks from the ops' design rows and the tails' autograd channel maps";
  for (const auto& l : layers_) s.layer_units.push_back(l.units);
  return s;
}

SampleRecord TorchScriptMarkovModel::sample(int64_t j, const torch::Tensor& theta,
                                            const std::function<void(int64_t, int64_t)>& after_layer) const {
  const int64_t rows = inputs_.x.size(0) * options_.noise_draws;
  if (noise_.given.defined() && j >= noise_.given.size(0))
    throw DataError(fmt::format("{}: holds noise for {} samples, sample {} needs more", noise_.description,
                                noise_.given.size(0), j));
  const torch::Tensor noise = noise_.given.defined() ? noise_.given[j]
                                                     : draw_noise(noise_.seed, static_cast<uint64_t>(j),
                                                                  net_->num_params(), rows, noise_width_);
  const auto layers = static_cast<int64_t>(layers_.size());
  auto ms = net_->markov_spectrum(theta, inputs_.x, noise, options_, static_cast<uint64_t>(j), [&](size_t l) {
    if (after_layer) after_layer(static_cast<int64_t>(l) + 1, layers);
  });
  return markov_record(j, std::move(ms));
}

// ---- parameter spaces ----

namespace {

double parse_positive(const std::string& text, const std::string& what, const std::string& whole) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != text.size() || !std::isfinite(v) || v <= 0)
    throw OptionError("MeasureOptions.space", fmt::format("{}: {} '{}' must be a positive number", whole, what, text));
  return v;
}

bool is_norm(const std::string& type) {
  return type == "BatchNorm1d" || type == "BatchNorm2d" || type == "BatchNorm3d" || type == "LayerNorm";
}

// The init box's half-width (or, for normalisation layers, its point) of one parameter tensor.
void init_bounds(const TorchScriptNetwork& net, const ImportedParameter& p, std::vector<double>& lower,
                 std::vector<double>& upper) {
  const auto leaf = p.name.substr(p.name.rfind('.') + 1);
  double lo = 0, hi = 0;
  if (p.module_type == "Linear" || p.module_type == "Conv2d") {
    // fan_in from the module's weight, (out, in/groups, kh, kw) or (out, in), as PyTorch's
    // _calculate_fan_in_and_fan_out; the bias uses its weight's.
    const auto owner = p.name.substr(0, p.name.rfind('.'));
    const ImportedParameter* weight = nullptr;
    for (const auto& q : net.parameters())
      if (q.name == owner + ".weight") weight = &q;
    if (weight == nullptr || weight->shape.size() < 2)
      throw OptionError("MeasureOptions.space", fmt::format("init: parameter '{}' ({}) has no weight to take fan_in "
                                                            "from; use box:A or local:R",
                                                            p.name, p.module_type));
    int64_t fan_in = 1;
    for (size_t i = 1; i < weight->shape.size(); ++i) fan_in *= weight->shape[i];
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    lo = 0.0 - bound;  // as ParameterSpace: centre 0 -+ half-width, bit for bit
    hi = 0.0 + bound;
  } else if (is_norm(p.module_type) && (leaf == "weight" || leaf == "bias")) {
    lo = hi = leaf == "weight" ? 1.0 : 0.0;  // points of the box
  } else {
    throw OptionError("MeasureOptions.space",
                      fmt::format("init: no init rule for parameter '{}' of module type {} (there is one for Linear, "
                                  "Conv2d, BatchNorm and LayerNorm); use box:A or local:R",
                                  p.name, p.module_type));
  }
  for (int64_t i = 0; i < p.numel(); ++i) {
    lower.push_back(lo);
    upper.push_back(hi);
  }
}

}  // namespace

ImportedParameters::ImportedParameters(const TorchScriptNetwork& net, const std::string& space, uint64_t seed,
                                       int64_t samples)
    : seed_(seed), samples_(samples) {
  if (samples < 1 || samples > kMaxParamSamples)
    throw OptionError("MeasureOptions.num_param_samples",
                      fmt::format("must be in [1, {}], got {}", kMaxParamSamples, samples));
  const int64_t d = net.num_params();
  if (space == "init" || space.empty()) {
    for (const auto& p : net.parameters()) init_bounds(net, p, lower_, upper_);
    description_ =
        "init (PyTorch default init box: +-1/sqrt(fan_in) for Linear and Conv2d, normalisation layers at "
        "weight 1, bias 0)";
  } else if (space.rfind("box:", 0) == 0) {
    const double a = parse_positive(space.substr(4), "half-width A", space);
    lower_.assign(static_cast<size_t>(d), 0.0 - a);
    upper_.assign(static_cast<size_t>(d), 0.0 + a);
    description_ = fmt::format("box [-{}, {}]^d", a, a);
  } else if (space.rfind("local:", 0) == 0) {
    const auto rest = space.substr(6);
    if (rest.find(':') != std::string::npos)
      throw OptionError(
          "MeasureOptions.space",
          fmt::format("{}: a TorchScript model's local box is local:R, around the file's weights", space));
    const double r = parse_positive(rest, "radius R", space);
    const auto c = net.file_theta().contiguous();
    const double* cp = c.data_ptr<double>();
    for (int64_t i = 0; i < d; ++i) {
      lower_.push_back(cp[i] - r);
      upper_.push_back(cp[i] + r);
    }
    description_ = fmt::format("local box: the weights in {} +- {}", net.path(), r);
  } else {
    throw OptionError("MeasureOptions.space", fmt::format("{}: expected init, box:A or local:R", space));
  }
}

void ImportedParameters::fill(int64_t j, double* out) const {
  Rng rng(seed_, Stream::Parameters, static_cast<uint64_t>(j));
  for (size_t i = 0; i < lower_.size(); ++i) {
    const double lo = lower_[i], hi = upper_[i];
    out[i] = lo + (hi - lo) * rng.uniform();  // a point (lo == hi) still uses up its uniform
  }
}

// ---- prepare_measurement for a .pt model ----

std::vector<int64_t> parse_input_shape(const std::string& text) {
  std::vector<int64_t> shape;
  size_t start = 0;
  while (true) {
    const auto end = text.find('x', start);
    const auto token = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(token, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (token.empty() || pos != token.size() || v < 1)
      throw OptionError("MeasureOptions.input_shape",
                        fmt::format("'{}': expected positive sizes separated by x, e.g. 3x32x32 or 784", text));
    shape.push_back(v);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return shape;
}

namespace {

// One example's shape when --input-shape is not given: an .npy's trailing dimensions, a data
// source's sample shape ({F} for tables, {1, 28, 28} for IDX images).
std::vector<int64_t> data_shape(const MeasureOptions& opts) {
  if (!opts.inputs_file.empty()) {
    const auto arr = read_npy(opts.inputs_file);
    if (arr.shape.size() < 2)
      throw DataError(fmt::format("{}: expected an array of N x features, got shape ({})", opts.inputs_file,
                                  fmt::join(arr.shape, ", ")));
    return {arr.shape.begin() + 1, arr.shape.end()};
  }
  if (opts.data.empty())
    throw OptionError("MeasureOptions.input_shape",
                      "is needed for a TorchScript model without a data source or inputs file (its input shape "
                      "cannot be read from the file)");
  return load_dataset(parse_data_spec(opts.data), opts.seed).sample_shape;
}

// What the loaders need to know of the model: its name, input shape and k (no layers).
ModelSpec stand_in_spec(const std::string& path, std::vector<int64_t> input_shape, int64_t k) {
  ModelSpec spec;
  spec.text = path;
  spec.input_shape = std::move(input_shape);
  LayerSpec out;
  out.out = k;
  spec.layers.push_back(out);
  return spec;
}

std::unique_ptr<ParameterSource> torchscript_parameters(const MeasureOptions& opts, const TorchScriptNetwork& net) {
  if (opts.thetas_file.empty())
    return std::make_unique<ImportedParameters>(net, opts.space, opts.seed, opts.num_param_samples);
  auto arr = read_npy(opts.thetas_file);
  const auto shape = arr.shape;
  auto thetas = torch::tensor(arr.data, torch::kFloat64).view(shape);
  return std::make_unique<GivenParameters>(thetas, net.num_params(),
                                           fmt::format("given samples from {}", opts.thetas_file), opts.thetas_file);
}

}  // namespace

std::vector<int64_t> torchscript_input_shape(const MeasureOptions& opts) {
  return opts.input_shape.empty() ? data_shape(opts) : parse_input_shape(opts.input_shape);
}

void refuse_torchscript_skips(const TorchScriptNetwork& net) {
  const auto graph = summarize_graph(net);
  if (!graph.skips.empty())
    throw UsageError(fmt::format(
        "{}: the Markov chain model needs a chain of layers, but the graph has a skip connection: {} joins two paths "
        "from the input",
        net.path(), graph.skips.front()));
}

PreparedMeasurement prepare_torchscript_measurement(const MeasureOptions& opts, const MeasureInputs* given_inputs) {
  if (!opts.markov && !opts.noise_file.empty())
    throw UsageError("noise_file needs the Markov chain model (noise is only added there)");
  if (opts.jacobian != "auto" && opts.jacobian != "autograd" && opts.jacobian != "structured")
    throw OptionError("MeasureOptions.jacobian",
                      fmt::format("'{}': expected auto, autograd or structured", opts.jacobian));
  auto net = std::make_shared<const TorchScriptNetwork>(opts.model);
  if (opts.markov) refuse_torchscript_skips(*net);
  FisherOptions fisher = opts.fisher;
  fisher.label_seed = opts.seed;  // sampled labels: Rng(seed, Labels, j)
  std::vector<int64_t> shape;
  MeasureInputs inputs;
  if (given_inputs) {
    inputs = *given_inputs;
    if (!opts.input_shape.empty()) shape = parse_input_shape(opts.input_shape);
  } else {
    shape = torchscript_input_shape(opts);
    std::vector<int64_t> probe{1};
    probe.insert(probe.end(), shape.begin(), shape.end());
    const int64_t k = net->forward(net->file_theta(), torch::zeros(probe, torch::kFloat64)).size(1);
    inputs = loaders::load_inputs(opts, stand_in_spec(opts.model, shape, k));
  }
  PreparedMeasurement out;
  if (opts.markov) {
    out.thetas = torchscript_parameters(opts, *net);
    const MarkovOptions markov{opts.sigma, opts.noise_draws, fisher};
    const TorchScriptMarkovModel probe(net, inputs, markov, MarkovNoise{}, shape);  // the noise layout
    const int64_t n = probe.header().num_inputs;
    auto noise = loaders::load_noise(opts, out.thetas->count(), n, opts.noise_draws, probe.noise_width());
    out.model = std::make_unique<TorchScriptMarkovModel>(net, std::move(inputs), markov, std::move(noise), shape);
    return out;
  }
  out.model = std::make_unique<TorchScriptModel>(net, std::move(inputs), fisher, shape, opts.jacobian);
  const auto& model = static_cast<const TorchScriptModel&>(*out.model);
  check_torchscript_memory(*net, model.num_outputs(), model.header().num_inputs, opts,
                           model.jacobian().structured ? &model.structured_plan() : nullptr);
  out.thetas = torchscript_parameters(opts, *net);
  return out;
}

}  // namespace twosed
