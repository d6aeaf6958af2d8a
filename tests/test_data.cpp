// Tests of the data loaders and helpers (include/twosed/data.h).

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

#include "stream_helpers.h"
#include "twosed/data/data.h"
#include "twosed/error.h"

namespace {

using twosed::CsvOptions;
using twosed::DataError;
using twosed::Dataset;
using twosed::DataSpec;
using twosed::UsageError;
using twosed::testing::FifoFeed;
using twosed::testing::peak_rss_bytes;

// A fresh directory under the gtest temp dir for one test.
std::string temp_dir(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(::testing::TempDir()) / ("twosed_test_data_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// Writes `bytes` and then `zeros` zero bytes, gzip-compressed, a piece at a time, so that the
// test itself holds no large buffer (its peak memory is measured).
void write_gz_padded(const std::string& path, const std::string& bytes, size_t zeros) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  const std::vector<char> block(size_t{1} << 20, '\0');
  for (size_t done = 0; done < zeros;) {
    const unsigned k = static_cast<unsigned>(std::min(block.size(), zeros - done));
    ASSERT_EQ(gzwrite(f, block.data(), k), static_cast<int>(k));
    done += k;
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class E, class F>
void expect_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL() << "expected an exception";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  } catch (const std::exception& e) {
    FAIL() << "wrong exception type: " << e.what();
  }
}

template <class F>
void expect_data_error(F f, const std::vector<std::string>& parts) {
  expect_error<DataError>(f, parts);
}

template <class F>
void expect_usage_error(F f, const std::vector<std::string>& parts) {
  expect_error<UsageError>(f, parts);
}

// ---------------------------------------------------------------------------------------------
// CSV

TEST(Csv, HeaderAndDefaultLastLabelColumn) {
  const Dataset d = twosed::parse_csv("a,b,label\n1,2,0\n3,4,1\n5,6,0\n", "t.csv");
  EXPECT_EQ(d.source, "t.csv");
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.num_features(), 2);
  EXPECT_EQ(d.x, (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{0, 1, 0}));
  EXPECT_EQ(d.num_classes, 2);
}

TEST(Csv, NoHeader) {
  const Dataset d = twosed::parse_csv("1.5,-2e3,1\n3,4,2\n0,0,0\n", "t.csv");
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.x, (std::vector<double>{1.5, -2000, 3, 4, 0, 0}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{1, 2, 0}));
  EXPECT_EQ(d.num_classes, 3);
}

TEST(Csv, LabelByNameAndByIndex) {
  const std::string text = "y,a,b\n1,10,20\n0,30,40\n";
  CsvOptions by_name;
  by_name.label_column = "y";
  Dataset d = twosed::parse_csv(text, "t.csv", by_name);
  EXPECT_EQ(d.x, (std::vector<double>{10, 20, 30, 40}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{1, 0}));

  CsvOptions by_index;
  by_index.label_column = "1";  // column 'a'
  d = twosed::parse_csv(text, "t.csv", by_index);
  EXPECT_EQ(d.x, (std::vector<double>{1, 20, 0, 40}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{0, 1}));  // 10, 30 remapped
  EXPECT_EQ(d.num_classes, 2);

  by_index.label_column = "0";
  d = twosed::parse_csv("1,10\n0,30\n", "t.csv", by_index);
  EXPECT_EQ(d.labels, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(d.x, (std::vector<double>{10, 30}));
}

TEST(Csv, NoLabels) {
  CsvOptions opts;
  opts.has_labels = false;
  const Dataset d = twosed::parse_csv("1,2,3\n4,5,6\n", "t.csv", opts);
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{3}));
  EXPECT_TRUE(d.labels.empty());
  EXPECT_EQ(d.num_classes, 0);
  // A single column is fine without labels.
  const Dataset one = twosed::parse_csv("1\n2\n", "t.csv", opts);
  EXPECT_EQ(one.x, (std::vector<double>{1, 2}));
}

