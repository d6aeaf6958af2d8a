// Dataset helpers, data-source strings, synthetic blobs (see data.h).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "twosed/data/data.h"
#include "twosed/data/training_data.h"
#include "twosed/error.h"
#include "twosed/measure/measure.h"
#include "twosed/random.h"

namespace twosed {

namespace {

constexpr const char* kExpectedForms =
    "expected csv:PATH[:label=COL], idx:DIR, idx:IMAGES,LABELS, synthetic:blobs:K:DIM[:N], "
    "synthetic:teacher:SPEC[:N], synthetic:covertype[:N]";

// Longest data-source excerpt quoted in a message.
std::string shown(const std::string& s) {
  constexpr size_t kMax = 80;
  return s.size() <= kMax ? s : s.substr(0, kMax) + "...";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t end = s.find(sep, pos);
    out.push_back(s.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return out;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A positive integer field of a data-source string; `what` names it in the message.
int64_t positive_int(const std::string& field, const std::string& text, const char* what) {
  if (!all_digits(field))
    throw UsageError(
        fmt::format("data source '{}': {} '{}' is not a positive integer", shown(text), what, shown(field)));
  // 18 digits always fit in int64.
  const size_t first = field.find_first_not_of('0');
  if (first != std::string::npos && field.size() - first > 18)
    throw UsageError(fmt::format("data source '{}': {} '{}' is too large", shown(text), what, shown(field)));
  const int64_t v = first == std::string::npos ? 0 : std::stoll(field.substr(first));
  if (v < 1) throw UsageError(fmt::format("data source '{}': {} must be >= 1 (got {})", shown(text), what, v));
  return v;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.compare(0, std::char_traits<char>::length(prefix), prefix) == 0;
}

}  // namespace

int64_t Dataset::num_features() const {
  int64_t n = 1;
  for (int64_t d : sample_shape) n *= d;
  return n;
}

int64_t Dataset::size() const {
  const int64_t f = num_features();
  return f > 0 ? static_cast<int64_t>(x.size()) / f : 0;
}

namespace {

// One parser per kind of data source (the text starts with its prefix).
DataSpec csv_source(const std::string& text) {
  DataSpec spec;
  spec.kind = DataSpec::Kind::Csv;
  std::string rest = text.substr(4);
  // The last ":label=" splits PATH from COL, so that PATH itself may contain colons.
  const size_t at = rest.rfind(":label=");
  if (at != std::string::npos) {
    spec.label_column = rest.substr(at + 7);
    rest = rest.substr(0, at);
    if (spec.label_column.empty())
      throw UsageError(fmt::format("data source '{}': empty label column (expected csv:PATH:label=COL)", shown(text)));
  }
  if (rest.empty())
    throw UsageError(fmt::format("data source '{}': empty path (expected csv:PATH[:label=COL])", shown(text)));
  spec.path = rest;
  return spec;
}

DataSpec idx_source(const std::string& text) {
  DataSpec spec;
  spec.kind = DataSpec::Kind::Idx;
  const std::string rest = text.substr(4);
  const size_t comma = rest.find(',');
  if (comma == std::string::npos) {
    spec.path = rest;
  } else {
    spec.path = rest.substr(0, comma);
    spec.labels_path = rest.substr(comma + 1);
    if (spec.labels_path.empty())
      throw UsageError(fmt::format("data source '{}': empty labels path (expected idx:IMAGES,LABELS)", shown(text)));
  }
  if (spec.path.empty())
    throw UsageError(fmt::format("data source '{}': empty path (expected idx:DIR or idx:IMAGES,LABELS)", shown(text)));
  return spec;
}

DataSpec blobs_source(const std::string& text) {
  DataSpec spec;
  spec.kind = DataSpec::Kind::Blobs;
  const auto f = split(text.substr(16), ':');
  if (f.size() != 2 && f.size() != 3)
    throw UsageError(fmt::format("data source '{}': expected synthetic:blobs:K:DIM[:N]", shown(text)));
  spec.classes = positive_int(f[0], text, "K");
  spec.dim = positive_int(f[1], text, "DIM");
  if (f.size() == 3) spec.count = positive_int(f[2], text, "N");
  return spec;
}

DataSpec teacher_source(const std::string& text) {
  DataSpec spec;
  spec.kind = DataSpec::Kind::Teacher;
  std::string rest = text.substr(18);
  // SPEC has a colon of its own ("mlp:20-32-5"), so a trailing ":N" exists only when the
  // remainder holds at least two colons and ends in digits.
  const size_t last = rest.rfind(':');
  if (last != std::string::npos && std::count(rest.begin(), rest.end(), ':') >= 2 &&
      all_digits(rest.substr(last + 1))) {
    spec.count = positive_int(rest.substr(last + 1), text, "N");
    rest = rest.substr(0, last);
  }
  if (rest.empty())
    throw UsageError(
        fmt::format("data source '{}': empty model spec (expected synthetic:teacher:SPEC[:N])", shown(text)));
  spec.model_spec = rest;
  return spec;
}

DataSpec covertype_source(const std::string& text) {
  DataSpec spec;
  spec.kind = DataSpec::Kind::Covertype;
  spec.count = 10000;
  const auto f = split(text.substr(19), ':');
  if (f.size() > 2 || (f.size() == 2 && f[1].empty()))
    throw UsageError(fmt::format("data source '{}': expected synthetic:covertype[:N]", shown(text)));
  if (f.size() == 2) spec.count = positive_int(f[1], text, "N");
  return spec;
}

}  // namespace

DataSpec parse_data_spec(const std::string& text) {
  if (text.empty()) throw UsageError(fmt::format("data source '': empty ({})", kExpectedForms));
  if (starts_with(text, "csv:")) return csv_source(text);
  if (starts_with(text, "idx:")) return idx_source(text);
  if (starts_with(text, "synthetic:blobs:")) return blobs_source(text);
  if (starts_with(text, "synthetic:teacher:")) return teacher_source(text);
  if (text == "synthetic:covertype" || starts_with(text, "synthetic:covertype:")) return covertype_source(text);
  if (starts_with(text, "synthetic:")) {
    const std::string kind = split(text.substr(10), ':')[0];
    throw UsageError(
        fmt::format("data source '{}': unknown synthetic kind '{}' (expected "
                    "synthetic:blobs:K:DIM[:N], synthetic:teacher:SPEC[:N] or synthetic:covertype[:N])",
                    shown(text), shown(kind)));
  }
  const std::string kind = split(text, ':')[0];
  throw UsageError(fmt::format("data source '{}': unknown kind '{}' ({})", shown(text), shown(kind), kExpectedForms));
}

Dataset make_blobs(int64_t classes, int64_t dim, int64_t n, uint64_t seed) {
  if (classes < 1 || dim < 1 || n < 1)
    throw UsageError(
        fmt::format("synthetic blobs: K, DIM and N must be >= 1 (got K={}, DIM={}, N={})", classes, dim, n));
  // A bound on the values allocated (16 GiB of float64), so that a typo in N or DIM fails
  // with a message instead of exhausting memory.
  constexpr int64_t kMaxValues = int64_t{1} << 31;
  if (dim > kMaxValues / n || dim > kMaxValues / classes)
    throw UsageError(
        fmt::format("synthetic blobs: N x DIM = {} x {} is too large (at most {} values)", n, dim, kMaxValues));
  Rng rng(seed, Stream::Data);
  // Draw order (documented so results are reproducible): all centres, class by class, then
  // the points in order.
  std::vector<double> centres(static_cast<size_t>(classes * dim));
  for (double& c : centres) c = 2.0 * rng.normal();

  Dataset out;
  out.sample_shape = {dim};
  out.num_classes = classes;
  out.source = fmt::format("synthetic:blobs:{}:{}:{}", classes, dim, n);
  out.x.resize(static_cast<size_t>(n * dim));
  out.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = i % classes;
    out.labels[i] = k;
    for (int64_t j = 0; j < dim; ++j) out.x[i * dim + j] = centres[k * dim + j] + rng.normal();
  }
  return out;
}

Dataset make_covertype(int64_t n, uint64_t seed) {
  if (n < 1 || n > (int64_t{1} << 26))
    throw UsageError(fmt::format("synthetic:covertype: N must be in [1, {}], got {}", int64_t{1} << 26, n));
  // Means and standard deviations of Covertype's 10 quantitative columns (UCI Covertype,
  // Blackard 1998): elevation, aspect, slope, hydrology distances, hillshades, fire points.
  constexpr double kMean[10] = {2959.4, 155.7, 14.1, 269.4, 46.4, 2350.1, 212.1, 223.3, 142.5, 1980.3};
  constexpr double kStd[10] = {280.0, 111.9, 7.5, 212.5, 58.3, 1559.3, 26.8, 19.8, 38.3, 1324.2};
  // Wilderness-area frequencies of the real data; the 40 soil types get random frequencies.
  const std::vector<double> wilderness = {0.449, 0.051, 0.436, 0.064};
  constexpr int kClasses = 7, kHidden = 16, kFeatures = 54;
  Rng rng(seed, Stream::Data, 2);
  // Draw order: soil frequencies, teacher weights, class offsets, then the examples in order.
  std::vector<double> soil(40);
  double total = 0;
  for (double& p : soil) total += (p = -std::log(1.0 - rng.uniform()) * (rng.uniform() < 0.3 ? 4.0 : 0.3));
  for (double& p : soil) p /= total;
  std::vector<double> w1(kHidden * kFeatures), b1(kHidden), w2(kClasses * kHidden), offset(kClasses);
  for (double& w : w1) w = rng.normal() / std::sqrt(12.0);
  for (double& b : b1) b = 0.5 * rng.normal();
  for (double& w : w2) w = 2.0 * rng.normal() / std::sqrt(double{kHidden});
  // Class offsets make the classes as unequal as Covertype's (two large, five small).
  const double kOffset[kClasses] = {1.6, 1.9, 0.3, -1.2, -0.6, -0.2, 0.1};
  for (int c = 0; c < kClasses; ++c) offset[c] = kOffset[c];
  auto pick = [&rng](const std::vector<double>& p) {
    double u = rng.uniform(), acc = 0;
    for (size_t i = 0; i < p.size(); ++i)
      if (u < (acc += p[i])) return static_cast<int>(i);
    return static_cast<int>(p.size()) - 1;
  };
  Dataset out;
  out.sample_shape = {kFeatures};
  out.num_classes = kClasses;
  out.source = fmt::format("synthetic:covertype:{}", n);
  out.x.assign(static_cast<size_t>(n * kFeatures), 0.0);
  out.labels.resize(static_cast<size_t>(n));
  std::vector<double> z(kFeatures), h(kHidden);
  for (int64_t i = 0; i < n; ++i) {
    double* x = out.x.data() + i * kFeatures;
    std::fill(z.begin(), z.end(), 0.0);
    for (int f = 0; f < 10; ++f) {
      z[f] = rng.normal();
      x[f] = kMean[f] + kStd[f] * z[f];
    }
    const int area = pick(wilderness), type = pick(soil);
    x[10 + area] = z[10 + area] = 1.0;
    x[14 + type] = z[14 + type] = 1.0;
    // Label: a fixed random teacher on the standardised continuous columns and the one-hots,
    // plus Gumbel noise, so that classes overlap and no model reaches zero loss.
    int best = 0;
    double best_score = -INFINITY;
    for (int k = 0; k < kHidden; ++k) {
      double a = b1[k];
      for (int f = 0; f < kFeatures; ++f) a += w1[k * kFeatures + f] * z[f] * (f < 10 ? 1.0 : 2.0);
      h[k] = std::tanh(a);
    }
    for (int c = 0; c < kClasses; ++c) {
      double score = offset[c] - 0.4 * std::log(-std::log(1.0 - rng.uniform() * (1 - 1e-16)));
      for (int k = 0; k < kHidden; ++k) score += w2[c * kHidden + k] * h[k];
      if (score > best_score) best_score = score, best = c;
    }
    out.labels[i] = best;
  }
  return out;
}

Dataset load_dataset(const DataSpec& spec, uint64_t seed) {
  switch (spec.kind) {
    case DataSpec::Kind::Csv: {
      CsvOptions opts;
      opts.label_column = spec.label_column;
      opts.integer_labels = !spec.real_targets;
      return load_csv(spec.path, opts);
    }
    case DataSpec::Kind::Idx: {
      std::error_code ec;
      if (spec.labels_path.empty() && std::filesystem::is_directory(spec.path, ec)) return load_idx_dir(spec.path);
      return load_idx(spec.path, spec.labels_path);
    }
    case DataSpec::Kind::Blobs:
      return make_blobs(spec.classes, spec.dim, spec.count, seed);
    case DataSpec::Kind::Covertype:
      return make_covertype(spec.count, seed);
    case DataSpec::Kind::Teacher:
      throw UsageError(
          fmt::format("synthetic:teacher:{}: teacher data sets need a network and are "
                      "made by the network code, not load_dataset",
                      shown(spec.model_spec)));
  }
  throw UsageError("load_dataset: unknown data source kind");
}

void standardize(Dataset& data) {
  const int64_t n = data.size();
  const int64_t f = data.num_features();
  if (n == 0) return;
  for (int64_t j = 0; j < f; ++j) {
    double lo = data.x[j], hi = data.x[j], max_abs = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = data.x[i * f + j];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      max_abs = std::max(max_abs, std::fabs(v));
    }
    // Tested by value range rather than by the variance, which rounding can leave slightly
    // positive for a constant column and so blow rounding noise up to z-scores of order 1.
    if (lo == hi) {
      for (int64_t i = 0; i < n; ++i) data.x[i * f + j] = 0.0;
      continue;
    }
    // The moments are taken of the column scaled into [-2, 2] by a power of two, so that
    // squares of values near 1e200 cannot overflow (nor those near 1e-300 underflow). A power
    // of two scales exactly: ordinary columns give the same z-scores as without scaling.
    const int shift = std::isfinite(max_abs) && max_abs > 0 ? std::ilogb(max_abs) : 0;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::ldexp(data.x[i * f + j], -shift);
    const double mean = sum / static_cast<double>(n);
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = std::ldexp(data.x[i * f + j], -shift) - mean;
      ss += d * d;
    }
    const double sd = std::sqrt(ss / static_cast<double>(n));
    if (!std::isfinite(mean) || !std::isfinite(sd) || sd == 0)
      throw DataError(
          fmt::format("{}: feature {}: cannot standardise (mean {}, standard deviation {} of the "
                      "values scaled by 2^{}; expected finite values)",
                      data.source, j, mean, sd, -shift));
    for (int64_t i = 0; i < n; ++i) data.x[i * f + j] = (std::ldexp(data.x[i * f + j], -shift) - mean) / sd;
  }
}

