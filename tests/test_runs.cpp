// The results store used end to end: measurements committed sample by sample and resumed,
// stored curves recomputed, training runs recorded, study files parsed, a small study run and
// resumed without recomputation.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "twosed/error.h"
#include "twosed/store/runs.h"
#include "twosed/study/study.h"

using namespace twosed;

namespace {

std::string temp_db(const std::string& name) {
  const auto path = ::testing::TempDir() + "twosed_runs_" + std::to_string(::getpid()) + "_" + name;
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
  return path;
}

MeasureOptions small_measure(bool markov) {
  MeasureOptions o;
  o.model = "mlp:6-5-4-3";
  o.data = "synthetic:blobs:3:6:200";
  o.num_inputs = 12;
  o.num_param_samples = 8;
  o.estimator.zetas = {0.0, 0.5};
  o.estimator.at_n = {1000};
  o.estimator.ed_n = {1000};
  o.estimator.bootstrap = 200;
  o.seed = 5;
  o.markov = markov;
  o.sigma = 0.3;
  return o;
}

void expect_same_estimates(const TwoScaleResult& a, const TwoScaleResult& b) {
  ASSERT_EQ(a.curves.size(), b.curves.size());
  for (size_t z = 0; z < a.curves.size(); ++z) {
    EXPECT_EQ(a.curves[z].value, b.curves[z].value);
    EXPECT_EQ(a.curves[z].std_error, b.curves[z].std_error);
  }
  ASSERT_EQ(a.at_n.size(), b.at_n.size());
  for (size_t i = 0; i < a.at_n.size(); ++i) EXPECT_EQ(a.at_n[i].value, b.at_n[i].value);
  ASSERT_EQ(a.ed.size(), b.ed.size());
  for (size_t i = 0; i < a.ed.size(); ++i) EXPECT_EQ(a.ed[i].value, b.ed[i].value);
  EXPECT_EQ(a.mean_trace, b.mean_trace);
}

struct Interrupt {};

}  // namespace

TEST(RecordMeasure, ResumeAfterAnInterruptionGivesTheUninterruptedResult) {
  for (bool markov : {false, true}) {
    SCOPED_TRACE(markov ? "markov" : "standard");
    const auto ref = run_measure(small_measure(markov));
    ResultsStore db(temp_db(markov ? "resume_markov.db" : "resume.db"));
    // First attempt: stops after 3 committed samples (as a kill would, but in-process).
    auto o = small_measure(markov);
    std::vector<int64_t> committed;  // which 3: samples run in parallel finish in any order
    o.on_sample = [&](const SampleRecord& r) {
      committed.push_back(r.index);
      if (committed.size() == 3) throw Interrupt{};
    };
    EXPECT_THROW(record_measure(db, o, {}), Interrupt);
    const auto runs = db.runs("measure");
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0].num_samples, 3);
    // Resumed: computes only the 5 missing samples and ends with the same numbers.
    auto o2 = small_measure(markov);
    int recomputed = 0;
    std::vector<int64_t> indices;
    o2.on_sample = [&](const SampleRecord& r) { ++recomputed, indices.push_back(r.index); };
    RecordOptions ro;
    ro.resume = true;
    const auto rec = record_measure(db, o2, ro);
    EXPECT_EQ(rec.run, runs[0].id);
    EXPECT_EQ(recomputed, 5);
    // Exactly the samples the first attempt did not commit, in any order.
    std::vector<int64_t> missing;
    for (int64_t j = 0; j < 8; ++j)
      if (std::find(committed.begin(), committed.end(), j) == committed.end()) missing.push_back(j);
    std::sort(indices.begin(), indices.end());
    EXPECT_EQ(indices, missing);
    EXPECT_EQ(rec.result.resumed_samples, 3);
    expect_same_estimates(rec.result.estimate, ref.estimate);
    if (markov) {
      expect_same_estimates(rec.result.markov.lower, ref.markov.lower);
      for (size_t l = 0; l < ref.markov.layers.size(); ++l)
        expect_same_estimates(rec.result.markov.layers[l].share, ref.markov.layers[l].share);
    }
    EXPECT_EQ(db.run(rec.run).status, "done");
    // The stored spectra give the same curves without the network, and new eps/zeta too.
    const auto stored = stored_measure(db, rec.run, small_measure(markov).estimator);
    expect_same_estimates(stored.estimate, ref.estimate);
    EstimatorOptions other = small_measure(markov).estimator;
    other.eps = {1e-3, 0.05};
    other.zetas = {0.25};
    const auto fresh = [&] {
      auto q = small_measure(markov);
      q.estimator = other;
      return run_measure(q);
    }();
    expect_same_estimates(stored_measure(db, rec.run, other).estimate, fresh.estimate);
  }
}

