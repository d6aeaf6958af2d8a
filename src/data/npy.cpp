// Reading and writing NumPy .npy files (see npy.h).
//
// Format (numpy.lib.format): "\x93NUMPY", major, minor, header length (uint16 LE for 1.0,
// uint32 LE for 2.0/3.0), then a Python dict literal such as
//   {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
// padded with spaces and ended by '\n', then the raw data. The file is read piece by piece
// (byte_source.h): every length and count is checked, against the file size where it is
// known, before what it declares is read or allocated.

#include "twosed/data/npy.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "byte_source.h"
#include "twosed/data/write_file.h"
#include "twosed/error.h"

namespace twosed {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

uint32_t read_le(const char* p, size_t width) {
  uint32_t v = 0;
  for (size_t i = 0; i < width; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// Byte-wise little-endian decoding, so that the reader does not depend on host byte order.
double decode_f8(const char* p) {
  uint64_t bits = 0;
  for (int i = 0; i < 8; ++i) bits |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  double v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

double decode_f4(const char* p) {
  uint32_t bits = 0;
  for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return static_cast<double>(v);
}

// A quoted excerpt of header text for messages, with non-printable bytes escaped and
// limited in length so that a garbage header cannot produce a huge message.
std::string excerpt(const std::string& s, size_t max_len = 40) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max_len) out += "...";
  return out;
}

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// Recursive-descent parser for the restricted dict literal that numpy writes (and that
// hand-written files plausibly contain): string keys in any order, whitespace anywhere,
// optional trailing commas.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& name) : s_(text), name_(name) {}

  Header parse() {
    Header h;
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip_ws();
    expect('{', "'{' opening the header dict");
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const std::string key = parse_string("a quoted key");
      skip_ws();
      expect(':', fmt::format("':' after key '{}'", excerpt(key)));
      skip_ws();
      if (key == "descr") {
        if (have_descr) fail("key 'descr' appears twice");
        h.descr = parse_string("a quoted dtype string for 'descr'");
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_fortran) fail("key 'fortran_order' appears twice");
        h.fortran_order = parse_bool();
        have_fortran = true;
      } else if (key == "shape") {
        if (have_shape) fail("key 'shape' appears twice");
        h.shape = parse_shape();
        have_shape = true;
      } else {
        fail(fmt::format("unexpected key '{}' (expected 'descr', 'fortran_order', 'shape')", excerpt(key)));
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        break;
      }
      fail_expected("',' or '}' after a value");
    }
    skip_ws();
    if (pos_ != s_.size()) fail(fmt::format("unexpected text '{}' after the header dict", excerpt(s_.substr(pos_))));
    if (!have_descr) fail("header has no 'descr' key");
    if (!have_fortran) fail("header has no 'fortran_order' key");
    if (!have_shape) fail("header has no 'shape' key");
    return h;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw DataError(fmt::format("{}: malformed .npy header: {}", name_, what));
  }

  [[noreturn]] void fail_expected(const std::string& what) const {
    if (pos_ >= s_.size()) fail(fmt::format("expected {}, found end of header", what));
    fail(fmt::format("expected {} at offset {}, found '{}'", what, pos_, excerpt(s_.substr(pos_), 12)));
  }

  void expect(char c, const std::string& what) {
    if (peek() != c || pos_ >= s_.size()) fail_expected(what);
    ++pos_;
  }

  std::string parse_string(const std::string& what) {
    const char q = peek();
    if (pos_ >= s_.size() || (q != '\'' && q != '"')) fail_expected(what);
    ++pos_;
    const size_t end = s_.find(q, pos_);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }

  bool parse_bool() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail_expected("True or False for 'fortran_order'");
  }

  int64_t parse_dim() {
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') fail_expected("a non-negative integer dimension");
    int64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const int d = s_[pos_] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - d) / 10) fail("a shape dimension is too large");
      v = v * 10 + d;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 era writers appended 'L' to longs; numpy accepts it
    return v;
  }

  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(', "'(' opening the shape tuple");
    while (true) {
      skip_ws();
      if (peek() == ')') {
        ++pos_;
        break;
      }
      // 32 dimensions is numpy's own limit; more can only come from a corrupt header.
      if (shape.size() >= 32) fail("shape has more than 32 dimensions");
      shape.push_back(parse_dim());
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ')') {
        ++pos_;
        break;
      }
      fail_expected("',' or ')' in the shape tuple");
    }
    return shape;
  }

  const std::string& s_;
  const std::string& name_;
  size_t pos_ = 0;
};

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1) out += ",";
  out += ")";
  return out;
}

}  // namespace

