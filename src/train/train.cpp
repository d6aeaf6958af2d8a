#include "twosed/train/train.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "twosed/data/npy.h"
#include "twosed/data/write_file.h"
#include "twosed/error.h"
#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"
#include "twosed/random.h"

namespace twosed {
namespace {

// Examples per chunk of the evaluation passes: bounds their activations (784 inputs: 25 MB).
constexpr int64_t kEvalChunk = 4096;

const char* task_name(Task t) {
  return t == Task::Classify ? "classify" : "regress";
}

void check_options(const Network& net, const TrainOptions& o) {
  validate(o);
  if (!o.initial_theta.empty() && static_cast<int64_t>(o.initial_theta.size()) != net.num_params())
    throw OptionError("TrainOptions.initial_theta",
                      fmt::format("has {} values, but model '{}' has {} parameters", o.initial_theta.size(),
                                  net.spec().text, net.num_params()));
}

// One data set as tensors: inputs shaped for the network, and the targets of the loss
// (int64 class labels, or float64 (n, k) regression targets).
struct TensorData {
  torch::Tensor x, y;
  int64_t n = 0;
};

// Checks that `data` fits `net` for `task` and wraps it. x and y may share the Dataset's
// memory (no copy), so `data` must outlive the result.
TensorData prepare(const Network& net, const Dataset& data, Task task, const char* role) {
  const auto& spec = net.spec();
  const int64_t n = data.size(), f = data.num_features(), k = net.num_outputs();
  if (f != spec.num_inputs())
    throw DataError(fmt::format("{} data '{}' has {} features per example, but model '{}' takes {}", role, data.source,
                                f, spec.text, spec.num_inputs()));
  if (static_cast<int64_t>(data.x.size()) != n * f)
    throw DataError(fmt::format("{} data '{}' holds {} values, not a multiple of its {} features per example", role,
                                data.source, data.x.size(), f));
  check_finite(data);
  TensorData t;
  t.n = n;
  std::vector<int64_t> shape = spec.input_shape;
  shape.insert(shape.begin(), n);
  // from_blob needs a non-const pointer; the tensor is only read (index_select, narrow).
  t.x = torch::from_blob(const_cast<double*>(data.x.data()), shape, torch::kFloat64);
  const int64_t labels = static_cast<int64_t>(data.labels.size());
  if (labels != 0 && labels != n)
    throw DataError(fmt::format("{} data '{}' has {} labels for {} examples", role, data.source, labels, n));
  if (task == Task::Classify) {
    if (labels == 0)
      throw DataError(
          fmt::format("{} data '{}' has no labels, but task classify needs a class per example", role, data.source));
    if (data.num_classes > k)
      throw DataError(fmt::format("{} data '{}' has {} classes, but model '{}' has only {} outputs", role, data.source,
                                  data.num_classes, spec.text, k));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = data.labels[static_cast<size_t>(i)];
      if (c < 0 || c >= k)
        throw DataError(fmt::format("{} data '{}': example {} has label {}, but model '{}' has {} outputs", role,
                                    data.source, i, c, spec.text, k));
    }
    t.y = torch::from_blob(const_cast<int64_t*>(data.labels.data()), {n}, torch::kInt64);
    return t;
  }
  // Regression: real targets (n * k values), or for one output the labels taken as numbers.
  const int64_t targets = static_cast<int64_t>(data.targets.size());
  if (targets != 0) {
    if (targets != n * k)
      throw DataError(
          fmt::format("{} data '{}' has {} regression targets for {} examples, but model '{}' with {} "
                      "outputs needs {}",
                      role, data.source, targets, n, spec.text, k, n * k));
    for (int64_t i = 0; i < targets; ++i)
      if (!std::isfinite(data.targets[static_cast<size_t>(i)]))
        throw DataError(fmt::format("{} data '{}': regression target {} is not finite", role, data.source, i));
    t.y = torch::from_blob(const_cast<double*>(data.targets.data()), {n, k}, torch::kFloat64);
    return t;
  }
  if (labels == 0)
    throw DataError(
        fmt::format("{} data '{}' has neither regression targets nor labels; task regress needs one "
                    "target per output",
                    role, data.source));
  if (k != 1)
    throw DataError(
        fmt::format("{} data '{}' has no regression targets, only labels (one number per example), but "
                    "model '{}' has {} outputs",
                    role, data.source, spec.text, k));
  t.y = torch::from_blob(const_cast<int64_t*>(data.labels.data()), {n}, torch::kInt64)
            .to(torch::kFloat64)
            .reshape({n, 1});
  return t;
}

// The summed loss over the examples of a batch (the training loss is this / batch size):
// classify: softmax cross-entropy; regress: sum over outputs of (f - y)^2 / 2.
torch::Tensor summed_loss(const torch::Tensor& out, const torch::Tensor& y, Task task) {
  if (task == Task::Classify)
    return torch::nn::functional::cross_entropy(
        out, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  return 0.5 * (out - y).pow(2).sum();
}

// Mean loss (and accuracy, classify) of the module over a whole data set, in chunks.
void evaluate(torch::nn::Sequential& module, const TensorData& d, Task task, double& loss, double& accuracy) {
  torch::NoGradGuard no_grad;
  double sum = 0.0;
  int64_t correct = 0;
  for (int64_t start = 0; start < d.n; start += kEvalChunk) {
    const int64_t len = std::min(kEvalChunk, d.n - start);
    const auto y = d.y.narrow(0, start, len);
    const auto out = module->forward(d.x.narrow(0, start, len));
    sum += summed_loss(out, y, task).item<double>();
    if (task == Task::Classify) correct += out.argmax(1).eq(y).sum().item<int64_t>();
  }
  loss = sum / static_cast<double>(d.n);
  if (task == Task::Classify) accuracy = static_cast<double>(correct) / static_cast<double>(d.n);
}

// The module's parameters as theta, checking that they are the Network's slices in order.
std::vector<double> flatten(const Network& net, torch::nn::Sequential& module) {
  std::vector<double> theta(static_cast<size_t>(net.num_params()));
  const auto params = module->named_parameters(true);
  const auto& slices = net.parameters();
  if (params.size() != slices.size())
    throw std::logic_error(
        fmt::format("train: module has {} parameter tensors, network {}", params.size(), slices.size()));
  for (size_t i = 0; i < slices.size(); ++i) {
    const auto& item = params[i];
    const auto& s = slices[i];
    const auto v = item.value().detach().to(torch::kFloat64).contiguous();
    if (item.key() != s.name || v.sizes().vec() != s.shape)
      throw std::logic_error(
          fmt::format("train: module parameter '{}' does not match network slice '{}'", item.key(), s.name));
    std::memcpy(theta.data() + s.offset, v.data_ptr<double>(), static_cast<size_t>(s.numel()) * sizeof(double));
  }
  return theta;
}

// net.to_module() constructs torch layers, whose default initialisation draws from LibTorch's
// global generator before theta overwrites it. Training never uses that generator; restoring
// its state keeps train_network free of side effects on other users of it. (The layers lock
// the generator's mutex themselves, so it is held only around get_state and set_state.)
torch::nn::Sequential build_module(const Network& net, const torch::Tensor& theta) {
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();
  }
  auto module = net.to_module(theta);
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
  return module;
}

}  // namespace

