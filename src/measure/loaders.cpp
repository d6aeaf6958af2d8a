#include "measure/loaders.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "twosed/data/data.h"
#include "twosed/data/npy.h"
#include "twosed/data/training_data.h"
#include "twosed/error.h"
#include "twosed/train/train.h"

namespace twosed::loaders {
namespace {

torch::Tensor to_tensor(std::vector<double>&& v, const std::vector<int64_t>& shape) {
  // The vector is moved into a heap holder that the tensor frees: no copy of the data.
  auto* holder = new std::vector<double>(std::move(v));
  return torch::from_blob(
      holder->data(), shape, [holder](void*) { delete holder; }, torch::TensorOptions().dtype(torch::kFloat64));
}

std::vector<int64_t> batch_shape(int64_t n, const ModelSpec& spec) {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  return shape;
}

MeasureInputs inputs_from_file(const MeasureOptions& opts, const ModelSpec& spec) {
  auto arr = read_npy(opts.inputs_file);
  if (arr.shape.size() < 2 || arr.shape[0] < 1)
    throw DataError(fmt::format("{}: expected an array of N x features (N >= 1), got shape ({})", opts.inputs_file,
                                fmt::join(arr.shape, ", ")));
  if (arr.numel() / arr.shape[0] != spec.num_inputs())
    throw DataError(fmt::format("{}: {} features per example, but model '{}' takes {}", opts.inputs_file,
                                arr.numel() / arr.shape[0], spec.text, spec.num_inputs()));
  Dataset data;
  data.x = std::move(arr.data);
  data.sample_shape = spec.input_shape;
  data.source = opts.inputs_file;
  check_finite(data);
  const int64_t n = data.size();
  return {to_tensor(std::move(data.x), batch_shape(n, spec)),
          fmt::format("{} ({} inputs, all rows in file order)", opts.inputs_file, n)};
}

// Given samples read from an (M, d) .npy file a row at a time, so that a large file costs its
// read time and one sample's memory, not its size. Every value is checked once up front, a
// chunk at a time (an out-of-range value fails before any sample is computed), and each row
// again as it is read.
class FileParameters final : public ParameterSource {
 public:
  FileParameters(std::string path, const NpyFileLayout& layout)
      : path_(std::move(path)), layout_(layout), m_(layout.shape[0]), d_(layout.shape[1]) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw DataError(fmt::format("{}: cannot open file: {}", path_, std::strerror(errno)));
    try {
      check_all_values();
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }
  ~FileParameters() override { ::close(fd_); }
  FileParameters(const FileParameters&) = delete;
  FileParameters& operator=(const FileParameters&) = delete;

  int64_t count() const override { return m_; }
  int64_t num_params() const override { return d_; }
  void fill(int64_t j, double* out) const override {
    const size_t d = static_cast<size_t>(d_);
    if (layout_.item_size == 8) {
      read_values(static_cast<uint64_t>(j) * d, d, reinterpret_cast<char*>(out));
      decode_npy_values(reinterpret_cast<const char*>(out), d, 8, out);
    } else {
      std::vector<char> bytes(d * layout_.item_size);
      read_values(static_cast<uint64_t>(j) * d, d, bytes.data());
      decode_npy_values(bytes.data(), d, layout_.item_size, out);
    }
    check_values(static_cast<uint64_t>(j) * d, out, d);
  }
  std::string description() const override { return fmt::format("{} given samples from {}", m_, path_); }

 private:
  // `count` values from value index `first` on (pread: safe from several threads at once).
  void read_values(uint64_t first, size_t count, char* buf) const {
    const size_t want = count * layout_.item_size;
    size_t got = 0;
    while (got < want) {
      const auto offset = static_cast<off_t>(layout_.data_offset + first * layout_.item_size + got);
      const ssize_t n = ::pread(fd_, buf + got, want - got, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw DataError(fmt::format("{}: read error: {}", path_, std::strerror(errno)));
      if (n == 0) throw DataError(fmt::format("{}: truncated while it was being read (the file changed)", path_));
      got += static_cast<size_t>(n);
    }
  }
  // The checkpoint's rule for parameters (train.h), naming the sample and parameter.
  void check_values(uint64_t first, const double* v, size_t count) const {
    // A branch-free pass first (it vectorises; a 1 GB file is checked twice per run). NaN fails
    // the comparison like an out-of-range value does.
    int bad = 0;
    for (size_t i = 0; i < count; ++i) bad |= !(std::abs(v[i]) <= kMaxParameterMagnitude);
    if (!bad) return;
    for (size_t i = 0; i < count; ++i)
      if (!std::isfinite(v[i]) || std::abs(v[i]) > kMaxParameterMagnitude) {
        const uint64_t k = first + i, d = static_cast<uint64_t>(d_);
        throw DataError(fmt::format(
            "{}: value {} at sample {}, parameter {} is out of range: parameters must be finite with |theta| <= {:g} "
            "(larger ones overflow float64 in the network's products and the Fisher)",
            path_, v[i], k / d, k % d, kMaxParameterMagnitude));
      }
  }
  void check_all_values() const {
    const uint64_t total = static_cast<uint64_t>(m_) * static_cast<uint64_t>(d_);
    constexpr size_t kChunk = size_t{1} << 19;  // values: 4 MiB of float64
    std::vector<double> chunk(static_cast<size_t>(std::min<uint64_t>(total, kChunk)));
    for (uint64_t first = 0; first < total; first += kChunk) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, total - first));
      read_values(first, n, reinterpret_cast<char*>(chunk.data()));
      decode_npy_values(reinterpret_cast<const char*>(chunk.data()), n, layout_.item_size, chunk.data());
      check_values(first, chunk.data(), n);
    }
  }

