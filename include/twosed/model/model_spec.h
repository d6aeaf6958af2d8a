// Model specification strings: the architecture of a network, parsed and shape-checked before
// any tensor exists.
//
// Grammar (tokens separated by '-'):
//   mlp:IN-H1-...-K          Linear layers IN->H1->...->K with ModelOptions::activation between
//                            them (none after the last).
//   cnn:CxHxW-TOKEN-...      explicit layers, applied in order:
//     cOkS[sT][pP]           Conv2d: O filters of size SxS, stride T (default 1), zero padding P (default 0)
//     pS[sT]                 max pooling SxS, stride T (default S)
//     aS[sT]                 average pooling SxS, stride T (default S)
//     fO                     Linear with O outputs (flattens a CxHxW input first)
//     relu | tanh | sigmoid | gelu   elementwise activation
//     flatten                explicit flatten (optional: f flattens on its own)
//   The network must end with an f layer; its O is the number of outputs k.
// Example: cnn:3x32x32-c32k3-relu-p2-c64k3-relu-p2-f256-relu-f10
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace twosed {

enum class Activation { ReLU, Tanh, Sigmoid, GELU };

/// "relu" | "tanh" | "sigmoid" | "gelu" -> Activation; throws UsageError naming `option`.
Activation parse_activation(const std::string& name, const std::string& option = "ModelOptions.activation");
const char* activation_name(Activation a);

/// The layer registry: one X(Kind) per layer type, in the order the token help lists them. Each
/// type describes and implements itself in one file, src/model/layers/<kind>.cpp (docs/design.md,
/// "Adding a layer type"); this list makes its LayerKind and both registry tables.
#define TWOSED_LAYER_KINDS(X) X(Conv2d) X(MaxPool) X(AvgPool) X(Linear) X(Activation) X(Flatten)

enum class LayerKind {
#define TWOSED_LAYER_KIND_ENUM(kind) kind,
  TWOSED_LAYER_KINDS(TWOSED_LAYER_KIND_ENUM)
#undef TWOSED_LAYER_KIND_ENUM
};

/// One operation of the network with its resolved shapes.
struct LayerSpec {
  LayerKind kind = LayerKind::Linear;
  std::string token;                         ///< the spec token it came from, e.g. "c32k3"
  int64_t out = 0;                           ///< Linear: out features; Conv2d: out channels
  int64_t kernel = 0;                        ///< Conv2d / pooling: kernel size
  int64_t stride = 1;                        ///< Conv2d / pooling
  int64_t padding = 0;                       ///< Conv2d
  Activation activation = Activation::ReLU;  ///< Activation layers
  bool bias = true;                          ///< Linear / Conv2d
  std::vector<int64_t> in_shape;             ///< shape of one example entering the layer
  std::vector<int64_t> out_shape;            ///< shape of one example leaving it

  // What the layer's type says about it (src/model/layers/descriptor.h).
  bool is_parametric() const;
  int64_t fan_in() const;        ///< inputs of a Linear, C*k*k of a Conv2d (0 otherwise)
  int64_t weight_count() const;  ///< elements of its first parameter tensor, the weight (0 if none)
  int64_t num_params() const;    ///< elements of all its parameter tensors: weights + biases
};

/// Options that apply to the whole spec.
struct ModelOptions {
  Activation activation = Activation::ReLU;  ///< mlp: activation between Linear layers
  bool bias = true;                          ///< false: no bias in any layer (--no-bias)
};

/// A parsed, shape-checked architecture.
struct ModelSpec {
  std::string text;                  ///< the spec string as given
  std::vector<int64_t> input_shape;  ///< {IN} or {C, H, W}
  std::vector<LayerSpec> layers;

  int64_t num_inputs() const;   ///< prod(input_shape)
  int64_t num_outputs() const;  ///< k
  int64_t num_params() const;   ///< d
  /// Human-readable summary, one line per layer.
  std::string describe() const;
};

/// True for a model value (MeasureOptions.model) that names a TorchScript file: ends in .pt or .pth, or is an
/// existing regular file.
bool is_torchscript_path(const std::string& model);

/// Parses and shape-checks a spec. Throws UsageError that quotes the spec, names the offending
/// token and its position, and says what was expected.
ModelSpec parse_model_spec(const std::string& text, const ModelOptions& opts = {});

}  // namespace twosed
