// The measurement engine: every front end (the CLI, the results store's resume, the Python
// module, MPI ranks) measures through these types, so that there is one sample loop and one
// place where results are assembled.
//
//   Network + inputs (a tensor) ---> StatisticalModel (standard or Markov chain)
//   ParameterSource (theta^(j)) --/         |  sample(j, theta^(j))
//                                           v
//                       SampleRecord per index of a schedule (all, the rest of a resumed
//                       run, later one rank's share) ---> assemble_result() ---> MeasureResult
//
// Records carry everything a result needs (spectra, per-sample statistics and costs), so a
// result is assembled the same way from a fresh run, a resumed one, the store or a spectra file.
//
// Example (no file touched):
//   Network net(parse_model_spec("mlp:8-16-3"));
//   MeasureInputs inputs{torch::randn({50, 8}, torch::kFloat64), "50 Gaussian inputs"};
//   DrawnParameters thetas(ParameterSpace::parse("init", net), /*seed=*/0, /*samples=*/20);
//   StandardModel model(net, inputs, FisherOptions{});
//   MeasureResult r = measure(model, thetas, EstimatorOptions{}, /*seed=*/0);
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "twosed/execution.h"
#include "twosed/fisher/fisher.h"
#include "twosed/fisher/markov.h"
#include "twosed/measure/measure.h"
#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"

namespace twosed {

namespace linalg {
class ScratchPool;
}

/// The inputs x_1..x_N as one float64 tensor (N, input_shape...), and what they are.
struct MeasureInputs {
  torch::Tensor x;
  std::string description;
};

/// Checks inputs against a network: float64 (converted otherwise, once), N >= 1, the network's
/// input shape (a flat (N, features) tensor is reshaped), finite values. Throws DataError
/// naming the first offending value.
MeasureInputs checked_inputs(const Network& net, MeasureInputs inputs);

/// Where the parameter samples theta^(0..M-1) come from.
class ParameterSource {
 public:
  virtual ~ParameterSource() = default;
  virtual int64_t count() const = 0;       ///< M
  virtual int64_t num_params() const = 0;  ///< d
  /// theta^(j) into out[0..d). Safe to call from several threads for different j.
  virtual void fill(int64_t j, double* out) const = 0;
  virtual std::string description() const = 0;
};

/// Samples drawn from a parameter space: theta^(j) from Rng(seed, Parameters, j).
class DrawnParameters : public ParameterSource {
 public:
  /// Throws OptionError for samples outside [1, kMaxParamSamples].
  DrawnParameters(ParameterSpace space, uint64_t seed, int64_t samples);
  int64_t count() const override { return samples_; }
  int64_t num_params() const override { return space_.num_params(); }
  void fill(int64_t j, double* out) const override { space_.sample(seed_, j, out); }
  std::string description() const override { return space_.description(); }
  const ParameterSpace& space() const { return space_; }
  uint64_t seed() const { return seed_; }

 private:
  ParameterSpace space_;
  uint64_t seed_;
  int64_t samples_;
};

/// Given samples: the rows of an (M, d) float64 tensor (a d-vector is one sample).
class GivenParameters : public ParameterSource {
 public:
  /// Throws DataError (naming `where`, by default the description) for a wrong shape or a
  /// non-finite value.
  GivenParameters(torch::Tensor thetas, int64_t num_params, std::string description, std::string where = "");
  int64_t count() const override { return thetas_.size(0); }
  int64_t num_params() const override { return thetas_.size(1); }
  void fill(int64_t j, double* out) const override;
  std::string description() const override { return description_; }

 private:
  torch::Tensor thetas_;
  std::string description_;
};

/// Most parameter samples one measurement takes: beyond this the bootstrap's index tables alone
/// need gigabytes.
constexpr int64_t kMaxParamSamples = 10'000'000;

/// A statistical model on a network and its inputs: what the engine asks to turn parameter
/// sample j into a record (its Fisher spectra, statistics and costs).
class StatisticalModel {
 public:
  virtual ~StatisticalModel() = default;
  /// What every record of this model fits: model, d, N, k, Fisher, Markov layers. The seed is
  /// filled in by measure().
  virtual SpectraHeader header() const = 0;
  /// What the result says about the model beyond the header: the data, the noise, the units
  /// per layer (Theta is the ParameterSource's).
  virtual ResultSources sources() const = 0;
  /// The record of sample j at theta (a float64 d-vector). `after_layer(l, layers)`, if given,
  /// is called as each layer of a layered model is done (progress).
  virtual SampleRecord sample(int64_t j, const torch::Tensor& theta,
                              const std::function<void(int64_t, int64_t)>& after_layer) const = 0;
  /// The Fisher options its spectra were computed with (effective: label seed set).
  virtual const FisherOptions& fisher() const = 0;
};

/// The standard model S (docs/math.md section 1): softmax or Gaussian output.
/// Sample j's record from one Fisher spectrum (side, statistics, timings, one block): what
/// every model with a single Fisher matrix per sample records.
SampleRecord spectrum_record(int64_t j, FisherSpectrum fs);

class StandardModel : public StatisticalModel {
 public:
  /// `net` must outlive the model. Throws OptionError for options that do not fit (regression
  /// output noise, classification with one output).
  StandardModel(const Network& net, MeasureInputs inputs, FisherOptions fisher);
  SpectraHeader header() const override;
  ResultSources sources() const override;
  SampleRecord sample(int64_t j, const torch::Tensor& theta,
                      const std::function<void(int64_t, int64_t)>& after_layer) const override;
  const FisherOptions& fisher() const override { return fisher_; }
  const Network& network() const { return *net_; }
  const MeasureInputs& inputs() const { return inputs_; }  ///< checked: float64, the network's input shape

