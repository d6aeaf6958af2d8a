// Internal to src/data: a byte stream read in bounded pieces.
//
// The IDX and .npy readers read a fixed-size header, check it, and only then read the data it
// declares: never more than declared (plus one byte to detect trailing data), and never more
// memory than what has actually arrived. The same code runs on bytes already in memory
// (parse_idx, parse_npy) through StringSource, so both paths give the same messages.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace twosed::detail {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  /// Reads up to `n` bytes into `buf`; fewer only at the end of the data. Throws DataError
  /// on read errors.
  virtual size_t read(char* buf, size_t n) = 0;
  /// Bytes left, where known (data in memory, a regular uncompressed file); nullopt otherwise.
  virtual std::optional<uint64_t> remaining() const = 0;
};

class StringSource : public ByteSource {
 public:
  explicit StringSource(const std::string& bytes) : bytes_(bytes) {}
  size_t read(char* buf, size_t n) override {
    const size_t k = std::min(n, bytes_.size() - pos_);
    if (k > 0) std::memcpy(buf, bytes_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  std::optional<uint64_t> remaining() const override { return bytes_.size() - pos_; }

 private:
  const std::string& bytes_;
  size_t pos_ = 0;
};

/// Reads up to `n` bytes (fewer only at the end of the data). The buffer grows with what
/// arrives, in chunks, and never past `n`: a header that declares far more than the stream
/// holds costs only what the stream holds.
inline std::vector<char> read_up_to(ByteSource& src, uint64_t n) {
  constexpr size_t kChunk = size_t{1} << 20;
  // Reserved at once where the data is known to be there, or small anyway.
  constexpr uint64_t kEagerReserve = uint64_t{16} << 20;
  std::vector<char> out;
  const std::optional<uint64_t> left = src.remaining();
  if (n <= kEagerReserve || (left && *left >= n)) out.reserve(static_cast<size_t>(n));
  while (out.size() < n) {
    const size_t old = out.size();
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, n - old));
    // vector::reserve allocates exactly what is asked: doubling, capped at n.
    if (out.capacity() < old + want)
      out.reserve(static_cast<size_t>(std::min<uint64_t>(n, std::max<uint64_t>(2 * out.capacity(), old + want))));
    out.resize(old + want);
    const size_t got = src.read(out.data() + old, want);
    out.resize(old + got);
    if (got < want) break;
  }
  return out;
}

/// Whether the stream holds at least one more byte (consumes it).
inline bool has_more(ByteSource& src) {
  char c;
  return src.read(&c, 1) == 1;
}

}  // namespace twosed::detail
