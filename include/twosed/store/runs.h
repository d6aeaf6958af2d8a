// Measurements and training runs recorded in the results store (results_store.h): their
// configurations as canonical JSON, every parameter sample committed as soon as it is done,
// runs resumed after a kill, and stored runs read back.
//
// Example:
//   ResultsStore db("twosed.db");
//   auto m = record_measure(db, opts, {});                 // commits sample by sample
//   auto again = stored_measure(db, m.run, other_eps_opts);  // curves for new eps/zeta, no network
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "twosed/data/training_data.h"
#include "twosed/measure/measure.h"
#include "twosed/store/results_store.h"
#include "twosed/train/train.h"

namespace twosed {

/// The options that determine a measurement's results, as canonical JSON text (sorted keys):
/// everything except how results are shown (format, files, progress) and the thread count.
std::string measure_config(const MeasureOptions& opts);

/// Records this process (pid@host) as the one working on `run`, so that listings can tell a
/// run in progress from one whose process is gone (run_is_stopped).
void mark_process(ResultsStore& store, int64_t run);

/// True if `run` is marked running but the process that worked on it (on this host) is gone:
/// it was killed or crashed, and --resume continues it.
bool run_is_stopped(const ResultsStore& store, const RunInfo& run);

/// Takes `run` over for this process, atomically (ResultsStore::claim_run): DataError
/// "PATH: cannot resume: run R is still running in process PID@HOST; wait for it or stop it"
/// while another live process on this host works on it, or "... is already finished" for a
/// done run unless `allow_done`. A non-empty `config` replaces the run's configuration.
void claim_run(ResultsStore& store, int64_t run, bool allow_done = false, const std::string& config = "");

/// Deletes a stored run with everything attached to it (a study: with its runs). Refuses with
/// a DataError a run that another live process works on (or, for a study, one of its runs).
/// Returns the number of runs deleted.
int64_t delete_stored_run(ResultsStore& store, int64_t run);

/// How a run is recorded.
struct RecordOptions {
  bool resume = false;     ///< continue an unfinished run of the same configuration
  int64_t resume_run = 0;  ///< that run; 0: the newest unfinished one of this kind with this configuration
  int64_t parent = 0;      ///< the study the run belongs to (0: none)
  std::string label;       ///< for listings; default: the model spec
  /// Called once the run is known (created, or claimed by a resume) with the number of samples
  /// already stored in it.
  std::function<void(int64_t run, int64_t stored)> on_run;
};

struct RecordedMeasurement {
  int64_t run = 0;
  MeasureResult result;
};

/// The run a resume continues: `ropts.resume_run` or the newest unfinished run of `kind` with
/// this configuration, or a run (finished or not) that this configuration extends: the same
/// but for more parameter samples. Throws DataError when there is none, when it is finished,
/// when another live process works on it, or when its configuration differs (naming the keys
/// that differ and their two values).
RunInfo find_resumable(const ResultsStore& store, const std::string& kind, const std::string& config,
                       const RecordOptions& ropts);

/// run_measure with the run's header and every sample committed to `store` as soon as they
/// exist. With ropts.resume the run is first claimed (claim_run) and its committed samples are
/// taken back instead of recomputed; a resume with more samples extends the run, with the
/// result of a run started with that many. A failure marks the run failed (its samples stay;
/// only if this process still owns it) and rethrows. On success the run is marked
/// done with the result's JSON (result_json.h).
RecordedMeasurement record_measure(ResultsStore& store, MeasureOptions opts, const RecordOptions& ropts,
                                   const ExecutionContext& ctx = {});

/// The estimator options a stored measurement was made with (its configuration, read back).
EstimatorOptions stored_estimator_options(const ResultsStore& store, int64_t run);

/// A stored measurement's curves (finished or not) recomputed from its committed spectra with
/// these estimator options. Throws DataError if the run is not a measurement or has no samples.
MeasureResult stored_measure(const ResultsStore& store, int64_t run, const EstimatorOptions& eopts);

/// The spectra of a stored measurement as records (index, blocks, costs) and its header.
std::vector<SampleRecord> stored_samples(const ResultsStore& store, int64_t run, SpectraHeader* header = nullptr);

/// Everything a training run needs, as one configuration.
struct TrainConfig {
  std::string model;
  ModelOptions model_options;
  TrainingDataOptions data;
  TrainOptions train;
};

/// Canonical JSON of a training configuration (sorted keys).
std::string train_config(const TrainConfig& cfg);

struct RecordedTraining {
  int64_t run = 0;
  TrainResult result;
  std::string data_description;
};

/// Loads the data and trains, without recording (run = 0).
RecordedTraining run_training(const TrainConfig& cfg);

/// Trains and records: every record committed as it is made, the final theta stored as the
/// run's array "theta". A failure marks the run failed and rethrows.
RecordedTraining record_training(ResultsStore& store, const TrainConfig& cfg, const RecordOptions& ropts);

}  // namespace twosed
