// Model-selection studies: measure a family of models, train them, correlate.
#include "twosed/study/study.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "twosed/data/data.h"
#include "twosed/error.h"
#include "twosed/estimate/estimator.h"
#include "twosed/measure/measure.h"
#include "twosed/report/plot.h"
#include "twosed/store/runs.h"

namespace twosed {
namespace {

using nlohmann::json;

// --- Parsing with messages that name the key and the expected type. ---

// Deeper study files are refused while parsing: a real one is 3 levels deep, and the value a
// message shows must never be an unbounded structure.
constexpr int kMaxDepth = 64;
constexpr size_t kShownChars = 60;

// The first at most `n` bytes of `s`, not cutting a UTF-8 character in two.
std::string cut_utf8(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// A key as a message shows it: one line, at most 100 bytes.
std::string shown_key(const std::string& key) {
  auto out = cut_utf8(key, 100);
  for (char& ch : out)
    if (static_cast<unsigned char>(ch) < 0x20) ch = '?';
  return out.size() < key.size() ? out + "..." : out;
}

// Appends at most about `budget` characters of `v` to `out`, descending at most two levels
// (the rest shown as "..."): never walks or dumps a whole deep or huge value.
void append_brief(const json& v, std::string& out, size_t budget, int depth) {
  if (out.size() > budget) return;
  if (v.is_object() || v.is_array()) {
    const bool obj = v.is_object();
    out += obj ? "{" : "[";
    if (depth >= 2 && !v.empty()) {
      out += "...";
    } else {
      bool first = true;
      for (auto it = v.begin(); it != v.end() && out.size() <= budget; ++it) {
        if (!first) out += ",";  // compact, as json::dump()
        first = false;
        if (obj) out += json(cut_utf8(it.key(), budget)).dump() + ":";
        append_brief(*it, out, budget, depth + 1);
      }
    }
    out += obj ? "}" : "]";
  } else if (v.is_string()) {
    out += json(cut_utf8(v.get_ref<const std::string&>(), budget)).dump();
  } else {
    out += v.dump();  // a number, bool or null
  }
}

// `v` for a message: at most kShownChars characters, cut at a UTF-8 character boundary.
std::string brief(const json& v) {
  std::string out;
  append_brief(v, out, kShownChars, 0);
  return out.size() <= kShownChars ? out : cut_utf8(out, kShownChars - 3) + "...";
}

// The study key of a library option, for messages in the study file's words.
std::string study_key(const std::string& option) {
  static const std::vector<std::pair<std::string, std::string>> keys = {
      {"TrainingDataOptions.data", "data.source"},
      {"TrainingDataOptions.test_data", "data.test_data"},
      {"TrainingDataOptions.test_fraction", "data.test_fraction"},
      {"TrainingDataOptions.train_size", "data.train_size"},
      {"TrainingDataOptions.test_size", "data.test_size"},
      {"TrainingDataOptions.standardize", "data.standardize"},
      {"TrainingDataOptions.seed", "data.seed"},
      {"TrainingDataOptions.task", "task"},
      {"TrainOptions.task", "task"},
      {"TrainOptions.optimizer", "train.optimizer"},
      {"TrainOptions.lr", "train.lr"},
      {"TrainOptions.momentum", "train.momentum"},
      {"TrainOptions.weight_decay", "train.weight_decay"},
      {"TrainOptions.batch", "train.batch"},
      {"TrainOptions.epochs", "train.epochs"},
      {"TrainOptions.seed", "train.seeds"},
      {"MeasureOptions.num_inputs", "measure.inputs"},
      {"MeasureOptions.num_param_samples", "measure.samples"},
      {"MeasureOptions.sigma", "measure.sigmas"},
      {"MarkovOptions.sigma", "measure.sigmas"},
      {"MeasureOptions.noise_draws", "measure.noise_draws"},
      {"MarkovOptions.noise_draws", "measure.noise_draws"},
      {"MeasureOptions.seed", "measure.seed"},
      {"EstimatorOptions.eps", "measure.eps"},
      {"EstimatorOptions.zetas", "measure.zetas"},
      {"EstimatorOptions.bootstrap", "measure.bootstrap"},
      {"CorrelationOptions.bootstrap", "correlation.bootstrap"},
      {"CorrelationOptions.confidence", "correlation.confidence"},
      {"CorrelationOptions.seed", "correlation.seed"},
  };
  for (const auto& [o, k] : keys)
    if (o == option) return k;
  return "";
}

// An OptionError from the library in the study file's words: "PATH: key 'train.momentum': RULE".
UsageError study_error(const std::string& file, const OptionError& e) {
  const auto key = study_key(e.option());
  if (key.empty()) return UsageError(fmt::format("{}: {}", file, e.what()));
  return UsageError(fmt::format("{}: key '{}': {}", file, key, e.rule()));
}

// Parses JSON, refusing nesting deeper than kMaxDepth and a key that appears twice in one
// object (nlohmann keeps the last silently). The callback sees every event in document order.
json parse_json(const std::string& text, const std::string& name) {
  struct Frame {
    bool array;
    std::string path;  // "measure", "models[1]"; "" at the top
    std::set<std::string> keys;
    std::string key;   // objects: the key just read
    size_t index = 0;  // arrays: the next element's index
  };
  std::vector<Frame> frames;
  auto join = [](const std::string& where, const std::string& key) { return where.empty() ? key : where + "." + key; };
  // The path of the element now starting in the innermost container.
  auto child_path = [&]() -> std::string {
    if (frames.empty()) return "";
    auto& f = frames.back();
    if (f.array) return fmt::format("{}[{}]", f.path, f.index++);
    return join(f.path, shown_key(f.key));
  };
  using event = json::parse_event_t;
  const json::parser_callback_t cb = [&](int, event ev, json& parsed) {
    switch (ev) {
      case event::object_start:
      case event::array_start: {
        if (frames.size() >= static_cast<size_t>(kMaxDepth))
          throw DataError(fmt::format("{}: nesting deeper than {} levels", name, kMaxDepth));
        auto path = child_path();
        frames.push_back({ev == event::array_start, std::move(path), {}, {}, 0});
        break;
      }
      case event::object_end:
      case event::array_end:
        frames.pop_back();
        break;
      case event::key: {
        auto& f = frames.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second)
          throw UsageError(fmt::format("{}: key '{}' appears twice", name, join(f.path, shown_key(f.key))));
        break;
      }
      case event::value:
        if (!frames.empty() && frames.back().array) ++frames.back().index;
        break;
    }
    return true;
  };
  try {
    return json::parse(text, cb);
  } catch (const json::parse_error& e) {
    throw DataError(fmt::format("{}: not valid JSON ({})", name, e.what()));
  }
}

struct Reader {
  std::string file;
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const json& got) const {
    throw UsageError(fmt::format("{}: key '{}': expected {}, got {}", file, key, expected, brief(got)));
  }
  [[noreturn]] void fail(const OptionError& e) const { throw study_error(file, e); }
  void only(const json& obj, const std::string& where, const std::vector<std::string>& allowed) const {
    for (const auto& [k, v] : obj.items())
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        throw UsageError(fmt::format("{}: unknown key '{}{}' (expected one of {})", file,
                                     where.empty() ? "" : where + ".", shown_key(k), list));
      }
  }
  static std::string path(const std::string& where, const std::string& key) {
    return where.empty() ? key : where + "." + key;
  }
  const json* object(const json& obj, const std::string& where, const std::string& key) const {
    if (!obj.contains(key)) return nullptr;
    if (!obj[key].is_object()) fail(path(where, key), "an object", obj[key]);
    return &obj[key];
  }
  void integer(const json& obj, const std::string& where, const std::string& key, int64_t& out, int64_t lo,
               int64_t hi = std::numeric_limits<int64_t>::max()) const {
    if (!obj.contains(key)) return;
    const auto& v = obj[key];
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
      fail(path(where, key), "an integer", v);
    out = v.get<int64_t>();
    if (out < lo || out > hi)
      fail(path(where, key),
           hi == std::numeric_limits<int64_t>::max() ? fmt::format("an integer >= {}", lo)
                                                     : fmt::format("an integer in [{}, {}]", lo, hi),
           v);
  }
  void number(const json& obj, const std::string& where, const std::string& key, double& out) const {
    if (!obj.contains(key)) return;
    const auto& v = obj[key];
    if (!v.is_number()) fail(path(where, key), "a number", v);
    out = v.get<double>();
  }
  void boolean(const json& obj, const std::string& where, const std::string& key, bool& out) const {
    if (!obj.contains(key)) return;
    if (!obj[key].is_boolean()) fail(path(where, key), "true or false", obj[key]);
    out = obj[key].get<bool>();
  }
  void string(const json& obj, const std::string& where, const std::string& key, std::string& out) const {
    if (!obj.contains(key)) return;
    if (!obj[key].is_string()) fail(path(where, key), "a string", obj[key]);
    out = obj[key].get<std::string>();
  }
  void numbers(const json& obj, const std::string& where, const std::string& key, std::vector<double>& out) const {
    if (!obj.contains(key)) return;
    const auto& v = obj[key];
    if (!v.is_array()) fail(path(where, key), "a list of numbers", v);
    out.clear();
    for (const auto& e : v) {
      if (!e.is_number()) fail(path(where, key), "a list of numbers", v);
      out.push_back(e.get<double>());
    }
  }
};

