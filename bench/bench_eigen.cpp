// The eigenvalues-only LAPACK routines on random symmetric PSD matrices, by size and OpenBLAS
// thread count: what linalg::eigen_routine's thresholds come from (docs/benchmarks.md,
// "Throughput"). LAPACK only, no LibTorch: it builds in seconds.
//
//   bench_eigen [--sizes 100,400,900] [--threads 1,2] [--budget SECONDS]
//
// One line per (size, threads, routine): fastest and median wall seconds, fastest process CPU
// seconds (all threads, spin-waits included), repetitions, and the largest
// |lambda - lambda_dsyevd| / lambda_max over the spectrum.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
void dsyevd_(const char*, const char*, const int*, double*, const int*, double*, double*, const int*, int*, const int*,
             int*);
void dsyevr_(const char*, const char*, const char*, const int*, double*, const int*, const double*, const double*,
             const int*, const int*, const double*, int*, double*, double*, const int*, int*, double*, const int*, int*,
             const int*, int*);
void dsyev_2stage_(const char*, const char*, const int*, double*, const int*, double*, double*, const int*, int*);
void dsyevd_2stage_(const char*, const char*, const int*, double*, const int*, double*, double*, const int*, int*,
                    const int*, int*);
void dsytrd_(const char*, const int*, double*, const int*, double*, double*, double*, double*, const int*, int*);
void dsterf_(const int*, double*, double*, int*);
void openblas_set_num_threads(int);
}

namespace {

using Clock = std::chrono::steady_clock;

// Process CPU seconds: on a shared machine, the work a routine did, without the time it waited.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One routine: eigenvalues of the n x n column-major `a` (destroyed) into w; info returned.
using Routine = int (*)(const char* uplo, int n, double* a, double* w);

int run_dsyevd(const char* uplo, int n, double* a, double* w) {
  int info = 0, lwork = -1, liwork = -1, iq = 0;
  double wq = 0;
  dsyevd_("N", uplo, &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info);
  lwork = std::max(2 * n + 1, static_cast<int>(wq));
  liwork = std::max(1, iq);
  std::vector<double> work(lwork);
  std::vector<int> iwork(liwork);
  dsyevd_("N", uplo, &n, a, &n, w, work.data(), &lwork, iwork.data(), &liwork, &info);
  return info;
}

int run_dsyevr(const char* uplo, int n, double* a, double* w) {
  int info = 0, lwork = -1, liwork = -1, iq = 0, found = 0, il = 1, iu = n;
  double wq = 0, vl = 0, vu = 0, abstol = 0, z = 0;
  int one = 1;
  std::vector<int> isuppz(2 * n);
  dsyevr_("N", "A", uplo, &n, a, &n, &vl, &vu, &il, &iu, &abstol, &found, w, &z, &one, isuppz.data(), &wq, &lwork, &iq,
          &liwork, &info);
  lwork = std::max(26 * n, static_cast<int>(wq));
  liwork = std::max(10 * n, iq);
  std::vector<double> work(lwork);
  std::vector<int> iwork(liwork);
  dsyevr_("N", "A", uplo, &n, a, &n, &vl, &vu, &il, &iu, &abstol, &found, w, &z, &one, isuppz.data(), work.data(),
          &lwork, iwork.data(), &liwork, &info);
  return info;
}

int run_dsyev_2stage(const char* uplo, int n, double* a, double* w) {
  int info = 0, lwork = -1;
  double wq = 0;
  dsyev_2stage_("N", uplo, &n, a, &n, w, &wq, &lwork, &info);
  lwork = std::max(3 * n, static_cast<int>(wq));
  std::vector<double> work(lwork);
  dsyev_2stage_("N", uplo, &n, a, &n, w, work.data(), &lwork, &info);
  return info;
}

int run_dsyevd_2stage(const char* uplo, int n, double* a, double* w) {
  int info = 0, lwork = -1, liwork = -1, iq = 0;
  double wq = 0;
  dsyevd_2stage_("N", uplo, &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info);
  lwork = std::max(2 * n + 1, static_cast<int>(wq));
  liwork = std::max(1, iq);
  std::vector<double> work(lwork);
  std::vector<int> iwork(liwork);
  dsyevd_2stage_("N", uplo, &n, a, &n, w, work.data(), &lwork, iwork.data(), &liwork, &info);
  return info;
}

// dsyevd's 'N' path without its scaling: the tridiagonal reduction, then Pal-Walker-Kahan QR.
int run_dsytrd_dsterf(const char* uplo, int n, double* a, double* w) {
  int info = 0, lwork = -1;
  double wq = 0;
  std::vector<double> e(std::max(1, n - 1)), tau(std::max(1, n - 1));
  dsytrd_(uplo, &n, a, &n, w, e.data(), tau.data(), &wq, &lwork, &info);
  lwork = std::max(1, static_cast<int>(wq));
  std::vector<double> work(lwork);
  dsytrd_(uplo, &n, a, &n, w, e.data(), tau.data(), work.data(), &lwork, &info);
  if (info == 0) dsterf_(&n, w, e.data(), &info);
  return info;
}

struct Named {
  const char* name;
  const char* uplo;
  Routine routine;
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::atoi(item.c_str()));
  return out;
}

