// `twosed measure`: options -> twosed::run_measure -> table / JSON / CSV.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "commands.h"
#include "interrupt.h"
#include "mpi/ranks.h"
#include "reports.h"
#include "twosed/data/write_file.h"
#include "twosed/error.h"
#include "twosed/measure/measure.h"
#include "twosed/model/torchscript.h"
#include "twosed/store/runs.h"

namespace twosed::cli {
namespace {

// Every option of `twosed measure` with its default; kDefaults also feeds the help text.
struct MeasureParams {
  std::string model = "mlp:784-64-10";
  std::string input_shape;
  std::string jacobian = "auto";
  std::string act = "relu";
  bool no_bias = false;
  std::string task = "classify";
  double out_noise = 1.0;
  std::string data;
  std::string inputs_file;
  bool standardize = false;
  int64_t inputs = 100;
  int64_t samples = 100;
  std::string space = "init";
  std::string thetas;
  std::string fisher = "exact";
  std::string side = "auto";
  std::string eps = "1e-6:1e-1:25";
  std::string zeta = "0,0.5";
  std::string cover = "box";
  std::string ed_n;
  std::string n;
  int64_t bootstrap = 1000;
  std::string seed = "0";  // checked as text: CLI11 wraps -1 into a uint64
  int threads = 0;
  int parallel_samples = 0;
  int64_t memory_mb = 256;
  std::string format = "table";
  std::string out;
  std::string spectra_out;
  std::string spectra_in;
  bool quiet = false;
  bool plan = false;
  bool markov = false;
  double sigma = 0.0;
  int64_t noise_draws = 1;
  std::string noise;
  std::string plot;
  double breakdown_eps = 0.0;
  std::string db = kDefaultResultsDb;
  bool no_db = false;
  int64_t resume = 0;
};
const MeasureParams kDefaults;

const char* kExamples = R"(Examples:
  twosed measure
      the embedded default: mlp:784-64-10 on Fashion-MNIST (synthetic data if not installed)
  twosed measure --model mlp:784-64-32-10 --data idx:/usr/share/datasets/fashion-mnist \
                 --inputs 100 --samples 100 --zeta 0,0.5 --format table
  twosed measure --model cnn:1x28x28-c8k3-relu-p2-f10 --data idx:/usr/share/datasets/fashion-mnist
  twosed measure --model mlp:54-32-7 --data csv:train.csv:label=Cover_Type --standardize --ed-n 1e4,1e5
  twosed measure --model mlp:10-1 --no-bias --task regress --out-noise 0.5 --data synthetic:blobs:2:10
  twosed measure --model mlp:20-16-3 --thetas thetas.npy --inputs-file x.npy --format json --out r.json
  twosed measure --model mlp:784-256-128-10 --markov --sigma 0.1 --plot markov.png
      the Markov chain model: lower and chain 2sED, the layer breakdown, a figure
  twosed measure --model cnn:3x32x32-c16k3-relu-p2-c32k3-relu-p2-f64-relu-f10 --markov --sigma 0.5 \
                 --noise-draws 2 --breakdown-eps 1e-3 --format json --out cnn.json

Data sources: csv:PATH[:label=COL]  idx:DIR  idx:IMAGES,LABELS  synthetic:blobs:K:DIM[:N]
              synthetic:teacher:SPEC[:N]  synthetic:covertype[:N] (54 features, 7 classes)
Model specs:  mlp:IN-H1-...-K (with --act)   cnn:CxHxW-TOKEN-... with tokens cOkS[sT][pP] (conv),
              pS[sT] (max pool), aS[sT] (avg pool), fO (linear), relu, tanh, sigmoid, gelu, flatten
Exit codes:   0 ok, 1 data error, 2 usage error, 3 a bug in twosed (please report it))";

// Runs a library check and, if it throws, names the command-line option in the message.
template <typename F>
void with_option(const std::string& option, const std::string& value, F&& check) {
  try {
    check();
  } catch (const OptionError& e) {
    throw UsageError(fmt::format("{} {}: {}", option, value, e.rule()));
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{} {}: {}", option, value, e.what()));
  }
}

template <typename T>
T pick(const std::string& option, const std::string& value, const std::vector<std::pair<std::string, T>>& choices) {
  std::string names;
  for (const auto& [name, v] : choices) {
    if (name == value) return v;
    names += (names.empty() ? "" : ", ") + name;
  }
  throw UsageError(fmt::format("{} {}: expected one of {}", option, value, names));
}

// A progress bar with ETA on stderr, drawn only when stderr is a terminal. Markov runs also
// report each finished layer, so a long sample (a large CNN) shows progress within it.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled && ::isatty(2)), start_(Clock::now()) {}
  void update(int64_t done, int64_t total) { draw(static_cast<double>(done), total, ""); }
  void update_layer(int64_t sample, int64_t layers_done, int64_t layers, int64_t total) {
    if (layers_done == layers) return;  // the sample's own update follows
    draw(static_cast<double>(sample) + static_cast<double>(layers_done) / static_cast<double>(layers), total,
         fmt::format(" (sample {}: layer {}/{})", sample + 1, layers_done, layers));
  }

