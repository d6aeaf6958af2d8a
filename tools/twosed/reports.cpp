// Tables, JSON, CSV and --plot figures of measurements (`twosed measure`, `twosed show`).
#include "reports.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <thread>

#include "twosed/data/write_file.h"
#include "twosed/error.h"
#include "twosed/execution.h"
#include "twosed/report/plot.h"

namespace twosed::cli {

void note_default_data(const std::string& data, const std::string& model, const ModelOptions& options) {
  if (!data.empty()) return;
  const auto spec = parse_model_spec(model, options);
  const auto source = default_data_source(spec);
  if (source.rfind("synthetic:", 0) != 0) return;
  std::fprintf(stderr, "twosed: no --data given and %s: using %s\n",
               spec.num_inputs() == 784 ? fmt::format("Fashion-MNIST is not installed in {}", kFashionMnistDir).c_str()
                                        : "the model does not take 784 inputs",
               source.c_str());
}

size_t breakdown_index(const std::vector<double>& eps, double wanted) {
  if (eps.empty()) return 0;
  if (!(wanted > 0)) return eps.size() / 2;
  size_t best = 0;
  for (size_t i = 1; i < eps.size(); ++i)
    if (std::abs(std::log(eps[i] / wanted)) < std::abs(std::log(eps[best] / wanted))) best = i;
  return best;
}

namespace {
// "value +- stderr"; with one parameter sample there is no standard error ("n/a").
std::string pm(double value, double std_error, bool one_sample) {
  return one_sample ? fmt::format("{:.3f} +- n/a", value) : fmt::format("{:.3f} +- {:.3f}", value, std_error);
}
constexpr const char* kOneSampleNote = "  (one sample: no standard error)\n";

// eps with 4 significant digits, or 7 where 4 would round it to another grid value's text
// (0.99951 must not print as 1.000e+00).
std::string eps_text(double eps) {
  const std::string short_text = fmt::format("{:.3e}", eps);
  return std::abs(std::stod(short_text) - eps) <= 1e-6 * eps ? short_text : fmt::format("{:.6e}", eps);
}
}  // namespace

std::string markov_csv(const MeasureResult& r) {
  std::string out = "kind,zeta,eps,n,layer,value,stderr\n";
  const auto& mk = r.markov;
  for (size_t z = 0; z < r.estimate.curves.size(); ++z) {
    const auto& c = r.estimate.curves[z];
    const auto& lo = mk.lower.curves[z];
    for (size_t e = 0; e < c.eps.size(); ++e) {
      out += fmt::format("lower,{},{},,,{},{}\n", c.zeta, c.eps[e], lo.value[e], lo.std_error[e]);
      out += fmt::format("chain,{},{},,,{},{}\n", c.zeta, c.eps[e], c.value[e], c.std_error[e]);
      for (const auto& l : mk.layers)
        out += fmt::format("layer,{},{},,{},{},{}\n", c.zeta, c.eps[e], l.name, l.share.curves[z].value[e],
                           l.share.curves[z].std_error[e]);
    }
  }
  for (size_t i = 0; i < r.estimate.at_n.size(); ++i) {
    const auto& c = r.estimate.at_n[i];
    const auto& l = mk.lower.at_n[i];
    out += fmt::format("at_n_lower,{},{},{},,{},{}\n", l.zeta, l.eps, l.n, l.value, l.std_error);
    out += fmt::format("at_n_chain,{},{},{},,{},{}\n", c.zeta, c.eps, c.n, c.value, c.std_error);
  }
  for (const auto& p : r.estimate.ed) out += fmt::format("ed_chain,0,{},{},,{},{}\n", p.eps, p.n, p.value, p.std_error);
  return out;
}

std::string markov_table(const MeasureResult& r, size_t breakdown) {
  const auto& mk = r.markov;
  const double d = static_cast<double>(r.estimate.num_params);
  const double m = static_cast<double>(std::max<int64_t>(r.estimate.num_param_samples, 1));
  const bool one = r.estimate.num_param_samples < 2;
  std::string out;
  out += fmt::format(
      "  noise   sigma = {:g} after every hidden layer, R = {} draw{} per input, H = {} values per row ({})\n",
      mk.sigma, mk.noise_draws, mk.noise_draws == 1 ? "" : "s", mk.noise_width, mk.noise_description);
  out +=
      fmt::format("  output  {} ({}), M = {} samples, N = {} inputs; {} {:.2f} s\n\n",
                  r.fisher.kind == FisherKind::Exact ? "exact" : "SAMPLED labels, one per input",
                  r.fisher.task == Task::Classify ? "softmax" : fmt::format("Gaussian, s_out = {}", r.fisher.out_noise),
                  r.estimate.num_param_samples, r.num_inputs,
                  r.recomputed ? "recomputed from stored spectra in" : "time", r.seconds_total);
  if (mk.from_spectra_file) {
    out += fmt::format("  Markov layers (from the spectra file)\n  {:>5} {:>10} {:>6} {:>14} {:>7}  {}\n", "name",
                       "params", "share", "mean trace", "cut", "layers");
    for (const auto& l : mk.layers)
      out += fmt::format("  {:>5} {:>10} {:>5.1f}% {:>14.6g} {:>7}  {}\n", l.name, l.params,
                         100.0 * static_cast<double>(l.params) / d, l.mean_trace, l.num_cut, l.description);
  } else {
    out +=
        "  Markov layers: blocks of the Fisher per parameter sample (one per unit or channel of a hidden layer,\n"
        "  all-zero units skipped), how many were solved on the sample / parameter side, the largest, wall time\n"
        "  per sample and the thread time forming blocks / in eigen-solves (hidden layers)\n";
    out += fmt::format("  {:>5} {:>10} {:>6} {:>8}  {:>15} {:>6} {:>9}  {:>15} {:>7}  {}\n", "name", "params", "share",
                       "blocks", "samples/params", "max", "s/sample", "products/eigen", "cut", "layers");
    for (const auto& l : mk.layers) {
      const double per = static_cast<double>(l.blocks_samples_side + l.blocks_parameter_side) / m;
      out += fmt::format(
          "  {:>5} {:>10} {:>5.1f}% {:>8.1f}  {:>15} {:>6} {:>9.4f}  {:>15} {:>7}  {}\n", l.name, l.params,
          100.0 * static_cast<double>(l.params) / d, per,
          fmt::format("{} / {}", l.blocks_samples_side, l.blocks_parameter_side), l.largest_block, l.seconds / m,
          l.hidden ? fmt::format("{:.3f} / {:.3f}", l.cpu_seconds_products / m, l.cpu_seconds_eigen / m) : "-",
          l.num_cut, l.description);
    }
  }
  out += fmt::format("\n  lower and chain 2sED +- bootstrap standard error (B = {}, {} cover)\n", r.estimator.bootstrap,
                     r.estimate.cover == Cover::Box ? "box" : "ellipsoid");
  for (size_t z = 0; z < r.estimate.curves.size(); ++z) {
    const auto& c = r.estimate.curves[z];
    const auto& lo = mk.lower.curves[z];
    out += fmt::format("  zeta = {:g}\n  {:>10}  {:>24}  {:>24}  {:>10}\n", c.zeta, "eps", "lower", "chain", "gap");
    for (size_t e = 0; e < c.eps.size(); ++e)
      out += fmt::format("  {:>10}  {:>24}  {:>24}  {:>10.3f}\n", eps_text(c.eps[e]),
                         pm(lo.value[e], lo.std_error[e], one), pm(c.value[e], c.std_error[e], one),
                         c.value[e] - lo.value[e]);
  }
  if (!r.estimate.curves.empty()) {
    const double eps = r.estimate.curves.front().eps[breakdown];
    out += fmt::format(
        "\n  layer breakdown of the lower 2sED at eps = {:.3e} (contribution +- stderr; share of lower - zeta*d)\n",
        eps);
    out += fmt::format("  {:>5}  {:>10}", "name", "params");
    for (const auto& c : r.estimate.curves) out += fmt::format("  {:>30}", fmt::format("zeta = {:g}", c.zeta));
    out += "\n";
    for (const auto& l : mk.layers) {
      out += fmt::format("  {:>5}  {:>10}", l.name, l.params);
      for (size_t z = 0; z < r.estimate.curves.size(); ++z) {
        const double total = mk.lower.curves[z].value[breakdown] - r.estimate.curves[z].zeta * d;
        const double v = l.share.curves[z].value[breakdown];
        out += fmt::format("  {:>30}", fmt::format("{} ({:.1f}%)", pm(v, l.share.curves[z].std_error[breakdown], one),
                                                   total > 0 ? 100.0 * v / total : 0.0));
      }
      out += "\n";
    }
  }
  for (size_t i = 0; i < r.estimate.at_n.size(); ++i) {
    if (i == 0) out += "\n  at the scale of a training set of size n, eps_zeta(n) = (2 pi log n / n)^(1/(2(1-zeta)))\n";
    const auto& c = r.estimate.at_n[i];
    const auto& l = mk.lower.at_n[i];
    out += fmt::format("    n = {:<10g} zeta = {:<5g} eps = {:.3e}   lower = {}   chain = {}\n", c.n, c.zeta, c.eps,
                       pm(l.value, l.std_error, one), pm(c.value, c.std_error, one));
  }
  if (!r.estimate.ed.empty()) {
    out += "\n  effective dimension of Abbas et al. of the chain's Fisher (gamma = 1)\n";
    for (const auto& p : r.estimate.ed)
      out += fmt::format("    n = {:<10g} ED = {}\n", p.n, pm(p.value, p.std_error, one));
  }
  if (one) out += kOneSampleNote;
  out +=
      "\n  lower = zeta*d + mean_j sum_l log det-term(F_l) / |log eps| (Jensen: lower <= chain, docs/math.md section "
      "4);\n"
      "  chain = the 2sED of the Markov chain model (log-mean-exp). Standard errors are bootstrap over the M\n"
      "  samples; they cannot see the downward bias of the log-mean-exp at finite M.\n";
  return out;
}

namespace {
std::string zeta_label(double zeta) {
  return fmt::format("zeta = {:g}", zeta);
}
}  // namespace

void write_plot(const MeasureResult& r, const std::string& path, size_t breakdown) {
  Figure fig;
  fig.title =
      fmt::format("{}  (d = {}, M = {}, N = {}{})", r.spec.text, r.estimate.num_params, r.estimate.num_param_samples,
                  r.num_inputs, r.markov.enabled ? fmt::format(", Markov sigma = {:g}", r.markov.sigma) : "");
  // zeta*d offsets the curves of different zetas by up to d, so each zeta gets its own panel
  // (up to three; more share one panel).
  const auto& curves = r.estimate.curves;
  const bool one_panel = curves.size() > 3;
  LinePanel shared;
  for (size_t z = 0; z < curves.size(); ++z) {
    LinePanel own;
    LinePanel& panel = one_panel ? shared : own;
    panel.log_x = true;
    panel.x_label = "eps";
    panel.y_label = "dimension";
    const std::string suffix = one_panel ? ", " + zeta_label(curves[z].zeta) : "";
    if (r.markov.enabled) {
      const auto& lo = r.markov.lower.curves[z];
      panel.title = one_panel ? "lower (band: +- stderr) and chain 2sED"
                              : fmt::format("{}: lower (band: +- stderr) and chain 2sED", zeta_label(lo.zeta));
      panel.series.push_back({"lower" + suffix, lo.eps, lo.value, lo.std_error});
      panel.series.push_back({"chain" + suffix, curves[z].eps, curves[z].value, {}});
    } else {
      panel.title =
          one_panel ? "2sED +- bootstrap standard error" : fmt::format("2sED at {}", zeta_label(curves[z].zeta));
      panel.series.push_back({"d_zeta(eps)" + suffix, curves[z].eps, curves[z].value, curves[z].std_error});
    }
    if (!one_panel) fig.panels.push_back(own);
  }
  if (one_panel) fig.panels.push_back(shared);
  if (r.markov.enabled && !curves.empty()) {
    StackedBarPanel bars;
    bars.title = fmt::format("layer breakdown at eps = {:.3g} (lower - zeta*d)", curves.front().eps[breakdown]);
    bars.y_label = "contribution";
    for (const auto& c : curves) bars.categories.push_back(zeta_label(c.zeta));
    for (const auto& l : r.markov.layers) {
      BarStack stack;
      stack.label = fmt::format("{} ({})", l.name, l.description);
      for (const auto& c : l.share.curves) stack.values.push_back(c.value[breakdown]);
      bars.stacks.push_back(stack);
    }
    fig.panels.push_back(bars);
  }
  write_figure(fig, path);
}

std::string to_csv(const MeasureResult& r) {
  std::string out = "kind,zeta,eps,n,value,stderr\n";
  for (const auto& c : r.estimate.curves)
    for (size_t i = 0; i < c.eps.size(); ++i)
      out += fmt::format("curve,{},{},,{},{}\n", c.zeta, c.eps[i], c.value[i], c.std_error[i]);
  for (const auto& p : r.estimate.ed) out += fmt::format("ed,0,{},{},{},{}\n", p.eps, p.n, p.value, p.std_error);
  for (const auto& p : r.estimate.at_n)
    out += fmt::format("at_n,{},{},{},{},{}\n", p.zeta, p.eps, p.n, p.value, p.std_error);
  return out;
}

std::string to_table(const MeasureResult& r, size_t breakdown) {
  const auto& e = r.estimate;
  const bool one = e.num_param_samples < 2;
  std::string out;
  out += r.markov.enabled ? "twosed measure: Markov chain model, lower 2sED (layer by layer) and chain 2sED\n"
                          : "twosed measure: two-scale effective dimension (2sED)\n";
  out += fmt::format("  model   {}  (d = {} parameters, k = {} outputs{})\n", r.spec.text, e.num_params, r.num_outputs,
                     r.spec.text.rfind("mlp:", 0) == 0 && !r.activation.empty() ? ", " + r.activation : "");
  out += fmt::format("  data    {}\n", r.data_description);
  out += fmt::format("  Theta   {}\n", r.space_description);
  if (!r.jacobian_description.empty()) out += fmt::format("  Jacobian {}\n", r.jacobian_description);
  if (r.markov.enabled) return out + markov_table(r, breakdown);
  const int64_t size = r.samples.empty() ? 0 : r.samples.front().matrix_size;
  out +=
      fmt::format("  Fisher  {} ({}), {} x {} {} matrix per sample, M = {} samples, N = {} inputs\n",
                  r.fisher.kind == FisherKind::Exact ? "exact" : "SAMPLED labels, one per input",
                  r.fisher.task == Task::Classify ? "softmax" : fmt::format("Gaussian, s_out = {}", r.fisher.out_noise),
                  size, size, r.side == GramSide::Samples ? "Gram (sample side)" : "Fisher (parameter side)",
                  e.num_param_samples, r.num_inputs);
  int64_t kept_min = INT64_MAX, kept_max = 0, cut = 0;
  double fb = 0, gram = 0, eig = 0;
  for (const auto& s : r.samples) {
    kept_min = std::min(kept_min, s.kept);
    kept_max = std::max(kept_max, s.kept);
    cut += s.cut;
    fb += s.seconds_forward_backward;
    gram += s.seconds_gram;
    eig += s.seconds_eigen;
  }
  out += fmt::format("  cutoff  {} eigenvalues <= {:g} x largest removed in all; {}..{} kept per sample\n", cut,
                     r.fisher.cutoff, kept_min, kept_max);
  // A recomputed result's own time is the estimator's alone; the parts are the stored run's.
  if (r.recomputed)
    out += fmt::format(
        "  time    recomputed from stored spectra in {:.2f} s (measured: passes {:.2f} s, Gram {:.2f} s, eigen {:.2f} "
        "s)\n\n",
        r.seconds_total, fb, gram, eig);
  else
    out += fmt::format("  time    {:.2f} s (passes {:.2f} s, Gram {:.2f} s, eigen {:.2f} s)\n\n", r.seconds_total, fb,
                       gram, eig);

  out += fmt::format("  d_zeta(eps) +- bootstrap standard error (B = {}, {} cover)\n", r.estimator.bootstrap,
                     e.cover == Cover::Box ? "box" : "ellipsoid");
  out += fmt::format("  {:>10}", "eps");
  for (const auto& c : e.curves) out += fmt::format("  {:>24}", fmt::format("zeta = {:g}", c.zeta));
  out += "\n";
  const size_t rows = e.curves.empty() ? 0 : e.curves.front().eps.size();
  for (size_t i = 0; i < rows; ++i) {
    out += fmt::format("  {:>10}", eps_text(e.curves.front().eps[i]));
    for (const auto& c : e.curves) out += fmt::format("  {:>24}", pm(c.value[i], c.std_error[i], one));
    out += "\n";
  }
  if (!e.at_n.empty()) {
    out += "\n  at the scale of a training set of size n, eps_zeta(n) = (2 pi log n / n)^(1/(2(1-zeta)))\n";
    for (const auto& p : e.at_n)
      out += fmt::format("    n = {:<10g} zeta = {:<5g} eps = {:.3e}   d = {}\n", p.n, p.zeta, p.eps,
                         pm(p.value, p.std_error, one));
  }
  if (!e.ed.empty()) {
    out += "\n  effective dimension of Abbas et al. (gamma = 1)\n";
    for (const auto& p : e.ed) out += fmt::format("    n = {:<10g} ED = {}\n", p.n, pm(p.value, p.std_error, one));
  }
  if (one) out += kOneSampleNote;
  out += fmt::format(
      "\n  As eps -> 0, d_zeta -> zeta*d + (1-zeta)*rank (d = {}; rank <= min(d, matrix size)).\n"
      "  Standard errors are bootstrap over the M samples; they cannot see the downward bias of\n"
      "  the log-mean-exp at finite M.\n",
      e.num_params);
  return out;
}

std::string plot_extension(const std::string& path, const std::string& hint) {
  const auto dot = path.rfind('.');
  std::string ext = dot == std::string::npos ? "" : path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext != "png" && ext != "svg")
    throw UsageError(
        fmt::format("--plot {}: expected a .png or .svg file name{}", path, hint.empty() ? "" : " (" + hint + ")"));
  return ext;
}

