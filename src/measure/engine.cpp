// The measurement engine (engine.h): parameter sources, the two statistical models as sample
// producers, the one sample loop, and measure().
#include "twosed/measure/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "linalg/scratch.h"
#include "twosed/error.h"

namespace twosed {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The first non-finite value of a float64 tensor as a flat index, or -1.
int64_t first_non_finite(const torch::Tensor& t) {
  const auto bad = torch::logical_not(torch::isfinite(t)).reshape({-1});
  if (!bad.any().item<bool>()) return -1;
  return bad.nonzero()[0][0].item<int64_t>();
}

}  // namespace

MeasureInputs checked_inputs(const Network& net, MeasureInputs in) {
  const auto& spec = net.spec();
  const std::string what = in.description.empty() ? "inputs" : in.description;
  if (!in.x.defined() || in.x.dim() < 1 || in.x.size(0) < 1)
    throw DataError(fmt::format("{}: expected a tensor of N >= 1 examples", what));
  const int64_t n = in.x.size(0), features = in.x.numel() / n;
  if (features != spec.num_inputs())
    throw DataError(fmt::format("{}: {} features per example, but model '{}' takes {}", what, features, spec.text,
                                spec.num_inputs()));
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  // One float64 copy at most: a float64 contiguous tensor is used as it is.
  in.x = in.x.to(torch::kFloat64).contiguous().view(shape);
  if (const int64_t i = first_non_finite(in.x); i >= 0)
    throw DataError(fmt::format("{}: NaN or Inf at example {}, feature {}", what, i / features, i % features));
  // The Fisher squares products of inputs and weights: |x| > 1e150 overflows float64 there.
  constexpr double kMaxInput = 1e150;
  const auto big = (in.x.abs() > kMaxInput).reshape({-1});
  if (big.any().item<bool>()) {
    const int64_t i = big.nonzero()[0][0].item<int64_t>();
    throw DataError(
        fmt::format("{}: value {} at example {}, feature {} is out of range: inputs must satisfy |x| <= {:g} "
                    "(their squares overflow float64 in the Fisher)",
                    what, in.x.reshape({-1})[i].item<double>(), i / features, i % features, kMaxInput));
  }
  return in;
}

DrawnParameters::DrawnParameters(ParameterSpace space, uint64_t seed, int64_t samples)
    : space_(std::move(space)), seed_(seed), samples_(samples) {
  if (samples < 1 || samples > kMaxParamSamples)
    throw OptionError("MeasureOptions.num_param_samples",
                      fmt::format("must be in [1, {}], got {}", kMaxParamSamples, samples));
}

GivenParameters::GivenParameters(torch::Tensor thetas, int64_t num_params, std::string description, std::string where)
    : description_(std::move(description)) {
  if (where.empty()) where = description_;
  if (thetas.dim() == 1 && thetas.size(0) == num_params) thetas = thetas.unsqueeze(0);
  if (thetas.dim() != 2 || thetas.size(1) != num_params || thetas.size(0) < 1)
    throw DataError(fmt::format("{}: expected shape (M, {}) (d = {}), got ({})", where, num_params, num_params,
                                fmt::join(thetas.sizes(), ", ")));
  thetas_ = thetas.to(torch::kFloat64).contiguous();
  if (const int64_t i = first_non_finite(thetas_); i >= 0)
    throw DataError(fmt::format("{}: NaN or Inf in sample {}, parameter {}", where, i / num_params, i % num_params));
}

void GivenParameters::fill(int64_t j, double* out) const {
  const int64_t d = thetas_.size(1);
  std::copy_n(thetas_.data_ptr<double>() + j * d, d, out);
}

// ---- the standard model ----

