// Spectra files: each parameter sample's Fisher spectrum, written as soon as it is computed, so
// that a long measurement that is stopped loses nothing that was finished, and curves for new
// eps/zeta values can be recomputed without recomputing spectra (`--spectra-out`, `--spectra-in`).
//
// Format: JSON lines. The first line describes the run,
//   {"twosed_spectra": 1, "model": "...", "d": 53, "N": 20, "k": 3, "task": "classify", "fisher": "exact", "seed": 0}
// then one line per finished sample,
//   {"sample": 0, "trace": 1.5, "cut": 2, "eigenvalues": [ascending kept eigenvalues]}
// with every number printed to 17 significant digits (exact round trip).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "twosed/estimator.h"

namespace twosed {

/// What the first line of a spectra file records.
struct SpectraHeader {
  std::string model;
  int64_t num_params = 0;   ///< d
  int64_t num_inputs = 0;   ///< N
  int64_t num_outputs = 0;  ///< k
  std::string task;         ///< "classify" | "regress"
  std::string fisher;       ///< "exact" | "sampled"
  uint64_t seed = 0;
};

/// Appends spectra to a file, flushing after every sample.
class SpectraWriter {
 public:
  /// Creates (truncates) `path` and writes the header. Throws DataError if it cannot.
  SpectraWriter(const std::string& path, const SpectraHeader& header);
  ~SpectraWriter();
  SpectraWriter(const SpectraWriter&) = delete;
  SpectraWriter& operator=(const SpectraWriter&) = delete;

  /// Writes sample j's spectrum and flushes it to the operating system.
  void append(int64_t j, const SampleSpectrum& s);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// A spectra file read back.
struct SpectraFile {
  SpectraHeader header;
  std::vector<SampleSpectrum> spectra;  ///< in file order
  bool truncated_last_line = false;     ///< a final line without newline was ignored (a run stopped mid-write)
};

/// Reads a spectra file. Throws DataError naming the file and line on malformed content.
SpectraFile read_spectra(const std::string& path);

}  // namespace twosed
