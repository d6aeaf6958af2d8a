// Model-selection studies: measure a family of models, train them, correlate.
#include "twosed/study/study.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "study_names.h"
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

// --- The study file's sections, each read and checked as the library will use it. ---

void read_task(const json& j, const Reader& r, StudyConfig& c) {
  std::string task = "classify";
  r.string(j, "", "task", task);
  if (task != "classify" && task != "regress") r.fail("task", "\"classify\" or \"regress\"", j.at("task"));
  c.data.task = task == "classify" ? Task::Classify : Task::Regress;
  c.train.task = c.data.task;
}

void read_data(const json& j, const Reader& r, StudyConfig& c) {
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
        throw UsageError(fmt::format("{}: key '{}': {}", r.file, key, e.what()));
      }
}

StudyModel read_model(const json& m, const std::string& key, const Reader& r) {
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
      throw UsageError(fmt::format("{}: {}", r.file, e.what()));
    }
    r.boolean(m, key, "bias", sm.options.bias);
  } else {
    r.fail(key, "a model spec string or {\"spec\": ..., \"act\": ..., \"bias\": ...}", m);
  }
  try {
    parse_model_spec(sm.spec, sm.options);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: key '{}': {}", r.file, key, e.what()));
  }
  return sm;
}

void read_models(const json& j, const Reader& r, StudyConfig& c) {
  if (!j.contains("models"))
    throw UsageError(fmt::format("{}: key 'models' is missing (a list of model specs)", r.file));
  const auto& models = j.at("models");
  if (!models.is_array() || models.empty()) r.fail("models", "a non-empty list of model specs", models);
  for (size_t i = 0; i < models.size(); ++i) c.models.push_back(read_model(models[i], fmt::format("models[{}]", i), r));
}

void read_measure(const json& j, const Reader& r, StudyConfig& c) {
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

void read_train(const json& j, const Reader& r, StudyConfig& c) {
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
}

void read_correlation(const json& j, const Reader& r, StudyConfig& c) {
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
}

// A study file's JSON (or a stored configuration without its "kind"), in the file's key order
// of concerns: each section validated before the next is read.
StudyConfig study_from_json(const json& j, const std::string& name) {
  Reader r{name};
  if (!j.is_object()) r.fail("(top level)", "an object", j);
  r.only(j, "", {"name", "data", "task", "models", "measure", "train", "correlation"});
  StudyConfig c;
  c.file = name;
  r.string(j, "", "name", c.name);
  read_task(j, r, c);
  read_data(j, r, c);
  read_models(j, r, c);
  read_measure(j, r, c);
  read_train(j, r, c);
  read_correlation(j, r, c);
  return c;
}

std::string fmt_num(double v) {
  return fmt::format("{:g}", v);
}

}  // namespace

// An OptionError from the library in the study file's words: "PATH: key 'train.momentum': RULE".
UsageError study_error(const std::string& file, const OptionError& e) {
  const auto key = study_key(e.option());
  if (key.empty()) return UsageError(fmt::format("{}: {}", file, e.what()));
  return UsageError(fmt::format("{}: key '{}': {}", file, key, e.rule()));
}

