// What both twosed executables share: the top-level app, the torch-free commands, parsing and
// the mapping of errors to exit codes. `twosed` (main.cpp, no LibTorch) runs the store
// commands itself and hands every other command line to `twosed-torch` (torch_main.cpp), which
// has every command; docs/design.md, "Two executables".
// Exit codes: 0 success, 1 data error (files, contents, out of memory), 2 usage error (options,
// specs), 3 an internal error: a bug in twosed.
#pragma once

#include <CLI/CLI.hpp>

#include <utility>
#include <vector>

#include "commands.h"

namespace twosed::cli {

using Commands = std::vector<std::pair<CLI::App*, Runner>>;

/// The top-level app's description, --version and footer.
void describe_app(CLI::App& app);

/// Adds the commands that need no LibTorch (bound, runs, show, export, compare), in the order
/// of the help listing, and returns them with their runners.
Commands add_store_commands(CLI::App& app);

/// Parses the command line: -1 when a command is to run, else the exit code (0 after --help or
/// --version, 2 after an error, which is printed unless `quiet`).
int parse_command_line(CLI::App& app, int argc, char** argv, bool quiet = false);

/// The parsed command of `commands`, or `fallback` when none was given.
Runner parsed_command(const Commands& commands, Runner fallback);

/// Runs `run` and returns its exit code; an error becomes its one-line message on stderr and
/// the exit code of its kind.
int run_reporting_errors(const Runner& run);

}  // namespace twosed::cli
