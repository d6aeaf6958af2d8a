// Seeded randomized fuzz tests of the input parsers.
//
// Each test starts from valid inputs, applies random mutations (bit flips, byte inserts and
// deletes, truncation, duplicated chunks, random header numbers) and checks that the parser
// either succeeds with a self-consistent result or throws twosed::DataError /
// twosed::UsageError: never another exception type (std::bad_alloc included: gzip streams
// that inflate past their header and lines past the CSV caps must fail as DataError), never a
// crash (run under -fsanitize=address,undefined to catch memory errors). Seeds and iteration
// counts are fixed, so a failure reproduces exactly; the failing input is printed as a C
// string literal ready to be pasted into a TEST(FuzzRegression, ...) case below.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <typeinfo>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

#include "twosed/data/data.h"
#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/model/model_spec.h"
#include "twosed/random.h"
#include "twosed/store/spectra_file.h"

namespace {

using twosed::Rng;
using twosed::Stream;

// Iterations per fuzz test: enough to reach the error paths of every parser, small enough
// that the whole binary runs in a few seconds even with sanitizers. TWOSED_FUZZ_ITERATIONS
// overrides it for longer runs by hand; the seeds stay fixed, so any run is reproducible.
int iterations() {
  const char* env = std::getenv("TWOSED_FUZZ_ITERATIONS");
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : 20000;
}
const int kIterations = iterations();

std::string c_literal(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 400; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n')
      out += "\\n";
    else if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      out += "\"\"";
    }
  }
  if (s.size() > 400) out += "...";
  return out + "\"";
}

// Outcomes of one fuzz input, counted so that each test can check that it exercises both
// accepted and rejected inputs (a fuzzer whose inputs are all rejected at the first byte
// tests little).
struct Tally {
  int accepted = 0, rejected = 0, failed = 0;
};

// Calls `f`; DataError and UsageError are acceptable outcomes, anything else fails the test.
void run_guarded(const std::function<void()>& f, const std::string& what, const std::string& input, Tally& tally) {
  try {
    f();
    ++tally.accepted;
    return;
  } catch (const twosed::DataError&) {
    ++tally.rejected;
    return;
  } catch (const twosed::UsageError&) {
    ++tally.rejected;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": unexpected exception " << typeid(e).name() << ": " << e.what() << "\ninput ("
                  << input.size() << " bytes): " << c_literal(input);
  } catch (...) {
    ADD_FAILURE() << what << ": unexpected non-std exception\ninput: " << c_literal(input);
  }
  ++tally.failed;
}

void expect_both_outcomes(const Tally& t) {
  EXPECT_GT(t.accepted, 0);
  EXPECT_GT(t.rejected, 0);
  ::testing::Test::RecordProperty("accepted", t.accepted);
  ::testing::Test::RecordProperty("rejected", t.rejected);
}

