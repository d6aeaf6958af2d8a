#include "linalg/linalg.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <string>
#include <thread>

#include "twosed/error.h"
#include "twosed/execution.h"

extern "C" {
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
             const int* lwork, int* iwork, const int* liwork, int* info);
void dsyevd_2stage_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                    double* work, const int* lwork, int* iwork, const int* liwork, int* info);
void dsyevr_(const char* jobz, const char* range, const char* uplo, const int* n, double* a, const int* lda,
             const double* vl, const double* vu, const int* il, const int* iu, const double* abstol, int* m, double* w,
             double* z, const int* ldz, int* isuppz, double* work, const int* lwork, int* iwork, const int* liwork,
             int* info);
void openblas_set_num_threads(int);
int openblas_get_num_threads();
char* openblas_get_corename();
}

namespace twosed::linalg {

GramSide choose_side(GramSide requested, int64_t sample_rows, int64_t params) {
  if (requested != GramSide::Auto) return requested;
  return sample_rows <= params ? GramSide::Samples : GramSide::Parameters;
}

const char* eigen_routine_name(EigenRoutine routine) {
  switch (routine) {
    case EigenRoutine::Dsyevd:
      return "dsyevd";
    case EigenRoutine::DsyevdTwoStage:
      return "dsyevd_2stage";
    case EigenRoutine::Dsyevr:
      return "dsyevr";
  }
  return "?";
}

// Where the two-stage reduction starts to pay, by BLAS thread count: bench/bench_eigen on a
// 2-core Xeon, OpenBLAS 0.3.21 SkylakeX kernels (docs/benchmarks.md, "Throughput", eigen routine
// table; random PSD matrices, process CPU seconds). On one thread dsyevd_2stage is slower up to
// ~600 (1.3x at 600: its bulge chasing has a fixed cost per band), even at 900 (0.92x and 1.08x
// in two runs), then faster: 1.24x at 1,200 (1.19x at 1,153 in the Markov benchmark), 1.5x at
// 1,600, 1.9x at 2,000, 2.7x at 3,000, where dsytrd's matrix-vector half no longer runs from
// cache. On two threads the picture turns: OpenBLAS threads dsytrd's matrix-vector products,
// which dsyevd gains from (1.6x at 900), but the two-stage routine runs slower on two threads
// than on one (bulge chasing is not threaded, and its threads wait). Measured on a quiet
// machine: dsyevd ahead by 2.6x at 900, 1.4x at 2,000, 1.1x at 3,000, and level at 4,000
// (2.6 s against 2.8 s), so the two-stage reduction starts at 4,000 there.
// With OpenBLAS's Haswell (AVX2) kernels, on a 2-core AMD EPYC, the one-thread crossover is
// later: dsyevd ahead by 1.26x at 1,153 and 1.06x at 2,000, dsyevd_2stage ahead by 1.20x at
// 2,500 and 1.39x at 3,000 (the 1,000 threshold made the Markov benchmark's 1,153 blocks 1.3x
// slower there); on two threads the same 4,000 (dsyevd ahead by 1.16x at 3,000, behind by 1.5x
// at 4,000). The choice depends only on the kernels OpenBLAS runs (its core name), so equal
// inputs on one machine still give equal eigenvalues.
constexpr int64_t kTwoStageFromOneThread = 1000;
constexpr int64_t kTwoStageFromOneThreadAvx2 = 2200;
constexpr int64_t kTwoStageFromMoreThreads = 4000;

EigenRoutine eigen_routine(int64_t m, int threads) {
  static const int64_t one_thread_from = [] {
    const char* core = openblas_get_corename();
    const std::string name = core ? core : "";
    return name == "Haswell" || name == "Zen" ? kTwoStageFromOneThreadAvx2 : kTwoStageFromOneThread;
  }();
  const int64_t from = threads <= 1 ? one_thread_from : kTwoStageFromMoreThreads;
  return m >= from ? EigenRoutine::DsyevdTwoStage : EigenRoutine::Dsyevd;
}

namespace {

// One LAPACK call with its workspace queried first: with the minimal one (2n + 1) dsytrd runs
// its unblocked level-2 code, several times slower on the 900 x 900 Gram matrices of N = 100.
int lapack_eigenvalues(EigenRoutine routine, const char* uplo, int n, double* a, double* w) {
  int lwork = -1, liwork = -1, iwork_size = 0, info = 0, found = 0, il = 1, iu = n, one = 1;
  double work_size = 0, vl = 0, vu = 0, abstol = 0, z = 0;
  std::vector<int> isuppz(routine == EigenRoutine::Dsyevr ? 2 * static_cast<size_t>(n) : 0);
  auto call = [&](double* work, int* iwork) {
    switch (routine) {
      case EigenRoutine::Dsyevd:
        dsyevd_("N", uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
        break;
      case EigenRoutine::DsyevdTwoStage:
        dsyevd_2stage_("N", uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
        break;
      case EigenRoutine::Dsyevr:
        dsyevr_("N", "A", uplo, &n, a, &n, &vl, &vu, &il, &iu, &abstol, &found, w, &z, &one, isuppz.data(), work,
                &lwork, iwork, &liwork, &info);
        break;
    }
  };
  call(&work_size, &iwork_size);
  if (info != 0) return info;
  lwork = std::max(routine == EigenRoutine::Dsyevr ? 26 * n : 2 * n + 1, static_cast<int>(work_size));
  liwork = std::max(routine == EigenRoutine::Dsyevr ? 10 * n : 1, iwork_size);
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  call(work.data(), iwork.data());
  return info;
}

}  // namespace

std::vector<double> symmetric_eigenvalues(double* a, int64_t m, char uplo) {
  return symmetric_eigenvalues(a, m, uplo, eigen_routine(m, blas_threads()));
}

std::vector<double> symmetric_eigenvalues(double* a, int64_t m, char uplo, EigenRoutine routine) {
  std::vector<double> w(static_cast<size_t>(m));
  if (m == 0) return w;
  if (m > std::numeric_limits<int>::max()) throw DataError(fmt::format("a {}x{} matrix is too large for LAPACK", m, m));
  const char uplo_arg[2] = {uplo, '\0'};
  const int info = lapack_eigenvalues(routine, uplo_arg, static_cast<int>(m), a, w.data());
  if (info != 0)
    throw DataError(fmt::format(
        "the eigen-solver (LAPACK {}) did not converge on a {}x{} matrix (info = {}): its entries are too large or "
        "too small for float64 (inputs or parameters far outside the usual range?)",
        eigen_routine_name(routine), m, m, info));
  return w;
}

CutSpectrum zero_cutoff(const std::vector<double>& ascending, double cutoff) {
  CutSpectrum out;
  if (ascending.empty()) return out;
  out.largest = ascending.back();
  out.most_negative = std::min(0.0, ascending.front());
  // Spec section 5: eigenvalues <= cutoff * largest (and negative round-off) are exact zeros.
  const double threshold = cutoff * std::max(out.largest, 0.0);
  for (double e : ascending)
    if (e > threshold && e > 0) out.kept.push_back(e);
  out.cut = static_cast<int64_t>(ascending.size() - out.kept.size());
  return out;
}

CutSpectrum symmetric_spectrum(const torch::Tensor& lower, double cutoff) {
  TORCH_CHECK(lower.dim() == 2 && lower.size(0) == lower.size(1) && lower.scalar_type() == torch::kFloat64,
              "symmetric_spectrum: a square float64 matrix");
  // Row-major A^T is column-major A.
  auto a = lower.t().contiguous();
  return zero_cutoff(symmetric_eigenvalues(a.data_ptr<double>(), a.size(0), 'L'), cutoff);
}

void syrk_lower(const torch::Tensor& a, torch::Tensor& c, double alpha, double beta) {
  TORCH_CHECK(a.scalar_type() == torch::kFloat64 && c.scalar_type() == torch::kFloat64, "syrk_lower: float64 only");
  TORCH_CHECK(c.is_contiguous() && c.dim() == 2 && c.size(0) == c.size(1) && a.size(0) == c.size(0),
              "syrk_lower: shape mismatch");
  const auto ac = a.contiguous();
  TORCH_CHECK(ac.size(1) > 0, "syrk_lower: A has no columns");
  if (ac.size(0) == 0) return;
  syrk_lower(ac.data_ptr<double>(), ac.size(0), ac.size(1), false, alpha, beta, c.data_ptr<double>());
}

void syrk_lower(const double* a, int64_t m, int64_t k, bool trans, double alpha, double beta, double* c) {
  const int mi = static_cast<int>(m), ki = static_cast<int>(k);
  // Row-major lower triangle of C = column-major upper triangle of C^T.
  cblas_dsyrk(CblasRowMajor, CblasLower, trans ? CblasTrans : CblasNoTrans, mi, ki, alpha, a, trans ? mi : ki, beta, c,
              mi);
}

torch::Tensor symmetrize_from_lower(const torch::Tensor& c) {
  return torch::tril(c) + torch::tril(c, -1).t();
}

int blas_threads() {
  return openblas_get_num_threads();
}
void set_blas_threads(int threads) {
  openblas_set_num_threads(threads);
}

SingleThreadedBlas::SingleThreadedBlas() : saved_(blas_threads()) {
  set_blas_threads(1);
}
SingleThreadedBlas::~SingleThreadedBlas() {
  set_blas_threads(saved_);
}

}  // namespace twosed::linalg

namespace twosed {

int current_threads() {
  return linalg::blas_threads();
}

int hardware_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ScopedThreads::ScopedThreads(int threads) {
  if (threads == 0) return;
  if (threads < 0) throw OptionError("ExecutionContext.threads", fmt::format("must be >= 1, got {}", threads));
  saved_blas_ = linalg::blas_threads();
  saved_torch_ = torch::get_num_threads();
  torch::set_num_threads(1);
  linalg::set_blas_threads(threads);
  active_ = true;
}

ScopedThreads::~ScopedThreads() {
  if (!active_) return;
  linalg::set_blas_threads(saved_blas_);
  torch::set_num_threads(saved_torch_);
}

}  // namespace twosed