int64_t NpyArray::numel() const {
  // A zero dimension first, so that (huge, huge, 0) is 0 without an overflowing product.
  for (int64_t d : shape)
    if (d == 0) return 0;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

using detail::ByteSource;

// The longest header accepted. numpy writes headers of well under 1 KiB (version 1.0 allows
// up to 65535 bytes, 2.0 up to 4 GiB) and its own reader refuses those over 10000 bytes unless
// told otherwise (max_header_size); a longer length field is a corrupt file.
constexpr size_t kMaxHeaderLen = 65536;

// A checked header: what read_stream knows before it reads the first value.
struct Layout {
  Header h;
  size_t item = 0;               // bytes per value
  uint64_t count = 0;            // values
  std::optional<uint64_t> left;  // bytes after the header, where known (== count * item)
  uint64_t data_offset = 0;      // bytes before the first value
};

// Reads and checks a .npy stream's magic, version, header length and header, and the data size
// the header declares against the stream's size where it is known.
Layout read_layout(ByteSource& src, const std::string& name) {
  char prefix[kMagicLen + 2 + 4];
  if (src.read(prefix, kMagicLen) < kMagicLen || std::memcmp(prefix, kMagic, kMagicLen) != 0)
    throw DataError(fmt::format("{}: not a .npy file (bad magic; expected \\x93NUMPY)", name));
  if (src.read(prefix + kMagicLen, 2) < 2)
    throw DataError(fmt::format("{}: truncated: file ends inside the version bytes", name));
  const int major = static_cast<unsigned char>(prefix[6]);
  const int minor = static_cast<unsigned char>(prefix[7]);
  size_t len_width;
  if (major == 1 && minor == 0)
    len_width = 2;
  else if ((major == 2 || major == 3) && minor == 0)
    len_width = 4;
  else
    throw DataError(
        fmt::format("{}: .npy format version {}.{} not supported (expected 1.0, 2.0 or 3.0)", name, major, minor));
  if (src.read(prefix + kMagicLen + 2, len_width) < len_width)
    throw DataError(fmt::format("{}: truncated: file ends inside the header length", name));
  const size_t header_len = read_le(prefix + kMagicLen + 2, len_width);
  const std::optional<uint64_t> after_prefix = src.remaining();
  if (after_prefix && header_len > *after_prefix)
    throw DataError(fmt::format("{}: truncated: header length is {} bytes, file holds {} after the prefix", name,
                                header_len, *after_prefix));
  if (header_len > kMaxHeaderLen)
    throw DataError(fmt::format("{}: header length {} bytes is more than the limit of {} (a corrupt file?)", name,
                                header_len, kMaxHeaderLen));
  std::string header_text(header_len, '\0');
  const size_t got_header = src.read(header_text.data(), header_len);
  if (got_header < header_len)
    throw DataError(fmt::format("{}: truncated: header length is {} bytes, file holds {} after the prefix", name,
                                header_len, got_header));

  const Header h = HeaderParser(header_text, name).parse();

  size_t item = 0;
  if (h.descr == "<f4")
    item = 4;
  else if (h.descr == "<f8")
    item = 8;
  else
    throw DataError(
        fmt::format("{}: dtype '{}' not supported (expected float32 '<f4' or float64 '<f8')", name, excerpt(h.descr)));
  if (h.fortran_order)
    throw DataError(fmt::format("{}: Fortran-order arrays are not supported (expected fortran_order False)", name));

  // The product of the non-zero dimensions must fit in int64 even when another dimension is
  // 0, so that NpyArray::numel() and callers multiplying dimensions cannot overflow.
  uint64_t count = 1;
  bool zero = false;
  for (int64_t d : h.shape) {
    if (d == 0) {
      zero = true;
      continue;
    }
    if (count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / static_cast<uint64_t>(d))
      throw DataError(
          fmt::format("{}: header shape {} is too large (its size overflows 64 bits)", name, shape_to_string(h.shape)));
    count *= static_cast<uint64_t>(d);
  }
  if (zero) count = 0;
  const auto truncated = [&](uint64_t available) {
    return DataError(fmt::format("{}: truncated: header says {} values, file holds {}", name, count, available));
  };
  const std::optional<uint64_t> left = src.remaining();
  if (left) {
    if (count > *left / item) throw truncated(*left / item);
    const uint64_t extra = *left - count * item;
    if (extra != 0)
      throw DataError(fmt::format("{}: {} unexpected bytes after the data (header says {} values of {} bytes)", name,
                                  extra, count, item));
  }
  return {h, item, count, left, kMagicLen + 2 + len_width + header_len};
}

// Reads a .npy stream piece by piece: the checked header (read_layout), then exactly the data
// it declares, decoded a chunk at a time.
NpyArray read_stream(ByteSource& src, const std::string& name) {
  const Layout layout = read_layout(src, name);
  const Header& h = layout.h;
  const size_t item = layout.item;
  const uint64_t count = layout.count;
  const std::optional<uint64_t>& left = layout.left;
  const auto truncated = [&](uint64_t available) {
    return DataError(fmt::format("{}: truncated: header says {} values, file holds {}", name, count, available));
  };

  NpyArray out;
  out.shape = h.shape;
  out.dtype = h.descr;
  // Only a count checked against the size is reserved at once; a stream of unknown size
  // grows with what arrives.
  if (left) out.data.reserve(static_cast<size_t>(count));
  // In values, not bytes: count * item may overflow where the size is not known.
  const size_t chunk_values = static_cast<size_t>(std::min<uint64_t>(count, (size_t{1} << 20) / item));
  std::vector<char> chunk(std::max<size_t>(chunk_values, 1) * item);
  uint64_t done = 0;
  while (done < count) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk_values, count - done));
    const size_t got = src.read(chunk.data(), want * item) / item;
    for (size_t i = 0; i < got; ++i)
      out.data.push_back(item == 8 ? decode_f8(chunk.data() + i * 8) : decode_f4(chunk.data() + i * 4));
    done += got;
    if (got < want) throw truncated(done);
  }
  if (!left && detail::has_more(src))
    throw DataError(
        fmt::format("{}: unexpected bytes after the data (header says {} values of {} bytes)", name, count, item));
  return out;
}

