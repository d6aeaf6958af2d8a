// Spectra files: each parameter sample's Fisher spectrum, written as soon as it is computed, so
// that a long measurement that is stopped loses nothing that was finished, and curves for new
// eps/zeta values can be recomputed without recomputing spectra (`--spectra-out`, `--spectra-in`).
//
// Format: JSON lines. The first line describes the run,
//   {"twosed_spectra": 1, "model": "...", "d": 53, "N": 20, "k": 3, "task": "classify", "fisher": "exact", "seed": 0}
// then one line per finished sample,
//   {"sample": 0, "trace": 1.5, "cut": 2, "eigenvalues": [ascending kept eigenvalues]}
// with every number printed to 17 significant digits (exact round trip).
//
// Markov chain runs (format 2) add the chain to the header,
//   {"twosed_spectra": 2, ..., "markov": {"sigma": 0.1, "noise_draws": 1, "noise_width": 192,
//    "layers": [{"name": "0", "description": "linear 784->128, relu", "params": 100480}, ...]}}
// and give each sample its blocks layer by layer,
//   {"sample": 0, "layers": [{"trace": .., "cut": .., "eigenvalues": [..]}, ...]}.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "twosed/estimate/estimator.h"

namespace twosed {

/// One Markov layer as a spectra file records it.
struct SpectraLayer {
  std::string name, description;
  int64_t params = 0;
};

/// What the first line of a spectra file records.
struct SpectraHeader {
  std::string model;
  int64_t num_params = 0;   ///< d
  int64_t num_inputs = 0;   ///< N
  int64_t num_outputs = 0;  ///< k
  std::string task;         ///< "classify" | "regress"
  std::string fisher;       ///< "exact" | "sampled"
  uint64_t seed = 0;
  bool markov = false;  ///< format 2: a Markov chain run
  double sigma = 0.0;
  int64_t noise_draws = 1;
  int64_t noise_width = 0;  ///< H
  std::vector<SpectraLayer> layers;
};

/// The header as the JSON text of a spectra file's first line (also kept by the results store).
std::string spectra_header_json(const SpectraHeader& header);
/// Parses spectra_header_json's text. Throws DataError prefixed with `where`.
SpectraHeader parse_spectra_header(const std::string& json_text, const std::string& where);

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
  /// Markov runs: sample j's spectra, one per layer (in the header's layer order).
  void append_layers(int64_t j, const std::vector<SampleSpectrum>& layers);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// A spectra file read back.
struct SpectraFile {
  SpectraHeader header;
  std::vector<SampleSpectrum> spectra;                     ///< in file order (Markov: all layers merged, trace = sum)
  std::vector<std::vector<SampleSpectrum>> layer_spectra;  ///< Markov: [sample][layer]
  bool truncated_last_line = false;  ///< a final line without newline was ignored (a run stopped mid-write)
};

/// Reads a spectra file. Throws DataError naming the file and line on malformed content.
SpectraFile read_spectra(const std::string& path);

}  // namespace twosed