namespace {

// The output model must fit the network (both statistical models end in it).
void check_output_model(const Network& net, const FisherOptions& fisher) {
  if (fisher.task == Task::Regress && !(fisher.out_noise > 0 && std::isfinite(fisher.out_noise)))
    throw OptionError("FisherOptions.out_noise", fmt::format("must be a finite number > 0, got {}", fisher.out_noise));
  if (fisher.task == Task::Classify && net.num_outputs() < 2)
    throw OptionError("FisherOptions.task",
                      fmt::format("classify needs at least 2 outputs, but model '{}' has 1 (the softmax of one logit "
                                  "is constant); use regress",
                                  net.spec().text));
}

// What the records of a model on `net` at N inputs fit; the Markov model adds its layers.
SpectraHeader standard_header(const Network& net, int64_t n, const FisherOptions& fisher) {
  SpectraHeader h;
  h.model = net.spec().text;
  h.num_params = net.num_params();
  h.num_inputs = n;
  h.num_outputs = net.num_outputs();
  h.task = fisher.task == Task::Classify ? "classify" : "regress";
  h.fisher = fisher.kind == FisherKind::Exact ? "exact" : "sampled";
  return h;
}

}  // namespace

StandardModel::StandardModel(const Network& net, MeasureInputs inputs, FisherOptions fisher)
    : net_(&net), inputs_(checked_inputs(net, std::move(inputs))), fisher_(fisher) {
  check_output_model(net, fisher_);
}

SpectraHeader StandardModel::header() const {
  return standard_header(*net_, inputs_.x.size(0), fisher_);
}

SampleRecord spectrum_record(int64_t j, FisherSpectrum fs) {
  SampleRecord record;
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
  return record;
}

ResultSources StandardModel::sources() const {
  ResultSources s;
  s.data = inputs_.description;
  return s;
}

SampleRecord StandardModel::sample(int64_t j, const torch::Tensor& theta,
                                   const std::function<void(int64_t, int64_t)>& /*after_layer*/) const {
  auto fs = fisher_spectrum(*net_, theta, inputs_.x, fisher_, static_cast<uint64_t>(j));
  return spectrum_record(j, std::move(fs));
}

// ---- the Markov chain model ----

MarkovModel::MarkovModel(const Network& net, MeasureInputs inputs, MarkovOptions options, MarkovNoise noise)
    : net_(&net),
      inputs_(checked_inputs(net, std::move(inputs))),
      chain_(net, std::move(options)),
      noise_(std::move(noise)) {
  check_output_model(net, chain_.options().fisher);
  if (noise_.given.defined()) {
    const int64_t rows = chain_.noise_rows(inputs_.x.size(0)), h = chain_.noise_width();
    auto& g = noise_.given;
    if (g.dim() != 3 || g.size(1) != rows || g.size(2) != h)
      throw DataError(fmt::format("{}: expected noise of shape (M, N*R, H) = (M, {}, {}), got ({})", noise_.description,
                                  rows, h, fmt::join(g.sizes(), ", ")));
    g = g.to(torch::kFloat64).contiguous();
  }
  if (noise_.description.empty())
    noise_.description = fmt::format("drawn: Rng(seed {}, parameters, j) after theta^(j)", noise_.seed);
}

SpectraHeader MarkovModel::header() const {
  SpectraHeader h = standard_header(*net_, inputs_.x.size(0), chain_.options().fisher);
  h.markov = true;
  h.sigma = chain_.options().sigma;
  h.noise_draws = chain_.options().noise_draws;
  h.noise_width = chain_.noise_width();
  for (const auto& ml : chain_.layers()) h.layers.push_back({ml.name, ml.description, ml.params});
  return h;
}

ResultSources MarkovModel::sources() const {
  ResultSources s;
  s.data = inputs_.description;
  s.noise = noise_.description;
  for (const auto& l : chain_.layers()) s.layer_units.push_back(l.units);
  return s;
}

SampleRecord MarkovModel::sample(int64_t j, const torch::Tensor& theta,
                                 const std::function<void(int64_t, int64_t)>& after_layer) const {
  const int64_t rows = chain_.noise_rows(inputs_.x.size(0)), h = chain_.noise_width();
  if (noise_.given.defined() && j >= noise_.given.size(0))
    throw DataError(fmt::format("{}: holds noise for {} samples, sample {} needs more", noise_.description,
                                noise_.given.size(0), j));
  const torch::Tensor noise = noise_.given.defined()
                                  ? noise_.given[j]
                                  : draw_noise(noise_.seed, static_cast<uint64_t>(j), net_->num_params(), rows, h);
  return sample_with_noise(j, theta, noise, after_layer);
}

