// Measurements and training runs in the results store: configurations, claims, stored runs read
// back (twosed_core). Recording a run as it is computed is in record.cpp (LibTorch side).
#include "twosed/store/runs.h"

#include <fmt/format.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "json_fields.h"
#include "runs_detail.h"
#include "store/sha256.h"
#include "twosed/error.h"
#include "twosed/measure/result_json.h"
#include "twosed/model/model_spec.h"

namespace twosed {
namespace {

using nlohmann::json;

const char* task_name(Task t) {
  return t == Task::Classify ? "classify" : "regress";
}

const char* side_name(GramSide s) {
  switch (s) {
    case GramSide::Auto:
      return "auto";
    case GramSide::Samples:
      return "samples";
    case GramSide::Parameters:
      return "parameters";
  }
  return "auto";
}

GramSide side_from(const std::string& s) {
  return s == "parameters" ? GramSide::Parameters : s == "auto" ? GramSide::Auto : GramSide::Samples;
}

SampleRecord record_from(const StoredSample& st, const std::string& where) {
  SampleRecord r;
  r.index = st.index;
  r.blocks = st.blocks;
  try {
    const auto j = json::parse(st.stats);
    auto& s = r.summary;
    s.matrix_size = json_fields::integer(j, "matrix_size", where);
    s.kept = json_fields::integer(j, "kept", where);
    s.cut = json_fields::integer(j, "cut", where);
    s.trace = j.at("trace").get<double>();
    s.largest = j.at("largest").get<double>();
    s.most_negative = j.at("most_negative").get<double>();
    const auto sec = j.at("seconds").get<std::vector<double>>();
    if (sec.size() == 3) s.seconds_forward_backward = sec[0], s.seconds_gram = sec[1], s.seconds_eigen = sec[2];
    r.side = side_from(j.at("side").get<std::string>());
    for (const auto& c : j.at("costs")) {
      const auto v = c.get<std::vector<double>>();
      // The first three are block counts and sizes: whole numbers a cast can hold.
      const auto count = [](double x) { return x >= 0 && x <= 9.0e15 && x == std::floor(x); };
      if (v.size() != 6 || !count(v[0]) || !count(v[1]) || !count(v[2]))
        throw DataError(fmt::format("{}: sample {}: malformed costs", where, st.index));
      r.costs.push_back(
          {static_cast<int64_t>(v[0]), static_cast<int64_t>(v[1]), static_cast<int64_t>(v[2]), v[3], v[4], v[5]});
    }
  } catch (const json::exception& e) {
    throw DataError(fmt::format("{}: sample {}: malformed stats ({})", where, st.index, e.what()));
  }
  return r;
}

// "key: stored X, now Y" for every top-level key that differs (at most `limit`).
std::string config_differences(const std::string& stored, const std::string& now, size_t limit = 4) {
  const auto a = json::parse(stored), b = json::parse(now);
  std::vector<std::string> diffs;
  std::vector<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.push_back(k);
  for (const auto& [k, v] : b.items())
    if (!a.contains(k)) keys.push_back(k);
  for (const auto& k : keys) {
    const json va = a.contains(k) ? a.at(k) : json(nullptr), vb = b.contains(k) ? b.at(k) : json(nullptr);
    if (va != vb) {
      auto shown = [](const json& v) {
        auto s = v.dump();
        return s.size() > 60 ? s.substr(0, 57) + "..." : s;
      };
      diffs.push_back(fmt::format("{} {} (now {})", k, shown(va), shown(vb)));
    }
  }
  std::string out;
  for (size_t i = 0; i < diffs.size() && i < limit; ++i) out += (i ? "; " : "") + diffs[i];
  if (diffs.size() > limit) out += fmt::format("; and {} more", diffs.size() - limit);
  return out;
}

uint64_t fnv1a(const void* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

std::string this_process() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return fmt::format("{}@{}", ::getpid(), host);
}

// The pid of a "PID@HOST" marker written on this host (0: another host or malformed).
long local_pid(const std::string& marker) {
  const auto at = marker.find('@');
  if (at == std::string::npos) return 0;
  const std::string self = this_process();
  if (marker.substr(at) != self.substr(self.find('@'))) return 0;  // another host: cannot tell
  const long pid = std::strtol(marker.c_str(), nullptr, 10);
  return pid > 0 ? pid : 0;
}

bool pid_exists(long pid) {
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

// Another process on this host that is still alive. This process itself is not "another": a
// run it marked and left running (an exception that skipped fail_run) it may take up again.
bool other_live_process(const std::string& marker) {
  const long pid = local_pid(marker);
  return pid > 0 && pid != static_cast<long>(::getpid()) && pid_exists(pid);
}

// Whether `now` differs from `stored` only in a larger "samples": the run can be extended.
bool extends(const std::string& stored, const std::string& now) {
  auto a = json::parse(stored), b = json::parse(now);
  if (!a.contains("samples") || !b.contains("samples") || !a["samples"].is_number_integer() ||
      !b["samples"].is_number_integer() || b["samples"].get<int64_t>() <= a["samples"].get<int64_t>())
    return false;
  a.erase("samples");
  b.erase("samples");
  return a == b;
}

std::string live_message(const std::string& where, int64_t run, const std::string& marker) {
  return fmt::format("{}: run {} is still running in process {}; wait for it or stop it", where, run, marker);
}

}  // namespace

// One sample's summary and costs as the store's stats text (its spectra go in blocks).
std::string sample_stats_json(const SampleRecord& r) {
  const auto& s = r.summary;
  json costs = json::array();
  for (const auto& c : r.costs)
    costs.push_back({c.blocks_samples_side, c.blocks_parameter_side, c.largest_block, c.seconds, c.cpu_seconds_products,
                     c.cpu_seconds_eigen});
  return json{{"matrix_size", s.matrix_size},
              {"kept", s.kept},
              {"cut", s.cut},
              {"trace", s.trace},
              {"largest", s.largest},
              {"most_negative", s.most_negative},
              {"seconds", {s.seconds_forward_backward, s.seconds_gram, s.seconds_eigen}},
              {"side", side_name(r.side)},
              {"costs", costs}}
      .dump();
}

// Whether this process is the one that last claimed the run (only the owner records failure).
bool owns_run(const ResultsStore& store, int64_t run) {
  return store.get_text(run, "process").value_or("") == this_process();
}

void mark_process(ResultsStore& store, int64_t run) {
  store.put_text(run, "process", this_process());
}

bool run_is_stopped(const ResultsStore& store, const RunInfo& run) {
  if (run.status != "running") return false;
  const auto text = store.get_text(run.id, "process");
  if (!text) return false;
  const long pid = local_pid(*text);
  return pid > 0 && !pid_exists(pid);
}

void claim_run(ResultsStore& store, int64_t run, bool allow_done, const std::string& config) {
  const auto refused = store.claim_run(run, this_process(), other_live_process, allow_done, config);
  const auto where = fmt::format("{}: cannot resume", store.path());
  if (refused == "done")
    throw DataError(fmt::format("{}: run {} is already finished (see 'twosed show {}')", where, run, run));
  if (!refused.empty()) throw DataError(live_message(where, run, refused));
}

int64_t delete_stored_run(ResultsStore& store, int64_t run) {
  std::vector<RunInfo> subtree{store.run(run)};
  for (size_t i = 0; i < subtree.size(); ++i)
    for (const auto& c : store.children(subtree[i].id)) subtree.push_back(c);
  for (const auto& r : subtree) {
    const auto marker = store.get_text(r.id, "process");
    if (r.status == "running" && marker && other_live_process(*marker))
      throw DataError(
          fmt::format("{}: cannot delete run {}: run {} is still running in process {}; wait for it or "
                      "stop it",
                      store.path(), run, r.id, *marker));
  }
  store.delete_run(run);
  return static_cast<int64_t>(subtree.size());
}

namespace {
// A TorchScript --model is identified by its path and its bytes' SHA-256 (a changed file is
// another model); a spec by its canonical text and the options that complete it.
json model_config(const MeasureOptions& o) {
  if (is_torchscript_path(o.model))
    return {{"model", o.model},
            {"model_sha256", file_sha256(o.model)},
            {"input_shape", o.input_shape},
            {"jacobian", o.jacobian}};
  const auto spec = parse_model_spec(o.model, o.model_options);
  return {{"model", spec.text},
          {"activation", activation_name(o.model_options.activation)},
          {"bias", o.model_options.bias}};
}
}  // namespace

std::string measure_config(const MeasureOptions& o) {
  json j = {{"kind", "measure"},
            {"task", task_name(o.fisher.task)},
            {"fisher", o.fisher.kind == FisherKind::Exact ? "exact" : "sampled"},
            {"side", side_name(o.fisher.side)},
            {"cutoff", o.fisher.cutoff},
            {"memory_budget", o.fisher.memory_budget},
            {"standardize", o.standardize},
            {"seed", o.seed},
            {"eps", o.estimator.eps.empty() ? default_eps_grid() : o.estimator.eps},
            {"zetas", o.estimator.zetas},
            {"cover", o.estimator.cover == Cover::Box ? "box" : "ellipsoid"},
            {"ed_n", o.estimator.ed_n},
            {"at_n", o.estimator.at_n},
            {"bootstrap", o.estimator.bootstrap},
            {"markov", o.markov}};
  if (o.fisher.task == Task::Regress) j["out_noise"] = o.fisher.out_noise;
  j.update(model_config(o));
  if (!o.inputs_file.empty())
    j["inputs_file"] = o.inputs_file;
  else if (is_torchscript_path(o.model))
    j["data"] = o.data, j["inputs"] = o.num_inputs;  // empty: the default for the file's input shape and k
  else
    j["data"] = o.data.empty() ? default_data_source(parse_model_spec(o.model, o.model_options)) : o.data,
    j["inputs"] = o.num_inputs;
  if (!o.thetas_file.empty())
    j["thetas"] = o.thetas_file;
  else
    j["space"] = o.space, j["samples"] = o.num_param_samples;
  if (o.markov) {
    j["sigma"] = o.sigma;
    j["noise_draws"] = o.noise_draws;
    if (!o.noise_file.empty()) j["noise"] = o.noise_file;
  }
  return j.dump();
}

namespace {
// A run of the same TorchScript file path whose configuration differs only in the file's
// SHA-256 (or extends to more samples) measured other bytes: refused, saying so.
void refuse_changed_model_file(const std::string& where, const RunInfo& r, const std::string& config) {
  auto was = json::parse(r.config);
  const auto now = json::parse(config);
  if (!was.contains("model_sha256") || !now.contains("model_sha256") || was["model"] != now["model"] ||
      was["model_sha256"] == now["model_sha256"])
    return;
  const auto stored_hash = was["model_sha256"].get<std::string>();
  was["model_sha256"] = now["model_sha256"];
  if (was != now && !extends(was.dump(), config)) return;
  throw DataError(fmt::format("{}: run {} measured {} with SHA-256 {}, but the file has changed since (SHA-256 {} now)",
                              where, r.id, now["model"].get<std::string>(), stored_hash.substr(0, 16),
                              now["model_sha256"].get<std::string>().substr(0, 16)));
}
}  // namespace

RunInfo find_resumable(const ResultsStore& store, const std::string& kind, const std::string& config,
                       const RecordOptions& ropts) {
  const auto where = fmt::format("{}: cannot resume", store.path());
  auto check = [&](const RunInfo& r) {
    if (r.kind != kind) throw DataError(fmt::format("{}: run {} is a {} run, not a {} run", where, r.id, r.kind, kind));
    // Refused up front; claim_run makes the check atomic.
    const auto marker = store.get_text(r.id, "process");
    if (r.status == "running" && marker && other_live_process(*marker))
      throw DataError(live_message(where, r.id, *marker));
    if (r.config != config && !extends(r.config, config)) {
      refuse_changed_model_file(where, r, config);
      throw DataError(fmt::format("{}: run {} has a different configuration: {}", where, r.id,
                                  config_differences(r.config, config)));
    }
    if (r.status == "done" && r.config == config)
      throw DataError(fmt::format("{}: run {} is already finished (see 'twosed show {}')", where, r.id, r.id));
    return r;
  };
  if (ropts.resume_run > 0) return check(store.run(ropts.resume_run));
  // The newest unfinished run with this configuration, or one this configuration extends
  // (more samples); else say why there is none.
  std::optional<RunInfo> done, other;
  const auto runs = store.runs(kind);
  for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
    if (it->parent != ropts.parent) continue;
    const bool same = it->config == config;
    if ((same && it->status != "done") || extends(it->config, config)) return check(*it);
    if (same && !done) done = *it;
    if (!same && it->status != "done" && !other) other = *it;
  }
  for (auto it = runs.rbegin(); it != runs.rend(); ++it)
    if (it->parent == ropts.parent) refuse_changed_model_file(where, *it, config);
  if (done)
    throw DataError(fmt::format("{}: run {} with this configuration is already finished (see 'twosed show {}')", where,
                                done->id, done->id));
  if (other) return check(*other);
  throw DataError(fmt::format("{}: no unfinished {} run to resume", where, kind));
}

std::vector<SampleRecord> stored_samples(const ResultsStore& store, int64_t run, SpectraHeader* header) {
  const auto info = store.run(run);
  const auto where = fmt::format("{}: run {}", store.path(), run);
  if (info.kind != "measure") throw DataError(fmt::format("{} is a {} run, not a measurement", where, info.kind));
  if (header) {
    const auto text = store.get_text(run, "header");
    if (!text) throw DataError(fmt::format("{} has no header (it stopped before its first sample)", where));
    *header = parse_spectra_header(*text, where);
  }
  std::vector<SampleRecord> out;
  for (const auto& s : store.samples(run)) out.push_back(record_from(s, where));
  return out;
}

MeasureResult stored_measure(const ResultsStore& store, int64_t run, const EstimatorOptions& eopts) {
  SpectraHeader header;
  const auto records = stored_samples(store, run, &header);
  const auto info = store.run(run);
  if (records.empty()) throw DataError(fmt::format("{}: run {} has no finished samples", store.path(), run));
  EstimatorOptions e = eopts;
  const auto config = json::parse(info.config);
  e.seed = config.value("seed", uint64_t{0});  // the run's own bootstrap seed
  ResultSources sources;
  // Where the spectra came from; the sample count is in the Fisher line (M).
  sources.data = fmt::format(
      "spectra stored in run {} of {}{} (measured on {})", run, store.path(),
      info.status == "done" ? "" : ", unfinished",
      config.contains("data") ? config["data"].get<std::string>() : "inputs from " + config.value("inputs_file", ""));
  sources.space = config.contains("space") ? config["space"].get<std::string>()
                                           : "given samples from " + config.value("thetas", "");
  sources.activation = config.value("activation", "");
  auto result = assemble_result(header, records, e, sources);
  result.recomputed = true;
  result.fisher.cutoff = config.value("cutoff", kZeroCutoff);
  if (config.contains("out_noise")) result.fisher.out_noise = config["out_noise"].get<double>();
  return result;
}

EstimatorOptions stored_estimator_options(const ResultsStore& store, int64_t run) {
  const auto config = json::parse(store.run(run).config);
  EstimatorOptions e;
  e.eps = config.at("eps").get<std::vector<double>>();
  e.zetas = config.at("zetas").get<std::vector<double>>();
  e.cover = config.value("cover", "box") == "ellipsoid" ? Cover::Ellipsoid : Cover::Box;
  e.at_n = config.value("at_n", std::vector<double>{});
  e.ed_n = config.value("ed_n", std::vector<double>{});
  e.bootstrap = config.value("bootstrap", int64_t{1000});
  e.seed = config.value("seed", uint64_t{0});
  return e;
}

std::string train_config(const TrainConfig& c) {
  const auto spec = parse_model_spec(c.model, c.model_options);
  const auto& d = c.data;
  const auto& t = c.train;
  json j = {{"kind", "train"},
            {"model", spec.text},
            {"activation", activation_name(c.model_options.activation)},
            {"bias", c.model_options.bias},
            {"data",
             {{"data", d.data.empty() ? default_data_source(spec) : d.data},
              {"test_data", d.test_data},
              {"test_fraction", d.test_fraction},
              {"train_size", d.train_size},
              {"test_size", d.test_size},
              {"standardize", d.standardize},
              {"task", task_name(d.task)},
              {"seed", d.seed}}},
            {"train",
             {{"optimizer", t.optimizer},
              {"lr", t.lr},
              {"momentum", t.momentum},
              {"weight_decay", t.weight_decay},
              {"batch", t.batch},
              {"epochs", t.epochs},
              {"seed", t.seed},
              {"task", task_name(t.task)},
              {"log_steps", t.log_steps}}}};
  if (!t.initial_theta.empty())
    j["train"]["initial_theta"] = fmt::format("{} values, fnv1a {:016x}", t.initial_theta.size(),
                                              fnv1a(t.initial_theta.data(), t.initial_theta.size() * sizeof(double)));
  return j.dump();
}

}  // namespace twosed
