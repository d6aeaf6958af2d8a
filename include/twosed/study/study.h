// Model-selection studies (`twosed study STUDY.json`): a family of models on one data set;
// for each, the 2sED, the lower 2sED of the Markov chain model, the Abbas ED and the parameter
// count, computed before training; then training with several seeds; then the rank
// correlations (Spearman, Kendall) between each measure and the final training and test loss,
// with bootstrap intervals over the models. Every measurement and training run is a child run
// of the study in the results store, so a stopped study resumed with the same file recomputes
// nothing that finished.
//
// STUDY.json (every key but "models" optional; defaults shown):
//   {"name": "study",
//    "data": {"source": "<default data>", "test_data": "", "test_fraction": 0, "train_size": 0,
//             "test_size": 0, "standardize": false},
//    "task": "classify",
//    "models": ["mlp:54-8-7", {"spec": "mlp:54-32-7", "act": "tanh", "bias": true}],
//    "measure": {"inputs": 100, "samples": 50, "eps": [1e-4, 1e-2], "zetas": [0, 0.5],
//                "sigmas": [], "noise_draws": 1, "bootstrap": 500, "seed": 0},
//    "train": {"optimizer": "adam", "lr": 0.001, "momentum": 0, "weight_decay": 0, "batch": 64,
//              "epochs": 10, "seeds": [0, 1, 2]},
//    "correlation": {"bootstrap": 2000, "confidence": 0.95, "seed": 0}}
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "twosed/data/training_data.h"
#include "twosed/execution.h"
#include "twosed/model/model_spec.h"
#include "twosed/store/results_store.h"
#include "twosed/study/rank_correlation.h"
#include "twosed/train/train.h"

