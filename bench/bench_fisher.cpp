// bench_fisher: what one parameter sample of an exact Fisher spectrum costs (docs/math.md section 7).
//
// For each model (MLP classifiers on N real inputs, exact softmax Fisher, default Gram side) it
// times twosed::fisher_spectrum per parameter sample, split into the stages FisherSpectrum
// reports (forward/backward, Gram, eigen), after warm-up samples that are not counted. It then
// replays one sample's Gram stage piece by piece with the tensors of the backward sweep and
// times, in the same process and at the same thread count, the plain BLAS products of the
// same shapes (torch::mm(B, B^T) and cblas_dsyrk), so that the Gram stage's efficiency is a
// ratio measured in one run. With --dense it also runs the d x d path (GramSide::Parameters:
// parameter_fisher + spectrum_of) on small models and checks it against the Gram spectrum.
//
// Every (model, threads) job runs in a forked child process, so that its peak memory
// (getrusage ru_maxrss) is its own: "peak" is measured after the data set has been loaded and
// dropped (the high-water mark is reset through /proc/self/clear_refs), "peak incl. load" is
// the whole child's.
//
//   bench_fisher                                  the default models, 5 samples + 1 warm-up, 2 threads
//   bench_fisher --models mlp:784-1024-10 --threads 1,2 --json out.json
//   bench_fisher --dense --models mlp:784-12-10   adds the d x d path for --dense-models
//   bench_fisher --export-dir DIR                 theta/inputs/eigenvalues .npy for numpy_kron_gram.py
#include <cblas.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <sys/stat.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "linalg/linalg.h"
#include "linalg/scratch.h"
#include "model/layers/layer.h"
#include "twosed/data/data.h"
#include "twosed/data/npy.h"
#include "twosed/fisher/fisher.h"
#include "twosed/measure/measure.h"
#include "twosed/model/model_spec.h"
#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"

using json = nlohmann::json;

// LAPACK (OpenBLAS ships it): eigenvalues only, for the eigen stage's breakdown.
extern "C" {
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
             const int* lwork, int* iwork, const int* liwork, int* info, size_t, size_t);
void dsyevd_2stage_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                    double* work, const int* lwork, int* iwork, const int* liwork, int* info, size_t, size_t);
}
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::vector<std::string> models = {"mlp:784-12-10", "mlp:784-128-10", "mlp:784-1024-10", "mlp:784-1024-256-10"};
  int64_t samples = 5;
  int64_t warmup = 1;
  bool dense = false;
  std::vector<std::string> dense_models = {"mlp:784-1-10", "mlp:784-12-10"};
  int64_t dense_samples = 1;
  std::vector<int> threads = {2};
  int torch_threads = 0;  // >0: override LibTorch's intra-op threads after set_num_threads (diagnostic)
  int blas_threads = 0;   // >0: override OpenBLAS's threads likewise
  int64_t inputs = 100;
  uint64_t seed = 0;
  std::string data;  // empty: Fashion-MNIST if installed, else blobs
  std::string json_path;
  std::string export_dir;
  std::string export_model = "mlp:784-1024-10";
  double ref_seconds = 0.3;  // time budget per reference kernel
  bool no_fork = false;
  bool no_replay = false;   // skip the Gram replay and BLAS references (per-sample times only)
  bool no_scratch = false;  // fresh temporaries per sample (as before the engine's scratch pool)
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median wall time of f() over enough repetitions to fill `budget` seconds (after one warm-up).
template <typename F>
double time_median(F&& f, double budget, int min_reps = 5, int max_reps = 500) {
  f();
  auto t0 = Clock::now();
  f();
  const double once = seconds_since(t0);
  const int reps = std::clamp(static_cast<int>(budget / std::max(once, 1e-7)), min_reps, max_reps);
  std::vector<double> ts;
  ts.reserve(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    t0 = Clock::now();
    f();
    ts.push_back(seconds_since(t0));
  }
  std::nth_element(ts.begin(), ts.begin() + reps / 2, ts.end());
  return ts[static_cast<size_t>(reps / 2)];
}

double maxrss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux: KiB
}

