// The results store: round trips (bit-exact spectra), schema identification, refusal of
// foreign files without touching them, and consistency after SIGKILL during writes.
#include "twosed/store/results_store.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "store/sha256.h"
#include "twosed/error.h"

namespace twosed {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/twosed_store_XXXXXX";
    const char* p = mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    dir_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// Raw SQLite access, independent of the store.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
      throw std::runtime_error("cannot open " + path);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(sql + ": " + msg);
    }
  }
  // All rows' first columns, as text, joined by '\n'.
  std::string query(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    std::string out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (!out.empty()) out += "\n";
      const auto* t = sqlite3_column_text(s, 0);
      out += t ? reinterpret_cast<const char*>(t) : "NULL";
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

// Runs f, expects a DataError whose message contains every one of `parts`.
void expect_data_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no DataError thrown";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

uint64_t bits(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return b;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 8) == 0);
}

void expect_same_sample(const StoredSample& got, const StoredSample& want) {
  EXPECT_EQ(got.index, want.index);
  EXPECT_EQ(got.stats, want.stats);
  ASSERT_EQ(got.blocks.size(), want.blocks.size());
  for (size_t b = 0; b < want.blocks.size(); ++b) {
    EXPECT_EQ(bits(got.blocks[b].trace), bits(want.blocks[b].trace)) << "block " << b;
    EXPECT_EQ(got.blocks[b].num_cut, want.blocks[b].num_cut) << "block " << b;
    EXPECT_TRUE(same_bits(got.blocks[b].eigenvalues, want.blocks[b].eigenvalues)) << "block " << b;
  }
}

bool same_real(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b);
}

