// MPI ranks for the CLI (mpi.h). Messages, all between rank 0 and one worker:
//
//   rank 0 -> worker   kSetup   a measurement's WorkerSetup (codec.h), then the inputs by MPI_Bcast
//                      kTask    sample j [theta^(j) when not drawn by the worker] [noise j when given]
//                      kEnd     the measurement is over (drop its model)
//                      kStop    no more measurements: return from serve()
//   worker -> rank 0   kResult  the record of the task's sample
//                      kError   why the task failed: kind and "rank r (host): message"
//
// A worker has at most one task: rank 0 hands the next index to whichever rank answers first
// (dynamic scheduling; samples differ in cost, machines in speed). Rank 0 also computes, on a
// thread of its own fed from the same queue, while its main thread does all MPI calls
// (MPI_THREAD_FUNNELED) and hands records to the engine in the order they arrive.
// The C API only: Open MPI's deprecated C++ bindings do not compile cleanly with -Wextra.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <fmt/format.h>
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "linalg/scratch.h"
#include "mpi/codec.h"
#include "mpi/ranks.h"
#include "twosed/error.h"
#include "twosed/measure/engine.h"

namespace twosed::mpi {
namespace {

enum Tag : int { kSetup = 1, kTask, kEnd, kStop, kResult, kError };

// How long rank 0 waits, after an error, for the samples in flight to come back (and be
// committed) before it ends the job with MPI_Abort.
constexpr double kDrainSeconds = 10.0;

struct World {
  bool active = false;  // MPI initialised by init()
  int rank = 0, size = 1;
  std::string host;
};
World g_world;

std::string local_host() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// An exception as it travels: its kind (the CLI's exit code) and one line.
struct Failure {
  int kind = 3;  // 1 DataError, 2 UsageError, 3 anything else
  std::string message;
};

Failure failure_of(const std::exception_ptr& e) {
  auto here = [](const std::string& what) {
    return fmt::format("rank {} ({}): {}", g_world.rank, g_world.host, what.substr(0, what.find('\n')));
  };
  try {
    std::rethrow_exception(e);
  } catch (const DataError& x) {
    return {1, here(x.what())};
  } catch (const UsageError& x) {
    return {2, here(x.what())};
  } catch (const std::exception& x) {
    return {3, here(x.what())};
  }
  return {3, here("unknown exception")};
}

[[noreturn]] void rethrow(const Failure& f) {
  if (f.kind == 1) throw DataError(f.message);
  if (f.kind == 2) throw UsageError(f.message);
  throw std::runtime_error(f.message);
}

void send_bytes(const std::vector<char>& b, int dest, int tag) {
  if (b.size() > static_cast<size_t>(INT_MAX))
    throw DataError(fmt::format("an MPI message of {} bytes is over MPI's 2 GiB limit", b.size()));
  MPI_Send(b.data(), static_cast<int>(b.size()), MPI_BYTE, dest, tag, MPI_COMM_WORLD);
}

// Receives the message that `st` (from a probe) announces.
std::vector<char> recv_bytes(const MPI_Status& st) {
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  std::vector<char> b(static_cast<size_t>(count));
  MPI_Recv(b.data(), count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  return b;
}

// The inputs from rank 0 to every rank, in pieces that fit MPI's int counts.
void bcast_doubles(double* p, int64_t n) {
  constexpr int64_t kPiece = int64_t{1} << 26;
  for (int64_t at = 0; at < n; at += kPiece)
    MPI_Bcast(p + at, static_cast<int>(std::min(kPiece, n - at)), MPI_DOUBLE, 0, MPI_COMM_WORLD);
}

// The test hook: TWOSED_TEST_FAIL_RANK=r makes rank r throw at its first sample.
void maybe_inject_failure() {
  static bool first = true;
  const char* v = std::getenv("TWOSED_TEST_FAIL_RANK");
  if (!first || !v || std::atoi(v) != g_world.rank) return;
  first = false;
  throw DataError(fmt::format("injected failure at the first sample (TWOSED_TEST_FAIL_RANK={})", v));
}

// ---- workers ----

// A measurement as a worker holds it: what rank 0 described, built without reading a file.
struct WorkerJob {
  WorkerSetup setup;
  std::unique_ptr<Network> net;
  std::unique_ptr<StatisticalModel> model;
  std::unique_ptr<ParameterSource> thetas;  // drawn here; null: theta^(j) comes with each task
  std::optional<Failure> failure;           // building failed: the answer to every task
  // Reused from task to task, as a SampleWorker does (engine.h).
  torch::Tensor theta;
  linalg::ScratchPool scratch;
};

void build_job(WorkerJob& job, torch::Tensor x) {
  const auto& s = job.setup;
  job.net = std::make_unique<Network>(s.spec);
  if (job.net->spec().describe() != s.spec_summary || job.net->num_params() != s.num_params)
    throw UsageError(
        fmt::format("the network built from '{}' differs from rank 0's (another twosed version?)", s.spec.text));
  MeasureInputs inputs{std::move(x), s.inputs_description};
  if (s.markov)
    job.model =
        std::make_unique<MarkovModel>(*job.net, std::move(inputs), MarkovOptions{s.sigma, s.noise_draws, s.fisher},
                                      MarkovNoise{s.noise_seed, {}, ""});
  else
    job.model = std::make_unique<StandardModel>(*job.net, std::move(inputs), s.fisher);
  if (s.draw_thetas)
    job.thetas =
        std::make_unique<DrawnParameters>(ParameterSpace::parse(s.space, *job.net), s.theta_seed, s.num_samples);
}

// One task: its record, encoded.
std::vector<char> run_task(WorkerJob& job, const std::vector<char>& msg) {
  if (job.failure) rethrow(*job.failure);
  const auto& s = job.setup;
  Reader in(msg.data(), msg.size(), "task from rank 0");
  const auto j = in.get<int64_t>();
  if (!job.theta.defined()) job.theta = torch::empty({s.num_params}, torch::kFloat64);
  auto& theta = job.theta;
  linalg::ScratchScope scope(job.scratch);
  if (job.thetas)
    job.thetas->fill(j, theta.data_ptr<double>());
  else
    in.get_array(theta.data_ptr<double>(), static_cast<size_t>(s.num_params));
  maybe_inject_failure();
  SampleRecord record;
  if (s.noise_given) {
    const auto* mk = static_cast<const MarkovModel*>(job.model.get());
    const int64_t rows = mk->chain().noise_rows(s.input_shape.front()), h = mk->chain().noise_width();
    auto noise = torch::empty({rows, h}, torch::kFloat64);
    in.get_array(noise.data_ptr<double>(), static_cast<size_t>(rows * h));
    record = mk->sample_with_noise(j, theta, noise, {});
  } else {
    record = job.model->sample(j, theta, {});
  }
  Writer w;
  encode_record(w, record);
  return std::move(w.bytes());
}

std::vector<char> encode_failure(const Failure& f) {
  Writer w;
  w.put<int32_t>(f.kind);
  w.put_string(f.message);
  return std::move(w.bytes());
}

// ---- rank 0 ----

// A measurement as rank 0 describes it to the workers.
struct Job {
  WorkerSetup setup;
  const torch::Tensor* x = nullptr;
  const MarkovModel* markov = nullptr;
};

Job describe(const StatisticalModel& model, const ParameterSource& thetas) {
  Job job;
  auto& s = job.setup;
  const Network* net = nullptr;
  const MeasureInputs* inputs = nullptr;
  if (const auto* sm = dynamic_cast<const StandardModel*>(&model)) {
    net = &sm->network();
    inputs = &sm->inputs();
  } else if (const auto* mk = dynamic_cast<const MarkovModel*>(&model)) {
    net = &mk->network();
    inputs = &mk->inputs();
    job.markov = mk;
    s.markov = true;
    s.sigma = mk->chain().options().sigma;
    s.noise_draws = mk->chain().options().noise_draws;
    s.noise_seed = mk->noise().seed;
    s.noise_given = mk->noise().given.defined();
  } else {
    throw UsageError("MPI ranks measure the standard or the Markov chain model only");
  }
  s.spec = net->spec();
  s.spec_summary = net->spec().describe();
  s.fisher = model.fisher();
  // Workers draw theta^(j) themselves when that reads no file (cheap, deterministic).
  const auto* drawn = dynamic_cast<const DrawnParameters*>(&thetas);
  s.draw_thetas = drawn && !drawn->space().reads_files();
  if (s.draw_thetas) {
    s.space = drawn->space().text();
    s.theta_seed = drawn->seed();
  }
  s.num_samples = thetas.count();
  s.num_params = thetas.num_params();
  s.input_shape = inputs->x.sizes().vec();
  s.inputs_description = inputs->description;
  job.x = &inputs->x;
  return job;
}

std::vector<char> encode_task(const Job& job, const ParameterSource& thetas, int64_t j) {
  const auto& s = job.setup;
  Writer w;
  w.put<int64_t>(j);
  if (!s.draw_thetas) {
    std::vector<double> theta(static_cast<size_t>(s.num_params));
    thetas.fill(j, theta.data());
    w.put_array(theta.data(), theta.size());
  }
  if (s.noise_given) {
    const auto slice = job.markov->noise().given[j].contiguous();
    w.put_array(slice.data_ptr<double>(), static_cast<size_t>(slice.numel()));
  }
  return std::move(w.bytes());
}

// What the last distributed measurement did (stats()).
struct Stats {
  int64_t samples = 0, by_rank0 = 0;
  double seconds_receive_commit = 0;  // rank 0's main thread: receiving, decoding, committing worker records
  double seconds_total = 0;
};
Stats g_stats;

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Rank 0's compute thread: takes indices from the shared queue until it is empty or stopped.
struct LocalWorker {
  std::mutex mu;
  std::deque<int64_t> queue;  // indices not yet handed out
  std::deque<SampleRecord> done;
  std::optional<Failure> failure;
  bool running = true;

  std::optional<int64_t> take() {
    std::lock_guard<std::mutex> lock(mu);
    if (queue.empty() || failure) return std::nullopt;
    const auto j = queue.front();
    queue.pop_front();
    return j;
  }
  void loop(const StatisticalModel& model, const ParameterSource& thetas) {
    auto theta = torch::empty({thetas.num_params()}, torch::kFloat64);
    while (const auto j = take()) {
      try {
        thetas.fill(*j, theta.data_ptr<double>());
        maybe_inject_failure();
        auto r = model.sample(*j, theta, {});
        std::lock_guard<std::mutex> lock(mu);
        done.push_back(std::move(r));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        failure = failure_of(std::current_exception());
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    running = false;
  }
};

class MpiExecutor : public SampleExecutor {
 public:
  void run(const StatisticalModel& model, const ParameterSource& thetas, const std::vector<int64_t>& schedule,
           const MeasureHooks& hooks, const ExecutionContext& ctx,
           const std::function<void(SampleRecord&&)>& done) const override;
};

// The scheduling loop of one measurement on rank 0 (MpiExecutor::run), kept in one place
// because its parts share the queue, the workers' tasks and the first failure.
class Distributor {
 public:
  Distributor(const Job& job, const ParameterSource& thetas, const std::function<void(SampleRecord&&)>& done)
      : job_(job), thetas_(thetas), done_(done), task_(static_cast<size_t>(g_world.size), -1) {}

  void run(const StatisticalModel& model, const std::vector<int64_t>& schedule) {
    local_.queue.assign(schedule.begin(), schedule.end());
    for (int w = 1; w < g_world.size; ++w) dispatch(w);
    std::thread compute([&] { local_.loop(model, thetas_); });
    loop();
    compute.join();
    if (failure_) rethrow(*failure_);
  }

 private:
  // Hands worker w the next index, if any is left and nothing failed.
  void dispatch(int w) {
    if (failure_) return;
    const auto j = local_.take();
    if (!j) return;
    try {
      send_bytes(encode_task(job_, thetas_, *j), w, kTask);
      task_[static_cast<size_t>(w)] = *j;
    } catch (...) {
      fail(failure_of(std::current_exception()));
    }
  }

  void accept(SampleRecord&& r, bool from_rank0) {
    if (failure_ && commit_failed_) return;
    try {
      done_(std::move(r));
      ++g_stats.samples;
      if (from_rank0) ++g_stats.by_rank0;
    } catch (...) {
      fail(failure_of(std::current_exception()));
      commit_failed_ = true;
    }
  }

  void fail(Failure f) {
    if (failure_) return;
    failure_ = std::move(f);
    drain_until_ = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                          std::chrono::duration<double>(kDrainSeconds));
    std::lock_guard<std::mutex> lock(local_.mu);
    local_.queue.clear();
  }

  // One message from a worker, if one is there. Returns whether there was one.
  bool poll_workers() {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
    if (!flag) return false;
    const auto t0 = std::chrono::steady_clock::now();
    const auto msg = recv_bytes(st);
    const int w = st.MPI_SOURCE;
    task_[static_cast<size_t>(w)] = -1;
    try {
      Reader in(msg.data(), msg.size(), fmt::format("message from rank {}", w));
      if (st.MPI_TAG == kError) {
        Failure f;
        f.kind = in.get<int32_t>();
        f.message = in.get_string();
        fail(std::move(f));
      } else {
        accept(decode_record(in), false);
        g_stats.seconds_receive_commit += since(t0);
      }
    } catch (...) {
      fail(failure_of(std::current_exception()));
    }
    dispatch(w);
    return true;
  }

  // Until every index is done (or, after a failure, every sample in flight is back).
  void loop() {
    for (;;) {
      std::deque<SampleRecord> local_done;
      std::optional<Failure> local_failure;
      bool busy = false;
      {
        // The thread pushes its last record before it clears `running`: both read together.
        std::lock_guard<std::mutex> lock(local_.mu);
        local_done.swap(local_.done);
        local_failure = local_.failure;
        busy = local_.running;
      }
      for (auto& r : local_done) accept(std::move(r), true);
      if (local_failure) fail(*local_failure);
      const bool got = poll_workers();
      for (int64_t t : task_) busy = busy || t >= 0;
      if (!busy && !got) return;
      if (failure_ && std::chrono::steady_clock::now() > drain_until_) abort_run();
      if (!got && local_done.empty()) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }

  // Samples are still out after an error: say why and end the job (committed samples stay).
  [[noreturn]] void abort_run() {
    std::fprintf(stderr, "twosed: error: %s\n", failure_->message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, failure_->kind);
    std::_Exit(failure_->kind);
  }

  const Job& job_;
  const ParameterSource& thetas_;
  const std::function<void(SampleRecord&&)>& done_;
  std::vector<int64_t> task_;  // worker w's index in flight, or -1
  LocalWorker local_;
  std::optional<Failure> failure_;
  bool commit_failed_ = false;
  std::chrono::steady_clock::time_point drain_until_{};
};

void MpiExecutor::run(const StatisticalModel& model, const ParameterSource& thetas,
                      const std::vector<int64_t>& schedule, const MeasureHooks& /*hooks*/,
                      const ExecutionContext& /*ctx*/, const std::function<void(SampleRecord&&)>& done) const {
  const auto t0 = std::chrono::steady_clock::now();
  g_stats = {};
  const Job job = describe(model, thetas);
  const auto setup = encode_setup(job.setup);
  for (int w = 1; w < g_world.size; ++w) send_bytes(setup, w, kSetup);
  bcast_doubles(const_cast<double*>(job.x->data_ptr<double>()), job.x->numel());
  Distributor d(job, thetas, done);
  try {
    d.run(model, schedule);
  } catch (...) {
    for (int w = 1; w < g_world.size; ++w) send_bytes({}, w, kEnd);
    throw;
  }
  for (int w = 1; w < g_world.size; ++w) send_bytes({}, w, kEnd);
  g_stats.seconds_total = since(t0);
}

const MpiExecutor g_executor;

}  // namespace

void init(int* argc, char*** argv) {
  g_world.host = local_host();
  if (!launched()) return;
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  g_world.active = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
  if (provided < MPI_THREAD_FUNNELED && g_world.rank == 0)
    std::fprintf(stderr, "twosed: warning: this MPI does not support MPI_THREAD_FUNNELED\n");
  // Rank 0 writes the output; a worker's would repeat it (--help, --version) or mix into it.
  if (g_world.rank > 0 && !std::freopen("/dev/null", "w", stdout)) std::fclose(stdout);
}

int rank() {
  return g_world.rank;
}
int size() {
  return g_world.size;
}
bool is_worker() {
  return g_world.rank > 0;
}
std::string host() {
  return g_world.host.empty() ? local_host() : g_world.host;
}

const SampleExecutor* executor() {
  return g_world.size > 1 && g_world.rank == 0 ? &g_executor : nullptr;
}

namespace {

int serve_loop(const ExecutionContext& ctx) {
  ScopedThreads threads(ctx);
  std::unique_ptr<WorkerJob> job;
  for (;;) {
    MPI_Status st;
    MPI_Probe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
    const auto msg = recv_bytes(st);
    if (st.MPI_TAG == kStop) return 0;
    if (st.MPI_TAG == kEnd) {
      job.reset();
    } else if (st.MPI_TAG == kSetup) {
      job = std::make_unique<WorkerJob>();
      job->setup = decode_setup(msg.data(), msg.size());
      int64_t n = 1;
      for (int64_t v : job->setup.input_shape) n *= v;
      auto x = torch::empty(job->setup.input_shape, torch::kFloat64);
      bcast_doubles(x.data_ptr<double>(), n);
      try {
        build_job(*job, std::move(x));
      } catch (...) {
        job->failure = failure_of(std::current_exception());
      }
    } else if (st.MPI_TAG == kTask) {
      try {
        if (!job) throw UsageError("a task without a measurement");
        send_bytes(run_task(*job, msg), 0, kResult);
      } catch (...) {
        send_bytes(encode_failure(failure_of(std::current_exception())), 0, kError);
      }
    }
  }
}

}  // namespace

int serve(const ExecutionContext& ctx) {
  // Errors of a measurement go to rank 0 with its task; one here (a message that does not
  // decode) leaves the worker unable to answer: end the job.
  try {
    return serve_loop(ctx);
  } catch (...) {
    std::fprintf(stderr, "twosed: error: %s\n", failure_of(std::current_exception()).message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    return 3;
  }
}

std::string stats() {
  if (g_stats.samples == 0) return "";
  const int64_t remote = g_stats.samples - g_stats.by_rank0;
  return fmt::format(
      "{} ranks computed {} samples in {:.2f} s (rank 0: {}); rank 0 spent {:.2f} ms per worker sample receiving and "
      "committing it",
      g_world.size, g_stats.samples, g_stats.seconds_total, g_stats.by_rank0,
      remote > 0 ? 1e3 * g_stats.seconds_receive_commit / static_cast<double>(remote) : 0.0);
}

int finish(int code) {
  if (!g_world.active) return code;
  if (g_world.rank == 0)
    for (int w = 1; w < g_world.size; ++w) send_bytes({}, w, kStop);
  MPI_Finalize();
  return code;
}

}  // namespace twosed::mpi