void write_output(const std::string& text, const std::string& path) {
  if (path.empty()) {
    // Checked too: `twosed ... > /dev/full` must not exit 0 having written nothing.
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
      throw DataError(fmt::format("standard output: cannot write output: {}", std::strerror(errno)));
    return;
  }
  write_file_atomically(path, text, "output");
}

namespace {
// LibTorch's CPU allocator throws c10::Error "DefaultCPUAllocator: can't allocate memory: you
// tried to allocate N bytes. Error code 12 (...)"; the C++ runtime throws std::bad_alloc. The
// c10::Error is told by its text: this file is also part of the torch-free front binary.
bool is_out_of_memory(const std::exception& e, std::string& size) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const std::string msg = e.what();
  if (msg.find("DefaultCPUAllocator") == std::string::npos || msg.find("can't allocate memory") == std::string::npos)
    return false;
  const std::string key = "tried to allocate ";
  const size_t at = msg.find(key);
  if (at != std::string::npos) {
    const double bytes = std::strtod(msg.c_str() + at + key.size(), nullptr);
    if (bytes > 0) size = fmt::format("{:.3g} GB requested", bytes / 1e9);
  }
  return true;
}
}  // namespace

void rethrow_if_out_of_memory(const std::exception& e, const std::string& stage) {
  std::string size;
  if (!is_out_of_memory(e, size)) return;
  throw DataError(
      fmt::format("out of memory while {} ({}{}; use fewer --inputs or --samples, a smaller model, or "
                  "check the memory limits: ulimit -v, the cgroup's memory.max, --plan)",
                  stage, size, size.empty() ? "an allocation failed" : ""));
}