void expect_same_record(const TrainingRecord& got, const TrainingRecord& want) {
  EXPECT_EQ(got.epoch, want.epoch);
  EXPECT_EQ(got.step, want.step);
  EXPECT_TRUE(same_real(got.train_loss, want.train_loss));
  EXPECT_TRUE(same_real(got.train_accuracy, want.train_accuracy));
  EXPECT_TRUE(same_real(got.test_loss, want.test_loss));
  EXPECT_TRUE(same_real(got.test_accuracy, want.test_accuracy));
  EXPECT_TRUE(same_real(got.seconds, want.seconds));
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A positive finite double with random mantissa and exponent (normal and subnormal).
double random_positive(uint64_t key) {
  const uint64_t h = splitmix64(key);
  const uint64_t exponent = (h >> 52) % 2047;  // 0 (subnormal) .. 2046 (largest finite)
  const uint64_t b = (exponent << 52) | (h & 0x000FFFFFFFFFFFFFULL) | (exponent == 0 ? 1 : 0);
  double x;
  std::memcpy(&x, &b, 8);
  return x;
}

const std::regex kTimestamp(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)");

TEST(ResultsStore, ConfigHashIsFnv1a64) {
  EXPECT_EQ(config_hash(""), "cbf29ce484222325");
  EXPECT_EQ(config_hash("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(config_hash("foobar"), "85944171f73967e8");
}

TEST(ResultsStore, CreatesIdentifiedSchema) {
  TempDir dir;
  const std::string path = dir.file("new.db");
  { ResultsStore db(path); }
  {
    // A zero-length file is created too.
    write_bytes(dir.file("empty.db"), "");
    ResultsStore db(dir.file("empty.db"));
    EXPECT_TRUE(db.runs().empty());
  }
  for (const auto& p : {path, dir.file("empty.db")}) {
    RawDb raw(p);
    EXPECT_EQ(raw.query("PRAGMA application_id"), std::to_string(ResultsStore::kApplicationId));
    EXPECT_EQ(raw.query("PRAGMA user_version"), "1");
    EXPECT_EQ(raw.query("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(raw.query("SELECT value FROM meta WHERE key = 'created_by'"), "twosed " TWOSED_VERSION);
    EXPECT_EQ(raw.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence' "
                        "ORDER BY name"),
              "arrays\nblocks\nmeta\nruns\nsamples\ntexts\ntraining");
  }
}

TEST(ResultsStore, RunRoundTripAllFields) {
  TempDir dir;
  ResultsStore db(dir.file("r.db"));
  EXPECT_EQ(db.path(), dir.file("r.db"));
  const std::string config = R"({"a":1,"model":"mlp:4-3-2"})";
  const int64_t id = db.create_run("measure", "mlp:4-3-2", config);
  EXPECT_EQ(id, 1);
  RunInfo r = db.run(id);
  EXPECT_EQ(r.id, 1);
  EXPECT_EQ(r.kind, "measure");
  EXPECT_EQ(r.status, "running");
  EXPECT_EQ(r.label, "mlp:4-3-2");
  EXPECT_EQ(r.config, config);
  EXPECT_EQ(r.config_hash, config_hash(config));
  EXPECT_EQ(r.version, TWOSED_VERSION);
  EXPECT_TRUE(std::regex_match(r.created, kTimestamp)) << r.created;
  EXPECT_TRUE(std::regex_match(r.updated, kTimestamp)) << r.updated;
  EXPECT_EQ(r.parent, 0);
  EXPECT_EQ(r.result, "");
  EXPECT_EQ(r.message, "");
  EXPECT_EQ(r.num_samples, 0);
  EXPECT_EQ(r.num_records, 0);

  db.fail_run(id, "out of memory at sample 3");
  r = db.run(id);
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(r.message, "out of memory at sample 3");
  db.reopen_run(id);
  r = db.run(id);
  EXPECT_EQ(r.status, "running");
  EXPECT_EQ(r.message, "");
  db.finish_run(id, R"({"d":12.5})");
  r = db.run(id);
  EXPECT_EQ(r.status, "done");
  EXPECT_EQ(r.result, R"({"d":12.5})");
  EXPECT_GE(r.updated, r.created);

  EXPECT_EQ(db.create_run("train", "", "{}"), 2);
  EXPECT_THROW(db.create_run("bogus", "", "{}"), UsageError);
  EXPECT_THROW(db.create_run("train", "", "{not json"), UsageError);
  expect_data_error([&] { db.create_run("train", "", "{}", 99); }, {"r.db", "no run 99"});
  EXPECT_EQ(db.runs().size(), 2u);  // the refused ones left nothing
}

TEST(ResultsStore, SamplesRoundTripBitExact) {
  TempDir dir;
  ResultsStore db(dir.file("s.db"));
  const int64_t run = db.create_run("measure", "m", "{}");

  StoredSample edge;
  edge.index = 2;
  edge.stats = R"({"cost":{"seconds":1.5},"note":"ünïcode"})";
  SampleSpectrum special;
  special.eigenvalues = {std::numeric_limits<double>::denorm_min(),
                         std::nextafter(std::numeric_limits<double>::min(), 0.0),  // largest subnormal
                         std::numeric_limits<double>::min(),
                         std::numeric_limits<double>::max(),
                         std::nextafter(1.0, 2.0),
                         1e-300,
                         1e300,
                         0.1};
  special.trace = 1.0 / 3.0;
  special.num_cut = 7;
  SampleSpectrum empty;  // every eigenvalue cut
  empty.trace = 0.0;
  empty.num_cut = 12;
  SampleSpectrum big;
  for (int i = 0; i < 100000; ++i) big.eigenvalues.push_back(random_positive(i));
  big.trace = 123456.789;
  big.num_cut = 0;
  edge.blocks = {special, empty, big, empty};

  StoredSample plain{0, "{}", {special}};
  StoredSample no_blocks{1, "{}", {}};
  // Out of order: samples() and sample_indices() sort by index.
  db.add_sample(run, edge);
  db.add_sample(run, plain);
  db.add_sample(run, no_blocks);

  EXPECT_EQ(db.sample_indices(run), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(db.run(run).num_samples, 3);
  const auto got = db.samples(run);
  ASSERT_EQ(got.size(), 3u);
  expect_same_sample(got[0], plain);
  expect_same_sample(got[1], no_blocks);
  expect_same_sample(got[2], edge);

  // Stored as count little-endian float64 bytes.
  RawDb raw(dir.file("s.db"));
  EXPECT_EQ(raw.query("SELECT count || ' ' || length(eigenvalues) FROM blocks WHERE idx = 2 ORDER BY block"),
            "8 64\n0 0\n100000 800000\n0 0");
  EXPECT_EQ(raw.query("SELECT hex(substr(eigenvalues, 1, 8)) FROM blocks WHERE idx = 2 AND block = 0"),
            "0100000000000000");  // denorm_min, little-endian
}

TEST(ResultsStore, TrainingRecordsRoundTripWithNaN) {
  TempDir dir;
  ResultsStore db(dir.file("t.db"));
  const int64_t run = db.create_run("train", "t", "{}");
  TrainingRecord r0;  // epoch 0: everything NaN but seconds
  r0.epoch = 0;
  TrainingRecord r1;
  r1.epoch = 1;
  r1.step = 17;
  r1.train_loss = 0.693147180559945;
  r1.seconds = 0.125;
  TrainingRecord r2;
  r2.epoch = 1;
  r2.train_loss = kInf;
  r2.train_accuracy = 0.75;
  r2.test_loss = std::numeric_limits<double>::denorm_min();
  r2.test_accuracy = 1.0 / 7.0;
  r2.seconds = kNaN;
  db.add_training_records(run, {r0, r1});
  db.add_training_records(run, {});
  db.add_training_records(run, {r2});
  const auto got = db.training_records(run);
  ASSERT_EQ(got.size(), 3u);
  expect_same_record(got[0], r0);
  expect_same_record(got[1], r1);
  expect_same_record(got[2], r2);
  EXPECT_TRUE(std::isnan(got[0].train_loss) && std::isnan(got[0].test_accuracy));
  EXPECT_EQ(db.run(run).num_records, 3);

  RawDb raw(dir.file("t.db"));
  EXPECT_EQ(raw.query("SELECT count(*) FROM training WHERE train_loss IS NULL"), "1");
  EXPECT_EQ(raw.query("SELECT seq FROM training ORDER BY seq"), "0\n1\n2");
}

TEST(ResultsStore, ArraysRoundTripAndReplace) {
  TempDir dir;
  ResultsStore db(dir.file("a.db"));
  const int64_t run = db.create_run("train", "t", "{}");
  std::vector<double> theta;
  for (int i = 0; i < 1000; ++i) theta.push_back(std::sin(i) * std::pow(10.0, i % 600 - 300));
  db.put_array(run, "theta", theta);
  db.put_array(run, "empty", {});
  EXPECT_TRUE(same_bits(db.get_array(run, "theta"), theta));
  EXPECT_TRUE(db.get_array(run, "empty").empty());
  db.put_array(run, "theta", {1.0, -2.5});
  EXPECT_EQ(db.get_array(run, "theta"), (std::vector<double>{1.0, -2.5}));
  expect_data_error([&] { db.get_array(run, "nope"); }, {"a.db", "run 1 has no array 'nope'"});
  expect_data_error([&] { db.get_array(5, "theta"); }, {"no run 5"});
  expect_data_error([&] { db.put_array(5, "theta", {1.0}); }, {"a.db", "no run 5"});
  EXPECT_THROW(db.put_array(run, "", {1.0}), UsageError);
}

TEST(ResultsStore, TextsRoundTripAndReplace) {
  TempDir dir;
  ResultsStore db(dir.file("t.db"));
  const int64_t run = db.create_run("measure", "m", "{}");
  EXPECT_FALSE(db.get_text(run, "header").has_value());
  const std::string text = std::string("{\"a\": \"\xc3\xa9\"}\n") + std::string(100000, 'x');
  db.put_text(run, "header", text);
  EXPECT_EQ(db.get_text(run, "header").value_or(""), text);
  db.put_text(run, "header", "");
  EXPECT_EQ(db.get_text(run, "header").value_or("missing"), "");
  expect_data_error([&] { db.put_text(7, "header", "x"); }, {"t.db", "no run 7"});
  EXPECT_THROW(db.put_text(run, "", "x"), UsageError);
}

TEST(ResultsStore, KindsChildrenAndFindRun) {
  TempDir dir;
  ResultsStore db(dir.file("k.db"));
  const std::string c1 = R"({"x":1})", c2 = R"({"x":2})";
  const int64_t m1 = db.create_run("measure", "a", c1);
  const int64_t t1 = db.create_run("train", "b", c1);
  const int64_t study = db.create_run("study", "s", "{}");
  const int64_t m2 = db.create_run("measure", "c", c1, study);
  const int64_t m3 = db.create_run("measure", "d", c2, study);
  const int64_t t2 = db.create_run("train", "e", c1, study);

  auto ids = [](const std::vector<RunInfo>& v) {
    std::vector<int64_t> out;
    for (const auto& r : v) out.push_back(r.id);
    return out;
  };
  EXPECT_EQ(ids(db.runs()), (std::vector<int64_t>{m1, t1, study, m2, m3, t2}));
  EXPECT_EQ(ids(db.runs("measure")), (std::vector<int64_t>{m1, m2, m3}));
  EXPECT_EQ(ids(db.runs("train")), (std::vector<int64_t>{t1, t2}));
  EXPECT_THROW(db.runs("nonsense"), UsageError);
  EXPECT_EQ(ids(db.children(study)), (std::vector<int64_t>{m2, m3, t2}));
  EXPECT_EQ(ids(db.children(0)), (std::vector<int64_t>{m1, t1, study}));
  EXPECT_TRUE(db.children(m1).empty());
  expect_data_error([&] { db.children(77); }, {"no run 77"});
  EXPECT_EQ(db.run(m2).parent, study);

  // Newest with the hash; status filters.
  auto found = db.find_run("measure", config_hash(c1));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, m2);
  db.finish_run(m1, "{}");
  found = db.find_run("measure", config_hash(c1), "done");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, m1);
  EXPECT_EQ(found->status, "done");
  EXPECT_FALSE(db.find_run("measure", config_hash(c1), "failed"));
  EXPECT_FALSE(db.find_run("study", config_hash(c1)));
  found = db.find_run("measure", config_hash(c2), "running");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, m3);

  // Counts in listings.
  db.add_sample(m2, {0, "{}", {}});
  db.add_sample(m2, {1, "{}", {}});
  db.add_training_records(t2, {TrainingRecord{}});
  const auto kids = db.children(study);
  EXPECT_EQ(kids[0].num_samples, 2);
  EXPECT_EQ(kids[1].num_samples, 0);
  EXPECT_EQ(kids[2].num_records, 1);
  EXPECT_EQ(db.find_run("measure", config_hash(c1), "running")->num_samples, 2);
}

TEST(ResultsStore, DeleteRunCascades) {
  TempDir dir;
  const std::string path = dir.file("d.db");
  ResultsStore db(path);
  const int64_t keep = db.create_run("measure", "keep", "{}");
  const int64_t study = db.create_run("study", "s", "{}");
  const int64_t child = db.create_run("study", "sub", "{}", study);
  const int64_t grandchild = db.create_run("measure", "g", "{}", child);
  const int64_t trained = db.create_run("train", "t", "{}", study);
  const SampleSpectrum sp{{1.0, 2.0}, 3.0, 0};
  for (int64_t r : {keep, grandchild}) {
    db.add_sample(r, {0, "{}", {sp, sp}});
    db.add_sample(r, {1, "{}", {sp}});
  }
  db.add_training_records(trained, {TrainingRecord{}, TrainingRecord{}});
  db.add_training_records(keep, {TrainingRecord{}});
  db.put_array(trained, "theta", {1.0});
  db.put_array(keep, "theta", {2.0});
  db.put_text(trained, "header", "{}");
  db.put_text(keep, "header", "kept");

  db.delete_run(study);
  for (int64_t r : {study, child, grandchild, trained}) expect_data_error([&] { db.run(r); }, {"no run"});
  EXPECT_EQ(db.runs().size(), 1u);
  EXPECT_EQ(db.samples(keep).size(), 2u);
  EXPECT_EQ(db.training_records(keep).size(), 1u);
  EXPECT_EQ(db.get_array(keep, "theta"), std::vector<double>{2.0});
  EXPECT_EQ(db.get_text(keep, "header").value_or(""), "kept");
  {
    RawDb raw(path);
    for (const char* t : {"samples", "blocks", "training", "arrays", "texts"})
      EXPECT_EQ(raw.query(fmt::format("SELECT count(*) FROM {} WHERE run != {}", t, keep)), "0") << t;
    EXPECT_EQ(raw.query("SELECT count(*) FROM blocks"), "3");
    EXPECT_EQ(raw.query("PRAGMA foreign_key_check"), "");
  }
  expect_data_error([&] { db.delete_run(study); }, {"d.db", "no run"});
  EXPECT_GT(db.create_run("measure", "new", "{}"), trained);  // ids are not reused
}

TEST(ResultsStore, ReopenGivesSameData) {
  TempDir dir;
  const std::string path = dir.file("re.db");
  StoredSample s{0, R"({"j":0})", {{{random_positive(1), random_positive(2)}, 2.5, 1}, {{}, 0.0, 4}}};
  TrainingRecord rec;
  rec.epoch = 3;
  rec.test_loss = 0.25;
  RunInfo before;
  {
    ResultsStore db(path);
    const int64_t run = db.create_run("measure", "m", R"({"k":[1,2]})");
    db.add_sample(run, s);
    db.add_training_records(run, {rec});
    db.put_array(run, "v", {3.0, 4.0});
    db.fail_run(run, "stopped");
    before = db.run(run);
  }
  ResultsStore db(path, /*create=*/false);
  const RunInfo after = db.run(before.id);
  EXPECT_EQ(after.kind, before.kind);
  EXPECT_EQ(after.status, "failed");
  EXPECT_EQ(after.message, "stopped");
  EXPECT_EQ(after.config, before.config);
  EXPECT_EQ(after.config_hash, before.config_hash);
  EXPECT_EQ(after.created, before.created);
  EXPECT_EQ(after.updated, before.updated);
  EXPECT_EQ(after.num_samples, 1);
  EXPECT_EQ(after.num_records, 1);
  const auto samples = db.samples(before.id);
  ASSERT_EQ(samples.size(), 1u);
  expect_same_sample(samples[0], s);
  const auto records = db.training_records(before.id);
  ASSERT_EQ(records.size(), 1u);
  expect_same_record(records[0], rec);
  EXPECT_EQ(db.get_array(before.id, "v"), (std::vector<double>{3.0, 4.0}));
}

TEST(ResultsStore, DuplicateSampleAndUnknownRun) {
  TempDir dir;
  ResultsStore db(dir.file("dup.db"));
  const int64_t run = db.create_run("measure", "m", "{}");
  db.add_sample(run, {0, "first", {{{1.0}, 1.0, 0}}});
  expect_data_error(
      [&] {
        db.add_sample(run, {0, "second", {{{2.0}, 2.0, 0}}});
      },
      {"dup.db", "run 1 already has sample 0"});
  const auto s = db.samples(run);  // the refused sample changed nothing
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].stats, "first");
  EXPECT_EQ(s[0].blocks[0].eigenvalues, std::vector<double>{1.0});
  EXPECT_THROW(db.add_sample(run, {-1, "", {}}), UsageError);

  expect_data_error([&] { db.add_sample(9, {0, "", {}}); }, {"dup.db", "no run 9"});
  expect_data_error([&] { db.add_training_records(9, {TrainingRecord{}}); }, {"no run 9"});
  expect_data_error([&] { db.finish_run(9, "{}"); }, {"dup.db", "no run 9"});
  expect_data_error([&] { db.fail_run(9, "x"); }, {"no run 9"});
  expect_data_error([&] { db.reopen_run(9); }, {"no run 9"});
  expect_data_error([&] { db.run(9); }, {"dup.db", "no run 9"});
  expect_data_error([&] { db.samples(9); }, {"no run 9"});
  expect_data_error([&] { db.sample_indices(9); }, {"no run 9"});
  expect_data_error([&] { db.training_records(9); }, {"no run 9"});
  expect_data_error([&] { db.delete_run(9); }, {"no run 9"});
  EXPECT_EQ(RawDb(dir.file("dup.db")).query("SELECT count(*) FROM samples"), "1");
}

