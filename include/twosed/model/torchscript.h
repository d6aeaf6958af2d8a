// Models from TorchScript files (docs/math.md section 9): `torch.jit.script(m).save(...)` or
// `torch.jit.trace(m, x).save(...)`, measured as the standard model S with exact per-example
// autograd Jacobians.
//
// Loading a TorchScript file runs code stored in it: load only files you trust.
//
// theta is one float64 vector in the file's named_parameters() order; d counts every parameter.
// The module is converted to float64 on load. Refused (DataError naming the file): not a
// TorchScript archive, a corrupt or truncated one, a module (or submodule, or a traced
// batch_norm/dropout node) in training mode, no parameters, an output that is not (N, k).
//
// Example:
//   auto net = std::make_shared<TorchScriptNetwork>("net.pt");
//   TorchScriptModel model(net, {torch::randn({50, 1, 28, 28}, torch::kFloat64), "x"}, FisherOptions{});
//   ImportedParameters thetas(*net, "init", /*seed=*/0, /*samples=*/20);
//   MeasureResult r = measure(model, thetas, EstimatorOptions{}, 0);
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "twosed/fisher/fisher.h"
#include "twosed/fisher/markov.h"
#include "twosed/measure/engine.h"
#include "twosed/model/model_spec.h"  // is_torchscript_path

namespace torch::jit {
struct Graph;
}

namespace twosed {

/// One named parameter of a TorchScript module and where it sits in theta.
struct ImportedParameter {
  std::string name;         ///< as in named_parameters(), e.g. "conv1.weight"
  std::string module_type;  ///< the owning submodule's class, e.g. "Conv2d" (mangling stripped)
  int64_t offset = 0;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

/// Which convolution Gram form the structured path uses: the cheaper by the FLOP count of
/// layers/gram_forms.h, or one forced (tests, benchmarks).
enum class ConvFormChoice { Cheapest, PerExample, Patch };

/// How --jacobian computes a TorchScript model's Jacobians (docs/math.md section 9).
struct JacobianOptions {
  bool structured = false;  ///< the structured path (else per-example autograd rows)
  ConvFormChoice conv_form = ConvFormChoice::Cheapest;
};

/// One parametric op of the structured path and the form of its samples-side Gram term.
struct StructuredOp {
  std::string op;      ///< the graph op, e.g. "aten::_convolution"
  std::string params;  ///< its parameters, e.g. "conv1.weight, conv1.bias"
  std::string form;    ///< kronecker | per-example | patch | rows (explicit gradient rows)
  double flops = 0;    ///< of that form at the plan's N and R
};

/// What the structured path makes of a graph: the ops it does not know (each named with the
/// model source line the graph records) or, when it knows all, the parametric ops' forms.
struct StructuredPlan {
  std::vector<std::string> unknown;
  std::vector<StructuredOp> ops;
  /// structured_gram's backward passes run in `groups` groups of ops from the output down (each
  /// starts where the graph has a cut, see backprop in structured.cpp); backprop_bytes is the
  /// largest group's backprop vectors, those of its cuts and the widest unfolded input, at N.
  int64_t groups = 0;
  int64_t backprop_bytes = 0;
  /// The recorded forward pass at N: the ops' inputs and outputs and the copies of the outputs
  /// (most of what autograd's graph saves, freed group by group).
  int64_t forward_bytes = 0;
  bool usable() const { return unknown.empty(); }
};

/// A loaded TorchScript module in float64 with its parameters as one theta. Forward passes
/// of one network are serialised (the module's parameters are shared state), so a
/// ParallelExecutor gains nothing on it.
class TorchScriptNetwork {
 public:
  /// Loads and checks `path` (see the file comment). Throws DataError naming the file.
  explicit TorchScriptNetwork(const std::string& path);
  ~TorchScriptNetwork();
  TorchScriptNetwork(const TorchScriptNetwork&) = delete;
  TorchScriptNetwork& operator=(const TorchScriptNetwork&) = delete;

