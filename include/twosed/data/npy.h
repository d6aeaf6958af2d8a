// Reading and writing NumPy .npy files (format versions 1.0, 2.0, 3.0).
//
// twosed exchanges parameter samples (--thetas, M x d), checkpoints (flat d-vectors) and
// inputs (--inputs-file, N x features) with other tools as .npy. Only little-endian float32
// ('<f4') and float64 ('<f8') arrays are accepted; values are returned as float64.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace twosed {

/// A dense array read from a .npy file, row-major (C order), converted to float64.
struct NpyArray {
  std::vector<int64_t> shape;  ///< e.g. {M, d}; {} for a scalar
  std::vector<double> data;    ///< prod(shape) values, row-major
  std::string dtype;           ///< descr as stored in the file: "<f4" or "<f8"

  int64_t numel() const;
};

/// Reads `path`. Throws DataError naming the file and what is wrong (missing file, bad magic,
/// unsupported version/dtype, Fortran order, truncated or trailing data, header that does not
/// parse or is longer than 64 KiB). The magic and header are checked before the data is read,
/// and no more is read or allocated than the header declares (checked against the file size).
NpyArray read_npy(const std::string& path);

/// Where a .npy file's values are: its header checked as read_npy checks it (magic, version,
/// dtype, order, the declared size against the file's size, no trailing bytes), its values
/// not read. For reading a large array a row at a time (--thetas).
struct NpyFileLayout {
  std::vector<int64_t> shape;
  std::string dtype;         ///< "<f4" or "<f8"
  size_t item_size = 0;      ///< 4 or 8 bytes per value
  uint64_t data_offset = 0;  ///< bytes before the first value
};

/// The layout of the regular file `path`; DataError as read_npy (and for a file that is not a
/// regular file, whose size is not known).
NpyFileLayout read_npy_layout(const std::string& path);

/// Decodes `count` little-endian values of `item_size` bytes (4: float32, 8: float64) into
/// float64. For float64, `out` may be `bytes` itself (decoded in place).
void decode_npy_values(const char* bytes, size_t count, size_t item_size, double* out);

/// Parses .npy bytes already in memory; `name` is used in error messages.
NpyArray parse_npy(const std::string& bytes, const std::string& name);

/// Writes a float64 ('<f8') C-order array. Throws DataError if the file cannot be written or
/// prod(shape) != data.size().
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<double>& data);

}  // namespace twosed
