// twosed: command-line front end. Parses options, calls the library, formats output.
// Exit codes: 0 success, 1 data error (files, contents, out of memory), 2 usage error (options,
// specs), 3 an internal error: a bug in twosed.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "commands.h"
#include "mpi/ranks.h"
#include "option_names.h"
#include "reports.h"
#include "twosed/error.h"
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
  CLI::App app{"twosed: the two-scale effective dimension (2sED) of neural networks"};
  app.set_version_flag("--version", std::string("twosed ") + TWOSED_VERSION);
  app.footer(
      "Commands: measure, train, study, bound, runs, show, export, compare ('twosed COMMAND --help').\n"
      "With no subcommand, twosed runs 'twosed measure' on its embedded default\n"
      "(a small MLP on Fashion-MNIST, or on synthetic data if that is not installed).");
  std::vector<std::pair<CLI::App*, twosed::cli::Runner>> commands;
  auto measure = twosed::cli::add_measure_command(app);
  for (auto add : {twosed::cli::add_train_command, twosed::cli::add_study_command, twosed::cli::add_bound_command,
                   twosed::cli::add_runs_command, twosed::cli::add_show_command, twosed::cli::add_export_command,
                   twosed::cli::add_compare_command}) {
    auto run = add(app);
    commands.emplace_back(app.get_subcommands({}).back(), run);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    if (!twosed::mpi::is_worker()) std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 2;
  }
  // Under mpirun every rank parses the same command line; workers then compute what rank 0
  // hands them (any command: rank 0 alone trains, reports, reads and writes files).
  if (twosed::mpi::is_worker()) {
    twosed::ExecutionContext ctx;
    ctx.threads = worker_threads(app);
    return twosed::mpi::serve(ctx);
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
    return measure();  // `twosed measure`, and the default with no subcommand
  } catch (const twosed::OptionError& e) {
    // The library names the options-struct field; say the flag instead.
    std::fprintf(stderr, "twosed: error: %s\n", twosed::cli::cli_message(e).c_str());
    return 2;
  } catch (const twosed::UsageError& e) {
    std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 2;
  } catch (const twosed::DataError& e) {
    std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // An allocation failure that no stage named is still the machine's limit, not a bug.
    try {
      twosed::cli::rethrow_if_out_of_memory(e, "running twosed");
    } catch (const twosed::DataError& oom) {
      std::fprintf(stderr, "twosed: error: %s\n", oom.what());
      return 1;
    }
    // LibTorch reports multi-line errors; keep the first line.
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    std::fprintf(stderr, "twosed: internal error: %s\n", msg.c_str());
    return 3;
  }
}

}  // namespace

int main(int argc, char** argv) {
  twosed::mpi::init(&argc, &argv);
  return twosed::mpi::finish(run(argc, argv));
}