TEST(RecordMeasure, ResumeRefusesADifferentConfigurationOrAFinishedRun) {
  ResultsStore db(temp_db("refuse.db"));
  auto o = small_measure(false);
  int computed = 0;
  o.on_sample = [&](const SampleRecord&) {
    if (++computed == 2) throw Interrupt{};
  };
  EXPECT_THROW(record_measure(db, o, {}), Interrupt);
  auto other = small_measure(false);
  other.seed = 6;
  RecordOptions ro;
  ro.resume = true;
  try {
    record_measure(db, other, ro);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("different configuration: seed 5 (now 6)"), std::string::npos) << e.what();
  }
  record_measure(db, small_measure(false), ro);  // the right configuration finishes it
  try {
    record_measure(db, small_measure(false), ro);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("already finished"), std::string::npos) << e.what();
  }
  ResultsStore empty(temp_db("empty.db"));
  EXPECT_THROW(record_measure(empty, small_measure(false), ro), DataError);
}

TEST(RecordTraining, CommitsEveryRecordAndTheTheta) {
  ResultsStore db(temp_db("train.db"));
  TrainConfig c;
  c.model = "mlp:6-8-3";
  c.data.data = "synthetic:blobs:3:6:300";
  c.data.test_fraction = 0.2;
  c.train.epochs = 4;
  c.train.batch = 32;
  c.train.lr = 0.01;
  c.train.log_steps = true;  // step records are committed with their epoch's record
  const auto rec = record_training(db, c, {});
  const auto stored = db.training_records(rec.run);
  ASSERT_EQ(stored.size(), rec.result.records.size());
  EXPECT_EQ(stored.size(), 5u + 4u * 8u);  // epochs 0..4, and ceil(240 / 32) = 8 steps per epoch
  for (size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(stored[i].epoch, rec.result.records[i].epoch);
    EXPECT_EQ(stored[i].step, rec.result.records[i].step);
    auto same = [](double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); };
    EXPECT_TRUE(same(stored[i].train_loss, rec.result.records[i].train_loss)) << i;
    EXPECT_TRUE(same(stored[i].test_loss, rec.result.records[i].test_loss)) << i;
  }
  EXPECT_EQ(db.get_array(rec.run, "theta"), rec.result.theta);
  const auto result = nlohmann::json::parse(db.run(rec.run).result);
  EXPECT_EQ(result["train_loss"].get<double>(), rec.result.final_record.train_loss);
  EXPECT_LT(rec.result.final_record.train_loss, rec.result.records.front().train_loss);
}

TEST(StudyFile, ErrorsNameTheKeyAndTheExpectedType) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      parse_study_text(text, "s.json");
    } catch (const UsageError& e) {
      return e.what();
    } catch (const DataError& e) {
      return std::string("DataError: ") + e.what();
    }
    return "no error";
  };
  EXPECT_EQ(error_of(R"({"models": ["mlp:4-3"], "train": {"epochs": "ten"}})"),
            "s.json: key 'train.epochs': expected an integer, got \"ten\"");
  EXPECT_EQ(error_of(R"({"models": ["mlp:4-3"], "measure": {"zetas": [0, 1.5]}})"),
            "s.json: key 'measure.zetas': expected a list of numbers in [0, 1), got [0,1.5]");
  EXPECT_EQ(error_of(R"({"models": "mlp:4-3"})"),
            "s.json: key 'models': expected a non-empty list of model specs, got \"mlp:4-3\"");
  EXPECT_EQ(error_of(R"({"name": "x"})"), "s.json: key 'models' is missing (a list of model specs)");
  EXPECT_NE(error_of(R"({"models": ["mlp:4-3"], "trian": {}})").find("unknown key 'trian'"), std::string::npos);
  EXPECT_NE(error_of(R"({"models": ["mlp:4-3"], "train": {"lr": 0.1, "epoch": 3}})").find("unknown key 'train.epoch'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"models": ["mlp:4-x-3"]})").find("s.json: key 'models[0]'"), std::string::npos);
  EXPECT_NE(error_of(R"({"models": [{"spec": "mlp:4-3", "act": "swish"}]})").find("models[0].act"), std::string::npos);
  EXPECT_NE(error_of(R"({"models": [{"act": "tanh"}]})").find("models[0].spec"), std::string::npos);
  EXPECT_NE(error_of(R"({"models": ["mlp:4-3"],)").find("DataError: s.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"models": ["mlp:4-3"], "data": {"standardize": 1}})")
                .find("'data.standardize': expected true or false"),
            std::string::npos);
  const auto c = parse_study_text(
      R"({"name": "ok", "models": ["mlp:4-3", {"spec": "mlp:4-8-3", "act": "tanh"}], "measure": {"sigmas": [0.5]},
          "train": {"seeds": [3, 4], "epochs": 2}})",
      "ok.json");
  EXPECT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[1].options.activation, Activation::Tanh);
  EXPECT_EQ(c.seeds, (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(c.sigmas, std::vector<double>{0.5});
  EXPECT_EQ(c.train.epochs, 2);
}

// The whole file is validated before any work, with the library's own checks, and the errors
// are in the file's words (keys), not the library's (fields) or the CLI's (flags).
TEST(StudyFile, ValuesAreValidatedBeforeAnyWorkInTheFilesWords) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      parse_study_text(text, "s.json");
    } catch (const OptionError& e) {
      return std::string("OptionError: ") + e.what();  // must not escape: it names a field
    } catch (const UsageError& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string m = R"("models": ["mlp:4-3"], )";
  EXPECT_EQ(error_of("{" + m + R"("train": {"momentum": 1.5}})"),
            "s.json: key 'train.momentum': must be in [0, 1), got 1.5");
  EXPECT_EQ(error_of("{" + m + R"("train": {"optimizer": "rmsprop"}})"),
            "s.json: key 'train.optimizer': must be adam or sgd, got 'rmsprop'");
  EXPECT_EQ(error_of("{" + m + R"("train": {"lr": 0}})"), "s.json: key 'train.lr': must be a finite number > 0, got 0");
  EXPECT_EQ(error_of("{" + m + R"("train": {"weight_decay": -1}})"),
            "s.json: key 'train.weight_decay': must be a finite number >= 0, got -1");
  EXPECT_EQ(error_of("{" + m + R"("data": {"test_fraction": 1}})"),
            "s.json: key 'data.test_fraction': must be in [0, 1), got 1");
  EXPECT_EQ(error_of("{" + m + R"("data": {"source": "foo:bar"}})").rfind("s.json: key 'data.source': ", 0), 0u);
  EXPECT_EQ(error_of("{" + m + R"("data": {"test_data": "nokind:x"}})").rfind("s.json: key 'data.test_data': ", 0), 0u);
  EXPECT_EQ(error_of("{" + m + R"("measure": {"samples": 0}})"),
            "s.json: key 'measure.samples': expected an integer in [1, 10000000], got 0");
  EXPECT_EQ(error_of("{" + m + R"("measure": {"bootstrap": 2000000}})"),
            "s.json: key 'measure.bootstrap': expected an integer in [2, 1000000], got 2000000");
  EXPECT_EQ(error_of("{" + m + R"("measure": {"noise_draws": 0}})"),
            "s.json: key 'measure.noise_draws': expected an integer in [1, 1000000], got 0");
  EXPECT_EQ(error_of("{" + m + R"("measure": {"eps": [0.5, 1]}})"),
            "s.json: key 'measure.eps': expected a list of numbers in (0, 1), got [0.5,1]");
  EXPECT_EQ(error_of("{" + m + R"("measure": {"sigmas": [0]}})"),
            "s.json: key 'measure.sigmas': expected a list of numbers > 0, got [0]");
  EXPECT_EQ(error_of("{" + m + R"("correlation": {"confidence": 1}})"),
            "s.json: key 'correlation.confidence': expected a number in (0, 1), got 1");
  EXPECT_EQ(error_of(R"({"models": ["mlp:4-3", "mlp:4-q-3"]})").rfind("s.json: key 'models[1]': model spec", 0), 0u);
}

