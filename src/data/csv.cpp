// CSV loader (see data.h).
//
// Line and column numbers in messages refer to the original file (1-based), counting blank
// lines, so that a user can jump straight to the offending field.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fmt/format.h>

#include "twosed/data/data.h"
#include "twosed/error.h"

namespace twosed {

namespace {

// Bounds on one line, so that a file without newlines (/dev/zero, a binary file given by
// mistake) or a line of separators fails with a message rather than exhausting memory.
// 16 MiB holds some 700,000 full-precision numbers; each field costs at least 32 bytes held.
constexpr size_t kMaxLineBytes = size_t{16} << 20;
constexpr size_t kMaxFields = 1000000;

DataError line_too_long(const std::string& name, size_t line_no) {
  return DataError(fmt::format("{}:{}: line longer than {} bytes", name, line_no, kMaxLineBytes));
}

struct Row {
  size_t line = 0;  // 1-based line number in the file
  std::vector<std::string> fields;
};

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

bool is_blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// Limits a field quoted in a message, so that one garbage field cannot make a huge message.
std::string shown(const std::string& s) {
  constexpr size_t kMax = 40;
  return s.size() <= kMax ? s : s.substr(0, kMax) + "...";
}

// Splits one line at `sep`. A field may be enclosed in double quotes (with "" for a literal
// quote), in which case separators inside it do not split.
std::vector<std::string> split_fields(const std::string& line, char sep, const std::string& name, size_t line_no) {
  std::vector<std::string> fields;
  std::string cur;
  size_t i = 0;
  while (true) {
    if (fields.size() >= kMaxFields)
      throw DataError(fmt::format("{}:{}: more than {} fields", name, line_no, kMaxFields));
    // Leading spaces before an opening quote do not count.
    size_t j = i;
    while (j < line.size() && (line[j] == ' ' || (line[j] == '\t' && sep != '\t'))) ++j;
    if (j < line.size() && line[j] == '"') {
      cur.clear();
      size_t k = j + 1;
      bool closed = false;
      while (k < line.size()) {
        if (line[k] == '"') {
          if (k + 1 < line.size() && line[k + 1] == '"') {
            cur += '"';
            k += 2;
            continue;
          }
          closed = true;
          ++k;
          break;
        }
        cur += line[k++];
      }
      if (!closed) throw DataError(fmt::format("{}:{}: unterminated quoted field", name, line_no));
      while (k < line.size() && line[k] != sep) {
        if (line[k] != ' ' && line[k] != '\t')
          throw DataError(
              fmt::format("{}:{}:{}: unexpected text after a quoted field", name, line_no, fields.size() + 1));
        ++k;
      }
      fields.push_back(cur);
      if (k >= line.size()) break;
      i = k + 1;
    } else {
      const size_t end = line.find(sep, i);
      fields.push_back(trim(line.substr(i, end == std::string::npos ? std::string::npos : end - i)));
      if (end == std::string::npos) break;
      i = end + 1;
    }
  }
  return fields;
}

enum class NumStatus { Ok, NotANumber, NonFinite, OutOfRange };

// Parses a complete field as a float64. Locale-independent (std::from_chars); a leading '+'
// is accepted, hexadecimal is not.
NumStatus parse_number(const std::string& s, double& out) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') {
    ++b;
    if (b != e && (*b == '-' || *b == '+')) return NumStatus::NotANumber;
  }
  if (b == e) return NumStatus::NotANumber;
  const auto r = std::from_chars(b, e, out, std::chars_format::general);
  if (r.ptr != e) return NumStatus::NotANumber;
  if (r.ec == std::errc::result_out_of_range) return NumStatus::OutOfRange;
  if (r.ec != std::errc()) return NumStatus::NotANumber;
  if (!std::isfinite(out)) return NumStatus::NonFinite;
  return NumStatus::Ok;
}

bool is_number(const std::string& s) {
  double v;
  return parse_number(s, v) != NumStatus::NotANumber;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

double field_value(const std::string& s, const std::string& name, size_t line, size_t col) {
  double v = 0;
  switch (parse_number(s, v)) {
    case NumStatus::Ok:
      return v;
    case NumStatus::NotANumber:
      throw DataError(fmt::format("{}:{}:{}: '{}' is not a number", name, line, col, shown(s)));
    case NumStatus::NonFinite:
      throw DataError(fmt::format("{}:{}:{}: NaN or Inf is not allowed", name, line, col));
    case NumStatus::OutOfRange:
      throw DataError(fmt::format("{}:{}:{}: '{}' is out of the float64 range", name, line, col, shown(s)));
  }
  return v;
}

}  // namespace

namespace {

// Splits the text into non-blank rows with 1-based line numbers; a UTF-8 byte-order mark is
// dropped. The separator is the first of ',', ';', tab on the first non-blank line.
std::vector<Row> split_rows(const std::string& text, const std::string& name) {
  std::vector<Row> rows;
  char sep = 0;
  size_t pos = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  size_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    if (end - pos > kMaxLineBytes) throw line_too_long(name, line_no + 1);
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (is_blank(line)) continue;
    if (sep == 0)
      sep = line.find(',') != std::string::npos    ? ','
            : line.find(';') != std::string::npos  ? ';'
            : line.find('\t') != std::string::npos ? '\t'
                                                   : ',';
    rows.push_back(Row{line_no, split_fields(line, sep, name, line_no)});
  }
  if (rows.empty()) throw DataError(fmt::format("{}: no data rows", name));
  return rows;
}

