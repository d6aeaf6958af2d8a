// The top-level app, parsing and error reporting of both twosed executables (cli_run.h).
#include "cli_run.h"

#include <cstdio>
#include <exception>
#include <string>

#include "option_names.h"
#include "reports.h"
#include "twosed/error.h"

namespace twosed::cli {

void describe_app(CLI::App& app) {
  app.description("twosed: the two-scale effective dimension (2sED) of neural networks");
  app.set_version_flag("--version", std::string("twosed ") + TWOSED_VERSION);
  app.footer(
      "Commands: measure, train, study, bound, runs, show, export, compare ('twosed COMMAND --help').\n"
      "With no subcommand, twosed runs 'twosed measure' on its embedded default\n"
      "(a small MLP on Fashion-MNIST, or on synthetic data if that is not installed).");
}

Commands add_store_commands(CLI::App& app) {
  Commands commands;
  for (auto add : {add_bound_command, add_runs_command, add_show_command, add_export_command, add_compare_command}) {
    auto run = add(app);
    commands.emplace_back(app.get_subcommands({}).back(), run);
  }
  return commands;
}

int parse_command_line(CLI::App& app, int argc, char** argv, bool quiet) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    if (!quiet) std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 2;
  }
  return -1;
}

Runner parsed_command(const Commands& commands, Runner fallback) {
  for (const auto& [sub, run] : commands)
    if (sub->parsed()) return run;
  return fallback;
}

int run_reporting_errors(const Runner& run) {
  try {
    return run();
  } catch (const OptionError& e) {
    // The library names the options-struct field; say the flag instead.
    std::fprintf(stderr, "twosed: error: %s\n", cli_message(e).c_str());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 2;
  } catch (const DataError& e) {
    std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // An allocation failure that no stage named is still the machine's limit, not a bug.
    try {
      rethrow_if_out_of_memory(e, "running twosed");
    } catch (const DataError& oom) {
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

}  // namespace twosed::cli
