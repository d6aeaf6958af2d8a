// The JSON of a measurement result, written in this one place: what `--format json` prints,
// what the results store keeps as a finished run's result, what `show` and `export` write.
// Every document carries "schema_version" (kResultSchemaVersion) and the twosed version.
#pragma once

#include <nlohmann/json.hpp>

#include "twosed/measure/measure.h"

namespace twosed {

/// Version of the result JSON's layout; raised when a key changes meaning or is removed.
constexpr int kResultSchemaVersion = 1;

/// Where and when a result was made: date, host, threads, hardware concurrency.
nlohmann::json run_context();

/// The whole result: model, sizes, options that shaped it, curves, ED, at_n, per-sample
/// statistics; for the Markov chain model also lower/chain curves, layers and sample traces.
nlohmann::json result_json(const MeasureResult& r);

}  // namespace twosed
