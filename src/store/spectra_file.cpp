#include "twosed/store/spectra_file.h"

#include <fmt/format.h>

#include <cstring>

#include <cerrno>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "json_fields.h"
#include "twosed/error.h"

namespace twosed {

namespace {
nlohmann::json header_to_json(const SpectraHeader& h) {
  nlohmann::json j = {{"twosed_spectra", h.markov ? 2 : 1},
                      {"model", h.model},
                      {"d", h.num_params},
                      {"N", h.num_inputs},
                      {"k", h.num_outputs},
                      {"task", h.task},
                      {"fisher", h.fisher},
                      {"seed", h.seed}};
  if (h.markov) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : h.layers)
      layers.push_back({{"name", l.name}, {"description", l.description}, {"params", l.params}});
    j["markov"] = {
        {"sigma", h.sigma}, {"noise_draws", h.noise_draws}, {"noise_width", h.noise_width}, {"layers", layers}};
  }
  return j;
}

// `where` prefixes messages ("PATH:1").
SpectraHeader header_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.contains("twosed_spectra"))
    throw DataError(fmt::format("{}: not a twosed spectra file (no \"twosed_spectra\" key)", where));
  const int64_t format = json_fields::integer(j, "twosed_spectra", where);
  if (format != 1 && format != 2)
    throw DataError(fmt::format("{}: spectra file format {} is not supported (expected 1 or 2)", where,
                                j.at("twosed_spectra").dump()));
  SpectraHeader h;
  h.model = j.at("model").get<std::string>();
  h.num_params = json_fields::integer(j, "d", where);
  h.num_inputs = json_fields::integer(j, "N", where);
  h.num_outputs = json_fields::integer(j, "k", where);
  h.task = j.at("task").get<std::string>();
  h.fisher = j.at("fisher").get<std::string>();
  h.seed = json_fields::unsigned_integer(j, "seed", where);
  if (h.num_params < 1) throw DataError(fmt::format("{}: d must be >= 1", where));
  h.markov = format == 2;
  if (h.markov) {
    const auto& mk = j.at("markov");
    h.sigma = mk.at("sigma").get<double>();
    h.noise_draws = json_fields::integer(mk, "noise_draws", where);
    h.noise_width = json_fields::integer(mk, "noise_width", where);
    for (const auto& l : mk.at("layers"))
      h.layers.push_back({l.at("name").get<std::string>(), l.at("description").get<std::string>(),
                          json_fields::integer(l, "params", where)});
    if (h.layers.empty()) throw DataError(fmt::format("{}: a Markov spectra header needs layers", where));
  }
  return h;
}
}  // namespace

std::string spectra_header_json(const SpectraHeader& h) {
  return header_to_json(h).dump();
}

SpectraHeader parse_spectra_header(const std::string& json_text, const std::string& where) {
  try {
    return header_from_json(nlohmann::json::parse(json_text), where);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("{}: {}", where, e.what()));
  }
}

SpectraWriter::SpectraWriter(const std::string& path, const SpectraHeader& h) : path_(path) {
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) throw DataError(fmt::format("{}: cannot open for writing: {}", path, std::strerror(errno)));
  const auto line = spectra_header_json(h) + "\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw DataError(fmt::format("{}: write failed: {}", path, std::strerror(errno)));
}

SpectraWriter::~SpectraWriter() {
  if (file_) std::fclose(file_);
}

namespace {
// Written by hand rather than through a JSON value: a spectrum can hold a million numbers.
std::string spectrum_fields(const SampleSpectrum& s) {
  std::string out = fmt::format("\"trace\": {:.17g}, \"cut\": {}, \"eigenvalues\": [", s.trace, s.num_cut);
  for (size_t i = 0; i < s.eigenvalues.size(); ++i) out += fmt::format(i ? ", {:.17g}" : "{:.17g}", s.eigenvalues[i]);
  return out + "]";
}

SampleSpectrum parse_spectrum(const nlohmann::json& j, const std::string& path, int64_t line_no) {
  SampleSpectrum s;
  s.trace = j.at("trace").get<double>();
  s.num_cut = json_fields::integer(j, "cut", fmt::format("{}:{}", path, line_no));
  s.eigenvalues = j.at("eigenvalues").get<std::vector<double>>();
  if (!std::isfinite(s.trace) || s.trace < 0)
    throw DataError(fmt::format("{}:{}: trace must be finite and >= 0", path, line_no));
  for (double v : s.eigenvalues)
    if (!std::isfinite(v) || v <= 0)
      throw DataError(fmt::format("{}:{}: eigenvalues must be finite and > 0", path, line_no));
  return s;
}
}  // namespace

void SpectraWriter::append(int64_t j, const SampleSpectrum& s) {
  const std::string line = fmt::format("{{\"sample\": {}, {}}}\n", j, spectrum_fields(s));
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw DataError(fmt::format("{}: write failed: {}", path_, std::strerror(errno)));
}

void SpectraWriter::append_layers(int64_t j, const std::vector<SampleSpectrum>& layers) {
  std::string line = fmt::format("{{\"sample\": {}, \"layers\": [", j);
  for (size_t l = 0; l < layers.size(); ++l) line += (l ? ", {" : "{") + spectrum_fields(layers[l]) + "}";
  line += "]}\n";
  if (std::fputs(line.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw DataError(fmt::format("{}: write failed: {}", path_, std::strerror(errno)));
}

SpectraFile read_spectra(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("{}: cannot open file: {}", path, std::strerror(errno)));
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
        out.header = header_from_json(j, fmt::format("{}:1", path));
        continue;
      }
      if (!out.header.markov) {
        out.spectra.push_back(parse_spectrum(j, path, line_no));
        continue;
      }
      const auto& layers = j.at("layers");
      if (layers.size() != out.header.layers.size())
        throw DataError(
            fmt::format("{}:{}: expected {} layers, found {}", path, line_no, out.header.layers.size(), layers.size()));
      std::vector<SampleSpectrum> per_layer;
      for (const auto& l : layers) per_layer.push_back(parse_spectrum(l, path, line_no));
      out.spectra.push_back(merge_spectra(per_layer));
      out.layer_spectra.push_back(std::move(per_layer));
    } catch (const nlohmann::json::exception& e) {
      throw DataError(fmt::format("{}:{}: {}", path, line_no, e.what()));
    }
  }
  if (line_no == 0 || out.header.num_params == 0) throw DataError(fmt::format("{}: empty spectra file", path));
  if (out.spectra.empty()) throw DataError(fmt::format("{}: no finished samples", path));
  return out;
}

}  // namespace twosed
