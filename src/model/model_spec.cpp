// Parser for model specification strings (grammar in include/twosed/model_spec.h).
#include "twosed/model/model_spec.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cctype>
#include <limits>

#include "model/layers/descriptor.h"
#include "twosed/error.h"

namespace twosed {
namespace {

// Sizes beyond this are certainly typos; the bound also keeps products far from overflow.
constexpr int64_t kMaxDim = 100'000'000;
constexpr __int128 kMaxElements = 10'000'000'000LL;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// Parses a positive integer that must make up the whole of `s`.
bool parse_positive(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 10) return false;
  int64_t v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > kMaxDim) return false;
  out = v;
  return true;
}

using layers::prod;
using layers::shape_str;

class SpecParser {
 public:
  SpecParser(const std::string& text, const ModelOptions& opts) : text_(text), opts_(opts) {}

  ModelSpec parse() {
    ModelSpec spec;
    spec.text = text_;
    const auto colon = text_.find(':');
    if (colon == std::string::npos) fail("expected 'mlp:IN-H1-...-K' or 'cnn:CxHxW-...'");
    const std::string kind = text_.substr(0, colon);
    const auto tokens = split(text_.substr(colon + 1), '-');
    if (kind == "mlp") {
      parse_mlp(tokens, spec);
    } else if (kind == "cnn") {
      parse_cnn(tokens, spec);
    } else {
      fail(fmt::format("unknown model kind '{}' (expected mlp or cnn)", kind));
    }
    if (spec.layers.empty() || !layers::descriptor(spec.layers.back().kind).ends_network())
      fail("the network must end with a linear layer (mlp: at least IN-K; cnn: a final fO token)");
    return spec;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw UsageError(fmt::format("model spec '{}': {}", text_, why));
  }
  [[noreturn]] void fail_token(size_t index, const std::string& token, const std::string& why) const {
    throw UsageError(fmt::format("model spec '{}': token {} '{}': {}", text_, index + 1, token, why));
  }

  void parse_mlp(const std::vector<std::string>& tokens, ModelSpec& spec) {
    if (tokens.size() < 2) fail("an mlp needs at least two sizes, IN-K");
    std::vector<int64_t> sizes;
    for (size_t i = 0; i < tokens.size(); ++i) {
      int64_t v;
      if (!parse_positive(tokens[i], v))
        fail_token(i, tokens[i], fmt::format("expected a positive integer layer size (at most {})", kMaxDim));
      sizes.push_back(v);
    }
    spec.input_shape = {sizes[0]};
    std::vector<int64_t> shape = spec.input_shape;
    for (size_t i = 1; i < sizes.size(); ++i) {
      LayerSpec lin;
      lin.kind = LayerKind::Linear;
      lin.token = tokens[i];
      lin.out = sizes[i];
      lin.bias = opts_.bias;
      add(spec, lin, shape, i);
      if (i + 1 < sizes.size()) {
        LayerSpec act;
        act.kind = LayerKind::Activation;
        act.activation = opts_.activation;
        act.token = activation_name(opts_.activation);
        add(spec, act, shape, i);
      }
    }
  }

  void parse_cnn(const std::vector<std::string>& tokens, ModelSpec& spec) {
    if (tokens.size() < 2) fail("a cnn needs an input shape CxHxW and at least one layer");
    const auto dims = split(tokens[0], 'x');
    if (dims.size() != 3) fail_token(0, tokens[0], "expected the input shape CxHxW, e.g. 3x32x32");
    for (const auto& d : dims) {
      int64_t v;
      if (!parse_positive(d, v)) fail_token(0, tokens[0], "expected the input shape CxHxW with positive integers");
      spec.input_shape.push_back(v);
    }
    __int128 elements = 1;
    for (int64_t v : spec.input_shape) elements *= v;
    if (elements > kMaxElements) fail_token(0, tokens[0], "input larger than 1e10 values per example");
    std::vector<int64_t> shape = spec.input_shape;
    for (size_t i = 1; i < tokens.size(); ++i) add(spec, parse_token(i, tokens[i]), shape, i);
  }

