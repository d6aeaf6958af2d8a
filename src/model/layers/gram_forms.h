// Gram contributions K += G_l G_l^T of parametric layers in their structured forms (docs/math.md
// section 7), shared by the spec-string layers (src/model/layers/linear.cpp, conv2d.cpp) and the
// TorchScript structured path (src/model/torchscript/structured.cpp). Every routine writes the
// lower triangle of a contiguous (N R) x (N R) float64 Gram, rows ordered (example, row).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>

namespace twosed::layers {

/// Linear (Kronecker form): K[(i,c),(j,c')] += (b_ic . b_jc') (a_i . a_j + [bias]).
/// a (N, in) the layer inputs, b (N R, out) the backprop vectors.
void add_kronecker_gram(const torch::Tensor& a, bool bias, const torch::Tensor& b, torch::Tensor& gram);

/// A convolution's shape as the Gram forms see it: `out` filters in `groups` groups, each filter
/// of `patch` = (C / groups) kh kw weights, over `positions` = Ho Wo output positions.
struct ConvShape {
  int64_t out = 0, groups = 1, patch = 0, positions = 0;
  bool bias = false;
};

/// The two exact forms of a convolution's Gram: explicit per-example gradients (a GEMM of the
/// backprop maps with the unfolded patches, then G G^T) or the patch form (pairwise patch Grams
/// U_i^T U_j contracted with the backprop maps, never forming G).
enum class ConvGramForm { PerExample, Patch };
const char* conv_form_name(ConvGramForm form);

/// Floating-point operations of each form for N examples and R rows each (the cost model).
double conv_gram_flops(const ConvShape& s, int64_t n, int64_t r, ConvGramForm form);
/// The form that should take less time: the patch form's FLOPs count kPatchFlopCost times, the
/// measured ratio of its time per FLOP to the per-example form's (docs/benchmarks.md).
ConvGramForm cheapest_conv_form(const ConvShape& s, int64_t n, int64_t r);
inline constexpr double kPatchFlopCost = 1.5;

/// Per-example gradients of filters [o0, o0 + oc) (all in one group): weights (N R, oc patch),
/// bias (N R, oc) (undefined without a bias). u (N, groups patch, L) the unfolded input, b
/// (N, R, out, L) the backprop maps.
std::pair<torch::Tensor, torch::Tensor> conv_filter_grads(const torch::Tensor& u, const torch::Tensor& b,
                                                          const ConvShape& s, int64_t o0, int64_t oc);

/// K += G G^T of one convolution in `form`, every temporary within `memory_budget` bytes.
void add_conv_gram(const torch::Tensor& u, const torch::Tensor& b, const ConvShape& s, ConvGramForm form,
                   int64_t memory_budget, torch::Tensor& gram);

}  // namespace twosed::layers