const std::vector<std::string> kInterestingNumbers = {"0",
                                                      "1",
                                                      "2",
                                                      "3",
                                                      "-1",
                                                      "255",
                                                      "256",
                                                      "65535",
                                                      "65536",
                                                      "2147483647",
                                                      "2147483648",
                                                      "4294967295",
                                                      "4294967296",
                                                      "9223372036854775807",
                                                      "9223372036854775808",
                                                      "18446744073709551615",
                                                      "18446744073709551616",
                                                      "99999999999999999999999",
                                                      "1e308",
                                                      "1e309",
                                                      "nan",
                                                      "inf",
                                                      "-0",
                                                      "0.5",
                                                      "1.5",
                                                      "+1",
                                                      ""};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed, Stream::Data) {}

  uint64_t below(uint64_t n) { return rng_.below(n); }

  std::string mutate(std::string s) {
    const int rounds = 1 + static_cast<int>(below(4));
    for (int r = 0; r < rounds; ++r) s = mutate_once(std::move(s));
    return s;
  }

 private:
  std::string mutate_once(std::string s) {
    const size_t n = s.size();
    switch (below(9)) {
      case 0:  // flip one bit
        if (n) s[below(n)] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // overwrite a byte with a random or structurally meaningful one
        if (n) {
          static const char special[] = {'\0', '\n', '\r', ',', ';', '\t', '"', '\'',   ':',   '(',
                                         ')',  '{',  '}',  ' ', '-', '.',  'e', '\xff', '\x80'};
          s[below(n)] = below(2) ? static_cast<char>(below(256)) : special[below(sizeof special)];
        }
        break;
      case 2:  // insert a random byte
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(below(n + 1)), static_cast<char>(below(256)));
        break;
      case 3:  // delete a range
        if (n) {
          const size_t at = below(n);
          s.erase(at, 1 + below(std::min<size_t>(8, n - at)));
        }
        break;
      case 4:  // truncate
        s.resize(below(n + 1));
        break;
      case 5:  // duplicate a chunk
        if (n) {
          const size_t at = below(n), len = 1 + below(std::min<size_t>(32, n - at));
          const std::string chunk = s.substr(at, len);
          s.insert(below(s.size() + 1), chunk);
        }
        break;
      case 6:  // replace a run of digits by an interesting number
      {
        std::vector<size_t> starts;
        for (size_t i = 0; i < n; ++i)
          if (s[i] >= '0' && s[i] <= '9' && (i == 0 || s[i - 1] < '0' || s[i - 1] > '9')) starts.push_back(i);
        if (!starts.empty()) {
          const size_t at = starts[below(starts.size())];
          size_t end = at;
          while (end < n && s[end] >= '0' && s[end] <= '9') ++end;
          s.replace(at, end - at, kInterestingNumbers[below(kInterestingNumbers.size())]);
        }
        break;
      }
      case 7:  // overwrite a big-endian uint32 (binary headers) with an extreme value
        if (n >= 4) {
          static const uint32_t vals[] = {0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff, 0x803, 0x801, 255};
          const size_t at = below(std::min<size_t>(n - 3, 20));
          const uint32_t v = below(3) ? vals[below(sizeof vals / sizeof vals[0])] : static_cast<uint32_t>(rng_.next());
          for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * (3 - i))) & 0xff);
        }
        break;
      default:  // append junk
        for (uint64_t k = below(6); k > 0; --k) s += static_cast<char>(below(256));
        break;
    }
    return s;
  }

  Rng rng_;
};

// ---------------------------------------------------------------------------------------------
// .npy

std::string le(uint64_t v, int width) {
  std::string s;
  for (int i = 0; i < width; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

std::string npy_file(int major, const std::string& header, size_t data_bytes) {
  std::string out = std::string("\x93NUMPY") + static_cast<char>(major) + '\0';
  out += le(header.size(), major == 1 ? 2 : 4) + header;
  for (size_t i = 0; i < data_bytes; ++i) out += static_cast<char>(i * 37 + 11);
  return out;
}

std::vector<std::string> npy_seeds() {
  return {
      npy_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }          \n", 48),
      npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }\n", 20),
      npy_file(2, "{'shape': (), 'descr': '<f8', 'fortran_order': False}\n", 8),
      npy_file(3, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 1, 2)}", 16),
      npy_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4), }\n", 0),
  };
}

void check_npy(const std::string& bytes) {
  const twosed::NpyArray a = twosed::parse_npy(bytes, "fuzz.npy");
  EXPECT_EQ(static_cast<int64_t>(a.data.size()), a.numel());
  EXPECT_TRUE(a.dtype == "<f4" || a.dtype == "<f8");
}

TEST(FuzzParsers, NpyMutations) {
  const auto seeds = npy_seeds();
  for (const auto& s : seeds) check_npy(s);  // the seeds themselves are valid
  Mutator m(101);
  Tally tally;
  for (int it = 0; it < kIterations && tally.failed < 5; ++it) {
    const std::string input = m.mutate(seeds[m.below(seeds.size())]);
    run_guarded([&] { check_npy(input); }, "parse_npy", input, tally);
  }
  expect_both_outcomes(tally);
}