TEST(Csv, LabelsAreRemappedInSortedOrder) {
  const Dataset d = twosed::parse_csv("1,9\n2,5\n3,7\n4,5\n5,9.0\n", "t.csv");
  EXPECT_EQ(d.labels, (std::vector<int64_t>{2, 0, 1, 0, 2}));
  EXPECT_EQ(d.num_classes, 3);
  const Dataset neg = twosed::parse_csv("1,-1\n2,1\n", "t.csv");
  EXPECT_EQ(neg.labels, (std::vector<int64_t>{0, 1}));
  // Exactly 0..K-1 (in any order) is kept.
  const Dataset keep = twosed::parse_csv("1,2\n2,0\n3,1\n", "t.csv");
  EXPECT_EQ(keep.labels, (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(keep.num_classes, 3);
}

TEST(Csv, SeparatorsBlankLinesSpacesAndCrLf) {
  Dataset d = twosed::parse_csv("a;b;c\n1;2;0\n3;4;1\n", "t.csv");
  EXPECT_EQ(d.x, (std::vector<double>{1, 2, 3, 4}));
  d = twosed::parse_csv("1\t2\t0\n3\t4\t1\n", "t.tsv");
  EXPECT_EQ(d.x, (std::vector<double>{1, 2, 3, 4}));
  d = twosed::parse_csv("\n  \na , b , c\r\n\r\n 1 , 2 ,0\r\n\n3,4, 1 \r\n\n", "t.csv");
  EXPECT_EQ(d.x, (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{0, 1}));
  d = twosed::parse_csv(
      "\xEF\xBB\xBF"
      "1,2,0\n3,4,1",
      "t.csv");  // BOM, no final newline
  EXPECT_EQ(d.x, (std::vector<double>{1, 2, 3, 4}));
}

TEST(Csv, QuotedFields) {
  const Dataset d = twosed::parse_csv("\"x, 1\",\"y\"\"\",\"class\"\n\"1\",2,\"3\"\n4,5,6\n", "t.csv");
  EXPECT_EQ(d.x, (std::vector<double>{1, 2, 4, 5}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{0, 1}));
  CsvOptions opts;
  opts.label_column = "x, 1";
  const Dataset e = twosed::parse_csv("\"x, 1\",\"y\"\n1,2\n", "t.csv", opts);
  EXPECT_EQ(e.x, (std::vector<double>{2}));
}

TEST(Csv, LoadFromFile) {
  const std::string dir = temp_dir("csv_file");
  const std::string path = dir + "/d.csv";
  write_bytes(path, "f1,f2,y\n0.5,1.5,3\n2.5,3.5,4\n");
  const Dataset d = twosed::load_csv(path);
  EXPECT_EQ(d.source, path);
  EXPECT_EQ(d.x, (std::vector<double>{0.5, 1.5, 2.5, 3.5}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{0, 1}));
}

TEST(CsvErrors, WrongFieldCountUsesOriginalLineNumber) {
  expect_data_error([] { twosed::parse_csv("a,b,c\n\n1,2,3\n\n4,5\n", "t.csv"); },
                    {"t.csv:5: expected 3 fields, found 2"});
  expect_data_error([] { twosed::parse_csv("1,2\n3,4,5\n", "t.csv"); }, {"t.csv:2: expected 2 fields, found 3"});
}

TEST(CsvErrors, NotANumber) {
  expect_data_error([] { twosed::parse_csv("a,b,c\n1,2,3\n\n4,abc,5\n", "t.csv"); },
                    {"t.csv:4:2: 'abc' is not a number"});
  expect_data_error([] { twosed::parse_csv("a,b,c\n1,,3\n", "t.csv"); }, {"t.csv:2:2: '' is not a number"});
  expect_data_error([] { twosed::parse_csv("a,b,c\n1,0x10,3\n", "t.csv"); }, {"t.csv:2:2: '0x10' is not a number"});
  expect_data_error([] { twosed::parse_csv("a;b;c\n1;2;3\n4;5,5;6\n", "t.csv"); },
                    {"t.csv:3:2: '5,5' is not a number"});
}

TEST(CsvErrors, NanOrInf) {
  expect_data_error([] { twosed::parse_csv("1,2,0\n\n3,nan,1\n", "t.csv"); }, {"t.csv:3:2: NaN or Inf is not allowed"});
  expect_data_error([] { twosed::parse_csv("a,b,c\n1,2,0\n-inf,4,1\n", "t.csv"); },
                    {"t.csv:3:1: NaN or Inf is not allowed"});
  expect_data_error([] { twosed::parse_csv("a,b,c\n1,1e999,0\n", "t.csv"); },
                    {"t.csv:2:2: '1e999' is out of the float64 range"});
}

TEST(CsvErrors, NonIntegerLabel) {
  expect_data_error([] { twosed::parse_csv("a,b,y\n1,2,0\n3,4,1.5\n", "t.csv"); },
                    {"t.csv:3: label '1.5' is not an integer"});
  expect_data_error([] { twosed::parse_csv("a,b,y\n1,2,1e300\n", "t.csv"); },
                    {"t.csv:2: label '1e300' is out of range"});
}

TEST(CsvErrors, NoDataRows) {
  expect_data_error([] { twosed::parse_csv("", "t.csv"); }, {"t.csv: no data rows"});
  expect_data_error([] { twosed::parse_csv("\n \n\r\n", "t.csv"); }, {"t.csv: no data rows"});
  expect_data_error([] { twosed::parse_csv("a,b,c\n\n", "t.csv"); }, {"t.csv: no data rows"});
}

TEST(CsvErrors, LabelColumn) {
  CsvOptions opts;
  opts.label_column = "foo";
  expect_data_error([&] { twosed::parse_csv("a,b,c\n1,2,3\n", "t.csv", opts); },
                    {"t.csv: label column 'foo' not in header (columns: a, b, c)"});
  expect_data_error([&] { twosed::parse_csv("1,2,3\n", "t.csv", opts); }, {"t.csv", "label column 'foo'", "no header"});
  opts.label_column = "3";
  expect_data_error([&] { twosed::parse_csv("1,2,3\n", "t.csv", opts); }, {"t.csv: label column 3 out of range"});
  expect_data_error([] { twosed::parse_csv("y\n1\n", "t.csv"); }, {"t.csv", "no feature columns"});
}

TEST(CsvErrors, UnterminatedQuote) {
  expect_data_error([] { twosed::parse_csv("a,b\n1,\"2\n", "t.csv"); }, {"t.csv:2: unterminated quoted field"});
}

TEST(CsvErrors, MissingFile) {
  const std::string path = temp_dir("csv_missing") + "/nope.csv";
  expect_data_error([&] { twosed::load_csv(path); }, {path + ": cannot open file"});
}

// ---------------------------------------------------------------------------------------------
// IDX

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * (3 - i))) & 0xff);
  return s;
}

// Three 2x3 images with pixel values k*10 + p, and labels 2, 0, 1.
std::string idx_images(uint32_t count = 3, uint32_t rows = 2, uint32_t cols = 3) {
  std::string s = be32(0x803) + be32(count) + be32(rows) + be32(cols);
  for (uint32_t k = 0; k < count * rows * cols; ++k)
    s += static_cast<char>((k / (rows * cols)) * 10 + k % (rows * cols));
  return s;
}

std::string idx_labels(const std::string& values = std::string("\x02\x00\x01", 3)) {
  return be32(0x801) + be32(static_cast<uint32_t>(values.size())) + values;
}

