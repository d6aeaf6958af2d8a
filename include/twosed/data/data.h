// Data sets: the inputs x_1..x_N at which the empirical Fisher is evaluated (docs/math.md section 2).
//
// Loaders for CSV, MNIST-format IDX files and synthetic Gaussian blobs, all returning a
// Dataset of float64 features with optional integer labels. A data source is named by a
// string, as on the command line:
//   csv:PATH[:label=COL]      COL a 0-based column index or a header name; default: last column
//   idx:DIR                   DIR holds train-images-idx3-ubyte[.gz] (+ train-labels-idx1-ubyte[.gz])
//   idx:IMAGES[,LABELS]       explicit IDX files, raw or gzip-compressed
//   synthetic:blobs:K:DIM[:N] K Gaussian blobs in DIM dimensions, N points (default 1000)
//   synthetic:teacher:SPEC[:N] parsed here, labelled by the network code (see network.h)
//   synthetic:covertype[:N]   54 features, 7 classes, shaped like UCI Covertype (default N 10000)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace twosed {

/// Features (float64, row-major) and optional labels of n examples.
struct Dataset {
  std::vector<int64_t> sample_shape;  ///< shape of one example: {F} for tables, {1,28,28} for IDX images
  std::vector<double> x;              ///< n * prod(sample_shape) values, example-major
  std::vector<int64_t> labels;        ///< empty, or n labels in [0, num_classes)
  std::vector<double> targets;        ///< empty, or n real-valued regression targets (CSV under --task regress)
  int64_t num_classes = 0;            ///< 0 when there are no labels
  std::string source;                 ///< where it came from, for messages and reports

  int64_t size() const;          ///< n
  int64_t num_features() const;  ///< prod(sample_shape)
};

/// What a data-source string asks for, before anything is loaded.
struct DataSpec {
  enum class Kind { Csv, Idx, Blobs, Teacher, Covertype };
  Kind kind = Kind::Csv;
  std::string path;           ///< Csv: the file; Idx: a directory or the images file
  std::string labels_path;    ///< Idx with explicit files: the labels file (may be empty)
  std::string label_column;   ///< Csv: the label= value (may be empty: last column)
  int64_t classes = 0;        ///< Blobs: K
  int64_t dim = 0;            ///< Blobs: DIM
  int64_t count = 1000;       ///< Blobs/Teacher: N
  std::string model_spec;     ///< Teacher: the network spec string (e.g. "mlp:20-32-5")
  bool real_targets = false;  ///< Csv: the label column holds real regression targets, not classes
};

/// Parses a data-source string. Throws UsageError naming the string and the expected form.
DataSpec parse_data_spec(const std::string& text);

/// Options shared by the loaders.
struct CsvOptions {
  std::string label_column;    ///< header name or 0-based index; empty: the last column
  bool has_labels = true;      ///< false: every column is a feature
  bool integer_labels = true;  ///< false: the label column is a real regression target (Dataset::targets)
};

/// Reads a CSV file: optional header row (detected: a first row with any non-numeric field),
/// numeric fields, ',' separator (';' and tab also detected), blank lines skipped. Labels are
/// integers; if they are not exactly 0..K-1 they are remapped in sorted order. Throws
/// DataError as "PATH:LINE: expected F fields, found G" / "PATH:LINE:COL: 'abc' is not a number" /
/// "PATH:LINE:COL: NaN or Inf" / "PATH:LINE: label '1.5' is not an integer". A line may hold
/// at most 16 MiB and 1,000,000 fields ("PATH:LINE: line longer than 16777216 bytes"), so that
/// a file without newlines (/dev/zero) fails without reading it to the end.
Dataset load_csv(const std::string& path, const CsvOptions& opts = {});
/// The same on text already in memory (for tests and fuzzing); `name` stands in for the path.
Dataset parse_csv(const std::string& text, const std::string& name, const CsvOptions& opts = {});

/// Reads MNIST-format IDX files (magic 0x00000803 images, 0x00000801 labels, big-endian
/// counts, uint8 data), raw or gzip-compressed. Pixels are scaled to [0,1]; sample_shape is
/// {1, rows, cols}. `labels_path` may be empty. Throws DataError naming the file on a bad
/// magic number, truncated data, trailing data, more than 2^31 pixel bytes, or a label count
/// that differs from the image count. Files are streamed: the header is checked first, and no
/// more is read than it declares plus one byte (a gzip bomb or /dev/zero costs no memory).
Dataset load_idx(const std::string& images_path, const std::string& labels_path);
/// idx:DIR: finds train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] in DIR.
Dataset load_idx_dir(const std::string& dir);
/// Parses IDX bytes (already decompressed) for tests and fuzzing.
Dataset parse_idx(const std::string& image_bytes, const std::string& label_bytes, const std::string& name);

/// K isotropic Gaussian blobs (unit variance) around centres drawn from N(0, 4 I) in DIM
/// dimensions, n points, labels 0..K-1 in round-robin order; deterministic for a seed.
Dataset make_blobs(int64_t classes, int64_t dim, int64_t n, uint64_t seed);

/// A Covertype-shaped table: 10 quantitative columns with Covertype's means and scales, a
/// one-hot wilderness area (4) and soil type (40), and 7 unequal classes from a fixed random
/// teacher with label noise. Deterministic for a seed (Rng(seed, Data, 2)).
Dataset make_covertype(int64_t n, uint64_t seed);

/// Loads csv/idx/blobs/covertype sources (Teacher throws UsageError: it needs a network, see network.h).
Dataset load_dataset(const DataSpec& spec, uint64_t seed);

/// Replaces every feature by its z-score over the data set (constant features become 0). The
/// moments are taken of each column scaled by a power of two, so that values near 1e300 or
/// 1e-300 standardise like ordinary ones; throws DataError naming the feature if a statistic
/// is still not finite (a NaN or Inf value).
void standardize(Dataset& data);

/// A seeded subset of `n` distinct examples (all of them, shuffled, if n >= size()).
/// Throws UsageError if n < 1.
Dataset select_subset(const Dataset& data, int64_t n, uint64_t seed);

/// The indices select_subset picks from `total` examples, in its order (min(n, total) of them).
std::vector<int64_t> subset_order(int64_t total, int64_t n, uint64_t seed);

/// select_subset(load_idx(...) or load_idx_dir(...), n, seed), converting only the chosen
/// images to float64 (Fashion-MNIST in full is 376 MB as float64; its raw bytes are 47 MB).
/// `path` is a directory (as load_idx_dir) or an images file (then `labels_path` may be
/// given). num_classes is still taken from all labels. `total`, if given, receives the number
/// of examples in the file.
Dataset load_idx_subset(const std::string& path, const std::string& labels_path, int64_t n, uint64_t seed,
                        int64_t* total = nullptr);

/// Throws DataError if any feature is NaN or Inf (names the example and feature index).
void check_finite(const Dataset& data);

}  // namespace twosed
