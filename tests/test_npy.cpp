// Tests of the .npy reader and writer (include/twosed/npy.h).

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "stream_helpers.h"
#include "twosed/data/npy.h"
#include "twosed/data/write_file.h"
#include "twosed/error.h"

namespace {

using twosed::DataError;
using twosed::NpyArray;
using twosed::testing::FifoFeed;
using twosed::testing::peak_rss_bytes;

std::string temp_path(const std::string& file) {
  return ::testing::TempDir() + "twosed_test_npy_" + file;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A .npy file built by hand: magic, version, little-endian header length, header, data.
std::string make_npy(int major, const std::string& header, const std::string& data) {
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const uint32_t len = static_cast<uint32_t>(header.size());
  const int width = major == 1 ? 2 : 4;
  for (int i = 0; i < width; ++i) out += static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string f8_bytes(const std::vector<double>& v) {
  std::string out;
  for (double d : v) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    for (int i = 0; i < 8; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  }
  return out;
}

std::string f4_bytes(const std::vector<float>& v) {
  std::string out;
  for (float d : v) {
    uint32_t bits;
    std::memcpy(&bits, &d, 4);
    for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  }
  return out;
}

std::string header_for(const std::string& descr, const std::string& shape, const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
}

// Asserts that `f` throws DataError whose message contains every one of `parts`.
template <class F>
void expect_data_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  } catch (const std::exception& e) {
    FAIL() << "expected DataError, got another exception: " << e.what();
  }
}

TEST(Npy, RoundTrip2D) {
  const std::string path = temp_path("rt2d.npy");
  const std::vector<double> data = {1.0, -2.5, 3.25, 1e-300, 1e300, 0.1};
  twosed::write_npy(path, {2, 3}, data);
  const NpyArray a = twosed::read_npy(path);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.dtype, "<f8");
  EXPECT_EQ(a.numel(), 6);
  EXPECT_EQ(a.data, data);
}

TEST(Npy, RoundTrip1DScalarAndEmpty) {
  const std::string path = temp_path("rt1d.npy");
  twosed::write_npy(path, {4}, {1, 2, 3, 4});
  NpyArray a = twosed::read_npy(path);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(a.data, (std::vector<double>{1, 2, 3, 4}));

  twosed::write_npy(path, {}, {42.0});
  a = twosed::read_npy(path);
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.numel(), 1);
  EXPECT_EQ(a.data, (std::vector<double>{42.0}));

  twosed::write_npy(path, {0, 5}, {});
  a = twosed::read_npy(path);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(a.numel(), 0);
  EXPECT_TRUE(a.data.empty());
}

TEST(Npy, WrittenFileIsStandardVersion1WithAlignedData) {
  const std::string path = temp_path("layout.npy");
  twosed::write_npy(path, {3}, {1, 2, 3});
  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(bytes[6], 1);
  EXPECT_EQ(bytes[7], 0);
  const size_t hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  EXPECT_EQ(bytes[10 + hlen - 1], '\n');
  EXPECT_NE(bytes.find("'shape': (3,)"), std::string::npos);
  EXPECT_EQ(bytes.size(), 10 + hlen + 24);
}

TEST(Npy, NanAndInfAreReadBack) {
  const std::string path = temp_path("nan.npy");
  const double inf = std::numeric_limits<double>::infinity();
  twosed::write_npy(path, {3}, {std::nan(""), inf, -inf});
  const NpyArray a = twosed::read_npy(path);
  ASSERT_EQ(a.data.size(), 3u);
  EXPECT_TRUE(std::isnan(a.data[0]));
  EXPECT_EQ(a.data[1], inf);
  EXPECT_EQ(a.data[2], -inf);
}

TEST(Npy, Float32FileIsConverted) {
  const std::string path = temp_path("f4.npy");
  write_bytes(path, make_npy(1, header_for("<f4", "(2, 2)"), f4_bytes({1.5f, -2.25f, 3.0f, 0.1f})));
  const NpyArray a = twosed::read_npy(path);
  EXPECT_EQ(a.dtype, "<f4");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(a.data, (std::vector<double>{1.5, -2.25, 3.0, static_cast<double>(0.1f)}));
}

TEST(Npy, Version2And3Headers) {
  for (int major : {2, 3}) {
    const std::string bytes = make_npy(major, header_for("<f8", "(3,)"), f8_bytes({7, 8, 9}));
    const NpyArray a = twosed::parse_npy(bytes, "v.npy");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{3}));
    EXPECT_EQ(a.data, (std::vector<double>{7, 8, 9}));
  }
}