TEST(ResultsStore, RefusesForeignSqliteWithoutTouchingIt) {
  TempDir dir;
  const std::string path = dir.file("foreign.db");
  {
    RawDb raw(path);
    raw.exec("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');");
  }
  const std::string bytes = read_bytes(path);
  ASSERT_FALSE(bytes.empty());
  expect_data_error([&] { ResultsStore db(path); },
                    {path, "not a twosed database", "application_id 0x00000000", "expected 0x32534544"});
  expect_data_error([&] { ResultsStore db(path, false); }, {"not a twosed database"});
  EXPECT_EQ(read_bytes(path), bytes);
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
  EXPECT_EQ(RawDb(path).query("PRAGMA journal_mode"), "delete");
}

TEST(ResultsStore, RefusesTextFiles) {
  TempDir dir;
  const std::string small = dir.file("notes.txt"), large = dir.file("big.csv");
  write_bytes(small, "hello, this is not a database\n");
  std::string csv = "a,b\n";
  for (int i = 0; i < 2000; ++i) csv += fmt::format("{},{}\n", i, i * i);
  write_bytes(large, csv);
  for (const auto& p : {small, large}) {
    const std::string bytes = read_bytes(p);
    expect_data_error([&] { ResultsStore db(p); }, {p, "not a twosed database (not an SQLite file)"});
    EXPECT_EQ(read_bytes(p), bytes);
  }
}

