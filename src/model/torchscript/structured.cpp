// The structured Jacobian path of TorchScript models (include/twosed/model/torchscript.h;
// docs/math.md sections 7 and 9): an interpreter over the inlined forward graph that records
// the parametric ops' inputs and outputs and checks that every other op acts on each example
// alone; one backward pass per output row, for all examples at once, to the ops' outputs; then
// each op's gradient rows or samples-side Gram term in closed form.
#include <fmt/format.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "fisher/unit_blocks.h"
#include "linalg/linalg.h"
#include "model/layers/gram_forms.h"
#include "model/torchscript/network_impl.h"

namespace twosed {
namespace {

using c10::IValue;
using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;

enum class OpKind { Linear, Matmul, Addmm, Conv, BatchNorm, LayerNorm };

// One executed parametric op: what its gradient rows are made from.
struct ParamOp {
  OpKind kind = OpKind::Linear;
  std::string name;            // the graph op, e.g. "aten::linear"
  int weight = -1, bias = -1;  // indices into Impl::params, -1: none
  torch::Tensor input, output;
  std::vector<int64_t> stride, padding, dilation;  // convolution
  int64_t groups = 1;
  torch::Tensor mean, var;  // batch_norm: the running statistics
  double eps = 0;           // batch_norm, layer_norm
  int64_t norm_dims = 0;    // layer_norm: trailing dimensions normalised
  const Node* node = nullptr;
  const Value *in_value = nullptr, *out_value = nullptr;  // its data operand and result in the graph
  int64_t input_version = 0;                              // of `input` when it ran
};

// A per-example op on data that the interpreter ran, after `after` parametric ops (--markov).
struct Step {
  std::string name;
  const Node* node = nullptr;
  size_t after = 0;
};

// "file.py:12: source text" of the model code that produced a node, as the graph records it.
std::string where(const Node* node) {
  auto range = node->sourceRange();
  if (auto original = range.findSourceRangeThatGenerated()) range = *original;
  std::string text;
  if (range.source()) text = first_line(range.text().str());
  std::string scope;
  const auto node_scope = const_cast<Node*>(node)->scope();  // Node::scope() is not const
  if (node_scope && !node_scope->isRoot()) scope = node_scope->namesFromRoot();
  const auto flc = range.file_line_col();
  std::string at = flc ? fmt::format("{}:{}", std::get<0>(*flc), std::get<1>(*flc)) : "no source line recorded";
  if (!scope.empty()) at += fmt::format(" (module {})", scope);
  return text.empty() ? at : fmt::format("{}: {}", at, text);
}

// Ops that act on each example alone (elementwise, per-example pooling and reshaping, list
// plumbing), given the checks in Interpreter::check_examplewise.
const std::set<std::string>& examplewise_ops() {
  static const std::set<std::string> ops = {"aten::relu",
                                            "aten::relu_",
                                            "aten::leaky_relu",
                                            "aten::leaky_relu_",
                                            "aten::elu",
                                            "aten::elu_",
                                            "aten::silu",
                                            "aten::silu_",
                                            "aten::gelu",
                                            "aten::tanh",
                                            "aten::tanh_",
                                            "aten::sigmoid",
                                            "aten::sigmoid_",
                                            "aten::softplus",
                                            "aten::hardtanh",
                                            "aten::hardtanh_",
                                            "aten::relu6",
                                            "aten::dropout",
                                            "aten::dropout_",
                                            "aten::max_pool1d",
                                            "aten::max_pool2d",
                                            "aten::avg_pool1d",
                                            "aten::avg_pool2d",
                                            "aten::adaptive_avg_pool1d",
                                            "aten::adaptive_avg_pool2d",
                                            "aten::flatten",
                                            "aten::view",
                                            "aten::reshape",
                                            "aten::contiguous",
                                            "aten::clone",
                                            "aten::add",
                                            "aten::add_",
                                            "aten::sub",
                                            "aten::mul",
                                            "aten::mul_",
                                            "aten::div",
                                            "aten::cat",
                                            "aten::size",
                                            "aten::dim",
                                            "prim::ListConstruct",
                                            "prim::ListUnpack",
                                            "prim::TupleConstruct",
                                            "prim::TupleUnpack",
                                            "prim::TupleIndex",
                                            "aten::__getitem__",
                                            "prim::unchecked_cast"};
  return ops;
}

// Parametric ops and the input slots that hold parameters.
const std::map<std::string, std::vector<size_t>>& parametric_ops() {
  static const std::map<std::string, std::vector<size_t>> ops = {
      {"aten::linear", {1, 2}},     {"aten::conv2d", {1, 2}},     {"aten::_convolution", {1, 2}},
      {"aten::batch_norm", {1, 2}}, {"aten::layer_norm", {2, 3}}, {"aten::matmul", {1}},
      {"aten::addmm", {0, 2}}};
  return ops;
}

std::vector<int64_t> int_list(const IValue& v) {
  return v.isIntList() ? v.toIntVector() : std::vector<int64_t>{v.toInt()};
}

// Runs the inlined graph node by node on a Stack, keeping every value, so that the parametric
// ops' inputs and outputs are at hand; each executed node is classified on the way.
class Interpreter {
 public:
  // record: keep the ops' outputs out of reach of later in-place ops; cuts: also alias every
  // value read across an op boundary, for frontiers().
  Interpreter(TorchScriptNetwork::Impl& m, bool record, bool cuts = false)
      : m_(m), record_(record), uses_(m.params.size(), 0), cuts_(cuts) {}

  torch::Tensor run(const torch::Tensor& x) {
    n_ = x.size(0);
    auto* graph = m_.graph.get();
    env_[graph->inputs()[0]] = IValue(m_.module._ivalue());
    env_[graph->inputs()[1]] = x;
    data_.insert(graph->inputs()[1]);
    run_block(graph->block());
    read(graph->outputs()[0]);
    for (const auto& op : ops)
      if (op.input._version() != op.input_version)
        refuse(op.node, "its input is rewritten in place later in the graph; its gradient rows need the values it saw");
    const auto out = env_.at(graph->outputs()[0]);
    if (!out.isTensor())
      throw DataError(fmt::format("{}: forward returns a {}, expected a tensor", m_.path, out.tagKind()));
    return out.toTensor();
  }

  std::vector<ParamOp> ops;
  std::vector<std::string> unknown;
  std::vector<Step> steps;
  // --markov: called before each parametric op runs, with its data operand; a defined result
  // replaces the operand (the noise of the Markov chain before a layer).
  std::function<torch::Tensor(const ParamOp&, const torch::Tensor&)> before_op;

  // After a run with cuts: for each op l, a cut of the autograd graph just before it, or nullopt.
  // A value made before op l and read at or after it is read there through an alias made at
  // that read (read()); the cut is the set of those aliases. Every path from an earlier op's
  // output to f crosses it exactly once (the aliases are made from tensors older than any of
  // them, so none depends on another), so the earlier ops' backprop vectors follow from the
  // cut's alone. No cut where an alias was rewritten in place later, where a list of tensors
  // was read across the boundary, or in a loop that carries data (docs/design.md).
  std::vector<std::optional<std::vector<torch::Tensor>>> frontiers() const {
    std::vector<std::optional<std::vector<torch::Tensor>>> out(ops.size());
    if (!cuts_ || no_cuts_) return out;
    std::vector<std::vector<torch::Tensor>> sets(ops.size());
    std::vector<bool> bad(ops.size(), false);
    for (const auto& m : members_)
      for (size_t l = m.first; l <= m.last && l < ops.size(); ++l) {
        if (!m.tensor.defined() || m.tensor._version() != m.version)
          bad[l] = true;
        else
          sets[l].push_back(m.tensor);
      }
    for (size_t l = 0; l < ops.size(); ++l)
      if (!bad[l] && independent(sets[l])) out[l] = std::move(sets[l]);
    return out;
  }

