// Structured Gram forms of parametric layers (gram_forms.h; docs/math.md section 7).
#include "model/layers/gram_forms.h"

#include <algorithm>
#include <cmath>

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

int64_t patch_block_examples(int64_t n, int64_t r, int64_t og, int64_t l, int64_t memory_budget) {
  // Per pair of examples: the patch Gram (L^2), b_i applied and its transposed copy (2 R og L),
  // the contraction (2 R^2), in doubles.
  const int64_t per_pair = (l * l + 2 * r * og * l + 2 * r * r) * static_cast<int64_t>(sizeof(double));
  const auto fit = static_cast<int64_t>(std::sqrt(static_cast<double>(memory_budget) / std::max<int64_t>(per_pair, 1)));
  // At most a quarter of the examples: whole blocks compute both triangles, and four blocks a
  // side keep the pairs computed at 10/16 of N^2 against 1/2 for j <= i exactly.
  return std::clamp<int64_t>(fit, 1, std::max<int64_t>(1, (n + 3) / 4));
}

double conv_gram_flops(const ConvShape& s, int64_t n, int64_t r, ConvGramForm form) {
  const double nn = static_cast<double>(n), rr = static_cast<double>(r), o = static_cast<double>(s.out);
  const double p = static_cast<double>(s.patch), l = static_cast<double>(s.positions);
  const double g = static_cast<double>(s.groups);
  if (form == ConvGramForm::PerExample) return 2 * nn * rr * o * p * l + nn * nn * rr * rr * o * p;
  // Pairs in the lower block triangle (blocks of patch_block_examples at an ample budget): patch
  // Grams (L x L from P), their product with b_i, the contraction with b_j; 2 flops a multiply-add.
  const double block = static_cast<double>(std::max<int64_t>(1, (n + 3) / 4));
  const double blocks = std::ceil(nn / block);
  const double pairs = std::min(nn * nn, block * block * blocks * (blocks + 1) / 2);
  return 2 * pairs * (l * l * (g * p + rr * o) + rr * rr * o * l);
}

ConvGramForm cheapest_conv_form(const ConvShape& s, int64_t n, int64_t r) {
  return conv_gram_flops(s, n, r, ConvGramForm::Patch) < conv_gram_flops(s, n, r, ConvGramForm::PerExample)
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

// K[(i,c),(j,c')] += sum_o sum_{p,p'} b_{ic o p} (U_i^T U_j)_{p p'} b_{jc' o p'} for j <= i, over
// square blocks of examples (I, J), J <= I: the patch Grams of all pairs in one GEMM, b_i applied
// in one bmm over i, the contraction with b_j in one bmm over j. Small per-pair mm's ran 10-27x
// below GEMM speed (L = 1..16 positions); whole blocks keep every product large.
void add_patch_gram(const torch::Tensor& u, const torch::Tensor& b, const ConvShape& s, int64_t memory_budget,
                    torch::Tensor& gram) {
  const int64_t n = b.size(0), r = b.size(1), l = b.size(3), og = s.out / s.groups;
  const int64_t block = patch_block_examples(n, r, og, l, memory_budget);
  for (int64_t g = 0; g < s.groups; ++g) {
    auto ug = u.narrow(1, g * s.patch, s.patch);                               // (N, P, L)
    auto bg = b.narrow(2, g * og, og).reshape({n, r * og, l});                 // (N, R og, L)
    auto cols = ug.permute({1, 0, 2}).reshape({s.patch, n * l}).contiguous();  // (P, N L)
    auto bflat = bg.reshape({n, r, og * l});
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      const int64_t ni = std::min(block, n - i0);
      auto ui = cols.narrow(1, i0 * l, ni * l).t();  // (ni L, P)
      for (int64_t j0 = 0; j0 <= i0; j0 += block) {
        const int64_t nj = std::min(block, n - j0);
        auto m = torch::mm(ui, cols.narrow(1, j0 * l, nj * l)).view({ni, l, nj * l});  // (ni, L, nj L)
        auto t = torch::bmm(bg.narrow(0, i0, ni), m)                                   // (ni, R og, nj L)
                     .view({ni, r, og, nj, l})
                     .permute({3, 0, 1, 2, 4})
                     .reshape({nj, ni * r, og * l});
        auto kij = torch::bmm(t, bflat.narrow(0, j0, nj).transpose(1, 2));  // (nj, ni R, R)
        auto k = kij.permute({1, 0, 2}).reshape({ni * r, nj * r});
        // Diagonal blocks: the upper triangle of `gram` is left as is (layer.h add_gram).
        if (j0 == i0) k.tril_();
        gram.narrow(0, i0 * r, ni * r).narrow(1, j0 * r, nj * r).add_(k);
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