TEST(FuzzParsers, NpyRandomHeaders) {
  // Headers assembled from random parts: keys in random order, mostly valid values with some
  // implausible ones, and a data length that usually matches the shape.
  const std::vector<std::string> descrs = {"'<f8'",   "'<f4'", "'>f8'", "'|f8'", "'<i8'",
                                           "\"<f4\"", "'<f8",  "<f8",   "''",    "'<f16'"};
  const std::vector<std::string> fortran = {"True", "false", "0", "None", ""};
  Mutator m(202);
  Tally tally;
  for (int it = 0; it < kIterations && tally.failed < 5; ++it) {
    const std::string descr = m.below(2) ? descrs[m.below(2)] : descrs[m.below(descrs.size())];
    const size_t item = descr.find("f4") != std::string::npos ? 4 : 8;
    std::string shape = "(";
    size_t count = 1;
    const uint64_t dims = m.below(5);
    for (uint64_t d = 0; d < dims; ++d) {
      if (m.below(4)) {
        const uint64_t v = m.below(5);
        count *= v;
        shape += std::to_string(v);
      } else {
        shape += kInterestingNumbers[m.below(kInterestingNumbers.size())];
      }
      if (d + 1 < dims || dims == 1 || m.below(2)) shape += m.below(2) ? ", " : ",";
    }
    shape += m.below(20) ? ")" : "";
    std::vector<std::string> items = {"'descr': " + descr,
                                      "'fortran_order': " + (m.below(4) ? "False" : fortran[m.below(fortran.size())]),
                                      "'shape': " + shape};
    if (m.below(10) == 0) items.push_back("'extra': 1");
    if (m.below(10) == 0) items.pop_back();
    for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[m.below(i)]);
    std::string header = "{";
    for (size_t i = 0; i < items.size(); ++i) header += (i ? ", " : "") + items[i];
    header += std::string(m.below(2) ? ", }" : "}") + std::string(m.below(4), ' ') + "\n";
    const int major = static_cast<int>(1 + m.below(3));
    const size_t data_bytes = m.below(2) ? count * item : m.below(4) ? 8 * m.below(20) : m.below(100);
    const std::string input = npy_file(major, header, data_bytes);
    run_guarded([&] { check_npy(input); }, "parse_npy", input, tally);
  }
  expect_both_outcomes(tally);
}

// ---------------------------------------------------------------------------------------------
// CSV

std::vector<std::string> csv_seeds() {
  return {
      "a,b,label\n1,2,0\n3,4,1\n5,6,0\n",
      "1.5,-2e3,5\n3,4,7\n\n0,0,9\n",
      "x;y;z\r\n0.1;0.2;1\r\n0.3;0.4;2\r\n",
      "f1\tf2\tc\n1\t2\t3\n4\t5\t6\n",
      "\"q, 1\",\"r\"\"\",y\n\"1\",2,3\n4,\"5\",6\n",
      "\xEF\xBB\xBF"
      "h\n1\n2\n",
  };
}

std::vector<twosed::CsvOptions> csv_options() {
  std::vector<twosed::CsvOptions> out(6);
  out[1].label_column = "0";
  out[2].label_column = "label";
  out[3].has_labels = false;
  out[4].label_column = "99999999999999999999";
  out[5].label_column = "y";
  return out;
}

void check_csv(const std::string& text, const twosed::CsvOptions& opts) {
  const twosed::Dataset d = twosed::parse_csv(text, "fuzz.csv", opts);
  ASSERT_EQ(d.sample_shape.size(), 1u);
  ASSERT_GE(d.num_features(), 1);
  EXPECT_EQ(static_cast<int64_t>(d.x.size()), d.size() * d.num_features());
  EXPECT_GE(d.size(), 1);
  if (opts.has_labels) {
    EXPECT_EQ(static_cast<int64_t>(d.labels.size()), d.size());
    for (int64_t l : d.labels) EXPECT_TRUE(l >= 0 && l < d.num_classes);
  }
}

TEST(FuzzParsers, CsvMutations) {
  const auto seeds = csv_seeds();
  const auto opts = csv_options();
  Mutator m(303);
  Tally tally;
  for (int it = 0; it < kIterations && tally.failed < 5; ++it) {
    const std::string input = m.mutate(seeds[m.below(seeds.size())]);
    const twosed::CsvOptions& o = opts[m.below(opts.size())];
    run_guarded([&] { check_csv(input, o); }, "parse_csv", input, tally);
  }
  expect_both_outcomes(tally);
}

// ---------------------------------------------------------------------------------------------
// IDX

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * (3 - i))) & 0xff);
  return s;
}