  // No member of the set depends on another: a walk down each member's autograd graph meets
  // no other member's (node, output) edge.
  static bool independent(const std::vector<torch::Tensor>& set) {
    if (set.size() < 2) return true;
    std::set<std::pair<const torch::autograd::Node*, uint32_t>> members;
    for (const auto& t : set) members.emplace(t.grad_fn().get(), t.output_nr());
    for (const auto& t : set) {
      std::vector<const torch::autograd::Node*> stack{t.grad_fn().get()};
      std::unordered_set<const torch::autograd::Node*> seen{stack.back()};
      while (!stack.empty()) {
        const auto* node = stack.back();
        stack.pop_back();
        for (const auto& e : node->next_edges()) {
          if (!e.function) continue;
          if (members.count({e.function.get(), e.input_nr})) return false;
          if (seen.insert(e.function.get()).second) stack.push_back(e.function.get());
        }
      }
    }
    return true;
  }

 private:
  void run_block(Block* block) {
    for (auto* node : block->nodes()) run_node(node);
  }

  bool is_data(const Value* v) const { return data_.count(v) != 0; }
  int param_of(const Value* v) const {
    const auto& iv = env_.at(v);
    if (!iv.isTensor()) return -1;
    const auto it = m_.param_index.find(iv.toTensor().unsafeGetTensorImpl());
    return it == m_.param_index.end() ? -1 : it->second;
  }
  std::string param_name(int p) const { return m_.slices[static_cast<size_t>(p)].name; }
  void refuse(const Node* node, const std::string& why) {
    unknown.push_back(
        fmt::format("{}{} at {}", node->kind().toQualString(), why.empty() ? "" : " (" + why + ")", where(node)));
  }

  void run_node(Node* node) {
    const auto kind = node->kind();
    if (kind == c10::prim::Constant) {
      auto v = torch::jit::toIValue(node->output());
      env_[node->output()] = v ? *v : IValue();
      return;
    }
    if (kind == c10::prim::GetAttr) {
      const auto attr = env_.at(node->input()).toObject()->getAttr(node->s(c10::attr::name));
      env_[node->output()] = attr;
      if (attr.isTensor() && m_.param_index.count(attr.toTensor().unsafeGetTensorImpl())) data_.insert(node->output());
      return;
    }
    if (kind == c10::prim::If) return run_if(node);
    if (kind == c10::prim::Loop) return run_loop(node);
    const bool touches_data =
        std::any_of(node->inputs().begin(), node->inputs().end(), [&](const Value* v) { return is_data(v); });
    const auto name = std::string(kind.toQualString());
    const auto param = parametric_ops().find(name);
    ParamOp op;
    bool parametric = false;
    if (touches_data) {
      if (param != parametric_ops().end()) {
        parametric = check_parametric(node, name, param->second, op);
      } else if (examplewise_ops().count(name)) {
        check_examplewise(node, name);
        steps.push_back({name, node, ops.size()});
      } else {
        refuse(node, "");
      }
    }
    if (parametric) ++epoch_;  // the boundary before this op
    if (touches_data)
      for (auto* v : node->inputs()) read(v);
    if (parametric) {
      op.node = node;
      op.in_value = node->input(name == "aten::addmm" ? 1 : 0);
      op.out_value = node->output();
      op.input = env_.at(op.in_value).toTensor();  // as read(), which may have aliased it
      if (before_op) {
        auto replaced = before_op(op, op.input);
        if (replaced.defined()) {
          env_[op.in_value] = replaced;
          op.input = replaced;
          n_ = replaced.size(0);
        }
      }
      op.input_version = op.input._version();
    }
    torch::jit::Stack stack;
    for (auto* v : node->inputs()) stack.push_back(env_.at(v));
    if (!run_container_op(node, stack)) node->getOperation()(stack);
    const size_t nout = node->outputs().size();
    for (size_t k = 0; k < nout; ++k) {
      auto* v = node->outputs()[k];
      env_[v] = stack[stack.size() - nout + k];
      if (!touches_data || name == "aten::size" || name == "aten::dim") continue;
      data_.insert(v);
      defined(v);
      const auto& iv = env_[v];
      if (iv.isTensor() && (iv.toTensor().dim() < 1 || iv.toTensor().size(0) != n_))
        refuse(node, fmt::format("output of shape ({}) for {} examples: the batch dimension must stay first",
                                 fmt::join(iv.toTensor().sizes(), ", "), n_));
    }
    if (parametric) {
      auto y = env_[node->output()].toTensor();
      op.output = y;
      // Later in-place ops (relu_, add_) must not rewrite the tensor the backward pass targets.
      if (record_) env_[node->output()] = y.clone();
      ops.push_back(std::move(op));
    }
  }

  // The container ops the JIT interpreter runs as instructions, not registered operators:
  // their inputs on the stack are replaced by their outputs. False for any other op.
  static bool run_container_op(const Node* node, torch::jit::Stack& stack) {
    const auto kind = node->kind();
    const size_t nin = node->inputs().size();
    std::vector<IValue> in(stack.end() - static_cast<std::ptrdiff_t>(nin), stack.end());
    std::vector<IValue> out;
    if (kind == c10::prim::ListConstruct) {
      c10::impl::GenericList list(node->output()->type()->expectRef<c10::ListType>().getElementType());
      for (auto& v : in) list.push_back(std::move(v));
      out.emplace_back(std::move(list));
    } else if (kind == c10::prim::TupleConstruct) {
      out.emplace_back(c10::ivalue::Tuple::create(std::move(in)));
    } else if (kind == c10::prim::ListUnpack) {
      for (const auto& v : in[0].toListRef()) out.push_back(v);
    } else if (kind == c10::prim::TupleUnpack) {
      for (const auto& v : in[0].toTupleRef().elements()) out.push_back(v);
    } else if (kind == c10::prim::TupleIndex) {
      const auto& elements = in[0].toTupleRef().elements();
      int64_t i = in[1].toInt();
      out.push_back(elements.at(static_cast<size_t>(i < 0 ? i + static_cast<int64_t>(elements.size()) : i)));
    } else if (kind == c10::prim::unchecked_cast) {
      out.push_back(in[0]);
    } else if (kind == c10::prim::Uninitialized) {
      out.emplace_back();
    } else {
      return false;
    }
    stack.resize(stack.size() - nin);
    for (auto& v : out) stack.push_back(std::move(v));
    return true;
  }

  void run_if(Node* node) {
    Block* block = node->blocks()[env_.at(node->input()).toBool() ? 0 : 1];
    run_block(block);
    for (size_t k = 0; k < node->outputs().size(); ++k) {
      read(block->outputs()[k]);
      env_[node->outputs()[k]] = env_.at(block->outputs()[k]);
      if (!is_data(block->outputs()[k])) continue;
      data_.insert(node->outputs()[k]);
      defined(node->outputs()[k]);
    }
  }

