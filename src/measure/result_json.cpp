// The JSON of measurement results (result_json.h).
#include "twosed/measure/result_json.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <thread>

#include "twosed/execution.h"

namespace twosed {
namespace {

using nlohmann::json;

// The Markov parts: curves with lower/chain/layers, at_n, layers, markov, sample_traces.
void add_markov_json(nlohmann::json& j, const MeasureResult& r) {
  using nlohmann::json;
  const auto& mk = r.markov;
  const double d = static_cast<double>(r.estimate.num_params);
  json curves = json::array();
  for (size_t z = 0; z < r.estimate.curves.size(); ++z) {
    const auto& chain = r.estimate.curves[z];
    const auto& lower = mk.lower.curves[z];
    json layers = json::array();
    for (const auto& l : mk.layers)
      layers.push_back({{"name", l.name},
                        {"params", l.params},
                        {"contribution", l.share.curves[z].value},
                        {"contribution_stderr", l.share.curves[z].std_error}});
    std::vector<double> gap(chain.value.size());
    for (size_t e = 0; e < gap.size(); ++e) gap[e] = chain.value[e] - lower.value[e];
    curves.push_back({{"zeta", chain.zeta},
                      {"eps", chain.eps},
                      {"lower", lower.value},
                      {"lower_stderr", lower.std_error},
                      {"chain", chain.value},
                      {"chain_stderr", chain.std_error},
                      {"gap", gap},
                      {"layers", layers}});
  }
  json at_n = json::array();
  for (size_t i = 0; i < r.estimate.at_n.size(); ++i) {
    const auto& c = r.estimate.at_n[i];
    const auto& l = mk.lower.at_n[i];
    at_n.push_back({{"zeta", c.zeta},
                    {"n", c.n},
                    {"eps", c.eps},
                    {"lower", l.value},
                    {"lower_stderr", l.std_error},
                    {"chain", c.value},
                    {"chain_stderr", c.std_error}});
  }
  json layers = json::array();
  for (const auto& l : mk.layers) {
    const double m = static_cast<double>(std::max<int64_t>(r.estimate.num_param_samples, 1));
    layers.push_back({{"name", l.name},
                      {"layers", l.description},
                      {"params", l.params},
                      {"param_share", static_cast<double>(l.params) / d},
                      {"hidden", l.hidden},
                      {"units", l.units},
                      {"blocks_samples_side", l.blocks_samples_side},
                      {"blocks_parameter_side", l.blocks_parameter_side},
                      {"largest_block", l.largest_block},
                      {"cut", l.num_cut},
                      {"mean_trace", l.mean_trace},
                      {"seconds_per_sample", l.seconds / m},
                      {"cpu_seconds_products_per_sample", l.cpu_seconds_products / m},
                      {"cpu_seconds_eigen_per_sample", l.cpu_seconds_eigen / m}});
  }
  j["model_kind"] = "markov";
  j["markov"] = {{"sigma", mk.sigma},
                 {"noise_draws", mk.noise_draws},
                 {"noise_width", mk.noise_width},
                 {"noise", mk.noise_description}};
  j["curves"] = curves;
  j["at_n"] = at_n;
  j["layers"] = layers;
  j["sample_traces"] = mk.sample_traces;
  j.erase("gram_side");
}

}  // namespace

// Where and when a result was made: enough to tell two runs' environments apart.
nlohmann::json run_context() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char date[32] = {};
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"date", date},
          {"host", host},
          {"threads", current_threads()},
          {"hardware_concurrency", std::thread::hardware_concurrency()}};
}

nlohmann::json result_json(const MeasureResult& r) {
  using nlohmann::json;
  const auto& e = r.estimate;
  json curves = json::array();
  for (const auto& c : e.curves)
    curves.push_back({{"zeta", c.zeta}, {"eps", c.eps}, {"value", c.value}, {"stderr", c.std_error}});
  auto points = [](const std::vector<PointEstimate>& ps) {
    json arr = json::array();
    for (const auto& p : ps)
      arr.push_back({{"zeta", p.zeta}, {"n", p.n}, {"eps", p.eps}, {"value", p.value}, {"stderr", p.std_error}});
    return arr;
  };
  json samples = json::array();
  for (const auto& s : r.samples)
    samples.push_back({{"matrix_size", s.matrix_size},
                       {"kept", s.kept},
                       {"cut", s.cut},
                       {"trace", s.trace},
                       {"largest", s.largest},
                       {"most_negative", s.most_negative}});
  int64_t cut = 0;
  for (const auto& s : r.samples) cut += s.cut;
  json j = {
      {"schema_version", kResultSchemaVersion},
      {"twosed_version", TWOSED_VERSION},
      {"context", run_context()},
      {"model", r.spec.text},
      {"d", e.num_params},
      {"M", e.num_param_samples},
      {"N", r.num_inputs},
      {"k", r.num_outputs},
      {"task", r.fisher.task == Task::Classify ? "classify" : "regress"},
      {"out_noise", r.fisher.task == Task::Regress ? json(r.fisher.out_noise) : json(nullptr)},
      {"fisher", r.fisher.kind == FisherKind::Exact ? "exact" : "sampled"},
      {"cover", e.cover == Cover::Box ? "box" : "ellipsoid"},
      {"gram_side", r.side == GramSide::Samples ? "samples" : "parameters"},
      {"data", r.data_description},
      {"space", r.space_description},
      {"seed", r.header.seed},
      {"bootstrap", r.estimator.bootstrap},
      {"mean_trace", e.mean_trace},
      {"zero_cutoff", {{"relative", r.fisher.cutoff}, {"removed", cut}}},
      {"curves", curves},
      {"ed", points(e.ed)},
      {"at_n", points(e.at_n)},
      {"samples", samples},
      {"seconds", r.seconds_total},
  };
  if (!r.jacobian_description.empty()) j["jacobian"] = r.jacobian_description;

  // Samples computed at once (each on one BLAS thread when more than one) and why.
  j["context"]["parallel_samples"] = {{"samples", r.parallel_samples}, {"reason", r.parallel_reason}};
  if (r.markov.enabled) add_markov_json(j, r);
  return j;
}

}  // namespace twosed