 private:
  void draw(double done, int64_t total, const std::string& detail) {
    if (!enabled_) return;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double eta = done > 0 ? elapsed * (static_cast<double>(total) - done) / done : 0;
    const int width = 30;
    const int filled =
        std::clamp(static_cast<int>(width * done / static_cast<double>(std::max<int64_t>(total, 1))), 0, width);
    std::fprintf(stderr, "\r  [%s%s] %lld/%lld parameter samples%s  %.1fs elapsed  ETA %.1fs   ",
                 std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), detail.c_str(), elapsed, eta);
    if (done == static_cast<double>(total)) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

  using Clock = std::chrono::steady_clock;
  bool enabled_;
  Clock::time_point start_;
};

// MeasureOptions from the parsed flags; every check that needs no file is done here.
MeasureOptions build_options(const MeasureParams& p, bool sigma_given, bool breakdown_given) {
  MeasureOptions o;
  o.model = p.model;
  o.input_shape = p.input_shape;
  o.jacobian = p.jacobian;
  o.model_options.activation = parse_activation(p.act, "--act");
  o.model_options.bias = !p.no_bias;
  o.fisher.task = pick<Task>("--task", p.task, {{"classify", Task::Classify}, {"regress", Task::Regress}});
  o.fisher.out_noise = p.out_noise;
  o.fisher.kind =
      pick<FisherKind>("--fisher", p.fisher, {{"exact", FisherKind::Exact}, {"sampled", FisherKind::Sampled}});
  o.fisher.side =
      pick<GramSide>("--side", p.side,
                     {{"auto", GramSide::Auto}, {"samples", GramSide::Samples}, {"parameters", GramSide::Parameters}});
  if (p.memory_mb < 1 || p.memory_mb > (1 << 20))
    throw UsageError(fmt::format("--memory-budget must be in [1, 1048576] MiB, got {}", p.memory_mb));
  o.fisher.memory_budget = p.memory_mb << 20;
  o.data = p.data;
  o.inputs_file = p.inputs_file;
  o.standardize = p.standardize;
  o.num_inputs = p.inputs;
  o.num_param_samples = p.samples;
  o.parallel_samples = p.parallel_samples;
  o.space = p.space;
  o.thetas_file = p.thetas;
  o.spectra_out = p.spectra_out;
  o.spectra_in = p.spectra_in;
  o.estimator.eps = parse_eps_grid(p.eps, "--eps");
  o.estimator.zetas = parse_double_list(p.zeta, "--zeta");
  o.estimator.cover = pick<Cover>("--cover", p.cover, {{"box", Cover::Box}, {"ellipsoid", Cover::Ellipsoid}});
  if (!p.ed_n.empty()) o.estimator.ed_n = parse_double_list(p.ed_n, "--ed-n");
  if (!p.n.empty()) o.estimator.at_n = parse_double_list(p.n, "--n");
  o.estimator.bootstrap = p.bootstrap;
  // Check each estimator option alone, so that the error names its flag.
  auto check = [&](const std::string& option, const std::string& value, auto set) {
    EstimatorOptions only;
    set(only);
    with_option(option, value, [&] { validate_estimator_options(only); });
  };
  check("--zeta", p.zeta, [&](EstimatorOptions& e) { e.zetas = o.estimator.zetas; });
  check("--ed-n", p.ed_n, [&](EstimatorOptions& e) { e.ed_n = o.estimator.ed_n; });
  check("--n", p.n, [&](EstimatorOptions& e) { e.at_n = o.estimator.at_n; });
  check("--bootstrap", std::to_string(p.bootstrap), [&](EstimatorOptions& e) { e.bootstrap = o.estimator.bootstrap; });
  o.seed = parse_seed(p.seed, "--seed");
  o.markov = p.markov;
  o.sigma = p.sigma;
  o.noise_draws = p.noise_draws;
  o.noise_file = p.noise;
  if (p.markov && !sigma_given) throw UsageError("--markov needs --sigma (the noise standard deviation, > 0)");
  if (p.noise_draws < 1 || p.noise_draws > 1000000)
    throw UsageError(fmt::format("--noise-draws must be in [1, 1000000], got {}", p.noise_draws));
  if (breakdown_given && !(p.breakdown_eps > 0 && p.breakdown_eps < 1))
    throw UsageError(fmt::format("--breakdown-eps must be in (0,1), got {}", p.breakdown_eps));
  return o;
}