  const std::string& path() const;
  int64_t num_params() const;
  const std::vector<ImportedParameter>& parameters() const;
  /// The weights stored in the file, float64 (d).
  torch::Tensor file_theta() const;

  /// f(x; theta), (N, k), without gradients. Throws DataError naming x's shape if the graph
  /// refuses it, or if the output is not an (N, k) tensor.
  torch::Tensor forward(const torch::Tensor& theta, const torch::Tensor& x) const;

  /// The rows g_ic = d(Q_ic . f(x_i))/d theta for examples [i0, i0 + q.size(0)) of x, written
  /// to out (q.size(0) * R, d): one forward and R backward passes per example. q (n, R, k).
  void jacobian_rows(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& q, int64_t i0,
                     torch::Tensor& out) const;

  /// A copy of the forward graph with every method and submodule call inlined.
  std::shared_ptr<torch::jit::Graph> inlined_graph() const;

  // ---- the structured path (src/model/torchscript/structured.cpp) ----
  // The inlined forward graph is interpreted node by node (prim::If and prim::Loop by their
  // values), so that the inputs and outputs of its parametric ops (linear, matmul and addmm
  // with a parameter, convolutions, eval-mode batch_norm, layer_norm) are at hand; the other
  // ops must act on each example alone. The backprop vectors of all examples for output row c
  // then come from ONE backward pass of sum_i Q_ic . f(x_i) to the ops' outputs, split into
  // groups of ops at cuts of the graph so that one group's vectors are alive at a time.

  /// Runs the graph on x's first (up to 2) examples at the file's weights and classifies each
  /// op it executes; the forms and FLOPs are those for N = n examples, R = r rows.
  StructuredPlan structured_plan(const torch::Tensor& x, int64_t n, int64_t r,
                                 ConvFormChoice conv = ConvFormChoice::Cheapest,
                                 int64_t memory_budget = 256LL << 20) const;

  /// The same rows as jacobian_rows from the structured path: one forward and R backward
  /// passes for the whole block. Throws UsageError naming an op the path does not know.
  void structured_rows(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& q, int64_t i0,
                       torch::Tensor& out) const;

  /// K += G G^T on the lower triangle of gram ((N R) x (N R), contiguous) for all N examples of
  /// x at once, q (N, R, k), each parametric op in its form (Linear: Kronecker; convolution:
  /// per-example or patch; normalisation: explicit rows). The backprop vectors are held one
  /// group of ops at a time, each group as large as memory_budget allows but at least the ops
  /// between two cuts (StructuredPlan::backprop_bytes); the forms' temporaries within the budget.
  /// op_seconds, when given, receives each op's Gram term time (structured_plan's order).
  void structured_gram(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& q, ConvFormChoice conv,
                       int64_t memory_budget, torch::Tensor& gram, std::vector<double>* op_seconds = nullptr) const;

  /// --markov (docs/math.md section 9): the Markov layers of a chain graph, run on x's first (up
  /// to 2) examples at the file's weights: each starts at a Linear / matmul / addmm / Conv2d op
  /// (optionally followed at once by an eval-mode batch_norm) and holds the per-example ops up to
  /// the next one. Throws UsageError naming the op and its source line for anything else.
  std::vector<MarkovLayer> markov_layers(const torch::Tensor& x, const MarkovOptions& opts) const;

  /// The spectra of the Markov chain's blocks F_l(theta) at inputs x (N, ...) and standard-normal
  /// noise (N*R, H) in markov_layers' layout, as MarkovChainModel::spectrum does for spec models.
  MarkovSpectrum markov_spectrum(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& noise,
                                 const MarkovOptions& opts, uint64_t rng_index = 0,
                                 const std::function<void(size_t)>& after_layer = {}) const;

  struct Impl;  // network_impl.h