StudyConfig parse_study_text(const std::string& text, const std::string& name) {
  return study_from_json(parse_json(text, name), name);
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

// --- The study result as JSON: written and read here only. ---

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Non-finite numbers are stored as null (JSON has no NaN) and read back as NaN.
json num_json(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

json nums_json(const std::vector<double>& v) {
  json out = json::array();
  for (double x : v) out.push_back(num_json(x));
  return out;
}

json model_json(const StudyModelResult& m) {
  json measures = json::object(), stderrs = json::object(), curves = json::object();
  for (const auto& [name, v] : m.measures) {
    // The parameter count is an integer in the stored layout (schema 1 wrote it so).
    measures[name] =
        name == kParamsD && std::isfinite(v.value) ? json(static_cast<int64_t>(v.value)) : num_json(v.value);
    stderrs[name] = num_json(v.std_error);
  }
  for (const auto& [name, c] : m.curves)
    curves[name] = {{"eps", nums_json(c.eps)}, {"value", nums_json(c.value)}, {"stderr", nums_json(c.std_error)}};
  json diverged = json::array();
  for (bool b : m.diverged) diverged.push_back(b);
  return {{"spec", m.model.spec},
          {"name", m.name},
          {"act", activation_name(m.model.options.activation)},
          {"bias", m.model.options.bias},
          {"d", m.d},
          {"k", m.k},
          {"measures", measures},
          {"stderr", stderrs},
          {"curves", curves},
          {"measure_runs", m.measure_runs},
          {"train_runs", m.train_runs},
          {"train_loss", nums_json(m.train_loss)},
          {"test_loss", nums_json(m.test_loss)},
          {"diverged", diverged},
          {"train_loss_mean", num_json(m.train_loss_mean)},
          {"train_loss_sd", num_json(m.train_loss_sd)},
          {"test_loss_mean", num_json(m.test_loss_mean)},
          {"test_loss_sd", num_json(m.test_loss_sd)},
          {"test_accuracy_mean", num_json(m.test_accuracy_mean)},
          {"train_accuracy_mean", num_json(m.train_accuracy_mean)}};
}

json correlation_json(const StudyCorrelation& c) {
  auto value = [](const StudyCorrelationValue& v) {
    return json{{"value", num_json(v.value)}, {"lo", num_json(v.lo)}, {"hi", num_json(v.hi)}, {"valid", v.valid}};
  };
  return {{"measure", c.measure},
          {"target", c.target},
          {"spearman", value(c.spearman)},
          {"kendall", value(c.kendall)},
          {"n", c.n}};
}

// Reads a stored result, each error naming the key: "study result: key 'models[0].d': expected
// an integer, got \"x\"".
struct ResultReader {
  std::string where = "study result";
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const json& got) const {
    throw DataError(fmt::format("{}: key '{}': expected {}, got {}", where, key, expected, brief(got)));
  }
  const json& at(const json& o, const std::string& path, const std::string& key) const {
    const auto full = path.empty() ? key : path + "." + key;
    if (!o.is_object()) fail(path.empty() ? "(top level)" : path, "an object", o);
    if (!o.contains(key)) throw DataError(fmt::format("{}: key '{}' is missing", where, full));
    return o[key];
  }
  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }
  double number(const json& o, const std::string& path, const std::string& key) const {
    const auto& v = at(o, path, key);
    if (v.is_null()) return kNaN;
    if (!v.is_number()) fail(join(path, key), "a number or null", v);
    return v.get<double>();
  }
  int64_t integer(const json& o, const std::string& path, const std::string& key) const {
    const auto& v = at(o, path, key);
    if (!v.is_number_integer()) fail(join(path, key), "an integer", v);
    return v.get<int64_t>();
  }
  std::string string(const json& o, const std::string& path, const std::string& key) const {
    const auto& v = at(o, path, key);
    if (!v.is_string()) fail(join(path, key), "a string", v);
    return v.get<std::string>();
  }
  const json& array(const json& o, const std::string& path, const std::string& key) const {
    const auto& v = at(o, path, key);
    if (!v.is_array()) fail(join(path, key), "a list", v);
    return v;
  }
  const json& object(const json& o, const std::string& path, const std::string& key) const {
    const auto& v = at(o, path, key);
    if (!v.is_object()) fail(join(path, key), "an object", v);
    return v;
  }
  std::vector<double> numbers(const json& o, const std::string& path, const std::string& key) const {
    std::vector<double> out;
    for (const auto& e : array(o, path, key)) {
      if (!e.is_null() && !e.is_number()) fail(join(path, key), "a list of numbers", o[key]);
      out.push_back(e.is_null() ? kNaN : e.get<double>());
    }
    return out;
  }
  template <typename T>
  std::vector<T> integers(const json& o, const std::string& path, const std::string& key) const {
    std::vector<T> out;
    for (const auto& e : array(o, path, key)) {
      if (!e.is_number_integer()) fail(join(path, key), "a list of integers", o[key]);
      out.push_back(e.get<T>());
    }
    return out;
  }
};

StudyCurve read_curve(const ResultReader& r, const json& c, const std::string& path) {
  return {r.numbers(c, path, "eps"), r.numbers(c, path, "value"), r.numbers(c, path, "stderr")};
}