TEST(Npy, HeaderVariantsParse) {
  const std::vector<std::string> headers = {
      "{'shape': (2,), 'fortran_order': False, 'descr': '<f8'}",
      "{ \"descr\" : \"<f8\" , \"fortran_order\":False,\"shape\":( 2 , ) , }   \n",
      "{'fortran_order': False, 'descr': '<f8', 'shape': (2L,),}\n",
      "{'descr':'<f8','fortran_order':False,'shape':(2,)}",
  };
  for (const auto& h : headers) {
    const NpyArray a = twosed::parse_npy(make_npy(1, h, f8_bytes({1, 2})), "h.npy");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2})) << h;
    EXPECT_EQ(a.data, (std::vector<double>{1, 2})) << h;
  }
  const NpyArray s = twosed::parse_npy(make_npy(1, header_for("<f8", "()"), f8_bytes({5})), "s.npy");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.data, (std::vector<double>{5}));
}

TEST(NpyErrors, MissingFile) {
  expect_data_error([] { twosed::read_npy(temp_path("does_not_exist.npy")); },
                    {"does_not_exist.npy", "cannot open file"});
}

TEST(NpyErrors, BadMagic) {
  expect_data_error([] { twosed::parse_npy("PK\x03\x04 not numpy at all", "x.npy"); },
                    {"x.npy", "bad magic", "\\x93NUMPY"});
  expect_data_error([] { twosed::parse_npy("", "x.npy"); }, {"x.npy", "bad magic"});
}

TEST(NpyErrors, UnsupportedVersion) {
  std::string bytes = make_npy(1, header_for("<f8", "(1,)"), f8_bytes({1}));
  bytes[6] = 4;
  expect_data_error([&] { twosed::parse_npy(bytes, "x.npy"); },
                    {"x.npy", "version 4.0 not supported", "expected 1.0, 2.0 or 3.0"});
}

TEST(NpyErrors, UnsupportedDtypes) {
  const std::string data = f8_bytes({1, 2});
  expect_data_error([&] { twosed::parse_npy(make_npy(1, header_for("<i8", "(2,)"), data), "x.npy"); },
                    {"x.npy: dtype '<i8' not supported (expected float32 '<f4' or float64 '<f8')"});
  expect_data_error([&] { twosed::parse_npy(make_npy(1, header_for("|f8", "(2,)"), data), "x.npy"); },
                    {"x.npy", "dtype '|f8' not supported"});
  expect_data_error([&] { twosed::parse_npy(make_npy(1, header_for(">f8", "(2,)"), data), "x.npy"); },
                    {"x.npy", "dtype '>f8' not supported"});
}

TEST(NpyErrors, FortranOrder) {
  const std::string path = temp_path("fortran.npy");
  write_bytes(path, make_npy(1, header_for("<f8", "(1, 2)", "True"), f8_bytes({1, 2})));
  expect_data_error([&] { twosed::read_npy(path); }, {path + ": Fortran-order arrays are not supported"});
}

TEST(NpyErrors, TruncatedData) {
  const std::string path = temp_path("trunc.npy");
  write_bytes(path, make_npy(1, header_for("<f8", "(3, 4)"), f8_bytes({1, 2, 3, 4, 5, 6, 7}) + "abc"));
  expect_data_error([&] { twosed::read_npy(path); }, {path + ": truncated: header says 12 values, file holds 7"});
}

TEST(NpyErrors, TruncatedHeader) {
  const std::string full = make_npy(1, header_for("<f8", "(1,)"), f8_bytes({1}));
  expect_data_error([&] { twosed::parse_npy(full.substr(0, 7), "x.npy"); }, {"x.npy", "truncated"});
  expect_data_error([&] { twosed::parse_npy(full.substr(0, 9), "x.npy"); }, {"x.npy", "truncated"});
  expect_data_error([&] { twosed::parse_npy(full.substr(0, 30), "x.npy"); }, {"x.npy", "truncated", "header length"});
}

TEST(NpyErrors, TrailingBytes) {
  expect_data_error(
      [&] {
        twosed::parse_npy(make_npy(1, header_for("<f8", "(1,)"), f8_bytes({1, 2})), "x.npy");
      },
      {"x.npy", "8 unexpected bytes after the data"});
}

