// Internal: what a layer type says about itself without LibTorch (compiled into twosed_core).
//
// Every layer type is one file, src/model/layers/<kind>.cpp, with two parts (docs/design.md,
// "Adding a layer type"): its LayerDescriptor (this header: the token grammar, shapes, parameter
// shapes and init box, description text, the Markov chain model's plan numbers) compiled into
// twosed_core, and its Layer (layer.h: forward pass, Jacobians, the LibTorch module) compiled
// into twosed. The registry, TWOSED_LAYER_KINDS in model_spec.h, lists each type once; code
// outside the layer files asks the descriptor or the Layer instead of switching on LayerKind.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "twosed/model/model_spec.h"

namespace twosed::layers {

/// A malformed token, or a layer that does not fit its input: the spec parser adds the spec,
/// the token and its position. The message says what was expected.
struct TokenError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One parameter tensor of a layer, in named_parameters() order.
struct ParameterShape {
  std::string name;            ///< the suffix in named_parameters(): "weight", "bias"
  std::vector<int64_t> shape;  ///< e.g. {out, in}, {out, C, k, k}, {out}
  int64_t numel() const;
};

class LayerDescriptor {
 public:
  virtual ~LayerDescriptor() = default;
  virtual LayerKind kind() const = 0;

  // --- Token grammar of cnn specs (model_spec.h). A token is a keyword or starts with a head.
  /// Whole tokens of this type, e.g. "relu"; matched before any head letter.
  virtual std::vector<std::string> keywords() const { return {}; }
  /// First letter of this type's parameterised token, e.g. 'c' for cOkS[sT][pP]; 0 if none.
  virtual char head() const { return 0; }
  /// The parameterised token's form for the help text, e.g. "cOkS[sT][pP]".
  virtual std::string form() const { return {}; }
  /// Reads a keyword or head token into l (kind, token and bias already set); throws TokenError.
  virtual void parse(const std::string& token, LayerSpec& l) const = 0;
  /// Tokens valid on a 2x6x6 input that cover the type's variants (the registry test).
  virtual std::vector<std::string> examples() const = 0;

  // --- Shapes.
  /// Sets l.out_shape from l.in_shape (and l.in_shape, if the layer reads it reshaped); throws
  /// TokenError when the layer does not fit its input.
  virtual void infer_shape(LayerSpec& l) const = 0;
  /// Reads its input flattened: after an image, Network::to_module() puts an nn::Flatten first.
  virtual bool flattens_input() const { return false; }
  /// May end the network: its output is flat, l.out values, the k outputs.
  virtual bool ends_network() const { return false; }

  // --- Parameters.
  virtual bool parametric() const { return false; }
  /// Its parameter tensors in named_parameters() order (no bias when l.bias is false).
  virtual std::vector<ParameterShape> parameter_shapes(const LayerSpec&) const { return {}; }
  /// Inputs each output unit sees: a Linear's in features, a Conv2d's C*k*k (0 if none).
  virtual int64_t fan_in(const LayerSpec&) const { return 0; }
  /// Half-width of PyTorch's default init box for all its tensors, 1/sqrt(fan_in) (docs/math.md section 3).
  virtual double init_bound(const LayerSpec& l) const;

  // --- Text.
  /// e.g. "linear 784->128", "conv 3->32 k3 s2 p1", "relu", "maxpool 2" (Markov layer names).
  virtual std::string describe(const LayerSpec& l) const = 0;

  // --- The Markov chain model (docs/math.md section 2; MarkovChainModel::plan).
  /// Acts channel by channel (Layer::map_channels), so it may follow a parametric layer in a
  /// hidden Markov layer.
  virtual bool channelwise() const { return false; }
  /// Factor by which it multiplies the terms K per position of a channel map (avg pooling: k*k).
  virtual int64_t map_terms(const LayerSpec&) const { return 1; }
  /// Parametric: output positions per channel, prod(out_shape[1:]) (a Conv2d's Ho*Wo, a Linear's 1).
  virtual int64_t positions_per_channel(const LayerSpec& l) const;
  /// Parametric: its output units share the inputs' Gram matrix (a Linear's Kronecker form).
  virtual bool shares_input_gram() const { return false; }
};

/// Defined once per layer type, in src/model/layers/<kind>.cpp.
template <LayerKind K>
const LayerDescriptor& kind_descriptor();
#define TWOSED_DECLARE_DESCRIPTOR(kind) \
  template <>                           \
  const LayerDescriptor& kind_descriptor<LayerKind::kind>();
TWOSED_LAYER_KINDS(TWOSED_DECLARE_DESCRIPTOR)
#undef TWOSED_DECLARE_DESCRIPTOR

/// Every registered type, in registry order (= LayerKind order).
const std::vector<const LayerDescriptor*>& descriptors();
const LayerDescriptor& descriptor(LayerKind kind);
/// "expected cOkS[sT][pP], ..., relu, ... or flatten": every form and keyword, registry order.
std::string token_help();

// Helpers of the layer files' grammar and shapes.
int64_t prod(const std::vector<int64_t>& v);
std::string shape_str(const std::vector<int64_t>& s);  ///< "3x32x32"
/// Reads digits at s[pos...] (at most 9); returns false if there are none.
bool read_number(const std::string& s, size_t& pos, int64_t& out);
/// Reads the optional suffixes sT (stride >= 1) and, if allowed, pP (padding) at tok[pos...],
/// each at most once; throws TokenError("expected " + form) on anything else.
void read_stride_padding(const std::string& tok, size_t& pos, LayerSpec& l, bool allow_padding,
                         const std::string& form);
/// Throws TokenError unless l.in_shape is CxHxW.
void require_image(const LayerSpec& l);
/// Output positions of a window of k (stride s, padding p) over `size` input positions of
/// l.in_shape; throws TokenError when the kernel does not fit.
int64_t window(const LayerSpec& l, int64_t size, int64_t k, int64_t s, int64_t p);

}  // namespace twosed::layers