TEST(ResultsStore, RefusesNewerOrUnversionedSchema) {
  TempDir dir;
  const std::string newer = dir.file("newer.db"), unversioned = dir.file("v0.db");
  {
    RawDb raw(newer);
    raw.exec("PRAGMA application_id = 844318020; PRAGMA user_version = 2; CREATE TABLE future (x);");
    RawDb raw0(unversioned);
    raw0.exec("PRAGMA application_id = 844318020; CREATE TABLE runs (x);");
  }
  const std::string bytes = read_bytes(newer);
  expect_data_error(
      [&] { ResultsStore db(newer); },
      {newer, "schema version 2 is newer than this twosed (" TWOSED_VERSION ") reads (1)", "use a newer twosed"});
  EXPECT_EQ(read_bytes(newer), bytes);
  expect_data_error([&] { ResultsStore db(unversioned); }, {unversioned, "user_version 0"});
}

TEST(ResultsStore, MissingFileDirectoryAndBadLocation) {
  TempDir dir;
  const std::string missing = dir.file("missing.db");
  expect_data_error([&] { ResultsStore db(missing, false); }, {missing, "no such results database"});
  EXPECT_FALSE(std::filesystem::exists(missing));
  write_bytes(dir.file("empty.db"), "");
  expect_data_error([&] { ResultsStore db(dir.file("empty.db"), false); }, {"empty.db", "empty file"});
  std::filesystem::create_directory(dir.file("sub"));
  expect_data_error([&] { ResultsStore db(dir.file("sub")); }, {dir.file("sub"), "unable to open"});
  expect_data_error([&] { ResultsStore db(dir.file("no/such/dir/x.db")); }, {"x.db", "unable to open"});
  EXPECT_THROW(ResultsStore db(""), UsageError);
}

