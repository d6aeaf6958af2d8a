// The one table from library option names to CLI flags (see option_names.h).
#include "option_names.h"

#include <utility>
#include <vector>

namespace twosed::cli {
namespace {

// Option "Struct.field" -> flag. Several fields may share a flag (--task sets the task of the
// data, the training and the Fisher). Add a row when a flag sets a new field.
const std::vector<std::pair<std::string, std::string>>& table() {
  static const std::vector<std::pair<std::string, std::string>> rows = {
      // Models (measure, train).
      {"ModelOptions.activation", "--act"},
      {"ModelOptions.bias", "--no-bias"},
      // Training data (train).
      {"TrainingDataOptions.data", "--data"},
      {"TrainingDataOptions.test_data", "--test-data"},
      {"TrainingDataOptions.test_fraction", "--test-fraction"},
      {"TrainingDataOptions.train_size", "--train-size"},
      {"TrainingDataOptions.test_size", "--test-size"},
      {"TrainingDataOptions.standardize", "--standardize"},
      {"TrainingDataOptions.task", "--task"},
      {"TrainingDataOptions.seed", "--seed"},
      // Training (train).
      {"TrainOptions.optimizer", "--optimizer"},
      {"TrainOptions.lr", "--lr"},
      {"TrainOptions.momentum", "--momentum"},
      {"TrainOptions.weight_decay", "--weight-decay"},
      {"TrainOptions.batch", "--batch"},
      {"TrainOptions.epochs", "--epochs"},
      {"TrainOptions.seed", "--seed"},
      {"TrainOptions.task", "--task"},
      {"TrainOptions.log_steps", "--log-steps"},
      {"TrainOptions.initial_theta", "--init"},
      // Generalisation estimate (bound).
      {"BoundOptions.loss_bound", "--loss-bound"},
      {"BoundOptions.lipschitz", "--lipschitz"},
      {"BoundOptions.delta", "--delta"},
      // Measurements (measure; flags in measure_command.cpp).
      {"MeasureOptions.model", "--model"},
      {"MeasureOptions.input_shape", "--input-shape"},
      {"MeasureOptions.jacobian", "--jacobian"},
      {"MeasureOptions.data", "--data"},
      {"MeasureOptions.inputs_file", "--inputs-file"},
      {"MeasureOptions.standardize", "--standardize"},
      {"MeasureOptions.num_inputs", "--inputs"},
      {"MeasureOptions.space", "--space"},
      {"MeasureOptions.thetas_file", "--thetas"},
      {"MeasureOptions.num_param_samples", "--samples"},
      {"MeasureOptions.seed", "--seed"},
      {"MeasureOptions.spectra_out", "--spectra-out"},
      {"MeasureOptions.spectra_in", "--spectra-in"},
      {"MeasureOptions.markov", "--markov"},
      {"MeasureOptions.sigma", "--sigma"},
      {"MeasureOptions.noise_draws", "--noise-draws"},
      {"MeasureOptions.noise_file", "--noise"},
      {"MarkovOptions.sigma", "--sigma"},
      {"MarkovOptions.noise_draws", "--noise-draws"},
      {"FisherOptions.task", "--task"},
      {"FisherOptions.out_noise", "--out-noise"},
      {"FisherOptions.kind", "--fisher"},
      {"FisherOptions.side", "--side"},
      // The flag is in MB, the field in bytes: a rule that quotes the value in bytes reads oddly.
      {"FisherOptions.memory_budget", "--memory-budget"},
      {"EstimatorOptions.eps", "--eps"},
      {"EstimatorOptions.zetas", "--zeta"},
      {"EstimatorOptions.cover", "--cover"},
      {"EstimatorOptions.ed_n", "--ed-n"},
      {"EstimatorOptions.at_n", "--n"},
      {"EstimatorOptions.bootstrap", "--bootstrap"},
      {"ExecutionContext.threads", "--threads"},
      {"MeasureOptions.parallel_samples", "--parallel-samples"},
  };
  return rows;
}

}  // namespace

std::string flag_of(const std::string& option) {
  for (const auto& [name, flag] : table())
    if (name == option) return flag;
  return "";
}

std::string cli_message(const OptionError& e) {
  const auto flag = flag_of(e.option());
  return flag.empty() ? std::string(e.what()) : flag + " " + e.rule();
}

}  // namespace twosed::cli