void read_model_measures(const ResultReader& r, const json& m, const std::string& path, StudyModelResult& out) {
  const auto& measures = r.object(m, path, "measures");
  const auto& stderrs = r.object(m, path, "stderr");
  for (const auto& [name, v] : measures.items()) {
    const auto key = fmt::format("{}.measures.{}", path, shown_key(name));
    if (!v.is_null() && !v.is_number()) r.fail(key, "a number or null", v);
    if (!stderrs.contains(name))
      throw DataError(fmt::format("{}: key '{}.stderr.{}' is missing", r.where, path, shown_key(name)));
    out.measures[name] = {v.is_null() ? kNaN : v.get<double>(), r.number(stderrs, path + ".stderr", name)};
  }
  for (const auto& [name, c] : r.object(m, path, "curves").items())
    out.curves[name] = read_curve(r, c, fmt::format("{}.curves.{}", path, shown_key(name)));
  for (const auto& [name, v] : r.object(m, path, "measure_runs").items()) {
    if (!v.is_number_integer()) r.fail(fmt::format("{}.measure_runs.{}", path, shown_key(name)), "an integer", v);
    out.measure_runs[name] = v.get<int64_t>();
  }
}

StudyModelResult read_model_result(const ResultReader& r, const json& m, const std::string& path) {
  StudyModelResult out;
  out.model.spec = r.string(m, path, "spec");
  out.name = r.string(m, path, "name");
  try {
    out.model.options.activation = parse_activation(r.string(m, path, "act"), path + ".act");
  } catch (const UsageError& e) {
    throw DataError(fmt::format("{}: {}", r.where, e.what()));
  }
  const auto& bias = r.at(m, path, "bias");
  if (!bias.is_boolean()) r.fail(path + ".bias", "true or false", bias);
  out.model.options.bias = bias.get<bool>();
  out.d = r.integer(m, path, "d");
  out.k = r.integer(m, path, "k");
  read_model_measures(r, m, path, out);
  out.train_runs = r.integers<int64_t>(m, path, "train_runs");
  out.train_loss = r.numbers(m, path, "train_loss");
  out.train_loss_mean = r.number(m, path, "train_loss_mean");
  out.train_loss_sd = r.number(m, path, "train_loss_sd");
  out.test_loss_mean = r.number(m, path, "test_loss_mean");
  out.test_loss_sd = r.number(m, path, "test_loss_sd");
  out.test_accuracy_mean = r.number(m, path, "test_accuracy_mean");
  out.train_accuracy_mean = r.number(m, path, "train_accuracy_mean");
  if (m.contains("test_loss")) out.test_loss = r.numbers(m, path, "test_loss");
  if (m.contains("diverged")) {
    for (const auto& b : r.array(m, path, "diverged")) {
      if (!b.is_boolean()) r.fail(path + ".diverged", "a list of true or false", m["diverged"]);
      out.diverged.push_back(b.get<bool>());
    }
  } else {  // schema 1 kept no flags: a diverged training left a null final training loss
    for (double v : out.train_loss) out.diverged.push_back(!std::isfinite(v));
  }
  return out;
}

StudyCorrelation read_correlation_result(const ResultReader& r, const json& c, const std::string& path) {
  auto value = [&](const char* method) {
    const auto& v = r.object(c, path, method);
    const auto p = path + "." + method;
    return StudyCorrelationValue{r.number(v, p, "value"), r.number(v, p, "lo"), r.number(v, p, "hi"),
                                 r.integer(v, p, "valid")};
  };
  return {r.string(c, path, "measure"), r.string(c, path, "target"), value("spearman"), value("kendall"),
          r.integer(c, path, "n")};
}