// --- SIGKILL during writes -------------------------------------------------------------------

// Every value the writer commits is a function of (idx, block, i), so the parent can check
// each stored sample exactly.
StoredSample kill_sample(int64_t idx) {
  StoredSample s;
  s.index = idx;
  s.stats = fmt::format(R"({{"j":{}}})", idx);
  for (int b = 0; b < 3; ++b) {
    SampleSpectrum sp;
    sp.trace = static_cast<double>(idx) + 0.25 * b;
    sp.num_cut = idx * 3 + b;
    if (b != 1) {  // block 1 stays empty
      const int n = 20000 + static_cast<int>((idx * 37 + b * 11) % 64);
      sp.eigenvalues.resize(n);
      for (int i = 0; i < n; ++i)
        sp.eigenvalues[i] = random_positive((static_cast<uint64_t>(idx) << 40) ^ (uint64_t(b) << 32) ^ uint64_t(i));
    }
    s.blocks.push_back(std::move(sp));
  }
  return s;
}

TrainingRecord kill_record(int64_t idx) {
  TrainingRecord r;
  r.epoch = idx;
  r.train_loss = static_cast<double>(idx) / 7.0;
  r.seconds = 0.5 * static_cast<double>(idx);
  return r;
}

constexpr int64_t kMaxPerRound = 400;  // bounds the file if a kill came late