TEST(StudyFile, DuplicateKeysAreRefused) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      parse_study_text(text, "s.json");
    } catch (const UsageError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(error_of(R"({"models": ["mlp:4-3"], "measure": {"samples": 3, "samples": 4}})"),
            "s.json: key 'measure.samples' appears twice");
  EXPECT_EQ(error_of(R"({"models": ["mlp:4-3"], "models": ["mlp:4-5-3"]})"), "s.json: key 'models' appears twice");
  EXPECT_EQ(error_of(R"({"models": ["mlp:4-3", [1, {"a": 1}], {"spec": "mlp:4-3", "spec": "mlp:4-5-3"}]})"),
            "s.json: key 'models[2].spec' appears twice");
  EXPECT_EQ(error_of(R"({"models": [{"spec": "mlp:4-3"}], "train": {"seeds": [1, 2], "lr": 0.1, "lr": 0.2}})"),
            "s.json: key 'train.lr' appears twice");
  // The same key in two objects is not a duplicate.
  EXPECT_EQ(error_of(R"({"models": [{"spec": "mlp:4-3"}, {"spec": "mlp:4-5-3"}], "data": {"seed": 1},
                         "measure": {"seed": 2}})"),
            "no error");
}

TEST(StudyFile, DeepNestingIsRefusedAndShownValuesAreBounded) {
  // 100000 levels used to overflow the stack while the error message dumped the value.
  const std::string deep = "{\"name\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  const auto path = ::testing::TempDir() + "twosed_deep_" + std::to_string(::getpid()) + ".json";
  { std::ofstream(path) << deep; }
  try {
    parse_study(path);
    ADD_FAILURE() << "a 100000-deep study file parsed";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": nesting deeper than 64 levels");
  }
  std::remove(path.c_str());
  // 64 levels parse; the value shown in the message is cut, however deep or long it is.
  const std::string at_limit = R"({"models": ["mlp:4-3"], "name":)" + std::string(63, '[') + std::string(63, ']') + "}";
  try {
    parse_study_text(at_limit, "s.json");
    ADD_FAILURE() << "a list as the name";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()), "s.json: key 'name': expected a string, got [[[...]]]");
  }
  std::string list = "[";
  for (int i = 0; i < 100000; ++i) list += (i ? "," : "") + std::to_string(i);
  list += "]";
  try {
    parse_study_text(R"({"models": ["mlp:4-3"], "name": )" + list + "}", "s.json");
    ADD_FAILURE() << "a list as the name";
  } catch (const UsageError& e) {
    const std::string what = e.what(), prefix = "s.json: key 'name': expected a string, got ";
    ASSERT_EQ(what.rfind(prefix, 0), 0u) << what;
    EXPECT_EQ(what.substr(prefix.size()), "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,...");
  }
  // A long string with multi-byte characters is cut at a character boundary.
  std::string long_name = "a";  // odd: a cut after an even number of bytes falls inside a character
  for (int i = 0; i < 100; ++i) long_name += "\u00e9";
  try {
    parse_study_text(R"({"models": ["mlp:4-3"], "task": ")" + long_name + R"("})", "s.json");
    ADD_FAILURE() << "a bad task";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.substr(what.size() - 3), "...");
    EXPECT_LE(what.size(), std::string("s.json: key 'task': expected \"classify\" or \"regress\", got ").size() + 60);
    EXPECT_NO_THROW(nlohmann::json(what).dump()) << "not valid UTF-8: " << what;
  }
}