  void run_loop(Node* node) {
    Block* body = node->blocks()[0];
    const int64_t trips = env_.at(node->input(0)).toInt();
    bool go = env_.at(node->input(1)).toBool();
    const size_t carried = node->inputs().size() - 2;
    std::vector<IValue> state;
    std::vector<bool> state_data;
    for (size_t k = 0; k < carried; ++k) {
      state.push_back(env_.at(node->input(k + 2)));
      state_data.push_back(is_data(node->input(k + 2)));
      if (state_data.back()) no_cuts_ = true;  // values a body redefines on every trip
    }
    for (int64_t i = 0; go && i < trips; ++i) {
      env_[body->inputs()[0]] = IValue(i);
      for (size_t k = 0; k < carried; ++k) {
        env_[body->inputs()[k + 1]] = state[k];
        if (state_data[k]) data_.insert(body->inputs()[k + 1]);
      }
      run_block(body);
      go = env_.at(body->outputs()[0]).toBool();
      for (size_t k = 0; k < carried; ++k) {
        state[k] = env_.at(body->outputs()[k + 1]);
        state_data[k] = state_data[k] || is_data(body->outputs()[k + 1]);
      }
    }
    for (size_t k = 0; k < carried; ++k) {
      env_[node->outputs()[k]] = state[k];
      if (state_data[k]) {
        data_.insert(node->outputs()[k]);
        defined(node->outputs()[k]);
      }
    }
  }

  // A data value made now; a second definition (a loop body's values) rules out cuts.
  void defined(const Value* v) {
    if (!made_at_.emplace(v, epoch_).second) no_cuts_ = true;
  }

  // A read of data value v: made before the last op boundary, it is read across the
  // boundaries since, and from now on through an alias, which is the member of their cuts.
  void read(const Value* v) {
    if (!cuts_) return;
    const auto it = made_at_.find(v);  // none: the input x or a parameter
    if (it == made_at_.end() || it->second == epoch_) return;
    const auto& iv = env_.at(v);
    const size_t first = it->second, last = epoch_ - 1;
    it->second = epoch_;
    if (iv.isTensor()) {
      const auto& t = iv.toTensor();
      if (!t.requires_grad()) return;  // depends on no op
      auto alias = at::alias(t);
      members_.push_back({first, last, alias, alias._version()});
      env_[v] = alias;
    } else if (iv.isList() || iv.isTuple()) {
      members_.push_back({first, last, torch::Tensor(), 0});  // tensors a cut cannot name
    }
  }

  void check_examplewise(const Node* node, const std::string& name) {
    for (auto* v : node->inputs()) {
      const int p = param_of(v);
      if (p >= 0) return refuse(node, fmt::format("takes parameter '{}'", param_name(p)));
    }
    const auto& x = env_.at(node->input(0));
    const int64_t rank = x.isTensor() ? x.toTensor().dim() : 0;
    auto axis = [&](int64_t d) { return d < 0 ? d + rank : d; };
    if (name == "aten::flatten" && axis(env_.at(node->input(1)).toInt()) < 1)
      refuse(node, "flattens the batch dimension");
    if (name == "aten::cat") {
      const auto list = env_.at(node->input(0)).toListRef();
      const int64_t r = list.empty() ? 0 : list[0].toTensor().dim();
      const int64_t d = env_.at(node->input(1)).toInt();
      if ((d < 0 ? d + r : d) == 0) refuse(node, "concatenates along the batch dimension");
    }
    if ((name == "aten::dropout" || name == "aten::dropout_") && env_.at(node->input(2)).toBool())
      refuse(node, "in training mode");
  }

  // A parametric op: its parameter slots hold parameters (or constants, or None), its data
  // operand none. False (with the op an ordinary per-example one) when it has no parameters.
  bool check_parametric(const Node* node, const std::string& name, const std::vector<size_t>& slots, ParamOp& op) {
    op.name = name;
    std::vector<int> ps;
    for (size_t k = 0; k < node->inputs().size(); ++k) {
      const int p = param_of(node->input(k));
      const bool slot = std::find(slots.begin(), slots.end(), k) != slots.end();
      if (p >= 0 && !slot) {
        refuse(node, fmt::format("takes parameter '{}' as an input that is not a weight or bias", param_name(p)));
        return false;
      }
      if (slot && p < 0 && is_data(node->input(k))) {
        refuse(node, "its weight or bias is computed, not a parameter");
        return false;
      }
      if (slot) ps.push_back(p);
    }
    const auto& in = env_.at(node->input(name == "aten::addmm" ? 1 : 0));
    if (name == "aten::matmul" && !is_data(node->input(0))) {
      refuse(node, "the parameter is not the right operand");
      return false;
    }
    if (ps[0] < 0 && ps.size() > 1 && ps[1] >= 0 && name != "aten::addmm") {
      refuse(node, "a bias parameter without a weight parameter");
      return false;
    }
    const bool has_params = std::any_of(ps.begin(), ps.end(), [](int p) { return p >= 0; });
    if (!has_params) {
      if (name == "aten::matmul" || name == "aten::addmm") refuse(node, "products of two computed tensors");
      return false;
    }
    for (int p : ps)
      if (p >= 0 && ++uses_[static_cast<size_t>(p)] > 1) {
        refuse(node, fmt::format("parameter '{}' is used by more than one op", param_name(p)));
        return false;
      }
    op.input = in.toTensor();
    return describe_parametric(node, name, ps, op);
  }

  bool describe_parametric(const Node* node, const std::string& name, const std::vector<int>& ps, ParamOp& op) {
    auto input = [&](size_t k) { return env_.at(node->input(k)); };
    if (name == "aten::linear") {
      op.kind = OpKind::Linear;
      op.weight = ps[0];
      op.bias = ps[1];
    } else if (name == "aten::matmul" || name == "aten::addmm") {
      op.kind = name == "aten::matmul" ? OpKind::Matmul : OpKind::Addmm;
      op.weight = name == "aten::matmul" ? ps[0] : ps[1];
      op.bias = name == "aten::matmul" ? -1 : ps[0];
      if (op.weight < 0 || m_.params[static_cast<size_t>(op.weight)].dim() != 2)
        return refuse(node, "the parameter must be a 2-D right operand"), false;
      if (op.kind == OpKind::Addmm && (input(3).toScalar().toDouble() != 1.0 || input(4).toScalar().toDouble() != 1.0 ||
                                       (op.bias >= 0 && m_.params[static_cast<size_t>(op.bias)].dim() != 1)))
        return refuse(node, "only beta = alpha = 1 and a 1-D bias"), false;
    } else if (name == "aten::conv2d" || name == "aten::_convolution") {
      op.kind = OpKind::Conv;
      op.weight = ps[0];
      op.bias = ps[1];
      if (!input(4).isIntList() && !input(4).isInt()) return refuse(node, "padding must be a list of sizes"), false;
      op.stride = int_list(input(3));
      op.padding = int_list(input(4));
      op.dilation = int_list(input(5));
      if (name == "aten::_convolution") {
        if (input(6).toBool()) return refuse(node, "transposed convolution"), false;
        op.groups = input(8).toInt();
      } else {
        op.groups = input(6).toInt();
      }
      if (m_.params[static_cast<size_t>(op.weight)].dim() != 4 || op.input.dim() != 4)
        return refuse(node, "only 2-D convolutions"), false;
      if (op.stride.size() == 1) op.stride.push_back(op.stride[0]);
      if (op.padding.size() == 1) op.padding.push_back(op.padding[0]);
      if (op.dilation.size() == 1) op.dilation.push_back(op.dilation[0]);
    } else if (name == "aten::batch_norm") {
      op.kind = OpKind::BatchNorm;
      op.weight = ps[0];
      op.bias = ps[1];
      if (input(5).toBool()) return refuse(node, "in training mode"), false;
      if (!input(3).isTensor() || !input(4).isTensor()) return refuse(node, "no running statistics"), false;
      op.mean = input(3).toTensor();
      op.var = input(4).toTensor();
      op.eps = input(7).toDouble();
    } else {  // aten::layer_norm
      op.kind = OpKind::LayerNorm;
      op.weight = ps[0];
      op.bias = ps[1];
      op.norm_dims = static_cast<int64_t>(input(1).toIntVector().size());
      op.eps = input(4).toDouble();
    }
    return true;
  }