SampleRecord MarkovModel::sample_with_noise(int64_t j, const torch::Tensor& theta, const torch::Tensor& noise,
                                            const std::function<void(int64_t, int64_t)>& after_layer) const {
  const int64_t layers = static_cast<int64_t>(chain_.layers().size());
  const int64_t rows = chain_.noise_rows(inputs_.x.size(0)), h = chain_.noise_width();
  if (noise.dim() != 2 || noise.size(0) != rows || noise.size(1) != h)
    throw DataError(fmt::format("sample {}: expected noise of shape (N*R, H) = ({}, {}), got ({})", j, rows, h,
                                fmt::join(noise.sizes(), ", ")));
  auto ms = chain_.spectrum(theta, inputs_.x, noise, static_cast<uint64_t>(j), [&](size_t l) {
    if (after_layer) after_layer(static_cast<int64_t>(l) + 1, layers);
  });
  return markov_record(j, std::move(ms));
}

SampleRecord markov_record(int64_t j, MarkovSpectrum ms) {
  SampleRecord record;
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
  return record;
}

// ---- the sample loop ----

std::vector<int64_t> remaining_schedule(int64_t m, const std::vector<SampleRecord>& completed) {
  std::vector<bool> done(static_cast<size_t>(m), false);
  for (const auto& r : completed) {
    if (r.index < 0 || r.index >= m)
      throw DataError(fmt::format("stored sample {} is outside this run's {} parameter samples", r.index, m));
    if (done[static_cast<size_t>(r.index)]) throw DataError(fmt::format("stored sample {} appears twice", r.index));
    done[static_cast<size_t>(r.index)] = true;
  }
  std::vector<int64_t> schedule;
  for (int64_t j = 0; j < m; ++j)
    if (!done[static_cast<size_t>(j)]) schedule.push_back(j);
  return schedule;
}

SampleWorker::SampleWorker(const StatisticalModel& model, const ParameterSource& thetas)
    : model_(model),
      thetas_(thetas),
      theta_(torch::empty({thetas.num_params()}, torch::kFloat64)),
      scratch_(std::make_unique<linalg::ScratchPool>()) {}

SampleWorker::~SampleWorker() = default;

SampleRecord SampleWorker::sample(int64_t j, const std::function<void(int64_t, int64_t)>& after_layer) {
  const int64_t m = thetas_.count();
  if (j < 0 || j >= m) throw UsageError(fmt::format("schedule index {} is outside [0, {})", j, m));
  thetas_.fill(j, theta_.data_ptr<double>());
  linalg::ScratchScope scope(*scratch_);
  return model_.sample(j, theta_, after_layer);
}

namespace {
std::function<void(int64_t, int64_t)> layer_progress_of(const MeasureHooks& hooks, int64_t j, int64_t m) {
  if (!hooks.layer_progress) return {};
  return [&hooks, j, m](int64_t done, int64_t layers) { hooks.layer_progress(j, done, layers, m); };
}
}  // namespace

std::vector<SampleRecord> run_samples(const StatisticalModel& model, const ParameterSource& thetas,
                                      const std::vector<int64_t>& schedule, const MeasureHooks& hooks,
                                      const ExecutionContext& ctx) {
  std::vector<SampleRecord> out;
  out.reserve(schedule.size());
  SequentialExecutor().run(model, thetas, schedule, hooks, ctx, [&](SampleRecord&& r) { out.push_back(std::move(r)); });
  return out;
}

void SequentialExecutor::run(const StatisticalModel& model, const ParameterSource& thetas,
                             const std::vector<int64_t>& schedule, const MeasureHooks& hooks,
                             const ExecutionContext& ctx, const std::function<void(SampleRecord&&)>& done) const {
  ScopedThreads threads(ctx);
  SampleWorker worker(model, thetas);
  // One index at a time, so that `done` sees each record (and the store commits it) at once.
  for (const int64_t j : schedule) {
    auto record = worker.sample(j, layer_progress_of(hooks, j, thetas.count()));
    if (hooks.on_sample) hooks.on_sample(record);
    done(std::move(record));
  }
}