const char* task_name(Task t) {
  return t == Task::Classify ? "classify" : "regress";
}

std::string fmt_num(double v) {
  return fmt::format("{:g}", v);
}

// Study measure names, in one place so that tables, CSV and plots agree.
std::string name_2sed(double zeta, const std::string& at) {
  return fmt::format("2sED zeta={:g} {}", zeta, at);
}
std::string name_lower(double sigma, double zeta, const std::string& at) {
  return fmt::format("lower 2sED sigma={:g} zeta={:g} {}", sigma, zeta, at);
}
std::string name_chain(double sigma, double zeta, const std::string& at) {
  return fmt::format("chain 2sED sigma={:g} zeta={:g} {}", sigma, zeta, at);
}
const char* kAtN = "at eps_zeta(n)";

json curve_json(const Curve& c) {
  return {{"eps", c.eps}, {"value", c.value}, {"stderr", c.std_error}};
}

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

}  // namespace

StudyConfig parse_study_text(const std::string& text, const std::string& name) {
  const json j = parse_json(text, name);
  Reader r{name};
  if (!j.is_object()) r.fail("(top level)", "an object", j);
  r.only(j, "", {"name", "data", "task", "models", "measure", "train", "correlation"});
  StudyConfig c;
  c.file = name;
  r.string(j, "", "name", c.name);
  std::string task = "classify";
  r.string(j, "", "task", task);
  if (task != "classify" && task != "regress") r.fail("task", "\"classify\" or \"regress\"", j.at("task"));
  c.data.task = task == "classify" ? Task::Classify : Task::Regress;
  c.train.task = c.data.task;
  if (const auto* d = r.object(j, "", "data")) {
    r.only(*d, "data", {"source", "test_data", "test_fraction", "train_size", "test_size", "standardize", "seed"});
    r.string(*d, "data", "source", c.data.data);
    r.string(*d, "data", "test_data", c.data.test_data);
    r.number(*d, "data", "test_fraction", c.data.test_fraction);
    r.integer(*d, "data", "train_size", c.data.train_size, 0);
    r.integer(*d, "data", "test_size", c.data.test_size, 0);
    r.boolean(*d, "data", "standardize", c.data.standardize);
    int64_t seed = 0;
    r.integer(*d, "data", "seed", seed, 0);
    c.data.seed = static_cast<uint64_t>(seed);
  }
  // The data options as load_training_data checks them, and the source strings' syntax (the
  // files themselves are read when the study runs).
  try {
    validate(c.data);
  } catch (const OptionError& e) {
    r.fail(e);
  }
  for (const auto& [key, source] : {std::pair<const char*, const std::string&>{"data.source", c.data.data},
                                    std::pair<const char*, const std::string&>{"data.test_data", c.data.test_data}})
    if (!source.empty()) try {
        parse_data_spec(source);
      } catch (const UsageError& e) {
        throw UsageError(fmt::format("{}: key '{}': {}", name, key, e.what()));
      }
  if (!j.contains("models")) throw UsageError(fmt::format("{}: key 'models' is missing (a list of model specs)", name));
  const auto& models = j.at("models");
  if (!models.is_array() || models.empty()) r.fail("models", "a non-empty list of model specs", models);
  for (size_t i = 0; i < models.size(); ++i) {
    const auto& m = models[i];
    const std::string key = fmt::format("models[{}]", i);
    StudyModel sm;
    if (m.is_string()) {
      sm.spec = m.get<std::string>();
    } else if (m.is_object()) {
      r.only(m, key, {"spec", "act", "bias"});
      if (!m.contains("spec")) r.fail(key + ".spec", "a model spec string", json(nullptr));
      r.string(m, key, "spec", sm.spec);
      std::string act = "relu";
      r.string(m, key, "act", act);
      try {
        sm.options.activation = parse_activation(act, key + ".act");
      } catch (const UsageError& e) {
        throw UsageError(fmt::format("{}: {}", name, e.what()));
      }
      r.boolean(m, key, "bias", sm.options.bias);
    } else {
      r.fail(key, "a model spec string or {\"spec\": ..., \"act\": ..., \"bias\": ...}", m);
    }
    try {
      parse_model_spec(sm.spec, sm.options);
    } catch (const UsageError& e) {
      throw UsageError(fmt::format("{}: key '{}': {}", name, key, e.what()));
    }
    c.models.push_back(sm);
  }
  if (const auto* m = r.object(j, "", "measure")) {
    r.only(*m, "measure", {"inputs", "samples", "eps", "zetas", "sigmas", "noise_draws", "bootstrap", "seed"});
    // The limits measure() and the estimator apply (checked here so that a study fails before
    // its first model, not at it).
    r.integer(*m, "measure", "inputs", c.inputs, 1);
    r.integer(*m, "measure", "samples", c.samples, 1, 10'000'000);
    r.numbers(*m, "measure", "eps", c.eps);
    r.numbers(*m, "measure", "zetas", c.zetas);
    r.numbers(*m, "measure", "sigmas", c.sigmas);
    r.integer(*m, "measure", "noise_draws", c.noise_draws, 1, 1'000'000);
    r.integer(*m, "measure", "bootstrap", c.bootstrap, 2, 1'000'000);
    int64_t seed = 0;
    r.integer(*m, "measure", "seed", seed, 0);
    c.measure_seed = static_cast<uint64_t>(seed);
    for (double e : c.eps)
      if (!(e > 0 && e < 1)) r.fail("measure.eps", "a list of numbers in (0, 1)", (*m)["eps"]);
    for (double z : c.zetas)
      if (!(z >= 0 && z < 1)) r.fail("measure.zetas", "a list of numbers in [0, 1)", (*m)["zetas"]);
    if (c.zetas.empty()) r.fail("measure.zetas", "a non-empty list", (*m)["zetas"]);
    for (double s : c.sigmas)
      if (!(s > 0 && std::isfinite(s))) r.fail("measure.sigmas", "a list of numbers > 0", (*m)["sigmas"]);
  }
  {
    EstimatorOptions eo;
    eo.eps = c.eps;
    eo.zetas = c.zetas;
    eo.bootstrap = c.bootstrap;
    try {
      validate_estimator_options(eo);
    } catch (const OptionError& e) {
      r.fail(e);
    }
  }
  if (const auto* t = r.object(j, "", "train")) {
    r.only(*t, "train", {"optimizer", "lr", "momentum", "weight_decay", "batch", "epochs", "seeds"});
    r.string(*t, "train", "optimizer", c.train.optimizer);
    r.number(*t, "train", "lr", c.train.lr);
    r.number(*t, "train", "momentum", c.train.momentum);
    r.number(*t, "train", "weight_decay", c.train.weight_decay);
    r.integer(*t, "train", "batch", c.train.batch, 1);
    r.integer(*t, "train", "epochs", c.train.epochs, 0);
    if (t->contains("seeds")) {
      const auto& s = (*t)["seeds"];
      if (!s.is_array() || s.empty()) r.fail("train.seeds", "a non-empty list of integers >= 0", s);
      c.seeds.clear();
      for (const auto& e : s) {
        if (!e.is_number_integer() || e.get<int64_t>() < 0)
          r.fail("train.seeds", "a non-empty list of integers >= 0", s);
        c.seeds.push_back(e.get<uint64_t>());
      }
    }
  } else {
    c.train.batch = 64;
  }
  // The training options as train_network checks them.
  try {
    validate(c.train);
  } catch (const OptionError& e) {
    r.fail(e);
  }
  if (const auto* k = r.object(j, "", "correlation")) {
    r.only(*k, "correlation", {"bootstrap", "confidence", "seed"});
    r.integer(*k, "correlation", "bootstrap", c.correlation.bootstrap, 2);
    r.number(*k, "correlation", "confidence", c.correlation.confidence);
    if (!(c.correlation.confidence > 0 && c.correlation.confidence < 1))
      r.fail("correlation.confidence", "a number in (0, 1)", k->at("confidence"));
    int64_t seed = 0;
    r.integer(*k, "correlation", "seed", seed, 0);
    c.correlation.seed = static_cast<uint64_t>(seed);
  }
  return c;
}

