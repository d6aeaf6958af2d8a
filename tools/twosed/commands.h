// Subcommands of the twosed CLI. Each registers its options on a CLI11 app and returns the
// function that runs it (after parsing); the function returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace twosed::cli {

using Runner = std::function<int()>;

/// `twosed measure`: the 2sED of a network on a data set.
Runner add_measure_command(CLI::App& app);

}  // namespace twosed::cli