  TorchScriptNetwork::Impl& m_;
  bool record_;
  std::vector<int> uses_;
  int64_t n_ = 0;
  std::unordered_map<const Value*, IValue> env_;
  std::unordered_set<const Value*> data_;
  // The cuts: op boundaries passed, when each data value was made or last aliased, and each
  // alias with the boundaries it is read across (first..last) and its version when made.
  struct Member {
    size_t first = 0, last = 0;
    torch::Tensor tensor;
    int64_t version = 0;
  };
  bool cuts_ = false, no_cuts_ = false;
  size_t epoch_ = 0;
  std::unordered_map<const Value*, size_t> made_at_;
  std::vector<Member> members_;
};

// ---- the ops' gradient rows and Gram terms ----

// A linear-type op's input as (N, T, in) and its backprop vectors as (N, R, T, out).
std::pair<torch::Tensor, torch::Tensor> linear_operands(const ParamOp& op, const torch::Tensor& b) {
  const int64_t n = b.size(0), r = b.size(1), in = op.input.size(-1), out = op.output.size(-1);
  const int64_t t = op.input.numel() / (n * in);
  return {op.input.reshape({n, t, in}), b.reshape({n, r, t, out})};
}

torch::Tensor unfold(const ParamOp& op, int64_t kh, int64_t kw) {
  namespace F = torch::nn::functional;
  return F::unfold(op.input, F::UnfoldFuncOptions({kh, kw})
                                 .dilation({op.dilation[0], op.dilation[1]})
                                 .padding({op.padding[0], op.padding[1]})
                                 .stride({op.stride[0], op.stride[1]}));
}

layers::ConvShape conv_shape(const ParamOp& op, const torch::Tensor& weight) {
  return {weight.size(0), op.groups, weight.size(1) * weight.size(2) * weight.size(3),
          op.output.size(2) * op.output.size(3), op.bias >= 0};
}

// The normalised input x_hat of batch_norm (per channel, dim 1, running statistics) or
// layer_norm (per example over the trailing dimensions), by the op itself without its affine
// part, so that it is rounded as in the forward pass.
torch::Tensor normalised_input(const ParamOp& op) {
  const auto& x = op.input;
  if (op.kind == OpKind::BatchNorm)
    return torch::batch_norm(x, {}, {}, op.mean, op.var, /*training=*/false, 0.0, op.eps, /*cudnn_enabled=*/false);
  const auto shape = x.sizes().slice(static_cast<size_t>(x.dim() - op.norm_dims));
  return torch::layer_norm(x, shape, {}, {}, op.eps);
}

// The op's gradient rows, (N R, numel) for each of its parameters (index, rows). b (N, R, out...).
std::vector<std::pair<int, torch::Tensor>> op_rows(const ParamOp& op, const torch::Tensor& b,
                                                   const std::vector<torch::Tensor>& params) {
  const int64_t n = b.size(0), r = b.size(1);
  std::vector<std::pair<int, torch::Tensor>> rows;
  switch (op.kind) {
    case OpKind::Linear:
    case OpKind::Matmul:
    case OpKind::Addmm: {
      auto [a, bb] = linear_operands(op, b);
      const int64_t t = a.size(1), in = a.size(2), out = bb.size(3);
      // sum_t b_t (x) a_t: (N, R out, T) (N, T, in) -> weight layout (out, in) for linear,
      // (in, out) for matmul/addmm.
      auto w = torch::bmm(bb.permute({0, 1, 3, 2}).reshape({n, r * out, t}), a).view({n, r, out, in});
      if (op.kind != OpKind::Linear) w = w.transpose(2, 3);
      rows.emplace_back(op.weight, w.reshape({n * r, out * in}));
      if (op.bias >= 0) rows.emplace_back(op.bias, bb.sum(2).reshape({n * r, out}));
      break;
    }
    case OpKind::Conv: {
      const auto& weight = params[static_cast<size_t>(op.weight)];
      const auto s = conv_shape(op, weight);
      const auto u = unfold(op, weight.size(2), weight.size(3));
      const auto maps = b.reshape({n, r, s.out, s.positions});
      std::vector<torch::Tensor> w;
      const int64_t per_group = s.out / s.groups;
      for (int64_t o0 = 0; o0 < s.out; o0 += per_group)
        w.push_back(layers::conv_filter_grads(u, maps, s, o0, per_group).first);
      rows.emplace_back(op.weight, torch::cat(w, 1));
      if (op.bias >= 0) rows.emplace_back(op.bias, maps.sum(3).reshape({n * r, s.out}));
      break;
    }
    case OpKind::BatchNorm:
    case OpKind::LayerNorm: {
      const auto xhat = normalised_input(op);
      // Sum over the dimensions the parameter is shared across: batch_norm all but the
      // channel; layer_norm all but the normalised ones.
      std::vector<int64_t> sum_dims;
      if (op.kind == OpKind::BatchNorm) {
        for (int64_t k = 3; k < b.dim(); ++k) sum_dims.push_back(k);
      } else {
        for (int64_t k = 2; k < b.dim() - op.norm_dims; ++k) sum_dims.push_back(k);
      }
      auto reduce = [&](const torch::Tensor& t) {
        return (sum_dims.empty() ? t : t.sum(sum_dims)).reshape({n * r, -1});
      };
      if (op.weight >= 0) rows.emplace_back(op.weight, reduce(b * xhat.unsqueeze(1)));
      if (op.bias >= 0) rows.emplace_back(op.bias, reduce(b));
      break;
    }
  }
  return rows;
}

bool kronecker(const ParamOp& op) {
  return op.kind != OpKind::Conv && op.kind != OpKind::BatchNorm && op.kind != OpKind::LayerNorm && op.input.dim() == 2;
}

layers::ConvGramForm conv_form(const layers::ConvShape& s, int64_t n, int64_t r, ConvFormChoice choice) {
  if (choice == ConvFormChoice::PerExample) return layers::ConvGramForm::PerExample;
  if (choice == ConvFormChoice::Patch) return layers::ConvGramForm::Patch;
  return layers::cheapest_conv_form(s, n, r);
}

// The op's samples-side Gram term in its form.
void add_op_gram(const ParamOp& op, const torch::Tensor& b, const std::vector<torch::Tensor>& params,
                 ConvFormChoice choice, int64_t memory_budget, torch::Tensor& gram) {
  const int64_t n = b.size(0), r = b.size(1);
  if (kronecker(op)) {
    auto bb = b.reshape({n * r, op.output.size(1)});
    if (op.kind == OpKind::Linear || op.kind == OpKind::Addmm) {
      layers::add_kronecker_gram(op.input, op.bias >= 0, bb, gram);
    } else {
      layers::add_kronecker_gram(op.input, false, bb, gram);
    }
    return;
  }
  if (op.kind == OpKind::Conv) {
    const auto& weight = params[static_cast<size_t>(op.weight)];
    const auto s = conv_shape(op, weight);
    layers::add_conv_gram(unfold(op, weight.size(2), weight.size(3)), b.reshape({n, r, s.out, s.positions}), s,
                          conv_form(s, n, r, choice), memory_budget, gram);
    return;
  }
  for (const auto& [p, rows] : op_rows(op, b, params)) linalg::syrk_lower(rows.contiguous(), gram);
}

// f(x) through the interpreter: a graph error becomes a DataError naming x's shape, an op the
// interpreter does not know a UsageError naming `path` (what needs to know it).
torch::Tensor run_known(TorchScriptNetwork::Impl& m, Interpreter& run, const torch::Tensor& x, const char* path) {
  torch::Tensor f;
  try {
    f = run.run(x);
  } catch (const c10::Error& e) {
    throw DataError(fmt::format("{}: the graph does not take inputs of shape ({}): {}", m.path,
                                fmt::join(x.sizes(), ", "), first_line(e.what_without_backtrace())));
  }
  if (!run.unknown.empty()) throw UsageError(fmt::format("{}: {} does not know {}", m.path, path, run.unknown.front()));
  return f;
}

// Per example, the bytes of each op's R backprop vectors and of each cut's (the frontier before
// op l; cut[ops] is f's side, 0), -1 where op l's frontier cannot be a cut.
struct PassSizes {
  std::vector<int64_t> op, cut;
};

PassSizes pass_sizes(const Interpreter& run, const std::vector<std::optional<std::vector<torch::Tensor>>>& cuts,
                     int64_t r) {
  const auto per_example = [&](const torch::Tensor& t) {
    return r * (t.numel() / std::max<int64_t>(t.size(0), 1)) * static_cast<int64_t>(sizeof(double));
  };
  PassSizes s;
  for (size_t l = 0; l < run.ops.size(); ++l) {
    s.op.push_back(per_example(run.ops[l].output));
    int64_t bytes = l == 0 ? 0 : -1;  // nothing before the first op carries gradients
    if (l > 0 && cuts[l]) {
      bytes = 0;
      for (const auto& t : *cuts[l]) bytes += per_example(t);
    }
    s.cut.push_back(bytes);
  }
  s.cut.push_back(0);
  return s;
}

// The ops split into groups [begin, end), from the output down, each starting at a cut: as
// many ops as keep the group's backprop vectors and those of the cuts at both ends within the
// budget, and at least the ops up to the next cut.
std::vector<std::pair<size_t, size_t>> op_groups(const PassSizes& s, int64_t n, int64_t budget) {
  std::vector<std::pair<size_t, size_t>> groups;
  for (size_t end = s.op.size(); end > 0;) {
    int64_t held = 0;
    size_t begin = end;
    for (size_t l = end; l-- > 0;) {
      held += s.op[l];
      if (s.cut[l] < 0) continue;
      if (begin == end || n * (held + s.cut[l] + s.cut[end]) <= budget) begin = l;
      if (n * held > budget) break;
    }
    groups.emplace_back(begin, end);
    end = begin;
  }
  return groups;
}

int64_t peak_bytes(const PassSizes& s, const std::vector<std::pair<size_t, size_t>>& groups, int64_t n) {
  int64_t peak = 0;
  for (const auto& [begin, end] : groups) {
    int64_t held = s.cut[begin] + s.cut[end];
    for (size_t l = begin; l < end; ++l) held += s.op[l];
    peak = std::max(peak, n * held);
  }
  return peak;
}

// For its lifetime, LibTorch's intra-op pool gets the BLAS threads and BLAS one. The passes run
// LibTorch's own kernels (im2col and col2im, batch-norm and activation backward, copies), mostly
// memory-bound and parallel only in that pool, which ScopedThreads keeps at 1 for the Gram work
// (ResNet-20 at N = 100: the passes 9.1-9.9 s -> 6.6 s). Resizing the pools costs more than it
// saves on small batches (the test models' passes ran 6x slower), so `on` only for large ones.
class PassThreads {
 public:
  explicit PassThreads(bool on) : blas_(linalg::blas_threads()), torch_(torch::get_num_threads()) {
    if (!on) blas_ = torch_;
    if (blas_ <= torch_) return;
    torch::set_num_threads(blas_);
    linalg::set_blas_threads(1);
  }
  ~PassThreads() {
    if (blas_ <= torch_) return;
    linalg::set_blas_threads(blas_);
    torch::set_num_threads(torch_);
  }
  PassThreads(const PassThreads&) = delete;
  PassThreads& operator=(const PassThreads&) = delete;