// A value the library can check only while the study runs is reported by its study key.
TEST(Study, AnOptionErrorWhileRunningNamesTheStudyKey) {
  const auto cfg = parse_study_text(R"({"name": "split", "data": {"source": "synthetic:blobs:3:6:400",
      "test_fraction": 0.0001}, "models": ["mlp:6-2-3"], "measure": {"inputs": 4, "samples": 2, "bootstrap": 50}})",
                                    "split.json");
  ResultsStore db(temp_db("split.db"));
  try {
    run_study(db, cfg, {});
    ADD_FAILURE() << "a test fraction of 0.0001 of 400 examples ran";
  } catch (const OptionError& e) {
    ADD_FAILURE() << "OptionError escaped run_study: " << e.what();
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()),
              "split.json: key 'data.test_fraction': 0.0001 of 400 examples leaves an empty training or test set");
  }
  EXPECT_TRUE(db.children(db.runs("study").back().id).empty());  // failed before any work
  EXPECT_EQ(db.runs("study").back().status, "failed");
}

TEST(Study, RunsCorrelatesAndResumesWithoutRecomputing) {
  const auto path = temp_db("study.db");
  const auto cfg = parse_study_text(R"({
      "name": "tiny", "data": {"source": "synthetic:blobs:3:6:400", "test_fraction": 0.25},
      "models": ["mlp:6-2-3", "mlp:6-4-3", "mlp:6-16-3"],
      "measure": {"inputs": 10, "samples": 4, "eps": [0.01], "zetas": [0, 0.5], "sigmas": [0.5], "bootstrap": 50},
      "train": {"epochs": 2, "seeds": [0, 1], "batch": 50, "lr": 0.01},
      "correlation": {"bootstrap": 100}})",
                                    "tiny.json");
  int64_t first = 0;
  std::string first_result;
  {
    ResultsStore db(path);
    first = run_study(db, cfg, {}).run;
    first_result = db.run(first).result;
    EXPECT_EQ(db.children(first).size(), 3u * (1 + 1 + 2));
  }
  const auto r = nlohmann::json::parse(first_result);
  EXPECT_EQ(r["models"].size(), 3u);
  EXPECT_EQ(r["n_train"].get<double>(), 300.0);
  EXPECT_EQ(r["headline"].get<std::string>(), "lower 2sED sigma=0.5 zeta=0 at eps_zeta(n)");
  EXPECT_FALSE(r["correlations"].empty());
  // "params d" is each model's parameter count, and its correlation with the mean final training
  // loss is Spearman's rho of those two columns.
  const std::vector<double> widths_d = {6 * 2 + 2 + 2 * 3 + 3, 6 * 4 + 4 + 4 * 3 + 3, 6 * 16 + 16 + 16 * 3 + 3};
  std::vector<double> d_column, loss_column;
  for (size_t i = 0; i < r["models"].size(); ++i) {
    const auto& m = r["models"][i];
    EXPECT_EQ(m["train_runs"].size(), 2u);
    EXPECT_EQ(m["measures"]["params d"].get<double>(), widths_d[i]);
    d_column.push_back(m["measures"]["params d"].get<double>());
    loss_column.push_back(m["train_loss_mean"].get<double>());
  }
  bool found = false;
  for (const auto& c : r["correlations"])
    if (c["measure"] == "params d" && c["target"] == "train loss") {
      found = true;
      EXPECT_DOUBLE_EQ(c["spearman"]["value"].get<double>(), spearman(d_column, loss_column));
    }
  EXPECT_TRUE(found);
  // Interrupt a second study of the same file after its children exist: delete its result by
  // re-opening, then resume: nothing is recomputed (same child runs, same result).
  {
    ResultsStore db(path);
    db.reopen_run(first);
    StudyOptions so;
    so.resume = true;
    std::vector<std::string> progress;
    so.progress = [&](const std::string& s) { progress.push_back(s); };
    EXPECT_EQ(run_study(db, cfg, so).run, first);
    EXPECT_TRUE(progress.empty()) << progress.front();
    EXPECT_EQ(db.children(first).size(), 12u);
    // The resumed study is finished again (a resume that never finished would leave it running
    // with its old result), with the same result.
    EXPECT_EQ(db.run(first).status, "done");
    EXPECT_EQ(db.run(first).result, first_result);
  }
}

