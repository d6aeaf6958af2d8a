// Internal: the one unit that calls BLAS and LAPACK directly. Everything else goes through
// these functions (or through LibTorch, which links the same OpenBLAS).
//
// Matrices here are float64 and symmetric, given by their row-major lower triangle (the upper
// one is not read): the layers accumulate only that half (syrk), and a row-major lower
// triangle is a column-major upper one, which is what LAPACK is told.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "twosed/fisher/statistical_model.h"

namespace twosed::linalg {

/// The side the eigen-problem of a sample_rows x params Jacobian is solved on: the requested
/// one, or for Auto the smaller (samples on a tie, docs/math.md section 7).
GramSide choose_side(GramSide requested, int64_t sample_rows, int64_t params);

/// What the zero cutoff of docs/math.md section 5 keeps of one matrix's eigenvalues.
struct CutSpectrum {
  std::vector<double> kept;    ///< ascending, all > cutoff * largest and > 0
  int64_t cut = 0;             ///< eigenvalues removed (round-off zeros and negatives)
  double largest = 0.0;        ///< largest eigenvalue before the cutoff
  double most_negative = 0.0;  ///< most negative raw eigenvalue, 0 if none
};

/// The LAPACK drivers for the eigenvalues (only) of a symmetric matrix. All reduce the matrix to
/// tridiagonal form and finish with dsterf; they differ in the reduction: one stage (dsytrd,
/// half of it matrix-vector products) or two (dsytrd_2stage: a level-3 band reduction, then
/// bulge chasing on the band).
enum class EigenRoutine {
  Dsyevd,          ///< dsytrd + dsterf
  DsyevdTwoStage,  ///< dsytrd_2stage + dsterf
  Dsyevr,          ///< dsytrd + dsterf, RANGE = 'A' (benchmarked; not chosen)
};

/// "dsyevd", "dsyevd_2stage", "dsyevr".
const char* eigen_routine_name(EigenRoutine routine);

/// The routine symmetric_eigenvalues() uses for an m x m matrix on `threads` BLAS threads: the
/// fastest measured by bench/bench_eigen (thresholds in linalg.cpp). It depends only on (m,
/// threads) and OpenBLAS's kernels, so equal inputs on equal thread counts give bit-identical
/// eigenvalues on every path of one machine.
EigenRoutine eigen_routine(int64_t m, int threads);

/// Eigenvalues (ascending) of the symmetric m x m matrix held column-major in `a` (destroyed),
/// reading its lower (uplo 'L') or upper ('U') triangle; a row-major lower triangle is a
/// column-major upper one. Uses eigen_routine(m, blas_threads()). Throws DataError if LAPACK
/// does not converge (values far outside the float64 range do that).
std::vector<double> symmetric_eigenvalues(double* a, int64_t m, char uplo);

/// The same with a given routine (benchmarks, and the test that all agree).
std::vector<double> symmetric_eigenvalues(double* a, int64_t m, char uplo, EigenRoutine routine);

/// The zero cutoff: eigenvalues <= cutoff * max(largest, 0), and negative ones, are exact zeros.
CutSpectrum zero_cutoff(const std::vector<double>& ascending, double cutoff);

/// Both at once on a (m, m) float64 tensor's lower triangle (copied, the tensor is unchanged).
/// The copy is column-major and the lower triangle is read, as torch::linalg_eigvalsh does: where
/// eigen_routine() picks dsyevd (eigvalsh's routine) results are bit-identical to it, else they
/// agree to round-off (~1e-14 x the largest eigenvalue).
CutSpectrum symmetric_spectrum(const torch::Tensor& lower, double cutoff);

/// C = alpha * A A^T + beta * C on the lower triangle of C (dsyrk: half the flops of A A^T).
/// A (m, n) and C (m, m) float64; C contiguous; the upper triangle is not touched.
void syrk_lower(const torch::Tensor& a, torch::Tensor& c, double alpha = 1.0, double beta = 1.0);

/// The same on raw row-major buffers: C (m x m) += alpha * A A^T (trans = false, A is m x k)
/// or alpha * A^T A (trans = true, A is k x m).
void syrk_lower(const double* a, int64_t m, int64_t k, bool trans, double alpha, double beta, double* c);

/// tril(C) + tril(C, -1)^T: the symmetric matrix whose lower triangle is C's.
torch::Tensor symmetrize_from_lower(const torch::Tensor& c);

/// Single-threaded BLAS/LAPACK for the lifetime of the object (the previous setting is restored
/// after): for work that runs many small problems on its own threads, so that each result does
/// not depend on the thread count. saved() is the setting it replaced.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
  int saved() const { return saved_; }

 private:
  int saved_;
};

/// OpenBLAS's thread count, and setting it (only ScopedThreads and SingleThreadedBlas do).
int blas_threads();
void set_blas_threads(int threads);

}  // namespace twosed::linalg