TrainResult train_network(const Network& net, const Dataset& train, const Dataset* test, const TrainOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  check_options(net, opts);
  if (train.size() == 0) throw DataError(fmt::format("training data '{}' has no examples", train.source));
  const TensorData tr = prepare(net, train, opts.task, "training");
  const bool has_test = test != nullptr && test->size() > 0;
  TensorData te;
  if (has_test) te = prepare(net, *test, opts.task, "test");

  const int64_t d = net.num_params();
  auto theta0 = torch::empty({d}, torch::kFloat64);
  if (opts.initial_theta.empty())
    ParameterSpace::parse("init", net).sample(opts.seed, 0, theta0.data_ptr<double>());
  else
    std::copy(opts.initial_theta.begin(), opts.initial_theta.end(), theta0.data_ptr<double>());
  auto module = build_module(net, theta0);
  module->train();

  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (opts.optimizer == "adam")
    optimizer = std::make_unique<torch::optim::Adam>(
        module->parameters(), torch::optim::AdamOptions(opts.lr).weight_decay(opts.weight_decay));
  else
    optimizer = std::make_unique<torch::optim::SGD>(
        module->parameters(),
        torch::optim::SGDOptions(opts.lr).momentum(opts.momentum).weight_decay(opts.weight_decay));

  TrainResult result;
  auto emit = [&](const TrainingRecord& r) {
    result.records.push_back(r);
    if (opts.on_record) opts.on_record(r);
  };
  auto epoch_record = [&](int64_t epoch) {
    TrainingRecord r;
    r.epoch = epoch;
    evaluate(module, tr, opts.task, r.train_loss, r.train_accuracy);
    if (has_test) evaluate(module, te, opts.task, r.test_loss, r.test_accuracy);
    r.seconds = elapsed();
    result.final_record = r;
    emit(r);
  };

  epoch_record(0);
  const int64_t n = tr.n;
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t epoch = 1; epoch <= opts.epochs; ++epoch) {
    // The batch order of an epoch depends on (seed, epoch) only: a Fisher-Yates shuffle of
    // 0..n-1 with Rng(seed, Training, epoch).
    std::iota(order.begin(), order.end(), int64_t{0});
    Rng rng(opts.seed, Stream::Training, static_cast<uint64_t>(epoch));
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(order[static_cast<size_t>(i)], order[rng.below(static_cast<uint64_t>(i) + 1)]);
    const auto index = torch::from_blob(order.data(), {n}, torch::kInt64);
    for (int64_t start = 0; start < n; start += opts.batch) {
      const int64_t len = std::min(opts.batch, n - start);
      const auto rows = index.narrow(0, start, len);
      const auto xb = tr.x.index_select(0, rows), yb = tr.y.index_select(0, rows);
      optimizer->zero_grad();
      const auto loss = summed_loss(module->forward(xb), yb, opts.task) / static_cast<double>(len);
      loss.backward();
      optimizer->step();
      ++result.steps;
      if (opts.log_steps) {
        TrainingRecord r;
        r.epoch = epoch;
        r.step = result.steps;
        r.train_loss = loss.item<double>();
        r.seconds = elapsed();
        emit(r);
      }
    }
    epoch_record(epoch);
    // Further steps cannot recover from a non-finite loss (the parameters are non-finite).
    if (!std::isfinite(result.final_record.train_loss)) {
      result.diverged = fmt::format(
          "training diverged: the training loss is {} after epoch {} ({} steps; lr {:g} is probably too large)",
          std::isnan(result.final_record.train_loss) ? "NaN" : "infinite", epoch, result.steps, opts.lr);
      break;
    }
  }

  result.theta = flatten(net, module);
  result.seconds = elapsed();
  return result;
}