double current_rss_mb() {
  std::ifstream f("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  f >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// Resets the peak-RSS high-water mark to the current RSS (Linux >= 4.0); false if unsupported.
bool reset_peak_rss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

// Other processes' CPU use while a section runs: system-wide busy time (/proc/stat) minus this
// process's own CPU time, in CPUs (0 = the machine was ours; 1 = another process kept a core busy).
struct CpuProbe {
  double busy = 0, steal = 0, self = 0;
  Clock::time_point wall;
  static CpuProbe now() {
    CpuProbe p;
    std::ifstream f("/proc/stat");
    std::string cpu;
    double v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    f >> cpu;
    for (double& x : v) f >> x;
    const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    p.busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz;  // user nice system irq softirq
    p.steal = v[7] / hz;
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    p.self = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    p.wall = Clock::now();
    return p;
  }
  json since(const CpuProbe& a) const {
    const double w = std::chrono::duration<double>(wall - a.wall).count();
    return {{"wall", w},
            {"self_cpus", (self - a.self) / w},
            {"other_cpus", std::max(0.0, (busy - a.busy) - (self - a.self)) / w},
            {"steal_cpus", (steal - a.steal) / w}};
  }
};

struct Stats {
  double mean = 0, sd = 0, min = 0, max = 0;
};
Stats stats_of(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  return s;
}
json to_json(const Stats& s) {
  return {{"mean", s.mean}, {"sd", s.sd}, {"min", s.min}, {"max", s.max}};
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The N inputs exactly as `twosed measure` picks them by default (same loader, same seeded subset).
torch::Tensor load_inputs(const Options& o, const twosed::ModelSpec& spec, std::string& description) {
  twosed::Dataset data;
  std::string source = o.data;
  if (source.empty())
    source = is_dir(twosed::kFashionMnistDir) && spec.num_inputs() == 784
                 ? std::string("idx:") + twosed::kFashionMnistDir
                 : fmt::format("synthetic:blobs:{}:{}", spec.num_outputs(), spec.num_inputs());
  const auto ds = twosed::parse_data_spec(source);
  if (ds.kind == twosed::DataSpec::Kind::Idx && ds.labels_path.empty() && is_dir(ds.path))
    data = twosed::load_idx_dir(ds.path);
  else
    data = twosed::load_dataset(ds, o.seed);
  if (data.num_features() != spec.num_inputs())
    throw std::runtime_error(
        fmt::format("data '{}' has {} features, model takes {}", source, data.num_features(), spec.num_inputs()));
  const int64_t available = data.size();
  auto sub = twosed::select_subset(data, o.inputs, o.seed);
  description = fmt::format("{} ({} of {} examples, seeded subset, seed {})", source, sub.size(), available, o.seed);
  std::vector<int64_t> shape{sub.size()};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  return torch::from_blob(sub.x.data(), shape, torch::kFloat64).clone();
}

// Machine-speed probe: best of 3 torch::mm of 1000 x 1000 float64 (2e9 flops), in GFLOP/s, at the
// job's thread count. This VM's speed drifts over time (shared host); the probe taken right
// before and after the timed samples shows how fast the machine was while they ran.
double dgemm_probe_gflops() {
  torch::NoGradGuard no_grad;
  auto a = torch::rand({1000, 1000}, torch::kFloat64), b = torch::rand({1000, 1000}, torch::kFloat64);
  auto c = torch::mm(a, b);
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    c = torch::mm(a, b);
    best = std::min(best, seconds_since(t0));
  }
  return 2e9 / best * 1e-9;
}

std::vector<double> kept(const twosed::FisherSpectrum& fs) {
  return fs.spectrum.eigenvalues;
}

// ---------------------------------------------------------------------------------------------
// Gram job: M timed parameter samples on the default side, then the Gram stage replayed and the
// BLAS references of the same shapes.
void apply_threads(int threads, const Options& o) {
  // The bench is a program of its own: its thread setting lasts until the next job's.
  static std::unique_ptr<twosed::ScopedThreads> scoped;
  scoped.reset();
  scoped = std::make_unique<twosed::ScopedThreads>(threads);
  if (o.torch_threads > 0) torch::set_num_threads(o.torch_threads);
  if (o.blas_threads > 0) openblas_set_num_threads(o.blas_threads);
}

json run_gram_job(const std::string& model, int threads, const Options& o) {
  using namespace twosed;
  apply_threads(threads, o);
  json r;
  r["kind"] = "gram";
  r["model"] = model;
  r["threads"] = threads;
  r["torch_threads"] = torch::get_num_threads();
  r["openblas_threads"] = openblas_get_num_threads();
  r["rss_start_mb"] = current_rss_mb();

  Network net(parse_model_spec(model));
  const int64_t d = net.num_params();
  std::string data_desc;
  auto t0 = Clock::now();
  torch::Tensor x = load_inputs(o, net.spec(), data_desc);  // the full data set is freed on return
  r["seconds_load_data"] = seconds_since(t0);
  r["data"] = data_desc;
  r["peak_rss_incl_load_mb"] = maxrss_mb();
  r["peak_rss_reset"] = reset_peak_rss();
  r["rss_base_mb"] = current_rss_mb();

  const int64_t n = x.size(0);
  FisherOptions fo;  // exact softmax Fisher, Auto side, as `twosed measure` by default
  const int64_t rows = n * rows_per_example(net.num_outputs(), fo);
  r["d"] = d;
  r["N"] = n;
  r["k"] = net.num_outputs();
  r["R"] = rows_per_example(net.num_outputs(), fo);

  auto space = ParameterSpace::parse("init", net);
  auto theta = torch::empty({d}, torch::kFloat64);
  std::vector<double> draw, fb, gram, eig, total;
  json per_sample = json::array();
  r["dgemm_gflops_before"] = dgemm_probe_gflops();
  const auto probe0 = CpuProbe::now();
  // As the engine's SampleWorker does: large temporaries reused from sample to sample.
  linalg::ScratchPool scratch;
  std::optional<linalg::ScratchScope> scope;
  if (!o.no_scratch) scope.emplace(scratch);
  for (int64_t j = 0; j < o.warmup + o.samples; ++j) {
    auto ts = Clock::now();
    space.sample(o.seed, j, theta.data_ptr<double>());
    const double t_draw = seconds_since(ts);
    auto tf = Clock::now();
    auto fs = fisher_spectrum(net, theta, x, fo, static_cast<uint64_t>(j));
    const double t_fs = seconds_since(tf);
    const bool timed = j >= o.warmup;
    const auto& ev = fs.spectrum.eigenvalues;
    const double ev_sum = std::accumulate(ev.begin(), ev.end(), 0.0);
    per_sample.push_back({{"j", j},
                          {"warmup", !timed},
                          {"draw", t_draw},
                          {"fisher_spectrum", t_fs},
                          {"forward_backward", fs.seconds_forward_backward},
                          {"gram", fs.seconds_gram},
                          {"eigen", fs.seconds_eigen},
                          {"kept", ev.size()},
                          {"cut", fs.spectrum.num_cut},
                          {"trace", fs.spectrum.trace},
                          {"largest", fs.largest},
                          {"kept_sum", ev_sum}});
    if (j == 0) {
      r["side"] = fs.side == GramSide::Samples ? "samples" : "parameters";
      r["matrix_size"] = fs.matrix_size;
    }
    if (j == 0 && !o.export_dir.empty() && model == o.export_model) {
      // Theta^(0), the inputs and twosed's kept eigenvalues for bench/numpy_kron_gram.py.
      std::filesystem::create_directories(o.export_dir);
      std::vector<double> th(theta.data_ptr<double>(), theta.data_ptr<double>() + d);
      auto xc = x.reshape({n, -1}).contiguous();
      std::vector<double> xs(xc.data_ptr<double>(), xc.data_ptr<double>() + xc.numel());
      write_npy(o.export_dir + "/theta.npy", {d}, th);
      write_npy(o.export_dir + "/inputs.npy", {n, xc.size(1)}, xs);
      write_npy(o.export_dir + "/twosed_eigs.npy", {static_cast<int64_t>(ev.size())}, ev);
      r["export"] = {{"dir", o.export_dir},
                     {"kept", ev.size()},
                     {"sum", ev_sum},
                     {"max", ev.empty() ? 0.0 : ev.back()},
                     {"trace", fs.spectrum.trace}};
    }
    if (!timed) continue;
    draw.push_back(t_draw);
    fb.push_back(fs.seconds_forward_backward);
    gram.push_back(fs.seconds_gram);
    eig.push_back(fs.seconds_eigen);
    total.push_back(t_draw + t_fs);
  }
  r["cpu_during_samples"] = CpuProbe::now().since(probe0);
  r["dgemm_gflops_after"] = dgemm_probe_gflops();
  r["per_sample"] = per_sample;
  r["stats"] = {{"draw", to_json(stats_of(draw))},
                {"forward_backward", to_json(stats_of(fb))},
                {"gram", to_json(stats_of(gram))},
                {"eigen", to_json(stats_of(eig))},
                {"total", to_json(stats_of(total))}};
  r["peak_rss_mb"] = maxrss_mb();
  r["rss_after_mb"] = current_rss_mb();

  if (r["side"] != "samples" || o.no_replay) return r;  // d < N(k-1): the d x d path is the default; no Gram to replay

  // ---- Replay of the last sample's passes and Gram stage, piece by piece (median times) ----
  torch::NoGradGuard no_grad;
  const double budget = o.ref_seconds;
  json bd;
  std::vector<torch::Tensor> acts;
  bd["forward_all"] = time_median([&] { acts = net.forward_all(theta, x); }, budget);
  torch::Tensor g0;
  bd["output_covectors"] = time_median([&] { g0 = output_covectors(acts.back(), fo, 0); }, budget);
  bd["backward_rows"] = time_median(
      [&] {
        net.backward(theta, acts, g0, [](const layers::Layer&, int64_t, const torch::Tensor&, const torch::Tensor&) {});
      },
      budget);
  bd["gram_zeros"] = time_median([&] { auto z = torch::zeros({rows, rows}, torch::kFloat64); }, budget);
  struct Captured {
    const layers::Layer* layer;
    torch::Tensor in, g;
  };
  std::vector<Captured> cap;
  net.backward(theta, acts, g0, [&](const layers::Layer& l, int64_t, const torch::Tensor& in, const torch::Tensor& g) {
    cap.push_back({&l, in, g});
  });
  auto acc = torch::zeros({rows, rows}, torch::kFloat64);
  bd["symmetrize_and_scale"] =
      time_median([&] { auto s = linalg::symmetrize_from_lower(acc).div_(static_cast<double>(n)); }, budget);

  json layer_rows = json::array();
  double flops_gram = 0, flops_gemm = 0, flops_syrk = 0, t_gemm = 0, t_syrk = 0, t_add_gram = 0;
  for (const auto& c : cap) {
    const auto& ls = c.layer->spec();
    const int64_t in_f = ls.fan_in(), out = ls.out, m = rows;
    auto a = c.in.reshape({n, in_f}).contiguous();
    auto b = c.g.reshape({m, out}).contiguous();
    json L;
    L["token"] = ls.token;
    L["in"] = in_f;
    L["out"] = out;
    L["m"] = m;
    L["add_gram"] = time_median([&] { c.layer->add_gram(c.in, c.g, acc, fo.memory_budget); }, budget);
    // The pieces of Linear::add_gram.
    torch::Tensor aa, bb = torch::zeros({m, m}, torch::kFloat64);
    L["mm_AAt"] = time_median(
        [&] {
          aa = torch::mm(a, a.t());
          aa.add_(1.0);
        },
        budget);
    L["zeros_mm"] = time_median([&] { auto z = torch::zeros({m, m}, torch::kFloat64); }, budget);
    L["syrk_lower_B"] = time_median([&] { linalg::syrk_lower(b, bb); }, budget);
    L["addcmul"] = time_median(
        [&] {
          acc.view({n, m / n, n, m / n}).addcmul_(bb.view({n, m / n, n, m / n}), aa.view({n, 1, n, 1}));
        },
        budget);
    // Diagnostic: the same product with the rows ordered class-major ((c, i) instead of (i, c)),
    // so that the broadcast factor's contiguous inner dimension is N instead of R.
    L["addcmul_class_major"] = time_median(
        [&] {
          acc.view({m / n, n, m / n, n}).addcmul_(bb.view({m / n, n, m / n, n}), aa.view({1, n, 1, n}));
        },
        budget);
    // References of the same shapes: a plain GEMM B B^T (torch::mm) and cblas_dsyrk.
    auto cm = torch::zeros({m, m}, torch::kFloat64);
    auto ca = torch::zeros({n, n}, torch::kFloat64);
    torch::Tensor gm;
    L["ref_mm_BBt"] = time_median([&] { gm = torch::mm(b, b.t()); }, budget);
    L["ref_dsyrk_B"] = time_median(
        [&] {
          cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, static_cast<int>(m), static_cast<int>(out), 1.0,
                      b.data_ptr<double>(), static_cast<int>(out), 0.0, cm.data_ptr<double>(), static_cast<int>(m));
        },
        budget);
    L["ref_mm_AAt"] = time_median([&] { gm = torch::mm(a, a.t()); }, budget);
    L["ref_dsyrk_A"] = time_median(
        [&] {
          cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, static_cast<int>(n), static_cast<int>(in_f), 1.0,
                      a.data_ptr<double>(), static_cast<int>(in_f), 0.0, ca.data_ptr<double>(), static_cast<int>(n));
        },
        budget);
    // Flops. Gram stage as computed: dsyrk m*m*out (syrk convention: the lower triangle is half
    // of gemm's 2*m*m*out), torch::mm A A^T 2*N*N*in (gemm convention: it computes both halves),
    // addcmul 2*m*m. References: gemm 2*m*m*out + 2*N*N*in; syrk m*m*out + N*N*in.
    const double md = static_cast<double>(m), nd = static_cast<double>(n);
    L["flops_gram"] = md * md * out + 2 * nd * nd * in_f + 2 * md * md;
    L["flops_gemm"] = 2 * md * md * out + 2 * nd * nd * in_f;
    L["flops_syrk"] = md * md * out + nd * nd * in_f;
    L["ref_gflops_mm_BBt"] = 2 * md * md * out / L["ref_mm_BBt"].get<double>() * 1e-9;
    L["ref_gflops_dsyrk_B"] = md * md * out / L["ref_dsyrk_B"].get<double>() * 1e-9;
    flops_gram += L["flops_gram"].get<double>();
    flops_gemm += L["flops_gemm"].get<double>();
    flops_syrk += L["flops_syrk"].get<double>();
    t_gemm += L["ref_mm_BBt"].get<double>() + L["ref_mm_AAt"].get<double>();
    t_syrk += L["ref_dsyrk_B"].get<double>() + L["ref_dsyrk_A"].get<double>();
    t_add_gram += L["add_gram"].get<double>();
    layer_rows.push_back(L);
  }
  r["layers"] = layer_rows;
  r["breakdown"] = bd;
  const double t_gram = stats_of(gram).mean;
  const double t_replay = t_add_gram + bd["symmetrize_and_scale"].get<double>();
  r["gram_vs_blas"] = {{"flops_gram", flops_gram},
                       {"flops_gemm", flops_gemm},
                       {"flops_syrk", flops_syrk},
                       {"t_gram_mean", t_gram},
                       {"t_gram_replay", t_replay},
                       {"t_gemm_ref", t_gemm},
                       {"t_syrk_ref", t_syrk},
                       {"gflops_gram", flops_gram / t_gram * 1e-9},
                       {"gflops_gemm_ref", flops_gemm / t_gemm * 1e-9},
                       {"gflops_syrk_ref", flops_syrk / t_syrk * 1e-9},
                       {"ratio_gram_to_gemm", t_gram / t_gemm},
                       {"ratio_gram_to_syrk", t_gram / t_syrk}};
  // Eigen stage alone on a Gram of this size (median), for the breakdown.
  auto kmat = gram_matrix(net, theta, x, fo, 0);
  torch::Tensor ev_torch;
  r["breakdown"]["eigvalsh"] = time_median([&] { ev_torch = torch::linalg_eigvalsh(kmat); }, budget, 3, 50);
  // The same eigenvalues through LAPACK directly: dsyevd (what eigvalsh calls) and the two-stage
  // tridiagonal reduction dsyevd_2stage (LAPACK >= 3.7, eigenvalues only).
  {
    const int nk = static_cast<int>(kmat.size(0));
    auto lapack = [&](bool two_stage, double& seconds) {
      auto work_a = torch::empty_like(kmat);
      auto w = torch::empty({nk}, torch::kFloat64);
      int info = 0, lwork = -1, liwork = -1, iq = 0;
      double wq = 0;
      auto call = [&](double* work, int* iwork) {
        if (two_stage)
          dsyevd_2stage_("N", "L", &nk, work_a.data_ptr<double>(), &nk, w.data_ptr<double>(), work, &lwork, iwork,
                         &liwork, &info, 1, 1);
        else
          dsyevd_("N", "L", &nk, work_a.data_ptr<double>(), &nk, w.data_ptr<double>(), work, &lwork, iwork, &liwork,
                  &info, 1, 1);
      };
      call(&wq, &iq);
      lwork = static_cast<int>(wq);
      liwork = std::max(iq, 1);
      std::vector<double> work(static_cast<size_t>(std::max(lwork, 1)));
      std::vector<int> iwork(static_cast<size_t>(liwork));
      seconds = time_median(
          [&] {
            work_a.copy_(kmat);
            call(work.data(), iwork.data());
          },
          budget, 3, 50);
      const double diff = (w - ev_torch).abs().max().item<double>() / ev_torch.max().item<double>();
      return json{{"seconds", seconds}, {"info", info}, {"max_abs_diff_over_max_vs_eigvalsh", diff}};
    };
    double t1 = 0, t2 = 0;
    r["breakdown"]["lapack_dsyevd"] = lapack(false, t1);
    r["breakdown"]["lapack_dsyevd_2stage"] = lapack(true, t2);
  }
  // The stage limits of issue "Throughput": the forward's FLOPs at the dgemm probe's rate, every
  // backprop row written once at the rate fill_ writes memory here, cblas_dsyrk of the Gram's
  // shapes (t_syrk above), the faster of the two eigen routines.
  {
    double fwd_flops = 0, row_bytes = 0;
    int64_t widest = 0;
    for (size_t i = 0; i < cap.size(); ++i) {
      const auto& ls = cap[i].layer->spec();
      fwd_flops += 2.0 * static_cast<double>(n) * static_cast<double>(ls.fan_in()) * static_cast<double>(ls.out);
      if (i + 1 < cap.size()) {  // the last captured layer is the first one: no rows below it
        row_bytes += 8.0 * static_cast<double>(rows) * static_cast<double>(ls.fan_in());
        widest = std::max(widest, ls.fan_in());
      }
    }
    double fill_rate = 0;
    if (widest > 0) {
      auto buf = torch::zeros({rows, widest}, torch::kFloat64);
      fill_rate = 8.0 * static_cast<double>(buf.numel()) / time_median([&] { buf.fill_(1.0); }, budget);
    }
    const double rate = std::max(r["dgemm_gflops_before"].get<double>(), r["dgemm_gflops_after"].get<double>()) * 1e9;
    const double eig = std::min(r["breakdown"]["lapack_dsyevd"]["seconds"].get<double>(),
                                r["breakdown"]["lapack_dsyevd_2stage"]["seconds"].get<double>());
    json lim{{"forward", fwd_flops / rate},
             {"rows", fill_rate > 0 ? row_bytes / fill_rate : 0.0},
             {"gram", t_syrk},
             {"eigen", eig},
             {"fill_gb_per_s", fill_rate * 1e-9}};
    lim["sum"] = lim["forward"].get<double>() + lim["rows"].get<double>() + t_syrk + eig;
    r["limits"] = lim;
  }
  r["peak_rss_after_replay_mb"] = maxrss_mb();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Dense job: the d x d path (GramSide::Parameters) next to the Gram path at the same theta.
json run_dense_job(const std::string& model, int threads, const Options& o) {
  using namespace twosed;
  apply_threads(threads, o);
  json r;
  r["kind"] = "dense";
  r["model"] = model;
  r["threads"] = threads;
  Network net(parse_model_spec(model));
  const int64_t d = net.num_params();
  std::string data_desc;
  torch::Tensor x = load_inputs(o, net.spec(), data_desc);
  r["data"] = data_desc;
  r["d"] = d;
  r["N"] = x.size(0);
  r["peak_rss_reset"] = reset_peak_rss();
  r["rss_base_mb"] = current_rss_mb();
  auto space = ParameterSpace::parse("init", net);
  auto theta = torch::empty({d}, torch::kFloat64);
  json samples = json::array();
  std::vector<double> build, eigen, total, gram_total;
  const auto probe0 = CpuProbe::now();
  double worst_sum = 0, worst_max = 0, worst_abs = 0;
  for (int64_t j = 0; j < o.dense_samples; ++j) {
    space.sample(o.seed, j, theta.data_ptr<double>());
    FisherOptions gs, ps;
    gs.side = GramSide::Samples;
    ps.side = GramSide::Parameters;
    auto tg = Clock::now();
    auto fg = fisher_spectrum(net, theta, x, gs, static_cast<uint64_t>(j));
    const double t_g = seconds_since(tg);
    const double rss_before_dense = maxrss_mb();
    auto tp = Clock::now();
    auto fp = fisher_spectrum(net, theta, x, ps, static_cast<uint64_t>(j));
    const double t_p = seconds_since(tp);
    const auto eg = kept(fg), ep = kept(fp);
    const double sg = std::accumulate(eg.begin(), eg.end(), 0.0), sp = std::accumulate(ep.begin(), ep.end(), 0.0);
    const double mg = eg.empty() ? 0 : eg.back(), mp = ep.empty() ? 0 : ep.back();
    const double rel_sum = std::abs(sg - sp) / std::abs(sp), rel_max = std::abs(mg - mp) / std::abs(mp);
    double max_abs = -1;  // max |lambda_dense - lambda_gram| / lambda_max over the kept, sorted eigenvalues
    if (eg.size() == ep.size() && !ep.empty()) {
      max_abs = 0;
      for (size_t i = 0; i < ep.size(); ++i) max_abs = std::max(max_abs, std::abs(eg[i] - ep[i]) / mp);
    }
    worst_sum = std::max(worst_sum, rel_sum);
    worst_abs = max_abs < 0 ? std::numeric_limits<double>::infinity() : std::max(worst_abs, max_abs);
    worst_max = std::max(worst_max, rel_max);
    samples.push_back({{"j", j},
                       {"dense_total", t_p},
                       {"dense_build", fp.seconds_gram},
                       {"dense_eigen", fp.seconds_eigen},
                       {"dense_matrix", fp.matrix_size},
                       {"dense_kept", ep.size()},
                       {"gram_total", t_g},
                       {"gram_matrix", fg.matrix_size},
                       {"gram_kept", eg.size()},
                       {"gram_sum", sg},
                       {"dense_sum", sp},
                       {"gram_max", mg},
                       {"dense_max", mp},
                       {"max_abs_diff_over_max", max_abs},
                       {"rel_diff_sum", rel_sum},
                       {"rel_diff_max", rel_max},
                       {"peak_rss_before_dense_mb", rss_before_dense}});
    build.push_back(fp.seconds_gram);
    eigen.push_back(fp.seconds_eigen);
    total.push_back(t_p);
    gram_total.push_back(t_g);
  }
  r["samples"] = samples;
  r["stats"] = {{"dense_build", to_json(stats_of(build))},
                {"dense_eigen", to_json(stats_of(eigen))},
                {"dense_total", to_json(stats_of(total))},
                {"gram_total", to_json(stats_of(gram_total))}};
  r["cpu_during_samples"] = CpuProbe::now().since(probe0);
  r["worst_rel_diff_sum"] = worst_sum;
  r["worst_rel_diff_max"] = worst_max;
  r["worst_max_abs_diff_over_max"] = worst_abs;  // inf: kept counts differed
  r["peak_rss_mb"] = maxrss_mb();
  return r;
}

// Runs job() in a forked child (own peak RSS) and returns its JSON; in-process with --no-fork.
template <typename F>
json run_isolated(const Options& o, const std::string& model, F&& job) {
  if (o.no_fork) {
    try {
      return job();
    } catch (const std::exception& e) {
      return json{{"model", model}, {"error", e.what()}};
    }
  }
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    close(fds[0]);
    int rc = 0;
    std::string out;
    try {
      out = job().dump();
    } catch (const std::exception& e) {
      out = json{{"model", model}, {"error", e.what()}}.dump();
      rc = 1;
    }
    size_t off = 0;
    while (off < out.size()) {
      const ssize_t w = write(fds[1], out.data() + off, out.size() - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    close(fds[1]);
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(rc);
  }
  close(fds[1]);
  std::string text;
  char buf[65536];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (text.empty())
    return json{{"model", model},
                {"error", fmt::format("child exited with status {} and no result",
                                      WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status))}};
  return json::parse(text);
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "?";
}

std::string ms(double s) {
  return fmt::format("{:.1f}", s * 1e3);
}
std::string pm(const json& st) {
  return fmt::format("{:.1f} ± {:.1f}", st["mean"].get<double>() * 1e3, st["sd"].get<double>() * 1e3);
}

void print_replay_tables(const json& jobs);
void print_dense_and_export(const json& jobs);

void print_tables(const json& machine, const json& jobs, const Options& o) {
  fmt::print("\nmachine: {} | {} logical CPUs | OpenBLAS core '{}' ({}) | OPENBLAS_CORETYPE='{}'\n",
             machine["cpu"].get<std::string>(), machine["cpus"].get<int>(), machine["openblas_core"].get<std::string>(),
             machine["openblas_config"].get<std::string>(), machine["openblas_coretype_env"].get<std::string>());
  fmt::print("N = {} inputs, exact softmax Fisher (R = k-1 rows), {} timed samples after {} warm-up; times in ms\n",
             o.inputs, o.samples, o.warmup);

  fmt::print("\n== Per parameter sample (mean ± sd over the timed samples; fisher_spectrum stages) ==\n");
  fmt::print(
      "total = draw theta + fisher_spectrum; peak MB = ru_maxrss after the data set was dropped, incl. load = whole\n"
      "process; other CPUs = other processes' CPU use during the timed samples (0 = quiet machine);\n"
      "dgemm GF/s = speed probe (torch::mm 1000^3, same threads) just before/after the timed samples\n");
  fmt::print("{:<22} {:>9} {:>3} {:>11} {:>7} {:>15} {:>15} {:>15} {:>15} {:>8} {:>9} {:>11} {:>10} {:>11}\n", "model",
             "d", "T", "side", "draw", "fwd/bwd", "Gram", "eigen", "total", "min", "peak MB", "incl. load",
             "other CPUs", "dgemm GF/s");
  for (const auto& j : jobs) {
    if (j.contains("error")) {
      fmt::print("{:<22} ERROR {}\n", j.value("model", "?"), j["error"].get<std::string>());
      continue;
    }
    if (j["kind"] != "gram") continue;
    const auto& s = j["stats"];
    fmt::print(
        "{:<22} {:>9} {:>3} {:>6} {:>4} {:>7} {:>15} {:>15} {:>15} {:>15} {:>8} {:>9.0f} {:>11.0f} {:>10.2f} "
        "{:>5.1f}/{:<5.1f}\n",
        j["model"].get<std::string>(), j["d"].get<int64_t>(), j["threads"].get<int>(), j["side"].get<std::string>(),
        j["matrix_size"].get<int64_t>(), ms(s["draw"]["mean"].get<double>()), pm(s["forward_backward"]), pm(s["gram"]),
        pm(s["eigen"]), pm(s["total"]), ms(s["total"]["min"].get<double>()), j["peak_rss_mb"].get<double>(),
        j["peak_rss_incl_load_mb"].get<double>(), j["cpu_during_samples"]["other_cpus"].get<double>(),
        j["dgemm_gflops_before"].get<double>(), j["dgemm_gflops_after"].get<double>());
  }

  bool any_replay = false;
  for (const auto& j : jobs)
    if (!j.contains("error") && j["kind"] == "gram" && j.contains("gram_vs_blas")) any_replay = true;
  if (any_replay) print_replay_tables(jobs);
  print_dense_and_export(jobs);
}

void print_replay_tables(const json& jobs) {
  fmt::print("\n== Gram stage vs plain BLAS products of the same shapes (same process, same threads) ==\n");
  fmt::print(
      "flops: Gram = sum_l m*m*out (dsyrk, syrk convention) + 2*N*N*in (torch::mm A A^T) + 2*m*m (addcmul);\n"
      "       gemm ref = sum_l torch::mm(B,B^T) 2*m*m*out + torch::mm(A,A^T) 2*N*N*in;  syrk ref = cblas_dsyrk of B "
      "and A, m*m*out + N*N*in\n");
  fmt::print("{:<22} {:>3} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9}\n", "model", "T", "GFLOP",
             "Gram ms", "GFLOP/s", "gemm ms", "GFLOP/s", "Gram/gemm", "syrk ms", "GFLOP/s", "Gram/syrk", "replay ms");
  for (const auto& j : jobs) {
    if (j.contains("error") || j["kind"] != "gram" || !j.contains("gram_vs_blas")) continue;
    const auto& g = j["gram_vs_blas"];
    fmt::print("{:<22} {:>3} {:>8.3f} {:>9} {:>8.1f} {:>9} {:>9.1f} {:>8.2f}x {:>9} {:>9.1f} {:>8.2f}x {:>9}\n",
               j["model"].get<std::string>(), j["threads"].get<int>(), g["flops_gram"].get<double>() * 1e-9,
               ms(g["t_gram_mean"].get<double>()), g["gflops_gram"].get<double>(), ms(g["t_gemm_ref"].get<double>()),
               g["gflops_gemm_ref"].get<double>(), g["ratio_gram_to_gemm"].get<double>(),
               ms(g["t_syrk_ref"].get<double>()), g["gflops_syrk_ref"].get<double>(),
               g["ratio_gram_to_syrk"].get<double>(), ms(g["t_gram_replay"].get<double>()));
  }

  fmt::print("\n== Where the time goes (medians of replayed pieces, ms) ==\n");
  fmt::print("{:<22} {:>3} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}\n", "model", "T", "forward", "covect",
             "bwd rows", "zeros K", "symmetr.", "eigvalsh", "dsyevd", "dsyevd2st");
  for (const auto& j : jobs) {
    if (j.contains("error") || j["kind"] != "gram" || !j.contains("breakdown")) continue;
    const auto& b = j["breakdown"];
    fmt::print("{:<22} {:>3} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}\n", j["model"].get<std::string>(),
               j["threads"].get<int>(), ms(b["forward_all"].get<double>()), ms(b["output_covectors"].get<double>()),
               ms(b["backward_rows"].get<double>()), ms(b["gram_zeros"].get<double>()),
               ms(b["symmetrize_and_scale"].get<double>()), ms(b["eigvalsh"].get<double>()),
               ms(b["lapack_dsyevd"]["seconds"].get<double>()), ms(b["lapack_dsyevd_2stage"]["seconds"].get<double>()));
  }
  fmt::print(
      "\n== Per sample against the sum of its stages' limits (ms): forward FLOPs at the dgemm probe's rate, backprop "
      "rows written once at fill_'s rate, dsyrk of the Gram's shapes, the faster eigen routine; spectrum = "
      "fisher_spectrum (total - draw) ==\n");
  fmt::print("{:<22} {:>3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>12} {:>8}\n", "model", "T", "fwd", "rows",
             "Gram", "eigen", "sum", "spectrum", "min", "draw", "mean/min:sum", "fill GB/s");
  for (const auto& j : jobs) {
    if (j.contains("error") || j["kind"] != "gram" || !j.contains("limits")) continue;
    const auto& L = j["limits"];
    const auto& s = j["stats"];
    const double draw = s["draw"]["mean"].get<double>(), sum = L["sum"].get<double>();
    const double mean = s["total"]["mean"].get<double>() - draw, lo = s["total"]["min"].get<double>() - draw;
    fmt::print("{:<22} {:>3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>12} {:>8.1f}\n",
               j["model"].get<std::string>(), j["threads"].get<int>(), ms(L["forward"].get<double>()),
               ms(L["rows"].get<double>()), ms(L["gram"].get<double>()), ms(L["eigen"].get<double>()), ms(sum),
               ms(mean), ms(lo), ms(draw), fmt::format("{:.2f}/{:.2f}", mean / sum, lo / sum),
               L["fill_gb_per_s"].get<double>());
  }
  fmt::print("\nper Linear layer (B is m x out, A is N x in):\n");
  fmt::print("{:<22} {:>3} {:>6} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "model",
             "T", "layer", "m x out", "add_gram", "syrk(B)", "zeros", "addcmul", "(c-maj)", "AA^T+1", "ref dsyrk",
             "GFLOP/s", "ref mm", "GFLOP/s", "mm(AA^T)");
  for (const auto& j : jobs) {
    if (j.contains("error") || j["kind"] != "gram" || !j.contains("layers")) continue;
    for (const auto& L : j["layers"])
      fmt::print("{:<22} {:>3} {:>6} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9.1f} {:>9} {:>9.1f} {:>9}\n",
                 j["model"].get<std::string>(), j["threads"].get<int>(), L["token"].get<std::string>(),
                 fmt::format("{}x{}", L["m"].get<int64_t>(), L["out"].get<int64_t>()), ms(L["add_gram"].get<double>()),
                 ms(L["syrk_lower_B"].get<double>()), ms(L["zeros_mm"].get<double>()), ms(L["addcmul"].get<double>()),
                 ms(L["addcmul_class_major"].get<double>()), ms(L["mm_AAt"].get<double>()),
                 ms(L["ref_dsyrk_B"].get<double>()), L["ref_gflops_dsyrk_B"].get<double>(),
                 ms(L["ref_mm_BBt"].get<double>()), L["ref_gflops_mm_BBt"].get<double>(),
                 ms(L["ref_mm_AAt"].get<double>()));
  }
}

void print_dense_and_export(const json& jobs) {
  bool any_dense = false;
  for (const auto& j : jobs)
    if (!j.contains("error") && j["kind"] == "dense") any_dense = true;
  if (any_dense) {
    fmt::print(
        "\n== Dense d x d path (GramSide::Parameters: parameter_fisher + spectrum_of) vs Gram side, same theta ==\n");
    fmt::print("{:<22} {:>7} {:>3} {:>3} {:>11} {:>11} {:>11} {:>10} {:>11} {:>12} {:>9} {:>10}\n", "model", "d", "T",
               "M", "build s", "eigen s", "dense s", "Gram s", "rel d(sum)", "max|dl|/lmax", "peak MB", "other CPUs");
    for (const auto& j : jobs) {
      if (j.contains("error") || j["kind"] != "dense") continue;
      const auto& s = j["stats"];
      fmt::print(
          "{:<22} {:>7} {:>3} {:>3} {:>11.3f} {:>11.3f} {:>11.3f} {:>10.4f} {:>11.2e} {:>12.2e} {:>9.0f} {:>10.2f}\n",
          j["model"].get<std::string>(), j["d"].get<int64_t>(), j["threads"].get<int>(), j["samples"].size(),
          s["dense_build"]["mean"].get<double>(), s["dense_eigen"]["mean"].get<double>(),
          s["dense_total"]["mean"].get<double>(), s["gram_total"]["mean"].get<double>(),
          j["worst_rel_diff_sum"].get<double>(), j["worst_max_abs_diff_over_max"].get<double>(),
          j["peak_rss_mb"].get<double>(), j["cpu_during_samples"]["other_cpus"].get<double>());
    }
  }
  for (const auto& j : jobs)
    if (!j.contains("error") && j.contains("export")) {
      const auto& e = j["export"];
      fmt::print(
          "\nexported theta^(0), inputs and twosed's eigenvalues of {} to {}: kept {}, sum {:.17g}, max {:.17g}\n",
          j["model"].get<std::string>(), e["dir"].get<std::string>(), e["kept"].get<int64_t>(), e["sum"].get<double>(),
          e["max"].get<double>());
    }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"bench_fisher: per-parameter-sample cost of exact Fisher spectra (twosed)"};
  app.add_option("--models", o.models, "Model specs (comma-separated or repeated)")->delimiter(',');
  app.add_option("--samples", o.samples, "Timed parameter samples per model (after the warm-up)")
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "Warm-up samples, not timed")->capture_default_str();
  app.add_flag("--dense", o.dense, "Also run the dense d x d path (GramSide::Parameters) on --dense-models");
  app.add_option("--dense-models", o.dense_models, "Models for --dense")->delimiter(',')->capture_default_str();
  app.add_option("--dense-samples", o.dense_samples, "Parameter samples for --dense")->capture_default_str();
  app.add_option("--threads", o.threads, "Thread counts (LibTorch and OpenBLAS), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--torch-threads", o.torch_threads, "Diagnostic: LibTorch intra-op threads instead of --threads");
  app.add_option("--blas-threads", o.blas_threads, "Diagnostic: OpenBLAS threads instead of --threads");
  app.add_option("--inputs", o.inputs, "N: inputs")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed for theta draws and the input subset")->capture_default_str();
  app.add_option("--data", o.data, "Data source (default: Fashion-MNIST if installed, else blobs)");
  app.add_option("--json", o.json_path, "Also write every number as JSON to this file ('-': stdout)");
  app.add_option("--export-dir", o.export_dir, "Write theta^(0), inputs and eigenvalues .npy of --export-model here");
  app.add_option("--export-model", o.export_model, "Model whose sample 0 --export-dir writes")->capture_default_str();
  app.add_option("--ref-seconds", o.ref_seconds, "Time budget per replayed piece / reference kernel")
      ->capture_default_str();
  app.add_flag("--no-scratch", o.no_scratch, "Fresh temporaries per sample (no scratch pool, as before it)");
  app.add_flag("--no-replay", o.no_replay, "Per-sample times only: skip the Gram replay and the BLAS references");
  app.add_flag("--no-fork", o.no_fork, "Run every job in this process (peak memory is then cumulative)");
  CLI11_PARSE(app, argc, argv);
  auto drop_empty = [](std::vector<std::string>& v) {
    v.erase(std::remove(v.begin(), v.end(), std::string()), v.end());
  };
  drop_empty(o.models);
  drop_empty(o.dense_models);
  if (o.samples < 1 || o.warmup < 0 || o.threads.empty()) {
    std::cerr << "bench_fisher: --samples >= 1, --warmup >= 0, --threads non-empty\n";
    return 2;
  }

  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  json machine = {{"cpu", cpu_model()},
                  {"cpus", static_cast<int>(std::thread::hardware_concurrency())},
                  {"openblas_core", openblas_get_corename()},
                  {"openblas_config", openblas_get_config()},
                  {"openblas_coretype_env", coretype ? coretype : ""}};

  json jobs = json::array();
  for (size_t ti = 0; ti < o.threads.size(); ++ti) {
    const int t = o.threads[ti];
    Options ot = o;
    if (ti > 0) ot.export_dir.clear();  // export once
    for (const auto& m : o.models) {
      std::fprintf(stderr, "bench_fisher: %s, %d thread(s)...\n", m.c_str(), t);
      jobs.push_back(run_isolated(o, m, [&] { return run_gram_job(m, t, ot); }));
    }
    if (o.dense)
      for (const auto& m : o.dense_models) {
        std::fprintf(stderr, "bench_fisher: dense %s, %d thread(s)...\n", m.c_str(), t);
        jobs.push_back(run_isolated(o, m, [&] { return run_dense_job(m, t, o); }));
      }
  }
  print_tables(machine, jobs, o);
  int rc = 0;
  for (const auto& j : jobs)
    if (j.contains("error")) rc = 1;
  if (!o.json_path.empty()) {
    json all = {{"machine", machine},
                {"options",
                 {{"models", o.models},
                  {"torch_threads", o.torch_threads},
                  {"blas_threads", o.blas_threads},
                  {"samples", o.samples},
                  {"warmup", o.warmup},
                  {"inputs", o.inputs},
                  {"seed", o.seed},
                  {"threads", o.threads},
                  {"dense", o.dense},
                  {"dense_models", o.dense_models}}},
                {"jobs", jobs}};
    if (o.json_path == "-")
      std::cout << all.dump(2) << "\n";
    else
      std::ofstream(o.json_path) << all.dump(2) << "\n";
  }
  return rc;
}
