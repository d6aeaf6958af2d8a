// assemble_result(): the one place where records become a result (measure.h).
#include <fmt/format.h>

#include <algorithm>

#include "twosed/error.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/measure/measure.h"

namespace twosed {
namespace {

// The result's fields that come from the header alone.
MeasureResult from_header(const SpectraHeader& header, const EstimatorOptions& eopts, const ResultSources& sources) {
  MeasureResult result;
  result.header = header;
  result.estimator = eopts;
  if (result.estimator.eps.empty()) result.estimator.eps = default_eps_grid();
  result.activation = sources.activation;
  result.spec.text = header.model;
  result.num_inputs = header.num_inputs;
  result.num_outputs = header.num_outputs;
  result.fisher.task = header.task == "regress" ? Task::Regress : Task::Classify;
  result.fisher.kind = header.fisher == "sampled" ? FisherKind::Sampled : FisherKind::Exact;
  result.fisher.label_seed = header.seed;
  result.rows_per_example = rows_per_example(result.num_outputs, result.fisher);
  result.data_description = sources.data;
  result.space_description = sources.space;
  result.jacobian_description = sources.jacobian;
  return result;
}

// Per-sample statistics of a record, completed from its merged spectrum where the record (a
// spectra file's) does not carry them.
SampleSummary summary_of(const SampleRecord& r, const SampleSpectrum& merged) {
  SampleSummary summary = r.summary;
  summary.kept = static_cast<int64_t>(merged.eigenvalues.size());
  summary.cut = merged.num_cut;
  summary.trace = merged.trace;
  if (summary.matrix_size == 0) summary.matrix_size = summary.kept + summary.cut;
  if (summary.largest == 0)
    for (double e : merged.eigenvalues) summary.largest = std::max(summary.largest, e);
  return summary;
}

// The Markov layers' reports: sizes, cuts, traces and costs summed over the records.
void markov_layers(const SpectraHeader& header, const std::vector<SampleRecord>& records, const ResultSources& sources,
                   MarkovReport& mk) {
  const size_t num_blocks = header.layers.size();
  mk.from_spectra_file =
      std::any_of(records.begin(), records.end(), [&](const SampleRecord& r) { return r.costs.size() != num_blocks; });
  for (size_t l = 0; l < num_blocks; ++l) {
    MarkovLayerReport lr;
    lr.name = header.layers[l].name;
    lr.description = header.layers[l].description;
    lr.params = header.layers[l].params;
    if (l < sources.layer_units.size()) lr.units = sources.layer_units[l];
    lr.hidden = l + 1 < num_blocks;
    mk.layers.push_back(lr);
  }
  const double m = static_cast<double>(records.size());
  for (const auto& r : records) {
    mk.sample_traces.emplace_back();
    for (size_t l = 0; l < num_blocks; ++l) {
      auto& lr = mk.layers[l];
      mk.sample_traces.back().push_back(r.blocks[l].trace);
      lr.mean_trace += r.blocks[l].trace / m;
      lr.num_cut += r.blocks[l].num_cut;
      if (mk.from_spectra_file) continue;
      const auto& c = r.costs[l];
      lr.blocks_samples_side += c.blocks_samples_side;
      lr.blocks_parameter_side += c.blocks_parameter_side;
      lr.largest_block = std::max(lr.largest_block, c.largest_block);
      lr.seconds += c.seconds;
      lr.cpu_seconds_products += c.cpu_seconds_products;
      lr.cpu_seconds_eigen += c.cpu_seconds_eigen;
    }
  }
}

// The chain 2sED (log-mean-exp), the lower 2sED (mean) and each layer's share of it, all with
// the same t and bootstrap resamples.
void markov_estimates(const std::vector<SampleSpectrum>& merged, const std::vector<SampleRecord>& records, int64_t d,
                      const EstimatorOptions& eopts, MeasureResult& result) {
  result.estimate = estimate_two_scale(merged, d, eopts);
  EstimatorOptions lower_opts = eopts;
  lower_opts.aggregate = Aggregate::Mean;
  result.markov.lower = estimate_two_scale(merged, d, lower_opts);
  for (size_t l = 0; l < result.markov.layers.size(); ++l) {
    // The layer's eigenvalues with the whole Fisher's trace: t is the model's (docs/math.md section 4).
    std::vector<SampleSpectrum> layer;
    layer.reserve(records.size());
    for (size_t j = 0; j < records.size(); ++j) {
      layer.push_back(records[j].blocks[l]);
      layer.back().trace = merged[j].trace;
    }
    result.markov.layers[l].share = estimate_group_share(layer, d, eopts);
  }
}

}  // namespace

MeasureResult assemble_result(const SpectraHeader& header, const std::vector<SampleRecord>& records,
                              const EstimatorOptions& eopts, const ResultSources& sources) {
  const std::string& where = sources.data.empty() ? header.model : sources.data;
  if (records.empty()) throw DataError(fmt::format("{}: no finished samples", where));
  MeasureResult result = from_header(header, eopts, sources);
  result.side = records.front().side;
  const size_t num_blocks = header.markov ? header.layers.size() : 1;
  std::vector<SampleSpectrum> merged;
  merged.reserve(records.size());
  for (const auto& r : records) {
    if (r.blocks.size() != num_blocks)
      throw DataError(
          fmt::format("{}: sample {} has {} blocks, expected {}", where, r.index, r.blocks.size(), num_blocks));
    merged.push_back(merge_spectra(r.blocks));
    result.samples.push_back(summary_of(r, merged.back()));
  }
  if (!header.markov) {
    result.estimate = estimate_two_scale(merged, header.num_params, eopts);
    return result;
  }
  auto& mk = result.markov;
  mk.enabled = true;
  mk.sigma = header.sigma;
  mk.noise_draws = header.noise_draws;
  mk.noise_width = header.noise_width;
  mk.noise_description = sources.noise.empty() ? "as in the run that computed the spectra" : sources.noise;
  markov_layers(header, records, sources, mk);
  markov_estimates(merged, records, header.num_params, eopts, result);
  return result;
}

}  // namespace twosed