 private:
  std::unique_ptr<Impl> impl_;
};

/// The spectrum of F_N(theta) of the standard model on a TorchScript network, in float64:
/// K = (1/N) G G^T (samples side) or F = (1/N) G^T G (parameters side, GramSide::Auto picks
/// the smaller), G the N R x d autograd rows, never held whole: rows are made in blocks of
/// whole examples within half the memory budget each. On the samples side block a is paired
/// with every block b <= a, and block b is recomputed for each pair: with B blocks that is
/// B (B + 1) / 2 block computations (B = 1, no recomputation, when G fits in half the budget).
/// The parameters side needs each block once.
///
/// With jac.structured, the rows come from structured_rows (R backward passes per block), and
/// the samples side, when all N examples' op inputs and backprop vectors fit the memory budget,
/// is accumulated op by op by structured_gram without forming G.
FisherSpectrum torchscript_fisher_spectrum(const TorchScriptNetwork& net, const torch::Tensor& theta,
                                           const torch::Tensor& x, const FisherOptions& opts, uint64_t rng_index = 0,
                                           const JacobianOptions& jac = {});

/// The standard model S on a TorchScript network (exact autograd Jacobians).
class TorchScriptModel : public StatisticalModel {
 public:
  /// Inputs are converted to float64 and reshaped to (N, input_shape...) when `input_shape` is
  /// given (else used as they are); one forward pass checks that the graph takes them and
  /// returns (N, k). Throws DataError (shape, non-finite values) or OptionError (output model).
  /// `jacobian` is auto | autograd | structured: auto takes the structured path when
  /// structured_plan knows every op, else autograd; structured refuses an unknown op
  /// (OptionError "MeasureOptions.jacobian" naming it and its source line).
  TorchScriptModel(std::shared_ptr<const TorchScriptNetwork> net, MeasureInputs inputs, FisherOptions fisher,
                   std::vector<int64_t> input_shape = {}, const std::string& jacobian = "auto",
                   ConvFormChoice conv_form = ConvFormChoice::Cheapest);
  SpectraHeader header() const override;
  ResultSources sources() const override;
  SampleRecord sample(int64_t j, const torch::Tensor& theta,
                      const std::function<void(int64_t, int64_t)>& after_layer) const override;
  const FisherOptions& fisher() const override { return fisher_; }
  int64_t num_outputs() const { return num_outputs_; }
  const JacobianOptions& jacobian() const { return jacobian_; }
  const StructuredPlan& structured_plan() const { return plan_; }
  /// "structured (ops and forms)" or "autograd (...why)": ResultSources.jacobian.
  std::string jacobian_description() const;
  const TorchScriptNetwork& network() const { return *net_; }

 private:
  std::shared_ptr<const TorchScriptNetwork> net_;
  MeasureInputs inputs_;
  FisherOptions fisher_;
  int64_t num_outputs_ = 0;
  JacobianOptions jacobian_;
  StructuredPlan plan_;
  std::string autograd_reason_;
};

/// The Markov chain model M_sigma on an imported chain (docs/math.md section 9): one block
/// spectrum per Markov layer, the records and noise layout of MarkovModel.
class TorchScriptMarkovModel : public StatisticalModel {
 public:
  /// Throws UsageError for a graph that is not a chain of Markov layers (markov_layers), a bad
  /// sigma or R; DataError for given noise of the wrong shape.
  TorchScriptMarkovModel(std::shared_ptr<const TorchScriptNetwork> net, MeasureInputs inputs, MarkovOptions options,
                         MarkovNoise noise, std::vector<int64_t> input_shape = {});
  SpectraHeader header() const override;
  ResultSources sources() const override;
  SampleRecord sample(int64_t j, const torch::Tensor& theta,
                      const std::function<void(int64_t, int64_t)>& after_layer) const override;
  const FisherOptions& fisher() const override { return options_.fisher; }
  const std::vector<MarkovLayer>& layers() const { return layers_; }
  int64_t noise_width() const { return noise_width_; }