 private:
  int blas_, torch_;
};

// One recorded forward pass, then group by group from the output down, R backward passes to
// the group's op outputs and the cut below it: from f for the top group, from the cut above
// for the others, so that each part of the graph is traversed once per row and only one
// group's backprop vectors are alive. visit(l, op, b) gets op l's (N, R, out...) as soon as
// they are complete.
void backprop(TorchScriptNetwork::Impl& m, const torch::Tensor& x, const torch::Tensor& q, int64_t budget,
              const std::function<void(size_t, ParamOp&, torch::Tensor&)>& visit) {
  torch::AutoGradMode grad_on(true);
  Interpreter run(m, /*record=*/true, /*cuts=*/true);
  const bool large = x.numel() >= (int64_t{1} << 18);
  std::optional<PassThreads> threads(std::in_place, large);
  const auto f = run_known(m, run, x, "the structured Jacobian");
  threads.reset();
  const auto cuts = run.frontiers();
  const int64_t r = q.size(1);
  const auto groups = op_groups(pass_sizes(run, cuts, r), x.size(0), budget);
  auto buffer = [r](const torch::Tensor& y) {
    auto shape = y.sizes().vec();
    shape.insert(shape.begin() + 1, r);
    return torch::empty(shape, y.options());  // (N, R, ...), filled row by row
  };
  std::vector<torch::Tensor> top, top_b;  // the cut above the group and its backprop vectors
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto [begin, end] = groups[g];
    std::vector<torch::Tensor> inputs, b;
    for (size_t l = begin; l < end; ++l) inputs.push_back(run.ops[l].output);
    const auto bottom = begin > 0 ? *cuts[begin] : std::vector<torch::Tensor>{};
    inputs.insert(inputs.end(), bottom.begin(), bottom.end());
    for (const auto& t : inputs) b.push_back(buffer(t));
    threads.emplace(large);
    for (int64_t c = 0; c < r; ++c) {
      std::vector<torch::Tensor> outs = top, seeds;
      if (g == 0)
        outs = {(q.select(1, c) * f).sum()};
      else
        for (const auto& t : top_b) seeds.push_back(t.select(1, c));
      std::vector<torch::Tensor> grads(inputs.size());
      // The last row frees this part of the graph: the groups below never traverse it.
      if (!outs.empty())
        grads = torch::autograd::grad(outs, inputs, seeds, /*retain_graph=*/c + 1 < r, /*create_graph=*/false,
                                      /*allow_unused=*/true);
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < inputs.size(); ++k) {
        auto dst = b[k].select(1, c);
        if (grads[k].defined())
          dst.copy_(grads[k]);
        else
          dst.zero_();  // not on a path to f
      }
    }
    threads.reset();
    top = bottom;
    top_b.assign(b.begin() + static_cast<std::ptrdiff_t>(end - begin), b.end());
    torch::NoGradGuard no_grad;
    for (size_t l = begin; l < end; ++l) {
      auto& op = run.ops[l];
      op.output = op.output.detach();
      op.input = op.input.detach();
      visit(l, op, b[l - begin]);
      b[l - begin] = torch::Tensor();
      op = ParamOp();  // free as we go
    }
  }
}

}  // namespace

