#include "twosed/spectra_file.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "twosed/error.h"

namespace twosed {

SpectraWriter::SpectraWriter(const std::string& path, const SpectraHeader& h) : path_(path) {
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) throw DataError(fmt::format("{}: cannot open for writing", path));
  nlohmann::json j = {{"twosed_spectra", 1}, {"model", h.model}, {"d", h.num_params},  {"N", h.num_inputs},
                      {"k", h.num_outputs},  {"task", h.task},   {"fisher", h.fisher}, {"seed", h.seed}};
  const auto line = j.dump() + "\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw DataError(fmt::format("{}: write failed", path));
}

SpectraWriter::~SpectraWriter() {
  if (file_) std::fclose(file_);
}

void SpectraWriter::append(int64_t j, const SampleSpectrum& s) {
  // Written by hand rather than through a JSON value: a spectrum can hold a million numbers.
  std::string line =
      fmt::format("{{\"sample\": {}, \"trace\": {:.17g}, \"cut\": {}, \"eigenvalues\": [", j, s.trace, s.num_cut);
  for (size_t i = 0; i < s.eigenvalues.size(); ++i) line += fmt::format(i ? ", {:.17g}" : "{:.17g}", s.eigenvalues[i]);
  line += "]}\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw DataError(fmt::format("{}: write failed", path_));
}

SpectraFile read_spectra(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("{}: cannot open file", path));
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  SpectraFile out;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    ++line_no;
    if (end == std::string::npos) {  // a run stopped in the middle of a line
      out.truncated_last_line = true;
      break;
    }
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
      if (line_no == 1) {
        if (!j.contains("twosed_spectra"))
          throw DataError(fmt::format("{}:1: not a twosed spectra file (no \"twosed_spectra\" key)", path));
        if (j.at("twosed_spectra").get<int>() != 1)
          throw DataError(fmt::format("{}:1: spectra file format {} is not supported (expected 1)", path,
                                      j.at("twosed_spectra").dump()));
        auto& h = out.header;
        h.model = j.at("model").get<std::string>();
        h.num_params = j.at("d").get<int64_t>();
        h.num_inputs = j.at("N").get<int64_t>();
        h.num_outputs = j.at("k").get<int64_t>();
        h.task = j.at("task").get<std::string>();
        h.fisher = j.at("fisher").get<std::string>();
        h.seed = j.at("seed").get<uint64_t>();
        if (h.num_params < 1) throw DataError(fmt::format("{}:1: d must be >= 1", path));
        continue;
      }
      SampleSpectrum s;
      s.trace = j.at("trace").get<double>();
      s.num_cut = j.at("cut").get<int64_t>();
      s.eigenvalues = j.at("eigenvalues").get<std::vector<double>>();
      for (double v : s.eigenvalues)
        if (!std::isfinite(v) || v <= 0)
          throw DataError(fmt::format("{}:{}: eigenvalues must be finite and > 0", path, line_no));
      out.spectra.push_back(std::move(s));
    } catch (const nlohmann::json::exception& e) {
      throw DataError(fmt::format("{}:{}: {}", path, line_no, e.what()));
    }
  }
  if (line_no == 0 || out.header.num_params == 0) throw DataError(fmt::format("{}: empty spectra file", path));
  if (out.spectra.empty()) throw DataError(fmt::format("{}: no finished samples", path));
  return out;
}

}  // namespace twosed
