// Whole data sets for training: load, split into training and test sets, standardise.
#include "twosed/data/training_data.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "twosed/error.h"
#include "twosed/measure/measure.h"
#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"
#include "twosed/random.h"

namespace twosed {

Dataset make_teacher_data(const DataSpec& ds, const ModelOptions& model_options, uint64_t seed) {
  Network teacher(parse_model_spec(ds.model_spec, model_options));
  Dataset data;
  data.sample_shape = teacher.spec().input_shape;
  data.source = "synthetic:teacher:" + ds.model_spec;
  Rng rng(seed, Stream::Data, 1);
  data.x.resize(static_cast<size_t>(ds.count * teacher.spec().num_inputs()));
  for (double& v : data.x) v = rng.normal();
  auto space = ParameterSpace::parse("init", teacher);
  auto theta = torch::empty({teacher.num_params()}, torch::kFloat64);
  space.sample(seed, /*j=*/1'000'000'007, theta.data_ptr<double>());
  std::vector<int64_t> shape{ds.count};
  shape.insert(shape.end(), data.sample_shape.begin(), data.sample_shape.end());
  torch::NoGradGuard no_grad;
  auto x = torch::from_blob(data.x.data(), shape, torch::kFloat64);
  auto labels = teacher.forward(theta, x).argmax(1).contiguous();
  data.labels.assign(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + ds.count);
  data.num_classes = teacher.num_outputs();
  return data;
}

Dataset load_any_dataset(const DataSpec& ds, const ModelOptions& model_options, uint64_t seed) {
  return ds.kind == DataSpec::Kind::Teacher ? make_teacher_data(ds, model_options, seed) : load_dataset(ds, seed);
}

namespace {

// The examples at `rows`, in that order.
Dataset take(const Dataset& d, const std::vector<int64_t>& rows) {
  Dataset out;
  out.sample_shape = d.sample_shape;
  out.num_classes = d.num_classes;
  out.source = d.source;
  const int64_t f = d.num_features();
  const int64_t t = d.targets.empty() ? 0 : static_cast<int64_t>(d.targets.size()) / d.size();
  out.x.reserve(rows.size() * static_cast<size_t>(f));
  for (int64_t r : rows) {
    out.x.insert(out.x.end(), d.x.begin() + r * f, d.x.begin() + (r + 1) * f);
    if (!d.labels.empty()) out.labels.push_back(d.labels[static_cast<size_t>(r)]);
    if (t > 0) out.targets.insert(out.targets.end(), d.targets.begin() + r * t, d.targets.begin() + (r + 1) * t);
  }
  return out;
}

void check_fits(const Dataset& d, const std::string& source, const ModelSpec& spec, Task task) {
  if (d.size() < 1) throw DataError(fmt::format("data '{}' has no examples", source));
  if (d.num_features() != spec.num_inputs())
    throw DataError(fmt::format("data '{}' has {} features per example, but model '{}' takes {}", source,
                                d.num_features(), spec.text, spec.num_inputs()));
  if (task == Task::Classify && d.num_classes > spec.num_outputs())
    throw DataError(fmt::format("data '{}' has {} classes, but model '{}' has only {} outputs", source, d.num_classes,
                                spec.text, spec.num_outputs()));
  check_finite(d);
}

// Fashion-MNIST ships its test split beside the training files.
std::string idx_test_file(const std::string& dir, const std::string& stem) {
  for (const char* ext : {"", ".gz"}) {
    const auto p = std::filesystem::path(dir) / (stem + ext);
    std::error_code ec;
    if (std::filesystem::exists(p, ec)) return p.string();
  }
  return "";
}

}  // namespace

TrainingData load_training_data(const TrainingDataOptions& opts, const ModelSpec& spec,
                                const ModelOptions& model_options) {
  validate(opts);
  const std::string source = opts.data.empty() ? default_data_source(spec) : opts.data;
  auto ds = parse_data_spec(source);
  ds.real_targets = opts.task == Task::Regress;
  TrainingData out;
  Dataset all = load_any_dataset(ds, model_options, opts.seed);
  check_fits(all, source, spec, opts.task);
  std::string test_source;
  std::error_code ec;
  if (!opts.test_data.empty()) {
    auto ts = parse_data_spec(opts.test_data);
    ts.real_targets = ds.real_targets;
    out.test = load_any_dataset(ts, model_options, opts.seed + 1);
    check_fits(out.test, opts.test_data, spec, opts.task);
    test_source = opts.test_data;
  } else if (ds.kind == DataSpec::Kind::Idx && ds.labels_path.empty() && opts.test_fraction == 0 &&
             std::filesystem::is_directory(ds.path, ec) && !idx_test_file(ds.path, "t10k-images-idx3-ubyte").empty()) {
    const auto images = idx_test_file(ds.path, "t10k-images-idx3-ubyte");
    out.test = load_idx(images, idx_test_file(ds.path, "t10k-labels-idx1-ubyte"));
    check_fits(out.test, images, spec, opts.task);
    test_source = images;
  }
  if (!test_source.empty()) {
    out.train = std::move(all);
  } else if (opts.test_fraction > 0) {
    const auto order = subset_order(all.size(), all.size(), opts.seed);
    const auto n_test = static_cast<int64_t>(std::llround(opts.test_fraction * static_cast<double>(all.size())));
    if (n_test < 1 || n_test >= all.size())
      throw OptionError(
          "TrainingDataOptions.test_fraction",
          fmt::format("{} of {} examples leaves an empty training or test set", opts.test_fraction, all.size()));
    out.test = take(all, std::vector<int64_t>(order.begin(), order.begin() + n_test));
    out.train = take(all, std::vector<int64_t>(order.begin() + n_test, order.end()));
    test_source = fmt::format("{:g} of {} held out", opts.test_fraction, source);
  } else {
    out.train = std::move(all);
  }
  const int64_t train_total = out.train.size(), test_total = out.test.size();
  if (opts.train_size > 0 && opts.train_size < out.train.size())
    out.train = take(out.train, subset_order(out.train.size(), opts.train_size, opts.seed));
  if (opts.test_size > 0 && opts.test_size < out.test.size())
    out.test = take(out.test, subset_order(out.test.size(), opts.test_size, opts.seed + 1));
  if (opts.standardize) {
    // The training set's statistics, applied to both sets (the test set must not leak in).
    const int64_t f = out.train.num_features(), n = out.train.size();
    for (int64_t j = 0; j < f; ++j) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < n; ++i) mean += out.train.x[i * f + j];
      mean /= static_cast<double>(n);
      for (int64_t i = 0; i < n; ++i) var += std::pow(out.train.x[i * f + j] - mean, 2);
      const double sd = std::sqrt(var / static_cast<double>(n));
      for (Dataset* d : {&out.train, &out.test})
        for (int64_t i = 0; i < d->size(); ++i) {
          double& v = d->x[i * f + j];
          v = sd > 0 ? (v - mean) / sd : 0.0;
        }
    }
  }
  out.description = fmt::format(
      "{}: {} training examples (of {}){}{}", source, out.train.size(), train_total,
      test_source.empty() ? ", no test set"
                          : fmt::format(", {} test examples (of {}, {})", out.test.size(), test_total, test_source),
      opts.standardize ? ", standardized with the training set's statistics" : "");
  return out;
}

}  // namespace twosed