namespace twosed {

struct StudyModel {
  std::string spec;
  ModelOptions options;
};

struct StudyConfig {
  std::string file;  ///< where it was parsed from (messages only; not part of the configuration)
  std::string name = "study";
  TrainingDataOptions data;  ///< data.task is the study's task
  std::vector<StudyModel> models;
  int64_t inputs = 100, samples = 50, bootstrap = 500, noise_draws = 1;
  std::vector<double> eps = {1e-4, 1e-2};
  std::vector<double> zetas = {0.0, 0.5};
  std::vector<double> sigmas;  ///< lower 2sED for each; empty: none
  uint64_t measure_seed = 0;
  TrainOptions train;  ///< seed ignored: one training per entry of seeds
  std::vector<uint64_t> seeds = {0, 1, 2};
  CorrelationOptions correlation;
};

/// Parses a study file and validates all of it before any work: types, every model spec, the
/// data source strings, and the train, data, measure and correlation options with the same
/// checks the library applies when the study runs. Throws UsageError in the file's own words:
/// "PATH: key 'train.epochs': expected an integer, got \"ten\"" (a wrong type),
/// "PATH: key 'train.momentum': must be in [0, 1), got 1.5" (a bad value), an unknown key
/// (naming the keys allowed there), a key that appears twice, or a missing "models"; DataError
/// if the file cannot be read, is not JSON (with line and column) or nests deeper than 64 levels.
StudyConfig parse_study(const std::string& path);
/// The same on text (for tests); `name` stands in for the path.
StudyConfig parse_study_text(const std::string& text, const std::string& name);

/// The canonical configuration of a study (what --resume compares).
std::string study_config(const StudyConfig& cfg);

struct StudyOptions {
  bool resume = false;     ///< continue the newest unfinished study of this configuration
  int64_t resume_run = 0;  ///< or this one
  /// Progress lines ("model 2/5: measuring ..."). May be empty.
  std::function<void(const std::string&)> progress;
  /// Within a measurement: (samples done, M); within a training: (epochs done, E). May be empty.
  std::function<void(int64_t, int64_t)> step_progress;
  /// How the measurements run (their sample executor: MPI ranks); trainings run in this process.
  ExecutionContext execution;
};

/// A measure on one model: its value and bootstrap standard error (NaN: not finite or not
/// computed; 0 for "params d").
struct StudyValue {
  double value = std::numeric_limits<double>::quiet_NaN();
  double std_error = std::numeric_limits<double>::quiet_NaN();
};

/// A curve against eps (the default grid plus the study's eps values).
struct StudyCurve {
  std::vector<double> eps, value, std_error;
};

/// One model of a study: its measures before training and its trainings.
struct StudyModelResult {
  StudyModel model;  ///< spec (as parsed: ModelSpec::text) and options
  std::string name;  ///< the spec, with " (tanh)" / " (no bias)" where the options are not the default
  int64_t d = 0;     ///< parameters
  int64_t k = 0;     ///< outputs
  /// By measure name (study_measure_name): "params d", "ED(n)" (where kappa(n) > 1), for each
  /// zeta the 2sED at each of the study's eps and at eps_zeta(n) (where n > 3), and for each
  /// sigma the lower 2sED at each eps and the lower and chain 2sED at eps_zeta(n).
  std::map<std::string, StudyValue> measures;
  /// "2sED zeta=Z", "lower 2sED sigma=S zeta=Z", "chain 2sED sigma=S zeta=Z".
  std::map<std::string, StudyCurve> curves;
  /// "2sED" and "lower 2sED sigma=S": the measurement's run id.
  std::map<std::string, int64_t> measure_runs;
  std::vector<int64_t> train_runs;  ///< one per seed, in the order of StudyConfig::seeds
  /// Final full-pass losses per seed (NaN: no test set, or not finite). test_loss is empty in a
  /// result stored before schema version 2 (it was not kept).
  std::vector<double> train_loss, test_loss;
  /// Per seed: the training diverged (a final training loss, or test loss where there is a test
  /// set, that is not finite). Such a model has no loss means and is left out of correlations.
  std::vector<bool> diverged;
  /// Over the seeds; NaN where any seed's value is not finite (or there is no test set).
  double train_loss_mean = std::numeric_limits<double>::quiet_NaN();
  double train_loss_sd = std::numeric_limits<double>::quiet_NaN();
  double test_loss_mean = std::numeric_limits<double>::quiet_NaN();
  double test_loss_sd = std::numeric_limits<double>::quiet_NaN();
  double train_accuracy_mean = std::numeric_limits<double>::quiet_NaN();
  double test_accuracy_mean = std::numeric_limits<double>::quiet_NaN();
};

/// A rank correlation over the models with its percentile bootstrap interval (NaN: undefined).
struct StudyCorrelationValue {
  double value = std::numeric_limits<double>::quiet_NaN();
  double lo = std::numeric_limits<double>::quiet_NaN();
  double hi = std::numeric_limits<double>::quiet_NaN();
  int64_t valid = 0;  ///< resamples where it was defined
};

struct StudyCorrelation {
  std::string measure;  ///< a name of StudyResult::measure_names
  std::string target;   ///< "train loss" or "test loss" (the mean over seeds)
  StudyCorrelationValue spearman, kendall;
  int64_t n = 0;  ///< models
};

/// A finished study.
struct StudyResult {
  int64_t run = 0;     ///< the study's run id in the store
  StudyConfig config;  ///< what produced it (config.file is not stored)
  std::string data;    ///< the training data's description
  int64_t n_train = 0, n_test = 0;
  std::vector<std::string> measure_names;  ///< in table order
  std::string headline;                    ///< the measure the table and scatter plot lead with
  std::vector<StudyModelResult> models;    ///< in the order of config.models
  std::vector<StudyCorrelation> correlations;
};

/// The version study_result_json writes. 1 (no "schema_version" key): results stored before
/// the typed result; 2 adds "schema_version", "config" and per model "test_loss" and "diverged".
constexpr int kStudyResultSchema = 2;

/// The name of a study measure: study_measure_name("2sED", zeta, eps) is "2sED zeta=0 eps=0.01";
/// without eps, at eps_zeta(n): "2sED zeta=0 at eps_zeta(n)". With a sigma (kind "lower 2sED"
/// or "chain 2sED"): "lower 2sED sigma=0.5 zeta=0 eps=0.01".
std::string study_measure_name(const std::string& kind, double zeta, std::optional<double> eps = std::nullopt,
                               std::optional<double> sigma = std::nullopt);

/// The result as the store holds it (non-finite numbers as null), with "schema_version".
nlohmann::json study_result_json(const StudyResult& r);
/// Reads study_result_json's output, or a result stored by an older version (schema 1). Where
/// the text has no "config" (schema 1), `run_config` (the run's stored configuration,
/// study_config's text) supplies it if not empty; else the copies in the result (name, task,
/// inputs, samples, eps, zetas, sigmas, epochs, seeds, confidence) do, the rest left default.
/// Non-finite numbers (stored as null) come back as NaN. Throws DataError naming the key on a
/// text that is not such a result, or one of a newer schema.
StudyResult parse_study_result(const std::string& text, const std::string& run_config = "");

/// Runs (or resumes) the study, recording everything in `store` (the result as
/// study_result_json). An OptionError of the library found only while running (a test_fraction
/// that leaves an empty set) is rethrown as a UsageError naming the study key.
StudyResult run_study(ResultsStore& store, const StudyConfig& cfg, const StudyOptions& opts);

/// A study result as a text report.
std::string study_table(const StudyResult& r);
/// The measures-vs-loss correlations as CSV: measure,target,method,value,lo,hi,n.
std::string study_csv(const StudyResult& r);
/// The study's figures: PREFIX-curves.png (each model's 2sED and lower 2sED against eps),
/// PREFIX-training.png (training-loss curves, read from `store`), PREFIX-scatter.png (the
/// headline measure against the final training loss, rank correlations in the title). `ext` is
/// "png" or "svg". Returns the paths written.
std::vector<std::string> study_plots(const ResultsStore& store, const StudyResult& r, const std::string& prefix,
                                     const std::string& ext);

}  // namespace twosed