// A file read with a stream; its size is known if it is a regular file.
class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    if (!in_) throw DataError(fmt::format("{}: cannot open file", path));
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) {
      const auto size = std::filesystem::file_size(path, ec);
      if (!ec) size_ = size;
    }
  }

  size_t read(char* buf, size_t n) override {
    in_.read(buf, static_cast<std::streamsize>(n));
    if (in_.bad()) throw DataError(fmt::format("{}: read error", path_));
    const size_t got = static_cast<size_t>(in_.gcount());
    consumed_ += got;
    return got;
  }

  std::optional<uint64_t> remaining() const override {
    if (!size_) return std::nullopt;
    return *size_ > consumed_ ? *size_ - consumed_ : 0;
  }

 private:
  std::string path_;
  std::ifstream in_;
  std::optional<uint64_t> size_;
  uint64_t consumed_ = 0;
};

}  // namespace

NpyArray parse_npy(const std::string& bytes, const std::string& name) {
  detail::StringSource src(bytes);
  return read_stream(src, name);
}

NpyArray read_npy(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw DataError(fmt::format("{}: is a directory (expected a .npy file)", path));
  FileSource src(path);
  return read_stream(src, path);
}

NpyFileLayout read_npy_layout(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw DataError(fmt::format("{}: is a directory (expected a .npy file)", path));
  FileSource src(path);
  const Layout layout = read_layout(src, path);
  if (!layout.left) throw DataError(fmt::format("{}: not a regular file (its rows are read in place)", path));
  NpyFileLayout out;
  out.shape = layout.h.shape;
  out.dtype = layout.h.descr;
  out.item_size = layout.item;
  out.data_offset = layout.data_offset;
  return out;
}

void decode_npy_values(const char* bytes, size_t count, size_t item_size, double* out) {
  // '<f8' on a little-endian host is the identity: nothing to do in place, a memmove otherwise
  // (the byte loop below does not vectorise, and a 1 GB --thetas file passes through here).
  if (item_size == 8 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
    if (reinterpret_cast<const char*>(out) != bytes) std::memmove(out, bytes, count * 8);
    return;
  }
  // Front to back, so that float64 values may be decoded in place (bytes == out).
  if (item_size == 8)
    for (size_t i = 0; i < count; ++i) out[i] = decode_f8(bytes + i * 8);
  else
    for (size_t i = 0; i < count; ++i) out[i] = decode_f4(bytes + i * 4);
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<double>& data) {
  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0)
      throw DataError(fmt::format("{}: cannot write: negative dimension in shape {}", path, shape_to_string(shape)));
    if (d != 0 && count > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d))
      throw DataError(fmt::format("{}: cannot write: shape {} overflows", path, shape_to_string(shape)));
    count *= static_cast<uint64_t>(d);
  }
  if (count != data.size())
    throw DataError(fmt::format("{}: cannot write: shape {} holds {} values but {} were given", path,
                                shape_to_string(shape), count, data.size()));

  std::string header = fmt::format("{{'descr': '<f8', 'fortran_order': False, 'shape': {}, }}", shape_to_string(shape));
  // numpy pads so that the data starts at a multiple of 64 bytes; the header ends in '\n'.
  // Version 1.0 stores the header length in 16 bits; longer headers need version 2.0.
  auto padded = [&](size_t prefix) {
    const size_t total = prefix + header.size() + 1;
    return header.size() + (64 - total % 64) % 64 + 1;
  };
  const bool v1 = padded(10) <= 65535;
  const size_t prefix = v1 ? 10 : 12;
  header.append(padded(prefix) - header.size() - 1, ' ');
  header += '\n';

  std::string out(kMagic, kMagicLen);
  out += static_cast<char>(v1 ? 1 : 2);
  out += '\0';
  const uint32_t hl = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < (v1 ? 2u : 4u); ++i) out += static_cast<char>((hl >> (8 * i)) & 0xff);
  out += header;
  const size_t data_start = out.size();
  out.resize(data_start + data.size() * 8);
  for (size_t i = 0; i < data.size(); ++i) {
    uint64_t bits;
    std::memcpy(&bits, &data[i], sizeof bits);
    for (int b = 0; b < 8; ++b) out[data_start + i * 8 + b] = static_cast<char>((bits >> (8 * b)) & 0xff);
  }

  write_file_atomically(path, out, "array");
}

}  // namespace twosed