void write_training_plot(const std::vector<std::pair<std::string, std::vector<TrainingRecord>>>& runs,
                         const std::string& path) {
  LinePanel train, test;
  train.title = "training loss";
  test.title = "test loss";
  for (auto* p : {&train, &test}) {
    p->x_label = "epoch";
    p->y_label = "mean loss";
    p->log_y = true;
  }
  for (const auto& [label, recs] : runs) {
    PlotSeries a{label, {}, {}, {}}, b{label, {}, {}, {}};
    for (const auto& r : recs) {
      if (r.step >= 0) continue;
      a.x.push_back(static_cast<double>(r.epoch));
      a.y.push_back(r.train_loss);
      if (!std::isnan(r.test_loss)) {
        b.x.push_back(static_cast<double>(r.epoch));
        b.y.push_back(r.test_loss);
      }
    }
    train.series.push_back(std::move(a));
    if (!b.x.empty()) test.series.push_back(std::move(b));
  }
  Figure fig;
  fig.panels.push_back(train);
  if (!test.series.empty()) fig.panels.push_back(test);
  write_figure(fig, path);
}

namespace {
std::string num(double v, const char* fmt_spec = "{:.6g}") {
  return std::isnan(v) ? "-" : fmt::format(fmt::runtime(fmt_spec), v);
}
}  // namespace