 private:
  std::shared_ptr<const TorchScriptNetwork> net_;
  MeasureInputs inputs_;
  MarkovOptions options_;
  MarkovNoise noise_;
  std::vector<MarkovLayer> layers_;
  int64_t noise_width_ = 0, num_outputs_ = 0;
};

/// Parameter spaces of an imported model (docs/math.md section 9), drawn as ParameterSpace
/// does: theta^(j) from Rng(seed, Parameters, j), d uniforms in parameter order, coordinate i
/// = lower_i + (upper_i - lower_i) u_i; a point coordinate still uses up its uniform.
///   init     Linear, Conv2d: weight and bias in +-1/sqrt(fan_in); BatchNorm*, LayerNorm:
///            weight 1, bias 0 (points); any other parametric module is refused, named
///   box:A    every coordinate in [-A, A]
///   local:R  the file's weights +- R
class ImportedParameters : public ParameterSource {
 public:
  /// Throws OptionError ("MeasureOptions.space") for a malformed space or a module type init has
  /// no rule for; OptionError ("MeasureOptions.num_param_samples") for samples outside
  /// [1, kMaxParamSamples].
  ImportedParameters(const TorchScriptNetwork& net, const std::string& space, uint64_t seed, int64_t samples);
  int64_t count() const override { return samples_; }
  int64_t num_params() const override { return static_cast<int64_t>(lower_.size()); }
  void fill(int64_t j, double* out) const override;
  std::string description() const override { return description_; }
  double lower(int64_t i) const { return lower_[static_cast<size_t>(i)]; }
  double upper(int64_t i) const { return upper_[static_cast<size_t>(i)]; }

 private:
  std::vector<double> lower_, upper_;
  uint64_t seed_;
  int64_t samples_;
  std::string description_;
};

/// prepare_measurement() for a TorchScript --model: the inputs (opts.input_shape, else the
/// data's shape: an .npy's trailing dimensions, a data source's features flat), the model, the
/// parameter source (thetas_file or the space), after the memory pre-flight check. Throws
/// UsageError for --markov on a graph that is not a chain (refuse_torchscript_skips, markov_layers) and OptionError
/// ("MeasureOptions.jacobian") for structured on a graph with an unknown op.
PreparedMeasurement prepare_torchscript_measurement(const MeasureOptions& opts, const MeasureInputs* inputs = nullptr);

/// "CxHxW" or "F" -> {C, H, W} or {F}. Throws OptionError ("MeasureOptions.input_shape").
std::vector<int64_t> parse_input_shape(const std::string& text);

/// One example's shape for a TorchScript --model: opts.input_shape, else the data's (an .npy's
/// trailing dimensions, a data source's sample shape).
std::vector<int64_t> torchscript_input_shape(const MeasureOptions& opts);

/// Throws the UsageError of --markov on an imported model whose graph has a skip connection
/// (named, with its source line): it has no Markov chain structure. Other ops that do not fit a
/// chain are refused by TorchScriptNetwork::markov_layers.
void refuse_torchscript_skips(const TorchScriptNetwork& net);

}  // namespace twosed

namespace twosed {

/// What --plan and the Markov chain model need to know of an imported model's inlined
/// forward graph (docs/math.md section 9).
struct ImportedGraphSummary {
  /// aten operations of the inlined graph that make a tensor, nested blocks included (shape
  /// queries, checks, constants and list handling are not counted).
  int64_t nodes = 0;
  /// Operation kind ("aten::conv2d") -> how often it occurs.
  std::vector<std::pair<std::string, int64_t>> ops;
  /// Each join of two different paths from the input (a residual aten::add, a cat of two
  /// branches), as "aten::add at FILE:LINE: SOURCE" (the model's own source where the file
  /// records it): a graph with one has no Markov chain structure.
  std::vector<std::string> skips;
};

/// Reads the inlined forward graph of `net`.
ImportedGraphSummary summarize_graph(const TorchScriptNetwork& net);

}  // namespace twosed
