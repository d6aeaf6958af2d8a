// MNIST-format IDX loader (see data.h).
//
// Images: magic 0x00000803, then count, rows, cols (big-endian uint32), then count*rows*cols
// uint8 pixels. Labels: magic 0x00000801, count, then count uint8 labels. Files are read via
// zlib's gz* functions, which pass uncompressed files through unchanged.

#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <zlib.h>

#include "twosed/data/data.h"
#include "twosed/error.h"

namespace twosed {

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
// Labels are stored as uint8; 255 is excluded so that num_classes = max + 1 fits in a byte.
constexpr int kMaxLabel = 254;

uint32_t read_be32(const std::string& b, size_t pos) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(b[pos])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(b[pos + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(b[pos + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[pos + 3]));
}

struct Images {
  uint64_t count = 0, rows = 0, cols = 0;
};

// Validates an image file's header against its size; throws DataError naming `name`.
Images check_images(const std::string& b, const std::string& name) {
  // The magic number is checked first: a wrong kind of file is the likelier mistake.
  const uint32_t magic = b.size() >= 4 ? read_be32(b, 0) : 0;
  if (b.size() >= 4 && magic != kImagesMagic)
    throw DataError(fmt::format("{}: bad magic number 0x{:08x} (expected 0x{:08x} for an IDX image file{})", name,
                                magic, kImagesMagic, magic == kLabelsMagic ? "; this looks like a label file" : ""));
  if (b.size() < 16)
    throw DataError(fmt::format("{}: truncated IDX image header ({} bytes, expected at least 16)", name, b.size()));
  Images im{read_be32(b, 4), read_be32(b, 8), read_be32(b, 12)};
  if (im.count == 0) throw DataError(fmt::format("{}: the IDX file holds no images (count 0)", name));
  if (im.rows == 0 || im.cols == 0)
    throw DataError(fmt::format("{}: image size {}x{} is empty (expected rows, cols >= 1)", name, im.rows, im.cols));
  // Each factor is < 2^32: rows*cols fits in 64 bits; the product with count may not.
  const uint64_t per_image = im.rows * im.cols;
  const uint64_t have = b.size() - 16;
  if (im.count > have / per_image)
    throw DataError(fmt::format("{}: truncated: header says {} images of {}x{}, file holds {} pixel bytes", name,
                                im.count, im.rows, im.cols, have));
  const uint64_t need = im.count * per_image;
  if (have != need)
    throw DataError(fmt::format("{}: {} unexpected bytes after the data (header says {} images of {}x{})", name,
                                have - need, im.count, im.rows, im.cols));
  return im;
}

uint64_t check_labels(const std::string& b, const std::string& name) {
  const uint32_t magic = b.size() >= 4 ? read_be32(b, 0) : 0;
  if (b.size() >= 4 && magic != kLabelsMagic)
    throw DataError(fmt::format("{}: bad magic number 0x{:08x} (expected 0x{:08x} for an IDX label file{})", name,
                                magic, kLabelsMagic, magic == kImagesMagic ? "; this looks like an image file" : ""));
  if (b.size() < 8)
    throw DataError(fmt::format("{}: truncated IDX label header ({} bytes, expected at least 8)", name, b.size()));
  const uint64_t count = read_be32(b, 4);
  const uint64_t have = b.size() - 8;
  if (count > have)
    throw DataError(fmt::format("{}: truncated: header says {} labels, file holds {}", name, count, have));
  if (count < have)
    throw DataError(
        fmt::format("{}: {} unexpected bytes after the data (header says {} labels)", name, have - count, count));
  return count;
}

// Decodes the files; with `rows`, only those examples, in that order.
Dataset build(const std::string& image_bytes, const std::string& image_name, const std::string& label_bytes,
              const std::string& label_name, bool with_labels, const std::vector<int64_t>* rows = nullptr) {
  const Images im = check_images(image_bytes, image_name);
  Dataset out;
  out.sample_shape = {1, static_cast<int64_t>(im.rows), static_cast<int64_t>(im.cols)};
  if (with_labels) {
    const uint64_t n = check_labels(label_bytes, label_name);
    if (n != im.count)
      throw DataError(
          fmt::format("{}: label count {} differs from the image count {} in {}", label_name, n, im.count, image_name));
    out.labels.resize(n);
    int64_t max_label = 0;
    for (uint64_t i = 0; i < n; ++i) {
      const int l = static_cast<unsigned char>(label_bytes[8 + i]);
      if (l > kMaxLabel)
        throw DataError(
            fmt::format("{}: label {} at index {} is out of range (expected 0..{})", label_name, l, i, kMaxLabel));
      out.labels[i] = l;
      if (l > max_label) max_label = l;
    }
    out.num_classes = max_label + 1;
  }
  if (rows == nullptr) {
    const size_t total = image_bytes.size() - 16;
    out.x.resize(total);
    for (size_t i = 0; i < total; ++i) out.x[i] = static_cast<unsigned char>(image_bytes[16 + i]) / 255.0;
    return out;
  }
  const size_t pixels = static_cast<size_t>(im.rows * im.cols);
  out.x.resize(rows->size() * pixels);
  std::vector<int64_t> labels;
  for (size_t r = 0; r < rows->size(); ++r) {
    const size_t i = static_cast<size_t>((*rows)[r]);
    for (size_t p = 0; p < pixels; ++p)
      out.x[r * pixels + p] = static_cast<unsigned char>(image_bytes[16 + i * pixels + p]) / 255.0;
    if (with_labels) labels.push_back(out.labels[i]);
  }
  if (with_labels) out.labels = std::move(labels);
  return out;
}

// Reads a whole file, decompressing gzip transparently.
std::string read_gz(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw DataError(fmt::format("{}: is a directory (expected an IDX file)", path));
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw DataError(fmt::format("{}: cannot open file", path));
  std::string out;
  char buf[1 << 16];
  while (true) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int errnum = 0;
      const std::string msg = gzerror(f, &errnum);
      gzclose(f);
      throw DataError(fmt::format("{}: read error: {}", path, msg));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  // zlib reports a gzip stream cut short as Z_BUF_ERROR without failing gzread.
  int errnum = Z_OK;
  const std::string msg = gzerror(f, &errnum);
  gzclose(f);
  if (errnum != Z_OK)
    throw DataError(
        fmt::format("{}: read error: {}{}", path, msg, errnum == Z_BUF_ERROR ? " (truncated gzip file?)" : ""));
  return out;
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
  Dataset out = build(image_bytes, name, label_bytes, name + " (labels)", !label_bytes.empty());
  out.source = name;
  return out;
}

Dataset load_idx(const std::string& images_path, const std::string& labels_path) {
  const std::string images = read_gz(images_path);
  const std::string labels = labels_path.empty() ? std::string() : read_gz(labels_path);
  Dataset out = build(images, images_path, labels, labels_path, !labels_path.empty());
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
  const std::string image_bytes = read_gz(images_path);
  const std::string label_bytes = labels.empty() ? std::string() : read_gz(labels);
  const int64_t count = static_cast<int64_t>(check_images(image_bytes, images_path).count);
  if (total) *total = count;
  const auto order = subset_order(count, n, seed);
  Dataset out = build(image_bytes, images_path, label_bytes, labels, !labels.empty(), &order);
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
