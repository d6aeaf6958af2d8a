// Running a study (LibTorch side): each model measured, then trained with each seed, then
// correlated. Its configuration and result formats are in study.cpp (twosed_core).
#include "twosed/study/study.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "study_names.h"
#include "twosed/data/data.h"
#include "twosed/error.h"
#include "twosed/estimate/estimator.h"
#include "twosed/measure/measure.h"
#include "twosed/store/runs.h"

namespace twosed {

namespace {

using nlohmann::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / static_cast<double>(v.size());
}

double sd_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

// One study in progress: its store, configuration and run, and what every model shares.
struct StudyRun {
  StudyRun(ResultsStore& st, const StudyConfig& c, const StudyOptions& o) : store(st), cfg(c), opts(o) {}
  ResultsStore& store;
  const StudyConfig& cfg;
  const StudyOptions& opts;
  int64_t study = 0;
  std::string data;  // the training data's description
  double n = 0;      // the training-set size, which sets eps_zeta(n) and the ED's n
  int64_t n_test = 0;
  bool with_ed = false;            // kappa(n) > 1
  bool at_n_ok = false;            // eps_zeta(n) < 1
  std::vector<double> grid;        // the default eps grid plus the study's eps values
  std::vector<std::string> names;  // measure names in table order

  void say(const std::string& s) const {
    if (opts.progress) opts.progress(s);
  }
  size_t grid_index(double e) const {
    return static_cast<size_t>(std::lower_bound(grid.begin(), grid.end(), e) - grid.begin());
  }
  // A child run of this kind and configuration, finished or not.
  std::optional<RunInfo> child(const std::string& kind, const std::string& child_config, bool done) const {
    std::optional<RunInfo> found;
    for (const auto& r : store.children(study))
      if (r.kind == kind && r.config == child_config && (r.status == "done") == done) found = r;
    return found;
  }
  // A finished measurement with this configuration is reused; an unfinished one resumed.
  std::pair<int64_t, MeasureResult> measure(const MeasureOptions& mo, const std::string& label,
                                            const std::string& message) const {
    const auto mc = measure_config(mo);
    if (auto done = child("measure", mc, true)) return {done->id, stored_measure(store, done->id, mo.estimator)};
    say(message);
    RecordOptions ro;
    ro.parent = study;
    ro.label = label;
    if (auto open = child("measure", mc, false)) ro.resume = true, ro.resume_run = open->id;
    auto rec = record_measure(store, mo, ro, opts.execution);
    return {rec.run, std::move(rec.result)};
  }
  // Records a measure of model `m` under `name`, keeping the first-seen order of names.
  void add(StudyModelResult& m, const std::string& name, double value, double std_error) {
    m.measures[name] = {value, std_error};
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
};

int64_t open_study(ResultsStore& store, const StudyConfig& cfg, const std::string& config, const StudyOptions& opts) {
  if (!opts.resume) return store.create_run("study", cfg.name, config);
  RecordOptions ro;
  ro.resume = true;
  ro.resume_run = opts.resume_run;
  const int64_t study = find_resumable(store, "study", config, ro).id;
  store.reopen_run(study);
  return study;
}

// The training data (of the first model's spec) sets n, the eps grid and what is measured.
void prepare(StudyRun& s) {
  const auto& m0 = s.cfg.models.front();
  const auto data0 = load_training_data(s.cfg.data, parse_model_spec(m0.spec, m0.options), m0.options);
  s.data = data0.description;
  s.n = static_cast<double>(data0.train.size());
  s.n_test = static_cast<int64_t>(data0.test.size());
  s.with_ed = abbas_kappa(s.n) > 1.0;
  s.at_n_ok = s.n > 3;
  s.grid = default_eps_grid();
  s.grid.insert(s.grid.end(), s.cfg.eps.begin(), s.cfg.eps.end());
  std::sort(s.grid.begin(), s.grid.end());
  s.grid.erase(std::unique(s.grid.begin(), s.grid.end()), s.grid.end());
}

StudyCurve study_curve(const Curve& c) {
  return {c.eps, c.value, c.std_error};
}

MeasureOptions model_measure_options(const StudyRun& s, const StudyModel& m) {
  const auto& cfg = s.cfg;
  MeasureOptions mo;
  mo.model = m.spec;
  mo.model_options = m.options;
  mo.data = cfg.data.data;
  mo.standardize = cfg.data.standardize;
  mo.num_inputs = cfg.inputs;
  mo.num_param_samples = cfg.samples;
  mo.fisher.task = cfg.data.task;
  mo.estimator.eps = s.grid;
  mo.estimator.zetas = cfg.zetas;
  if (s.at_n_ok) mo.estimator.at_n = {s.n};
  if (s.with_ed) mo.estimator.ed_n = {s.n};
  mo.estimator.bootstrap = cfg.bootstrap;
  mo.seed = cfg.measure_seed;
  mo.progress = s.opts.step_progress;
  return mo;
}

// The 2sED of the standard model: ED(n), and per zeta its curve, at eps_zeta(n) and at each eps.
void measure_standard(StudyRun& s, const MeasureOptions& mo, const std::string& tag, StudyModelResult& m) {
  auto [run, mr] =
      s.measure(mo, fmt::format("{} (study {})", m.name, s.study), fmt::format("{}: 2sED of the standard model", tag));
  m.measure_runs["2sED"] = run;
  if (!mr.estimate.ed.empty()) s.add(m, "ED(n)", mr.estimate.ed[0].value, mr.estimate.ed[0].std_error);
  for (size_t z = 0; z < s.cfg.zetas.size(); ++z) {
    const double zeta = s.cfg.zetas[z];
    const auto& c = mr.estimate.curves[z];
    m.curves[fmt::format("2sED zeta={:g}", zeta)] = study_curve(c);
    if (s.at_n_ok) s.add(m, study_measure_name("2sED", zeta), mr.estimate.at_n[z].value, mr.estimate.at_n[z].std_error);
    for (double e : s.cfg.eps)
      s.add(m, study_measure_name("2sED", zeta, e), c.value[s.grid_index(e)], c.std_error[s.grid_index(e)]);
  }
}

// The Markov chain model at one sigma: per zeta the lower and chain 2sED curves, both at
// eps_zeta(n), and the lower 2sED at each eps.
void measure_markov(StudyRun& s, MeasureOptions mk, double sigma, const std::string& tag, StudyModelResult& m) {
  mk.markov = true;
  mk.sigma = sigma;
  mk.noise_draws = s.cfg.noise_draws;
  auto [run, kr] = s.measure(mk, fmt::format("{} Markov sigma={:g} (study {})", m.name, sigma, s.study),
                             fmt::format("{}: lower 2sED of the Markov chain model, sigma = {:g}", tag, sigma));
  m.measure_runs[fmt::format("lower 2sED sigma={:g}", sigma)] = run;
  for (size_t z = 0; z < s.cfg.zetas.size(); ++z) {
    const double zeta = s.cfg.zetas[z];
    const auto& lc = kr.markov.lower.curves[z];
    m.curves[fmt::format("lower 2sED sigma={:g} zeta={:g}", sigma, zeta)] = study_curve(lc);
    m.curves[fmt::format("chain 2sED sigma={:g} zeta={:g}", sigma, zeta)] = study_curve(kr.estimate.curves[z]);
    if (s.at_n_ok) {
      const auto& lower = kr.markov.lower.at_n[z];
      const auto& chain = kr.estimate.at_n[z];
      s.add(m, study_measure_name("lower 2sED", zeta, std::nullopt, sigma), lower.value, lower.std_error);
      s.add(m, study_measure_name("chain 2sED", zeta, std::nullopt, sigma), chain.value, chain.std_error);
    }
    for (double e : s.cfg.eps)
      s.add(m, study_measure_name("lower 2sED", zeta, e, sigma), lc.value[s.grid_index(e)],
            lc.std_error[s.grid_index(e)]);
  }
}

struct SeedResult {
  int64_t run = 0;
  double train_loss = kNaN, test_loss = kNaN, train_accuracy = kNaN, test_accuracy = kNaN;
};

// One training of model `m` with `seed`: a finished run is reused, an unfinished one redone.
SeedResult train_seed(const StudyRun& s, const StudyModelResult& m, const std::string& tag, uint64_t seed) {
  TrainConfig tc;
  tc.model = m.model.spec;
  tc.model_options = m.model.options;
  tc.data = s.cfg.data;
  tc.train = s.cfg.train;
  tc.train.seed = seed;
  tc.train.on_record = nullptr;
  if (s.opts.step_progress)
    tc.train.on_record = [&s](const TrainingRecord& rec) {
      if (rec.step < 0) s.opts.step_progress(rec.epoch, s.cfg.train.epochs);
    };
  const auto trc = train_config(tc);
  SeedResult out;
  json result;
  if (auto done = s.child("train", trc, true)) {
    out.run = done->id;
    result = json::parse(done->result);
  } else {
    // A training run stopped midway starts again (it commits per epoch, not a resumable state).
    while (auto open = s.child("train", trc, false)) s.store.delete_run(open->id);
    s.say(fmt::format("{}: training, seed {}", tag, seed));
    RecordOptions ro;
    ro.parent = s.study;
    ro.label = fmt::format("{} seed {} (study {})", m.name, seed, s.study);
    out.run = record_training(s.store, tc, ro).run;
    result = json::parse(s.store.run(out.run).result);
  }
  auto value = [&](const char* key) {
    return result.contains(key) && result[key].is_number() ? result[key].get<double>() : kNaN;
  };
  out.train_loss = value("train_loss");
  out.test_loss = value("test_loss");
  out.train_accuracy = value("train_accuracy");
  out.test_accuracy = value("test_accuracy");
  return out;
}

// Per-seed losses, divergence flags and the means over the seeds (NaN where not finite).
void summarize_training(const std::vector<SeedResult>& seeds, bool has_test, StudyModelResult& m) {
  std::vector<double> train_acc, test_acc;
  for (const auto& r : seeds) {
    m.train_runs.push_back(r.run);
    m.train_loss.push_back(r.train_loss);
    m.test_loss.push_back(r.test_loss);
    m.diverged.push_back(!std::isfinite(r.train_loss) || (has_test && !std::isfinite(r.test_loss)));
    train_acc.push_back(r.train_accuracy);
    test_acc.push_back(r.test_accuracy);
  }
  auto finite = [](double v) { return std::isfinite(v) ? v : kNaN; };
  m.train_loss_mean = finite(mean_of(m.train_loss));
  m.train_loss_sd = finite(sd_of(m.train_loss));
  m.test_loss_mean = finite(mean_of(m.test_loss));
  m.test_loss_sd = finite(sd_of(m.test_loss));
  m.test_accuracy_mean = finite(mean_of(test_acc));
  m.train_accuracy_mean = finite(mean_of(train_acc));
}

// Models of one spec may differ in activation or bias: the name says so.
std::string model_label(const ModelSpec& spec, const ModelOptions& o) {
  std::string label = spec.text;
  if (o.activation != Activation::ReLU) label += fmt::format(" ({})", activation_name(o.activation));
  if (!o.bias) label += " (no bias)";
  return label;
}

StudyModelResult study_model(StudyRun& s, size_t i) {
  const auto& cm = s.cfg.models[i];
  const auto spec = parse_model_spec(cm.spec, cm.options);
  StudyModelResult m;
  m.model = {spec.text, cm.options};
  m.name = model_label(spec, cm.options);
  m.d = spec.num_params();
  m.k = spec.num_outputs();
  s.add(m, kParamsD, static_cast<double>(m.d), 0.0);
  const auto mo = model_measure_options(s, cm);
  const std::string tag = fmt::format("model {}/{} {}", i + 1, s.cfg.models.size(), m.name);
  measure_standard(s, mo, tag, m);
  for (double sigma : s.cfg.sigmas) measure_markov(s, mo, sigma, tag, m);
  std::vector<SeedResult> seeds;
  for (uint64_t seed : s.cfg.seeds) seeds.push_back(train_seed(s, m, tag, seed));
  summarize_training(seeds, s.n_test > 0, m);
  return m;
}

StudyCorrelationValue correlation_value(const CorrelationEstimate& ce) {
  auto finite = [](double v) { return std::isfinite(v) ? v : kNaN; };
  return {finite(ce.value), finite(ce.lo), finite(ce.hi), ce.valid};
}

// Rank correlations of every measure with the mean final losses, over the models; a target
// some model lacks (a diverged training, no test set) is left out.
std::vector<StudyCorrelation> correlate(const std::vector<StudyModelResult>& models,
                                        const std::vector<std::string>& names, const CorrelationOptions& opts) {
  std::vector<StudyCorrelation> out;
  for (const bool train : {true, false}) {
    std::vector<double> y;
    for (const auto& m : models) y.push_back(train ? m.train_loss_mean : m.test_loss_mean);
    if (std::any_of(y.begin(), y.end(), [](double v) { return !std::isfinite(v); }) || y.size() < 2) continue;
    for (const auto& name : names) {
      std::vector<double> x;
      for (const auto& m : models) {
        const auto it = m.measures.find(name);
        x.push_back(it == m.measures.end() ? kNaN : it->second.value);
      }
      StudyCorrelation c;
      c.measure = name;
      c.target = train ? "train loss" : "test loss";
      c.spearman = correlation_value(bootstrap_correlation(x, y, RankMethod::Spearman, opts));
      c.kendall = correlation_value(bootstrap_correlation(x, y, RankMethod::Kendall, opts));
      c.n = static_cast<int64_t>(x.size());
      out.push_back(c);
    }
  }
  return out;
}

// The headline: the lower 2sED (first sigma) at eps_zeta(n) and the smallest zeta, where
// zeta*d weighs least (at large zeta every measure tracks d); else the 2sED there.
std::string headline_measure(const StudyRun& s) {
  const double zmin = *std::min_element(s.cfg.zetas.begin(), s.cfg.zetas.end());
  if (!s.at_n_ok) return s.names.back();
  if (s.cfg.sigmas.empty()) return study_measure_name("2sED", zmin);
  return study_measure_name("lower 2sED", zmin, std::nullopt, s.cfg.sigmas[0]);
}

}  // namespace

StudyResult run_study(ResultsStore& store, const StudyConfig& cfg, const StudyOptions& opts) {
  StudyRun s(store, cfg, opts);
  s.study = open_study(store, cfg, study_config(cfg), opts);
  mark_process(store, s.study);
  StudyResult result;
  try {
    prepare(s);
    result.run = s.study;
    result.config = cfg;
    result.data = s.data;
    result.n_train = static_cast<int64_t>(s.n);
    result.n_test = s.n_test;
    for (size_t i = 0; i < cfg.models.size(); ++i) result.models.push_back(study_model(s, i));
    result.measure_names = s.names;
    result.correlations = correlate(result.models, s.names, cfg.correlation);
    result.headline = headline_measure(s);
    store.finish_run(s.study, study_result_json(result).dump());
  } catch (const OptionError& e) {
    // In the study file's words, not the library's.
    const auto err = study_error(cfg.file.empty() ? cfg.name : cfg.file, e);
    store.fail_run(s.study, err.what());
    throw err;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    store.fail_run(s.study, msg.substr(0, msg.find('\n')));
    throw;
  }
  return result;
}

}  // namespace twosed