void check_tiny(const Dataset& d, bool labels) {
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(d.size(), 3);
  ASSERT_EQ(d.x.size(), 18u);
  EXPECT_DOUBLE_EQ(d.x[0], 0.0);
  EXPECT_DOUBLE_EQ(d.x[5], 5 / 255.0);
  EXPECT_DOUBLE_EQ(d.x[6], 10 / 255.0);
  EXPECT_DOUBLE_EQ(d.x[17], 25 / 255.0);
  if (labels) {
    EXPECT_EQ(d.labels, (std::vector<int64_t>{2, 0, 1}));
    EXPECT_EQ(d.num_classes, 3);
  } else {
    EXPECT_TRUE(d.labels.empty());
    EXPECT_EQ(d.num_classes, 0);
  }
}

TEST(Idx, ParseInMemory) {
  check_tiny(twosed::parse_idx(idx_images(), idx_labels(), "mem"), true);
  check_tiny(twosed::parse_idx(idx_images(), "", "mem"), false);
}

TEST(Idx, RawAndGzipFiles) {
  const std::string dir = temp_dir("idx_files");
  write_bytes(dir + "/img", idx_images());
  write_bytes(dir + "/lab", idx_labels());
  write_gz(dir + "/img.gz", idx_images());
  write_gz(dir + "/lab.gz", idx_labels());
  check_tiny(twosed::load_idx(dir + "/img", dir + "/lab"), true);
  check_tiny(twosed::load_idx(dir + "/img.gz", dir + "/lab.gz"), true);
  check_tiny(twosed::load_idx(dir + "/img.gz", ""), false);
}

TEST(Idx, Directory) {
  const std::string dir = temp_dir("idx_dir");
  write_gz(dir + "/train-images-idx3-ubyte.gz", idx_images());
  write_bytes(dir + "/train-labels-idx1-ubyte", idx_labels());
  Dataset d = twosed::load_idx_dir(dir);
  check_tiny(d, true);
  EXPECT_EQ(d.source, dir);

  const std::string no_labels = temp_dir("idx_dir_nolabels");
  write_bytes(no_labels + "/train-images-idx3-ubyte", idx_images());
  check_tiny(twosed::load_idx_dir(no_labels), false);

  const std::string empty = temp_dir("idx_dir_empty");
  expect_data_error([&] { twosed::load_idx_dir(empty); }, {empty + ": no train-images-idx3-ubyte[.gz] found"});
}

TEST(IdxErrors, BadMagic) {
  std::string img = idx_images();
  img[3] = 0x04;
  expect_data_error([&] { twosed::parse_idx(img, "", "m"); }, {"m: bad magic number 0x00000804 (expected 0x00000803"});
  expect_data_error([&] { twosed::parse_idx(idx_labels(), "", "m"); }, {"m: bad magic", "label file"});
  expect_data_error([&] { twosed::parse_idx(idx_images(), idx_images(), "m"); },
                    {"m (labels): bad magic", "0x00000801"});
}

TEST(IdxErrors, Truncated) {
  const std::string img = idx_images();
  expect_data_error([&] { twosed::parse_idx(img.substr(0, 10), "", "m"); }, {"m: truncated IDX image header"});
  expect_data_error([&] { twosed::parse_idx(img.substr(0, img.size() - 1), "", "m"); },
                    {"m: truncated: header says 3 images of 2x3, file holds 17 pixel bytes"});
  expect_data_error([&] { twosed::parse_idx(img + "x", "", "m"); }, {"m: 1 unexpected bytes"});
  const std::string lab = idx_labels();
  expect_data_error([&] { twosed::parse_idx(img, lab.substr(0, lab.size() - 1), "m"); },
                    {"m (labels): truncated: header says 3 labels, file holds 2"});
  expect_data_error([&] { twosed::parse_idx(img, lab.substr(0, 5), "m"); }, {"m (labels): truncated IDX label header"});

  // Huge header counts are compared with the bytes present before anything is allocated.
  const std::string huge = be32(0x803) + be32(0xffffffff) + be32(0xffffffff) + be32(0xffffffff) + "abc";
  expect_data_error([&] { twosed::parse_idx(huge, "", "m"); }, {"m: truncated"});
}

TEST(IdxErrors, CountMismatchAndEmpty) {
  expect_data_error([&] { twosed::parse_idx(idx_images(), idx_labels(std::string("\x01\x02", 2)), "m"); },
                    {"m (labels): label count 2 differs from the image count 3"});
  expect_data_error([&] { twosed::parse_idx(idx_images(0), "", "m"); }, {"m", "no images"});
  expect_data_error([&] { twosed::parse_idx(idx_images(1, 0, 3), "", "m"); }, {"m", "0x3 is empty"});
  expect_data_error([&] { twosed::parse_idx(idx_images(), idx_labels("\x01\xff\x02"), "m"); },
                    {"m (labels): label 255 at index 1 is out of range"});
}