// The label column's index among ncols: the last by default, an index, or a header name.
size_t label_column(const CsvOptions& opts, const std::vector<std::string>& header, size_t ncols,
                    const std::string& name) {
  const std::string& want = opts.label_column;
  if (want.empty()) return ncols - 1;
  if (all_digits(want)) {
    // A plain integer is always an index, even when the header has a column of that name.
    if (want.size() > 9 || std::stoul(want) >= ncols)
      throw DataError(fmt::format("{}: label column {} out of range (the file has {} columns, indices 0..{})", name,
                                  shown(want), ncols, ncols - 1));
    return std::stoul(want);
  }
  if (header.empty())
    throw DataError(
        fmt::format("{}: label column '{}' given by name but the file has no header row", name, shown(want)));
  const auto it = std::find(header.begin(), header.end(), want);
  if (it == header.end()) {
    std::string cols;
    for (size_t i = 0; i < header.size() && i < 20; ++i) cols += (i ? ", " : "") + shown(header[i]);
    if (header.size() > 20) cols += ", ...";
    throw DataError(fmt::format("{}: label column '{}' not in header (columns: {})", name, shown(want), cols));
  }
  return static_cast<size_t>(it - header.begin());
}

// An integer label: exact, and within 2^53 so that every accepted value is representable.
int64_t integer_label(double v, const std::string& field, const std::string& name, size_t line) {
  if (v != std::floor(v)) throw DataError(fmt::format("{}:{}: label '{}' is not an integer", name, line, shown(field)));
  if (std::fabs(v) > 9007199254740992.0)
    throw DataError(fmt::format("{}:{}: label '{}' is out of range", name, line, shown(field)));
  return static_cast<int64_t>(v);
}

// Labels as classes 0..C-1: kept when they already are, else ranked among the distinct values.
void set_classes(const std::vector<int64_t>& raw_labels, Dataset& out) {
  std::vector<int64_t> distinct = raw_labels;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  const bool dense = distinct.front() == 0 && distinct.back() == static_cast<int64_t>(distinct.size()) - 1;
  out.labels.reserve(raw_labels.size());
  for (int64_t l : raw_labels)
    out.labels.push_back(dense ? l : std::lower_bound(distinct.begin(), distinct.end(), l) - distinct.begin());
  out.num_classes = static_cast<int64_t>(distinct.size());
}

}  // namespace

Dataset parse_csv(const std::string& text, const std::string& name, const CsvOptions& opts) {
  std::vector<Row> rows = split_rows(text, name);
  // Header: the first row, if any of its fields is not a number.
  std::vector<std::string> header;
  if (std::any_of(rows[0].fields.begin(), rows[0].fields.end(), [](const std::string& f) { return !is_number(f); })) {
    header = rows[0].fields;
    rows.erase(rows.begin());
  }
  if (rows.empty()) throw DataError(fmt::format("{}: no data rows", name));
  const size_t ncols = header.empty() ? rows[0].fields.size() : header.size();
  const bool has_label = opts.has_labels;
  const size_t label_col = has_label ? label_column(opts, header, ncols, name) : 0;
  const size_t nfeat = has_label ? ncols - 1 : ncols;
  if (nfeat < 1) throw DataError(fmt::format("{}: no feature columns (the only column is the label)", name));

  Dataset out;
  out.source = name;
  out.sample_shape = {static_cast<int64_t>(nfeat)};
  out.x.reserve(rows.size() * nfeat);
  std::vector<int64_t> raw_labels;
  if (has_label) raw_labels.reserve(rows.size());
  for (const Row& r : rows) {
    if (r.fields.size() != ncols)
      throw DataError(fmt::format("{}:{}: expected {} fields, found {}", name, r.line, ncols, r.fields.size()));
    for (size_t c = 0; c < ncols; ++c) {
      const double v = field_value(r.fields[c], name, r.line, c + 1);
      if (has_label && c == label_col && !opts.integer_labels)
        out.targets.push_back(v);
      else if (has_label && c == label_col)
        raw_labels.push_back(integer_label(v, r.fields[c], name, r.line));
      else
        out.x.push_back(v);
    }
  }
  if (has_label && opts.integer_labels) set_classes(raw_labels, out);
  return out;
}

Dataset load_csv(const std::string& path, const CsvOptions& opts) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw DataError(fmt::format("{}: is a directory (expected a CSV file)", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("{}: cannot open file", path));
  // Read in chunks, checking the line length as the text arrives: a stream without newlines
  // (a device, a pipe) stops at the cap instead of being read to the end of memory.
  std::string text;
  std::vector<char> buf(size_t{1} << 20);
  size_t line_start = 0, lines = 0;
  bool bom_checked = false;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const size_t got = static_cast<size_t>(in.gcount());
    if (got == 0) break;
    const size_t scan_from = text.size();
    text.append(buf.data(), got);
    if (!bom_checked && text.size() >= 3) {
      // As in parse_csv, a UTF-8 byte-order mark is not part of the first line.
      if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) line_start = 3;
      bom_checked = true;
    }
    for (size_t p = text.find('\n', scan_from); p != std::string::npos; p = text.find('\n', p + 1)) {
      ++lines;
      line_start = p + 1;
    }
    if (text.size() - line_start > kMaxLineBytes) throw line_too_long(path, lines + 1);
  }
  if (in.bad()) throw DataError(fmt::format("{}: read error", path));
  return parse_csv(text, path, opts);
}

}  // namespace twosed