std::string checkpoint_sidecar(const std::string& npy_path) {
  const std::string ext = ".npy";
  if (npy_path.size() >= ext.size() && npy_path.compare(npy_path.size() - ext.size(), ext.size(), ext) == 0)
    return npy_path.substr(0, npy_path.size() - ext.size()) + ".json";
  return npy_path + ".json";
}

void write_checkpoint(const std::string& path, const CheckpointInfo& info, const std::vector<double>& theta) {
  // A checkpoint that read_checkpoint_info would reject is never written.
  const int64_t d = parse_model_spec(info.model, info.model_options).num_params();
  if (static_cast<int64_t>(theta.size()) != d)
    throw DataError(fmt::format("{}: cannot write checkpoint: theta has {} values, but model '{}' has {} parameters",
                                path, theta.size(), info.model, d));
  nlohmann::json j;
  j["twosed_checkpoint"] = 1;
  j["model"] = info.model;
  j["activation"] = activation_name(info.model_options.activation);
  j["bias"] = info.model_options.bias;
  j["task"] = task_name(info.task);
  j["d"] = static_cast<int64_t>(theta.size());
  j["twosed_version"] = TWOSED_VERSION;
  const std::string text = j.dump(2) + "\n";

  // The array first: a sidecar never describes a checkpoint that failed to be written.
  write_npy(path, {static_cast<int64_t>(theta.size())}, theta);
  write_file_atomically(checkpoint_sidecar(path), text, "checkpoint sidecar");
}

void check_checkpoint_matches(const std::string& path, const CheckpointInfo& info, const ModelSpec& spec,
                              const ModelOptions& options, Task task) {
  if (info.model != spec.text || info.num_params != spec.num_params())
    throw DataError(fmt::format("{}: a checkpoint of '{}' (d = {}), but the model is '{}' (d = {})", path, info.model,
                                info.num_params, spec.text, spec.num_params()));
  // The activation option shapes mlp specs only; a cnn spec names its activations itself.
  const bool mlp = spec.text.rfind("mlp:", 0) == 0;
  if (mlp && info.model_options.activation != options.activation)
    throw DataError(fmt::format("{}: a checkpoint of '{}' with activation {}, but the model's activation is {}", path,
                                info.model, activation_name(info.model_options.activation),
                                activation_name(options.activation)));
  if (info.model_options.bias != options.bias)
    throw DataError(fmt::format("{}: a checkpoint of '{}' {}, but the model has {}", path, info.model,
                                info.model_options.bias ? "with biases" : "without biases (--no-bias)",
                                options.bias ? "biases" : "none (--no-bias)"));
  if (info.task != task)
    throw DataError(fmt::format("{}: a checkpoint of '{}' trained for task {}, but the task is {}", path, info.model,
                                task_name(info.task), task_name(task)));
}

