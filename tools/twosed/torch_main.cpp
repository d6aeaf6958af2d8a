// twosed-torch: the whole command-line front end, LibTorch included. Users run `twosed`
// (main.cpp), which runs the store commands itself and executes this program, with the same
// arguments, for measure, train, study, the default measurement and the top-level help; this
// program also runs every rank of `mpirun -np P twosed ...`. Exit codes: cli_run.h.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "cli_run.h"
#include "commands.h"
#include "mpi/ranks.h"
#include "twosed/execution.h"

namespace {

// An MPI worker's threads: the command's --threads if given, else the cores it was given.
int worker_threads(const CLI::App& app) {
  for (const auto* sub : app.get_subcommands())
    if (const auto* opt = sub->get_option_no_throw("--threads"); opt && opt->count() > 0 && opt->as<int>() > 0)
      return opt->as<int>();
  return twosed::mpi::default_threads();
}

int run(int argc, char** argv) {
  using namespace twosed::cli;
  CLI::App app;
  describe_app(app);
  const Runner measure = add_measure_command(app);
  Commands commands;
  for (auto add : {add_train_command, add_study_command}) {
    auto run = add(app);
    commands.emplace_back(app.get_subcommands({}).back(), run);
  }
  for (auto& c : add_store_commands(app)) commands.push_back(std::move(c));
  if (const int code = parse_command_line(app, argc, argv, twosed::mpi::is_worker()); code >= 0) return code;
  // Under mpirun every rank parses the same command line; workers then compute what rank 0
  // hands them (any command: rank 0 alone trains, reports, reads and writes files).
  if (twosed::mpi::is_worker()) {
    twosed::ExecutionContext ctx;
    ctx.threads = worker_threads(app);
    return twosed::mpi::serve(ctx);
  }
  // `twosed measure`, and the default with no subcommand.
  return run_reporting_errors(parsed_command(commands, measure));
}

}  // namespace

int main(int argc, char** argv) {
  twosed::mpi::init(&argc, &argv);
  const int code = twosed::mpi::finish(run(argc, argv));
  // Leave without static destructors: LibTorch's deregister every operator, 40-90 ms at exit,
  // a tenth of a small measurement's whole process. Everything else is closed by now (the store
  // when its command returned); only stdio is left, flushed here. A failed flush is a data error.
  const bool flushed = std::fflush(stdout) == 0 && std::fflush(stderr) == 0;
  std::_Exit(flushed || code != 0 ? code : 1);
}
