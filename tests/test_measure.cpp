// End-to-end measurements against closed forms and the reproducibility invariants
// (docs/math.md section 8: invariants 1, 3 and 5).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <cmath>
#include <fstream>
#include <string>

#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/measure/measure.h"

using namespace twosed;

namespace {

// Closed forms are evaluated in float64 through a different route (eigen-decomposition of S);
// agreement is limited by the eigen-solvers, ~1e-13 relative.
constexpr double kClosedFormTolerance = 1e-10;
// Invariant 5: other thread counts change summation order only.
constexpr double kThreadTolerance = 1e-9;

std::string write_inputs(const torch::Tensor& x, const std::string& name) {
  const auto path = ::testing::TempDir() + name;
  auto c = x.contiguous();
  write_npy(path, c.sizes().vec(), std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel()));
  return path;
}

}  // namespace

// Invariant 1: y = theta^T x + N(0, s^2), no bias. F = S/s^2 for every theta, so
// d_zeta(eps) = zeta*d + sum_i log(1 + a*sqrt(d*s_i/sum(s))) / |log eps| exactly, for any M.
TEST(MeasureTest, LinearGaussianClosedForm) {
  const int64_t dim = 4, n = 30;
  torch::manual_seed(1);
  // Anisotropic inputs so that the eigenvalues differ.
  auto x = torch::randn({n, dim}, torch::kFloat64) * torch::tensor({3.0, 1.0, 0.5, 0.1}, torch::kFloat64);
  const auto s = torch::linalg_eigvalsh(torch::mm(x.t(), x) / static_cast<double>(n));
  const double sum_s = s.sum().item<double>();

  for (Cover cover : {Cover::Box, Cover::Ellipsoid}) {
    MeasureOptions o;
    o.model = "mlp:4-1";
    o.model_options.bias = false;
    o.fisher.task = Task::Regress;
    o.fisher.out_noise = 0.5;
    o.inputs_file = write_inputs(x, "lin_gauss.npy");
    o.num_param_samples = 3;
    o.space = "box:2";
    o.estimator.eps = {1e-6, 1e-3, 0.05};
    o.estimator.zetas = {0.0, 0.3, 0.9};
    o.estimator.cover = cover;
    o.estimator.bootstrap = 50;
    const auto r = run_measure(o);
    ASSERT_EQ(r.estimate.num_params, dim);
    for (const auto& curve : r.estimate.curves) {
      for (size_t e = 0; e < curve.eps.size(); ++e) {
        const double eps = curve.eps[e], a = std::pow(eps, curve.zeta - 1);
        double expected = curve.zeta * dim;
        for (int64_t i = 0; i < dim; ++i) {
          const double lam = dim * s[i].item<double>() / sum_s;
          expected += (cover == Cover::Box ? std::log1p(a * std::sqrt(lam)) : 0.5 * std::log1p(a * a * lam)) /
                      std::abs(std::log(eps));
        }
        EXPECT_NEAR(curve.value[e], expected, kClosedFormTolerance * expected)
            << "zeta " << curve.zeta << " eps " << eps;
        EXPECT_LT(curve.std_error[e], 1e-9);  // F is the same at every theta
      }
    }
  }
}

// Invariant 3: the ellipsoid form at zeta = 0 and eps_0(n) is the Abbas et al. ED(n).
TEST(MeasureTest, EllipsoidAtZetaZeroIsAbbasEffectiveDimension) {
  MeasureOptions o;
  o.model = "mlp:8-6-3";
  o.model_options.activation = Activation::Tanh;
  o.data = "synthetic:blobs:3:8:200";
  o.num_inputs = 20;
  o.num_param_samples = 5;
  o.estimator.zetas = {0.0};
  o.estimator.cover = Cover::Ellipsoid;
  o.estimator.ed_n = {1e3, 1e5};
  o.estimator.at_n = {1e3, 1e5};
  o.estimator.bootstrap = 100;
  const auto r = run_measure(o);
  ASSERT_EQ(r.estimate.ed.size(), 2u);
  ASSERT_EQ(r.estimate.at_n.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(r.estimate.ed[i].value, r.estimate.at_n[i].value, 1e-10 * r.estimate.ed[i].value);
    EXPECT_NEAR(r.estimate.ed[i].eps, r.estimate.at_n[i].eps, 1e-15);
  }
}

