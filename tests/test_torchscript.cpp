// TorchScript models (docs/math.md section 9): loading and its refusals, the imported
// parameter spaces, and Fisher spectra from autograd rows against (a) the spec-string network
// of the same MLP and (b) a dense Fisher built in Python with torch.autograd.
//
// The models are written by tests/make_torchscript_models.py with /usr/bin/python3; the tests
// skip (saying why) when torch cannot be imported there.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

#include <torch/script.h>

#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/measure/engine.h"
#include "twosed/model/torchscript.h"

using namespace twosed;

namespace {

std::string models_dir() {
  return ::testing::TempDir() + "twosed_torchscript_models";
}

// Runs the Python script once per test binary: "" when the models are there, else why not.
const std::string& models_status() {
  static const std::string status = [] {
    const std::string dir = models_dir();
    const std::string cmd = std::string("/usr/bin/python3 ") + TWOSED_TEST_SOURCE_DIR + "/make_torchscript_models.py " +
                            dir + " > " + dir + ".log 2>&1";
    const int rc = std::system(cmd.c_str());
    if (rc == 0) return std::string();
    std::ifstream log(dir + ".log");
    std::string line;
    std::getline(log, line);
    return "make_torchscript_models.py failed (" + std::to_string(rc) + "): " + line;
  }();
  return status;
}

#define REQUIRE_MODELS()                                           \
  do {                                                             \
    if (!models_status().empty()) GTEST_SKIP() << models_status(); \
  } while (0)

std::string model(const std::string& name) {
  return models_dir() + "/" + name;
}

torch::Tensor npy_tensor(const std::string& name) {
  auto arr = read_npy(model(name));
  return torch::tensor(arr.data, torch::kFloat64).view(arr.shape);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

// Largest |a_i - b_i| over the kept eigenvalues, both ascending.
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

// ---- the MLP as a spec string and as a file ----

// The same MLP (Linear 5->7, ReLU, Linear 7->3) as mlp:5-7-3 and as scripted, traced and
// float32 TorchScript files: the init box draws bit-identical thetas; the spectra agree to
// 1e-13 x lambda_max and the 2sED curves to 1e-12 relative. Not bit for bit: twosed's own
// network builds K from the Kronecker form <b_i, b_j><a_i, a_j> per layer, the file's from
// explicit autograd rows, so the sums are rounded in a different order. The eigenvalues then
// differ by ~1e-16..1e-15 x lambda_max, so a small eigenvalue's relative error is that over
// lambda / lambda_max, and the curves' relative agreement depends on the spectrum's conditioning
// (these Gaussian inputs keep it well inside 1e-12; 20 blob inputs reach 5e-12).
TEST(TorchScript, MlpFileMatchesSpecString) {
  REQUIRE_MODELS();
  const Network spec_net(parse_model_spec("mlp:5-7-3"));
  torch::manual_seed(7);
  for (const int64_t n : {20, 50}) {  // N R = 40 < d = 66: samples side; 100 > 66: parameters side
    const auto x = torch::randn({n, 5}, torch::kFloat64);
    const DrawnParameters spec_thetas(ParameterSpace::parse("init", spec_net), 3, 6);
    StandardModel spec_model(spec_net, {x, "x"}, FisherOptions{});
    const auto expected = measure(spec_model, spec_thetas, EstimatorOptions{}, 3);
    for (const std::string file : {"mlp_scripted.pt", "mlp_traced.pt", "mlp_float32.pt"}) {
      SCOPED_TRACE(file + " N=" + std::to_string(n));
      auto net = std::make_shared<const TorchScriptNetwork>(model(file));
      ASSERT_EQ(net->num_params(), spec_net.num_params());
      for (size_t p = 0; p < net->parameters().size(); ++p)
        EXPECT_EQ(net->parameters()[p].name, spec_net.parameters()[p].name);
      const ImportedParameters thetas(*net, "init", 3, 6);
      std::vector<double> a(66), b(66);
      for (int64_t j = 0; j < 6; ++j) {
        thetas.fill(j, a.data());
        spec_thetas.fill(j, b.data());
        EXPECT_EQ(a, b) << "theta^(" << j << ")";
      }
      for (const std::string jacobian : {"autograd", "structured"}) {
        SCOPED_TRACE(jacobian);
        TorchScriptModel ts_model(net, {x, "x"}, FisherOptions{}, {}, jacobian);
        EXPECT_EQ(ts_model.jacobian().structured, jacobian == "structured");
        const auto got_records = run_samples(ts_model, thetas, {0, 1, 2, 3, 4, 5});
        const auto want_records = run_samples(spec_model, spec_thetas, {0, 1, 2, 3, 4, 5});
        for (size_t j = 0; j < got_records.size(); ++j) {
          const auto& want = want_records[j].blocks.front().eigenvalues;
          EXPECT_LE(max_abs_diff(got_records[j].blocks.front().eigenvalues, want), 1e-13 * want.back());
        }
        const auto got = measure(ts_model, thetas, EstimatorOptions{}, 3);
        ASSERT_EQ(got.samples.size(), expected.samples.size());
        EXPECT_EQ(got.side, expected.side);
        for (size_t j = 0; j < got.samples.size(); ++j) {
          EXPECT_EQ(got.samples[j].kept, expected.samples[j].kept);
          EXPECT_NEAR(got.samples[j].trace, expected.samples[j].trace, 1e-12 * expected.samples[j].trace);
        }
        ASSERT_EQ(got.estimate.curves.size(), expected.estimate.curves.size());
        for (size_t z = 0; z < got.estimate.curves.size(); ++z)
          for (size_t e = 0; e < got.estimate.curves[z].value.size(); ++e) {
            const double want = expected.estimate.curves[z].value[e];
            EXPECT_NEAR(got.estimate.curves[z].value[e], want, 1e-12 * std::abs(want)) << "zeta " << z << " eps " << e;
          }
      }
    }
  }
}

// Repeated forward passes give the same bits (the profiling executor is off while measuring).
TEST(TorchScript, SpectraAreReproducible) {
  REQUIRE_MODELS();
  TorchScriptNetwork net(model("resnet_scripted.pt"));
  const auto x = npy_tensor("resnet_x.npy").narrow(0, 0, 10);
  const auto theta = npy_tensor("resnet_theta.npy");
  const auto first = torchscript_fisher_spectrum(net, theta, x, FisherOptions{});
  for (int rep = 0; rep < 3; ++rep)
    EXPECT_EQ(torchscript_fisher_spectrum(net, theta, x, FisherOptions{}).spectrum.eigenvalues,
              first.spectrum.eigenvalues);
}

// ---- the tiny ResNet block against Python's dense Fisher ----

namespace {

// Python's dense-Fisher eigenvalues above the zero cutoff, ascending.
std::vector<double> python_nonzero(const std::string& file) {
  const auto arr = read_npy(model(file));
  double largest = 0;
  for (double e : arr.data) largest = std::max(largest, e);
  std::vector<double> kept;
  for (double e : arr.data)
    if (e > kZeroCutoff * largest) kept.push_back(e);
  return kept;
}

}  // namespace

// conv -> BatchNorm2d (eval) -> tanh -> conv + skip -> tanh -> linear, d = 129, N = 80, k = 3,
// scripted and traced; every side and a budget that forces one example per block; autograd and
// structured Jacobians. The
// regression Fisher has exactly the 4 expected null directions (2 per BatchNorm channel, conv
// bias and BatchNorm weight/bias); the classification Fisher 33 more (the softmax's shift).
TEST(TorchScript, ResNetBlockMatchesPythonDenseFisher) {
  REQUIRE_MODELS();
  const auto x = npy_tensor("resnet_x.npy");
  const auto theta = npy_tensor("resnet_theta.npy");
  for (const std::string file : {"resnet_scripted.pt", "resnet_traced.pt"}) {
    TorchScriptNetwork net(model(file));
    ASSERT_EQ(net.num_params(), 129);
    for (const Task task : {Task::Regress, Task::Classify}) {
      const auto want = python_nonzero(task == Task::Regress ? "resnet_regress_eigs.npy" : "resnet_classify_eigs.npy");
      ASSERT_EQ(want.size(), task == Task::Regress ? 125u : 92u);
      for (const GramSide side : {GramSide::Auto, GramSide::Samples, GramSide::Parameters}) {
        for (const int64_t budget : {int64_t{256} << 20, int64_t{1}}) {
          SCOPED_TRACE(file + (task == Task::Regress ? " regress" : " classify") + " side " +
                       std::to_string(static_cast<int>(side)) + " budget " + std::to_string(budget));
          FisherOptions opts;
          opts.task = task;
          opts.side = side;
          opts.memory_budget = budget;
          for (const bool structured : {false, true}) {
            JacobianOptions jac;
            jac.structured = structured;
            const auto fs = torchscript_fisher_spectrum(net, theta, x, opts, 0, jac);
            EXPECT_EQ(fs.side, side == GramSide::Samples ? GramSide::Samples : GramSide::Parameters);
            EXPECT_EQ(fs.spectrum.num_cut, fs.matrix_size - static_cast<int64_t>(want.size())) << structured;
            EXPECT_LE(max_abs_diff(fs.spectrum.eigenvalues, want), 1e-10 * want.back()) << structured;
          }
        }
      }
    }
  }
}

// The init box: Conv2d and Linear in +-1/sqrt(fan_in), BatchNorm weight 1 and bias 0 exactly
// (points), every coordinate still consuming its uniform (the box:A stream is the same).
TEST(TorchScript, InitBoxOfResNetBlock) {
  REQUIRE_MODELS();
  TorchScriptNetwork net(model("resnet_traced.pt"));
  std::map<std::string, std::string> types;
  std::ifstream in(model("resnet_param_types.txt"));
  for (std::string name, type; in >> name >> type;) types[name] = type;
  const std::map<std::string, double> bound{
      {"conv1", 1.0 / 3.0}, {"conv2", 1.0 / std::sqrt(2.0)}, {"fc", 1.0 / std::sqrt(32.0)}};
  const ImportedParameters init(net, "init", 5, 3), box(net, "box:1", 5, 3);
  const int64_t d = net.num_params();
  std::vector<double> t(static_cast<size_t>(d)), u(static_cast<size_t>(d));
  init.fill(2, t.data());
  box.fill(2, u.data());
  for (const auto& p : net.parameters()) {
    EXPECT_EQ(p.module_type, types[p.name]) << p.name;
    const auto owner = p.name.substr(0, p.name.find('.'));
    for (int64_t i = p.offset; i < p.offset + p.numel(); ++i) {
      const double ui = (u[static_cast<size_t>(i)] + 1.0) / 2.0;  // box:1's uniform, in [0, 1)
      if (owner == "bn1") {
        const double point = p.name == "bn1.weight" ? 1.0 : 0.0;
        EXPECT_EQ(init.lower(i), point);
        EXPECT_EQ(init.upper(i), point);
        EXPECT_EQ(t[static_cast<size_t>(i)], point);
      } else {
        const double b = bound.at(owner);
        EXPECT_DOUBLE_EQ(init.upper(i), b) << p.name;
        EXPECT_NEAR(t[static_cast<size_t>(i)], -b + 2 * b * ui, 1e-15) << p.name;
      }
    }
  }
  const ImportedParameters local(net, "local:0.5", 5, 1);
  const auto w = net.file_theta();
  EXPECT_EQ(local.lower(7), w[7].item<double>() - 0.5);
}

TEST(TorchScript, InitRefusesLayersWithoutARule) {
  REQUIRE_MODELS();
  TorchScriptNetwork net(model("prelu.pt"));
  const auto what = error_of([&] { ImportedParameters(net, "init", 0, 1); });
  EXPECT_NE(what.find("PReLU"), std::string::npos) << what;
  EXPECT_NE(what.find("MeasureOptions.space"), std::string::npos) << what;
  EXPECT_NO_THROW(ImportedParameters(net, "box:1", 0, 1));
  EXPECT_NO_THROW(ImportedParameters(net, "local:0.1", 0, 1));
}

// ---- refusals ----

TEST(TorchScript, RefusesBadFiles) {
  REQUIRE_MODELS();
  const std::vector<std::pair<std::string, std::string>> cases{
      {"bad_text.pt", "not a readable TorchScript file"},
      {"bad_truncated.pt", "not a readable TorchScript file"},
      {"bad_training.pt", "training mode"},
      {"bad_traced_training.pt", "aten::batch_norm in training mode"},
      {"bad_noparams.pt", "no parameters"},
      {"missing.pt", "no such file"},
  };
  for (const auto& [file, expected] : cases) {
    std::string what;
    try {
      TorchScriptNetwork net(model(file));
      what = "no error";
    } catch (const DataError& e) {
      what = e.what();
    }
    EXPECT_NE(what.find(expected), std::string::npos) << file << ": " << what;
    EXPECT_NE(what.find(file), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
}

TEST(TorchScript, RefusesOutputsAndInputsThatDoNotFit) {
  REQUIRE_MODELS();
  auto three_d = std::make_shared<const TorchScriptNetwork>(model("bad_3d.pt"));
  auto what = error_of([&] { TorchScriptModel(three_d, {torch::zeros({4, 5}, torch::kFloat64), "x"}, {}); });
  EXPECT_NE(what.find("output of shape (4, 2, 3)"), std::string::npos) << what;
  auto resnet = std::make_shared<const TorchScriptNetwork>(model("resnet_scripted.pt"));
  what = error_of([&] { TorchScriptModel(resnet, {torch::zeros({4, 5}, torch::kFloat64), "x"}, {}); });
  EXPECT_NE(what.find("does not take inputs of shape (4, 5)"), std::string::npos) << what;
  EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  // With the shape given, the same data fit.
  EXPECT_NO_THROW(TorchScriptModel(resnet, {torch::randn({4, 16}, torch::kFloat64), "x"}, {}, {1, 4, 4}));
}

TEST(TorchScript, MeasureOptionsRefusals) {
  REQUIRE_MODELS();
  MeasureOptions o;
  o.model = model("mlp_scripted.pt");
  o.data = "synthetic:blobs:3:5";
  o.num_inputs = 10;
  o.num_param_samples = 2;
  o.jacobian = "jacobians";
  EXPECT_NE(error_of([&] { prepare_measurement(o); }).find("expected auto, autograd or structured"), std::string::npos);
  o.jacobian = "autograd";
  o.markov = true;
  o.sigma = 0.1;
  EXPECT_EQ(prepare_measurement(o).model->header().layers.size(), 2u);  // a chain: two Markov layers
  {
    MeasureOptions skip = o;  // a residual add: refused, naming it
    skip.model = model("resnet_scripted.pt");
    skip.input_shape = "1x4x4";
    EXPECT_NE(error_of([&] { prepare_measurement(skip); }).find("skip connection: aten::add at "), std::string::npos);
  }
  o.markov = false;
  const auto prepared = prepare_measurement(o);  // the data's features give the (flat) input shape
  EXPECT_TRUE(prepared.network == nullptr);
  EXPECT_EQ(prepared.model->header().num_params, 66);
  EXPECT_EQ(prepared.model->header().num_outputs, 3);
  const auto r = run_measure(o);
  EXPECT_EQ(r.estimate.num_params, 66);
  EXPECT_EQ(r.spec.text, o.model);
}

// ---- the structured Jacobian path ----

namespace {

JacobianOptions structured_with(ConvFormChoice form) {
  JacobianOptions jac;
  jac.structured = true;
  jac.conv_form = form;
  return jac;
}

// The tiny models that cover the structured path's ops, with inputs for them.
std::vector<std::pair<std::string, torch::Tensor>> structured_cases() {
  torch::manual_seed(11);
  const auto images = torch::randn({6, 2, 8, 8}, torch::kFloat64);
  const auto vectors = torch::randn({7, 5}, torch::kFloat64);
  return {{"zoo_scripted.pt", images},
          {"zoo_traced.pt", images},
          {"matmul_scripted.pt", vectors},
          {"matmul_traced.pt", vectors},
          {"mlp_scripted.pt", vectors},
          {"mlp_traced.pt", vectors},
          {"resnet_scripted.pt", npy_tensor("resnet_x.npy").narrow(0, 0, 9)},
          {"resnet_traced.pt", npy_tensor("resnet_x.npy").narrow(0, 0, 9)},
          {"basic_scripted.pt", torch::randn({5, 1, 6, 6}, torch::kFloat64)},
          {"basic_traced.pt", torch::randn({5, 1, 6, 6}, torch::kFloat64)},
          {"rewrite_scripted.pt", vectors}};
}

}  // namespace

// The structured rows (one forward and R backward passes for the block) are the autograd rows
// (one forward and R backward passes per example), parameter by parameter, in the same places.
TEST(TorchScriptStructured, RowsEqualAutogradRows) {
  REQUIRE_MODELS();
  for (const auto& [file, x] : structured_cases()) {
    SCOPED_TRACE(file);
    TorchScriptNetwork net(model(file));
    const auto theta = net.file_theta();
    const int64_t n = x.size(0), k = net.forward(theta, x).size(1), r = 2;
    const auto q = torch::randn({n - 1, r, k}, torch::kFloat64);
    auto want = torch::empty({(n - 1) * r, net.num_params()}, torch::kFloat64);
    auto got = torch::full_like(want, 7.0);
    net.jacobian_rows(theta, x, q, 1, want);
    net.structured_rows(theta, x, q, 1, got);
    const double scale = want.abs().max().item<double>();
    ASSERT_GT(scale, 0);
    // Not to round-off (1e-16): the autograd rows come from the module's own forward, which the
    // JIT's executor differentiates symbolically, and on the zoo's layers before its pooling that
    // differs from eager autograd by ~1e-11 x max |row| (measured in Python: eager autograd and
    // the module's give the same difference; structured rows follow eager autograd).
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-10 * scale);
  }
}

// Structured and autograd spectra agree to 1e-10 x lambda_max on both Gram sides, with each
// convolution form forced once, and with a budget that sends the samples side to row blocks.
TEST(TorchScriptStructured, SpectraMatchAutograd) {
  REQUIRE_MODELS();
  for (const auto& [file, x] : structured_cases()) {
    TorchScriptNetwork net(model(file));
    const auto theta = net.file_theta() * 1.3;  // off the file's weights: a generic theta
    for (const Task task : {Task::Classify, Task::Regress})
      for (const GramSide side : {GramSide::Samples, GramSide::Parameters}) {
        FisherOptions opts;
        opts.task = task;
        opts.side = side;
        const auto want = torchscript_fisher_spectrum(net, theta, x, opts, 0, {});
        ASSERT_GT(want.spectrum.eigenvalues.size(), 0u);
        for (const auto form : {ConvFormChoice::Cheapest, ConvFormChoice::PerExample, ConvFormChoice::Patch})
          for (const int64_t budget : {int64_t{256} << 20, int64_t{1}}) {
            SCOPED_TRACE(file + (task == Task::Regress ? " regress" : " classify") + " side " +
                         std::to_string(static_cast<int>(side)) + " form " + std::to_string(static_cast<int>(form)) +
                         " budget " + std::to_string(budget));
            opts.memory_budget = budget;
            const auto got = torchscript_fisher_spectrum(net, theta, x, opts, 0, structured_with(form));
            EXPECT_EQ(got.side, want.side);
            EXPECT_EQ(got.spectrum.num_cut, want.spectrum.num_cut);
            EXPECT_LE(max_abs_diff(got.spectrum.eigenvalues, want.spectrum.eigenvalues),
                      1e-10 * want.spectrum.eigenvalues.back());
          }
      }
  }
}

// The backward passes in groups: with a budget of one byte every cut of the graph starts a group
// (in the basic block, also where the skip and the branch are both alive; never where an
// in-place op has rewritten a tensor), and the Gram is the one of a single group to round-off.
TEST(TorchScriptStructured, GroupedBackwardEqualsOnePass) {
  REQUIRE_MODELS();
  for (const auto& [file, x] : structured_cases()) {
    SCOPED_TRACE(file);
    TorchScriptNetwork net(model(file));
    const auto theta = net.file_theta() * 1.1;
    const int64_t n = x.size(0), k = net.forward(theta, x).size(1), r = 3;
    const auto q = torch::randn({n, r, k}, torch::kFloat64);
    const auto whole = net.structured_plan(x, n, r, ConvFormChoice::Cheapest, int64_t{1} << 40);
    const auto split = net.structured_plan(x, n, r, ConvFormChoice::Cheapest, 1);
    EXPECT_EQ(whole.groups, 1);
    EXPECT_GT(split.groups, 1);
    EXPECT_LE(split.groups, static_cast<int64_t>(split.ops.size()));
    EXPECT_GT(split.backprop_bytes, 0);
    auto want = torch::zeros({n * r, n * r}, torch::kFloat64);
    auto got = torch::zeros_like(want);
    net.structured_gram(theta, x, q, ConvFormChoice::Cheapest, int64_t{1} << 40, want);
    net.structured_gram(theta, x, q, ConvFormChoice::Cheapest, 1, got);
    const double scale = want.abs().max().item<double>();
    ASSERT_GT(scale, 0);
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-13 * scale);
  }
  // The basic block's ops: stem, down conv, down bn, conv1, bn1, conv2, bn2, fc. Every op
  // boundary is a cut, also where the stem's output is alive beside the down conv's (which
  // depends on it) or the skip's result beside the branch: the later reads go through aliases.
  for (const char* file : {"basic_scripted.pt", "basic_traced.pt"}) {
    const auto plan =
        TorchScriptNetwork(model(file))
            .structured_plan(torch::randn({2, 1, 6, 6}, torch::kFloat64), 2, 3, ConvFormChoice::Cheapest, 1);
    EXPECT_EQ(plan.ops.size(), 8u) << file;
    EXPECT_EQ(plan.groups, 8) << file;
  }
  // In the rewrite model the tensors alive before fc2 are independent, but one is rewritten in
  // place later: no cut there either.
  const auto rewrite = TorchScriptNetwork(model("rewrite_scripted.pt"))
                           .structured_plan(torch::randn({2, 5}, torch::kFloat64), 2, 3, ConvFormChoice::Cheapest, 1);
  EXPECT_EQ(rewrite.ops.size(), 3u);
  EXPECT_EQ(rewrite.groups, 2);
}

// The plan names each parametric op with its parameters and Gram form: by the cost model the
// first convolution (16 output positions) takes the per-example form, conv3 (one position,
// 32-weight patches) the patch form; forcing a form applies it to every convolution.
TEST(TorchScriptStructured, PlanShowsTheFormOfEachOp) {
  REQUIRE_MODELS();
  for (const std::string file : {"zoo_scripted.pt", "zoo_traced.pt"}) {
    SCOPED_TRACE(file);
    TorchScriptNetwork net(model(file));
    const auto x = torch::randn({6, 2, 8, 8}, torch::kFloat64);
    const auto plan = net.structured_plan(x, 6, 2);
    ASSERT_TRUE(plan.usable()) << plan.unknown.front();
    std::map<std::string, std::string> form;
    for (const auto& op : plan.ops) {
      form[op.params] = op.form;
      EXPECT_GT(op.flops, 0) << op.params;
    }
    EXPECT_EQ(plan.ops.size(), 9u);
    EXPECT_EQ(form["conv1.weight, conv1.bias"], "per-example");
    EXPECT_EQ(form["conv2.weight, conv2.bias"], "per-example");
    EXPECT_EQ(form["conv3.weight"], "patch");
    EXPECT_EQ(form["bn1.weight, bn1.bias"], "rows");
    EXPECT_EQ(form["ln.weight, ln.bias"], "rows");
    EXPECT_EQ(form["fc1.weight, fc1.bias"], "kronecker");
    for (const auto choice : {ConvFormChoice::PerExample, ConvFormChoice::Patch})
      for (const auto& op : net.structured_plan(x, 6, 2, choice).ops) {
        if (op.params.rfind("conv", 0) == 0) {
          EXPECT_EQ(op.form, choice == ConvFormChoice::Patch ? "patch" : "per-example") << op.params;
        }
      }
    TorchScriptModel m(std::make_shared<const TorchScriptNetwork>(model(file)), {x, "x"}, FisherOptions{});
    EXPECT_TRUE(m.jacobian().structured);
    EXPECT_NE(m.jacobian_description().find("conv3.weight]: patch"), std::string::npos) << m.jacobian_description();
    EXPECT_EQ(m.sources().jacobian, m.jacobian_description());
  }
}

// An op the structured path does not know (PReLU's aten::prelu), or a linear op whose input the
// graph rewrites in place after it: structured refuses it in one line naming the op and the
// model source line; auto falls back to autograd and says why.
TEST(TorchScriptStructured, UnknownOpIsRefusedOrFallsBack) {
  REQUIRE_MODELS();
  const auto x = torch::randn({4, 5}, torch::kFloat64);
  for (const auto& [file, op] : std::vector<std::pair<std::string, std::string>>{
           {"prelu.pt", "aten::prelu"}, {"prelu_traced.pt", "aten::prelu"}, {"bad_input_rewritten.pt", "rewritten"}}) {
    SCOPED_TRACE(file);
    auto net = std::make_shared<const TorchScriptNetwork>(model(file));
    const auto what = error_of([&] { TorchScriptModel(net, {x, "x"}, FisherOptions{}, {}, "structured"); });
    EXPECT_NE(what.find("MeasureOptions.jacobian"), std::string::npos) << what;
    EXPECT_NE(what.find(op), std::string::npos) << what;
    EXPECT_NE(what.find(".py:"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    TorchScriptModel fallback(net, {x, "x"}, FisherOptions{}, {}, "auto");
    EXPECT_FALSE(fallback.jacobian().structured);
    EXPECT_NE(fallback.jacobian_description().find("autograd"), std::string::npos);
    EXPECT_NE(fallback.jacobian_description().find(op), std::string::npos);
    TorchScriptModel asked(net, {x, "x"}, FisherOptions{}, {}, "autograd");
    EXPECT_EQ(asked.jacobian_description(), "autograd (as asked)");
  }
}

// The graph summary: the tiny ResNet block (scripted and traced) has one join of two paths from
// the input, the residual add, located in the Python source that wrote it; the MLP has none.
TEST(TorchScript, GraphSummaryFindsTheSkip) {
  REQUIRE_MODELS();
  for (const char* name : {"resnet_scripted.pt", "resnet_traced.pt"}) {
    const auto g = summarize_graph(TorchScriptNetwork(model(name)));
    ASSERT_EQ(g.skips.size(), 1u) << name;
    EXPECT_EQ(g.skips[0].rfind("aten::add at ", 0), 0u) << g.skips[0];
    EXPECT_NE(g.skips[0].find("make_torchscript_models.py:"), std::string::npos) << g.skips[0];
    EXPECT_GE(g.nodes, 6) << name;  // 2 conv, batch_norm, 2 tanh, add, flatten, linear
  }
  const auto mlp = summarize_graph(TorchScriptNetwork(model("mlp_traced.pt")));
  EXPECT_TRUE(mlp.skips.empty());
  int64_t linear = 0;
  for (const auto& [kind, count] : mlp.ops)
    if (kind == "aten::linear") linear = count;
  EXPECT_EQ(linear, 2);
}

// ---- the Markov chain model on imported chains (docs/math.md section 9) ----

namespace {

MarkovOptions markov_options(double sigma, int64_t draws) {
  MarkovOptions mo;
  mo.sigma = sigma;
  mo.noise_draws = draws;
  return mo;
}

std::vector<double> descending(std::vector<double> v) {
  std::sort(v.begin(), v.end(), std::greater<double>());
  return v;
}

// The same chain as a spec string and as a file, same theta, same noise (drawn by the models
// from the same seed): the same block spectra, layer by layer, to 1e-12 of each block's largest
// eigenvalue (the sums run in the same order except the output block's Gram).
void expect_chain_matches_spec(const std::string& spec, const std::string& file, const torch::Tensor& x) {
  SCOPED_TRACE(file);
  const Network spec_net(parse_model_spec(spec));
  auto net = std::make_shared<const TorchScriptNetwork>(model(file));
  ASSERT_EQ(net->num_params(), spec_net.num_params());
  const auto mo = markov_options(0.3, 2);
  const MarkovModel want_model(spec_net, {x, "x"}, mo, MarkovNoise{5, {}, ""});
  const TorchScriptMarkovModel got_model(net, {x, "x"}, mo, MarkovNoise{5, {}, ""});
  ASSERT_EQ(got_model.noise_width(), want_model.chain().noise_width());
  ASSERT_EQ(got_model.layers().size(), want_model.chain().layers().size());
  for (size_t l = 0; l < got_model.layers().size(); ++l) {
    EXPECT_EQ(got_model.layers()[l].params, want_model.chain().layers()[l].params);
    EXPECT_EQ(got_model.layers()[l].units, want_model.chain().layers()[l].units);
  }
  const DrawnParameters thetas(ParameterSpace::parse("init", spec_net), 3, 3);
  const auto got = run_samples(got_model, thetas, {0, 1, 2});
  const auto want = run_samples(want_model, thetas, {0, 1, 2});
  for (size_t j = 0; j < got.size(); ++j)
    for (size_t l = 0; l < want[j].blocks.size(); ++l) {
      SCOPED_TRACE("sample " + std::to_string(j) + " layer " + std::to_string(l));
      const auto a = descending(got[j].blocks[l].eigenvalues), b = descending(want[j].blocks[l].eigenvalues);
      ASSERT_FALSE(b.empty());
      EXPECT_LE(max_abs_diff(a, b), 1e-12 * b.front());
      EXPECT_EQ(got[j].blocks[l].num_cut, want[j].blocks[l].num_cut);
      EXPECT_NEAR(got[j].blocks[l].trace, want[j].blocks[l].trace, 1e-12 * want[j].blocks[l].trace);
    }
}

}  // namespace

TEST(TorchScriptMarkov, ChainMatchesSpecModel) {
  REQUIRE_MODELS();
  torch::manual_seed(3);
  const auto xm = torch::randn({9, 5}, torch::kFloat64);
  for (const char* f : {"mlp_scripted.pt", "mlp_traced.pt"}) expect_chain_matches_spec("mlp:5-7-3", f, xm);
  const auto xc = torch::randn({6, 1, 6, 6}, torch::kFloat64);
  for (const char* f : {"markov_cnn_scripted.pt", "markov_cnn_traced.pt"})
    expect_chain_matches_spec("cnn:1x6x6-c3k3-relu-p2-f6-relu-f3", f, xc);
}

// addmm and matmul with parameter operands (matmul_*.pt) are the chain Linear(5,4), tanh,
// Linear(4,3, no bias) with transposed weights: the same block spectra at the corresponding theta.
TEST(TorchScriptMarkov, MatmulChainMatchesLinearChain) {
  REQUIRE_MODELS();
  const TorchScriptNetwork linear(model("markov_mlp_nobias.pt"));
  torch::manual_seed(8);
  const auto x = torch::randn({7, 5}, torch::kFloat64);
  const auto mo = markov_options(0.25, 2);
  const auto theta = torch::rand({linear.num_params()}, torch::kFloat64) * 2 - 1;
  const auto w0 = theta.narrow(0, 0, 20).view({4, 5}), b0 = theta.narrow(0, 20, 4),
             w2 = theta.narrow(0, 24, 12).view({3, 4});
  const auto theta_mm = torch::cat({w0.t().reshape(-1), b0, w2.t().reshape(-1)});
  const auto noise = draw_noise(1, 0, linear.num_params(), 7 * 2, 4);
  const auto want = linear.markov_spectrum(theta, x, noise, mo);
  for (const char* f : {"matmul_scripted.pt", "matmul_traced.pt"}) {
    SCOPED_TRACE(f);
    const TorchScriptNetwork mm(model(f));
    ASSERT_EQ(mm.markov_layers(x, mo).size(), 2u);
    const auto got = mm.markov_spectrum(theta_mm, x, noise, mo);
    ASSERT_EQ(got.layers.size(), want.layers.size());
    for (size_t l = 0; l < want.layers.size(); ++l) {
      const auto a = descending(got.layers[l].spectrum.eigenvalues),
                 b = descending(want.layers[l].spectrum.eigenvalues);
      ASSERT_FALSE(b.empty());
      EXPECT_LE(max_abs_diff(a, b), 1e-12 * b.front()) << "layer " << l;
      EXPECT_EQ(got.layers[l].spectrum.num_cut, want.layers[l].spectrum.num_cut);
    }
  }
}

namespace {

// Brute-force oracle: each Markov layer's dense block from LibTorch autograd through the file's
// own submodules (children [first, last) of the Sequential), at the same noisy inputs:
// hidden F_l = (1/(rows sigma^2)) sum_i C_i^T C_i with C_i the Jacobian of the layer's output
// wrt its parameters; output F_L = (1/rows) sum_i J_i^T (diag p - p p^T) J_i (softmax).
std::vector<torch::Tensor> dense_chain_blocks(const std::string& file, const std::vector<std::pair<int, int>>& groups,
                                              const TorchScriptNetwork& net, const torch::Tensor& theta,
                                              const torch::Tensor& x, const torch::Tensor& noise,
                                              const MarkovOptions& mo) {
  auto mod = torch::jit::load(file);
  mod.eval();
  std::vector<std::pair<std::string, torch::jit::Module>> kids;
  for (const auto& c : mod.named_children()) kids.emplace_back(c.name, c.value);
  std::map<std::string, const ImportedParameter*> slices;
  for (const auto& p : net.parameters()) slices[p.name] = &p;
  std::vector<torch::Tensor> blocks;
  torch::Tensor cur = x;
  int64_t offset = 0;
  for (size_t l = 0; l < groups.size(); ++l) {
    std::vector<torch::Tensor> leaves;
    for (int k = groups[l].first; k < groups[l].second; ++k)
      for (const auto& p : kids[static_cast<size_t>(k)].second.named_parameters(/*recurse=*/false)) {
        const auto* s = slices.at(kids[static_cast<size_t>(k)].first + "." + p.name);
        auto leaf = theta.narrow(0, s->offset, s->numel()).view(s->shape).clone().requires_grad_(true);
        kids[static_cast<size_t>(k)].second.setattr(p.name, leaf);
        leaves.push_back(leaf);
      }
    torch::Tensor y = cur;
    for (int k = groups[l].first; k < groups[l].second; ++k)
      y = kids[static_cast<size_t>(k)].second.forward({y}).toTensor();
    const int64_t rows = y.size(0);
    int64_t p = 0;
    for (const auto& leaf : leaves) p += leaf.numel();
    auto flat = y.reshape({rows, -1});
    auto jac = [&](const torch::Tensor& out) {
      auto g = torch::autograd::grad({out}, leaves, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
      std::vector<torch::Tensor> parts;
      for (size_t q = 0; q < g.size(); ++q)
        parts.push_back(g[q].defined() ? g[q].reshape(-1) : torch::zeros({leaves[q].numel()}, x.options()));
      return torch::cat(parts);
    };
    auto fisher = torch::zeros({p, p}, x.options());
    const bool hidden = l + 1 < groups.size();
    for (int64_t i = 0; i < rows; ++i) {
      std::vector<torch::Tensor> j_rows;
      for (int64_t e = 0; e < flat.size(1); ++e) j_rows.push_back(jac(flat[i][e]));
      auto j = torch::stack(j_rows);  // (m, p)
      if (hidden) {
        fisher += j.t().matmul(j);
      } else {
        auto pr = torch::softmax(flat[i].detach(), 0);
        fisher += j.t().matmul(torch::diag(pr) - torch::outer(pr, pr)).matmul(j);
      }
    }
    blocks.push_back(fisher / (static_cast<double>(rows) * (hidden ? mo.sigma * mo.sigma : 1.0)));
    if (!hidden) break;
    auto next = y.detach();
    if (next.size(0) != noise.size(0)) next = next.repeat_interleave(mo.noise_draws, 0);
    const int64_t width = next.numel() / next.size(0);
    cur = next + mo.sigma * noise.narrow(1, offset, width).reshape(next.sizes());
    offset += width;
  }
  return blocks;
}

// Each block's kept eigenvalues (descending) against the dense block's above 1e-9 of its largest.
void expect_blocks_match(const MarkovSpectrum& ms, const std::vector<torch::Tensor>& dense) {
  ASSERT_EQ(ms.layers.size(), dense.size());
  for (size_t l = 0; l < dense.size(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    auto eig = torch::linalg::eigvalsh(dense[l], "L");
    std::vector<double> want(eig.data_ptr<double>(), eig.data_ptr<double>() + eig.numel());
    want = descending(want);
    const double top = want.front();
    auto above = [&](std::vector<double> v) {
      v = descending(v);
      v.erase(std::find_if(v.begin(), v.end(), [&](double e) { return e <= 1e-9 * top; }), v.end());
      return v;
    };
    const auto got = above(ms.layers[l].spectrum.eigenvalues);
    want = above(want);
    EXPECT_EQ(got.size(), want.size());
    EXPECT_LE(max_abs_diff(got, want), 1e-12 * top);
    EXPECT_NEAR(ms.layers[l].spectrum.trace, torch::trace(dense[l]).item<double>(),
                1e-12 * ms.layers[l].spectrum.trace);
  }
}

}  // namespace

// Conv2d (dilation 2, groups 2) + BatchNorm2d + leaky_relu + avg pool; Conv2d + silu + flatten;
// Linear. And Linear + BatchNorm1d + tanh; Linear. Every block against the autograd oracle, R = 2;
// the BatchNorm layers' expected degeneracy (conv or linear bias and BN bias are the same shift;
// the BN weight's xhat is linear in the filter and bias columns): 2 null directions per channel,
// all cut (their blocks are on the parameter side: N * positions rows > parameters per unit).
TEST(TorchScriptMarkov, NormalisedBlocksMatchAutogradOracle) {
  REQUIRE_MODELS();
  struct Case {
    std::string file, shape;
    std::vector<std::pair<int, int>> groups;
    int64_t bn_units;
  };
  const std::vector<Case> cases = {{"markov_conv_bn.pt", "2x6x6", {{0, 4}, {4, 7}, {7, 8}}, 4},
                                   {"markov_mlp_bn.pt", "5", {{0, 3}, {3, 4}}, 6}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    auto net = std::make_shared<const TorchScriptNetwork>(model(c.file));
    std::vector<int64_t> shape{12};
    for (int64_t v : parse_input_shape(c.shape)) shape.push_back(v);
    torch::manual_seed(5);
    const auto x = torch::randn(shape, torch::kFloat64);
    const auto mo = markov_options(0.4, 2);
    const auto layers = net->markov_layers(x, mo);
    ASSERT_EQ(layers.size(), c.groups.size());
    int64_t h = 0;
    for (const auto& l : layers) h += l.noise_width;
    const ImportedParameters thetas(*net, "box:0.8", 4, 2);
    auto theta = torch::empty({net->num_params()}, torch::kFloat64);
    for (int64_t j = 0; j < 2; ++j) {
      thetas.fill(j, theta.data_ptr<double>());
      const auto noise = draw_noise(4, static_cast<uint64_t>(j), net->num_params(), 12 * mo.noise_draws, h);
      const auto ms = net->markov_spectrum(theta, x, noise, mo, static_cast<uint64_t>(j));
      expect_blocks_match(ms, dense_chain_blocks(model(c.file), c.groups, *net, theta, x, noise, mo));
      EXPECT_EQ(ms.layers[0].spectrum.num_cut, 2 * c.bn_units);
      EXPECT_EQ(ms.layers[0].blocks_parameter_side, c.bn_units);
    }
  }
}

// What does not fit a chain of Markov layers is refused in one line naming the op and its source.
TEST(TorchScriptMarkov, RefusesWhatIsNotAChain) {
  REQUIRE_MODELS();
  const auto mo = markov_options(0.1, 1);
  const auto x = torch::randn({3, 5}, torch::kFloat64);
  const auto late = error_of([&] { TorchScriptNetwork(model("bad_markov_bn_late.pt")).markov_layers(x, mo); });
  EXPECT_NE(late.find("cannot take aten::batch_norm (a normalisation must directly follow a Linear or Conv2d op) at "),
            std::string::npos)
      << late;
  const auto ln = error_of([&] { TorchScriptNetwork(model("bad_markov_layernorm.pt")).markov_layers(x, mo); });
  EXPECT_NE(ln.find("cannot take aten::layer_norm inside a hidden Markov layer"), std::string::npos) << ln;
  EXPECT_NE(ln.find("functional.py:"), std::string::npos) << ln;  // the op's source line
  const auto sigma =
      error_of([&] { TorchScriptNetwork(model("mlp_scripted.pt")).markov_layers(x, markov_options(0, 1)); });
  EXPECT_NE(sigma.find("--sigma must be a finite number > 0"), std::string::npos) << sigma;
  MeasureOptions o;
  o.model = model("resnet_traced.pt");
  o.input_shape = "1x4x4";
  o.data = "synthetic:blobs:3:16";
  o.num_inputs = 4;
  o.markov = true;
  o.sigma = 0.1;
  EXPECT_NE(error_of([&] { prepare_measurement(o); }).find("skip connection: aten::add at "), std::string::npos);
}