// A random symmetric PSD matrix G G^T / n (full rank, spread spectrum like a Gram matrix).
std::vector<double> random_psd(int n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> g(static_cast<size_t>(n) * n), a(static_cast<size_t>(n) * n, 0.0);
  for (auto& v : g) v = normal(rng);
  cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, n, n, 1.0 / n, g.data(), n, 0.0, a.data(), n);
  for (int j = 0; j < n; ++j)
    for (int i = j + 1; i < n; ++i) a[static_cast<size_t>(i) * n + j] = a[static_cast<size_t>(j) * n + i];
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes{100, 200, 400, 600, 900, 1200, 1600, 2000, 3000, 4000}, threads{1, 2};
  double budget = 1.0;  // seconds per (size, threads, routine), at least one repetition
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--sizes")
      sizes = parse_list(argv[i + 1]);
    else if (flag == "--threads")
      threads = parse_list(argv[i + 1]);
    else if (flag == "--budget")
      budget = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_eigen: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  const Named routines[] = {{"dsyevd", "L", run_dsyevd},
                            {"dsyevd_U", "U", run_dsyevd},
                            {"dsyevr", "L", run_dsyevr},
                            {"dsytrd+dsterf", "L", run_dsytrd_dsterf},
                            {"dsyev_2stage", "L", run_dsyev_2stage},
                            {"dsyevd_2stage", "L", run_dsyevd_2stage}};
  std::printf("%6s %3s %-14s %10s %10s %10s %4s %12s\n", "n", "T", "routine", "min_s", "median_s", "min_cpu_s", "reps",
              "maxdiff/lmax");
  for (int n : sizes) {
    const auto a0 = random_psd(n, static_cast<unsigned>(n));
    std::vector<double> ref(n), w(n), a(a0.size());
    a = a0;
    run_dsyevd("L", n, a.data(), ref.data());
    const double lmax = ref.back();
    for (int t : threads) {
      openblas_set_num_threads(t);
      // Routines interleaved per repetition, so that a noisy neighbour hits all of them alike.
      std::vector<std::vector<double>> seconds(std::size(routines)), cpu(std::size(routines));
      std::vector<double> diff(std::size(routines), 0.0);
      const auto start = Clock::now();
      for (int rep = 0; rep < 3 || std::chrono::duration<double>(Clock::now() - start).count() <
                                       budget * static_cast<double>(std::size(routines));
           ++rep) {
        if (rep >= 25) break;
        for (size_t r = 0; r < std::size(routines); ++r) {
          a = a0;
          const auto t0 = Clock::now();
          const double c0 = cpu_seconds();
          const int info = routines[r].routine(routines[r].uplo, n, a.data(), w.data());
          cpu[r].push_back(cpu_seconds() - c0);
          seconds[r].push_back(std::chrono::duration<double>(Clock::now() - t0).count());
          if (info != 0) std::fprintf(stderr, "%s n=%d: info %d\n", routines[r].name, n, info);
          for (int i = 0; i < n; ++i) diff[r] = std::max(diff[r], std::abs(w[i] - ref[i]) / lmax);
        }
        if (n >= 2000 && rep >= 0 && std::chrono::duration<double>(Clock::now() - start).count() > 4 * budget) break;
      }
      for (size_t r = 0; r < std::size(routines); ++r) {
        auto s = seconds[r], c = cpu[r];
        std::sort(s.begin(), s.end());
        std::sort(c.begin(), c.end());
        std::printf("%6d %3d %-14s %10.5f %10.5f %10.5f %4zu %12.2e\n", n, t, routines[r].name, s.front(),
                    s[s.size() / 2], c.front(), s.size(), diff[r]);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