TEST(NpyErrors, MalformedHeaders) {
  const std::string data = f8_bytes({1});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{'descr': '<f8', 'fortran_order': False}", "no 'shape' key"},
      {"{'fortran_order': False, 'shape': (1,)}", "no 'descr' key"},
      {"{'descr': '<f8', 'shape': (1,)}", "no 'fortran_order' key"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1}", "unexpected key 'extra'"},
      {"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", "appears twice"},
      {"{'descr': '<f8', 'fortran_order': false, 'shape': (1,)}", "True or False"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", "non-negative integer"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': [1]}", "'(' opening the shape tuple"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (1 1)}", "',' or ')'"},
      {"{'descr': '<f8, 'fortran_order': False, 'shape': (1,)}", "malformed"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", "end of header"},
      {"'descr': '<f8'", "'{' opening the header dict"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} junk", "after the header dict"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}", "too large"},
  };
  for (const auto& c : cases)  // not a structured binding: C++17 lambdas cannot capture one (clang)
    expect_data_error([&] { twosed::parse_npy(make_npy(1, c.first, data), "x.npy"); },
                      {"x.npy: malformed .npy header", c.second});
}

TEST(NpyErrors, AbsurdShapesDoNotAllocate) {
  // Products that overflow 64 bits, and huge but representable ones, are both rejected by
  // comparison with the bytes actually present.
  const std::string data = f8_bytes({1, 2});
  expect_data_error(
      [&] { twosed::parse_npy(make_npy(1, header_for("<f8", "(4294967296, 4294967296, 4294967296)"), data), "x.npy"); },
      {"x.npy", "overflows"});
  expect_data_error(
      [&] { twosed::parse_npy(make_npy(1, header_for("<f8", "(1000000000, 1000000000)"), data), "x.npy"); },
      {"x.npy", "truncated: header says 1000000000000000000 values, file holds 2"});
  // A zero dimension makes the array empty, but the other dimensions must still have a
  // representable product.
  const NpyArray a = twosed::parse_npy(make_npy(1, header_for("<f8", "(4294967296, 0, 7)"), ""), "x.npy");
  EXPECT_EQ(a.data.size(), 0u);
  EXPECT_EQ(a.numel(), 0);
  expect_data_error(
      [&] {
        twosed::parse_npy(make_npy(1, header_for("<f8", "(4294967296, 4294967296, 4294967296, 0)"), ""), "x.npy");
      },
      {"x.npy", "overflows"});
}

TEST(NpyErrors, WriteShapeMismatchAndUnwritablePath) {
  const std::string path = temp_path("mismatch.npy");
  expect_data_error([&] { twosed::write_npy(path, {2, 3}, {1, 2, 3}); }, {path, "holds 6 values but 3 were given"});
  expect_data_error([&] { twosed::write_npy(path, {-1}, {}); }, {path, "negative dimension"});
  const std::string bad = temp_path("no_such_dir/x.npy");
  expect_data_error([&] { twosed::write_npy(bad, {1}, {1}); }, {bad, "cannot write array: No such file or directory"});
}

// write_file_atomically: every write error is reported, and a failed write leaves no partial
// file (no temporary, the old contents intact).
TEST(WriteFile, DeviceFullIsAnErrorNamingTheFile) {
  expect_data_error([] { twosed::write_file_atomically("/dev/full", "some text", "output"); },
                    {"/dev/full: cannot write output: No space left on device"});
  expect_data_error([] { twosed::write_npy("/dev/full", {2}, {1, 2}); }, {"/dev/full", "No space left on device"});
}

// A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes write() fail with EFBIG as a full disk
// fails with ENOSPC: the stand-in for a full file system that a test can set up without mounting.
TEST(WriteFile, WriteErrorKeepsTheOldFileAndRemovesTheTemporary) {
  const std::string dir = temp_path("wf_dir");
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/x.csv";
  twosed::write_file_atomically(path, "old contents\n");
  EXPECT_EQ(read_bytes(path), "old contents\n");
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string error;
  try {
    twosed::write_file_atomically(path, std::string(100000, 'x'), "output");
  } catch (const twosed::DataError& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(error.find(path + ": cannot write output: File too large"), std::string::npos) << error;
  EXPECT_EQ(read_bytes(path), "old contents\n");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1) << "a temporary file was left in " << dir;
  twosed::write_file_atomically(path, "new\n");
  EXPECT_EQ(read_bytes(path), "new\n");
}

TEST(WriteFile, CheckWritableBeforeTheRun) {
  const std::string dir = temp_path("cw_dir");
  ::mkdir(dir.c_str(), 0755);
  EXPECT_NO_THROW(twosed::check_writable(dir + "/new.json", "output"));
  EXPECT_NO_THROW(twosed::check_writable("/dev/full", "output"));  // fails only when written
  expect_data_error([&] { twosed::check_writable(dir, "output"); }, {dir, "is a directory"});
  expect_data_error([&] { twosed::write_file_atomically(dir, "x", "output"); }, {dir, "is a directory"});
  expect_data_error([&] { twosed::check_writable(dir + "/missing/x.json", "output"); },
                    {"missing/x.json: cannot write output: directory", "No such file or directory"});
  const std::string file = dir + "/plain";
  twosed::write_file_atomically(file, "x");
  expect_data_error([&] { twosed::check_writable(file + "/x.json", "output"); }, {"is not a directory"});
}