StudyConfig parse_study(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(fmt::format("{}: cannot open study file", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_study_text(buf.str(), path);
}

std::string study_config(const StudyConfig& c) {
  json models = json::array();
  for (const auto& m : c.models)
    models.push_back({{"spec", m.spec}, {"act", activation_name(m.options.activation)}, {"bias", m.options.bias}});
  return json{{"kind", "study"},
              {"name", c.name},
              {"data",
               {{"source", c.data.data},
                {"test_data", c.data.test_data},
                {"test_fraction", c.data.test_fraction},
                {"train_size", c.data.train_size},
                {"test_size", c.data.test_size},
                {"standardize", c.data.standardize},
                {"seed", c.data.seed}}},
              {"task", task_name(c.data.task)},
              {"models", models},
              {"measure",
               {{"inputs", c.inputs},
                {"samples", c.samples},
                {"eps", c.eps},
                {"zetas", c.zetas},
                {"sigmas", c.sigmas},
                {"noise_draws", c.noise_draws},
                {"bootstrap", c.bootstrap},
                {"seed", c.measure_seed}}},
              {"train",
               {{"optimizer", c.train.optimizer},
                {"lr", c.train.lr},
                {"momentum", c.train.momentum},
                {"weight_decay", c.train.weight_decay},
                {"batch", c.train.batch},
                {"epochs", c.train.epochs},
                {"seeds", c.seeds}}},
              {"correlation",
               {{"bootstrap", c.correlation.bootstrap},
                {"confidence", c.correlation.confidence},
                {"seed", c.correlation.seed}}}}
      .dump();
}

int64_t run_study(ResultsStore& store, const StudyConfig& cfg, const StudyOptions& opts) {
  const auto config = study_config(cfg);
  auto say = [&](const std::string& s) {
    if (opts.progress) opts.progress(s);
  };
  int64_t study = 0;
  if (opts.resume) {
    RecordOptions ro;
    ro.resume = true;
    ro.resume_run = opts.resume_run;
    study = find_resumable(store, "study", config, ro).id;
    store.reopen_run(study);
  } else {
    study = store.create_run("study", cfg.name, config);
  }
  mark_process(store, study);
  try {
    // n: the training-set size, which sets eps_zeta(n) and the ED's n.
    const auto spec0 = parse_model_spec(cfg.models.front().spec, cfg.models.front().options);
    const auto data0 = load_training_data(cfg.data, spec0, cfg.models.front().options);
    const double n = static_cast<double>(data0.train.size());
    const bool with_ed = abbas_kappa(n) > 1.0;
    const bool at_n_ok = n > 3;  // eps_zeta(n) < 1
    // Curves on the spec's default grid plus the study's eps values.
    std::vector<double> grid = default_eps_grid();
    grid.insert(grid.end(), cfg.eps.begin(), cfg.eps.end());
    std::sort(grid.begin(), grid.end());
    grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
    auto grid_index = [&](double e) {
      return static_cast<size_t>(std::lower_bound(grid.begin(), grid.end(), e) - grid.begin());
    };

    // A finished child with this configuration is reused; an unfinished measurement resumed.
    auto child = [&](const std::string& kind, const std::string& child_config, bool done) -> std::optional<RunInfo> {
      std::optional<RunInfo> found;
      for (const auto& r : store.children(study))
        if (r.kind == kind && r.config == child_config && (r.status == "done") == done) found = r;
      return found;
    };
    auto measure = [&](MeasureOptions mo, const std::string& label,
                       const std::string& message) -> std::pair<int64_t, MeasureResult> {
      const auto mc = measure_config(mo);
      if (auto done = child("measure", mc, true)) return {done->id, stored_measure(store, done->id, mo.estimator)};
      say(message);
      RecordOptions ro;
      ro.parent = study;
      ro.label = label;
      if (auto open = child("measure", mc, false)) ro.resume = true, ro.resume_run = open->id;
      auto rec = record_measure(store, mo, ro);
      return {rec.run, std::move(rec.result)};
    };

    json models = json::array();
    std::vector<std::string> names;  // measure names in table order
    auto add_name = [&](const std::string& s) {
      if (std::find(names.begin(), names.end(), s) == names.end()) names.push_back(s);
    };
    for (size_t i = 0; i < cfg.models.size(); ++i) {
      const auto& m = cfg.models[i];
      const auto spec = parse_model_spec(m.spec, m.options);
      // Models of one spec may differ in activation or bias: the name says so.
      std::string label = spec.text;
      if (m.options.activation != Activation::ReLU)
        label += fmt::format(" ({})", activation_name(m.options.activation));
      if (!m.options.bias) label += " (no bias)";
      json mj = {{"spec", spec.text},      {"name", label},          {"act", activation_name(m.options.activation)},
                 {"bias", m.options.bias}, {"d", spec.num_params()}, {"k", spec.num_outputs()}};
      json measures = json::object(), stderrs = json::object(), curves = json::object(), runs = json::object();
      measures["params d"] = spec.num_params();
      stderrs["params d"] = 0.0;
      add_name("params d");
      MeasureOptions mo;
      mo.model = m.spec;
      mo.model_options = m.options;
      mo.data = cfg.data.data;
      mo.standardize = cfg.data.standardize;
      mo.num_inputs = cfg.inputs;
      mo.num_param_samples = cfg.samples;
      mo.fisher.task = cfg.data.task;
      mo.estimator.eps = grid;
      mo.estimator.zetas = cfg.zetas;
      if (at_n_ok) mo.estimator.at_n = {n};
      if (with_ed) mo.estimator.ed_n = {n};
      mo.estimator.bootstrap = cfg.bootstrap;
      mo.seed = cfg.measure_seed;
      mo.progress = opts.step_progress;
      const std::string tag = fmt::format("model {}/{} {}", i + 1, cfg.models.size(), label);
      auto [mrun, mr] =
          measure(mo, fmt::format("{} (study {})", label, study), fmt::format("{}: 2sED of the standard model", tag));
      runs["2sED"] = mrun;
      if (!mr.estimate.ed.empty()) {
        measures["ED(n)"] = mr.estimate.ed[0].value;
        stderrs["ED(n)"] = mr.estimate.ed[0].std_error;
        add_name("ED(n)");
      }
      for (size_t z = 0; z < cfg.zetas.size(); ++z) {
        const auto& c = mr.estimate.curves[z];
        curves[fmt::format("2sED zeta={:g}", cfg.zetas[z])] = curve_json(c);
        if (at_n_ok) {
          const auto name = name_2sed(cfg.zetas[z], kAtN);
          measures[name] = mr.estimate.at_n[z].value;
          stderrs[name] = mr.estimate.at_n[z].std_error;
          add_name(name);
        }
        for (double e : cfg.eps) {
          const auto name = name_2sed(cfg.zetas[z], "eps=" + fmt_num(e));
          measures[name] = c.value[grid_index(e)];
          stderrs[name] = c.std_error[grid_index(e)];
          add_name(name);
        }
      }
      for (double sigma : cfg.sigmas) {
        MeasureOptions mk = mo;
        mk.markov = true;
        mk.sigma = sigma;
        mk.noise_draws = cfg.noise_draws;
        auto [krun, kr] = measure(mk, fmt::format("{} Markov sigma={:g} (study {})", label, sigma, study),
                                  fmt::format("{}: lower 2sED of the Markov chain model, sigma = {:g}", tag, sigma));
        runs[fmt::format("lower 2sED sigma={:g}", sigma)] = krun;
        for (size_t z = 0; z < cfg.zetas.size(); ++z) {
          const auto& lc = kr.markov.lower.curves[z];
          curves[fmt::format("lower 2sED sigma={:g} zeta={:g}", sigma, cfg.zetas[z])] = curve_json(lc);
          curves[fmt::format("chain 2sED sigma={:g} zeta={:g}", sigma, cfg.zetas[z])] =
              curve_json(kr.estimate.curves[z]);
          if (at_n_ok) {
            const auto lname = name_lower(sigma, cfg.zetas[z], kAtN), cname = name_chain(sigma, cfg.zetas[z], kAtN);
            measures[lname] = kr.markov.lower.at_n[z].value;
            stderrs[lname] = kr.markov.lower.at_n[z].std_error;
            measures[cname] = kr.estimate.at_n[z].value;
            stderrs[cname] = kr.estimate.at_n[z].std_error;
            add_name(lname);
            add_name(cname);
          }
          for (double e : cfg.eps) {
            const auto name = name_lower(sigma, cfg.zetas[z], "eps=" + fmt_num(e));
            measures[name] = lc.value[grid_index(e)];
            stderrs[name] = lc.std_error[grid_index(e)];
            add_name(name);
          }
        }
      }
      std::vector<double> train_loss, test_loss, test_acc, train_acc;
      json train_runs = json::array();
      std::vector<std::string> diverged;  // divergence flag: these seeds' losses are not finite
      for (uint64_t seed : cfg.seeds) {
        TrainConfig tc;
        tc.model = m.spec;
        tc.model_options = m.options;
        tc.data = cfg.data;
        tc.train = cfg.train;
        tc.train.seed = seed;
        tc.train.on_record = nullptr;
        if (opts.step_progress)
          tc.train.on_record = [&](const TrainingRecord& rec) {
            if (rec.step < 0) opts.step_progress(rec.epoch, cfg.train.epochs);
          };
        const auto trc = train_config(tc);
        json result;
        int64_t trun = 0;
        if (auto done = child("train", trc, true)) {
          trun = done->id;
          result = json::parse(done->result);
        } else {
          // A training run stopped midway starts again (it commits per epoch, not a resumable state).
          while (auto open = child("train", trc, false)) store.delete_run(open->id);
          say(fmt::format("{}: training, seed {}", tag, seed));
          RecordOptions ro;
          ro.parent = study;
          ro.label = fmt::format("{} seed {} (study {})", label, seed, study);
          auto rec = record_training(store, tc, ro);
          trun = rec.run;
          result = json::parse(store.run(trun).result);
        }
        train_runs.push_back(trun);
        if (result.contains("diverged") && result["diverged"].is_string())
          diverged.push_back(fmt::format("seed {}: {}", seed, result["diverged"].get<std::string>()));
        auto value = [](const json& v) { return v.is_null() ? std::nan("") : v.get<double>(); };
        train_loss.push_back(value(result["train_loss"]));
        test_loss.push_back(value(result["test_loss"]));
        test_acc.push_back(value(result["test_accuracy"]));
        train_acc.push_back(value(result["train_accuracy"]));
      }
      auto finite_or_null = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
      mj["measures"] = measures;
      mj["stderr"] = stderrs;
      mj["curves"] = curves;
      mj["measure_runs"] = runs;
      mj["train_runs"] = train_runs;
      if (!diverged.empty()) mj["diverged"] = diverged;
      mj["train_loss"] = train_loss;
      mj["train_loss_mean"] = finite_or_null(mean_of(train_loss));
      mj["train_loss_sd"] = finite_or_null(sd_of(train_loss));
      mj["test_loss_mean"] = finite_or_null(mean_of(test_loss));
      mj["test_loss_sd"] = finite_or_null(sd_of(test_loss));
      mj["test_accuracy_mean"] = finite_or_null(mean_of(test_acc));
      mj["train_accuracy_mean"] = finite_or_null(mean_of(train_acc));
      models.push_back(mj);
    }

    // Rank correlations of every measure with the mean final losses, over the models.
    // Models without a finite mean loss (a diverged training) are left out, and listed.
    json correlations = json::array(), left_out = json::array();
    for (const char* target : {"train_loss_mean", "test_loss_mean"}) {
      std::vector<double> y;
      std::vector<size_t> kept;
      json missing = json::array();
      const std::string target_name = target == std::string("train_loss_mean") ? "train loss" : "test loss";
      for (size_t i = 0; i < models.size(); ++i) {
        const auto& m = models[i];
        if (!m[target].is_null()) {
          y.push_back(m[target].get<double>()), kept.push_back(i);
          continue;
        }
        const std::string reason = m.contains("diverged") ? m["diverged"][0].get<std::string>() : "no finite loss";
        missing.push_back({{"model", m["name"]}, {"target", target_name}, {"reason", reason}});
      }
      const bool any_diverged =
          std::any_of(models.begin(), models.end(), [](const json& m) { return m.contains("diverged"); });
      if (kept.empty() && !any_diverged) continue;  // no such loss at all (no test set)
      for (const auto& l : missing) left_out.push_back(l);
      if (y.size() < 2) continue;
      for (const auto& name : names) {
        std::vector<double> x;
        for (size_t i : kept) x.push_back(models[i]["measures"][name].get<double>());
        json row = {{"measure", name},
                    {"target", target == std::string("train_loss_mean") ? "train loss" : "test loss"}};
        for (auto method : {RankMethod::Spearman, RankMethod::Kendall}) {
          const auto ce = bootstrap_correlation(x, y, method, cfg.correlation);
          auto v = [](double d) { return std::isfinite(d) ? json(d) : json(nullptr); };
          row[method == RankMethod::Spearman ? "spearman" : "kendall"] = {
              {"value", v(ce.value)}, {"lo", v(ce.lo)}, {"hi", v(ce.hi)}, {"valid", ce.valid}};
        }
        row["n"] = x.size();
        correlations.push_back(row);
      }
    }
    // The headline: the lower 2sED (first sigma) at eps_zeta(n) and the smallest zeta, where
    // zeta*d weighs least (at large zeta every measure tracks d); else the 2sED there.
    const double zmin = *std::min_element(cfg.zetas.begin(), cfg.zetas.end());
    std::string headline =
        at_n_ok ? (cfg.sigmas.empty() ? name_2sed(zmin, kAtN) : name_lower(cfg.sigmas[0], zmin, kAtN)) : names.back();
    const json result = {{"name", cfg.name},
                         {"study", study},
                         {"data", data0.description},
                         {"n_train", n},
                         {"n_test", data0.test.size()},
                         {"inputs", cfg.inputs},
                         {"samples", cfg.samples},
                         {"task", task_name(cfg.data.task)},
                         {"epochs", cfg.train.epochs},
                         {"seeds", cfg.seeds},
                         {"sigmas", cfg.sigmas},
                         {"zetas", cfg.zetas},
                         {"eps", cfg.eps},
                         {"confidence", cfg.correlation.confidence},
                         {"measure_names", names},
                         {"headline", headline},
                         {"models", models},
                         {"correlations", correlations},
                         {"left_out", left_out}};
    store.finish_run(study, result.dump());
  } catch (const OptionError& e) {
    // In the study file's words, not the library's.
    const auto err = study_error(cfg.file.empty() ? cfg.name : cfg.file, e);
    store.fail_run(study, err.what());
    throw err;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    store.fail_run(study, msg.substr(0, msg.find('\n')));
    throw;
  }
  return study;
}

namespace {
std::string model_name(const json& m) {
  return m.value("name", m.value("spec", std::string("?")));
}

std::string ci_text(const json& c) {
  auto v = [](const json& x) { return x.is_null() ? std::string("  n/a") : fmt::format("{:+.2f}", x.get<double>()); };
  return fmt::format("{} [{}, {}]", v(c["value"]), v(c["lo"]), v(c["hi"]));
}
}  // namespace

std::string study_table(const std::string& result_json) {
  const auto r = json::parse(result_json);
  std::string out = fmt::format(
      "twosed study '{}' (run {})\n  data   {}\n  n      {} training examples; {} epochs x {} seeds per model\n\n",
      r["name"].get<std::string>(), r["study"].get<int64_t>(), r["data"].get<std::string>(), r["n_train"].get<double>(),
      r["epochs"].get<int64_t>(), r["seeds"].size());
  const auto headline = r["headline"].get<std::string>();
  const bool has_ed =
      std::find(r["measure_names"].begin(), r["measure_names"].end(), "ED(n)") != r["measure_names"].end();
  size_t w = 5;
  for (const auto& m : r["models"]) w = std::max(w, model_name(m).size());
  out += fmt::format("  {:<{}} {:>8} {:>20} {:>9} {:>18} {:>10}\n", "model", w, "d", "headline +- se",
                     has_ed ? "ED(n)" : "", "train loss", "test loss");
  for (const auto& m : r["models"]) {
    auto val = [](const json& v, const char* f) {
      return v.is_null() ? std::string("-") : fmt::format(fmt::runtime(f), v.get<double>());
    };
    out += fmt::format(
        "  {:<{}} {:>8} {:>20} {:>9} {:>18} {:>10}\n", model_name(m), w, m["d"].get<int64_t>(),
        fmt::format("{:.2f} +- {:.2f}", m["measures"][headline].get<double>(), m["stderr"][headline].get<double>()),
        has_ed ? fmt::format("{:.2f}", m["measures"]["ED(n)"].get<double>()) : "",
        m["train_loss_mean"].is_null()
            ? (m.contains("diverged") ? "diverged" : "-")
            : fmt::format("{:.4f} +- {:.4f}", m["train_loss_mean"].get<double>(), m["train_loss_sd"].get<double>()),
        val(m["test_loss_mean"], "{:.4f}"));
  }
  out += fmt::format("\n  headline: {}; train loss: mean +- sd over seeds of the final training loss\n", headline);
  out += fmt::format(
      "\n  rank correlations with the final loss (mean over seeds), {:g}% bootstrap intervals over the models\n",
      100 * r["confidence"].get<double>());
  out += fmt::format("  {:<50} {:>10} {:>22} {:>22}\n", "measure", "target", "Spearman rho", "Kendall tau");
  for (const auto& c : r["correlations"])
    out += fmt::format("  {:<50} {:>10} {:>22} {:>22}\n", c["measure"].get<std::string>(),
                       c["target"].get<std::string>(), ci_text(c["spearman"]), ci_text(c["kendall"]));
  if (r.contains("left_out") && !r["left_out"].empty()) {
    out += "\n  left out of the correlations:\n";
    for (const auto& l : r["left_out"])
      out += fmt::format("    {} ({}): {}\n", l["model"].get<std::string>(), l["target"].get<std::string>(),
                         l["reason"].get<std::string>());
  }
  if (r["correlations"].empty()) out += "  (no correlations: fewer than two models with a finite loss)\n";
  out += "\n  A negative correlation means: the larger the measure, the lower the loss reached.\n";
  return out;
}

std::string study_csv(const std::string& result_json) {
  const auto r = json::parse(result_json);
  std::string out = "measure,target,method,value,lo,hi,n\n";
  auto v = [](const json& x) { return x.is_null() ? std::string() : fmt::format("{:.17g}", x.get<double>()); };
  for (const auto& c : r["correlations"])
    for (const char* method : {"spearman", "kendall"})
      out += fmt::format("\"{}\",{},{},{},{},{},{}\n", c["measure"].get<std::string>(), c["target"].get<std::string>(),
                         method, v(c[method]["value"]), v(c[method]["lo"]), v(c[method]["hi"]), c["n"].get<int64_t>());
  return out;
}

std::vector<std::string> study_plots(const ResultsStore& store, int64_t study_run, const std::string& prefix,
                                     const std::string& ext) {
  const auto info = store.run(study_run);
  if (info.kind != "study") throw UsageError(fmt::format("run {} is a {} run, not a study", study_run, info.kind));
  if (info.result.empty()) throw DataError(fmt::format("{}: study {} has not finished", store.path(), study_run));
  const auto r = json::parse(info.result);
  std::vector<std::string> written;
  // 1. Curves against eps, one line per model: the 2sED at the first and last zeta, the lower
  // 2sED of each sigma at the first zeta (zeta*d dominates at large zeta, hiding the shape).
  const double z0 = r["zetas"].front().get<double>(), z1 = r["zetas"].back().get<double>();
  Figure curves;
  std::vector<std::pair<std::string, std::string>> kinds = {{fmt::format("2sED zeta={:g}", z0), "2sED"}};
  if (z1 != z0) kinds.push_back({fmt::format("2sED zeta={:g}", z1), "2sED"});
  for (const auto& s : r["sigmas"])
    kinds.push_back({fmt::format("lower 2sED sigma={:g} zeta={:g}", s.get<double>(), z0),
                     fmt::format("lower 2sED, sigma = {:g}", s.get<double>())});
  if (kinds.size() > 4) kinds.resize(4);
  for (const auto& [key, title] : kinds) {
    LinePanel p;
    p.title = fmt::format("{} ({})", title, key.substr(key.rfind("zeta=")));
    p.x_label = "eps";
    p.y_label = "dimension";
    p.log_x = true;
    for (const auto& m : r["models"]) {
      const auto& c = m["curves"][key];
      p.series.push_back({model_name(m), c["eps"].get<std::vector<double>>(), c["value"].get<std::vector<double>>(),
                          c["stderr"].get<std::vector<double>>()});
    }
    curves.panels.push_back(p);
  }
  curves.title = fmt::format("study '{}': measures before training", r["name"].get<std::string>());
  written.push_back(prefix + "-curves." + ext);
  write_figure(curves, written.back());
  // 2. Training-loss curves of the first seed of every model.
  Figure training;
  LinePanel tl;
  tl.title = "training loss (first seed)";
  tl.x_label = "epoch";
  tl.y_label = "training loss";
  tl.log_y = true;
  for (const auto& m : r["models"]) {
    PlotSeries s{model_name(m), {}, {}, {}};
    for (const auto& rec : store.training_records(m["train_runs"][0].get<int64_t>()))
      if (rec.step < 0) s.x.push_back(static_cast<double>(rec.epoch)), s.y.push_back(rec.train_loss);
    tl.series.push_back(s);
  }
  training.panels.push_back(tl);
  written.push_back(prefix + "-training." + ext);
  write_figure(training, written.back());
  // 3. Scatter: headline measure against the final training loss.
  const auto headline = r["headline"].get<std::string>();
  std::string title = headline + " vs final training loss";
  for (const auto& c : r["correlations"])
    if (c["measure"] == headline && c["target"] == "train loss" && !c["spearman"]["value"].is_null())
      title = fmt::format("Spearman {:+.2f}, Kendall {:+.2f}", c["spearman"]["value"].get<double>(),
                          c["kendall"]["value"].is_null() ? std::nan("") : c["kendall"]["value"].get<double>());
  Figure scatter;
  LinePanel sp;
  sp.title = title;
  sp.x_label = headline;
  sp.y_label = "final training loss (mean over seeds)";
  sp.points = true;
  for (const auto& m : r["models"])
    if (!m["train_loss_mean"].is_null())
      sp.series.push_back(
          {model_name(m), {m["measures"][headline].get<double>()}, {m["train_loss_mean"].get<double>()}, {}});
  scatter.panels.push_back(sp);
  written.push_back(prefix + "-scatter." + ext);
  write_figure(scatter, written.back());
  return written;
}

}  // namespace twosed