 private:
  const Network* net_;
  MeasureInputs inputs_;
  FisherOptions fisher_;
};

/// Noise of the Markov chain model: drawn per sample (Rng(seed, Parameters, j) after theta^(j)),
/// or given as an (M, N*R, H) float64 tensor of standard normals.
struct MarkovNoise {
  uint64_t seed = 0;    ///< drawn noise: the measurement's seed
  torch::Tensor given;  ///< defined: injected noise, (M, N*R, H)
  std::string description;
};

/// Sample j's record from its Markov block spectra (one block and one cost per layer).
SampleRecord markov_record(int64_t j, MarkovSpectrum ms);

/// The Markov chain model M_sigma (docs/math.md sections 1, 2, 4): one block spectrum per layer.
class MarkovModel : public StatisticalModel {
 public:
  /// `net` must outlive the model. Throws OptionError for a bad sigma or R, DataError for given
  /// noise of the wrong shape or with non-finite values.
  MarkovModel(const Network& net, MeasureInputs inputs, MarkovOptions options, MarkovNoise noise);
  SpectraHeader header() const override;
  ResultSources sources() const override;
  SampleRecord sample(int64_t j, const torch::Tensor& theta,
                      const std::function<void(int64_t, int64_t)>& after_layer) const override;
  const FisherOptions& fisher() const override { return chain_.options().fisher; }
  const MarkovChainModel& chain() const { return chain_; }
  const MarkovNoise& noise() const { return noise_; }
  const Network& network() const { return *net_; }
  const MeasureInputs& inputs() const { return inputs_; }  ///< checked: float64, the network's input shape
  /// The record of sample j with the noise given here, (N*R, H) float64, instead of the model's
  /// own (an MPI worker gets given noise from rank 0 with each sample, without the file).
  SampleRecord sample_with_noise(int64_t j, const torch::Tensor& theta, const torch::Tensor& noise,
                                 const std::function<void(int64_t, int64_t)>& after_layer) const;

 private:
  const Network* net_;
  MeasureInputs inputs_;
  MarkovChainModel chain_;
  MarkovNoise noise_;
};

/// What a measurement reports as it goes; every hook may be empty.
struct MeasureHooks {
  /// Once the header is known, before the first sample (the store keeps it).
  std::function<void(const SpectraHeader&)> on_start;
  /// Each sample computed by this run, as soon as it is done (the store commits it).
  std::function<void(const SampleRecord&)> on_sample;
  /// Every record in index order, taken or computed (spectra files).
  std::function<void(const SampleRecord&)> on_record;
  /// (records done, M) after each sample.
  std::function<void(int64_t, int64_t)> progress;
  /// Layered models: (sample j, layers done, layers, M) after each layer.
  std::function<void(int64_t, int64_t, int64_t, int64_t)> layer_progress;
};

/// The indices of 0..M-1 that are not among `completed` (a resumed run's schedule), ascending.
/// Throws DataError for a completed index outside [0, M) or given twice.
std::vector<int64_t> remaining_schedule(int64_t m, const std::vector<SampleRecord>& completed);

/// One thread's samples, one after another: theta^(j) is filled into one buffer, and a sample's
/// large temporaries (a wide layer's backprop rows) come from one scratch pool, for as long as
/// the worker lives. Fresh ones per sample would cost their page faults each time (at d = 13M,
/// about 50 ms of a 300 ms sample). Not thread-safe: one worker per thread.
class SampleWorker {
 public:
  SampleWorker(const StatisticalModel& model, const ParameterSource& thetas);
  ~SampleWorker();
  SampleWorker(const SampleWorker&) = delete;
  SampleWorker& operator=(const SampleWorker&) = delete;
  /// The record of index j (UsageError outside [0, M)); `after_layer` as in StatisticalModel.
  SampleRecord sample(int64_t j, const std::function<void(int64_t, int64_t)>& after_layer = {});