void check_checkpoint_values(const std::string& path, const std::vector<double>& theta) {
  for (size_t i = 0; i < theta.size(); ++i)
    if (!std::isfinite(theta[i]) || std::abs(theta[i]) > kMaxParameterMagnitude)
      throw DataError(fmt::format(
          "{}: value {} at index {} is out of range: parameters must be finite with |theta| <= {:g} (larger ones "
          "overflow float64 in the network's products and the Fisher)",
          path, theta[i], i, kMaxParameterMagnitude));
}

bool read_checkpoint_info(const std::string& npy_path, CheckpointInfo& info) {
  const std::string sidecar = checkpoint_sidecar(npy_path);
  struct stat st;
  if (::stat(sidecar.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    throw DataError(fmt::format("{}: cannot read checkpoint sidecar: {}", sidecar, std::strerror(errno)));
  }
  std::ifstream in(sidecar, std::ios::binary);
  std::stringstream buf;
  if (in) buf << in.rdbuf();
  if (!in) throw DataError(fmt::format("{}: cannot read checkpoint sidecar: {}", sidecar, std::strerror(errno)));

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(buf.str());
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("{}: not valid JSON ({})", sidecar, e.what()));
  }
  if (!j.is_object()) throw DataError(fmt::format("{}: expected a JSON object, found {}", sidecar, j.type_name()));
  // The value of a required key, checked to be of the expected type.
  auto get = [&](const char* key, bool (nlohmann::json::*is)() const noexcept, const char* type) {
    const auto it = j.find(key);
    if (it == j.end()) throw DataError(fmt::format("{}: missing key \"{}\" (expected {})", sidecar, key, type));
    if (!((*it).*is)())
      throw DataError(fmt::format("{}: key \"{}\" must be {}, found {}", sidecar, key, type, it->type_name()));
    return *it;
  };
  const auto version = get("twosed_checkpoint", &nlohmann::json::is_number_integer, "an integer");
  if (version.get<int64_t>() != 1)
    throw DataError(
        fmt::format("{}: key \"twosed_checkpoint\" is {}; this twosed reads version 1", sidecar, version.dump()));
  CheckpointInfo out;
  out.model = get("model", &nlohmann::json::is_string, "a string").get<std::string>();
  const auto act = get("activation", &nlohmann::json::is_string, "a string").get<std::string>();
  try {
    out.model_options.activation = parse_activation(act, "activation");
  } catch (const UsageError& e) {
    throw DataError(fmt::format("{}: key \"activation\": {}", sidecar, e.what()));
  }
  out.model_options.bias = get("bias", &nlohmann::json::is_boolean, "true or false").get<bool>();
  const auto task = get("task", &nlohmann::json::is_string, "a string").get<std::string>();
  if (task == "classify")
    out.task = Task::Classify;
  else if (task == "regress")
    out.task = Task::Regress;
  else
    throw DataError(fmt::format("{}: key \"task\" is '{}' (expected classify or regress)", sidecar, task));
  const auto d = get("d", &nlohmann::json::is_number_integer, "an integer");
  out.num_params = d.get<int64_t>();
  if (out.num_params < 1) throw DataError(fmt::format("{}: key \"d\" is {} (expected >= 1)", sidecar, d.dump()));
  // twosed_version is informative; a hand-written sidecar may leave it out.
  if (j.contains("twosed_version") && !j["twosed_version"].is_string())
    throw DataError(
        fmt::format("{}: key \"twosed_version\" must be a string, found {}", sidecar, j["twosed_version"].type_name()));

  int64_t spec_d = 0;
  try {
    spec_d = parse_model_spec(out.model, out.model_options).num_params();
  } catch (const UsageError& e) {
    throw DataError(fmt::format("{}: key \"model\": {}", sidecar, e.what()));
  }
  if (spec_d != out.num_params)
    throw DataError(fmt::format("{}: key \"d\" is {}, but model '{}' has {} parameters", sidecar, out.num_params,
                                out.model, spec_d));
  if (::stat(npy_path.c_str(), &st) == 0) {
    const NpyArray a = read_npy(npy_path);
    if (a.numel() != out.num_params)
      throw DataError(fmt::format("{}: holds {} values, but its sidecar {} says d = {}", npy_path, a.numel(), sidecar,
                                  out.num_params));
  }
  info = out;
  return true;
}

}  // namespace twosed
