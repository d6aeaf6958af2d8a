// Structured Gram forms of parametric layers (gram_forms.h; docs/math.md section 7).
#include "model/layers/gram_forms.h"

#include <algorithm>

#include "linalg/linalg.h"

namespace twosed::layers {

void add_kronecker_gram(const torch::Tensor& a, bool bias, const torch::Tensor& b, torch::Tensor& gram) {
  const int64_t n = a.size(0), m = b.size(0), r = m / n;
  auto aa = torch::mm(a, a.t());
  if (bias) aa.add_(1.0);
  // B B^T into an uninitialised buffer (beta = 0): only its lower triangle is written and read.
  auto bb = torch::empty({m, m}, b.options());
  linalg::syrk_lower(b, bb, 1.0, 0.0);
  // K[(i,c),(j,c')] += (B B^T)[(i,c),(j,c')] * (A A^T)[i,j] on the lower triangle, in one pass:
  // half the memory traffic of a broadcast addcmul over the whole matrix, which dominated the
  // Gram stage of narrow layers.
  TORCH_CHECK(gram.is_contiguous() && aa.is_contiguous(), "add_kronecker_gram: contiguous matrices expected");
  const double* pb = bb.data_ptr<double>();
  const double* pa = aa.data_ptr<double>();
  double* pk = gram.data_ptr<double>();
  for (int64_t row = 0; row < m; ++row) {
    const double* arow = pa + (row / r) * n;
    const double* brow = pb + row * m;
    double* krow = pk + row * m;
    for (int64_t j = 0, col = 0; j < n && col <= row; ++j) {
      const double a_ij = arow[j];
      for (int64_t c = 0; c < r && col <= row; ++c, ++col) krow[col] += brow[col] * a_ij;
    }
  }
}

const char* conv_form_name(ConvGramForm form) {
  return form == ConvGramForm::Patch ? "patch" : "per-example";
}

double conv_gram_flops(const ConvShape& s, int64_t n, int64_t r, ConvGramForm form) {
  const double nn = static_cast<double>(n), rr = static_cast<double>(r), o = static_cast<double>(s.out);
  const double p = static_cast<double>(s.patch), l = static_cast<double>(s.positions);
  const double g = static_cast<double>(s.groups);
  if (form == ConvGramForm::PerExample) return 2 * nn * rr * o * p * l + nn * nn * rr * rr * o * p;
  // Pairs j <= i: patch Grams (L x L from P), their product with b_i, the contraction with b_j.
  return nn * nn * l * l * (g * p + rr * o) + nn * nn * rr * rr * o * l;
}

ConvGramForm cheapest_conv_form(const ConvShape& s, int64_t n, int64_t r) {
  // The patch form runs as many small products (L x L patch Grams per example pair), 5-15x the
  // time of a GEMM of its FLOPs against 1.3-1.7x for the per-example rows and their syrk.
  return kPatchFlopCost * conv_gram_flops(s, n, r, ConvGramForm::Patch) <
                 conv_gram_flops(s, n, r, ConvGramForm::PerExample)
             ? ConvGramForm::Patch
             : ConvGramForm::PerExample;
}

std::pair<torch::Tensor, torch::Tensor> conv_filter_grads(const torch::Tensor& u, const torch::Tensor& b,
                                                          const ConvShape& s, int64_t o0, int64_t oc) {
  const int64_t n = b.size(0), r = b.size(1), l = b.size(3);
  const int64_t group = o0 / (s.out / s.groups);
  auto ug = s.groups == 1 ? u : u.narrow(1, group * s.patch, s.patch);
  auto bc = b.narrow(2, o0, oc).reshape({n, r * oc, l});
  auto w = torch::bmm(bc, ug.transpose(1, 2)).reshape({n * r, oc * s.patch});
  torch::Tensor bias;
  if (s.bias) bias = bc.sum(2).reshape({n * r, oc});
  return {w, bias};
}

namespace {

void add_per_example_gram(const torch::Tensor& u, const torch::Tensor& b, const ConvShape& s, int64_t memory_budget,
                          torch::Tensor& gram) {
  const int64_t rows = b.size(0) * b.size(1), per_group = s.out / s.groups;
  // Filters per chunk: the gradient block is rows x (oc (patch + 1)) doubles.
  const int64_t per_filter = rows * (s.patch + 1) * static_cast<int64_t>(sizeof(double));
  const int64_t oc = std::clamp<int64_t>(memory_budget / std::max<int64_t>(per_filter, 1), 1, per_group);
  for (int64_t o0 = 0; o0 < s.out; o0 += per_group)
    for (int64_t c0 = o0; c0 < o0 + per_group; c0 += oc) {
      auto [w, bias] = conv_filter_grads(u, b, s, c0, std::min(oc, o0 + per_group - c0));
      linalg::syrk_lower(w, gram);
      if (s.bias) linalg::syrk_lower(bias, gram);
    }
}

// K[(i,c),(j,c')] += sum_o sum_{p,p'} b_{ic o p} (U_i^T U_j)_{p p'} b_{jc' o p'} for j <= i, with
// examples j in chunks so that the patch Grams and their products stay within the budget.
void add_patch_gram(const torch::Tensor& u, const torch::Tensor& b, const ConvShape& s, int64_t memory_budget,
                    torch::Tensor& gram) {
  const int64_t n = b.size(0), r = b.size(1), l = b.size(3), og = s.out / s.groups;
  const int64_t per_example = (l + r * og) * l * static_cast<int64_t>(sizeof(double));
  const int64_t chunk = std::max<int64_t>(1, memory_budget / std::max<int64_t>(per_example, 1));
  for (int64_t g = 0; g < s.groups; ++g) {
    auto ug = u.narrow(1, g * s.patch, s.patch);                               // (N, P, L)
    auto bg = b.narrow(2, g * og, og).reshape({n, r * og, l});                 // (N, R og, L)
    auto cols = ug.permute({1, 0, 2}).reshape({s.patch, n * l}).contiguous();  // (P, N L)
    auto bflat = bg.reshape({n, r, og * l});
    for (int64_t i = 0; i < n; ++i) {
      auto uit = ug[i].t();
      for (int64_t j0 = 0; j0 <= i; j0 += chunk) {
        const int64_t nj = std::min(chunk, i + 1 - j0);
        auto m = torch::mm(uit, cols.narrow(1, j0 * l, nj * l));                                     // (L, nj L)
        auto t = torch::mm(bg[i], m).view({r, og, nj, l}).permute({2, 0, 1, 3});                     // (nj, R, og, L)
        auto kij = torch::bmm(t.reshape({nj, r, og * l}), bflat.narrow(0, j0, nj).transpose(1, 2));  // (nj, R, R)
        auto k = kij.permute({1, 0, 2}).reshape({r, nj * r});
        // The block (i, i) on the diagonal: the upper triangle of `gram` is left as is (layer.h).
        if (j0 + nj == i + 1) {
          auto kii = k.narrow(1, (nj - 1) * r, r);
          kii.copy_(kii.tril());
        }
        gram.narrow(0, i * r, r).narrow(1, j0 * r, nj * r).add_(k);
      }
    }
  }
  if (s.bias) linalg::syrk_lower(b.sum(3).reshape({n * r, s.out}), gram);
}

}  // namespace

void add_conv_gram(const torch::Tensor& u, const torch::Tensor& b, const ConvShape& s, ConvGramForm form,
                   int64_t memory_budget, torch::Tensor& gram) {
  if (form == ConvGramForm::Patch)
    add_patch_gram(u, b, s, memory_budget, gram);
  else
    add_per_example_gram(u, b, s, memory_budget, gram);
}

}  // namespace twosed::layers