// Schema 1 has no "config": the copies of it in the result give what the reports use.
StudyConfig config_from_copies(const ResultReader& r, const json& j, const std::vector<StudyModelResult>& models) {
  StudyConfig c;
  c.name = r.string(j, "", "name");
  const auto task = r.string(j, "", "task");
  if (task != "classify" && task != "regress") r.fail("task", "\"classify\" or \"regress\"", j["task"]);
  c.data.task = c.train.task = task == "classify" ? Task::Classify : Task::Regress;
  c.inputs = r.integer(j, "", "inputs");
  c.samples = r.integer(j, "", "samples");
  c.train.epochs = r.integer(j, "", "epochs");
  c.seeds = r.integers<uint64_t>(j, "", "seeds");
  c.sigmas = r.numbers(j, "", "sigmas");
  c.zetas = r.numbers(j, "", "zetas");
  c.eps = r.numbers(j, "", "eps");
  c.correlation.confidence = r.number(j, "", "confidence");
  for (const auto& m : models) c.models.push_back(m.model);
  return c;
}

// A stored configuration (study_config's JSON) back as a StudyConfig, checked as a study file.
StudyConfig config_from_stored(const ResultReader& r, json stored, const std::string& key) {
  if (!stored.is_object()) r.fail(key, "an object", stored);
  stored.erase("kind");
  try {
    auto c = study_from_json(stored, r.where + " " + key);
    c.file.clear();
    return c;
  } catch (const UsageError& e) {
    throw DataError(e.what());
  }
}

}  // namespace

std::string study_measure_name(const std::string& kind, double zeta, std::optional<double> eps,
                               std::optional<double> sigma) {
  const auto at = eps ? "eps=" + fmt_num(*eps) : std::string("at eps_zeta(n)");
  if (sigma) return fmt::format("{} sigma={:g} zeta={:g} {}", kind, *sigma, zeta, at);
  return fmt::format("{} zeta={:g} {}", kind, zeta, at);
}

json study_result_json(const StudyResult& r) {
  const auto& c = r.config;
  json models = json::array(), correlations = json::array();
  for (const auto& m : r.models) models.push_back(model_json(m));
  for (const auto& k : r.correlations) correlations.push_back(correlation_json(k));
  // n_train is a number, not an integer, in the stored layout (schema 1 wrote it so).
  return {{"schema_version", kStudyResultSchema},
          {"config", json::parse(study_config(c))},
          {"name", c.name},
          {"study", r.run},
          {"data", r.data},
          {"n_train", static_cast<double>(r.n_train)},
          {"n_test", r.n_test},
          {"inputs", c.inputs},
          {"samples", c.samples},
          {"task", task_name(c.data.task)},
          {"epochs", c.train.epochs},
          {"seeds", c.seeds},
          {"sigmas", c.sigmas},
          {"zetas", c.zetas},
          {"eps", c.eps},
          {"confidence", c.correlation.confidence},
          {"measure_names", r.measure_names},
          {"headline", r.headline},
          {"models", models},
          {"correlations", correlations}};
}

StudyResult parse_study_result(const std::string& text, const std::string& run_config) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw DataError(fmt::format("study result: not valid JSON ({})", e.what()));
  }
  const ResultReader r;
  if (!j.is_object()) r.fail("(top level)", "an object", j);
  const int64_t schema = j.contains("schema_version") ? r.integer(j, "", "schema_version") : 1;
  if (schema < 1 || schema > kStudyResultSchema)
    throw DataError(fmt::format("study result: schema_version {} (this twosed reads 1 to {}; a newer twosed wrote it)",
                                schema, kStudyResultSchema));
  StudyResult out;
  out.run = r.integer(j, "", "study");
  out.data = r.string(j, "", "data");
  out.n_train = static_cast<int64_t>(r.number(j, "", "n_train"));
  out.n_test = r.integer(j, "", "n_test");
  for (const auto& n : r.array(j, "", "measure_names")) {
    if (!n.is_string()) r.fail("measure_names", "a list of strings", j["measure_names"]);
    out.measure_names.push_back(n.get<std::string>());
  }
  out.headline = r.string(j, "", "headline");
  const auto& models = r.array(j, "", "models");
  for (size_t i = 0; i < models.size(); ++i)
    out.models.push_back(read_model_result(r, models[i], fmt::format("models[{}]", i)));
  const auto& correlations = r.array(j, "", "correlations");
  for (size_t i = 0; i < correlations.size(); ++i)
    out.correlations.push_back(read_correlation_result(r, correlations[i], fmt::format("correlations[{}]", i)));
  if (j.contains("config")) {
    out.config = config_from_stored(r, j["config"], "config");
  } else if (!run_config.empty()) {
    json stored;
    try {
      stored = json::parse(run_config);
    } catch (const json::parse_error& e) {
      throw DataError(fmt::format("study result: the run's configuration is not valid JSON ({})", e.what()));
    }
    out.config = config_from_stored(r, stored, "(the run's configuration)");
  } else {
    out.config = config_from_copies(r, j, out.models);
  }
  return out;
}