void check_idx(const std::string& images, const std::string& labels) {
  const twosed::Dataset d = twosed::parse_idx(images, labels, "fuzz");
  ASSERT_EQ(d.sample_shape.size(), 3u);
  EXPECT_EQ(static_cast<int64_t>(d.x.size()), d.size() * d.num_features());
  for (double v : d.x) EXPECT_TRUE(v >= 0.0 && v <= 1.0);
  if (!labels.empty()) {
    EXPECT_EQ(static_cast<int64_t>(d.labels.size()), d.size());
    for (int64_t l : d.labels) EXPECT_TRUE(l >= 0 && l < d.num_classes);
  }
}

TEST(FuzzParsers, IdxMutations) {
  std::string images = be32(0x803) + be32(4) + be32(3) + be32(2);
  for (int i = 0; i < 24; ++i) images += static_cast<char>(i * 11);
  const std::string labels = be32(0x801) + be32(4) + std::string("\x03\x00\x01\x02", 4);
  check_idx(images, labels);
  Mutator m(404);
  Tally tally;
  for (int it = 0; it < kIterations && tally.failed < 5; ++it) {
    const uint64_t which = m.below(4);
    const std::string img = which != 1 ? m.mutate(images) : images;
    const std::string lab = which == 3 ? std::string() : which != 0 ? m.mutate(labels) : labels;
    run_guarded([&] { check_idx(img, lab); }, "parse_idx", img + "|" + lab, tally);
  }
  expect_both_outcomes(tally);
}

// ---------------------------------------------------------------------------------------------
// IDX files through zlib: random, truncated and padded gzip streams around a valid IDX file

