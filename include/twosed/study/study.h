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

/// Runs (or resumes) the study, recording everything in `store`. An OptionError of the library
/// found only while running (a test_fraction that leaves an empty set) is rethrown as a
/// UsageError naming the study key. Returns the study's run id;
/// its result JSON (ResultsStore::run(id).result) holds per-model measures and losses and the
/// correlations (see study_report).
int64_t run_study(ResultsStore& store, const StudyConfig& cfg, const StudyOptions& opts);

/// A study result as a text report.
std::string study_table(const std::string& result_json);
/// The measures-vs-loss correlations as CSV: measure,target,method,value,lo,hi,n.
std::string study_csv(const std::string& result_json);
/// The study's figures: PREFIX-curves.png (each model's 2sED and lower 2sED against eps),
/// PREFIX-training.png (training-loss curves), PREFIX-scatter.png (the headline measure against
/// the final training loss, rank correlations in the title). `ext` is "png" or "svg".
/// Returns the paths written.
std::vector<std::string> study_plots(const ResultsStore& store, int64_t study_run, const std::string& prefix,
                                     const std::string& ext);

}  // namespace twosed