std::vector<int64_t> subset_order(int64_t total, int64_t n, uint64_t seed) {
  if (n < 1) throw UsageError(fmt::format("input subset size must be >= 1 (got {})", n));
  const int64_t m = std::min(n, total);
  std::vector<int64_t> order(static_cast<size_t>(total));
  std::iota(order.begin(), order.end(), int64_t{0});
  // Forward Fisher-Yates, stopped after m steps: the first m entries are those of a full
  // shuffle with the same generator.
  Rng rng(seed, Stream::Inputs);
  for (int64_t i = 0; i < m && i + 1 < total; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(total - i)));
    std::swap(order[i], order[j]);
  }
  order.resize(static_cast<size_t>(m));
  return order;
}

Dataset select_subset(const Dataset& data, int64_t n, uint64_t seed) {
  const auto order = subset_order(data.size(), n, seed);
  const int64_t m = static_cast<int64_t>(order.size());

  const int64_t f = data.num_features();
  Dataset out;
  out.sample_shape = data.sample_shape;
  out.num_classes = data.num_classes;
  out.source = data.source;
  out.x.reserve(static_cast<size_t>(m * f));
  if (!data.labels.empty()) out.labels.reserve(static_cast<size_t>(m));
  if (!data.targets.empty()) out.targets.reserve(static_cast<size_t>(m));
  for (int64_t k = 0; k < m; ++k) {
    const int64_t i = order[k];
    out.x.insert(out.x.end(), data.x.begin() + i * f, data.x.begin() + (i + 1) * f);
    if (!data.labels.empty()) out.labels.push_back(data.labels[i]);
    if (!data.targets.empty()) out.targets.push_back(data.targets[i]);
  }
  return out;
}