// Invariant 5: same seed and threads -> bit-identical; other thread counts -> 1e-9 relative.
TEST(MeasureTest, ReproducibleAcrossRunsAndThreadCounts) {
  MeasureOptions o;
  o.model = "cnn:1x8x8-c4k3-relu-p2-f3";
  o.data = "synthetic:blobs:3:64:300";
  o.num_inputs = 30;
  o.num_param_samples = 4;
  o.estimator.zetas = {0.0, 0.5};
  o.estimator.bootstrap = 200;
  o.seed = 42;
  o.parallel_samples = 1;  // all threads on each sample: the thread count reaches the BLAS calls
  const int saved = current_threads();
  ExecutionContext two, one;
  two.threads = 2;
  one.threads = 1;
  const auto a = run_measure(o, two);
  const auto b = run_measure(o, two);
  const auto c = run_measure(o, one);
  // A call's thread setting is scoped: the process's is as it was.
  EXPECT_EQ(current_threads(), saved);
  for (size_t z = 0; z < a.estimate.curves.size(); ++z) {
    EXPECT_EQ(a.estimate.curves[z].value, b.estimate.curves[z].value);
    EXPECT_EQ(a.estimate.curves[z].std_error, b.estimate.curves[z].std_error);
    for (size_t e = 0; e < a.estimate.curves[z].value.size(); ++e) {
      const double va = a.estimate.curves[z].value[e], vc = c.estimate.curves[z].value[e];
      EXPECT_NEAR(va, vc, kThreadTolerance * std::abs(va));
    }
  }
  // A different seed draws different parameters.
  o.seed = 43;
  const auto d = run_measure(o);
  EXPECT_NE(a.estimate.curves[0].value, d.estimate.curves[0].value);
}

// Samples in parallel (MeasureOptions::parallel_samples): the curves of a sequential run on one
// thread, bit for bit, for 2 and 3 samples at once (M = 5 is not a multiple of either); the
// result says how many ran at once; the automatic choice runs in sequence on one thread and in
// parallel when the eigen-solve dominates (--plan says so), not when the products do.
TEST(MeasureTest, ParallelSamplesEqualSequentialOnOneThread) {
  MeasureOptions o;
  o.model = "mlp:16-24-5";
  o.data = "synthetic:blobs:5:16:300";
  o.num_inputs = 40;
  o.num_param_samples = 5;
  o.estimator.zetas = {0.0, 0.5};
  o.estimator.bootstrap = 100;
  o.seed = 3;
  ExecutionContext one, two;
  one.threads = 1;
  two.threads = 2;
  o.parallel_samples = 1;
  const auto sequential = run_measure(o, one);
  EXPECT_EQ(sequential.parallel_samples, 1);
  for (int k : {2, 3}) {
    o.parallel_samples = k;
    const auto parallel = run_measure(o, two);
    EXPECT_EQ(parallel.parallel_samples, k);
    EXPECT_EQ(parallel.parallel_reason, "requested");
    ASSERT_EQ(parallel.estimate.curves.size(), sequential.estimate.curves.size());
    for (size_t z = 0; z < parallel.estimate.curves.size(); ++z) {
      EXPECT_EQ(parallel.estimate.curves[z].value, sequential.estimate.curves[z].value);
      EXPECT_EQ(parallel.estimate.curves[z].std_error, sequential.estimate.curves[z].std_error);
    }
    for (size_t j = 0; j < parallel.samples.size(); ++j)
      EXPECT_EQ(parallel.samples[j].largest, sequential.samples[j].largest);
  }
  o.parallel_samples = 0;
  EXPECT_EQ(run_measure(o, one).parallel_samples, 1);  // one thread: nothing to share
  o.parallel_samples = -1;
  EXPECT_THROW(run_measure(o, two), OptionError);
  // The cost model: a 900 x 900 eigen-solve per sample with small products -> 2 at once; the
  // products of d = 13M (16 GFLOP per sample) scale with threads -> in sequence.
  MeasureOptions plan;
  plan.model = "mlp:784-64-10";
  EXPECT_NE(plan_measure(plan, two).find("samples   2 at once on 2 thread(s)"), std::string::npos)
      << plan_measure(plan, two);
  plan.model = "mlp:784-16384-10";
  EXPECT_NE(plan_measure(plan, two).find("samples   1 at once on 2 thread(s)"), std::string::npos)
      << plan_measure(plan, two);
}

