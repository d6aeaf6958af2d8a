// Formatting of measurements: tables, JSON, CSV and figures (`twosed measure`, `twosed show`).
#pragma once

#include <nlohmann/json.hpp>

#include <exception>
#include <string>

#include "twosed/measure/measure.h"
#include "twosed/measure/result_json.h"
#include "twosed/store/results_store.h"
#include "twosed/train/train.h"

namespace twosed::cli {

/// A standard-model measurement as CSV: kind,zeta,eps,n,value,stderr.
std::string to_csv(const MeasureResult& r);

/// A measurement as a human-readable table.
std::string to_table(const MeasureResult& r, size_t breakdown);

/// The extension of a --plot file name, "png" or "svg" (case-insensitive), checked before a long
/// run rather than after it. Throws UsageError "--plot PATH: expected a .png or .svg file name"
/// followed by ` (hint)` when a hint is given.
std::string plot_extension(const std::string& path, const std::string& hint = "");

/// Without --data, says on stderr (one line) when the default data source is synthetic, so that
/// a model of another input size does not silently run on blobs.
void note_default_data(const std::string& data, const std::string& model, const ModelOptions& options);

/// Writes text to `path` (write_file_atomically: a temporary file renamed, every write checked),
/// or to stdout if it is empty (checked too). Throws DataError naming the file.
void write_output(const std::string& text, const std::string& path);

/// If `e` is an allocation failure (std::bad_alloc, LibTorch's "can't allocate memory"), throws
/// DataError "out of memory while STAGE (SIZE requested; ...)"; otherwise returns.
void rethrow_if_out_of_memory(const std::exception& e, const std::string& stage);

/// Runs f(); an allocation failure inside becomes the DataError of rethrow_if_out_of_memory.
template <typename F>
decltype(auto) in_stage(const std::string& stage, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    rethrow_if_out_of_memory(e, stage);
    throw;
  }
}

/// A --seed value: the decimal text of an integer in [0, 2^64-1]; UsageError naming `option`.
uint64_t parse_seed(const std::string& text, const std::string& option);

/// The thread count for --threads `requested` (0: every core). UsageError outside [1, 4 x cores];
/// above OpenBLAS's maximum of 64 it warns on stderr and uses 64.
int checked_threads(int requested, const std::string& option);

/// Replaces every "stderr" / "*_stderr" value (or array element) by null: with M = 1 sample
/// there is no standard error, and 0 would claim an exact value.
void null_standard_errors(nlohmann::json& j);

/// The grid index of eps nearest (in log scale) to `wanted`, or the grid's middle if wanted <= 0.
size_t breakdown_index(const std::vector<double>& eps, double wanted);

/// Markov results as CSV: kind,zeta,eps,n,layer,value,stderr.
std::string markov_csv(const MeasureResult& r);

/// Markov results as a human-readable table (header lines are the caller's).
std::string markov_table(const MeasureResult& r, size_t breakdown);

/// --plot: the curves vs eps with standard-error bands; for Markov, the lower 2sED (and the
/// chain 2sED) and the layer breakdown at eps[breakdown] as stacked bars.
void write_plot(const MeasureResult& r, const std::string& path, size_t breakdown);

/// A training curve as a table, JSON (with the run's config and result when known) or CSV.
std::string training_table(const RunInfo& info, const std::vector<TrainingRecord>& recs);
nlohmann::json training_json(const RunInfo& info, const std::vector<TrainingRecord>& recs);
std::string training_csv(const std::vector<TrainingRecord>& recs);

/// Training-loss curves (train and, where present, test loss against epoch) of several runs
/// in one figure.
void write_training_plot(const std::vector<std::pair<std::string, std::vector<TrainingRecord>>>& runs,
                         const std::string& path);

}  // namespace twosed::cli
