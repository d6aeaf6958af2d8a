// Whole data sets for training (`twosed train`, `twosed study`): a data source split into a
// training and a test set, with the same loaders as measurements (data.h) plus teacher data.
//
// The test set is, in order of preference: test_data; for idx:DIR, the directory's t10k
// files when present (Fashion-MNIST's own test split); a seeded fraction of the data
// (test_fraction); none.
#pragma once

#include <cstdint>
#include <string>

#include "twosed/data/data.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/model/model_spec.h"

namespace twosed {

struct TrainingDataOptions {
  std::string data;            ///< data source (data.h); empty: default_data_source(spec)
  std::string test_data;       ///< optional separate test source
  double test_fraction = 0.0;  ///< in [0, 1): held out from `data` when there is no other test set
  int64_t train_size = 0;      ///< > 0: a seeded subset of this many training examples
  int64_t test_size = 0;       ///< > 0: a seeded subset of this many test examples
  bool standardize = false;    ///< z-score features with the training set's means and deviations
  Task task = Task::Classify;
  uint64_t seed = 0;  ///< subsets, the split, synthetic data
};

struct TrainingData {
  Dataset train, test;      ///< test may be empty
  std::string description;  ///< for reports: sources, sizes, split
};

/// Checks the numeric options (test_fraction in [0, 1), sizes >= 0); load_training_data calls it.
/// Throws OptionError naming the field ("TrainingDataOptions.test_fraction").
void validate(const TrainingDataOptions& opts);

/// Loads and splits. Throws UsageError (bad source strings), OptionError (bad options, naming
/// the field: "TrainingDataOptions.test_fraction") or DataError (files,
/// feature counts that do not fit `spec`, more classes than outputs).
TrainingData load_training_data(const TrainingDataOptions& opts, const ModelSpec& spec,
                                const ModelOptions& model_options);

/// synthetic:teacher:SPEC[:N]: standard normal inputs labelled by the argmax of the teacher
/// network at one parameter sample from its init box.
Dataset make_teacher_data(const DataSpec& ds, const ModelOptions& model_options, uint64_t seed);

/// Any data source, teacher data included.
Dataset load_any_dataset(const DataSpec& ds, const ModelOptions& model_options, uint64_t seed);

}  // namespace twosed
