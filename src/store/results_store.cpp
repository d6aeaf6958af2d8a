#include "twosed/store/results_store.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>

#include "twosed/error.h"

#ifndef TWOSED_VERSION
#error "TWOSED_VERSION must be defined by the build"
#endif

namespace twosed {

std::string config_hash(const std::string& canonical_config) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : canonical_config) {
    h ^= c;
    h *= 0x100000001b3ULL;  // FNV-1a 64 prime
  }
  return fmt::format("{:016x}", h);
}

namespace {

constexpr const char* kRunning = "running";
constexpr const char* kDone = "done";
constexpr const char* kFailed = "failed";
constexpr const char* kKinds[] = {"measure", "train", "study"};

// Version 1. Written once, inside the creating transaction, together with application_id and
// user_version, so that a crash leaves either an empty file or a complete database.
constexpr const char* kSchema = R"sql(
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL);
CREATE TABLE runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a deleted run's id is never reused
  kind TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
  label TEXT NOT NULL,
  config TEXT NOT NULL,
  config_hash TEXT NOT NULL,
  version TEXT NOT NULL,
  created TEXT NOT NULL,
  updated TEXT NOT NULL,
  parent INTEGER REFERENCES runs(id),  -- NULL: no parent
  result TEXT,
  message TEXT);
CREATE INDEX runs_parent ON runs(parent);
CREATE INDEX runs_lookup ON runs(kind, config_hash);
CREATE TABLE samples (
  run INTEGER NOT NULL REFERENCES runs(id),
  idx INTEGER NOT NULL,
  stats TEXT NOT NULL,
  PRIMARY KEY (run, idx));
CREATE TABLE blocks (
  run INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  block INTEGER NOT NULL,
  trace REAL,
  cut INTEGER NOT NULL,
  count INTEGER NOT NULL,
  eigenvalues BLOB NOT NULL,  -- count little-endian float64
  PRIMARY KEY (run, idx, block),
  FOREIGN KEY (run, idx) REFERENCES samples(run, idx));
CREATE TABLE training (
  run INTEGER NOT NULL REFERENCES runs(id),
  seq INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  step INTEGER NOT NULL,
  train_loss REAL,  -- NULL: NaN (not measured)
  train_accuracy REAL,
  test_loss REAL,
  test_accuracy REAL,
  seconds REAL,
  PRIMARY KEY (run, seq));
CREATE TABLE arrays (
  run INTEGER NOT NULL REFERENCES runs(id),
  name TEXT NOT NULL,
  count INTEGER NOT NULL,
  data BLOB NOT NULL,  -- count little-endian float64
  PRIMARY KEY (run, name));
CREATE TABLE texts (
  run INTEGER NOT NULL REFERENCES runs(id),
  name TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (run, name));
)sql";

// The runs columns RunInfo is read from (read_run_row), with the counts computed, not stored.
constexpr const char* kRunSelect =
    "SELECT id, kind, status, label, config, config_hash, version, created, updated, parent, result, message, "
    "(SELECT count(*) FROM samples s WHERE s.run = runs.id), "
    "(SELECT count(*) FROM training t WHERE t.run = runs.id) FROM runs ";

// The run and all its descendants; prefixed to each DELETE of delete_run.
constexpr const char* kSubtree =
    "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION SELECT runs.id FROM runs JOIN sub ON runs.parent = sub.id) ";

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
constexpr bool kLittleEndian = false;
#else
constexpr bool kLittleEndian = true;
#endif

// float64 values as little-endian bytes (the file format), whatever the host's byte order.
class DoubleBlob {
 public:
  explicit DoubleBlob(const std::vector<double>& v) : values_(v) {
    if (!kLittleEndian) {
      swapped_.resize(v.size() * 8);
      for (size_t i = 0; i < v.size(); ++i) {
        unsigned char b[8];
        std::memcpy(b, &v[i], 8);
        for (int k = 0; k < 8; ++k) swapped_[i * 8 + k] = b[7 - k];
      }
    }
  }
  const void* data() const { return kLittleEndian ? static_cast<const void*>(values_.data()) : swapped_.data(); }
  sqlite3_uint64 bytes() const { return static_cast<sqlite3_uint64>(values_.size()) * 8; }