// --- The typed study result: JSON round trip, results of schema 1, divergence. ---

void expect_same_number(double a, double b, const std::string& what) {
  if (std::isnan(a) || std::isnan(b))
    EXPECT_TRUE(std::isnan(a) && std::isnan(b)) << what << ": " << a << " vs " << b;
  else
    EXPECT_EQ(a, b) << what;
}

void expect_same_numbers(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) expect_same_number(a[i], b[i], what + "[" + std::to_string(i) + "]");
}

void expect_same_correlation(const StudyCorrelationValue& a, const StudyCorrelationValue& b, const std::string& what) {
  expect_same_number(a.value, b.value, what + ".value");
  expect_same_number(a.lo, b.lo, what + ".lo");
  expect_same_number(a.hi, b.hi, what + ".hi");
  EXPECT_EQ(a.valid, b.valid) << what;
}

// Field by field; NaN equals NaN. `with_new_fields`: compare what schema 1 did not keep.
void expect_same_model(const StudyModelResult& a, const StudyModelResult& b, bool with_new_fields) {
  const auto& w = a.name;
  EXPECT_EQ(a.model.spec, b.model.spec);
  EXPECT_EQ(a.model.options.activation, b.model.options.activation) << w;
  EXPECT_EQ(a.model.options.bias, b.model.options.bias) << w;
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.d, b.d) << w;
  EXPECT_EQ(a.k, b.k) << w;
  ASSERT_EQ(a.measures.size(), b.measures.size()) << w;
  for (const auto& [name, v] : a.measures) {
    ASSERT_TRUE(b.measures.count(name)) << w << ": " << name;
    expect_same_number(v.value, b.measures.at(name).value, w + " " + name);
    expect_same_number(v.std_error, b.measures.at(name).std_error, w + " " + name + " se");
  }
  ASSERT_EQ(a.curves.size(), b.curves.size()) << w;
  for (const auto& [name, c] : a.curves) {
    ASSERT_TRUE(b.curves.count(name)) << w << ": " << name;
    expect_same_numbers(c.eps, b.curves.at(name).eps, w + " " + name + " eps");
    expect_same_numbers(c.value, b.curves.at(name).value, w + " " + name + " value");
    expect_same_numbers(c.std_error, b.curves.at(name).std_error, w + " " + name + " se");
  }
  EXPECT_EQ(a.measure_runs, b.measure_runs) << w;
  EXPECT_EQ(a.train_runs, b.train_runs) << w;
  expect_same_numbers(a.train_loss, b.train_loss, w + " train_loss");
  if (with_new_fields) expect_same_numbers(a.test_loss, b.test_loss, w + " test_loss");
  EXPECT_EQ(a.diverged, b.diverged) << w;
  expect_same_number(a.train_loss_mean, b.train_loss_mean, w + " train_loss_mean");
  expect_same_number(a.train_loss_sd, b.train_loss_sd, w + " train_loss_sd");
  expect_same_number(a.test_loss_mean, b.test_loss_mean, w + " test_loss_mean");
  expect_same_number(a.test_loss_sd, b.test_loss_sd, w + " test_loss_sd");
  expect_same_number(a.train_accuracy_mean, b.train_accuracy_mean, w + " train_accuracy_mean");
  expect_same_number(a.test_accuracy_mean, b.test_accuracy_mean, w + " test_accuracy_mean");
}

void expect_same_result(const StudyResult& a, const StudyResult& b, bool with_new_fields = true) {
  EXPECT_EQ(a.run, b.run);
  if (with_new_fields) {
    EXPECT_EQ(study_config(a.config), study_config(b.config));
  }
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.n_train, b.n_train);
  EXPECT_EQ(a.n_test, b.n_test);
  EXPECT_EQ(a.measure_names, b.measure_names);
  EXPECT_EQ(a.headline, b.headline);
  ASSERT_EQ(a.models.size(), b.models.size());
  for (size_t i = 0; i < a.models.size(); ++i) expect_same_model(a.models[i], b.models[i], with_new_fields);
  ASSERT_EQ(a.correlations.size(), b.correlations.size());
  for (size_t i = 0; i < a.correlations.size(); ++i) {
    const auto &x = a.correlations[i], &y = b.correlations[i];
    EXPECT_EQ(x.measure, y.measure);
    EXPECT_EQ(x.target, y.target);
    EXPECT_EQ(x.n, y.n);
    expect_same_correlation(x.spearman, y.spearman, x.measure + " spearman");
    expect_same_correlation(x.kendall, y.kendall, x.measure + " kendall");
  }
}