StructuredPlan TorchScriptNetwork::structured_plan(const torch::Tensor& x, int64_t n, int64_t r, ConvFormChoice conv,
                                                   int64_t memory_budget) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto& m = *impl_;
  m.set_theta(m.file_theta);
  torch::AutoGradMode grad_on(true);  // a recording run, for the cuts of the backward pass
  const auto probe = x.narrow(0, 0, std::min<int64_t>(2, x.size(0)));
  Interpreter run(m, /*record=*/true, /*cuts=*/true);
  StructuredPlan plan;
  try {
    run.run(probe);
  } catch (const std::exception& e) {
    const std::string what =
        dynamic_cast<const c10::Error*>(&e) ? static_cast<const c10::Error&>(e).what_without_backtrace() : e.what();
    plan.unknown.push_back(fmt::format("a graph the interpreter cannot run: {}", first_line(what)));
    return plan;
  }
  plan.unknown = run.unknown;
  const auto sizes = pass_sizes(run, run.frontiers(), r);
  const auto groups = op_groups(sizes, n, memory_budget);
  plan.groups = static_cast<int64_t>(groups.size());
  plan.backprop_bytes = peak_bytes(sizes, groups, n);
  const int64_t m0 = probe.size(0), bytes = static_cast<int64_t>(sizeof(double));
  int64_t widest_unfold = 0;
  const double nr = static_cast<double>(n * r);
  for (const auto& op : run.ops) {
    StructuredOp s;
    s.op = op.name;
    int64_t numel = 0;
    for (int p : {op.weight, op.bias})
      if (p >= 0) {
        s.params += (s.params.empty() ? "" : ", ") + m.slices[static_cast<size_t>(p)].name;
        numel += m.slices[static_cast<size_t>(p)].numel();
      }
    plan.forward_bytes += n * (op.input.numel() + 2 * op.output.numel()) / m0 * bytes;
    if (kronecker(op)) {
      s.form = "kronecker";
      s.flops = static_cast<double>(n) * n * op.input.size(1) + nr * nr * op.output.size(1);
    } else if (op.kind == OpKind::Conv) {
      const auto& weight = m.params[static_cast<size_t>(op.weight)];
      const auto shape = conv_shape(op, weight);
      const auto form = conv_form(shape, n, r, conv);
      s.form = layers::conv_form_name(form);
      s.flops = layers::conv_gram_flops(shape, n, r, form);
      widest_unfold = std::max(widest_unfold, n * shape.groups * shape.patch * shape.positions * bytes);
    } else {
      s.form = "rows";
      s.flops = nr * nr * static_cast<double>(numel);
    }
    plan.ops.push_back(std::move(s));
  }
  plan.backprop_bytes += widest_unfold;
  return plan;
}

void TorchScriptNetwork::structured_rows(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& q,
                                         int64_t i0, torch::Tensor& out) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto& m = *impl_;
  m.set_theta(theta);
  out.zero_();  // a parameter the output does not depend on
  backprop(m, x.narrow(0, i0, q.size(0)), q, std::numeric_limits<int64_t>::max(),
           [&](size_t, ParamOp& op, torch::Tensor& b) {
             for (const auto& [p, rows] : op_rows(op, b, m.params)) {
               const auto& slice = m.slices[static_cast<size_t>(p)];
               out.narrow(1, slice.offset, slice.numel()).copy_(rows);
             }
           });
}

void TorchScriptNetwork::structured_gram(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& q,
                                         ConvFormChoice conv, int64_t memory_budget, torch::Tensor& gram,
                                         std::vector<double>* op_seconds) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto& m = *impl_;
  m.set_theta(theta);
  if (op_seconds) op_seconds->clear();
  backprop(m, x, q, memory_budget, [&](size_t l, ParamOp& op, torch::Tensor& b) {
    const auto t0 = std::chrono::steady_clock::now();
    add_op_gram(op, b, m.params, conv, memory_budget, gram);
    if (!op_seconds) return;
    if (op_seconds->size() <= l) op_seconds->resize(l + 1, 0.0);
    (*op_seconds)[l] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  });
}

// ---- the Markov chain model on an imported chain (docs/math.md section 9) ----