 private:
  const StatisticalModel& model_;
  const ParameterSource& thetas_;
  torch::Tensor theta_;
  std::unique_ptr<linalg::ScratchPool> scratch_;
};

/// The engine's sample loop: the records of `schedule`'s indices, in schedule order, each
/// from its own theta^(j) (so a record does not depend on which others are computed, or where).
std::vector<SampleRecord> run_samples(const StatisticalModel& model, const ParameterSource& thetas,
                                      const std::vector<int64_t>& schedule, const MeasureHooks& hooks = {},
                                      const ExecutionContext& ctx = {});

/// Where the samples of a schedule are computed: this thread in order (SequentialExecutor), or
/// elsewhere (several threads, MPI ranks). Whatever the executor, a record depends only on its
/// index, so results are the same.
class SampleExecutor {
 public:
  virtual ~SampleExecutor() = default;
  /// Computes the records of `schedule` and hands each to `done` on the calling thread as it is
  /// finished, in any order. measure() passes hooks with layer_progress only: it reports the
  /// records itself, from `done`.
  virtual void run(const StatisticalModel& model, const ParameterSource& thetas, const std::vector<int64_t>& schedule,
                   const MeasureHooks& hooks, const ExecutionContext& ctx,
                   const std::function<void(SampleRecord&&)>& done) const = 0;
};

/// One SampleWorker on this thread, handing on each record as it is done.
class SequentialExecutor : public SampleExecutor {
 public:
  void run(const StatisticalModel& model, const ParameterSource& thetas, const std::vector<int64_t>& schedule,
           const MeasureHooks& hooks, const ExecutionContext& ctx,
           const std::function<void(SampleRecord&&)>& done) const override;
};

/// Several samples at once in this process, each on one BLAS thread: faster than one sample on
/// all threads when a sample's work parallelises poorly (the eigen-solve of a ~1000 x 1000
/// matrix leaves the second core half idle). Records equal those of a sequential run with
/// ExecutionContext::threads = 1, bit for bit. Peak memory is `workers` samples' worth.
class ParallelExecutor : public SampleExecutor {
 public:
  /// Throws OptionError for workers < 1.
  explicit ParallelExecutor(int workers);
  int workers() const { return workers_; }
  void run(const StatisticalModel& model, const ParameterSource& thetas, const std::vector<int64_t>& schedule,
           const MeasureHooks& hooks, const ExecutionContext& ctx,
           const std::function<void(SampleRecord&&)>& done) const override;

 private:
  int workers_;
};

/// How one measurement runs, beyond what it measures.
struct MeasureRun {
  MeasureHooks hooks;
  ExecutionContext execution;
  std::vector<SampleRecord> completed;  ///< a resumed run's records: taken as they are, not recomputed
};

/// One measurement: the samples not in run.completed, then the result assembled from all
/// records (assemble_result). `seed` seeds the bootstrap and is recorded in the header. Throws
/// UsageError for bad options, DataError for data that do not fit or a Fisher that is zero at
/// every sample.
MeasureResult measure(const StatisticalModel& model, const ParameterSource& thetas, EstimatorOptions estimator,
                      uint64_t seed = 0, const MeasureRun& run = {});

/// What run_measure() measures, loaded and built: the network from the spec, the statistical
/// model on the inputs (loaded from the options' data source, or `inputs` when given: an MPI
/// worker gets them from rank 0), the parameter source.
struct PreparedMeasurement {
  std::unique_ptr<Network> network;  ///< null for a TorchScript model (its model owns the network)
  std::unique_ptr<StatisticalModel> model;
  std::unique_ptr<ParameterSource> thetas;
};

/// Loads and checks everything run_measure() needs, in the order run_measure checks it. Throws
/// as run_measure does.
PreparedMeasurement prepare_measurement(const MeasureOptions& opts, const MeasureInputs* inputs = nullptr);

/// Measures a prepared measurement as run_measure() does (every front end goes through here, so
/// that the same options give the same numbers): samples in parallel in this process when
/// opts.parallel_samples or the cost model says so, unless run.execution.executor already spreads
/// them (MPI ranks); the result carries that choice, the spec and the activation. Call it inside
/// the ScopedThreads of the run's ExecutionContext; seconds_total is left to the caller.
MeasureResult measure_prepared(const PreparedMeasurement& prepared, const MeasureOptions& opts, MeasureRun run);

}  // namespace twosed