TEST(MeasureTest, BadInputsAreClearErrors) {
  MeasureOptions o;
  o.model = "mlp:5-3";
  o.data = "synthetic:blobs:3:6";
  EXPECT_THROW(run_measure(o), DataError);  // 6 features, model takes 5
  o.data = "synthetic:blobs:4:5";
  EXPECT_THROW(run_measure(o), DataError);  // 4 classes, 3 outputs
  o.data = "synthetic:blobs:3:5";
  o.num_inputs = 0;
  EXPECT_THROW(run_measure(o), UsageError);
  o.num_inputs = 10;
  o.num_param_samples = 0;
  EXPECT_THROW(run_measure(o), UsageError);
  o.num_param_samples = 2;
  o.estimator.zetas = {1.0};
  EXPECT_THROW(run_measure(o), UsageError);
  o.estimator.zetas = {0.0};
  o.estimator.eps = {0.0};
  EXPECT_THROW(run_measure(o), UsageError);
  o.estimator.eps = {};
  o.space = "box:-1";
  EXPECT_THROW(run_measure(o), UsageError);
  o.space = "init";
  o.thetas_file = write_inputs(torch::zeros({2, 7}, torch::kFloat64), "bad_thetas.npy");
  EXPECT_THROW(run_measure(o), DataError);  // d = 18
  o.thetas_file.clear();
  o.space = "local:" + write_inputs(torch::zeros({17}, torch::kFloat64), "bad_ckpt.npy") + ":0.1";
  EXPECT_THROW(run_measure(o), DataError);
}

// The pre-flight check and --plan use min(physical memory, limits): under an address-space
// limit (ulimit -v) the plan names it, and a model that would fit the machine does not fit it.
TEST(MeasureTest, PlanUsesTheAddressSpaceLimit) {
  MeasureOptions o;
  o.model = "mlp:784-25-10";
  o.fisher.side = GramSide::Parameters;  // a 19885 x 19885 Fisher: about 6.3 GB
  double mapped_pages = 0;
  std::ifstream("/proc/self/statm") >> mapped_pages;
  const double mapped = mapped_pages * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_AS, &old), 0);
  struct rlimit limited = old;
  limited.rlim_cur = static_cast<rlim_t>(mapped + 2e9);  // 2 GB more than is mapped now
  if (old.rlim_cur != RLIM_INFINITY && limited.rlim_cur > old.rlim_cur) GTEST_SKIP() << "already limited";
  ASSERT_EQ(::setrlimit(RLIMIT_AS, &limited), 0);
  std::string plan, error;
  try {
    plan = plan_measure(o);
    o.data = "synthetic:blobs:3:784:50";
    o.num_inputs = 10;
    o.num_param_samples = 2;
    run_measure(o);
  } catch (const UsageError& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_AS, &old);
  EXPECT_NE(plan.find("left under the address-space limit (ulimit -v)"), std::string::npos) << plan;
  EXPECT_NE(plan.find("does NOT fit"), std::string::npos) << plan;
  EXPECT_NE(error.find("left under the address-space limit"), std::string::npos) << error;
}