StudyResult tiny_study(const std::string& db_name, const std::string& extra_train) {
  const auto cfg = parse_study_text(R"({"name": "typed", "data": {"source": "synthetic:blobs:3:6:200",
      "test_fraction": 0.25}, "models": ["mlp:6-2-3", {"spec": "mlp:6-4-3", "act": "tanh", "bias": false}],
      "measure": {"inputs": 6, "samples": 3, "eps": [0.01], "zetas": [0, 0.5], "sigmas": [0.5], "bootstrap": 20},
      "train": {"epochs": 1, "seeds": [0, 3], "batch": 50)" +
                                        extra_train + R"(}, "correlation": {"bootstrap": 20}})",
                                    "typed.json");
  ResultsStore db(temp_db(db_name));
  return run_study(db, cfg, {});
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(StudyResult, RoundTripsThroughJsonFieldByField) {
  StudyResult r;
  r.run = 7;
  r.config = parse_study_text(R"({"name": "rt", "models": ["mlp:4-3-2", "mlp:4-5-2"], "measure": {"sigmas": [0.25]},
      "train": {"seeds": [4, 9], "lr": 0.125}, "data": {"test_fraction": 0.5}})",
                              "rt.json");
  r.data = "blobs";
  r.n_train = 150;
  r.n_test = 0;
  r.measure_names = {"params d", "2sED zeta=0 at eps_zeta(n)", "lower 2sED sigma=0.25 zeta=0 eps=0.01"};
  r.headline = r.measure_names[1];
  for (int i = 0; i < 2; ++i) {
    StudyModelResult m;
    m.model = {i == 0 ? "mlp:4-3-2" : "mlp:4-5-2", {i == 0 ? Activation::ReLU : Activation::Tanh, i == 0}};
    m.name = m.model.spec + (i == 0 ? "" : " (tanh) (no bias)");
    m.d = 23 + i;
    m.k = 2;
    m.measures = {{"params d", {23.0 + i, 0.0}},
                  {"2sED zeta=0 at eps_zeta(n)", {1.0 / 3 + i, kNaN}},
                  {"lower 2sED sigma=0.25 zeta=0 eps=0.01", {kNaN, 0.1}}};
    m.curves = {{"2sED zeta=0", {{1e-4, 0.01}, {0.1, kNaN}, {0.2, 0.3}}}};
    m.measure_runs = {{"2sED", 3 + i}, {"lower 2sED sigma=0.25", 4 + i}};
    m.train_runs = {10 + i, 12 + i};
    m.train_loss = {0.5, i == 0 ? 0.25 : kNaN};
    m.test_loss = {kNaN, kNaN};
    m.diverged = {false, i == 1};
    m.train_loss_mean = i == 0 ? 0.375 : kNaN;
    m.train_loss_sd = i == 0 ? 0.17677669529663687 : kNaN;
    m.train_accuracy_mean = 0.875;
    r.models.push_back(m);
  }
  StudyCorrelation c;
  c.measure = "params d";
  c.target = "train loss";
  c.spearman = {-1.0, kNaN, 0.5, 17};
  c.kendall = {kNaN, -0.25, kNaN, 0};
  c.n = 2;
  r.correlations = {c};
  const auto text = study_result_json(r).dump();
  EXPECT_EQ(nlohmann::json::parse(text)["schema_version"].get<int>(), kStudyResultSchema);
  const auto back = parse_study_result(text);
  expect_same_result(r, back);
  EXPECT_EQ(study_result_json(back).dump(), text);
  EXPECT_EQ(study_table(back), study_table(r));
  EXPECT_NE(study_table(r).find("diverged (a final loss not finite; no loss mean): mlp:4-5-2 (tanh) (no bias) seed 9"),
            std::string::npos)
      << study_table(r);
}

// What run_study returns is what the store holds, and a stored result reads back equal.
TEST(StudyResult, TheStoredResultIsTheReturnedOne) {
  const auto r = tiny_study("typed.db", "");
  ASSERT_EQ(r.models.size(), 2u);
  EXPECT_EQ(r.models[1].name, "mlp:6-4-3 (tanh) (no bias)");
  for (const auto& m : r.models) {
    EXPECT_EQ(m.diverged, (std::vector<bool>{false, false}));
    EXPECT_EQ(m.test_loss.size(), 2u);
    EXPECT_TRUE(std::isfinite(m.test_loss_mean));
  }
  ResultsStore db(::testing::TempDir() + "twosed_runs_" + std::to_string(::getpid()) + "_typed.db", false);
  const auto info = db.run(r.run);
  expect_same_result(r, parse_study_result(info.result));
  EXPECT_EQ(study_result_json(r).dump(), info.result);
}

