// TorchScriptNetwork: loading and checking a TorchScript file, forward passes and per-example
// autograd rows at a given theta (include/twosed/model/torchscript.h).
#include <fmt/format.h>
#include <sys/stat.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>

#include "model/torchscript/network_impl.h"
#include "twosed/error.h"
#include "twosed/model/torchscript.h"

namespace twosed {
namespace {

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// "__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear" -> "Linear".
std::string type_name(const torch::jit::Module& m) {
  const auto q = m.type()->name();
  if (!q) return "?";
  std::string name = q->name();
  const std::string mangle = "___torch_mangle_";
  if (name.rfind(mangle, 0) == 0) {
    const auto dot = name.find('.');
    name = dot == std::string::npos ? name : name.substr(dot + 1);
  }
  return name;
}

// The profiling executor specialises the graph after a few runs, so that repeated forward
// passes of a scripted module need not give the same bits; the simple executor runs the same
// graph every time. Switched for the lifetime of the object, then restored.
class SimpleExecutor {
 public:
  SimpleExecutor()
      : profiling_(torch::jit::getProfilingMode().exchange(false)),
        executor_(torch::jit::getExecutorMode().exchange(false)) {}
  ~SimpleExecutor() {
    torch::jit::getProfilingMode() = profiling_;
    torch::jit::getExecutorMode() = executor_;
  }
  SimpleExecutor(const SimpleExecutor&) = delete;
  SimpleExecutor& operator=(const SimpleExecutor&) = delete;

 private:
  bool profiling_, executor_;
};

torch::jit::Module load_module(const std::string& path) {
  if (!is_regular_file(path)) throw DataError(fmt::format("{}: no such file", path));
  try {
    return torch::jit::load(path);
  } catch (const c10::Error& e) {
    throw DataError(
        fmt::format("{}: not a readable TorchScript file: {}", path, first_line(e.what_without_backtrace())));
  } catch (const std::exception& e) {
    throw DataError(fmt::format("{}: not a readable TorchScript file: {}", path, first_line(e.what())));
  }
}

// Every node of a graph, nested blocks (if/loop bodies) included.
void for_each_node(torch::jit::Block* block, const std::function<void(torch::jit::Node*)>& visit) {
  for (auto* node : block->nodes()) {
    visit(node);
    for (auto* b : node->blocks()) for_each_node(b, visit);
  }
}

// A module in training mode is refused: in a scripted file the flag is each module's
// `training`; in a traced one it was frozen into the graph as a constant input of batch_norm
// (and dropout) nodes, whatever the saved modules' flags say now.
void check_eval_mode(const torch::jit::Module& m, const std::string& path) {
  for (const auto& nm : m.named_modules())
    if (nm.value.is_training())
      throw DataError(fmt::format("{}: module '{}' ({}) is in training mode; call model.eval() before saving it", path,
                                  nm.name.empty() ? "<root>" : nm.name, type_name(nm.value)));
  const auto method = m.find_method("forward");
  if (!method) throw DataError(fmt::format("{}: the module has no forward method", path));
  auto graph = method->graph()->copy();
  torch::jit::Inline(*graph);
  for_each_node(graph->block(), [&](torch::jit::Node* node) {
    const bool bn = node->kind() == c10::Symbol::aten("batch_norm");
    const bool dropout = node->kind() == c10::Symbol::aten("dropout");
    if (!bn && !dropout) return;
    const auto flag = torch::jit::constant_as<bool>(node->input(bn ? 5 : 2));
    if (flag && *flag)
      throw DataError(
          fmt::format("{}: the graph runs aten::{} in training mode (traced from a model in training mode); "
                      "trace it after model.eval()",
                      path, bn ? "batch_norm" : "dropout"));
  });
}

}  // namespace

int64_t ImportedParameter::numel() const {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

TorchScriptNetwork::TorchScriptNetwork(const std::string& path) : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.path = path;
  m.module = load_module(path);
  check_eval_mode(m.module, path);
  std::map<std::string, std::string> types;  // submodule name -> type name
  for (const auto& nm : m.module.named_modules()) types[nm.name] = type_name(nm.value);
  torch::NoGradGuard no_grad;
  m.module.to(torch::kFloat64);  // a float32 file is measured in float64
  for (const auto& np : m.module.named_parameters(/*recurse=*/true)) {
    const auto dot = np.name.rfind('.');
    const std::string owner = dot == std::string::npos ? "" : np.name.substr(0, dot);
    ImportedParameter s;
    s.name = np.name;
    s.module_type = types.count(owner) ? types[owner] : "?";
    s.offset = m.d;
    s.shape = np.value.sizes().vec();
    m.d += s.numel();
    m.slices.push_back(std::move(s));
    m.params.push_back(np.value);
  }
  if (m.d == 0) throw DataError(fmt::format("{}: the module has no parameters (d = 0): nothing to measure", path));
  std::vector<torch::Tensor> flat;
  for (const auto& p : m.params) flat.push_back(p.detach().reshape({-1}));
  m.file_theta = torch::cat(flat).to(torch::kFloat64).clone();
  for (auto& p : m.params) p.requires_grad_(true);
  for (size_t p = 0; p < m.params.size(); ++p) m.param_index[m.params[p].unsafeGetTensorImpl()] = static_cast<int>(p);
  m.graph = m.module.get_method("forward").graph()->copy();
  torch::jit::Inline(*m.graph);
}

TorchScriptNetwork::~TorchScriptNetwork() = default;

const std::string& TorchScriptNetwork::path() const {
  return impl_->path;
}
int64_t TorchScriptNetwork::num_params() const {
  return impl_->d;
}
const std::vector<ImportedParameter>& TorchScriptNetwork::parameters() const {
  return impl_->slices;
}
torch::Tensor TorchScriptNetwork::file_theta() const {
  return impl_->file_theta;
}

torch::Tensor TorchScriptNetwork::forward(const torch::Tensor& theta, const torch::Tensor& x) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  SimpleExecutor simple;
  impl_->set_theta(theta);
  torch::NoGradGuard no_grad;
  return impl_->run(x).detach().to(torch::kFloat64).clone();
}

void TorchScriptNetwork::jacobian_rows(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& q,
                                       int64_t i0, torch::Tensor& out) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  SimpleExecutor simple;
  auto& m = *impl_;
  m.set_theta(theta);
  torch::AutoGradMode grad_on(true);
  const int64_t n = q.size(0), r = q.size(1);
  for (int64_t e = 0; e < n; ++e) {
    const auto f = m.run(x.narrow(0, i0 + e, 1));
    for (int64_t c = 0; c < r; ++c) {
      const auto s = (q[e][c] * f[0]).sum();
      const auto grads = torch::autograd::grad({s}, m.params, {}, /*retain_graph=*/c + 1 < r, /*create_graph=*/false,
                                               /*allow_unused=*/true);
      auto row = out[e * r + c];
      for (size_t p = 0; p < grads.size(); ++p) {
        auto dst = row.narrow(0, m.slices[p].offset, m.slices[p].numel());
        if (grads[p].defined())
          dst.copy_(grads[p].reshape({-1}));
        else
          dst.zero_();  // a parameter the output does not depend on
      }
    }
  }
}

std::shared_ptr<torch::jit::Graph> TorchScriptNetwork::inlined_graph() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto graph = impl_->module.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  return graph;
}

}  // namespace twosed
