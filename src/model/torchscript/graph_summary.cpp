// summarize_graph(): the operations of an imported model's inlined forward graph and the joins
// of two paths from the input (skip connections), for --plan and the Markov chain model.
#include <fmt/format.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>

#include "twosed/model/torchscript.h"

namespace twosed {
namespace {

// Counted: aten operations that make a tensor (not shape queries, checks or list handling).
bool is_tensor_op(const torch::jit::Node* node) {
  return node->kind().ns() == c10::namespaces::aten &&
         std::any_of(node->outputs().begin(), node->outputs().end(),
                     [](const torch::jit::Value* v) { return v->type()->kind() == c10::TypeKind::TensorType; });
}

std::string trimmed(std::string text) {
  text = text.substr(0, text.find('\n'));
  const auto first = text.find_first_not_of(" \t");
  const auto last = text.find_last_not_of(" \t\r");
  return first == std::string::npos ? "" : text.substr(first, last - first + 1);
}

// Line `line` (1-based) of a file, if it can be read.
std::string line_of_file(const std::string& path, size_t line) {
  std::ifstream in(path);
  std::string text;
  for (size_t i = 0; i < line && std::getline(in, text);) ++i;
  return in ? trimmed(text) : "";
}

// "FILE:LINE: SOURCE LINE" of a node, empty when the file records no source. A scripted module
// keeps its Python source (debug information) behind the archive's serialised code; a traced
// one records the Python stack at tracing time as "FILE(LINE): FUNCTION" lines, whose first
// frame is the model's code (its line is read from FILE where that still exists).
std::string source_line(const torch::jit::Node* node) {
  auto range = node->sourceRange();
  if (auto original = range.findSourceRangeThatGenerated()) range = *original;
  const auto& source = range.source();
  if (!source) return "";
  std::string line = trimmed(source->get_line(source->lineno_for_offset(range.start())).str());
  std::smatch frame;
  if (std::regex_match(line, frame, std::regex(R"((.+)\((\d+)\): (.+))"))) {
    const auto text = line_of_file(frame[1], std::stoul(frame[2]));
    return fmt::format("{}:{}: {}", frame[1].str(), frame[2].str(), text.empty() ? "in " + frame[3].str() : text);
  }
  const auto where = range.file_line_col();
  if (!where) return line;
  const auto out = fmt::format("{}:{}", std::get<0>(*where), std::get<1>(*where));
  return line.empty() ? out : out + ": " + line;
}

// A node joins two paths from the input when two different tensor operands both depend on it.
bool joins_paths(const torch::jit::Node* node, const std::set<const torch::jit::Value*>& depends) {
  static const std::set<c10::Symbol> joins = {c10::Symbol::aten("add"), c10::Symbol::aten("add_"),
                                              c10::Symbol::aten("sub"), c10::Symbol::aten("sub_")};
  std::vector<const torch::jit::Value*> operands;
  if (joins.count(node->kind())) {
    for (const auto* v : node->inputs())
      if (v->type()->kind() == c10::TypeKind::TensorType && depends.count(v)) operands.push_back(v);
  } else if (node->kind() == c10::Symbol::aten("cat") && node->input(0)->node()->kind() == c10::prim::ListConstruct) {
    for (const auto* v : node->input(0)->node()->inputs())
      if (depends.count(v)) operands.push_back(v);
  }
  std::sort(operands.begin(), operands.end());
  return std::unique(operands.begin(), operands.end()) - operands.begin() >= 2;
}

}  // namespace

ImportedGraphSummary summarize_graph(const TorchScriptNetwork& net) {
  const auto graph = net.inlined_graph();
  ImportedGraphSummary out;
  std::map<std::string, int64_t> counts;
  // Values that depend on the input x (the graph's input after the module itself).
  std::set<const torch::jit::Value*> depends;
  if (graph->inputs().size() >= 2) depends.insert(graph->inputs()[1]);
  std::function<void(torch::jit::Block*)> walk = [&](torch::jit::Block* block) {
    for (auto* node : block->nodes()) {
      bool in = std::any_of(node->inputs().begin(), node->inputs().end(),
                            [&](const torch::jit::Value* v) { return depends.count(v) > 0; });
      for (auto* b : node->blocks()) {
        if (in)
          for (const auto* v : b->inputs()) depends.insert(v);
        walk(b);
        in = in || std::any_of(b->outputs().begin(), b->outputs().end(),
                               [&](const torch::jit::Value* v) { return depends.count(v) > 0; });
      }
      if (in)
        for (const auto* v : node->outputs()) depends.insert(v);
      if (!is_tensor_op(node)) continue;
      ++out.nodes;
      ++counts[node->kind().toQualString()];
      if (joins_paths(node, depends)) {
        const auto where = source_line(node);
        out.skips.push_back(fmt::format("{}{}", node->kind().toQualString(), where.empty() ? "" : " at " + where));
      }
    }
  };
  walk(graph->block());
  out.ops.assign(counts.begin(), counts.end());
  return out;
}

}  // namespace twosed