TEST(IdxErrors, Files) {
  const std::string dir = temp_dir("idx_errors");
  expect_data_error([&] { twosed::load_idx(dir + "/missing", ""); }, {dir + "/missing: cannot open file"});
  write_bytes(dir + "/img", idx_images());
  write_bytes(dir + "/lab", idx_labels(std::string("\x01", 1)));
  expect_data_error([&] { twosed::load_idx(dir + "/img", dir + "/lab"); },
                    {dir + "/lab: label count 1 differs from the image count 3 in " + dir + "/img"});
  // A gzip file cut short.
  write_gz(dir + "/img.gz", idx_images(200, 10, 10));
  std::ifstream in(dir + "/img.gz", std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_bytes(dir + "/cut.gz", gz.substr(0, gz.size() / 2));
  expect_data_error([&] { twosed::load_idx(dir + "/cut.gz", ""); }, {dir + "/cut.gz"});
}

// Regression: a 1 MB .gz holding a valid IDX file and then 1 GiB of zeros was inflated in full
// (2.25 GB of memory) before its size was compared with the header. The reader now stops one
// byte past what the header declares.
TEST(IdxStreaming, GzipBombStopsOneBytePastTheDeclaredData) {
  const std::string dir = temp_dir("idx_bomb");
  const std::string images = dir + "/bomb-images.gz", labels = dir + "/bomb-labels.gz";
  write_gz_padded(images, idx_images(20, 4, 4), size_t{64} << 20);
  write_gz_padded(labels, idx_labels(std::string(20, '\x01')), size_t{64} << 20);
  ASSERT_LT(std::filesystem::file_size(images), 1u << 20);  // tiny compressed, 64 MiB inflated

  const int64_t rss0 = peak_rss_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  expect_data_error([&] { twosed::load_idx(images, ""); },
                    {images + ": unexpected bytes after the data (header says 20 images of 4x4)"});
  expect_data_error([&] { twosed::load_idx_subset(images, "", 5, 1); },
                    {images + ": unexpected bytes after the data (header says 20 images of 4x4)"});
  write_gz(dir + "/images.gz", idx_images(20, 4, 4));
  expect_data_error([&] { twosed::load_idx(dir + "/images.gz", labels); },
                    {labels + ": unexpected bytes after the data (header says 20 labels)"});
  EXPECT_LT(seconds_since(t0), 2.0);
  // The old reader held the whole 64 MiB (and more while its buffer grew).
  EXPECT_LT(peak_rss_bytes() - rss0, int64_t{32} << 20);

  // Without the padding the same files load.
  write_gz(dir + "/labels.gz", idx_labels(std::string(20, '\x01')));
  const Dataset d = twosed::load_idx(dir + "/images.gz", dir + "/labels.gz");
  EXPECT_EQ(d.size(), 20);
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{1, 4, 4}));
}

TEST(IdxStreaming, GzipHeaderIsCheckedBeforeTheData) {
  const std::string dir = temp_dir("idx_gz_header");
  // Fewer pixels than declared: the count of what was there, as for raw files.
  const std::string img = idx_images(3, 2, 3);
  write_gz(dir + "/short.gz", img.substr(0, img.size() - 1));
  expect_data_error([&] { twosed::load_idx(dir + "/short.gz", ""); },
                    {dir + "/short.gz: truncated: header says 3 images of 2x3, file holds 17 pixel bytes"});
  // A declared size beyond the cap fails at the header, before anything is read or allocated.
  write_gz(dir + "/huge.gz", be32(0x803) + be32(0xffffffff) + be32(0xffff) + be32(0xffff) + "abc");
  expect_data_error([&] { twosed::load_idx(dir + "/huge.gz", ""); },
                    {dir + "/huge.gz: header says 4294967295 images of 65535x65535, more than the limit of "
                           "2147483648 pixel bytes"});
  write_gz(dir + "/lab.gz", be32(0x801) + be32(0xffffffff) + "abc");
  write_gz(dir + "/img.gz", img);
  expect_data_error([&] { twosed::load_idx(dir + "/img.gz", dir + "/lab.gz"); },
                    {dir + "/lab.gz: header says 4294967295 labels, more than the limit of 2147483648"});
  // A gzip stream cut inside the header: zlib's error, naming the file.
  std::ifstream in(dir + "/img.gz", std::ios::binary);
  const std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_bytes(dir + "/cut.gz", gz.substr(0, 12));
  expect_data_error([&] { twosed::load_idx(dir + "/cut.gz", ""); }, {dir + "/cut.gz: "});
}

TEST(IdxStreaming, RawFilesAreCheckedAgainstTheirSize) {
  const std::string dir = temp_dir("idx_raw_size");
  write_bytes(dir + "/img", idx_images() + "xyz");
  expect_data_error([&] { twosed::load_idx(dir + "/img", ""); },
                    {dir + "/img: 3 unexpected bytes after the data (header says 3 images of 2x3)"});
  write_bytes(dir + "/img", idx_images());
  write_bytes(dir + "/lab", idx_labels() + "z");
  expect_data_error([&] { twosed::load_idx(dir + "/img", dir + "/lab"); },
                    {dir + "/lab: 1 unexpected bytes after the data (header says 3 labels)"});
  // Huge declared counts in a small raw file: truncated, as before.
  write_bytes(dir + "/huge", be32(0x803) + be32(0xffffffff) + be32(0xffffffff) + be32(0xffffffff) + "abc");
  expect_data_error([&] { twosed::load_idx(dir + "/huge", ""); },
                    {dir + "/huge: truncated: header says 4294967295 images of 4294967295x4294967295, file holds 3 "
                           "pixel bytes"});
}

// Regression: --data idx:/dev/zero,/dev/zero grew to 16.9 GB before failing. Its magic number
// is 0, refused after 16 bytes.
TEST(IdxStreaming, DevZeroFailsAtTheMagicNumber) {
  const auto t0 = std::chrono::steady_clock::now();
  expect_data_error([] { twosed::load_idx("/dev/zero", "/dev/zero"); },
                    {"/dev/zero: bad magic number 0x00000000 (expected 0x00000803 for an IDX image file)"});
  expect_data_error([] { twosed::load_idx_subset("/dev/zero", "", 10, 1); }, {"/dev/zero: bad magic number"});
  const std::string dir = temp_dir("idx_dev_zero");
  write_bytes(dir + "/img", idx_images());
  expect_data_error([&] { twosed::load_idx(dir + "/img", "/dev/zero"); },
                    {"/dev/zero: bad magic number 0x00000000 (expected 0x00000801 for an IDX label file)"});
  EXPECT_LT(seconds_since(t0), 2.0);
}