std::string training_table(const RunInfo& info, const std::vector<TrainingRecord>& recs) {
  std::string out = info.id > 0 ? fmt::format("run {}: training of {} ({})\n", info.id, info.label, info.status)
                                : fmt::format("training of {} (not recorded)\n", info.label);
  out += fmt::format("  {:>6} {:>8} {:>12} {:>10} {:>12} {:>10} {:>9}\n", "epoch", "step", "train loss", "train acc",
                     "test loss", "test acc", "seconds");
  for (const auto& r : recs)
    out += fmt::format("  {:>6} {:>8} {:>12} {:>10} {:>12} {:>10} {:>9.2f}\n", r.epoch,
                       r.step < 0 ? "-" : std::to_string(r.step), num(r.train_loss), num(r.train_accuracy, "{:.4f}"),
                       num(r.test_loss), num(r.test_accuracy, "{:.4f}"), r.seconds);
  return out;
}

nlohmann::json training_json(const RunInfo& info, const std::vector<TrainingRecord>& recs) {
  auto v = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
  using nlohmann::json;
  json arr = json::array();
  for (const auto& r : recs)
    arr.push_back({{"epoch", r.epoch},
                   {"step", r.step < 0 ? json(nullptr) : json(r.step)},
                   {"train_loss", v(r.train_loss)},
                   {"train_accuracy", v(r.train_accuracy)},
                   {"test_loss", v(r.test_loss)},
                   {"test_accuracy", v(r.test_accuracy)},
                   {"seconds", r.seconds}});
  return {{"run", info.id},
          {"kind", "train"},
          {"status", info.status},
          {"config", json::parse(info.config)},
          {"result", info.result.empty() ? json(nullptr) : json::parse(info.result)},
          {"records", arr}};
}