// `bytes` as a gzip stream (as gzip(1) writes it), made in memory.
std::string gzip(const std::string& bytes) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out(deflateBound(&z, bytes.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return rc == Z_STREAM_END ? out : std::string();
}

void write_file(const std::string& path, const std::string& bytes) {
  // Removed first: ext4 flushes a file truncated and rewritten in place on close (auto_da_alloc),
  // which made each input cost milliseconds of waiting.
  std::filesystem::remove(path);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void check_idx_dataset(const twosed::Dataset& d, bool labels) {
  ASSERT_EQ(d.sample_shape.size(), 3u);
  EXPECT_EQ(static_cast<int64_t>(d.x.size()), d.size() * d.num_features());
  for (double v : d.x) EXPECT_TRUE(v >= 0.0 && v <= 1.0);
  if (labels) {
    EXPECT_EQ(static_cast<int64_t>(d.labels.size()), d.size());
    for (int64_t l : d.labels) EXPECT_TRUE(l >= 0 && l < d.num_classes);
  }
}

TEST(FuzzParsers, IdxGzipStreams) {
  std::string images = be32(0x803) + be32(6) + be32(3) + be32(2);
  for (int i = 0; i < 36; ++i) images += static_cast<char>(i * 7);
  const std::string labels = be32(0x801) + be32(6) + std::string("\x03\x00\x01\x02\x01\x00", 6);
  const std::string gz_images = gzip(images), gz_labels = gzip(labels);
  ASSERT_FALSE(gz_images.empty());
  const std::string dir = ::testing::TempDir() + "twosed_fuzz_idx_gz";
  std::filesystem::create_directories(dir);
  const std::string img_path = dir + "/images.gz", lab_path = dir + "/labels.gz";
  write_file(img_path, gz_images);
  write_file(lab_path, gz_labels);
  check_idx_dataset(twosed::load_idx(img_path, lab_path), true);

  // Each input is written to a file (the gzip layer is in the file reader), so fewer of them.
  const int n = std::max(kIterations / 20, 200);
  Mutator m(707);
  Tally tally;
  for (int it = 0; it < n && tally.failed < 5; ++it) {
    std::string img;
    switch (m.below(6)) {
      case 0:  // a corrupted gzip stream
        img = m.mutate(gz_images);
        break;
      case 1:  // a gzip stream cut short
        img = gz_images.substr(0, m.below(gz_images.size() + 1));
        break;
      case 2:  // random bytes behind a gzip magic
        img = m.below(2) ? "\x1f\x8b\x08" : "\x1f\x8b";
        for (uint64_t k = m.below(200); k > 0; --k) img += static_cast<char>(m.below(256));
        break;
      case 3:  // a valid stream of a corrupted file: the header checks behind zlib
        img = gzip(m.mutate(images));
        break;
      case 4:  // trailing data: zeros (a small gzip bomb) or junk, inside the stream
        img = gzip(images + (m.below(2) ? std::string(m.below(1 << 16), '\0') : m.mutate(images)));
        break;
      default:  // two members, or junk after a valid member
        img = gz_images + (m.below(2) ? gz_images : m.mutate(gz_images));
        break;
    }
    const bool with_labels = m.below(2);
    const std::string lab = with_labels && m.below(3) == 0 ? gzip(m.mutate(labels)) : gz_labels;
    write_file(img_path, img);
    write_file(lab_path, lab);
    run_guarded(
        [&] {
          if (m.below(4) == 0) {
            check_idx_dataset(twosed::load_idx_subset(img_path, with_labels ? lab_path : "", 3, it), with_labels);
          } else {
            check_idx_dataset(twosed::load_idx(img_path, with_labels ? lab_path : ""), with_labels);
          }
        },
        "load_idx (gzip)", img, tally);
  }
  expect_both_outcomes(tally);
}

// ---------------------------------------------------------------------------------------------
// CSV lines of extreme length: around the 16 MiB line cap and the 1,000,000-field cap

TEST(FuzzParsers, CsvExtremeLines) {
  const size_t cap = size_t{16} << 20;
  static const char alphabet[] = "0123456789,.-+e \"\t;\r";
  twosed::CsvOptions no_labels;
  no_labels.has_labels = false;
  Mutator m(808);
  Tally tally;
  for (int it = 0; it < 8 && tally.failed < 5; ++it) {
    const size_t len = cap - 2 + m.below(5);  // cap-2 .. cap+2
    std::string line;
    line.reserve(len);
    switch (it % 4) {
      case 0:  // one long number
        line.assign(len, '0');
        line.back() = '7';
        break;
      case 1:  // random characters: many short fields
        for (size_t i = 0; i < len; ++i) line += alphabet[m.below(sizeof alphabet - 1)];
        break;
      case 2:  // fields of one digit, up to about 8 million of them
        while (line.size() + 2 <= len) line += "1,";
        line.resize(len, '1');
        break;
      default:  // one quoted field, sometimes unterminated
        line = "\"" + std::string(len - 2, '5') + (m.below(2) ? "\"" : "5");
        break;
    }
    const std::string text = "x\n" + line + "\n" + (m.below(2) ? "1\n" : "");
    run_guarded([&] { check_csv(text, no_labels); }, "parse_csv (long line)", text.substr(0, 64), tally);
  }
  // Lines around the field cap.
  for (const int fields : {999999, 1000000, 1000001}) {
    const std::string field = m.below(2) ? ",1" : ";2";
    std::string line = "0";
    for (int i = 1; i < fields; ++i) line += field;
    const std::string text = line + "\n";
    run_guarded([&] { check_csv(text, twosed::CsvOptions{}); }, "parse_csv (many fields)", text.substr(0, 64), tally);
  }
  expect_both_outcomes(tally);
}

// ---------------------------------------------------------------------------------------------
// Data-source strings

TEST(FuzzParsers, DataSpecMutations) {
  const std::vector<std::string> seeds = {"csv:data/x.csv",
                                          "csv:x.csv:label=3",
                                          "idx:/data/mnist",
                                          "idx:a.gz,b.gz",
                                          "synthetic:blobs:3:5",
                                          "synthetic:blobs:3:5:200",
                                          "synthetic:teacher:mlp:20-32-5",
                                          "synthetic:teacher:cnn:1x8x8-c4k3-relu-f3:64"};
  for (const auto& s : seeds) EXPECT_NO_THROW(twosed::parse_data_spec(s)) << s;
  Mutator m(505);
  Tally tally;
  for (int it = 0; it < kIterations && tally.failed < 5; ++it) {
    const std::string input = m.mutate(seeds[m.below(seeds.size())]);
    run_guarded(
        [&] {
          const twosed::DataSpec s = twosed::parse_data_spec(input);
          if (s.kind == twosed::DataSpec::Kind::Blobs) {
            EXPECT_GE(s.classes, 1);
            EXPECT_GE(s.dim, 1);
          }
          EXPECT_GE(s.count, 1);
        },
        "parse_data_spec", input, tally);
  }
  expect_both_outcomes(tally);
}

// ---------------------------------------------------------------------------------------------
// Model spec strings

TEST(FuzzParsers, ModelSpecMutations) {
  const std::vector<std::string> seeds = {"mlp:20-32-5",
                                          "mlp:784-64-32-10",
                                          "cnn:1x8x8-c4k3-relu-f3",
                                          "cnn:3x32x32-c32k3-relu-p2-c64k3-relu-p2-f256-relu-f10",
                                          "cnn:1x28x28-c8k5s2p2-tanh-a2s1-flatten-f10",
                                          "cnn:2x9x9-c3k3s2-gelu-c2k2p1-sigmoid-p2s1-f4"};
  for (const auto& s : seeds) EXPECT_NO_THROW(twosed::parse_model_spec(s)) << s;
  Mutator m(606);
  Tally tally;
  for (int it = 0; it < kIterations && tally.failed < 5; ++it) {
    const std::string input = m.mutate(seeds[m.below(seeds.size())]);
    run_guarded(
        [&] {
          const auto spec = twosed::parse_model_spec(input);
          // Whatever parses must be a consistent network: shapes chain, counts positive.
          EXPECT_GE(spec.num_params(), 1);
          EXPECT_GE(spec.num_outputs(), 1);
          auto shape = spec.input_shape;
          for (const auto& l : spec.layers) {
            if (l.kind != twosed::LayerKind::Linear) {
              EXPECT_EQ(l.in_shape, shape) << input;
            }
            for (int64_t v : l.out_shape) EXPECT_GE(v, 1) << input;
            shape = l.out_shape;
          }
        },
        "parse_model_spec", input, tally);
  }
  expect_both_outcomes(tally);
}

// ---------------------------------------------------------------------------------------------
// Regression inputs: inputs found by the fuzz tests above that once misbehaved.

// Found by NpyRandomHeaders under -fsanitize=undefined: a shape with a zero dimension was
// accepted as empty although its other dimensions multiplied past INT64_MAX, and
// NpyArray::numel() then overflowed (undefined behaviour). Such shapes are now rejected.
TEST(FuzzRegression, NpyZeroSizedShapeWithHugeDimensions) {
  const std::string input =
      npy_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775807, 2, 0), }\n", 0);
  try {
    const twosed::NpyArray a = twosed::parse_npy(input, "fuzz.npy");
    FAIL() << "accepted a shape whose size overflows; numel() = " << a.numel();
  } catch (const twosed::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("fuzz.npy: header shape"), std::string::npos) << e.what();
  }
  // numel() itself must not overflow on such a shape, however it was made.
  twosed::NpyArray made;
  made.shape = {std::numeric_limits<int64_t>::max(), 2, 0};
  EXPECT_EQ(made.numel(), 0);
}

