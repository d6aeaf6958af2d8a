// How a library call may use the machine: its worker threads (and later ranks and devices).
//
// Library calls never change process-wide settings and leave them changed: a call that is
// given a thread count sets it for its own duration with ScopedThreads and restores the
// previous setting on return (or on an exception).
//
// Example:
//   ExecutionContext ctx;
//   ctx.threads = 2;
//   MeasureResult r = measure(net, inputs, thetas, model, estimator, {}, ctx);
#pragma once

namespace twosed {

class SampleExecutor;  // measure/engine.h

struct ExecutionContext {
  int threads = 0;  ///< worker threads for the BLAS/LAPACK work (>= 1); 0: keep the process's current setting
  /// Where a measurement's parameter samples are computed (several threads, MPI ranks); null:
  /// one after the other in this thread. Not owned; must outlive the call.
  const SampleExecutor* executor = nullptr;
};

/// The thread count a call uses now: OpenBLAS's, which does the heavy work.
int current_threads();

/// One thread per core of this machine (at least 1).
int hardware_threads();

/// Sets the worker threads for the lifetime of the object and restores the previous setting
/// after. OpenBLAS gets `threads`; LibTorch's own pool gets 1, because two spin-waiting pools on
/// the same cores slowed the passes and Gram products by up to 30% (docs/benchmarks.md), and one
/// pool keeps results reproducible per thread count. threads = 0 changes nothing.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads);
  explicit ScopedThreads(const ExecutionContext& ctx) : ScopedThreads(ctx.threads) {}
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  bool active_ = false;
  int saved_blas_ = 1, saved_torch_ = 1;
};

}  // namespace twosed
