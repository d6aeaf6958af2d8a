#include "twosed/model/parameter_space.h"

#include <fmt/format.h>

#include <cmath>

#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/model/network.h"
#include "twosed/random.h"
#include "twosed/train/train.h"

namespace twosed {
namespace {

// `whole` is the space string ("box:0"), for the message.
double parse_positive_double(const std::string& text, const std::string& what, const std::string& whole) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != text.size() || !std::isfinite(v) || v <= 0)
    throw OptionError("MeasureOptions.space", fmt::format("{}: {} '{}' must be a positive number", whole, what, text));
  if (v > kMaxParameterMagnitude)
    throw OptionError(
        "MeasureOptions.space",
        fmt::format("{}: {} {} is out of range: it must be <= {:g} (larger parameters overflow float64 in "
                    "the network's products and the Fisher)",
                    whole, what, text, kMaxParameterMagnitude));
  return v;
}

}  // namespace

ParameterSpace ParameterSpace::parse(const std::string& text, const Network& net) {
  return parse(text, net, nullptr, nullptr);
}

ParameterSpace ParameterSpace::parse(const std::string& text, const Network& net, const ModelOptions& options,
                                     Task task) {
  return parse(text, net, &options, &task);
}

ParameterSpace ParameterSpace::parse(const std::string& text, const Network& net, const ModelOptions* options,
                                     const Task* task) {
  ParameterSpace s;
  s.num_params_ = net.num_params();
  s.text_ = text.empty() ? "init" : text;
  if (text == "init" || text.empty()) {
    for (const auto& p : net.parameters()) s.segments_.push_back({p.offset, p.numel(), p.init_bound});
    s.description_ = "init (PyTorch default init box, +-1/sqrt(fan_in) per layer)";
  } else if (text.rfind("box:", 0) == 0) {
    const double a = parse_positive_double(text.substr(4), "half-width A", text);
    s.segments_.push_back({0, s.num_params_, a});
    s.description_ = fmt::format("box [-{}, {}]^d", a, a);
  } else if (text.rfind("local:", 0) == 0) {
    const auto rest = text.substr(6);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0)
      throw OptionError("MeasureOptions.space", fmt::format("{}: expected local:CKPT:R", text));
    const auto path = rest.substr(0, colon);
    const double r = parse_positive_double(rest.substr(colon + 1), "radius R", text);
    // A checkpoint written by `twosed train` names its model: refuse another model's even when
    // the parameter counts happen to agree.
    // With the model's options and task known, the sidecar must agree on those too.
    CheckpointInfo info;
    if (read_checkpoint_info(path, info)) {
      if (options && task)
        check_checkpoint_matches(path, info, net.spec(), *options, *task);
      else
        check_checkpoint_matches(path, info, net.spec(), info.model_options, info.task);
    }
    const auto arr = read_npy(path);
    if (arr.numel() != s.num_params_ || arr.shape.size() > 2 || (arr.shape.size() == 2 && arr.shape[0] != 1))
      throw DataError(
          fmt::format("{}: checkpoint has shape ({}), expected a flat vector of d = {} values for this model", path,
                      fmt::join(arr.shape, ", "), s.num_params_));
    check_checkpoint_values(path, arr.data);
    s.center_ = arr.data;
    s.segments_.push_back({0, s.num_params_, r});
    s.description_ = fmt::format("local box {} +- {}", path, r);
  } else {
    throw OptionError("MeasureOptions.space", fmt::format("{}: expected init, box:A or local:CKPT:R", text));
  }
  return s;
}

void ParameterSpace::sample(uint64_t seed, int64_t j, double* out) const {
  Rng rng(seed, Stream::Parameters, static_cast<uint64_t>(j));
  for (const auto& seg : segments_) {
    double* o = out + seg.offset;
    if (center_.empty()) {
      // The same arithmetic as below with c = 0 (lo = -w and hi - lo = 2w exactly), hoisted:
      // at d = 13M this loop is a sample's draw time.
      const double lo = -seg.half_width, span = seg.half_width - lo;
      for (int64_t i = 0; i < seg.length; ++i) o[i] = lo + span * rng.uniform();
      continue;
    }
    for (int64_t i = seg.offset; i < seg.offset + seg.length; ++i) {
      const double c = center_[static_cast<size_t>(i)];
      const double lo = c - seg.half_width, hi = c + seg.half_width;
      out[i] = lo + (hi - lo) * rng.uniform();
    }
  }
}

double ParameterSpace::half_width(int64_t i) const {
  for (const auto& seg : segments_)
    if (i >= seg.offset && i < seg.offset + seg.length) return seg.half_width;
  throw std::out_of_range("ParameterSpace: index out of range");
}

double ParameterSpace::lower(int64_t i) const {
  return (center_.empty() ? 0.0 : center_[static_cast<size_t>(i)]) - half_width(i);
}
double ParameterSpace::upper(int64_t i) const {
  return (center_.empty() ? 0.0 : center_[static_cast<size_t>(i)]) + half_width(i);
}

}  // namespace twosed