// Output files are checked before the computation, not found unwritable after it.
void check_outputs(const MeasureParams& p) {
  if (!p.out.empty()) check_writable(p.out, "output");
  if (!p.spectra_out.empty()) check_writable(p.spectra_out, "spectra");
  if (!p.plot.empty()) {
    plot_extension(p.plot);
    check_writable(p.plot, "figure");
  }
}

// The table, JSON or CSV of a finished measurement, and the figure.
void write_result(const MeasureParams& p, const std::string& format, const MeasureResult& result,
                  const std::string& stored) {
  const size_t breakdown = breakdown_index(
      result.estimate.curves.empty() ? std::vector<double>{} : result.estimate.curves.front().eps, p.breakdown_eps);
  if (format == "json") {
    auto j = result_json(result);
    if (result.estimate.num_param_samples < 2) null_standard_errors(j);
    if (mpi::size() > 1) j["context"]["mpi"] = {{"ranks", mpi::size()}, {"threads", mpi::threads_reason()}};
    j["resumed_samples"] = result.resumed_samples;
    if (!stored.empty()) j["stored"] = stored;
    write_output(j.dump(2) + "\n", p.out);
  } else if (format == "csv") {
    write_output(result.markov.enabled ? markov_csv(result) : to_csv(result), p.out);
  } else {
    write_output(to_table(result, breakdown) + (stored.empty() ? "" : "\n  stored as " + stored + "\n"), p.out);
  }
  if (!p.plot.empty()) in_stage("drawing the figure", [&] { write_plot(result, p.plot, breakdown); });
}

// Runs the measurement (recorded in the database unless --no-db or --spectra-in) and writes it.
int run_measure_command(const MeasureParams& p, bool sigma_given, bool breakdown_given, bool resume_given) {
  MeasureOptions o = build_options(p, sigma_given, breakdown_given);
  const auto format = pick<std::string>("--format", p.format, {{"table", "table"}, {"json", "json"}, {"csv", "csv"}});
  check_outputs(p);
  // LibTorch's own default can be a single thread; use every core unless told otherwise.
  ExecutionContext ctx;
  ctx.threads = p.threads != 0 ? checked_threads(p.threads, "--threads") : mpi::default_threads();
  ctx.executor = mpi::executor();  // null unless started by mpirun with P > 1 ranks
  ScopedThreads threads(ctx);
  ProgressBar bar(!p.quiet);
  o.progress = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
  o.layer_progress = [&bar](int64_t sample, int64_t done, int64_t layers, int64_t total) {
    bar.update_layer(sample, done, layers, total);
  };
  // Once the data are loaded (the first sample starts), so that an error stays the only line.
  if (o.inputs_file.empty() && o.spectra_in.empty())
    o.on_start = [data = o.data, model = o.model, mo = o.model_options](const SpectraHeader&) {
      note_default_data(data, model, mo);
    };
  if (p.plan) {
    write_output(plan_measure(o, ctx), p.out);
    return 0;
  }
  MeasureResult result;
  std::string stored;
  if (p.no_db || !o.spectra_in.empty()) {
    result = in_stage("measuring", [&] { return run_measure(o, ctx); });
  } else {
    ResultsStore store(p.db);
    RecordOptions ropts;
    ropts.resume = resume_given;
    ropts.resume_run = p.resume;
    // Ctrl-C says what is stored and how to continue.
    ResumeOnInterrupt stop(p.db, o.thetas_file.empty() ? o.num_param_samples : 0);
    ropts.on_run = [&stop](int64_t run, int64_t stored) { stop.set_run(run, stored); };
    o.on_sample = [&stop](const SampleRecord&) { stop.sample_stored(); };
    o.progress = [&bar, &stop](int64_t done, int64_t total) { stop.set_total(total), bar.update(done, total); };
    auto rec = in_stage("measuring", [&] { return record_measure(store, o, ropts, ctx); });
    result = std::move(rec.result);
    stored = fmt::format("run {} in {}", rec.run, p.db);
    if (result.resumed_samples > 0)
      stored +=
          fmt::format(" (resumed: {} of {} samples taken from the database, {} computed now)", result.resumed_samples,
                      result.samples.size(), static_cast<int64_t>(result.samples.size()) - result.resumed_samples);
    if (!p.quiet) std::fprintf(stderr, "twosed: recorded as %s\n", stored.c_str());
  }
  if (!p.quiet && !mpi::stats().empty()) std::fprintf(stderr, "twosed: MPI: %s\n", mpi::stats().c_str());
  if (p.inputs_file.empty() && p.spectra_in.empty() && result.num_inputs < p.inputs)
    std::fprintf(stderr, "twosed: warning: N = %lld requested, the data has %lld examples: using %lld\n",
                 static_cast<long long>(p.inputs), static_cast<long long>(result.num_inputs),
                 static_cast<long long>(result.num_inputs));
  write_result(p, format, result, stored);
  return 0;
}

}  // namespace