 private:
  const std::vector<double>& values_;
  std::vector<unsigned char> swapped_;
};

std::vector<double> decode_doubles(const void* data, size_t count) {
  std::vector<double> out(count);
  if (count == 0) return out;
  if (kLittleEndian) {
    std::memcpy(out.data(), data, count * 8);
  } else {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < count; ++i) {
      unsigned char b[8];
      for (int k = 0; k < 8; ++k) b[k] = p[i * 8 + 7 - k];
      std::memcpy(&out[i], b, 8);
    }
  }
  return out;
}

[[noreturn]] void sqlite_fail(sqlite3* db, const std::string& path) {
  throw DataError(fmt::format("{}: {}", path, sqlite3_errmsg(db)));
}

// A prepared statement, finalized on every path. Parameters are bound, never spliced into SQL.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(path) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) sqlite_fail(db_, path_);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  const std::string& path() const { return path_; }
  Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(stmt_, i, v)); }
  Stmt& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Stmt& bind_null(int i) { return check(sqlite3_bind_null(stmt_, i)); }
  /// NaN is stored as NULL (SQLite would do so anyway; explicit, so that reading back is symmetric).
  Stmt& bind_real(int i, double v) { return std::isnan(v) ? bind_null(i) : check(sqlite3_bind_double(stmt_, i, v)); }
  /// `blob` must outlive the step (bound without a copy).
  Stmt& bind_blob(int i, const DoubleBlob& blob) {
    // A null pointer would bind NULL, not an empty blob.
    if (blob.bytes() == 0) return check(sqlite3_bind_zeroblob(stmt_, i, 0));
    return check(sqlite3_bind_blob64(stmt_, i, blob.data(), blob.bytes(), SQLITE_STATIC));
  }

  /// true: a row is available; false: done. Throws on any error.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    sqlite_fail(db_, path_);
  }
  void run() {
    while (step()) {
    }
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  bool is_null(int c) const { return sqlite3_column_type(stmt_, c) == SQLITE_NULL; }
  int64_t int64(int c) const { return sqlite3_column_int64(stmt_, c); }
  double real(int c) const {
    return is_null(c) ? std::numeric_limits<double>::quiet_NaN() : sqlite3_column_double(stmt_, c);
  }
  std::string text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, c));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, c))) : std::string();
  }
  /// The blob of column c as `count` doubles; `what` names it in the error for a wrong size.
  std::vector<double> doubles(int c, int64_t count, const std::string& what) const {
    const void* p = sqlite3_column_blob(stmt_, c);
    const int64_t bytes = sqlite3_column_bytes(stmt_, c);
    if (count < 0 || bytes != count * 8)
      throw DataError(fmt::format("{}: {} has {} bytes, expected {} float64 values ({} bytes)", path_, what, bytes,
                                  count, count * 8));
    return decode_doubles(p, static_cast<size_t>(count));
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) sqlite_fail(db_, path_);
    return *this;
  }
  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* stmt_ = nullptr;
};

void exec(sqlite3* db, const std::string& path, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw DataError(fmt::format("{}: {}", path, msg));
  }
}

// BEGIN IMMEDIATE (write: takes the write lock up front, so that the busy timeout applies at
// the start and never as a deadlock mid-transaction) or BEGIN (a consistent read snapshot).
// Rolled back unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& path, bool write) : db_(db), path_(path) {
    exec(db_, path_, write ? "BEGIN IMMEDIATE" : "BEGIN");
  }
  ~Transaction() {
    // A failed COMMIT may already have rolled back; the autocommit flag tells.
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() { exec(db_, path_, "COMMIT"); }

 private:
  sqlite3* db_;
  const std::string& path_;
};