// A stream of unknown size (a named pipe): read to the declared size, then one byte more.
TEST(IdxStreaming, PipesAreReadToTheDeclaredSize) {
  const std::string dir = temp_dir("idx_fifo");
  const std::string fifo = dir + "/pipe";
  {
    FifoFeed feed(fifo, idx_images());
    check_tiny(twosed::load_idx(fifo, ""), false);
  }
  {
    FifoFeed feed(fifo, idx_images() + std::string(size_t{8} << 20, 'x'));
    expect_data_error([&] { twosed::load_idx(fifo, ""); },
                      {fifo + ": unexpected bytes after the data (header says 3 images of 2x3)"});
  }
  {
    const std::string img = idx_images();
    FifoFeed feed(fifo, img.substr(0, img.size() - 1));
    expect_data_error([&] { twosed::load_idx(fifo, ""); },
                      {fifo + ": truncated: header says 3 images of 2x3, file holds 17 pixel bytes"});
  }
}

// ---------------------------------------------------------------------------------------------
// Synthetic blobs, subsets, standardisation, finiteness

TEST(Blobs, ShapesLabelsAndDeterminism) {
  const Dataset a = twosed::make_blobs(3, 4, 10, 42);
  EXPECT_EQ(a.sample_shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(a.size(), 10);
  EXPECT_EQ(a.num_classes, 3);
  EXPECT_EQ(a.labels, (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0}));
  const Dataset b = twosed::make_blobs(3, 4, 10, 42);
  EXPECT_EQ(a.x, b.x);
  const Dataset c = twosed::make_blobs(3, 4, 10, 43);
  EXPECT_NE(a.x, c.x);
  for (double v : a.x) EXPECT_TRUE(std::isfinite(v));
  expect_usage_error([] { twosed::make_blobs(0, 2, 5, 1); }, {"K, DIM and N must be >= 1"});
  expect_usage_error([] { twosed::make_blobs(2, int64_t{1} << 40, int64_t{1} << 40, 1); }, {"too large"});
}

TEST(Blobs, PointsClusterAroundClassMeans) {
  // With 2000 points, the within-class spread should be close to unit variance.
  const int64_t k = 2, dim = 3, n = 2000;
  const Dataset d = twosed::make_blobs(k, dim, n, 7);
  std::vector<double> mean(k * dim, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < dim; ++j) mean[d.labels[i] * dim + j] += d.x[i * dim + j] / (n / k);
  double ss = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < dim; ++j) {
      const double r = d.x[i * dim + j] - mean[d.labels[i] * dim + j];
      ss += r * r;
    }
  EXPECT_NEAR(ss / (n * dim), 1.0, 0.1);
}

TEST(Subset, DeterministicDistinctAndComplete) {
  Dataset d;
  d.sample_shape = {2};
  for (int i = 0; i < 50; ++i) {
    d.x.push_back(i);
    d.x.push_back(-i);
    d.labels.push_back(i % 5);
  }
  d.num_classes = 5;
  d.source = "src";

  const Dataset a = twosed::select_subset(d, 20, 9);
  const Dataset b = twosed::select_subset(d, 20, 9);
  const Dataset c = twosed::select_subset(d, 20, 10);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.x, c.x);
  EXPECT_EQ(a.size(), 20);
  EXPECT_EQ(a.sample_shape, d.sample_shape);
  EXPECT_EQ(a.num_classes, 5);
  EXPECT_EQ(a.source, "src");
  std::set<int> seen;
  for (int64_t k = 0; k < a.size(); ++k) {
    const int i = static_cast<int>(a.x[2 * k]);
    EXPECT_EQ(a.x[2 * k + 1], -i);  // rows stay intact
    EXPECT_EQ(a.labels[k], i % 5);
    seen.insert(i);
  }
  EXPECT_EQ(seen.size(), 20u);

  // The first n of a larger subset with the same seed are the smaller subset.
  const Dataset bigger = twosed::select_subset(d, 30, 9);
  EXPECT_TRUE(std::equal(a.x.begin(), a.x.end(), bigger.x.begin()));

  // n >= size: every example once, shuffled.
  const Dataset all = twosed::select_subset(d, 1000, 9);
  EXPECT_EQ(all.size(), 50);
  std::vector<double> sorted = all.x;
  std::vector<double> orig = d.x;
  std::sort(sorted.begin(), sorted.end());
  std::sort(orig.begin(), orig.end());
  EXPECT_EQ(sorted, orig);
  EXPECT_NE(all.x, d.x);

  expect_usage_error([&] { twosed::select_subset(d, 0, 1); }, {"must be >= 1"});
}

TEST(Standardize, ZScoresAndConstantColumns) {
  Dataset d;
  d.sample_shape = {3};
  d.x = {1, 0.1, 10, 2, 0.1, 20, 3, 0.1, 30, 4, 0.1, 40};
  twosed::standardize(d);
  for (int j : {0, 2}) {
    double mean = 0, var = 0;
    for (int i = 0; i < 4; ++i) mean += d.x[i * 3 + j] / 4;
    for (int i = 0; i < 4; ++i) var += (d.x[i * 3 + j] - mean) * (d.x[i * 3 + j] - mean) / 4;
    EXPECT_NEAR(mean, 0.0, 1e-12);
    EXPECT_NEAR(var, 1.0, 1e-12);
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d.x[i * 3 + 1], 0.0);
  EXPECT_NEAR(d.x[0], -1.5 / std::sqrt(1.25), 1e-12);
}