void check_finite(const Dataset& data) {
  const int64_t f = data.num_features();
  for (size_t k = 0; k < data.x.size(); ++k) {
    const double v = data.x[k];
    if (!std::isfinite(v))
      throw DataError(fmt::format("{}: example {}, feature {} is {} (expected finite values)", data.source,
                                  f > 0 ? static_cast<int64_t>(k) / f : 0, f > 0 ? static_cast<int64_t>(k) % f : 0,
                                  std::isnan(v) ? "NaN" : "Inf"));
  }
}

// Declared in measure.h; here because the store (twosed_core) writes it into configurations.
std::string default_data_source(const ModelSpec& spec) {
  auto is_file = [](const std::string& name) {
    std::error_code ec;  // an unreadable directory is "not installed", not an error
    return std::filesystem::is_regular_file(std::string(kFashionMnistDir) + "/" + name, ec);
  };
  if (spec.num_inputs() == 784 && (is_file("train-images-idx3-ubyte.gz") || is_file("train-images-idx3-ubyte")))
    return std::string("idx:") + kFashionMnistDir;
  return fmt::format("synthetic:blobs:{}:{}", spec.num_outputs(), spec.num_inputs());
}

// Declared in training_data.h; here because a study file's data options are checked where it is
// read (twosed_core).
void validate(const TrainingDataOptions& opts) {
  if (!(opts.test_fraction >= 0 && opts.test_fraction < 1))
    throw OptionError("TrainingDataOptions.test_fraction",
                      fmt::format("must be in [0, 1), got {}", opts.test_fraction));
  if (opts.train_size < 0)
    throw OptionError("TrainingDataOptions.train_size", fmt::format("must be >= 0, got {}", opts.train_size));
  if (opts.test_size < 0)
    throw OptionError("TrainingDataOptions.test_size", fmt::format("must be >= 0, got {}", opts.test_size));
}

}  // namespace twosed
