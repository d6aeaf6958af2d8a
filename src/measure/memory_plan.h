// Internal: the pre-flight memory check of a measurement (what --plan prints in detail).
#pragma once

#include <cstdint>

#include "twosed/measure/measure.h"

namespace twosed {

/// Throws UsageError, with the breakdown and the advice, when one parameter sample of this
/// measurement would need more than 90% of the machine's memory.
void check_memory(const ModelSpec& spec, int64_t n, const MeasureOptions& opts, int threads);

class TorchScriptNetwork;
/// The same check for a TorchScript model with k outputs on n inputs.
void check_torchscript_memory(const TorchScriptNetwork& net, int64_t k, int64_t n, const MeasureOptions& opts);

}  // namespace twosed