namespace {

// Checks that stored records fit the model's header.
void check_completed(const SpectraHeader& header, const std::vector<SampleRecord>& completed) {
  const size_t blocks = header.markov ? header.layers.size() : 1;
  for (const auto& r : completed)
    if (r.blocks.size() != blocks || (header.markov && r.costs.size() != blocks))
      throw DataError(
          fmt::format("stored sample {} has {} blocks; this model has {}", r.index, r.blocks.size(), blocks));
}

// Collects records as they arrive in any order and emits them in index order: taken ones as
// they are, computed ones as soon as every smaller index is there.
class RecordCollector {
 public:
  RecordCollector(int64_t m, const std::vector<SampleRecord>& completed, const MeasureHooks& hooks)
      : m_(m), hooks_(hooks) {
    for (const auto& r : completed) pending_.emplace(r.index, r);
    records_.reserve(static_cast<size_t>(m));
    flush();
  }
  void add(SampleRecord&& r) {
    if (hooks_.on_sample) hooks_.on_sample(r);
    const int64_t j = r.index;
    if (!pending_.emplace(j, std::move(r)).second) throw UsageError(fmt::format("sample {} computed twice", j));
    flush();
  }
  std::vector<SampleRecord> take() {
    if (static_cast<int64_t>(records_.size()) != m_)
      throw UsageError(fmt::format("the executor finished with {} of {} samples", records_.size(), m_));
    return std::move(records_);
  }

 private:
  void flush() {
    for (auto it = pending_.begin(); it != pending_.end() && it->first == static_cast<int64_t>(records_.size());
         it = pending_.erase(it)) {
      records_.push_back(std::move(it->second));
      if (hooks_.on_record) hooks_.on_record(records_.back());
      if (hooks_.progress) hooks_.progress(static_cast<int64_t>(records_.size()), m_);
    }
  }
  int64_t m_;
  const MeasureHooks& hooks_;
  std::map<int64_t, SampleRecord> pending_;
  std::vector<SampleRecord> records_;
};

}  // namespace

MeasureResult measure(const StatisticalModel& model, const ParameterSource& thetas, EstimatorOptions estimator,
                      uint64_t seed, const MeasureRun& run) {
  const auto t0 = std::chrono::steady_clock::now();
  validate_estimator_options(estimator);
  estimator.seed = seed;
  SpectraHeader header = model.header();
  header.seed = seed;
  if (thetas.num_params() != header.num_params)
    throw DataError(fmt::format("{}: samples of {} parameters, but model '{}' has d = {}", thetas.description(),
                                thetas.num_params(), header.model, header.num_params));
  const int64_t m = thetas.count();
  check_completed(header, run.completed);
  const auto schedule = remaining_schedule(m, run.completed);
  if (run.hooks.on_start) run.hooks.on_start(header);

  RecordCollector collector(m, run.completed, run.hooks);
  const SequentialExecutor sequential;
  const SampleExecutor& executor = run.execution.executor ? *run.execution.executor : sequential;
  // The executor reports layers only: measure() itself reports records, in index order.
  MeasureHooks layers_only;
  layers_only.layer_progress = run.hooks.layer_progress;
  executor.run(model, thetas, schedule, layers_only, run.execution,
               [&](SampleRecord&& r) { collector.add(std::move(r)); });
  const auto records = collector.take();

  if (std::all_of(records.begin(), records.end(),
                  [](const SampleRecord& r) { return merge_spectra(r.blocks).trace == 0.0; }))
    throw DataError(fmt::format(
        header.markov ? "the Markov chain's Fisher information is exactly zero at all {} parameter samples; try a "
                        "smaller parameter space"
                      : "the Fisher information is exactly zero at all {} parameter samples (the network's outputs do "
                        "not move on these inputs: saturated softmax or dead ReLUs?); try a smaller parameter space or "
                        "other inputs",
        m));
  ResultSources sources = model.sources();
  sources.space = thetas.description();
  auto result = assemble_result(header, records, estimator, sources);
  result.fisher = model.fisher();
  result.resumed_samples = static_cast<int64_t>(run.completed.size());
  result.seconds_total = seconds_since(t0);
  return result;
}

}  // namespace twosed