// --- Reports of a study result. ---

namespace {

std::string ci_text(const StudyCorrelationValue& c) {
  auto v = [](double x) { return std::isnan(x) ? std::string("  n/a") : fmt::format("{:+.2f}", x); };
  return fmt::format("{} [{}, {}]", v(c.value), v(c.lo), v(c.hi));
}

StudyValue measure_of(const StudyModelResult& m, const std::string& name) {
  const auto it = m.measures.find(name);
  return it == m.measures.end() ? StudyValue{} : it->second;
}

// The trainings whose final loss was not finite, for a note under the table ("" if none).
std::string diverged_note(const StudyResult& r) {
  std::string list;
  for (const auto& m : r.models)
    for (size_t s = 0; s < m.diverged.size(); ++s)
      if (m.diverged[s])
        list += fmt::format("{}{} seed {}", list.empty() ? "" : ", ", m.name,
                            s < r.config.seeds.size() ? std::to_string(r.config.seeds[s]) : "?");
  return list.empty() ? "" : "  diverged (a final loss not finite; no loss mean): " + list + "\n";
}

std::string model_rows(const StudyResult& r, bool has_ed) {
  size_t w = 5;
  for (const auto& m : r.models) w = std::max(w, m.name.size());
  std::string out = fmt::format("  {:<{}} {:>8} {:>20} {:>9} {:>18} {:>10}\n", "model", w, "d", "headline +- se",
                                has_ed ? "ED(n)" : "", "train loss", "test loss");
  for (const auto& m : r.models) {
    const auto headline = measure_of(m, r.headline);
    out += fmt::format(
        "  {:<{}} {:>8} {:>20} {:>9} {:>18} {:>10}\n", m.name, w, m.d,
        fmt::format("{:.2f} +- {:.2f}", headline.value, headline.std_error),
        has_ed ? fmt::format("{:.2f}", measure_of(m, "ED(n)").value) : "",
        std::isnan(m.train_loss_mean) ? "-" : fmt::format("{:.4f} +- {:.4f}", m.train_loss_mean, m.train_loss_sd),
        std::isnan(m.test_loss_mean) ? "-" : fmt::format("{:.4f}", m.test_loss_mean));
  }
  return out;
}

}  // namespace

std::string study_table(const StudyResult& r) {
  std::string out = fmt::format(
      "twosed study '{}' (run {})\n  data   {}\n  n      {} training examples; {} epochs x {} seeds per model\n\n",
      r.config.name, r.run, r.data, r.n_train, r.config.train.epochs, r.config.seeds.size());
  const bool has_ed = std::find(r.measure_names.begin(), r.measure_names.end(), "ED(n)") != r.measure_names.end();
  out += model_rows(r, has_ed);
  out += fmt::format("\n  headline: {}; train loss: mean +- sd over seeds of the final training loss\n", r.headline);
  out += diverged_note(r);
  out += fmt::format(
      "\n  rank correlations with the final loss (mean over seeds), {:g}% bootstrap intervals over the models\n",
      100 * r.config.correlation.confidence);
  out += fmt::format("  {:<50} {:>10} {:>22} {:>22}\n", "measure", "target", "Spearman rho", "Kendall tau");
  for (const auto& c : r.correlations)
    out += fmt::format("  {:<50} {:>10} {:>22} {:>22}\n", c.measure, c.target, ci_text(c.spearman), ci_text(c.kendall));
  // An empty table says why: a correlation needs two models with a finite mean loss.
  if (r.correlations.empty())
    out += "  no correlations: fewer than two models with a finite loss (see the diverged trainings above)\n";
  out += "\n  A negative correlation means: the larger the measure, the lower the loss reached.\n";
  return out;
}