RunInfo read_run_row(const Stmt& q) {
  RunInfo r;
  r.id = q.int64(0);
  r.kind = q.text(1);
  r.status = q.text(2);
  r.label = q.text(3);
  r.config = q.text(4);
  r.config_hash = q.text(5);
  r.version = q.text(6);
  r.created = q.text(7);
  r.updated = q.text(8);
  r.parent = q.is_null(9) ? 0 : q.int64(9);
  r.result = q.text(10);
  r.message = q.text(11);
  r.num_samples = q.int64(12);
  r.num_records = q.int64(13);
  // Readers parse these columns; a row damaged outside twosed is a data error naming the run,
  // not a JSON exception deep inside a command.
  auto check_json = [&](const std::string& column, const std::string& text, bool object) {
    try {
      const auto j = nlohmann::json::parse(text);
      if (object && !j.is_object())
        throw DataError(fmt::format("{}: run {}: column '{}' is not a JSON object (found {}); the database is corrupt",
                                    q.path(), r.id, column, j.type_name()));
    } catch (const nlohmann::json::exception& e) {
      throw DataError(fmt::format("{}: run {}: column '{}' is not valid JSON ({}); the database is corrupt", q.path(),
                                  r.id, column, e.what()));
    }
  };
  check_json("config", r.config, true);
  if (!r.result.empty()) check_json("result", r.result, false);
  return r;
}

void check_kind(const std::string& kind) {
  for (const char* k : kKinds)
    if (kind == k) return;
  throw UsageError(fmt::format("unknown run kind '{}' (expected measure, train or study)", kind));
}

void check_json(const std::string& text, const char* what) {
  if (!nlohmann::json::accept(text)) throw UsageError(fmt::format("{} is not valid JSON (expected JSON text)", what));
}

bool run_exists(sqlite3* db, const std::string& path, int64_t id) {
  Stmt q(db, path, "SELECT 1 FROM runs WHERE id = ?");
  q.bind(1, id);
  return q.step();
}

void require_run(sqlite3* db, const std::string& path, int64_t id) {
  if (!run_exists(db, path, id)) throw DataError(fmt::format("{}: no run {}", path, id));
}

void touch_run(sqlite3* db, const std::string& path, int64_t id) {
  Stmt u(db, path, "UPDATE runs SET updated = ? WHERE id = ?");
  u.bind(1, now_utc()).bind(2, id).run();
}

// Result code of the first statement that reads the file: distinguishes "not SQLite at all"
// (SQLITE_NOTADB, reported by prepare or step) from other failures.
int query_int(sqlite3* db, const char* sql, int64_t* out) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(s, 0);
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(s);
  return rc;
}

void close_db(sqlite3* db) {
  if (!db) return;
  // Never checkpoint into a database this store refused (a foreign WAL database stays as it was).
  sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3_close_v2(db);
}

}  // namespace

namespace {
// A read-only connection as an SQLite URI. mode=ro never writes the database; immutable=1 also
// needs no -wal/-shm files (a read-only directory cannot hold them, and a reader should not
// leave them behind). Without a -wal file no writer has the database open and every commit is
// in the main file; with one, a writer may be active (or crashed), so it is read through its WAL.
std::string read_only_uri(const std::string& path) {
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (std::isalnum(c) || std::strchr("/-._~", c))
      uri += static_cast<char>(c);
    else
      uri += fmt::format("%{:02X}", c);
  }
  struct stat st {};
  return uri + (::stat((path + "-wal").c_str(), &st) == 0 ? "?mode=ro" : "?mode=ro&immutable=1");
}
}  // namespace

