// A 2sED measurement described by strings and files, as `twosed measure` takes it: model spec,
// data source, parameter space -> Fisher spectra of M parameter samples -> curves. This
// interface is LibTorch-free; run_measure() loads what the strings name and hands it to the
// engine (engine.h), which also takes in-memory networks, tensors and parameter matrices.
// A MeasureResult carries what produced it (header, effective options), so reporters and the
// store need nothing else.
//
// Example:
//   MeasureOptions opts;
//   opts.model = "mlp:784-64-10";
//   opts.data = "idx:/usr/share/datasets/fashion-mnist";
//   opts.estimator.zetas = {0.0, 0.5};
//   MeasureResult r = run_measure(opts);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "twosed/estimate/estimator.h"
#include "twosed/execution.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/model/model_spec.h"
#include "twosed/store/spectra_file.h"

namespace twosed {

/// What one parameter sample's spectrum looked like (for reports; curves use the spectra).
struct SampleSummary {
  int64_t matrix_size = 0;  ///< size of the matrix diagonalised
  int64_t kept = 0;         ///< eigenvalues kept
  int64_t cut = 0;          ///< eigenvalues removed by the zero cutoff
  double trace = 0, largest = 0, most_negative = 0;
  double seconds_forward_backward = 0, seconds_gram = 0, seconds_eigen = 0;
};

/// What one Markov layer cost at one parameter sample.
struct MarkovLayerCost {
  int64_t blocks_samples_side = 0, blocks_parameter_side = 0, largest_block = 0;
  double seconds = 0.0, cpu_seconds_products = 0.0, cpu_seconds_eigen = 0.0;
};

/// Everything one parameter sample contributes to a measurement: what the results store
/// commits per sample, and what a resumed run takes back instead of recomputing it.
struct SampleRecord {
  int64_t index = 0;  ///< j
  SampleSummary summary;
  GramSide side = GramSide::Samples;   ///< standard model: the side solved
  std::vector<SampleSpectrum> blocks;  ///< standard model: the Fisher's; Markov: one per layer, in order
  std::vector<MarkovLayerCost> costs;  ///< Markov: one per layer
};

struct MeasureOptions {
  std::string model;                ///< model spec (model_spec.h) or a TorchScript file (torchscript.h); required
  std::string input_shape;          ///< TorchScript model: one example's shape, "CxHxW" or "F" (empty: the data's)
  std::string jacobian = "auto";    ///< TorchScript model: auto | autograd | structured
  ModelOptions model_options;       ///< --act, --no-bias
  std::string data;                 ///< data source (data.h); ignored when inputs_file is set
  std::string inputs_file;          ///< .npy of inputs (N x features or N x C x H x W): all rows, in order
  bool standardize = false;         ///< z-score the features over the whole data set first
  int64_t num_inputs = 100;         ///< N: size of the seeded input subset
  std::string space = "init";       ///< init | box:A | local:CKPT:R
  std::string thetas_file;          ///< .npy of parameter samples (M x d): evaluate at these
  int64_t num_param_samples = 100;  ///< M (ignored with thetas_file)
  FisherOptions fisher;             ///< task, output noise, exact/sampled, side
  EstimatorOptions estimator;       ///< eps grid, zetas, cover, ED n values, bootstrap
  uint64_t seed = 0;                ///< seeds theta draws, the input subset, bootstrap, labels
  std::string spectra_out;          ///< write each sample's spectrum here as soon as it is done (spectra_file.h)
  std::string spectra_in;           ///< skip the network: curves from the spectra in this file
  // The Markov chain model M_sigma (markov.h): lower 2sED, chain 2sED and the layer breakdown.
  bool markov = false;      ///< measure M_sigma instead of the standard model
  double sigma = 0.0;       ///< noise standard deviation (required with markov; > 0)
  int64_t noise_draws = 1;  ///< R noise draws per input
  std::string noise_file;   ///< .npy of standard-normal noise (M x N*R x H or M x N x R x H), else drawn
  /// Called after each parameter sample: (done, total). May be empty.
  std::function<void(int64_t, int64_t)> progress;
  /// Markov runs: called after each layer of each sample, (sample j, layers done, layers, samples M).
  /// May be empty.
  std::function<void(int64_t, int64_t, int64_t, int64_t)> layer_progress;
  /// Called with each sample computed by this run, as soon as it is done (the results store
  /// commits it). May be empty.
  std::function<void(const SampleRecord&)> on_sample;
  /// Called once the run's header (model, d, N, k, Fisher, Markov layers) is known, before the
  /// first sample (the results store keeps it beside the samples). May be empty.
  std::function<void(const SpectraHeader&)> on_start;
  /// Samples finished by an earlier run of the same configuration (a resumed run): these
  /// indices are taken as they are, not recomputed. Each index must be < M.
  std::vector<SampleRecord> completed;
  /// Parameter samples computed at once in this process, each on one BLAS thread (engine.h,
  /// ParallelExecutor); 0: chosen from a cost model (measure/memory_plan.cpp), 1: one after the
  /// other on all threads. Records equal a sequential run on one thread, bit for bit.
  int parallel_samples = 0;
};

/// One Markov layer over all parameter samples (markov.h).
struct MarkovLayerReport {
  std::string name;         ///< module index of the parametric layer, e.g. "0"
  std::string description;  ///< tokens and shapes
  int64_t params = 0;
  int64_t units = 0;  ///< per-unit blocks (hidden) or 1 (output)
  bool hidden = true;
  int64_t blocks_samples_side = 0;    ///< blocks solved on the sample side, summed over samples
  int64_t blocks_parameter_side = 0;  ///< ... on the parameter side
  int64_t largest_block = 0;          ///< largest matrix diagonalised
  int64_t num_cut = 0;                ///< eigenvalues cut, summed over samples
  double mean_trace = 0.0;            ///< (1/M) sum_j tr F_l(theta^(j))
  double seconds = 0.0;               ///< wall time, summed over samples
  double cpu_seconds_products = 0.0;  ///< thread time forming unit blocks, summed over samples (hidden)
  double cpu_seconds_eigen = 0.0;     ///< thread time in unit blocks' eigen-solves, summed over samples (hidden)
  TwoScaleResult share;               ///< the layer's contribution to the lower 2sED (no zeta*d)
};

struct MarkovReport {
  bool enabled = false;
  double sigma = 0.0;
  int64_t noise_draws = 1;
  int64_t noise_width = 0;                         ///< H
  std::string noise_description;                   ///< drawn (seed) or the file
  bool from_spectra_file = false;                  ///< recomputed from --spectra-in: no block sizes or timings
  TwoScaleResult lower;                            ///< lower 2sED (MeasureResult::estimate holds the chain 2sED)
  std::vector<std::vector<double>> sample_traces;  ///< [j][l]: tr F_l(theta^(j))
  std::vector<MarkovLayerReport> layers;
};

struct MeasureResult {
  SpectraHeader header;        ///< what produced the spectra: model, d, N, k, task, Fisher, seed, Markov layers
  EstimatorOptions estimator;  ///< the effective estimator options (eps grid filled in; seed = the bootstrap's)
  std::string activation;      ///< a spec string's activation, for reports ("" when not known)
  bool recomputed = false;     ///< curves recomputed from stored spectra (a spectra file or the results store)
  ModelSpec spec;
  int64_t num_inputs = 0;             ///< N
  int64_t num_outputs = 0;            ///< k
  int64_t rows_per_example = 0;       ///< R: k (exact) or 1 (sampled)
  GramSide side = GramSide::Samples;  ///< side used (of the first sample)
  FisherOptions fisher;               ///< effective Fisher options (from the spectra file with spectra_in)
  std::string data_description;       ///< what the inputs are
  std::string space_description;      ///< what Theta is
  std::string jacobian_description;   ///< TorchScript model: how its Jacobians were computed (empty otherwise)
  std::vector<SampleSummary> samples;
  TwoScaleResult estimate;  ///< the 2sED (standard model) or the chain 2sED (markov)
  MarkovReport markov;      ///< markov only
  double seconds_total = 0;
  int64_t resumed_samples = 0;  ///< samples taken from MeasureOptions::completed, not computed
  int parallel_samples = 1;     ///< samples computed at once (1: in sequence on all threads)
  std::string parallel_reason;  ///< why that many (the cost model's figures, or "requested")
};

/// Runs the measurement: loads what the options name, then the engine (engine.h). Throws
/// UsageError (bad options/spec) or DataError (files, data that do not fit the model).
MeasureResult run_measure(const MeasureOptions& opts, const ExecutionContext& ctx = {});

/// Where a result's records came from: the report's data, Theta and noise lines.
struct ResultSources {
  std::string data, space, noise;
  std::vector<int64_t> layer_units;  ///< Markov: blocks per layer (output units or channels), when known
  std::string activation;            ///< for reports
  std::string jacobian;              ///< TorchScript model: how its Jacobians were computed, and why
};

/// The one place where a result is assembled from records, for a fresh run, a resumed run, the
/// results store and spectra files alike: `header` describes the run, records (ascending index)
/// hold each sample's spectra (Markov: one per layer, costs if known). Estimates use `eopts`
/// as given (its seed seeds the bootstrap). Throws DataError if there are no records or their
/// blocks do not fit the header.
MeasureResult assemble_result(const SpectraHeader& header, const std::vector<SampleRecord>& records,
                              const EstimatorOptions& eopts, const ResultSources& sources);

/// What run_measure would do, without doing it: the layers and parameter counts, the side and
/// size of the matrix diagonalised per sample, and the estimated peak memory per sample against
/// this machine's (N taken from opts.num_inputs). Throws UsageError for a bad spec.
std::string plan_measure(const MeasureOptions& opts, const ExecutionContext& ctx = {});

/// The data source used when none is given: Fashion-MNIST (Debian's dataset-fashion-mnist)
/// when installed and the model takes 784 inputs, else synthetic blobs shaped for the model.
std::string default_data_source(const ModelSpec& spec);

/// Where Debian's dataset-fashion-mnist package installs the data.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

}  // namespace twosed
