// Internal: the pre-flight memory check of a measurement (what --plan prints in detail).
#pragma once

#include <cstdint>
#include <string>

#include "twosed/measure/measure.h"

namespace twosed {

/// Throws UsageError, with the breakdown and the advice, when one parameter sample of this
/// measurement would need more than 90% of the machine's memory.
void check_memory(const ModelSpec& spec, int64_t n, const MeasureOptions& opts, int threads);

class TorchScriptNetwork;
struct StructuredPlan;
/// The same check for a TorchScript model with k outputs on n inputs; `structured`: the plan of
/// the structured path when it is taken (else the autograd rows are counted).
void check_torchscript_memory(const TorchScriptNetwork& net, int64_t k, int64_t n, const MeasureOptions& opts,
                              const StructuredPlan* structured = nullptr);

/// How many parameter samples run at once (MeasureOptions::parallel_samples) and why.
struct SampleParallelism {
  int workers = 1;
  std::string reason;
};

/// opts.parallel_samples if set, else the cost model's choice for `samples` samples of `spec`
/// (null: a TorchScript model, whose forward passes are serialised) with N = n on `threads`
/// threads: K = threads samples at once when the predicted time of the whole run is at least
/// 10% lower and K samples' memory fits. Throws OptionError for a negative request.
SampleParallelism choose_parallel_samples(const ModelSpec* spec, int64_t n, int64_t samples, const MeasureOptions& opts,
                                          int threads);

}  // namespace twosed
