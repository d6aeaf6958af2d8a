// Symmetric rank-k updates through BLAS directly: LibTorch has no syrk, and A A^T through a
// general matrix product costs twice the flops. LibTorch links the same BLAS (OpenBLAS).
#include <cblas.h>

#include "model/layers/layer.h"

namespace twosed::layers {

void syrk_lower(const torch::Tensor& a, torch::Tensor& c, double alpha, double beta) {
  TORCH_CHECK(a.scalar_type() == torch::kFloat64 && c.scalar_type() == torch::kFloat64, "syrk_lower: float64 only");
  TORCH_CHECK(c.is_contiguous() && c.dim() == 2 && c.size(0) == c.size(1) && a.size(0) == c.size(0),
              "syrk_lower: shape mismatch");
  const auto ac = a.contiguous();
  const int m = static_cast<int>(ac.size(0)), k = static_cast<int>(ac.size(1));
  TORCH_CHECK(k > 0, "syrk_lower: A has no columns");
  if (m == 0) return;
  // Row-major lower triangle of C = column-major upper triangle of C^T.
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, m, k, alpha, ac.data_ptr<double>(), k, beta,
              c.data_ptr<double>(), m);
}

torch::Tensor symmetrize_from_lower(const torch::Tensor& c) {
  return torch::tril(c) + torch::tril(c, -1).t();
}

}  // namespace twosed::layers
