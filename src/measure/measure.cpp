// run_measure(): MeasureOptions' strings and files through the loaders into the engine.
#include "twosed/measure/measure.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "measure/loaders.h"
#include "measure/memory_plan.h"
#include "twosed/error.h"
#include "twosed/measure/engine.h"
#include "twosed/model/torchscript.h"
#include "twosed/store/spectra_file.h"

namespace twosed {
namespace {

// What can be checked before anything is loaded.
void validate(const MeasureOptions& opts) {
  if (opts.num_inputs < 1)
    throw OptionError("MeasureOptions.num_inputs", fmt::format("must be >= 1, got {}", opts.num_inputs));
  if (opts.thetas_file.empty() && (opts.num_param_samples < 1 || opts.num_param_samples > kMaxParamSamples))
    throw OptionError("MeasureOptions.num_param_samples",
                      fmt::format("must be in [1, {}], got {}", kMaxParamSamples, opts.num_param_samples));
  if (opts.fisher.task == Task::Regress && !(opts.fisher.out_noise > 0 && std::isfinite(opts.fisher.out_noise)))
    throw OptionError("FisherOptions.out_noise",
                      fmt::format("must be a finite number > 0, got {}", opts.fisher.out_noise));
  validate_estimator_options(opts.estimator);
  if (opts.parallel_samples < 0)
    throw OptionError("MeasureOptions.parallel_samples",
                      fmt::format("must be >= 0 (0: automatic), got {}", opts.parallel_samples));
}

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
  ResultSources sources;
  sources.data = fmt::format("spectra of {} finished samples from {}{}", records.size(), opts.spectra_in,
                             file.truncated_last_line ? " (an unfinished last line was ignored)" : "");
  sources.space = fmt::format("as in the run that wrote {} (seed {})", opts.spectra_in, file.header.seed);
  auto result = assemble_result(file.header, records, eopts, sources);
  result.fisher.cutoff = opts.fisher.cutoff;
  result.recomputed = true;
  return result;
}

// The engine's hooks from the options', plus the spectra file.
MeasureHooks hooks_of(const MeasureOptions& opts, std::unique_ptr<SpectraWriter>& writer) {
  MeasureHooks hooks;
  hooks.on_start = [&opts, &writer](const SpectraHeader& h) {
    if (!opts.spectra_out.empty()) writer = std::make_unique<SpectraWriter>(opts.spectra_out, h);
    if (opts.on_start) opts.on_start(h);
  };
  hooks.on_sample = opts.on_sample;
  hooks.on_record = [&writer](const SampleRecord& r) {
    if (!writer) return;
    if (r.costs.empty())
      writer->append(r.index, r.blocks.front());
    else
      writer->append_layers(r.index, r.blocks);
  };
  hooks.progress = opts.progress;
  hooks.layer_progress = opts.layer_progress;
  return hooks;
}

}  // namespace

PreparedMeasurement prepare_measurement(const MeasureOptions& opts, const MeasureInputs* given_inputs) {
  validate(opts);
  if (is_torchscript_path(opts.model)) return prepare_torchscript_measurement(opts, given_inputs);
  PreparedMeasurement out;
  out.network = std::make_unique<Network>(parse_model_spec(opts.model, opts.model_options));
  const Network& net = *out.network;
  FisherOptions fisher = opts.fisher;
  fisher.label_seed = opts.seed;  // sampled labels: Rng(seed, Labels, j)
  const MarkovOptions markov{opts.sigma, opts.noise_draws, fisher};
  if (opts.markov)
    MarkovChainModel(net, markov);  // checks sigma and R before the data are loaded
  else if (!opts.noise_file.empty())
    throw UsageError("noise_file needs the Markov chain model (noise is only added there)");
  auto inputs = given_inputs ? *given_inputs : loaders::load_inputs(opts, net.spec());
  check_memory(net.spec(), inputs.x.size(0), opts, current_threads());
  if (!opts.markov) out.model = std::make_unique<StandardModel>(net, std::move(inputs), fisher);
  out.thetas = loaders::load_parameters(opts, net);
  if (opts.markov) {
    const int64_t n = inputs.x.size(0), h = MarkovChainModel(net, markov).noise_width();
    auto noise = loaders::load_noise(opts, out.thetas->count(), n, opts.noise_draws, h);
    out.model = std::make_unique<MarkovModel>(net, std::move(inputs), markov, std::move(noise));
  }
  return out;
}

MeasureResult measure_prepared(const PreparedMeasurement& prepared, const MeasureOptions& opts, MeasureRun run) {
  // Samples at once in this process, unless another executor (MPI ranks) already spreads them.
  SampleParallelism parallel{1, "the samples are spread by the given executor (MPI ranks)"};
  if (!run.execution.executor)
    parallel =
        choose_parallel_samples(prepared.network ? &prepared.network->spec() : nullptr,
                                prepared.model->header().num_inputs, prepared.thetas->count(), opts, current_threads());
  std::unique_ptr<ParallelExecutor> executor;
  if (!run.execution.executor && parallel.workers > 1) {
    executor = std::make_unique<ParallelExecutor>(parallel.workers);
    run.execution.executor = executor.get();
  }
  auto result = measure(*prepared.model, *prepared.thetas, opts.estimator, opts.seed, run);
  result.parallel_samples = executor ? parallel.workers : 1;
  result.parallel_reason = parallel.reason;
  if (prepared.network) result.spec = prepared.network->spec();  // a TorchScript model has none
  result.activation = activation_name(opts.model_options.activation);
  return result;
}

MeasureResult run_measure(const MeasureOptions& opts, const ExecutionContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!opts.spectra_in.empty()) {
    validate_estimator_options(opts.estimator);
    auto result = measure_from_spectra(opts);
    result.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
  }
  ScopedThreads threads(ctx);
  const auto prepared = prepare_measurement(opts);
  std::unique_ptr<SpectraWriter> writer;
  MeasureRun run;
  run.hooks = hooks_of(opts, writer);
  run.completed = opts.completed;
  run.execution.executor = ctx.executor;
  auto result = measure_prepared(prepared, opts, std::move(run));
  result.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace twosed
