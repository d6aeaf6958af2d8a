// Launch detection and the threads of a rank: the same with and without MPI.
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "mpi/ranks.h"

namespace twosed::mpi {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// Cores this process may run on, or 0 if unknown.
int affinity_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

// Ranks on this machine, as the launcher says (1 if it does not).
int local_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
    if (const char* v = env(name)) return std::max(1, std::atoi(v));
  return 1;
}

}  // namespace

// SLURM_PROCID alone is not enough: Slurm also sets it for a batch script's own (non-srun)
// step, where MPI_Init would start a singleton. srun sets PMIX_RANK (--mpi=pmix) or PMI_RANK.
bool launched() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || (env("PMI_RANK") && env("PMI_SIZE"));
}

// The smaller of the cores a rank is bound to and its share of the machine: a launcher that
// binds to a socket (Open MPI's default for P > 2) gives each rank of a socket every core of it.
int default_threads() {
  const int hw = hardware_threads();
  if (!launched()) return hw;
  const int bound = affinity_cores();
  const int share = std::max(1, hw / local_ranks());
  return bound > 0 ? std::min(bound, share) : share;
}

std::string threads_reason() {
  if (!launched()) return "single process: every core";
  const int bound = affinity_cores(), share = std::max(1, hardware_threads() / local_ranks());
  if (bound > 0 && bound < share) return fmt::format("bound by the launcher to {} cores", bound);
  return fmt::format("{} cores shared by {} ranks on this machine", hardware_threads(), local_ranks());
}

}  // namespace twosed::mpi
