// The results store: every measurement, training run and study in one SQLite database
// (`--db PATH`, default twosed.db), with its full configuration, the twosed version, each
// parameter sample's spectra (so curves can be recomputed for new eps/zeta without the
// network), training curves and results.
//
// Durability: every write is one transaction, committed before the call returns (WAL journal,
// synchronous=FULL). A process killed at any moment leaves the database consistent and every
// finished call's data in it; `--resume` picks a run up from its committed samples.
//
// Identification: PRAGMA application_id = kApplicationId marks a twosed database and
// PRAGMA user_version holds the schema version. Opening a database of another application or
// of a newer schema is refused with a DataError naming the file.
//
// Example:
//   ResultsStore db("twosed.db");
//   int64_t run = db.create_run("measure", "mlp:784-64-10", config_json);
//   db.add_sample(run, {0, stats_json, {spectrum}});
//   db.finish_run(run, result_json);
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "twosed/estimate/estimator.h"
#include "twosed/train/train.h"

struct sqlite3;

namespace twosed {

/// The database every command uses unless --db says otherwise (in the working directory).
constexpr const char* kDefaultResultsDb = "twosed.db";

/// A run as the store records it.
struct RunInfo {
  int64_t id = 0;
  std::string kind;         ///< "measure" | "train" | "study"
  std::string status;       ///< "running" | "done" | "failed"
  std::string label;        ///< short description for listings (model spec, study name)
  std::string config;       ///< the full configuration as canonical JSON text (sorted keys)
  std::string config_hash;  ///< config_hash(config)
  std::string version;      ///< twosed version that created the run
  std::string created;      ///< UTC, "YYYY-MM-DDTHH:MM:SSZ"
  std::string updated;      ///< UTC time of the last write to the run (sample, record, status)
  int64_t parent = 0;       ///< the study run this run belongs to; 0 if none
  std::string result;       ///< JSON text stored by finish_run (empty until then)
  std::string message;      ///< fail_run's message
  int64_t num_samples = 0;  ///< parameter samples committed (measure runs)
  int64_t num_records = 0;  ///< training records committed (train runs)
};

/// One parameter sample of a measurement as committed.
struct StoredSample {
  int64_t index = 0;                   ///< j
  std::string stats;                   ///< JSON text (summary, costs); the store does not interpret it
  std::vector<SampleSpectrum> blocks;  ///< standard model: one; Markov chain: one per layer, in order
};

/// FNV-1a 64 of the text as 16 hex digits.
std::string config_hash(const std::string& canonical_config);

class ResultsStore {
 public:
  static constexpr int kSchemaVersion = 1;
  static constexpr int32_t kApplicationId = 0x32534544;  // "2SED"

  /// Opens `path`, creating it (and the schema) if it does not exist or is empty. Throws
  /// DataError: "PATH: not a twosed database (...)" for another SQLite database or a file
  /// that is not SQLite at all, "PATH: schema version V is newer than this twosed (X.Y.Z)
  /// reads (1); use a newer twosed" for a newer schema, or the SQLite error when it cannot be
  /// opened. With create = false a missing (or empty) file is a DataError too. A refused
  /// database is not modified. One object per thread: calls on one object must not overlap.
  /// read_only: for reading commands; the file must exist, is opened with SQLite's mode=ro (and
  /// immutable=1 unless a -wal file shows a writer), so a database in a read-only directory or
  /// file can be read and no -wal/-shm file is created; every write method throws DataError.
  explicit ResultsStore(const std::string& path, bool create = true, bool read_only = false);
  ~ResultsStore();
  ResultsStore(const ResultsStore&) = delete;
  ResultsStore& operator=(const ResultsStore&) = delete;

  const std::string& path() const { return path_; }

  /// Starts a run (status "running") and returns its id (1, 2, ...; a deleted run's id is not
  /// reused). UsageError for a kind other than measure/train/study or a config that is not JSON;
  /// DataError for a parent that does not exist. Every method that takes a run id throws
  /// DataError "PATH: no run ID" for a run that does not exist.
  int64_t create_run(const std::string& kind, const std::string& label, const std::string& config_json,
                     int64_t parent = 0);
  /// Marks a run done and stores its result JSON.
  void finish_run(int64_t id, const std::string& result_json);
  /// Marks a run failed with a one-line message (its committed samples stay).
  void fail_run(int64_t id, const std::string& message);
  /// Marks a run "running" again (resume), clearing its message.
  void reopen_run(int64_t id);

  /// Throws DataError "PATH: no run ID" if there is none.
  RunInfo run(int64_t id) const;
  /// All runs, by id; only those of `kind` if it is not empty.
  std::vector<RunInfo> runs(const std::string& kind = "") const;
  /// The child runs of a study, by id (parent = 0: the runs without a parent). Throws DataError
  /// if there is no run `parent`.
  std::vector<RunInfo> children(int64_t parent) const;
  /// The newest run of `kind` with this config hash and status ("" = any), if any.
  std::optional<RunInfo> find_run(const std::string& kind, const std::string& config_hash,
                                  const std::string& status = "") const;

  /// Commits sample s of a measurement run (one transaction). A sample index that is already
  /// stored is a DataError (a resumed run must skip committed samples).
  void add_sample(int64_t run, const StoredSample& s);
  /// The committed samples of a run, by index, with their spectra.
  std::vector<StoredSample> samples(int64_t run) const;
  /// The committed sample indices of a run, ascending (without loading spectra).
  std::vector<int64_t> sample_indices(int64_t run) const;

  /// Commits training records (one transaction for the whole vector).
  void add_training_records(int64_t run, const std::vector<TrainingRecord>& records);
  /// Training records of a run in the order they were added.
  std::vector<TrainingRecord> training_records(int64_t run) const;

  /// A named float64 array attached to a run (e.g. a trained theta); replaces one of the same name.
  void put_array(int64_t run, const std::string& name, const std::vector<double>& values);
  /// Throws DataError if the run has no array of that name.
  std::vector<double> get_array(int64_t run, const std::string& name) const;

  /// A named text attached to a run (e.g. a measurement's header); replaces one of the same name.
  void put_text(int64_t run, const std::string& name, const std::string& text);
  /// The text, or nothing if the run has none of that name.
  std::optional<std::string> get_text(int64_t run, const std::string& name) const;

  /// Deletes a run and everything attached to it (and its children).
  void delete_run(int64_t id);

  /// Takes a run over for this process, atomically (one BEGIN IMMEDIATE transaction): unless
  /// its text "process" is a marker for which `is_live` returns true, or the run is done and
  /// `allow_done` is false, writes `process` as that marker, marks the run running (clearing
  /// its message) and, if `config` is not empty, replaces its configuration. Returns the marker
  /// that refused the claim (empty: claimed), or "done" for a finished run; two processes
  /// claiming one run cannot both succeed.
  std::string claim_run(int64_t id, const std::string& process, const std::function<bool(const std::string&)>& is_live,
                        bool allow_done, const std::string& config = "");

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace twosed
