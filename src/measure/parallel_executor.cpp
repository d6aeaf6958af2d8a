// ParallelExecutor (engine.h): samples on worker threads, records handed over on the caller's.
#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "twosed/error.h"
#include "twosed/measure/engine.h"

namespace twosed {

ParallelExecutor::ParallelExecutor(int workers) : workers_(workers) {
  if (workers < 1) throw OptionError("ParallelExecutor.workers", fmt::format("must be >= 1, got {}", workers));
}

void ParallelExecutor::run(const StatisticalModel& model, const ParameterSource& thetas,
                           const std::vector<int64_t>& schedule, const MeasureHooks& hooks,
                           const ExecutionContext& /*ctx*/, const std::function<void(SampleRecord&&)>& done) const {
  // One BLAS thread per worker for the whole run (and LibTorch's pool at one), restored after.
  ScopedThreads single(1);
  const int64_t m = thetas.count();
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<SampleRecord> finished;
  std::exception_ptr error;
  int running = 0;
  std::mutex progress_mutex;  // progress bars are not thread-safe

  auto work = [&] {
    try {
      SampleWorker worker(model, thetas);
      for (size_t i; !stop && (i = next++) < schedule.size();) {
        const int64_t j = schedule[i];
        auto record = worker.sample(j, [&](int64_t layers_done, int64_t layers) {
          if (!hooks.layer_progress) return;
          std::lock_guard<std::mutex> lock(progress_mutex);
          hooks.layer_progress(j, layers_done, layers, m);
        });
        std::lock_guard<std::mutex> lock(mutex);
        finished.push_back(std::move(record));
        ready.notify_one();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
      stop = true;
    }
    std::lock_guard<std::mutex> lock(mutex);
    --running;
    ready.notify_one();
  };

  const int n = static_cast<int>(std::min<size_t>(static_cast<size_t>(workers_), schedule.size()));
  std::vector<std::thread> pool;
  running = n;
  for (int t = 0; t < n; ++t) pool.emplace_back(work);
  // The caller's thread hands records on as they come (the store commits them at once).
  try {
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex);
      ready.wait(lock, [&] { return !finished.empty() || running == 0; });
      if (finished.empty()) break;
      SampleRecord r = std::move(finished.front());
      finished.pop_front();
      lock.unlock();
      if (!stop) done(std::move(r));
    }
  } catch (...) {
    stop = true;
    for (auto& t : pool) t.join();
    throw;
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace twosed
