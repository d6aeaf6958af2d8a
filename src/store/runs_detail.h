// What runs.cpp (twosed_core) shares with record.cpp (the LibTorch side) of runs.h.
#pragma once

#include <cstdint>
#include <string>

#include "twosed/measure/measure.h"
#include "twosed/store/results_store.h"

namespace twosed {

/// One sample's summary and costs as the store's stats text (its spectra go in blocks); the
/// store's samples are read back from it.
std::string sample_stats_json(const SampleRecord& r);

/// Whether this process is the one that last claimed the run (only the owner records failure).
bool owns_run(const ResultsStore& store, int64_t run);

}  // namespace twosed