// Regression: a column of +-1e200 standardised to zeros (its variance overflowed to inf), and
// the 2sED then matched that of an all-zero column. The moments are now taken of the column
// scaled by a power of two; the z-scores are those of the same column at ordinary scale.
TEST(Standardize, HugeAndTinyColumnsGiveTheZScoresOfTheScaledColumn) {
  const std::vector<double> base = {1, -1, 3, -2, 0.5, 1};
  for (const double scale : {1e200, 1e300, -1e300, 1e-300, 4.9e-320}) {
    Dataset big, plain;
    big.sample_shape = plain.sample_shape = {2};
    for (double b : base) {
      big.x.push_back(b * scale);
      big.x.push_back(b);
      plain.x.push_back(b);
      plain.x.push_back(b);
    }
    twosed::standardize(big);
    twosed::standardize(plain);
    double sum = 0;
    for (size_t i = 0; i < base.size(); ++i) {
      ASSERT_TRUE(std::isfinite(big.x[2 * i])) << "scale " << scale;
      EXPECT_NEAR(big.x[2 * i], (scale > 0 ? 1 : -1) * plain.x[2 * i], 1e-12) << "scale " << scale << " row " << i;
      EXPECT_EQ(big.x[2 * i + 1], plain.x[2 * i + 1]);
      sum += big.x[2 * i] * big.x[2 * i];
    }
    EXPECT_NEAR(sum / static_cast<double>(base.size()), 1.0, 1e-12) << "scale " << scale;
  }
  // A mix: values of 1e-300 next to +-1e200 are negligible, as they are next to +-1.
  Dataset mixed, plain;
  mixed.sample_shape = plain.sample_shape = {1};
  mixed.x = {1e200, -1e200, 1e-300, -1e-300, 0, 1e200};
  plain.x = {1, -1, 0, 0, 0, 1};
  twosed::standardize(mixed);
  twosed::standardize(plain);
  for (size_t i = 0; i < plain.x.size(); ++i) EXPECT_NEAR(mixed.x[i], plain.x[i], 1e-12) << i;
}

TEST(Standardize, OrdinaryColumnsAreUnchangedByTheScaling) {
  // A power-of-two scale is exact: the z-scores are bit for bit those of the plain formula.
  Dataset d;
  d.sample_shape = {1};
  d.x = {0.1, 0.7, -3.3, 12.25, 5.0, 1e-3};
  const std::vector<double> x = d.x;
  double mean = 0, ss = 0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(x.size());
  for (double v : x) ss += (v - mean) * (v - mean);
  const double sd = std::sqrt(ss / static_cast<double>(x.size()));
  twosed::standardize(d);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(d.x[i], (x[i] - mean) / sd) << i;
}

TEST(Standardize, NonFiniteStatisticsNameTheColumn) {
  Dataset d;
  d.sample_shape = {2};
  d.source = "t.csv";
  d.x = {1, 2, 3, std::numeric_limits<double>::infinity(), 5, 6};
  expect_data_error([&] { twosed::standardize(d); }, {"t.csv: feature 1: cannot standardise"});
  d.x = {1, 2, 3, std::nan(""), 5, 6};
  expect_data_error([&] { twosed::standardize(d); }, {"t.csv: feature 1: cannot standardise"});
}

TEST(CheckFinite, NamesExampleAndFeature) {
  Dataset d;
  d.sample_shape = {2};
  d.x = {1, 2, 3, std::nan("")};
  d.source = "src.csv";
  expect_data_error([&] { twosed::check_finite(d); }, {"src.csv: example 1, feature 1 is NaN"});
  d.x[3] = std::numeric_limits<double>::infinity();
  expect_data_error([&] { twosed::check_finite(d); }, {"src.csv: example 1, feature 1 is Inf"});
  d.x[3] = 4;
  EXPECT_NO_THROW(twosed::check_finite(d));
}

// ---------------------------------------------------------------------------------------------
// Data-source strings

TEST(DataSpecParse, Csv) {
  DataSpec s = twosed::parse_data_spec("csv:data/x.csv");
  EXPECT_EQ(s.kind, DataSpec::Kind::Csv);
  EXPECT_EQ(s.path, "data/x.csv");
  EXPECT_EQ(s.label_column, "");
  s = twosed::parse_data_spec("csv:data/x.csv:label=species");
  EXPECT_EQ(s.path, "data/x.csv");
  EXPECT_EQ(s.label_column, "species");
  s = twosed::parse_data_spec("csv:a:b.csv:label=0");
  EXPECT_EQ(s.path, "a:b.csv");
  EXPECT_EQ(s.label_column, "0");
}

