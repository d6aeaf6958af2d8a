// MPI for the CLI: `mpirun -np P twosed measure ...` spreads a measurement's parameter samples
// over P ranks (README "Many machines (MPI)"). Only the CLI links this (twosed_mpi): the library
// and a Python module do not depend on MPI. Built without MPI (TWOSED_WITH_MPI off), every
// function here describes a single process.
//
// Every rank parses the same command line. Rank 0 does everything a single process does (reads
// the data, writes the store and the output, draws progress) with executor() in its
// ExecutionContext: each measurement's model is described to the workers (the inputs broadcast,
// theta^(j) and noise drawn by the worker or sent with each task), sample indices are handed out
// as ranks become free, and records come back to be committed in index order. Workers run
// serve() instead of the command, and never read or write a file.
//
//   main:     mpi::init(&argc, &argv)  ...  return mpi::finish(code);
//   command:  if (mpi::is_worker()) return mpi::serve(ctx);
//             ctx.executor = mpi::executor();   // null unless P > 1
//
// Test hook: TWOSED_TEST_FAIL_RANK=r makes rank r throw a DataError at its first sample.
#pragma once

#include <string>

#include "twosed/execution.h"

namespace twosed::mpi {

/// Whether a launcher (mpirun, srun) started this process: Open MPI's OMPI_COMM_WORLD_SIZE,
/// PMIx's PMIX_RANK or PMI's PMI_RANK/PMI_SIZE is set.
bool launched();

/// Initialises MPI (MPI_THREAD_FUNNELED) when launched() and this build has MPI; else nothing.
/// Workers' stdout goes to /dev/null (rank 0 writes the output). Call once, first in main.
void init(int* argc, char*** argv);

int rank();  ///< 0 without MPI
int size();  ///< 1 without MPI
bool is_worker();
std::string host();  ///< this rank's host name

/// Threads a rank uses when --threads is not given: the smaller of the cores the launcher
/// bound it to (sched_getaffinity) and its share of this machine's cores
/// (OMPI_COMM_WORLD_LOCAL_SIZE ranks here); hardware_threads() for a single process.
int default_threads();
/// How default_threads() was found, for the run's context ("single process", "bound to 2 cores", ...).
std::string threads_reason();

/// Rank 0 of P > 1 ranks: the executor that spreads samples over all ranks (rank 0 computes
/// too, on a thread of its own); null otherwise.
const SampleExecutor* executor();

/// What the last distributed measurement did (ranks, samples, rank 0's share, rank 0's cost
/// per worker sample to receive and commit it); "" when there was none.
std::string stats();

/// Workers: builds and measures what rank 0 describes until it says stop, with `ctx`'s
/// threads. Returns the exit code (0).
int serve(const ExecutionContext& ctx);

/// Ends MPI and returns `code`. Rank 0: workers waiting for work are told to stop; if some are
/// still busy (an error stopped the run mid-sample), MPI_Abort ends the job with `code`.
int finish(int code);

}  // namespace twosed::mpi
