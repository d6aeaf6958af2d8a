// src/linalg: the eigen routines it may choose agree with each other, and the choice is a
// function of size and thread count only; the scratch pool hands blocks back only when free.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "linalg/linalg.h"
#include "linalg/scratch.h"

namespace twosed::linalg {
namespace {

// A random symmetric PSD matrix G G^T / cols, column-major; rank-deficient when cols < m (as a
// Gram matrix of fewer parameters than rows), so that the spectrum has round-off zeros too.
std::vector<double> random_psd(int64_t m, int64_t cols, uint64_t seed) {
  torch::manual_seed(seed);
  auto g = torch::randn({m, cols}, torch::kFloat64);
  auto a = torch::mm(g, g.t()).div_(static_cast<double>(cols)).contiguous();
  return std::vector<double>(a.data_ptr<double>(), a.data_ptr<double>() + m * m);
}

std::vector<double> eigenvalues(const std::vector<double>& a, int64_t m, char uplo, EigenRoutine routine) {
  auto copy = a;
  return symmetric_eigenvalues(copy.data(), m, uplo, routine);
}

}  // namespace

// Every routine's eigenvalues equal dsyevd's to 1e-12 x lambda_max, on either triangle, for
// full-rank and rank-deficient matrices on both sides of the size thresholds.
TEST(LinalgTest, EigenRoutinesAgreeWithDsyevd) {
  for (const auto& [m, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 3}, {60, 60}, {300, 120}, {1100, 1200}}) {
    const auto a = random_psd(m, cols, static_cast<uint64_t>(m));
    const auto reference = eigenvalues(a, m, 'L', EigenRoutine::Dsyevd);
    ASSERT_EQ(static_cast<int64_t>(reference.size()), m);
    EXPECT_TRUE(std::is_sorted(reference.begin(), reference.end()));
    const double lmax = reference.back();
    ASSERT_GT(lmax, 0);
    for (EigenRoutine r : {EigenRoutine::Dsyevd, EigenRoutine::DsyevdTwoStage, EigenRoutine::Dsyevr})
      for (char uplo : {'L', 'U'}) {
        const auto w = eigenvalues(a, m, uplo, r);
        ASSERT_EQ(w.size(), reference.size()) << eigen_routine_name(r);
        double worst = 0;
        for (size_t i = 0; i < w.size(); ++i) worst = std::max(worst, std::abs(w[i] - reference[i]));
        EXPECT_LE(worst, 1e-12 * lmax) << eigen_routine_name(r) << " uplo " << uplo << " m = " << m;
      }
  }
}

// The default entry point is the chosen routine, bit for bit; the choice depends on (m,
// threads) only and switches to the two-stage reduction for large matrices.
TEST(LinalgTest, DefaultIsTheChosenRoutine) {
  for (int64_t m : {90, 1100}) {
    const auto a = random_psd(m, m, 5);
    auto copy = a;
    const auto chosen = symmetric_eigenvalues(copy.data(), m, 'L');
    EXPECT_EQ(chosen, eigenvalues(a, m, 'L', eigen_routine(m, blas_threads())));
  }
  for (int threads : {1, 2, 8}) {
    EXPECT_EQ(eigen_routine(100, threads), EigenRoutine::Dsyevd);
    EXPECT_EQ(eigen_routine(8000, threads), EigenRoutine::DsyevdTwoStage);
  }
  EXPECT_STREQ(eigen_routine_name(EigenRoutine::DsyevdTwoStage), "dsyevd_2stage");
  EXPECT_TRUE(symmetric_eigenvalues(nullptr, 0, 'L').empty());
}

// symmetric_spectrum (the standard model's path) is the chosen routine on the matrix's lower
// triangle, then the zero cutoff.
TEST(LinalgTest, SymmetricSpectrumUsesTheChosenRoutine) {
  const int64_t m = 40;
  auto a = torch::from_blob(random_psd(m, 25, 9).data(), {m, m}, torch::kFloat64).clone();
  const auto cs = symmetric_spectrum(a, 1e-10);
  auto lower = a.t().contiguous();  // column-major copy of the row-major matrix
  const auto w = symmetric_eigenvalues(lower.data_ptr<double>(), m, 'L');
  EXPECT_EQ(cs.largest, w.back());
  EXPECT_EQ(cs.kept.size() + static_cast<size_t>(cs.cut), static_cast<size_t>(m));
  EXPECT_EQ(static_cast<int64_t>(cs.kept.size()), 25);  // rank 25: the other 15 are round-off zeros
}

}  // namespace twosed::linalg

namespace twosed::linalg {
namespace {

// ScratchPool (scratch.h): a block comes back only once every tensor on it is gone, a miss
// releases the free blocks, and a tensor may outlive its pool.
TEST(ScratchPool, ReusesAFreeBlockOfTheSameSizeOnly) {
  ScratchPool pool(/*min_bytes=*/1024);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  void* first = nullptr;
  {
    auto a = pool.empty({64, 32}, f64);
    first = a.data_ptr();
    auto view = a.view({32, 64});  // a view keeps the block in use
    a = torch::Tensor();
    auto b = pool.empty({64, 32}, f64);
    EXPECT_NE(b.data_ptr(), first);
    EXPECT_EQ(pool.reuses(), 0);
  }
  auto c = pool.empty({2048}, f64);  // same bytes, other shape: the first free block of that size
  EXPECT_EQ(c.data_ptr(), first);
  EXPECT_EQ(pool.reuses(), 1);
  EXPECT_EQ(c.sizes(), torch::IntArrayRef({2048}));
}

TEST(ScratchPool, AMissReleasesTheFreeBlocks) {
  ScratchPool pool(1024);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  { auto a = pool.empty({1000}, f64); }
  EXPECT_EQ(pool.bytes_held(), 8000);
  auto held = pool.empty({500}, f64);
  EXPECT_EQ(pool.bytes_held(), 4000);  // the free 8000-byte block went
  auto more = pool.empty({700}, f64);
  EXPECT_EQ(pool.bytes_held(), 4000 + 5600);  // the block in use stays
}

TEST(ScratchPool, ATensorOutlivesItsPool) {
  torch::Tensor t;
  {
    ScratchPool pool(1024);
    t = pool.empty({300}, torch::kFloat64);
    t.fill_(2.5);
  }
  EXPECT_EQ(t.sum().item<double>(), 750.0);
}

TEST(ScratchPool, ScratchEmptyUsesTheScopesPoolForLargeTensorsOnly) {
  ScratchPool pool(1024);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  { auto t = scratch_empty({1000}, f64); }  // no scope: not from the pool
  EXPECT_EQ(pool.bytes_held(), 0);
  {
    ScratchScope scope(pool);
    { auto small = scratch_empty({10}, f64); }
    EXPECT_EQ(pool.bytes_held(), 0);
    { auto large = scratch_empty({1000}, f64); }
    EXPECT_EQ(pool.bytes_held(), 8000);
    {
      ScratchPool inner(1024);
      ScratchScope nested(inner);
      auto t = scratch_empty({1000}, f64);
      EXPECT_EQ(inner.bytes_held(), 8000);
      EXPECT_EQ(pool.reuses(), 0);
    }
    auto again = scratch_empty({1000}, f64);  // the outer scope is back
    EXPECT_EQ(pool.reuses(), 1);
  }
  { auto t = scratch_empty({1000}, f64); }
  EXPECT_EQ(pool.reuses(), 1);
}

}  // namespace
}  // namespace twosed::linalg
