// Parser for model specification strings (grammar in include/twosed/model_spec.h).
#include "twosed/model/model_spec.h"

#include <fmt/format.h>

#include <cctype>
#include <limits>

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

// Reads digits at s[pos...]; returns false if there are none.
bool read_number(const std::string& s, size_t& pos, int64_t& out) {
  size_t start = pos;
  while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
  if (pos == start || pos - start > 9) return false;
  out = std::stoll(s.substr(start, pos - start));
  return true;
}

int64_t prod(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

constexpr const char* kTokenHelp = "expected cOkS[sT][pP], pS[sT], aS[sT], fO, relu, tanh, sigmoid, gelu or flatten";

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
    if (spec.layers.empty() || spec.layers.back().kind != LayerKind::Linear)
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

  LayerSpec parse_token(size_t index, const std::string& tok) {
    LayerSpec l;
    l.token = tok;
    l.bias = opts_.bias;
    if (tok == "relu" || tok == "tanh" || tok == "sigmoid" || tok == "gelu") {
      l.kind = LayerKind::Activation;
      l.activation = parse_activation(tok);
      return l;
    }
    if (tok == "flatten") {
      l.kind = LayerKind::Flatten;
      return l;
    }
    if (tok.empty()) fail_token(index, tok, std::string("empty token (two '-' in a row?); ") + kTokenHelp);
    size_t pos = 1;
    const char head = tok[0];
    auto bad = [&](const std::string& form) { fail_token(index, tok, "expected " + form); };
    if (head == 'c') {
      l.kind = LayerKind::Conv2d;
      if (!read_number(tok, pos, l.out) || l.out < 1) bad("cOkS[sT][pP], e.g. c32k3");
      if (pos >= tok.size() || tok[pos] != 'k') bad("cOkS[sT][pP], e.g. c32k3");
      ++pos;
      if (!read_number(tok, pos, l.kernel) || l.kernel < 1) bad("cOkS[sT][pP], e.g. c32k3");
      read_suffixes(index, tok, pos, l, /*allow_padding=*/true, "cOkS[sT][pP]");
    } else if (head == 'p' || head == 'a') {
      l.kind = head == 'p' ? LayerKind::MaxPool : LayerKind::AvgPool;
      const std::string form = std::string(1, head) + "S[sT], e.g. " + head + "2";
      if (!read_number(tok, pos, l.kernel) || l.kernel < 1) bad(form);
      l.stride = l.kernel;
      read_suffixes(index, tok, pos, l, /*allow_padding=*/false, form);
    } else if (head == 'f') {
      l.kind = LayerKind::Linear;
      if (!read_number(tok, pos, l.out) || l.out < 1 || pos != tok.size()) bad("fO, e.g. f10");
    } else {
      fail_token(index, tok, kTokenHelp);
    }
    return l;
  }

  void read_suffixes(size_t index, const std::string& tok, size_t& pos, LayerSpec& l, bool allow_padding,
                     const std::string& form) {
    bool seen_s = false, seen_p = false;
    while (pos < tok.size()) {
      const char c = tok[pos++];
      int64_t v;
      if (c == 's' && !seen_s && read_number(tok, pos, v) && v >= 1) {
        l.stride = v;
        seen_s = true;
      } else if (c == 'p' && allow_padding && !seen_p && read_number(tok, pos, v)) {
        l.padding = v;
        seen_p = true;
      } else {
        fail_token(index, tok, "expected " + form);
      }
    }
  }

  // Resolves the layer's shapes from the running shape and appends it.
  void add(ModelSpec& spec, LayerSpec l, std::vector<int64_t>& shape, size_t index) {
    l.in_shape = shape;
    auto need_image = [&]() {
      if (shape.size() != 3)
        fail_token(index, l.token,
                   fmt::format("needs a CxHxW input, but the input here is flat ({})", shape_str(shape)));
    };
    auto window = [&](int64_t size, int64_t k, int64_t s, int64_t p) -> int64_t {
      const int64_t span = size + 2 * p - k;
      if (span < 0)
        fail_token(index, l.token,
                   fmt::format("kernel {} does not fit the {} input (padding {})", k, shape_str(shape), p));
      return span / s + 1;
    };
    switch (l.kind) {
      case LayerKind::Linear:
        l.in_shape = {prod(shape)};
        l.out_shape = {l.out};
        break;
      case LayerKind::Conv2d:
        need_image();
        if (l.padding >= l.kernel) fail_token(index, l.token, "padding must be smaller than the kernel");
        l.out_shape = {l.out, window(shape[1], l.kernel, l.stride, l.padding),
                       window(shape[2], l.kernel, l.stride, l.padding)};
        break;
      case LayerKind::MaxPool:
      case LayerKind::AvgPool:
        need_image();
        l.out_shape = {shape[0], window(shape[1], l.kernel, l.stride, 0), window(shape[2], l.kernel, l.stride, 0)};
        break;
      case LayerKind::Flatten:
        l.out_shape = {prod(shape)};
        break;
      case LayerKind::Activation:
        l.out_shape = shape;
        break;
    }
    // Checked in 128 bits: typo-sized dimensions must give an error, not an overflow.
    __int128 elements = 1;
    for (int64_t v : l.out_shape) elements *= v;
    if (elements > kMaxElements) fail_token(index, l.token, "output larger than 1e10 values per example");
    if (l.is_parametric()) {
      __int128 fan = 1;
      for (int64_t v : l.in_shape) fan *= v;
      if (l.kind == LayerKind::Conv2d) fan = static_cast<__int128>(l.in_shape[0]) * l.kernel * l.kernel;
      if (fan * l.out > kMaxElements) fail_token(index, l.token, "more than 1e10 parameters in one layer");
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

int64_t LayerSpec::fan_in() const {
  if (kind == LayerKind::Linear) return prod(in_shape);
  if (kind == LayerKind::Conv2d) return in_shape.at(0) * kernel * kernel;
  return 0;
}

int64_t LayerSpec::weight_count() const {
  if (kind == LayerKind::Linear) return out * fan_in();
  if (kind == LayerKind::Conv2d) return out * fan_in();
  return 0;
}

int64_t LayerSpec::num_params() const {
  if (!is_parametric()) return 0;
  return weight_count() + (bias ? out : 0);
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

}  // namespace twosed