ResultsStore::ResultsStore(const std::string& path, bool create, bool read_only) : path_(path) {
  if (path.empty()) throw UsageError("results database path is empty (expected a file name)");
  if (read_only) create = false;
  struct stat st {};
  if (!create && ::stat(path.c_str(), &st) != 0 && errno == ENOENT)
    throw DataError(fmt::format("{}: no such results database", path));

  const int flags =
      read_only ? SQLITE_OPEN_READONLY | SQLITE_OPEN_URI : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  const int rc = sqlite3_open_v2(read_only ? read_only_uri(path).c_str() : path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    close_db(db_);
    db_ = nullptr;
    throw DataError(fmt::format("{}: cannot open results database: {}", path, msg));
  }
  try {
    sqlite3_busy_timeout(db_, 10000);
    const auto read = [&](const char* sql) {
      int64_t v = 0;
      const int r = query_int(db_, sql, &v);
      if (r == SQLITE_NOTADB) throw DataError(fmt::format("{}: not a twosed database (not an SQLite file)", path));
      if (r != SQLITE_OK)
        throw DataError(fmt::format("{}: cannot read results database: {}", path, sqlite3_errmsg(db_)));
      return v;
    };
    // Only reads until the checks below pass: a foreign database is left exactly as it was.
    read("PRAGMA application_id");
    if (read("PRAGMA page_count") == 0) {
      if (!create) throw DataError(fmt::format("{}: empty file, expected a results database", path));
      Transaction t(db_, path_, true);
      // Another process may have created it between the check and the lock. (Not page_count:
      // within a write transaction an empty file already counts one page.)
      if (read("SELECT count(*) FROM sqlite_master") == 0) {
        exec(db_, path_, kSchema);
        exec(db_, path_,
             fmt::format("PRAGMA application_id = {}; PRAGMA user_version = {};", kApplicationId, kSchemaVersion)
                 .c_str());
        Stmt m(db_, path_, "INSERT INTO meta (key, value) VALUES (?, ?)");
        m.bind(1, std::string("created_by")).bind(2, std::string("twosed " TWOSED_VERSION)).run();
        m.reset();
        m.bind(1, std::string("created")).bind(2, now_utc()).run();
      }
      t.commit();
    }
    const int64_t app = read("PRAGMA application_id");
    const int64_t version = read("PRAGMA user_version");
    if (app != kApplicationId)
      throw DataError(fmt::format("{}: not a twosed database (application_id 0x{:08x}, expected 0x{:08x})", path,
                                  static_cast<uint32_t>(app), static_cast<uint32_t>(kApplicationId)));
    if (version > kSchemaVersion)
      throw DataError(fmt::format("{}: schema version {} is newer than this twosed ({}) reads ({}); use a newer twosed",
                                  path, version, TWOSED_VERSION, kSchemaVersion));
    if (version < 1)
      throw DataError(fmt::format("{}: twosed database without a valid schema version (user_version {}, expected {})",
                                  path, version, kSchemaVersion));
    // WAL only after creation: journal_mode cannot change inside a transaction, and a crash
    // before the schema commit then leaves an empty file rather than a header without tables.
    if (read_only)
      exec(db_, path_, "PRAGMA foreign_keys = ON;");
    else
      exec(db_, path_, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
  } catch (...) {
    close_db(db_);
    db_ = nullptr;
    throw;
  }
}

ResultsStore::~ResultsStore() {
  if (db_) sqlite3_close_v2(db_);
}

int64_t ResultsStore::create_run(const std::string& kind, const std::string& label, const std::string& config_json,
                                 int64_t parent) {
  check_kind(kind);
  check_json(config_json, "run config");
  if (parent < 0) throw UsageError(fmt::format("parent run id {} must be >= 0", parent));
  Transaction t(db_, path_, true);
  if (parent != 0) require_run(db_, path_, parent);
  const std::string now = now_utc();
  Stmt ins(db_, path_,
           "INSERT INTO runs (kind, status, label, config, config_hash, version, created, updated, parent) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  ins.bind(1, kind).bind(2, std::string(kRunning)).bind(3, label).bind(4, config_json);
  ins.bind(5, config_hash(config_json)).bind(6, std::string(TWOSED_VERSION)).bind(7, now).bind(8, now);
  if (parent != 0)
    ins.bind(9, parent);
  else
    ins.bind_null(9);
  ins.run();
  const int64_t id = sqlite3_last_insert_rowid(db_);
  t.commit();
  return id;
}

namespace {
void set_status(sqlite3* db, const std::string& path, int64_t id, const char* status, const char* column,
                const std::string* value) {
  Transaction t(db, path, true);
  // Fixed column names only; the values are bound.
  const std::string sql = fmt::format("UPDATE runs SET status = ?, updated = ?, {} = ? WHERE id = ?", column);
  Stmt u(db, path, sql.c_str());
  u.bind(1, std::string(status)).bind(2, now_utc()).bind(4, id);
  if (value)
    u.bind(3, *value);
  else
    u.bind_null(3);
  u.run();
  if (sqlite3_changes(db) == 0) throw DataError(fmt::format("{}: no run {}", path, id));
  t.commit();
}
}  // namespace

void ResultsStore::finish_run(int64_t id, const std::string& result_json) {
  if (!result_json.empty()) check_json(result_json, "run result");
  set_status(db_, path_, id, kDone, "result", &result_json);
}

void ResultsStore::fail_run(int64_t id, const std::string& message) {
  set_status(db_, path_, id, kFailed, "message", &message);
}

void ResultsStore::reopen_run(int64_t id) {
  set_status(db_, path_, id, kRunning, "message", nullptr);
}

RunInfo ResultsStore::run(int64_t id) const {
  Stmt q(db_, path_, (std::string(kRunSelect) + "WHERE id = ?").c_str());
  q.bind(1, id);
  if (!q.step()) throw DataError(fmt::format("{}: no run {}", path_, id));
  return read_run_row(q);
}

std::vector<RunInfo> ResultsStore::runs(const std::string& kind) const {
  if (!kind.empty()) check_kind(kind);
  Stmt q(db_, path_, (std::string(kRunSelect) + "WHERE ?1 = '' OR kind = ?1 ORDER BY id").c_str());
  q.bind(1, kind);
  std::vector<RunInfo> out;
  while (q.step()) out.push_back(read_run_row(q));
  return out;
}

std::vector<RunInfo> ResultsStore::children(int64_t parent) const {
  Transaction t(db_, path_, false);
  if (parent != 0) require_run(db_, path_, parent);
  Stmt q(db_, path_, (std::string(kRunSelect) + "WHERE parent IS ?1 ORDER BY id").c_str());
  if (parent != 0)
    q.bind(1, parent);
  else
    q.bind_null(1);
  std::vector<RunInfo> out;
  while (q.step()) out.push_back(read_run_row(q));
  return out;
}

std::optional<RunInfo> ResultsStore::find_run(const std::string& kind, const std::string& hash,
                                              const std::string& status) const {
  check_kind(kind);
  // Newest = highest id (created has a resolution of one second).
  Stmt q(db_, path_,
         (std::string(kRunSelect) + "WHERE kind = ?1 AND config_hash = ?2 AND (?3 = '' OR status = ?3) "
                                    "ORDER BY id DESC LIMIT 1")
             .c_str());
  q.bind(1, kind).bind(2, hash).bind(3, status);
  if (!q.step()) return std::nullopt;
  return read_run_row(q);
}

void ResultsStore::add_sample(int64_t run, const StoredSample& s) {
  if (s.index < 0) throw UsageError(fmt::format("sample index {} must be >= 0", s.index));
  Transaction t(db_, path_, true);
  require_run(db_, path_, run);
  {
    Stmt q(db_, path_, "SELECT 1 FROM samples WHERE run = ? AND idx = ?");
    q.bind(1, run).bind(2, s.index);
    if (q.step()) throw DataError(fmt::format("{}: run {} already has sample {}", path_, run, s.index));
  }
  Stmt ins(db_, path_, "INSERT INTO samples (run, idx, stats) VALUES (?, ?, ?)");
  ins.bind(1, run).bind(2, s.index).bind(3, s.stats).run();
  Stmt blk(db_, path_,
           "INSERT INTO blocks (run, idx, block, trace, cut, count, eigenvalues) VALUES (?, ?, ?, ?, ?, ?, ?)");
  for (size_t b = 0; b < s.blocks.size(); ++b) {
    const SampleSpectrum& sp = s.blocks[b];
    const DoubleBlob blob(sp.eigenvalues);
    blk.reset();
    blk.bind(1, run).bind(2, s.index).bind(3, static_cast<int64_t>(b)).bind_real(4, sp.trace);
    blk.bind(5, sp.num_cut).bind(6, static_cast<int64_t>(sp.eigenvalues.size())).bind_blob(7, blob).run();
  }
  touch_run(db_, path_, run);
  t.commit();
}

std::vector<StoredSample> ResultsStore::samples(int64_t run) const {
  Transaction t(db_, path_, false);
  require_run(db_, path_, run);
  // LEFT JOIN: a sample may have no blocks.
  Stmt q(db_, path_,
         "SELECT s.idx, s.stats, b.block, b.trace, b.cut, b.count, b.eigenvalues FROM samples s "
         "LEFT JOIN blocks b ON b.run = s.run AND b.idx = s.idx WHERE s.run = ? ORDER BY s.idx, b.block");
  q.bind(1, run);
  std::vector<StoredSample> out;
  while (q.step()) {
    const int64_t idx = q.int64(0);
    if (out.empty() || out.back().index != idx) {
      out.emplace_back();
      out.back().index = idx;
      out.back().stats = q.text(1);
    }
    if (q.is_null(2)) continue;
    auto& blocks = out.back().blocks;
    const int64_t b = q.int64(2);
    if (b != static_cast<int64_t>(blocks.size()))
      throw DataError(
          fmt::format("{}: run {} sample {}: block {} found, expected block {}", path_, run, idx, b, blocks.size()));
    SampleSpectrum sp;
    sp.trace = q.real(3);
    sp.num_cut = q.int64(4);
    sp.eigenvalues = q.doubles(6, q.int64(5), fmt::format("run {} sample {} block {} eigenvalues", run, idx, b));
    blocks.push_back(std::move(sp));
  }
  t.commit();
  return out;
}

std::vector<int64_t> ResultsStore::sample_indices(int64_t run) const {
  Transaction t(db_, path_, false);
  require_run(db_, path_, run);
  Stmt q(db_, path_, "SELECT idx FROM samples WHERE run = ? ORDER BY idx");
  q.bind(1, run);
  std::vector<int64_t> out;
  while (q.step()) out.push_back(q.int64(0));
  t.commit();
  return out;
}

void ResultsStore::add_training_records(int64_t run, const std::vector<TrainingRecord>& records) {
  Transaction t(db_, path_, true);
  require_run(db_, path_, run);
  if (records.empty()) return;  // nothing written: `updated` stays
  int64_t seq = 0;
  {
    Stmt q(db_, path_, "SELECT coalesce(max(seq) + 1, 0) FROM training WHERE run = ?");
    q.bind(1, run).step();
    seq = q.int64(0);
  }
  Stmt ins(db_, path_,
           "INSERT INTO training (run, seq, epoch, step, train_loss, train_accuracy, test_loss, test_accuracy, "
           "seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (const auto& r : records) {
    ins.reset();
    ins.bind(1, run).bind(2, seq++).bind(3, r.epoch).bind(4, r.step).bind_real(5, r.train_loss);
    ins.bind_real(6, r.train_accuracy).bind_real(7, r.test_loss).bind_real(8, r.test_accuracy);
    ins.bind_real(9, r.seconds).run();
  }
  touch_run(db_, path_, run);
  t.commit();
}

std::vector<TrainingRecord> ResultsStore::training_records(int64_t run) const {
  Transaction t(db_, path_, false);
  require_run(db_, path_, run);
  Stmt q(db_, path_,
         "SELECT epoch, step, train_loss, train_accuracy, test_loss, test_accuracy, seconds FROM training "
         "WHERE run = ? ORDER BY seq");
  q.bind(1, run);
  std::vector<TrainingRecord> out;
  while (q.step()) {
    TrainingRecord r;
    r.epoch = q.int64(0);
    r.step = q.int64(1);
    r.train_loss = q.real(2);
    r.train_accuracy = q.real(3);
    r.test_loss = q.real(4);
    r.test_accuracy = q.real(5);
    r.seconds = q.real(6);
    out.push_back(r);
  }
  t.commit();
  return out;
}

void ResultsStore::put_array(int64_t run, const std::string& name, const std::vector<double>& values) {
  if (name.empty()) throw UsageError("array name is empty");
  Transaction t(db_, path_, true);
  require_run(db_, path_, run);
  const DoubleBlob blob(values);
  Stmt ins(db_, path_,
           "INSERT INTO arrays (run, name, count, data) VALUES (?, ?, ?, ?) "
           "ON CONFLICT (run, name) DO UPDATE SET count = excluded.count, data = excluded.data");
  ins.bind(1, run).bind(2, name).bind(3, static_cast<int64_t>(values.size())).bind_blob(4, blob).run();
  touch_run(db_, path_, run);
  t.commit();
}

std::vector<double> ResultsStore::get_array(int64_t run, const std::string& name) const {
  Transaction t(db_, path_, false);
  require_run(db_, path_, run);
  Stmt q(db_, path_, "SELECT count, data FROM arrays WHERE run = ? AND name = ?");
  q.bind(1, run).bind(2, name);
  if (!q.step()) throw DataError(fmt::format("{}: run {} has no array '{}'", path_, run, name));
  auto values = q.doubles(1, q.int64(0), fmt::format("run {} array '{}'", run, name));
  t.commit();
  return values;
}

void ResultsStore::put_text(int64_t run, const std::string& name, const std::string& text) {
  if (name.empty()) throw UsageError("text name is empty");
  Transaction t(db_, path_, true);
  require_run(db_, path_, run);
  Stmt ins(db_, path_,
           "INSERT INTO texts (run, name, text) VALUES (?, ?, ?) "
           "ON CONFLICT (run, name) DO UPDATE SET text = excluded.text");
  ins.bind(1, run).bind(2, name).bind(3, text).run();
  touch_run(db_, path_, run);
  t.commit();
}

std::optional<std::string> ResultsStore::get_text(int64_t run, const std::string& name) const {
  Transaction t(db_, path_, false);
  require_run(db_, path_, run);
  Stmt q(db_, path_, "SELECT text FROM texts WHERE run = ? AND name = ?");
  q.bind(1, run).bind(2, name);
  std::optional<std::string> out;
  if (q.step()) out = q.text(0);
  t.commit();
  return out;
}

void ResultsStore::delete_run(int64_t id) {
  Transaction t(db_, path_, true);
  require_run(db_, path_, id);
  // Children's rows first, so that the foreign keys hold after every statement.
  for (const char* table : {"blocks", "samples", "training", "arrays", "texts"}) {
    const std::string sql = fmt::format("{}DELETE FROM {} WHERE run IN sub", kSubtree, table);
    Stmt d(db_, path_, sql.c_str());
    d.bind(1, id).run();
  }
  const std::string sql = fmt::format("{}DELETE FROM runs WHERE id IN sub", kSubtree);
  Stmt d(db_, path_, sql.c_str());
  d.bind(1, id).run();
  t.commit();
}

std::string ResultsStore::claim_run(int64_t id, const std::string& process,
                                    const std::function<bool(const std::string&)>& is_live, bool allow_done,
                                    const std::string& config) {
  if (!config.empty()) check_json(config, "run config");
  Transaction t(db_, path_, true);
  Stmt q(db_, path_,
         "SELECT status, (SELECT text FROM texts WHERE run = runs.id AND name = 'process') FROM runs "
         "WHERE id = ?");
  q.bind(1, id);
  if (!q.step()) throw DataError(fmt::format("{}: no run {}", path_, id));
  const std::string status = q.text(0), marker = q.text(1);
  q.reset();
  if (status == kDone && !allow_done) return kDone;
  if (!marker.empty() && is_live(marker)) return marker;
  Stmt ins(db_, path_,
           "INSERT INTO texts (run, name, text) VALUES (?, 'process', ?) "
           "ON CONFLICT (run, name) DO UPDATE SET text = excluded.text");
  ins.bind(1, id).bind(2, process).run();
  Stmt u(db_, path_, "UPDATE runs SET status = ?, message = NULL, updated = ? WHERE id = ?");
  u.bind(1, std::string(kRunning)).bind(2, now_utc()).bind(3, id).run();
  if (!config.empty()) {
    Stmt c(db_, path_, "UPDATE runs SET config = ?, config_hash = ? WHERE id = ?");
    c.bind(1, config).bind(2, config_hash(config)).bind(3, id).run();
  }
  t.commit();
  return "";
}

}  // namespace twosed