  std::string path_;
  NpyFileLayout layout_;
  int64_t m_, d_;
  int fd_ = -1;
};

}  // namespace

MeasureInputs load_inputs_unchecked(const MeasureOptions& opts, const ModelSpec& spec);

MeasureInputs load_inputs(const MeasureOptions& opts, const ModelSpec& spec) {
  // A data set larger than the memory left is the machine's limit, not a bug: say which stage.
  try {
    return load_inputs_unchecked(opts, spec);
  } catch (const std::bad_alloc&) {
    throw DataError(
        fmt::format("out of memory while loading the data '{}' (an allocation failed; use a smaller data "
                    "set or check the memory limits: ulimit -v, the cgroup's memory.max)",
                    opts.inputs_file.empty() ? opts.data : opts.inputs_file));
  }
}

MeasureInputs load_inputs_unchecked(const MeasureOptions& opts, const ModelSpec& spec) {
  if (!opts.inputs_file.empty()) return inputs_from_file(opts, spec);
  const std::string source = opts.data.empty() ? default_data_source(spec) : opts.data;
  auto ds = parse_data_spec(source);
  ds.real_targets = opts.fisher.task == Task::Regress;
  // Without standardisation only the chosen images are needed: IDX files are subset before
  // their pixels become float64 (same examples as select_subset, a fraction of the memory).
  const bool subset_first = ds.kind == DataSpec::Kind::Idx && !opts.standardize;
  int64_t available = 0;
  Dataset data;
  if (subset_first)
    data = load_idx_subset(ds.path, ds.labels_path, opts.num_inputs, opts.seed, &available);
  else if (ds.kind == DataSpec::Kind::Teacher)
    data = make_teacher_data(ds, opts.model_options, opts.seed);
  else
    data = load_dataset(ds, opts.seed);
  if (data.num_features() != spec.num_inputs())
    throw DataError(fmt::format("data '{}' has {} features per example, but model '{}' takes {}", source,
                                data.num_features(), spec.text, spec.num_inputs()));
  if (opts.fisher.task == Task::Classify && data.num_classes > spec.num_outputs())
    throw DataError(fmt::format("data '{}' has {} classes, but model '{}' has only {} outputs", source,
                                data.num_classes, spec.text, spec.num_outputs()));
  check_finite(data);
  if (!subset_first) {
    if (opts.standardize) standardize(data);
    available = data.size();
    data = select_subset(data, opts.num_inputs, opts.seed);
  }
  const int64_t n = data.size();
  return {to_tensor(std::move(data.x), batch_shape(n, spec)),
          fmt::format("{} ({} of {} examples, seeded subset{})", source, n, available,
                      opts.standardize ? ", standardized" : "")};
}

std::unique_ptr<ParameterSource> load_parameters(const MeasureOptions& opts, const Network& net) {
  const int64_t d = net.num_params();
  if (opts.thetas_file.empty())
    return std::make_unique<DrawnParameters>(
        ParameterSpace::parse(opts.space, net, opts.model_options, opts.fisher.task), opts.seed,
        opts.num_param_samples);
  CheckpointInfo info;
  if (read_checkpoint_info(opts.thetas_file, info))
    check_checkpoint_matches(opts.thetas_file, info, net.spec(), opts.model_options, opts.fisher.task);
  auto layout = read_npy_layout(opts.thetas_file);
  if (layout.shape.size() == 1 && layout.shape[0] == d) layout.shape = {1, d};
  if (layout.shape.size() != 2 || layout.shape[1] != d || layout.shape[0] < 1)
    throw DataError(fmt::format("{}: expected shape (M, {}) for model '{}' (d = {}), got ({})", opts.thetas_file, d,
                                opts.model, d, fmt::join(layout.shape, ", ")));
  return std::make_unique<FileParameters>(opts.thetas_file, layout);
}

MarkovNoise load_noise(const MeasureOptions& opts, int64_t m, int64_t n, int64_t r, int64_t h) {
  MarkovNoise noise;
  noise.seed = opts.seed;
  if (opts.noise_file.empty()) return noise;
  const auto& path = opts.noise_file;
  auto arr = read_npy(path);
  const auto& sh = arr.shape;
  const bool flat = sh.size() == 3 && sh[0] == m && sh[1] == n * r && sh[2] == h;
  const bool split = sh.size() == 4 && sh[0] == m && sh[1] == n && sh[2] == r && sh[3] == h;
  if (!flat && !split)
    throw DataError(fmt::format(
        "{}: expected noise of shape (M, N*R, H) = ({}, {}, {}) or (M, N, R, H) = ({}, {}, {}, {}) for M = {} "
        "samples, N = {} inputs, R = {} draws, H = {} hidden outputs; got ({})",
        path, m, n * r, h, m, n, r, h, m, n, r, h, fmt::join(sh, ", ")));
  for (size_t i = 0; i < arr.data.size(); ++i)
    if (!std::isfinite(arr.data[i])) {
      const auto k = static_cast<int64_t>(i);
      throw DataError(
          fmt::format("{}: NaN or Inf at sample {}, row {}, column {}", path, k / (n * r * h), k / h % (n * r), k % h));
    }
  noise.given = to_tensor(std::move(arr.data), {m, n * r, h});
  noise.description = fmt::format("{} ({} x {} x {})", path, m, n * r, h);
  return noise;
}

}  // namespace twosed::loaders
