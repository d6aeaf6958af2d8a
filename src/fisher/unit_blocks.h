// Internal: the per-unit blocks of a hidden Markov layer (docs/math.md sections 2 and 9), shared by
// spec models (markov.cpp) and imported TorchScript chains (model/torchscript/markov_chain.cpp).
//
// Unit c's Jacobian rows are P_c[(i,p), :] = sum_k w[i,c,p,k] * [a_c * design[i, g(c), idx[i,c,p,k], :],
// extra[i,c,idx[i,c,p,k], :]] and its block is A_c = scale * P_c^T P_c, diagonalised on its smaller side.
#pragma once

#include <torch/torch.h>

#include "model/layers/layer.h"
#include "twosed/fisher/markov.h"

namespace twosed {

/// What a unit's columns hold besides the shared design rows (all optional).
struct UnitColumns {
  torch::Tensor unit_scale;  ///< (C): a_c multiplying the design columns (an eval-mode BatchNorm's gamma/sqrt(var+eps))
  torch::Tensor extra;       ///< (N, C, Q, E): per-unit columns at each position of z (BatchNorm: xhat, 1)
};

/// The spectrum of one hidden layer's block F_l = diag(A_c). `map` (N, C, P, K) is the tail's
/// channel map from z (N, C, Q); `design` is (N, Q, D) shared by all units, or (N, G, Q, D) for a
/// grouped convolution (unit c reads group c / (C / G)); `scale` = 1 / (rows sigma^2).
LayerBlockSpectrum unit_block_spectrum(const layers::ChannelMap& map, const torch::Tensor& design, double scale,
                                       const FisherOptions& opts, const UnitColumns& columns = {});

}  // namespace twosed
