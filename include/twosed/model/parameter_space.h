// The parameter space Theta: a compact box with the uniform measure, from which the M
// parameter samples theta^(j) are drawn (docs/math.md section 3).
//
//   init          every weight and bias of a layer in [-1/sqrt(fan_in), 1/sqrt(fan_in)]
//                 (the support of PyTorch's default initialisation); the default
//   box:A         [-A, A]^d
//   local:CKPT:R  theta* +- R around the flat checkpoint vector in CKPT (.npy, d values)
//
// Draw order (docs/math.md section 3): sample j takes its own generator Rng(seed, Parameters, j) and
// draws d uniforms in parameter order, theta_i = lower_i + (upper_i - lower_i) * u_i. Per-sample
// generators make theta^(j) independent of M, of the model (S or Markov) and of threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "twosed/fisher/statistical_model.h"
#include "twosed/model/model_spec.h"

namespace twosed {

class Network;

class ParameterSpace {
 public:
  /// Parses "init", "box:A" or "local:CKPT:R" for `net`. Throws OptionError
  /// ("MeasureOptions.space") for a malformed string or a bad A/R, DataError for an unreadable checkpoint, one whose
  /// length is not d, or one with a value that is not finite or exceeds 1e150 in magnitude; A and R must be <= 1e150.
  static ParameterSpace parse(const std::string& text, const Network& net);
  /// The same, and a checkpoint's sidecar must also agree with the model's options (activation,
  /// bias) and the task (DataError naming what differs: check_checkpoint_matches in train.h).
  static ParameterSpace parse(const std::string& text, const Network& net, const ModelOptions& options, Task task);

  int64_t num_params() const { return num_params_; }
  const std::string& description() const { return description_; }
  /// The string it was parsed from ("init" for an empty one): another process parses it again.
  const std::string& text() const { return text_; }
  /// Whether parsing it read a file (local:CKPT:R): a process without the file cannot parse it.
  bool reads_files() const { return !center_.empty(); }

  /// theta^(j) into out[0..d).
  void sample(uint64_t seed, int64_t j, double* out) const;

  /// Lower and upper corner of coordinate i (for tests and reports).
  double lower(int64_t i) const;
  double upper(int64_t i) const;

 private:
  struct Segment {
    int64_t offset, length;
    double half_width;
  };
  static ParameterSpace parse(const std::string& text, const Network& net, const ModelOptions* options,
                              const Task* task);
  double half_width(int64_t i) const;
  int64_t num_params_ = 0;
  std::vector<Segment> segments_;  // cover [0, d) in order
  std::vector<double> center_;     // empty: centred at 0
  std::string description_;
  std::string text_;
};

}  // namespace twosed