// A result of schema 1 (as stored before the typed result: no schema_version, config,
// test_loss or diverged) is read, and reports as the same study stored now.
TEST(StudyResult, AResultOfSchemaOneIsStillRead) {
  const auto r = tiny_study("schema1.db", "");
  auto old = study_result_json(r);
  old.erase("schema_version");
  old.erase("config");
  for (auto& m : old["models"]) m.erase("test_loss"), m.erase("diverged");
  for (const auto& run_config : {std::string(), study_config(r.config)}) {
    const auto back = parse_study_result(old.dump(), run_config);
    expect_same_result(r, back, /*with_new_fields=*/false);
    for (const auto& m : back.models) EXPECT_TRUE(m.test_loss.empty());
    EXPECT_EQ(study_table(back), study_table(r));
    EXPECT_EQ(study_csv(back), study_csv(r));
    if (!run_config.empty()) {
      EXPECT_EQ(study_config(back.config), study_config(r.config));
    }
  }
  // Of a newer schema, or not a result: refused, naming what.
  auto newer = study_result_json(r);
  newer["schema_version"] = kStudyResultSchema + 1;
  EXPECT_THROW(parse_study_result(newer.dump()), DataError);
  auto bad = study_result_json(r);
  bad["models"][1]["d"] = "x";
  try {
    parse_study_result(bad.dump());
    ADD_FAILURE() << "a model's d of \"x\" was read";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), "study result: key 'models[1].d': expected an integer, got \"x\"");
  }
}

// A training whose loss is not finite is flagged, has no loss means and is left out of the
// correlations with the training loss. At an lr of 1e300 the ReLU model's loss overflows; the
// tanh model's stays finite (its outputs saturate).
TEST(StudyResult, ADivergedTrainingIsFlagged) {
  const auto r = tiny_study("diverged.db", R"(, "optimizer": "sgd", "lr": 1e300)");
  ASSERT_EQ(r.models.size(), 2u);
  EXPECT_EQ(r.models[0].diverged, (std::vector<bool>{true, true})) << r.models[0].train_loss[0];
  EXPECT_TRUE(std::isnan(r.models[0].train_loss_mean));
  EXPECT_EQ(r.models[1].diverged, (std::vector<bool>{false, false})) << r.models[1].train_loss[0];
  EXPECT_TRUE(std::isfinite(r.models[1].train_loss_mean));
  for (const auto& c : r.correlations) EXPECT_NE(c.target, "train loss");
  EXPECT_NE(study_table(r).find("diverged (a final loss not finite; no loss mean): mlp:6-2-3 seed 0, mlp:6-2-3 seed 3"),
            std::string::npos)
      << study_table(r);
  expect_same_result(r, parse_study_result(study_result_json(r).dump()));
}

TEST(RunStatus, AStoppedRunIsOneWhoseProcessIsGone) {
  ResultsStore db(temp_db("status.db"));
  const int64_t run = db.create_run("measure", "m", "{}");
  mark_process(db, run);
  EXPECT_FALSE(run_is_stopped(db, db.run(run)));  // this process is alive
  // A process that has exited (and been reaped) on this host.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  auto text = db.get_text(run, "process").value();
  db.put_text(run, "process", std::to_string(child) + text.substr(text.find('@')));
  EXPECT_TRUE(run_is_stopped(db, db.run(run)));
  db.put_text(run, "process", std::to_string(child) + "@another-host");
  EXPECT_FALSE(run_is_stopped(db, db.run(run)));  // cannot tell from here
  db.finish_run(run, "{}");
  EXPECT_FALSE(run_is_stopped(db, db.run(run)));
}

namespace {

// A forked child that marks `run` as its own and stays alive until release() (or the test's end).
class LiveClaimant {
 public:
  LiveClaimant(const std::string& path, int64_t run) {
    int ready[2], hold[2];
    if (::pipe(ready) != 0 || ::pipe(hold) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(ready[0]), ::close(hold[1]);
      {
        ResultsStore db(path);
        mark_process(db, run);
      }
      char c = 1;
      (void)!::write(ready[1], &c, 1);
      (void)!::read(hold[0], &c, 1);  // returns when the parent closes its end
      ::_exit(0);
    }
    ::close(ready[1]), ::close(hold[0]);
    char c = 0;
    (void)!::read(ready[0], &c, 1);
    ::close(ready[0]);
    hold_ = hold[1];
  }
  ~LiveClaimant() { release(); }
  void release() {
    if (hold_ < 0) return;
    ::close(hold_);
    hold_ = -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = 0;
  int hold_ = -1;
};

}  // namespace

TEST(RecordMeasure, AResumeOfARunAnotherLiveProcessWorksOnIsRefused) {
  const auto path = temp_db("live.db");
  ResultsStore db(path);
  const auto config = measure_config(small_measure(false));
  const int64_t run = db.create_run("measure", "m", config);
  LiveClaimant other(path, run);
  RecordOptions ro;
  ro.resume = true;
  for (int64_t id : {run, int64_t{0}}) {  // by id, and the newest unfinished one
    ro.resume_run = id;
    int computed = 0;
    auto o = small_measure(false);
    o.on_sample = [&](const SampleRecord&) { ++computed; };
    try {
      record_measure(db, o, ro);
      FAIL() << "no error";
    } catch (const DataError& e) {
      const std::string want = fmt::format("run {} is still running in process {}@", run, other.pid());
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("wait for it or stop it"), std::string::npos) << e.what();
    }
    EXPECT_EQ(computed, 0);  // refused before any work
    EXPECT_THROW(claim_run(db, run), DataError);
  }
  // The refused process neither failed the run nor wrote its message or a sample.
  EXPECT_EQ(db.run(run).status, "running");
  EXPECT_EQ(db.run(run).message, "");
  EXPECT_EQ(db.run(run).num_samples, 0);
  other.release();  // its process is gone: the run is stopped, and resumable
  EXPECT_TRUE(run_is_stopped(db, db.run(run)));
  ro.resume_run = run;
  EXPECT_EQ(record_measure(db, small_measure(false), ro).run, run);
  EXPECT_EQ(db.run(run).status, "done");
}

