// Formatting of Markov chain results and figures for `twosed measure` (--markov, --plot).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "twosed/measure.h"

namespace twosed::cli {

/// The grid index of eps nearest (in log scale) to `wanted`, or the grid's middle if wanted <= 0.
size_t breakdown_index(const std::vector<double>& eps, double wanted);

/// The Markov parts of the JSON (curves with lower/chain/layers, at_n, layers, markov, sample_traces).
void add_markov_json(nlohmann::json& j, const MeasureResult& r);

/// Markov results as CSV: kind,zeta,eps,n,layer,value,stderr.
std::string markov_csv(const MeasureResult& r);

/// Markov results as a human-readable table (header lines are the caller's).
std::string markov_table(const MeasureResult& r, const MeasureOptions& o, size_t breakdown);

/// --plot: the curves vs eps with standard-error bands; for Markov, the lower 2sED (and the
/// chain 2sED) and the layer breakdown at eps[breakdown] as stacked bars.
void write_plot(const MeasureResult& r, const std::string& path, size_t breakdown);

}  // namespace twosed::cli
