// Internal: SHA-256 (FIPS 180-4) of a file's bytes, so that a stored run identifies the model
// file it measured by content, not only by path (a TorchScript --model in the results store).
#pragma once

#include <string>

namespace twosed {

/// The lowercase hex SHA-256 of the bytes of `path`. Throws DataError naming the file if it
/// cannot be read.
std::string file_sha256(const std::string& path);

/// The lowercase hex SHA-256 of `bytes` (for tests against the standard's test vectors).
std::string sha256_hex(const std::string& bytes);

}  // namespace twosed
