// MNIST-format IDX loader (see data.h).
//
// Images: magic 0x00000803, then count, rows, cols (big-endian uint32), then count*rows*cols
// uint8 pixels. Labels: magic 0x00000801, count, then count uint8 labels. Files are read via
// zlib's gz* functions, which pass uncompressed files through unchanged, and streamed: the
// header is read and checked first, then exactly the bytes it declares, then one byte more to
// refuse trailing data. A gzip bomb (a small .gz that inflates to gigabytes) or /dev/zero
// therefore costs no more memory than its header declares.

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <zlib.h>

#include "byte_source.h"
#include "twosed/data/data.h"
#include "twosed/error.h"

namespace twosed {

namespace {

using detail::ByteSource;

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
// Labels are stored as uint8; 255 is excluded so that num_classes = max + 1 fits in a byte.
constexpr int kMaxLabel = 254;
// The most pixel bytes (and labels) a file may declare: 2^31, 16 GiB as float64, the bound
// make_blobs puts on a data set. MNIST holds 47 MB. A larger count is a corrupt header.
constexpr uint64_t kMaxBytes = uint64_t{1} << 31;

uint32_t read_be32(const char* p) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(p[0])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(p[1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(p[2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(p[3]));
}

// A checked image file: exactly count*rows*cols pixel bytes.
struct Images {
  uint64_t count = 0, rows = 0, cols = 0;
  std::vector<char> pixels;
};

// Reads an image file's header, checks it, then reads the pixels it declares; throws
// DataError naming `name`.
Images read_images(ByteSource& src, const std::string& name) {
  char head[16];
  const size_t got = src.read(head, sizeof head);
  // The magic number is checked first: a wrong kind of file is the likelier mistake.
  const uint32_t magic = got >= 4 ? read_be32(head) : 0;
  if (got >= 4 && magic != kImagesMagic)
    throw DataError(fmt::format("{}: bad magic number 0x{:08x} (expected 0x{:08x} for an IDX image file{})", name,
                                magic, kImagesMagic, magic == kLabelsMagic ? "; this looks like a label file" : ""));
  if (got < 16)
    throw DataError(fmt::format("{}: truncated IDX image header ({} bytes, expected at least 16)", name, got));
  Images im;
  im.count = read_be32(head + 4);
  im.rows = read_be32(head + 8);
  im.cols = read_be32(head + 12);
  if (im.count == 0) throw DataError(fmt::format("{}: the IDX file holds no images (count 0)", name));
  if (im.rows == 0 || im.cols == 0)
    throw DataError(fmt::format("{}: image size {}x{} is empty (expected rows, cols >= 1)", name, im.rows, im.cols));
  // Each factor is < 2^32: rows*cols fits in 64 bits; the product with count may not.
  const uint64_t per_image = im.rows * im.cols;
  const auto truncated = [&](uint64_t have) {
    return DataError(fmt::format("{}: truncated: header says {} images of {}x{}, file holds {} pixel bytes", name,
                                 im.count, im.rows, im.cols, have));
  };
  // Where the size is known (in memory, an uncompressed regular file) it is checked before
  // anything is read.
  const std::optional<uint64_t> left = src.remaining();
  if (left && im.count > *left / per_image) throw truncated(*left);
  if (im.count > kMaxBytes / per_image)
    throw DataError(fmt::format("{}: header says {} images of {}x{}, more than the limit of {} pixel bytes", name,
                                im.count, im.rows, im.cols, kMaxBytes));
  const uint64_t need = im.count * per_image;
  if (left && *left != need)
    throw DataError(fmt::format("{}: {} unexpected bytes after the data (header says {} images of {}x{})", name,
                                *left - need, im.count, im.rows, im.cols));
  im.pixels = detail::read_up_to(src, need);
  if (im.pixels.size() < need) throw truncated(im.pixels.size());
  // A stream of unknown size (gzip, a pipe): one more byte is enough to refuse it.
  if (!left && detail::has_more(src))
    throw DataError(fmt::format("{}: unexpected bytes after the data (header says {} images of {}x{})", name, im.count,
                                im.rows, im.cols));
  return im;
}

// Reads a label file the same way: header, then exactly `count` label bytes.
std::vector<char> read_labels(ByteSource& src, const std::string& name) {
  char head[8];
  const size_t got = src.read(head, sizeof head);
  const uint32_t magic = got >= 4 ? read_be32(head) : 0;
  if (got >= 4 && magic != kLabelsMagic)
    throw DataError(fmt::format("{}: bad magic number 0x{:08x} (expected 0x{:08x} for an IDX label file{})", name,
                                magic, kLabelsMagic, magic == kImagesMagic ? "; this looks like an image file" : ""));
  if (got < 8)
    throw DataError(fmt::format("{}: truncated IDX label header ({} bytes, expected at least 8)", name, got));
  const uint64_t count = read_be32(head + 4);
  const std::optional<uint64_t> left = src.remaining();
  if (left && count > *left)
    throw DataError(fmt::format("{}: truncated: header says {} labels, file holds {}", name, count, *left));
  if (count > kMaxBytes)
    throw DataError(fmt::format("{}: header says {} labels, more than the limit of {}", name, count, kMaxBytes));
  if (left && count < *left)
    throw DataError(
        fmt::format("{}: {} unexpected bytes after the data (header says {} labels)", name, *left - count, count));
  std::vector<char> labels = detail::read_up_to(src, count);
  if (labels.size() < count)
    throw DataError(fmt::format("{}: truncated: header says {} labels, file holds {}", name, count, labels.size()));
  if (!left && detail::has_more(src))
    throw DataError(fmt::format("{}: unexpected bytes after the data (header says {} labels)", name, count));
  return labels;
}

// Decodes checked files; `labels` may be null; with `rows`, only those examples, in that order.
Dataset build(const Images& im, const std::string& image_name, const std::vector<char>* labels,
              const std::string& label_name, const std::vector<int64_t>* rows = nullptr) {
  Dataset out;
  out.sample_shape = {1, static_cast<int64_t>(im.rows), static_cast<int64_t>(im.cols)};
  if (labels) {
    const uint64_t n = labels->size();
    if (n != im.count)
      throw DataError(
          fmt::format("{}: label count {} differs from the image count {} in {}", label_name, n, im.count, image_name));
    out.labels.resize(n);
    int64_t max_label = 0;
    for (uint64_t i = 0; i < n; ++i) {
      const int l = static_cast<unsigned char>((*labels)[i]);
      if (l > kMaxLabel)
        throw DataError(
            fmt::format("{}: label {} at index {} is out of range (expected 0..{})", label_name, l, i, kMaxLabel));
      out.labels[i] = l;
      if (l > max_label) max_label = l;
    }
    out.num_classes = max_label + 1;
  }
  if (rows == nullptr) {
    out.x.resize(im.pixels.size());
    for (size_t i = 0; i < im.pixels.size(); ++i) out.x[i] = static_cast<unsigned char>(im.pixels[i]) / 255.0;
    return out;
  }
  const size_t pixels = static_cast<size_t>(im.rows * im.cols);
  out.x.resize(rows->size() * pixels);
  std::vector<int64_t> chosen;
  for (size_t r = 0; r < rows->size(); ++r) {
    const size_t i = static_cast<size_t>((*rows)[r]);
    for (size_t p = 0; p < pixels; ++p)
      out.x[r * pixels + p] = static_cast<unsigned char>(im.pixels[i * pixels + p]) / 255.0;
    if (labels) chosen.push_back(out.labels[i]);
  }
  if (labels) out.labels = std::move(chosen);
  return out;
}

// A file read through zlib, decompressing gzip transparently.
class GzSource : public ByteSource {
 public:
  explicit GzSource(const std::string& path) : path_(path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw DataError(fmt::format("{}: is a directory (expected an IDX file)", path));
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) throw DataError(fmt::format("{}: cannot open file", path));
    gzbuffer(f_, 1 << 17);
    if (std::filesystem::is_regular_file(path, ec)) {
      const auto size = std::filesystem::file_size(path, ec);
      if (!ec) size_ = size;
    }
  }
  GzSource(const GzSource&) = delete;
  GzSource& operator=(const GzSource&) = delete;
  ~GzSource() override { gzclose(f_); }

  size_t read(char* buf, size_t n) override {
    size_t total = 0;
    while (total < n) {
      const unsigned want = static_cast<unsigned>(std::min<size_t>(n - total, size_t{1} << 20));
      const int got = gzread(f_, buf + total, want);
      if (got < 0) {
        int errnum = 0;
        throw DataError(fmt::format("{}: read error: {}", path_, gzerror(f_, &errnum)));
      }
      if (got == 0) {
        // zlib reports a gzip stream cut short as Z_BUF_ERROR without failing gzread.
        int errnum = Z_OK;
        const std::string msg = gzerror(f_, &errnum);
        if (errnum != Z_OK)
          throw DataError(
              fmt::format("{}: read error: {}{}", path_, msg, errnum == Z_BUF_ERROR ? " (truncated gzip file?)" : ""));
        break;
      }
      total += static_cast<size_t>(got);
    }
    consumed_ += total;
    return total;
  }

  // Known for an uncompressed regular file only (gzdirect: zlib passes it through; it can
  // tell only after the first read). A gzip file's own size field is modulo 2^32.
  std::optional<uint64_t> remaining() const override {
    if (!size_ || consumed_ == 0 || gzdirect(f_) != 1) return std::nullopt;
    return *size_ > consumed_ ? *size_ - consumed_ : 0;
  }

 private:
  std::string path_;
  gzFile f_ = nullptr;
  std::optional<uint64_t> size_;
  uint64_t consumed_ = 0;
};

Images read_image_file(const std::string& path) {
  GzSource src(path);
  return read_images(src, path);
}

std::vector<char> read_label_file(const std::string& path) {
  GzSource src(path);
  return read_labels(src, path);
}

std::string find_first(const std::filesystem::path& dir, const char* base) {
  for (const std::string& cand : {std::string(base) + ".gz", std::string(base)}) {
    std::error_code ec;
    const auto p = dir / cand;
    if (std::filesystem::is_regular_file(p, ec)) return p.string();
  }
  return {};
}

}  // namespace

Dataset parse_idx(const std::string& image_bytes, const std::string& label_bytes, const std::string& name) {
  // With one name for both byte strings, label problems are told apart by a suffix.
  detail::StringSource image_src(image_bytes);
  const Images im = read_images(image_src, name);
  std::vector<char> labels;
  if (!label_bytes.empty()) {
    detail::StringSource label_src(label_bytes);
    labels = read_labels(label_src, name + " (labels)");
  }
  Dataset out = build(im, name, label_bytes.empty() ? nullptr : &labels, name + " (labels)");
  out.source = name;
  return out;
}

Dataset load_idx(const std::string& images_path, const std::string& labels_path) {
  Dataset out;
  {
    // The raw bytes are dropped as soon as they are converted.
    const Images im = read_image_file(images_path);
    const std::vector<char> labels = labels_path.empty() ? std::vector<char>() : read_label_file(labels_path);
    out = build(im, images_path, labels_path.empty() ? nullptr : &labels, labels_path);
  }
  out.source = labels_path.empty() ? images_path : images_path + "," + labels_path;
  return out;
}

Dataset load_idx_subset(const std::string& path, const std::string& labels_path, int64_t n, uint64_t seed,
                        int64_t* total) {
  std::error_code ec;
  std::string images_path = path, labels = labels_path, source = path;
  if (labels_path.empty() && std::filesystem::is_directory(path, ec)) {
    images_path = find_first(path, "train-images-idx3-ubyte");
    if (images_path.empty()) throw DataError(fmt::format("{}: no train-images-idx3-ubyte[.gz] found", path));
    labels = find_first(path, "train-labels-idx1-ubyte");
  } else if (!labels_path.empty()) {
    source = path + "," + labels_path;
  }
  // The raw bytes (one per pixel) are kept; only the chosen images become float64.
  const Images im = read_image_file(images_path);
  const std::vector<char> label_bytes = labels.empty() ? std::vector<char>() : read_label_file(labels);
  const int64_t count = static_cast<int64_t>(im.count);
  if (total) *total = count;
  const auto order = subset_order(count, n, seed);
  Dataset out = build(im, images_path, labels.empty() ? nullptr : &label_bytes, labels, &order);
  out.source = source;
  return out;
}

Dataset load_idx_dir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw DataError(fmt::format("{}: not a directory (expected one holding train-images-idx3-ubyte[.gz])", dir));
  const std::string images = find_first(dir, "train-images-idx3-ubyte");
  if (images.empty()) throw DataError(fmt::format("{}: no train-images-idx3-ubyte[.gz] found", dir));
  const std::string labels = find_first(dir, "train-labels-idx1-ubyte");
  Dataset out = load_idx(images, labels);
  out.source = dir;
  return out;
}

}  // namespace twosed
