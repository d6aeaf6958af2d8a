// TorchScriptNetwork's state (include/twosed/model/torchscript.h), shared by its loading and
// autograd code (network.cpp) and the structured path (structured.cpp).
#pragma once

#include <fmt/format.h>
#include <torch/script.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "twosed/error.h"
#include "twosed/model/torchscript.h"

namespace twosed {

inline std::string first_line(const std::string& s) {
  const auto end = s.find('\n');
  return s.substr(0, end);
}

struct TorchScriptNetwork::Impl {
  std::string path;
  torch::jit::Module module;
  std::vector<torch::Tensor> params;  // the module's own parameter tensors, named_parameters() order
  std::vector<ImportedParameter> slices;
  torch::Tensor file_theta;
  int64_t d = 0;
  std::map<const c10::TensorImpl*, int> param_index;  // a parameter tensor -> its index in params
  std::shared_ptr<torch::jit::Graph> graph;           // forward, inlined (structured path)
  std::mutex mutex;                                   // the module's parameters are shared: one sample at a time

  // Copies theta into the module's parameters (under NoGradGuard: they are leaves).
  void set_theta(const torch::Tensor& theta) {
    if (theta.dim() != 1 || theta.size(0) != d || theta.scalar_type() != torch::kFloat64)
      throw UsageError(fmt::format("{}: theta must be a float64 vector of d = {} values", path, d));
    torch::NoGradGuard no_grad;
    for (size_t p = 0; p < params.size(); ++p)
      params[p].copy_(theta.narrow(0, slices[p].offset, slices[p].numel()).view(slices[p].shape));
  }
  // f(x) at the current parameters; a graph error becomes a DataError naming x's shape.
  torch::Tensor run(const torch::Tensor& x) {
    c10::IValue out;
    try {
      out = module.forward({x});
    } catch (const std::exception& e) {
      const std::string what =
          dynamic_cast<const c10::Error*>(&e) ? static_cast<const c10::Error&>(e).what_without_backtrace() : e.what();
      throw DataError(fmt::format("{}: the graph does not take inputs of shape ({}): {}", path,
                                  fmt::join(x.sizes(), ", "), first_line(what)));
    }
    if (!out.isTensor())
      throw DataError(fmt::format("{}: forward returns a {}, expected a tensor of shape (N, k)", path, out.tagKind()));
    auto f = out.toTensor();
    if (f.dim() != 2 || f.size(0) != x.size(0))
      throw DataError(fmt::format("{}: output of shape ({}) for inputs of shape ({}); expected (N, k) = ({}, k)", path,
                                  fmt::join(f.sizes(), ", "), fmt::join(x.sizes(), ", "), x.size(0)));
    return f;
  }
};

}  // namespace twosed