std::string training_csv(const std::vector<TrainingRecord>& recs) {
  std::string out = "epoch,step,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n";
  auto v = [](double x) { return std::isnan(x) ? std::string() : fmt::format("{}", x); };
  for (const auto& r : recs)
    out += fmt::format("{},{},{},{},{},{},{:.6f}\n", r.epoch, r.step < 0 ? "" : std::to_string(r.step), v(r.train_loss),
                       v(r.train_accuracy), v(r.test_loss), v(r.test_accuracy), r.seconds);
  return out;
}

}  // namespace twosed::cli

namespace twosed::cli {

uint64_t parse_seed(const std::string& text, const std::string& option) {
  // CLI11 reads "-1" and 2^64 into a uint64 as 2^64-1; the raw text is checked instead.
  const std::string rule = fmt::format("{} must be an integer in [0, 2^64-1], got '{}'", option, text);
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    throw UsageError(rule);
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) throw UsageError(rule);
  return static_cast<uint64_t>(v);
}

int checked_threads(int requested, const std::string& option) {
  const int cores = hardware_threads();
  if (requested == 0) return cores;
  // More threads than 4 per core only adds contention (the work is BLAS and per-sample loops):
  // a value past that is a typo rather than a choice.
  if (requested < 0) throw UsageError(fmt::format("{} must be >= 1 (or 0: every core), got {}", option, requested));
  if (requested > 4 * cores)
    throw UsageError(fmt::format("{} must be in [1, {}] (4 x the {} cores of this machine), got {}", option, 4 * cores,
                                 cores, requested));
  constexpr int kBlasMax = 64;  // OpenBLAS's build-time maximum (NUM_THREADS) on Debian
  if (requested > kBlasMax)
    std::fprintf(stderr, "twosed: warning: %s %d: using %d (OpenBLAS's maximum)\n", option.c_str(), requested,
                 kBlasMax);
  return std::min(requested, kBlasMax);
}

void null_standard_errors(nlohmann::json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& key = it.key();
      if (key == "stderr" || (key.size() > 7 && key.compare(key.size() - 7, 7, "_stderr") == 0)) {
        if (it->is_array())
          for (auto& v : *it) v = nullptr;
        else
          *it = nullptr;
      } else {
        null_standard_errors(*it);
      }
    }
  } else if (j.is_array()) {
    for (auto& v : j) null_standard_errors(v);
  }
}

}  // namespace twosed::cli