[[noreturn]] void kill_writer(const std::string& path, int64_t run, int64_t start) {
  try {
    ResultsStore db(path, false);
    for (int64_t idx = start; idx < start + kMaxPerRound; ++idx) {
      db.add_sample(run, kill_sample(idx));
      db.add_training_records(run, {kill_record(idx)});
    }
  } catch (...) {
    _exit(3);
  }
  for (;;) pause();  // wait for the kill
}

TEST(ResultsStore, ConsistentAfterKillDuringWrites) {
  TempDir dir;
  const std::string path = dir.file("kill.db");
  int64_t run = 0;
  {
    ResultsStore db(path);
    run = db.create_run("measure", "kill", "{}");
  }  // no connection open across fork()

  std::random_device rd;
  // Writes take ~1-2 ms per sample here; the WAL checkpoints every ~12 samples.
  const int delays_us[] = {0, 700, 1500, 2500, 4000, 6500, 9000, 17000};
  int64_t start = 0;
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) kill_writer(path, run, start);

    // Wait for a few samples of this round, then kill at a random-ish moment.
    bool started = false;
    {
      ResultsStore poll(path, false);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
      while (std::chrono::steady_clock::now() < deadline) {
        if (static_cast<int64_t>(poll.sample_indices(run).size()) >= start + 3) {
          started = true;
          break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) break;  // the writer died on its own
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delays_us[round] + rd() % 1000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(started) << "writer committed no samples";
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "writer exited on its own: " << status;

    {
      RawDb raw(path);
      EXPECT_EQ(raw.query("PRAGMA integrity_check"), "ok");
      EXPECT_EQ(raw.query("PRAGMA foreign_key_check"), "");
    }
    ResultsStore db(path, false);
    const auto samples = db.samples(run);
    const auto k = static_cast<int64_t>(samples.size());
    EXPECT_GE(k, start + 3);
    EXPECT_LT(k, start + kMaxPerRound) << "the kill came after the writer had finished";
    for (int64_t j = 0; j < k; ++j) {
      ASSERT_EQ(samples[j].index, j) << "gap in sample indices";
      expect_same_sample(samples[j], kill_sample(j));
    }
    {
      RawDb raw(path);  // count matches the blob length for every block
      EXPECT_EQ(raw.query("SELECT count(*) FROM blocks WHERE length(eigenvalues) != 8 * count"), "0");
      EXPECT_EQ(raw.query("SELECT count(*) FROM blocks"), std::to_string(3 * k));
    }
    // Each sample's record follows it in a second transaction: the last one may be missing.
    const auto records = db.training_records(run);
    EXPECT_TRUE(static_cast<int64_t>(records.size()) == k || static_cast<int64_t>(records.size()) == k - 1)
        << records.size() << " records for " << k << " samples";
    for (size_t i = 0; i < records.size(); ++i) expect_same_record(records[i], kill_record(i));
    if (static_cast<int64_t>(records.size()) == k - 1) db.add_training_records(run, {kill_record(k - 1)});

    // The store accepts new writes after the crash.
    db.add_sample(run, kill_sample(k));
    db.add_training_records(run, {kill_record(k)});
    EXPECT_EQ(db.sample_indices(run).size(), static_cast<size_t>(k + 1));
    expect_same_sample(db.samples(run).back(), kill_sample(k));
    start = k + 1;
    if (HasFatalFailure()) return;
  }
}