TEST(RecordMeasure, OfConcurrentClaimsOfAStoppedRunExactlyOneWins) {
  const auto path = temp_db("claims.db");
  int64_t run = 0;
  {
    ResultsStore db(path);
    run = db.create_run("measure", "m", measure_config(small_measure(false)));
    LiveClaimant gone(path, run);  // marks it, then exits: a stopped run
  }
  constexpr int kClaimants = 4;
  int results[2], hold[2];
  ASSERT_EQ(::pipe(results), 0);
  ASSERT_EQ(::pipe(hold), 0);
  std::vector<pid_t> children;
  for (int i = 0; i < kClaimants; ++i) {
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(results[0]), ::close(hold[1]);
      char won = 'n';
      try {
        ResultsStore db(path);
        claim_run(db, run);
        won = 'y';
      } catch (const DataError& e) {
        won = std::string(e.what()).find("is still running in process") != std::string::npos ? 'n' : 'e';
      }
      (void)!::write(results[1], &won, 1);
      char c;
      (void)!::read(hold[0], &c, 1);  // stay alive until every claimant has tried
      ::_exit(0);
    }
    children.push_back(child);
  }
  ::close(results[1]), ::close(hold[0]);
  std::string outcomes;
  for (int i = 0; i < kClaimants; ++i) {
    char c = '?';
    ASSERT_EQ(::read(results[0], &c, 1), 1);
    outcomes += c;
  }
  ::close(hold[1]);
  for (pid_t c : children) ::waitpid(c, nullptr, 0);
  ::close(results[0]);
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), 'y'), 1) << outcomes;
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), 'n'), kClaimants - 1) << outcomes;
}

TEST(RecordMeasure, AResumeWithMoreSamplesExtendsARunToTheResultOfALargerRun) {
  for (bool markov : {false, true}) {
    SCOPED_TRACE(markov ? "markov" : "standard");
    auto larger = small_measure(markov);
    larger.num_param_samples = 12;
    const auto ref = run_measure(larger);
    ResultsStore db(temp_db(markov ? "extend_markov.db" : "extend.db"));
    const auto first = record_measure(db, small_measure(markov), {});
    EXPECT_EQ(db.run(first.run).status, "done");
    RecordOptions ro;
    ro.resume = true;
    auto o = larger;
    std::vector<int64_t> indices;
    o.on_sample = [&](const SampleRecord& r) { indices.push_back(r.index); };
    const auto rec = record_measure(db, o, ro);
    EXPECT_EQ(rec.run, first.run);
    std::sort(indices.begin(), indices.end());  // committed as they finish (parallel samples)
    EXPECT_EQ(indices, (std::vector<int64_t>{8, 9, 10, 11}));
    EXPECT_EQ(rec.result.resumed_samples, 8);
    expect_same_estimates(rec.result.estimate, ref.estimate);
    if (markov) expect_same_estimates(rec.result.markov.lower, ref.markov.lower);
    const auto info = db.run(rec.run);
    EXPECT_EQ(info.status, "done");
    EXPECT_EQ(info.num_samples, 12);
    EXPECT_EQ(info.config, measure_config(larger));  // the run now says M = 12
    // The stored spectra equal a fresh run's, bit for bit.
    const auto stored = stored_samples(db, rec.run);
    ASSERT_EQ(stored.size(), ref.samples.size());
    ResultsStore fresh_db(temp_db(markov ? "extend_fresh_markov.db" : "extend_fresh.db"));
    const auto fresh = stored_samples(fresh_db, record_measure(fresh_db, larger, {}).run);
    ASSERT_EQ(fresh.size(), stored.size());
    for (size_t j = 0; j < stored.size(); ++j) {
      ASSERT_EQ(stored[j].blocks.size(), fresh[j].blocks.size());
      for (size_t b = 0; b < stored[j].blocks.size(); ++b)
        EXPECT_EQ(stored[j].blocks[b].eigenvalues, fresh[j].blocks[b].eigenvalues) << "sample " << j;
    }
    expect_same_estimates(stored_measure(db, rec.run, larger.estimator).estimate, ref.estimate);
    // Fewer samples than stored is another configuration, not an extension.
    auto fewer = small_measure(markov);
    fewer.num_param_samples = 4;
    EXPECT_THROW(record_measure(db, fewer, ro), DataError);  // no unfinished run of that configuration
    ro.resume_run = rec.run;
    try {
      record_measure(db, fewer, ro);
      FAIL() << "no error";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("samples 12 (now 4)"), std::string::npos) << e.what();
    }
  }
}