std::string study_csv(const StudyResult& r) {
  std::string out = "measure,target,method,value,lo,hi,n\n";
  auto v = [](double x) { return std::isnan(x) ? std::string() : fmt::format("{:.17g}", x); };
  for (const auto& c : r.correlations)
    for (const auto* k : {&c.spearman, &c.kendall})
      out += fmt::format("\"{}\",{},{},{},{},{},{}\n", c.measure, c.target, k == &c.spearman ? "spearman" : "kendall",
                         v(k->value), v(k->lo), v(k->hi), c.n);
  return out;
}

namespace {

// Curves against eps, one line per model: the 2sED at the first and last zeta, the lower 2sED
// of each sigma at the first zeta (zeta*d dominates at large zeta, hiding the shape).
Figure curves_figure(const StudyResult& r) {
  const auto& zetas = r.config.zetas;
  const double z0 = zetas.front(), z1 = zetas.back();
  std::vector<std::pair<std::string, std::string>> kinds = {{fmt::format("2sED zeta={:g}", z0), "2sED"}};
  if (z1 != z0) kinds.push_back({fmt::format("2sED zeta={:g}", z1), "2sED"});
  for (double s : r.config.sigmas)
    kinds.push_back(
        {fmt::format("lower 2sED sigma={:g} zeta={:g}", s, z0), fmt::format("lower 2sED, sigma = {:g}", s)});
  if (kinds.size() > 4) kinds.resize(4);
  Figure curves;
  for (const auto& [key, title] : kinds) {
    LinePanel p;
    p.title = fmt::format("{} ({})", title, key.substr(key.rfind("zeta=")));
    p.x_label = "eps";
    p.y_label = "dimension";
    p.log_x = true;
    for (const auto& m : r.models) {
      const auto it = m.curves.find(key);
      if (it != m.curves.end()) p.series.push_back({m.name, it->second.eps, it->second.value, it->second.std_error});
    }
    curves.panels.push_back(p);
  }
  curves.title = fmt::format("study '{}': measures before training", r.config.name);
  return curves;
}

// Training-loss curves of the first seed of every model.
Figure training_figure(const ResultsStore& store, const StudyResult& r) {
  LinePanel tl;
  tl.title = "training loss (first seed)";
  tl.x_label = "epoch";
  tl.y_label = "training loss";
  tl.log_y = true;
  for (const auto& m : r.models) {
    PlotSeries s{m.name, {}, {}, {}};
    if (!m.train_runs.empty())
      for (const auto& rec : store.training_records(m.train_runs.front()))
        if (rec.step < 0) s.x.push_back(static_cast<double>(rec.epoch)), s.y.push_back(rec.train_loss);
    tl.series.push_back(s);
  }
  Figure training;
  training.panels.push_back(tl);
  return training;
}

// The headline measure against the final training loss, the rank correlations in the title.
Figure scatter_figure(const StudyResult& r) {
  std::string title = r.headline + " vs final training loss";
  for (const auto& c : r.correlations)
    if (c.measure == r.headline && c.target == "train loss" && !std::isnan(c.spearman.value))
      title = fmt::format("Spearman {:+.2f}, Kendall {:+.2f}", c.spearman.value, c.kendall.value);
  LinePanel sp;
  sp.title = title;
  sp.x_label = r.headline;
  sp.y_label = "final training loss (mean over seeds)";
  sp.points = true;
  for (const auto& m : r.models)
    if (!std::isnan(m.train_loss_mean))
      sp.series.push_back({m.name, {measure_of(m, r.headline).value}, {m.train_loss_mean}, {}});
  Figure scatter;
  scatter.panels.push_back(sp);
  return scatter;
}

}  // namespace

std::vector<std::string> study_plots(const ResultsStore& store, const StudyResult& r, const std::string& prefix,
                                     const std::string& ext) {
  std::vector<std::string> written;
  for (const auto& [name, fig] : {std::pair<const char*, Figure>{"curves", curves_figure(r)},
                                  std::pair<const char*, Figure>{"training", training_figure(store, r)},
                                  std::pair<const char*, Figure>{"scatter", scatter_figure(r)}}) {
    written.push_back(prefix + "-" + name + "." + ext);
    write_figure(fig, written.back());
  }
  return written;
}

}  // namespace twosed