namespace {

bool starts_layer(const ParamOp& op) {
  return op.kind != OpKind::BatchNorm && op.kind != OpKind::LayerNorm;
}

// Ops of a hidden Markov layer's tail, beyond list plumbing: they act on each unit or channel
// alone (pooling only on a convolution's (N, C, H, W) output before any reshape).
const std::set<std::string>& tail_reshapes() {
  static const std::set<std::string> ops = {"aten::flatten", "aten::view", "aten::reshape"};
  return ops;
}
bool is_pooling(const std::string& name) {
  return name.find("pool") != std::string::npos;
}
bool is_plumbing(const std::string& name) {
  return name.rfind("prim::", 0) == 0 || name == "aten::size" || name == "aten::dim" || name == "aten::__getitem__" ||
         name == "aten::contiguous" || name == "aten::clone";
}

// One Markov layer in terms of the recorded ops: ops [op, end), its batch_norm, its tail steps.
struct ChainLayer {
  size_t op = 0, end = 0;
  int norm = -1;
  std::vector<const Step*> tail;
};

// The chain's Markov layers from one interpreted run, or the UsageError naming the op that
// does not fit (docs/math.md section 9).
std::vector<ChainLayer> chain_layers(const TorchScriptNetwork::Impl& m, const Interpreter& run) {
  auto refuse = [&](const Node* node, const std::string& what) {
    throw UsageError(fmt::format("{}: the Markov chain model cannot take {} {} at {}", m.path,
                                 node->kind().toQualString(), what, where(node)));
  };
  std::vector<ChainLayer> layers;
  for (size_t k = 0; k < run.ops.size(); ++k) {
    const auto& op = run.ops[k];
    if (starts_layer(op)) {
      layers.push_back({k, k + 1, -1, {}});
      continue;
    }
    if (op.kind == OpKind::LayerNorm && layers.empty())
      refuse(op.node, "(a normalisation before the first Linear or Conv2d layer)");
    if (op.kind == OpKind::BatchNorm && (layers.empty() || layers.back().end != k || layers.back().norm >= 0 ||
                                         op.in_value != run.ops[k - 1].out_value))
      refuse(op.node, "(a normalisation must directly follow a Linear or Conv2d op)");
    if (op.kind == OpKind::BatchNorm) layers.back().norm = static_cast<int>(k);
    layers.back().end = k + 1;
  }
  if (layers.empty()) throw UsageError(fmt::format("{}: the graph has no Linear or Conv2d layer", m.path));
  for (const auto& step : run.steps) {
    if (step.name == "aten::cat") refuse(step.node, "(a concatenation)");
    if (step.after == 0) continue;  // before the first layer: transforms the inputs only
    // The layer of the last parametric op that ran before the step.
    auto owner = std::find_if(layers.rbegin(), layers.rend(), [&](const ChainLayer& l) { return l.op < step.after; });
    owner->tail.push_back(&step);
  }
  for (size_t li = 0; li + 1 < layers.size(); ++li) {
    const auto& l = layers[li];
    const auto& op = run.ops[l.op];
    for (size_t k = l.op + 1; k < l.end; ++k)
      if (run.ops[k].kind == OpKind::LayerNorm)
        refuse(run.ops[k].node,
               "inside a hidden Markov layer (it mixes the layer's units; only an eval-mode "
               "batch_norm right after the Linear or Conv2d op is split into unit blocks)");
    if (op.kind != OpKind::Conv && op.input.dim() != 2)
      refuse(op.node, fmt::format("in a hidden Markov layer on inputs of shape ({}) (expected (N, features))",
                                  fmt::join(op.input.sizes(), ", ")));
    bool reshaped = false;
    for (const auto* step : l.tail) {
      if (is_pooling(step->name) && (op.kind != OpKind::Conv || reshaped))
        refuse(step->node,
               "inside a hidden Markov layer (pooling acts channel by channel only on a Conv2d's "
               "output before any reshape)");
      if (tail_reshapes().count(step->name)) reshaped = true;
    }
  }
  return layers;
}

std::string short_name(const std::string& op) {
  const auto colon = op.rfind(':');
  return colon == std::string::npos ? op : op.substr(colon + 1);
}

// The MarkovLayer descriptions of the chain (names, sizes, noise layout) from a probe run;
// `y` holds each hidden layer's output (the next layer's data operand, before the noise).
std::vector<MarkovLayer> describe_chain(const TorchScriptNetwork::Impl& m, const Interpreter& run,
                                        const std::vector<ChainLayer>& chain, const std::vector<torch::Tensor>& y,
                                        const torch::Tensor& f) {
  std::vector<MarkovLayer> out;
  int64_t offset = 0;
  for (size_t li = 0; li < chain.size(); ++li) {
    const auto& l = chain[li];
    MarkovLayer ml;
    ml.first = static_cast<int64_t>(l.op);
    ml.last = static_cast<int64_t>(l.end);
    ml.hidden = li + 1 < chain.size();
    std::vector<std::string> parts, params;
    for (size_t k = l.op; k < l.end; ++k) {
      const auto& op = run.ops[k];
      for (int p : {op.weight, op.bias})
        if (p >= 0) {
          const auto& slice = m.slices[static_cast<size_t>(p)];
          if (params.empty()) ml.param_offset = slice.offset;
          params.push_back(slice.name);
          ml.params += slice.numel();
        }
      parts.push_back(short_name(op.name));
    }
    const auto& first = m.slices[static_cast<size_t>(run.ops[l.op].weight)].name;
    ml.name = first.substr(0, first.rfind('.'));
    std::string last;
    for (const auto* step : l.tail) {
      const auto name = short_name(step->name);
      if (!is_plumbing(step->name) && name != last) parts.push_back(name);
      last = name;
    }
    const auto& result = ml.hidden ? y[li] : f;
    const auto shape = result.sizes().slice(1);
    ml.description =
        fmt::format("{} ({}) -> {}", fmt::join(parts, ", "), fmt::join(params, ", "), fmt::join(shape, "x"));
    const auto& z = run.ops[static_cast<size_t>(l.norm >= 0 ? l.norm : static_cast<int>(l.op))].output;
    ml.units = ml.hidden ? z.size(1) : 1;
    if (ml.hidden) {
      ml.noise_width = result.numel() / result.size(0);
      ml.noise_offset = offset;
      offset += ml.noise_width;
    }
    out.push_back(std::move(ml));
  }
  return out;
}

// The tail's channel map (docs/math.md section 2) from z (rows, C, Q...) to y (rows, C*P...):
// one backward pass per output position p gives d y[i,c,p] / d z[i,c,:] for every example and
// channel at once, because the tail acts on each alone. The derivative is LibTorch's own of
// each op; only its non-zero terms are kept (K per position: 1 for max pooling, the window for
// average pooling).
layers::ChannelMap tail_map(const torch::Tensor& z, const torch::Tensor& y) {
  const int64_t rows = z.size(0), c = z.size(1), q = z.numel() / (rows * c), p = y.numel() / (rows * c);
  const auto yv = y.reshape({rows, c, p});
  std::vector<torch::Tensor> index, weight;
  int64_t terms = 1;
  for (int64_t pos = 0; pos < p; ++pos) {
    auto g = torch::autograd::grad({yv.select(2, pos).sum()}, {z}, {}, /*retain_graph=*/true, false,
                                   /*allow_unused=*/true)[0];
    torch::NoGradGuard no_grad;
    g = g.defined() ? g.reshape({rows, c, q}) : torch::zeros({rows, c, q}, z.options());
    const int64_t k = std::max<int64_t>((g != 0).sum(2).max().item<int64_t>(), 1);
    auto ind = std::get<1>(g.abs().topk(k, 2));
    weight.push_back(g.gather(2, ind));
    index.push_back(ind);
    terms = std::max(terms, k);
  }
  torch::NoGradGuard no_grad;
  for (int64_t pos = 0; pos < p; ++pos) {
    const int64_t pad = terms - index[static_cast<size_t>(pos)].size(2);
    if (pad == 0) continue;
    auto& i = index[static_cast<size_t>(pos)];
    auto& w = weight[static_cast<size_t>(pos)];
    i = torch::cat({i, torch::zeros({rows, c, pad}, i.options())}, 2);
    w = torch::cat({w, torch::zeros({rows, c, pad}, w.options())}, 2);
  }
  return {torch::stack(index, 2), torch::stack(weight, 2)};
}

// The design rows of a layer's parametric op (layer.h's design_rows): (rows, Q, D) for one
// design shared by all units, (rows, G, Q, D) for a grouped convolution; a trailing 1 for the bias.
torch::Tensor chain_design(const ParamOp& op, const std::vector<torch::Tensor>& params) {
  const int64_t rows = op.input.size(0);
  torch::Tensor d;
  if (op.kind != OpKind::Conv) {
    d = op.input.detach().reshape({rows, 1, 1, -1});
  } else {
    const auto& w = params[static_cast<size_t>(op.weight)];
    const auto u = unfold(op, w.size(2), w.size(3)).detach();  // (rows, C_in k k, L)
    d = u.view({rows, op.groups, w.size(1) * w.size(2) * w.size(3), u.size(2)}).transpose(2, 3);
  }
  if (op.bias >= 0) d = torch::cat({d, torch::ones({rows, d.size(1), d.size(2), 1}, d.options())}, 3);
  return op.groups == 1 ? d.squeeze(1).contiguous() : d.contiguous();
}

// A batch_norm's share of each unit's columns: a_c = gamma_c / sqrt(var_c + eps) on the filter
// and bias, and the columns (xhat_c(q), 1) of its weight and bias.
UnitColumns norm_columns(const ParamOp& bn, const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  UnitColumns cols;
  const auto inv = (bn.var.to(torch::kFloat64) + bn.eps).rsqrt();
  cols.unit_scale = bn.weight >= 0 ? params[static_cast<size_t>(bn.weight)].detach() * inv : inv;
  const int64_t rows = bn.input.size(0), c = bn.input.size(1);
  std::vector<torch::Tensor> extra;
  if (bn.weight >= 0) extra.push_back(normalised_input(bn).detach().reshape({rows, c, -1, 1}));
  if (bn.bias >= 0) extra.push_back(torch::ones({rows, c, bn.input.numel() / (rows * c), 1}, bn.input.options()));
  if (!extra.empty()) cols.extra = torch::cat(extra, 3).contiguous();
  return cols;
}

// The output Markov layer's block: the standard model's Fisher of its ops at the noisy inputs,
// from its ops' gradient rows R_i J_i (op_rows), on the smaller side.
LayerBlockSpectrum output_block(const TorchScriptNetwork::Impl& m, const Interpreter& run, const ChainLayer& l,
                                const torch::Tensor& f, const FisherOptions& opts, uint64_t rng_index) {
  const auto q = output_covectors(f.detach(), opts, rng_index);  // (rows, R, k)
  const int64_t rows = f.size(0), r = q.size(1);
  std::vector<torch::Tensor> ys;
  for (size_t k = l.op; k < l.end; ++k) ys.push_back(run.ops[k].output);
  std::vector<torch::Tensor> b;
  for (const auto& y : ys) {
    auto shape = y.sizes().vec();
    shape.insert(shape.begin() + 1, r);
    b.push_back(torch::zeros(shape, y.options()));
  }
  for (int64_t c = 0; c < r; ++c) {
    const auto grads = torch::autograd::grad({(q.select(1, c) * f).sum()}, ys, {}, /*retain_graph=*/true, false,
                                             /*allow_unused=*/true);
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < ys.size(); ++k)
      if (grads[k].defined()) b[k].select(1, c).copy_(grads[k]);
  }
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> cols;
  for (size_t k = l.op; k < l.end; ++k) {
    ParamOp op = run.ops[k];
    op.input = op.input.detach();
    op.output = op.output.detach();
    for (auto& [p, g] : op_rows(op, b[k - l.op], m.params)) cols.push_back(g);
  }
  const auto jh = torch::cat(cols, 1);
  const bool samples = linalg::choose_side(opts.side, jh.size(0), jh.size(1)) == GramSide::Samples;
  const auto matrix = (samples ? jh.matmul(jh.t()) : jh.t().matmul(jh)) / static_cast<double>(rows);
  auto fs = spectrum_of(matrix, opts.cutoff);
  LayerBlockSpectrum out;
  out.spectrum = std::move(fs.spectrum);
  out.blocks = 1;
  (samples ? out.blocks_samples_side : out.blocks_parameter_side) = 1;
  out.largest_block = matrix.size(0);
  return out;
}