Runner add_measure_command(CLI::App& app) {
  auto p = std::make_shared<MeasureParams>(kDefaults);
  auto* cmd = app.add_subcommand("measure", "The 2sED of a network on a data set (docs/math.md sections 2-5)");
  cmd->footer(kExamples);
  auto def = [](auto v) { return fmt::format("(default: {})", v); };
  auto* model =
      cmd->add_option("--model", p->model,
                      "Model spec, mlp:IN-H1-...-K or cnn:CxHxW-..., or a TorchScript file (.pt; it runs its code: "
                      "load only files you trust) " +
                          def(kDefaults.model));
  cmd->add_option("--input-shape", p->input_shape,
                  "TorchScript model: one example's shape, CxHxW or F (default: the data's)");
  cmd->add_option("--jacobian", p->jacobian,
                  "TorchScript model: auto | autograd | structured " + def(kDefaults.jacobian));
  cmd->add_option("--act", p->act, "Activation between mlp layers: relu|tanh|sigmoid|gelu " + def(kDefaults.act));
  cmd->add_flag("--no-bias", p->no_bias, "Layers without bias (as in Abbas et al.)");
  cmd->add_option("--task", p->task, "Output model: classify (softmax) | regress (Gaussian) " + def(kDefaults.task));
  cmd->add_option("--out-noise", p->out_noise, "Output noise s_out for --task regress " + def(kDefaults.out_noise));
  auto* data = cmd->add_option("--data", p->data,
                               "Data source (see below) (default: Fashion-MNIST if installed and the model takes 784 "
                               "inputs, else synthetic blobs)");
  auto* inputs_file =
      cmd->add_option("--inputs-file", p->inputs_file, "Inputs as .npy (N x features): all rows, in order");
  cmd->add_flag("--standardize", p->standardize, "z-score every feature over the data set");
  auto* inputs =
      cmd->add_option("--inputs,-N", p->inputs, "N, size of the seeded input subset " + def(kDefaults.inputs));
  auto* samples = cmd->add_option("--samples,-M", p->samples, "M, parameter samples " + def(kDefaults.samples));
  auto* space =
      cmd->add_option("--space", p->space, "Parameter space: init | box:A | local:CKPT.npy:R " + def(kDefaults.space));
  auto* thetas = cmd->add_option("--thetas", p->thetas, "Evaluate at the parameter samples in this .npy (M x d)");
  cmd->add_option("--fisher", p->fisher,
                  "exact | sampled (one label per input; labelled in the output) " + def(kDefaults.fisher));
  cmd->add_option("--side", p->side,
                  "Eigen-problem side: auto | samples (Gram) | parameters (d x d) " + def(kDefaults.side));
  cmd->add_option("--eps", p->eps, "eps grid: LO:HI:COUNT (log-spaced) or a list " + def(kDefaults.eps));
  cmd->add_option("--zeta", p->zeta, "zeta values in [0,1), comma-separated " + def(kDefaults.zeta));
  cmd->add_option("--cover", p->cover, "box | ellipsoid " + def(kDefaults.cover));
  cmd->add_option("--ed-n", p->ed_n, "Also the Abbas et al. effective dimension at these n (list)");
  cmd->add_option("--n", p->n, "Also d_zeta at eps_zeta(n) for these training-set sizes n (list)");
  cmd->add_option("--bootstrap", p->bootstrap, "Bootstrap resamples B for standard errors " + def(kDefaults.bootstrap));
  cmd->add_option("--seed", p->seed, "Seed for parameter draws, input subset, bootstrap " + def(kDefaults.seed));
  cmd->add_option("--threads", p->threads, "Threads for LibTorch and OpenBLAS (default: the number of cores)");
  cmd->add_option("--parallel-samples", p->parallel_samples,
                  "Parameter samples computed at once, each on one thread; 0: chosen from a cost model, 1: one after "
                  "the other on all threads (results equal a --threads 1 run) " +
                      def(kDefaults.parallel_samples));
  cmd->add_option("--memory-budget", p->memory_mb,
                  "MiB for any one temporary (conv chunks) " + def(kDefaults.memory_mb));
  cmd->add_option("--format", p->format, "table | json | csv " + def(kDefaults.format));
  cmd->add_option("--out", p->out, "Write the result to this file instead of stdout");
  auto* spectra_out = cmd->add_option("--spectra-out", p->spectra_out,
                                      "Write each sample's spectrum to this file (JSON lines) as soon as it is done");
  auto* spectra_in =
      cmd->add_option("--spectra-in", p->spectra_in,
                      "Curves from a --spectra-out file (of a finished or stopped run) without recomputing spectra");
  auto* markov = cmd->add_flag("--markov", p->markov,
                               "The Markov chain model: Gaussian noise after every hidden layer; lower 2sED layer by "
                               "layer, chain 2sED, layer breakdown (needs --sigma)");
  auto* sigma = cmd->add_option("--sigma", p->sigma, "Noise standard deviation of --markov (> 0)");
  auto* draws = cmd->add_option("--noise-draws", p->noise_draws,
                                "R, noise draws per input for --markov " + def(kDefaults.noise_draws));
  auto* noise = cmd->add_option("--noise", p->noise,
                                "--markov noise from this .npy of standard normals, M x N*R x H (or M x N x R x H), "
                                "row i*R+r, hidden layers' outputs in layer order");
  auto* breakdown = cmd->add_option("--breakdown-eps", p->breakdown_eps,
                                    "eps of the layer breakdown table and bars (nearest grid value; default: the "
                                    "grid's middle)");
  cmd->add_option("--plot", p->plot,
                  "Also draw the curves (and for --markov the layer breakdown) to this .png or .svg (gnuplot)");
  sigma->needs(markov);
  draws->needs(markov);
  noise->needs(markov);
  breakdown->needs(markov);
  markov->excludes(spectra_in);
  auto* db = cmd->add_option("--db", p->db,
                             "Results database: the run, its configuration and every finished sample are committed "
                             "here as they are done " +
                                 def(kDefaults.db));
  auto* no_db = cmd->add_flag("--no-db", p->no_db, "Do not record the run in a results database");
  auto* resume = cmd->add_option("--resume", p->resume,
                                 "Continue an unfinished run of this configuration from its committed samples (the "
                                 "newest, or run RUN)")
                     ->expected(0, 1)
                     ->type_name("[RUN]");
  no_db->excludes(db)->excludes(resume);
  resume->excludes(spectra_in);
  cmd->add_flag("--quiet,-q", p->quiet, "No progress bar");
  cmd->add_flag("--plan", p->plan,
                "Print the layers, the matrix size and the memory needed per parameter sample, then exit");
  spectra_in->excludes(spectra_out)
      ->excludes(data)
      ->excludes(inputs_file)
      ->excludes(thetas)
      ->excludes(samples)
      ->excludes(model);
  inputs_file->excludes(data)->excludes(inputs);
  thetas->excludes(samples)->excludes(space);

  return [p, sigma, breakdown, resume]() {
    return run_measure_command(*p, sigma->count() > 0, breakdown->count() > 0, resume->count() > 0);
  };
}

}  // namespace twosed::cli