// Reading commands open the store read-only: no -wal/-shm files appear (a read-only directory
// could not hold them), reads work, and a write fails as a DataError.
TEST(ResultsStore, ReadOnlyCreatesNoWalAndRefusesWrites) {
  TempDir dir;
  const std::string path = dir.file("ro.db");
  {
    ResultsStore db(path);
    db.create_run("measure", "m", R"({"k": 1})");
  }
  ASSERT_FALSE(std::filesystem::exists(path + "-wal"));
  {
    ResultsStore db(path, false, true);
    EXPECT_EQ(db.runs().size(), 1u);
    EXPECT_EQ(db.run(1).label, "m");
    EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
    EXPECT_FALSE(std::filesystem::exists(path + "-shm"));
    try {
      db.create_run("measure", "n", "{}");
      ADD_FAILURE() << "a write to a read-only store succeeded";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("readonly"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
  EXPECT_FALSE(std::filesystem::exists(path + "-shm"));
  EXPECT_THROW(ResultsStore(dir.file("missing.db"), true, true), DataError);  // read-only never creates
  EXPECT_FALSE(std::filesystem::exists(dir.file("missing.db")));
  // A name that needs URI escaping.
  const std::string odd = dir.file("a?b#c%d.db");
  { ResultsStore db(odd); }
  ResultsStore ro(odd, false, true);
  EXPECT_TRUE(ro.runs().empty());
}

// A config column damaged outside twosed is a DataError naming the run, not a JSON exception.
TEST(ResultsStore, CorruptConfigRowIsDataError) {
  TempDir dir;
  const std::string path = dir.file("c.db");
  ResultsStore db(path);
  const int64_t id = db.create_run("measure", "m", R"({"k": 1})");
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "UPDATE runs SET config = '{\"k\": ' WHERE id = 1", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  try {
    db.run(id);
    ADD_FAILURE() << "a corrupt config was read";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": run 1: column 'config' is not valid JSON"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace twosed

// SHA-256 identifies a TorchScript model file in a run's configuration: FIPS 180-2's test
// vectors (one block, the empty message, a message whose padding needs a second block) and a
// million 'a's (many blocks), and a file read in 64 KiB pieces equals the whole.
TEST(Sha256, StandardTestVectors) {
  EXPECT_EQ(twosed::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(twosed::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(twosed::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(twosed::sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FileEqualsBytes) {
  std::string bytes;
  for (int i = 0; i < 200000; ++i) bytes += static_cast<char>((i * 7919) % 251);
  const std::string path = ::testing::TempDir() + "sha256_file.bin";
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
  }
  EXPECT_EQ(twosed::file_sha256(path), twosed::sha256_hex(bytes));
  EXPECT_THROW(twosed::file_sha256(path + ".missing"), twosed::DataError);
}
