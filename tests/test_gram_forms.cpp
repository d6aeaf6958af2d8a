// The convolution Gram forms (src/model/layers/gram_forms.h): the patch form in chunks of
// examples gives the per-example form's Gram (G G^T) on the lower triangle, for every block
// size, with groups and a bias, and leaves the upper triangle as it was.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/layers/gram_forms.h"

using namespace twosed;
using namespace twosed::layers;

namespace {

// The Gram of `form` added onto a fixed matrix (its upper triangle must come back unchanged).
torch::Tensor conv_gram(const torch::Tensor& u, const torch::Tensor& b, const ConvShape& s, ConvGramForm form,
                        int64_t budget, const torch::Tensor& start) {
  auto gram = start.clone();
  add_conv_gram(u, b, s, form, budget, gram);
  return gram;
}

}  // namespace

TEST(ConvGramForms, PatchBlocksMatchPerExampleGradients) {
  torch::manual_seed(7);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t n = 13, r = 3, l = 5;
  for (const int64_t groups : {int64_t{1}, int64_t{2}}) {
    ConvShape s;
    s.out = 4;
    s.groups = groups;
    s.patch = 6;
    s.positions = l;
    s.bias = true;
    const auto u = torch::randn({n, groups * s.patch, l}, f64);
    const auto b = torch::randn({n, r, s.out, l}, f64);
    const auto start = torch::randn({n * r, n * r}, f64);
    // Oracle: the explicit per-example gradients, G G^T in full.
    auto want = start.clone();
    for (int64_t o0 = 0; o0 < s.out; o0 += s.out / groups) {
      const auto w = conv_filter_grads(u, b, s, o0, s.out / groups).first;
      want += torch::mm(w, w.t());
    }
    const auto bias = b.sum(3).reshape({n * r, s.out});  // the bias gradients of all filters
    want += torch::mm(bias, bias.t());
    const double scale = (want - start).abs().max().item<double>();
    // Budgets for row blocks of 1 example i, of 3 (ragged: 13 = 4 x 3 + 1) and of all examples
    // (the patch form's products of one example against all: 2 (R L x N R L + L x N L) doubles).
    const int64_t chunk3 = 3 * 2 * (r * l * n * r * l + l * n * l) * 8 + 5;
    for (const int64_t budget : {int64_t{1}, chunk3, int64_t{1} << 30})
      for (const auto form : {ConvGramForm::Patch, ConvGramForm::PerExample}) {
        SCOPED_TRACE("groups " + std::to_string(groups) + " budget " + std::to_string(budget) + " " +
                     conv_form_name(form));
        const auto got = conv_gram(u, b, s, form, budget, start);
        EXPECT_LE((got - want).tril().abs().max().item<double>(), 1e-12 * scale);
        EXPECT_TRUE(torch::equal(got.triu(1), start.triu(1)));
      }
  }
}