// ---------------------------------------------------------------------------------------------
// Bounded reads: the magic and the header are checked before the data is read, and a stream
// is never read past what its header declares.

// Regression: --inputs-file /dev/zero read 2.2 GB before "bad magic".
TEST(NpyBounded, DevZeroFailsAtTheMagic) {
  const auto t0 = std::chrono::steady_clock::now();
  expect_data_error([] { twosed::read_npy("/dev/zero"); },
                    {"/dev/zero: not a .npy file (bad magic; expected \\x93NUMPY)"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
}

TEST(NpyBounded, HeaderLengthIsCapped) {
  // A version 1.0 header may use all of its 16-bit length; 2.0 and 3.0 up to 65536 bytes.
  const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
  const auto padded = [&](size_t len) { return dict + std::string(len - dict.size() - 1, ' ') + "\n"; };
  EXPECT_EQ(twosed::parse_npy(make_npy(1, padded(65535), f8_bytes({4})), "x.npy").data, (std::vector<double>{4}));
  EXPECT_EQ(twosed::parse_npy(make_npy(2, padded(65536), f8_bytes({4})), "x.npy").data, (std::vector<double>{4}));
  expect_data_error([&] { twosed::parse_npy(make_npy(2, padded(65537), f8_bytes({4})), "x.npy"); },
                    {"x.npy: header length 65537 bytes is more than the limit of 65536"});
  // In a file too, before the header is read.
  const std::string path = temp_path("long_header.npy");
  write_bytes(path, make_npy(3, padded(1 << 20), f8_bytes({4})));
  expect_data_error([&] { twosed::read_npy(path); }, {path + ": header length 1048576 bytes is more than the limit"});
}

TEST(NpyBounded, DeclaredSizeIsCheckedAgainstTheFileBeforeAllocating) {
  const std::string path = temp_path("absurd.npy");
  write_bytes(path, make_npy(1, header_for("<f8", "(1000000000, 1000000000)"), f8_bytes({1, 2})));
  const int64_t rss0 = peak_rss_bytes();
  expect_data_error([&] { twosed::read_npy(path); },
                    {path + ": truncated: header says 1000000000000000000 values, file holds 2"});
  write_bytes(path, make_npy(1, header_for("<f4", "(3,)"), f4_bytes({1, 2, 3}) + "xy"));
  expect_data_error([&] { twosed::read_npy(path); },
                    {path + ": 2 unexpected bytes after the data (header says 3 values of 4 bytes)"});
  EXPECT_LT(peak_rss_bytes() - rss0, int64_t{32} << 20);
}

TEST(NpyBounded, PipesAreReadToTheDeclaredSize) {
  const std::string fifo = temp_path("pipe.npy");
  {
    FifoFeed feed(fifo, make_npy(1, header_for("<f8", "(2, 2)"), f8_bytes({1, 2, 3, 4})));
    const NpyArray a = twosed::read_npy(fifo);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(a.data, (std::vector<double>{1, 2, 3, 4}));
  }
  {
    FifoFeed feed(fifo, make_npy(1, header_for("<f8", "(2,)"), f8_bytes({1, 2}) + std::string(size_t{8} << 20, 'x')));
    expect_data_error([&] { twosed::read_npy(fifo); },
                      {fifo + ": unexpected bytes after the data (header says 2 values of 8 bytes)"});
  }
  {
    // A huge declared count over a short stream: only what arrives is held.
    const int64_t rss0 = peak_rss_bytes();
    FifoFeed feed(fifo, make_npy(1, header_for("<f8", "(1000000000, 1000000000)"), f8_bytes({1, 2}) + "abc"));
    expect_data_error([&] { twosed::read_npy(fifo); },
                      {fifo + ": truncated: header says 1000000000000000000 values, file holds 2"});
    EXPECT_LT(peak_rss_bytes() - rss0, int64_t{32} << 20);
  }
  {
    FifoFeed feed(fifo, std::string("\x93NUMPY\x01\x00\x40", 9));
    expect_data_error([&] { twosed::read_npy(fifo); }, {fifo + ": truncated: file ends inside the header length"});
  }
}

}  // namespace
