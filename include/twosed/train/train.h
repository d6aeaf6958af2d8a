// Training a network on a data set (what `twosed train` and `twosed study` run): Adam or SGD
// on the cross-entropy (classify) or squared error (regress), in float64, deterministic for a
// given seed and thread count. The initial parameters are the init-box sample j = 0 of the
// seed (ParameterSpace "init"), i.e. the first parameter sample a `twosed measure` with the
// same seed evaluates; a checkpoint is the flat theta in named_parameters() order.
//
// Losses, both means over examples:
//   classify  softmax cross-entropy of f(x) against the label
//   regress   sum over the k outputs of (f_i(x) - y_i)^2 / 2 (the Gaussian negative
//             log-likelihood of the regression model with s_out = 1, up to a constant)
// Weight decay adds weight_decay * theta to the gradient (L2, as torch.optim.Adam/SGD; not AdamW).
// Epoch e (1-based) visits the training set in the order of a Fisher-Yates shuffle of 0..n-1
// drawn from Rng(seed, Stream::Training, e), in minibatches of `batch` (the last one smaller);
// LibTorch's global generator is neither used nor disturbed.
//
// Example:
//   TrainOptions opts;
//   opts.epochs = 5;
//   TrainResult r = train_network(net, train_set, &test_set, opts);
//   write_checkpoint("model.npy", {net.spec().text, ModelOptions{}, Task::Classify}, r.theta);
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "twosed/data/data.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/model/model_spec.h"

namespace twosed {

class Network;

/// One line of a training curve: an epoch (step < 0) or, with TrainOptions::log_steps, one
/// optimiser step. Losses are means over examples; NaN where not measured.
struct TrainingRecord {
  int64_t epoch = 0;  ///< 1-based epoch the record belongs to; 0: evaluation of the initial parameters
  int64_t step = -1;  ///< -1: epoch record; else the 1-based global step
  double train_loss = std::numeric_limits<double>::quiet_NaN();  ///< epoch: full pass over the training set after the
                                                                 ///< epoch; step: the minibatch loss before the update
  double train_accuracy = std::numeric_limits<double>::quiet_NaN();  ///< classify, epoch records
  double test_loss = std::numeric_limits<double>::quiet_NaN();       ///< epoch records with a test set
  double test_accuracy = std::numeric_limits<double>::quiet_NaN();   ///< classify, epoch records with a test set
  double seconds = 0.0;                                              ///< wall time since training started
};

struct TrainOptions {
  std::string optimizer = "adam";     ///< adam | sgd
  double lr = 1e-3;                   ///< learning rate (> 0)
  double momentum = 0.0;              ///< sgd only, in [0, 1)
  double weight_decay = 0.0;          ///< L2 coefficient (>= 0)
  int64_t batch = 64;                 ///< minibatch size (>= 1; the last batch of an epoch may be smaller)
  int64_t epochs = 10;                ///< >= 0 (0: only evaluate the initial parameters)
  uint64_t seed = 0;                  ///< initial theta (init box, sample 0) and the batch order
  Task task = Task::Classify;         ///< classify: softmax cross-entropy; regress: squared error
  bool log_steps = false;             ///< also report one record per optimiser step
  std::vector<double> initial_theta;  ///< empty: the init-box sample 0 of `seed`; else d values
  /// Called for every record as soon as it is made (epoch records after evaluation). May be empty.
  std::function<void(const TrainingRecord&)> on_record;
};

struct TrainResult {
  std::vector<double> theta;            ///< final parameters, named_parameters() order (d values)
  std::vector<TrainingRecord> records;  ///< epoch 0 (initial evaluation), then epochs (and steps) in order
  TrainingRecord final_record;          ///< the last epoch record
  int64_t steps = 0;                    ///< optimiser steps taken
  double seconds = 0.0;
  /// Non-empty: the training diverged (a non-finite training loss) and stopped after that
  /// epoch; says where and with which learning rate. theta is then the diverged state.
  std::string diverged;
};

/// Checks the options that do not depend on a network (all but the length of initial_theta).
/// Throws OptionError naming the field ("TrainOptions.momentum") and the rule with the value
/// ("must be in [0, 1), got 1.5"). train_network calls it; a study file calls it before any work.
void validate(const TrainOptions& opts);

/// Trains `net` on `train` (labels for classify; for regress, `targets` with n * k values, or
/// with k = 1 the labels taken as numbers). `test` may be null or empty. Throws OptionError for
/// bad options (see validate; also an initial_theta that is not d values), DataError for data
/// that do not fit the network (feature count, classes > outputs, missing labels or targets,
/// NaN/Inf).
TrainResult train_network(const Network& net, const Dataset& train, const Dataset* test, const TrainOptions& opts);

/// The model a checkpoint belongs to (its .json sidecar).
struct CheckpointInfo {
  std::string model;  ///< model spec text
  ModelOptions model_options;
  Task task = Task::Classify;
  int64_t num_params = 0;  ///< d (filled by read_checkpoint_info)
};

/// The sidecar path of a checkpoint: "x.npy" -> "x.json" (other names: name + ".json").
std::string checkpoint_sidecar(const std::string& npy_path);

/// Writes theta as a 1-D float64 .npy at `path` and its sidecar JSON (model, activation, bias,
/// task, d, twosed version); each written to a temporary file and renamed, so a reader never
/// sees half a checkpoint. Throws DataError if it cannot write or if theta does not hold the
/// d values of info.model (UsageError if that spec does not parse); info.num_params is ignored.
void write_checkpoint(const std::string& path, const CheckpointInfo& info, const std::vector<double>& theta);

/// Reads a checkpoint's sidecar. Returns false if there is none; throws DataError naming the
/// file (and the key, with the expected type) if it is malformed, if "d" differs from the
/// model's parameter count, or if the .npy exists and does not hold d values. "twosed_version"
/// is optional on reading.
bool read_checkpoint_info(const std::string& npy_path, CheckpointInfo& info);

/// Throws DataError naming `path` and what differs when a checkpoint's sidecar does not
/// describe this model: the spec or d, the activation (mlp specs), the biases, or the task
/// ("ck.npy: a checkpoint of 'mlp:4-8-3' with activation tanh, but the model's activation is relu").
void check_checkpoint_matches(const std::string& path, const CheckpointInfo& info, const ModelSpec& spec,
                              const ModelOptions& options, Task task);

/// The largest |theta_i| accepted from a checkpoint or --space box/local: beyond it the network's
/// products and the Fisher's squares overflow float64.
constexpr double kMaxParameterMagnitude = 1e150;

/// Throws DataError "PATH: value V at index I is out of range: ..." for a NaN, Inf or
/// |theta_i| > kMaxParameterMagnitude.
void check_checkpoint_values(const std::string& path, const std::vector<double>& theta);

}  // namespace twosed
