// Internal: the loaders in front of the engine. They turn MeasureOptions' strings and files
// (data sources, --inputs-file, --thetas, --space, --noise) into the engine's in-memory values.
#pragma once

#include <memory>

#include "twosed/measure/engine.h"
#include "twosed/measure/measure.h"

namespace twosed::loaders {

/// The N inputs named by opts (a data source's seeded subset, or every row of an .npy file),
/// checked against the model.
MeasureInputs load_inputs(const MeasureOptions& opts, const ModelSpec& spec);

/// theta^(j): read from opts.thetas_file (checked against a checkpoint sidecar), else drawn
/// from opts.space with opts.seed.
std::unique_ptr<ParameterSource> load_parameters(const MeasureOptions& opts, const Network& net);

/// The Markov noise: opts.noise_file as (M, N*R, H) (an (M, N, R, H) file is reshaped), else
/// drawn with opts.seed.
MarkovNoise load_noise(const MeasureOptions& opts, int64_t m, int64_t n, int64_t r, int64_t h);

}  // namespace twosed::loaders