// Found by the fuzz_spectra libFuzzer harness under -fsanitize=undefined: a spectra header whose
// integer keys held floats ("d": 1e300) went through nlohmann's unchecked float-to-int cast
// (undefined behaviour out of range, truncation inside it). Integer keys are now checked.
TEST(FuzzRegression, SpectraHeaderFloatWhereAnIntegerBelongs) {
  const std::string path = (std::filesystem::temp_directory_path() / "twosed_fuzz_regression.jsonl").string();
  const std::string sample = "{\"sample\": 0, \"trace\": 1, \"cut\": 0, \"eigenvalues\": [1]}\n";
  for (const std::string value : {"1e300", "2.5", "-1e300"}) {
    {
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f << "{\"N\":4,\"d\":" << value
        << ",\"fisher\":\"exact\",\"k\":2,\"model\":\"mlp:4-3-2\",\"seed\":0,\"task\":\"classify\","
           "\"twosed_spectra\":1}\n"
        << sample;
    }
    try {
      twosed::read_spectra(path);
      FAIL() << "accepted \"d\": " << value;
    } catch (const twosed::DataError& e) {
      EXPECT_NE(std::string(e.what()).find("key \"d\" must be an integer"), std::string::npos) << e.what();
    }
  }
  std::filesystem::remove(path);
}

}  // namespace
