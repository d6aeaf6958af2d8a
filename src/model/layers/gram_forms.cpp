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
  // Pairs j <= i: the patch Grams (L x L from P), the backprop Grams (R L x R L from O / g), and
  // their product summed over the position pairs.
  return nn * nn * l * l * (g * p + rr * rr * o + 2 * rr * rr * g);
}

ConvGramForm cheapest_conv_form(const ConvShape& s, int64_t n, int64_t r) {
  // Measured against a GEMM of the same FLOPs (resnet18, CIFAR ResNet-18 at N = 100): the patch
  // form 1.7-3x (its position-pair contraction is a pass over C), the per-example form 1.2-2x.
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
// K[(i,c),(j,c')] += sum_{t,t'} <u_it, u_jt'> <b_ict, b_jc't'> in three large products per block
// of examples I (rows) against all j <= the block's last: the patch Gram A = U_I^T U_J (from P),
// the backprop Gram C = B_I B_J^T over the og channels (rows and columns (example, row, position)),
// then their product summed over the position pairs. This replaced a loop over example pairs
// with L x L products, which ran 5-15x the time of a GEMM of its FLOPs (docs/benchmarks.md).
void add_patch_gram(const torch::Tensor& u, const torch::Tensor& b, const ConvShape& s, int64_t memory_budget,
                    torch::Tensor& gram) {
  const int64_t n = b.size(0), r = b.size(1), l = b.size(3), og = s.out / s.groups;
  // One example of the block: its rows of C (R L x N R L) and of A (L x N L), with room to spare.
  TORCH_CHECK(gram.is_contiguous(), "add_patch_gram: a contiguous Gram matrix expected");
  const int64_t per_example = 2 * (r * l * n * r * l + l * n * l) * static_cast<int64_t>(sizeof(double));
  const int64_t chunk = std::max<int64_t>(1, memory_budget / std::max<int64_t>(per_example, 1));
  for (int64_t g = 0; g < s.groups; ++g) {
    auto cols =
        u.narrow(1, g * s.patch, s.patch).permute({1, 0, 2}).reshape({s.patch, n * l}).contiguous();  // (P, N L)
    // (N R L, og): row (i, c, t) holds b_ict over the group's channels.
    auto bm = b.narrow(2, g * og, og).permute({0, 1, 3, 2}).reshape({n * r * l, og}).contiguous();
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
      const int64_t ni = std::min(chunk, n - i0), nj = i0 + ni;
      const auto a = torch::mm(cols.narrow(1, i0 * l, ni * l).t(), cols.narrow(1, 0, nj * l)).contiguous();
      const auto c = torch::mm(bm.narrow(0, i0 * r * l, ni * r * l), bm.narrow(0, 0, nj * r * l).t()).contiguous();
      // K[(i,c),(j,c')] += sum_{t,t'} C[(i,c,t),(j,c',t')] A[(i,t),(j,t')], one pass over C's rows
      // and the lower triangle of K only (the upper triangle of `gram` is left as is, layer.h).
      const double* pc = c.data_ptr<double>();
      const double* pa = a.data_ptr<double>();
      double* pk = gram.data_ptr<double>();
      const int64_t kn = gram.size(1), cn = nj * r * l, an = nj * l;
      for (int64_t i = 0; i < ni; ++i)
        for (int64_t ci = 0; ci < r; ++ci) {
          const int64_t row = (i0 + i) * r + ci;
          double* krow = pk + row * kn;
          for (int64_t t = 0; t < l; ++t) {
            const double* crow = pc + ((i * r + ci) * l + t) * cn;
            const double* arow = pa + (i * l + t) * an;
            for (int64_t j = 0; j <= i0 + i; ++j) {
              const double* aj = arow + j * l;
              for (int64_t cj = 0; cj < r && j * r + cj <= row; ++cj) {
                const double* cjt = crow + (j * r + cj) * l;
                double acc = 0;
                for (int64_t t2 = 0; t2 < l; ++t2) acc += cjt[t2] * aj[t2];
                krow[j * r + cj] += acc;
              }
            }
          }
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