  // A keyword token (relu, flatten, ...) or a parameterised one, by its head letter; each
  // layer type reads its own (src/model/layers/descriptor.h).
  LayerSpec parse_token(size_t index, const std::string& tok) {
    LayerSpec l;
    l.token = tok;
    l.bias = opts_.bias;
    const layers::LayerDescriptor* type = nullptr;
    for (const auto* d : layers::descriptors())
      for (const auto& k : d->keywords())
        if (tok == k) type = d;
    if (!type && tok.empty()) fail_token(index, tok, "empty token (two '-' in a row?); " + layers::token_help());
    for (const auto* d : layers::descriptors())
      if (!type && d->head() != 0 && d->head() == tok[0]) type = d;
    if (!type) fail_token(index, tok, layers::token_help());
    l.kind = type->kind();
    try {
      type->parse(tok, l);
    } catch (const layers::TokenError& e) {
      fail_token(index, tok, e.what());
    }
    return l;
  }

  // Resolves the layer's shapes from the running shape and appends it.
  void add(ModelSpec& spec, LayerSpec l, std::vector<int64_t>& shape, size_t index) {
    const auto& type = layers::descriptor(l.kind);
    l.in_shape = shape;
    try {
      type.infer_shape(l);
    } catch (const layers::TokenError& e) {
      fail_token(index, l.token, e.what());
    }
    // Checked in 128 bits: typo-sized dimensions must give an error, not an overflow.
    __int128 elements = 1;
    for (int64_t v : l.out_shape) elements *= v;
    if (elements > kMaxElements) fail_token(index, l.token, "output larger than 1e10 values per example");
    for (const auto& p : type.parameter_shapes(l)) {
      __int128 count = 1;
      for (int64_t v : p.shape) count *= v;
      if (count > kMaxElements) fail_token(index, l.token, "more than 1e10 parameters in one layer");
    }
    shape = l.out_shape;
    spec.layers.push_back(l);
  }

  const std::string& text_;
  ModelOptions opts_;
};

}  // namespace

Activation parse_activation(const std::string& name, const std::string& option) {
  if (name == "relu") return Activation::ReLU;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "gelu") return Activation::GELU;
  throw UsageError(fmt::format("{} {}: unknown activation (expected relu, tanh, sigmoid or gelu)", option, name));
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::ReLU:
      return "relu";
    case Activation::Tanh:
      return "tanh";
    case Activation::Sigmoid:
      return "sigmoid";
    case Activation::GELU:
      return "gelu";
  }
  return "?";
}

bool LayerSpec::is_parametric() const {
  return layers::descriptor(kind).parametric();
}

int64_t LayerSpec::fan_in() const {
  return layers::descriptor(kind).fan_in(*this);
}

int64_t LayerSpec::weight_count() const {
  const auto shapes = layers::descriptor(kind).parameter_shapes(*this);
  return shapes.empty() ? 0 : shapes.front().numel();
}

int64_t LayerSpec::num_params() const {
  int64_t n = 0;
  for (const auto& p : layers::descriptor(kind).parameter_shapes(*this)) n += p.numel();
  return n;
}

int64_t ModelSpec::num_inputs() const {
  return prod(input_shape);
}
int64_t ModelSpec::num_outputs() const {
  return layers.empty() ? 0 : layers.back().out;
}
int64_t ModelSpec::num_params() const {
  int64_t d = 0;
  for (const auto& l : layers) d += l.num_params();
  return d;
}

std::string ModelSpec::describe() const {
  std::string out =
      fmt::format("{}  (input {}, {} outputs, d = {})\n", text, shape_str(input_shape), num_outputs(), num_params());
  for (const auto& l : layers) {
    out += fmt::format("  {:<10} {:>12} -> {:<12}", l.token, shape_str(l.in_shape), shape_str(l.out_shape));
    if (l.is_parametric()) out += fmt::format(" {} params", l.num_params());
    out += "\n";
  }
  return out;
}

ModelSpec parse_model_spec(const std::string& text, const ModelOptions& opts) {
  return SpecParser(text, opts).parse();
}

bool is_torchscript_path(const std::string& model) {
  auto ends_with = [&](const std::string& suffix) {
    return model.size() >= suffix.size() && model.compare(model.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  struct stat st {};
  return ends_with(".pt") || ends_with(".pth") || (::stat(model.c_str(), &st) == 0 && S_ISREG(st.st_mode));
}

}  // namespace twosed