TEST(DataSpecParse, Idx) {
  DataSpec s = twosed::parse_data_spec("idx:/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(s.kind, DataSpec::Kind::Idx);
  EXPECT_EQ(s.path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(s.labels_path, "");
  s = twosed::parse_data_spec("idx:img.gz,lab.gz");
  EXPECT_EQ(s.path, "img.gz");
  EXPECT_EQ(s.labels_path, "lab.gz");
}

TEST(DataSpecParse, Blobs) {
  DataSpec s = twosed::parse_data_spec("synthetic:blobs:3:5");
  EXPECT_EQ(s.kind, DataSpec::Kind::Blobs);
  EXPECT_EQ(s.classes, 3);
  EXPECT_EQ(s.dim, 5);
  EXPECT_EQ(s.count, 1000);
  s = twosed::parse_data_spec("synthetic:blobs:3:5:200");
  EXPECT_EQ(s.count, 200);
}

TEST(DataSpecParse, Teacher) {
  DataSpec s = twosed::parse_data_spec("synthetic:teacher:mlp:20-32-5");
  EXPECT_EQ(s.kind, DataSpec::Kind::Teacher);
  EXPECT_EQ(s.model_spec, "mlp:20-32-5");
  EXPECT_EQ(s.count, 1000);
  s = twosed::parse_data_spec("synthetic:teacher:mlp:20-32-5:300");
  EXPECT_EQ(s.model_spec, "mlp:20-32-5");
  EXPECT_EQ(s.count, 300);
  s = twosed::parse_data_spec("synthetic:teacher:cnn:1x8x8-c4k3-relu-f3:64");
  EXPECT_EQ(s.model_spec, "cnn:1x8x8-c4k3-relu-f3");
  EXPECT_EQ(s.count, 64);
  // One colon only: the digits belong to SPEC.
  s = twosed::parse_data_spec("synthetic:teacher:mlp:20");
  EXPECT_EQ(s.model_spec, "mlp:20");
  EXPECT_EQ(s.count, 1000);
}

TEST(DataSpecParse, Errors) {
  expect_usage_error([] { twosed::parse_data_spec("foo:bar"); },
                     {"data source 'foo:bar': unknown kind 'foo' (expected csv:PATH[:label=COL], idx:DIR, "
                      "idx:IMAGES,LABELS, synthetic:blobs:K:DIM[:N], synthetic:teacher:SPEC[:N], "
                      "synthetic:covertype[:N])"});
  expect_usage_error([] { twosed::parse_data_spec(""); }, {"data source ''", "expected csv:PATH"});
  expect_usage_error([] { twosed::parse_data_spec("data.csv"); }, {"unknown kind 'data.csv'"});
  expect_usage_error([] { twosed::parse_data_spec("csv:"); }, {"'csv:'", "empty path"});
  expect_usage_error([] { twosed::parse_data_spec("csv:x.csv:label="); }, {"empty label column"});
  expect_usage_error([] { twosed::parse_data_spec("idx:"); }, {"'idx:'", "empty path"});
  expect_usage_error([] { twosed::parse_data_spec("idx:a,"); }, {"empty labels path"});
  expect_usage_error([] { twosed::parse_data_spec("idx:,b"); }, {"empty path"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:blobs:3"); }, {"synthetic:blobs:K:DIM[:N]"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:blobs:3:4:5:6"); }, {"synthetic:blobs:K:DIM[:N]"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:blobs:0:4"); }, {"K must be >= 1"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:blobs:3:x"); }, {"DIM 'x' is not a positive integer"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:blobs:3:-4"); }, {"DIM '-4'"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:blobs:3:4:0"); }, {"N must be >= 1"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:blobs:3:4:99999999999999999999"); },
                     {"N '99999999999999999999' is too large"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:teacher:"); }, {"empty model spec"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:teacher:mlp:4-2:0"); }, {"N must be >= 1"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:moons:2"); }, {"unknown synthetic kind 'moons'"});
}

TEST(LoadDataset, EveryKind) {
  const std::string dir = temp_dir("load_dataset");
  write_bytes(dir + "/d.csv", "y,a\n1,0.5\n0,1.5\n");
  Dataset d = twosed::load_dataset(twosed::parse_data_spec("csv:" + dir + "/d.csv:label=y"), 1);
  EXPECT_EQ(d.x, (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(d.labels, (std::vector<int64_t>{1, 0}));

  write_gz(dir + "/train-images-idx3-ubyte.gz", idx_images());
  write_gz(dir + "/train-labels-idx1-ubyte.gz", idx_labels());
  check_tiny(twosed::load_dataset(twosed::parse_data_spec("idx:" + dir), 1), true);
  check_tiny(twosed::load_dataset(twosed::parse_data_spec("idx:" + dir + "/train-images-idx3-ubyte.gz," + dir +
                                                          "/train-labels-idx1-ubyte.gz"),
                                  1),
             true);
  check_tiny(twosed::load_dataset(twosed::parse_data_spec("idx:" + dir + "/train-images-idx3-ubyte.gz"), 1), false);

  d = twosed::load_dataset(twosed::parse_data_spec("synthetic:blobs:2:3:11"), 5);
  EXPECT_EQ(d.x, twosed::make_blobs(2, 3, 11, 5).x);

  expect_usage_error([] { twosed::load_dataset(twosed::parse_data_spec("synthetic:teacher:mlp:2-3"), 1); },
                     {"teacher"});
}

}  // namespace

// Under --task regress the label column is a real-valued target, not a class.
TEST(CsvTest, RealTargetsForRegression) {
  twosed::CsvOptions opts;
  opts.label_column = "y";
  opts.integer_labels = false;
  const auto d = twosed::parse_csv("a,b,y\n1,2,0.5\n3,4,-1.25\n5,6,2\n", "reg.csv", opts);
  EXPECT_EQ(d.num_features(), 2);
  EXPECT_TRUE(d.labels.empty());
  EXPECT_EQ(d.num_classes, 0);
  EXPECT_EQ(d.targets, (std::vector<double>{0.5, -1.25, 2.0}));
  const auto sub = twosed::select_subset(d, 2, 3);
  ASSERT_EQ(sub.targets.size(), 2u);
  for (int64_t i = 0; i < 2; ++i) {
    // Each selected row keeps its own target: find the row by its first feature.
    const double a = sub.x[static_cast<size_t>(i * 2)];
    const double expected = a == 1 ? 0.5 : a == 3 ? -1.25 : 2.0;
    EXPECT_EQ(sub.targets[static_cast<size_t>(i)], expected);
  }
  // The same file read for classification rejects the non-integer label, naming the line.
  opts.integer_labels = true;
  try {
    twosed::parse_csv("a,b,y\n1,2,0.5\n", "reg.csv", opts);
    FAIL();
  } catch (const twosed::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("reg.csv:2: label '0.5' is not an integer"), std::string::npos) << e.what();
  }
}

// load_idx_subset converts only the chosen images, and must choose exactly what
// select_subset(load_idx(...)) chooses.
TEST(IdxTest, SubsetFirstEqualsLoadThenSelect) {
  const std::string dir = ::testing::TempDir() + "idx_subset/";
  std::filesystem::create_directories(dir);
  // 7 images of 2x3 pixels with distinct values, labels 0..2.
  std::string images =
      std::string("\x00\x00\x08\x03", 4) + std::string("\x00\x00\x00\x07\x00\x00\x00\x02\x00\x00\x00\x03", 12);
  std::string labels = std::string("\x00\x00\x08\x01\x00\x00\x00\x07", 8);
  for (int i = 0; i < 7; ++i) {
    for (int p = 0; p < 6; ++p) images += static_cast<char>(i * 30 + p);
    labels += static_cast<char>(i % 3);
  }
  std::ofstream(dir + "train-images-idx3-ubyte", std::ios::binary) << images;
  std::ofstream(dir + "train-labels-idx1-ubyte", std::ios::binary) << labels;
  for (int64_t n : {1, 3, 7, 20}) {
    for (uint64_t seed : {0u, 5u}) {
      const auto expected = twosed::select_subset(twosed::load_idx_dir(dir), n, seed);
      int64_t total = 0;
      const auto got = twosed::load_idx_subset(dir, "", n, seed, &total);
      EXPECT_EQ(total, 7);
      EXPECT_EQ(got.x, expected.x) << "n=" << n << " seed=" << seed;
      EXPECT_EQ(got.labels, expected.labels);
      EXPECT_EQ(got.num_classes, 3);
      EXPECT_EQ(got.sample_shape, expected.sample_shape);
    }
  }
  // Explicit files give the same as the directory.
  const auto by_files = twosed::load_idx_subset(dir + "train-images-idx3-ubyte", dir + "train-labels-idx1-ubyte", 3, 1);
  EXPECT_EQ(by_files.x, twosed::load_idx_subset(dir, "", 3, 1).x);
}

TEST(Covertype, ShapedLikeCovertypeAndDeterministic) {
  const auto spec = twosed::parse_data_spec("synthetic:covertype:3000");
  EXPECT_EQ(spec.kind, twosed::DataSpec::Kind::Covertype);
  EXPECT_EQ(spec.count, 3000);
  EXPECT_EQ(twosed::parse_data_spec("synthetic:covertype").count, 10000);
  expect_usage_error([] { twosed::parse_data_spec("synthetic:covertype:0"); }, {"N"});
  expect_usage_error([] { twosed::parse_data_spec("synthetic:covertype:5:6"); }, {"synthetic:covertype[:N]"});
  const auto a = twosed::load_dataset(spec, 3), b = twosed::load_dataset(spec, 3), c = twosed::load_dataset(spec, 4);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.labels, c.labels);
  ASSERT_EQ(a.sample_shape, std::vector<int64_t>{54});
  EXPECT_EQ(a.num_classes, 7);
  std::vector<int> count(7);
  for (int64_t i = 0; i < a.size(); ++i) {
    ++count[static_cast<size_t>(a.labels[static_cast<size_t>(i)])];
    // Exactly one wilderness area and one soil type per example.
    double wild = 0, soil = 0;
    for (int f = 10; f < 14; ++f) wild += a.x[static_cast<size_t>(i * 54 + f)];
    for (int f = 14; f < 54; ++f) soil += a.x[static_cast<size_t>(i * 54 + f)];
    EXPECT_EQ(wild, 1.0);
    EXPECT_EQ(soil, 1.0);
  }
  // Elevation has Covertype's mean and scale (to sampling error).
  double mean = 0;
  for (int64_t i = 0; i < a.size(); ++i) mean += a.x[static_cast<size_t>(i * 54)] / static_cast<double>(a.size());
  EXPECT_NEAR(mean, 2959.4, 4 * 280.0 / std::sqrt(3000.0));
  // Unequal classes: the two largest hold most examples, every class occurs.
  std::sort(count.begin(), count.end());
  EXPECT_GT(count[6] + count[5], 3000 / 2);
  EXPECT_GT(count[0], 0);
}