void check_markov_options(const MarkovOptions& opts) {
  if (!(opts.sigma > 0.0) || !std::isfinite(opts.sigma))
    throw UsageError(fmt::format("--sigma must be a finite number > 0 for the Markov chain model, got {}", opts.sigma));
  if (opts.noise_draws < 1) throw UsageError(fmt::format("--noise-draws must be >= 1, got {}", opts.noise_draws));
}

}  // namespace

std::vector<MarkovLayer> TorchScriptNetwork::markov_layers(const torch::Tensor& x, const MarkovOptions& opts) const {
  check_markov_options(opts);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto& m = *impl_;
  m.set_theta(m.file_theta);
  torch::NoGradGuard no_grad;
  const auto probe = x.narrow(0, 0, std::min<int64_t>(2, x.size(0))).to(torch::kFloat64);
  Interpreter run(m, /*record=*/false);
  std::vector<torch::Tensor> y;
  bool started = false;
  run.before_op = [&](const ParamOp& op, const torch::Tensor& in) {
    if (starts_layer(op) && std::exchange(started, true)) y.push_back(in);
    return torch::Tensor();
  };
  const auto f = run_known(m, run, probe, "the Markov chain model");
  return describe_chain(m, run, chain_layers(m, run), y, f);
}

MarkovSpectrum TorchScriptNetwork::markov_spectrum(const torch::Tensor& theta, const torch::Tensor& x,
                                                   const torch::Tensor& noise, const MarkovOptions& opts,
                                                   uint64_t rng_index,
                                                   const std::function<void(size_t)>& after_layer) const {
  check_markov_options(opts);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto& m = *impl_;
  m.set_theta(theta);
  torch::AutoGradMode grad_on(true);
  const int64_t n = x.size(0), r = opts.noise_draws;
  if (noise.dim() != 2 || noise.size(0) != n * r)
    throw UsageError(fmt::format("{}: Markov noise must have N*R = {} rows, got shape ({})", m.path, n * r,
                                 fmt::join(noise.sizes(), ", ")));
  const auto t0 = std::chrono::steady_clock::now();
  Interpreter run(m, /*record=*/true);
  std::vector<torch::Tensor> y;  // each hidden layer's output, before its noise
  bool started = false;
  int64_t offset = 0;
  // The noise sigma*xi after each hidden layer, before the next layer's op; from the first
  // noise on, row i*R + r is draw r of input i.
  run.before_op = [&](const ParamOp& op, const torch::Tensor& in) {
    if (!starts_layer(op) || !std::exchange(started, true)) return torch::Tensor();
    y.push_back(in);
    const int64_t width = in.numel() / in.size(0);
    if (offset + width > noise.size(1))
      throw UsageError(fmt::format("{}: Markov noise has {} columns, the chain needs more", m.path, noise.size(1)));
    auto rows = in.size(0) == n * r ? in : in.repeat_interleave(r, 0);
    auto xi = noise.narrow(1, offset, width).reshape(rows.sizes()).to(rows.scalar_type());
    offset += width;
    return rows + opts.sigma * xi;
  };
  const auto f = run_known(m, run, x, "the Markov chain model");
  if (offset != noise.size(1))
    throw UsageError(fmt::format("{}: Markov noise has {} columns, the chain takes {}", m.path, noise.size(1), offset));
  const auto chain = chain_layers(m, run);
  const double forward = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MarkovSpectrum out;
  for (size_t li = 0; li < chain.size(); ++li) {
    const auto t1 = std::chrono::steady_clock::now();
    const auto& l = chain[li];
    LayerBlockSpectrum block;
    if (li + 1 < chain.size()) {
      const auto& op = run.ops[l.op];
      const auto& z = run.ops[static_cast<size_t>(l.norm >= 0 ? l.norm : static_cast<int>(l.op))].output;
      const auto map = tail_map(z, y[li]);
      torch::NoGradGuard no_grad;
      const UnitColumns cols =
          l.norm >= 0 ? norm_columns(run.ops[static_cast<size_t>(l.norm)], m.params) : UnitColumns{};
      const double scale = 1.0 / (static_cast<double>(z.size(0)) * opts.sigma * opts.sigma);
      block = unit_block_spectrum(map, chain_design(op, m.params), scale, opts.fisher, cols);
    } else {
      block = output_block(m, run, l, f, opts.fisher, rng_index);
    }
    block.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() + (li == 0 ? forward : 0.0);
    out.layers.push_back(std::move(block));
    if (after_layer) after_layer(li);
  }
  return out;
}

}  // namespace twosed
