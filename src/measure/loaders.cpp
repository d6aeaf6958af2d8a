#include "measure/loaders.h"

#include <fmt/format.h>

#include <cmath>
#include <new>

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
  auto arr = read_npy(opts.thetas_file);
  if (arr.shape.size() == 1 && arr.shape[0] == d) arr.shape = {1, d};
  if (arr.shape.size() != 2 || arr.shape[1] != d || arr.shape[0] < 1)
    throw DataError(fmt::format("{}: expected shape (M, {}) for model '{}' (d = {}), got ({})", opts.thetas_file, d,
                                opts.model, d, fmt::join(arr.shape, ", ")));
  const int64_t m = arr.shape[0];
  check_checkpoint_values(opts.thetas_file, arr.data);
  auto thetas = to_tensor(std::move(arr.data), {m, d});
  return std::make_unique<GivenParameters>(thetas, d, fmt::format("{} given samples from {}", m, opts.thetas_file),
                                           opts.thetas_file);
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