// ---------------------------------------------------------------------------------------------
// CSV limits (last in this file: these allocate tens of MB, after the IDX memory checks)

// Regression: --data csv:/dev/zero ended in std::bad_alloc. /dev/zero has no newline: the
// reader stops at the line cap.
TEST(CsvLimits, DevZeroStopsAtTheLineCap) {
  const auto t0 = std::chrono::steady_clock::now();
  expect_data_error([] { twosed::load_csv("/dev/zero"); }, {"/dev/zero:1: line longer than 16777216 bytes"});
  EXPECT_LT(seconds_since(t0), 5.0);
}

TEST(CsvLimits, LongLinesAndManyFields) {
  const size_t cap = size_t{16} << 20;
  // A line of exactly the cap is read; one byte more is refused, by number, in files and in memory.
  const std::string at_cap = std::string(cap - 1, '0') + "1";
  CsvOptions no_labels;
  no_labels.has_labels = false;
  const Dataset ok = twosed::parse_csv("x\n" + at_cap + "\n", "t.csv", no_labels);
  EXPECT_EQ(ok.x, (std::vector<double>{1.0}));
  expect_data_error([&] { twosed::parse_csv("x\n1\n\n" + at_cap + "2\n", "t.csv", no_labels); },
                    {"t.csv:4: line longer than 16777216 bytes"});
  const std::string dir = temp_dir("csv_long");
  write_bytes(dir + "/ok.csv", "x\n" + at_cap + "\n");
  EXPECT_EQ(twosed::load_csv(dir + "/ok.csv", no_labels).x, (std::vector<double>{1.0}));
  write_bytes(dir + "/long.csv", "x\n1\n\n" + at_cap + "2\n5\n");
  expect_data_error([&] { twosed::load_csv(dir + "/long.csv", no_labels); },
                    {dir + "/long.csv:4: line longer than 16777216 bytes"});
  // The byte-order mark does not count towards the first line.
  write_bytes(dir + "/bom.csv", "\xEF\xBB\xBF" + at_cap + "\n");
  EXPECT_EQ(twosed::load_csv(dir + "/bom.csv", no_labels).x, (std::vector<double>{1.0}));

  // At most 1,000,000 fields in a line.
  std::string fields = "0";
  for (int i = 1; i < 1000000; ++i) fields += ",0";
  EXPECT_EQ(twosed::parse_csv(fields + "\n", "t.csv").num_features(), 999999);
  expect_data_error([&] { twosed::parse_csv(fields + ",0\n", "t.csv"); }, {"t.csv:1: more than 1000000 fields"});
  expect_data_error([&] { twosed::parse_csv("a,b\n" + std::string(cap, ','), "t.csv"); },
                    {"t.csv:2: more than 1000000 fields"});
}
