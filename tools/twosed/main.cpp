// twosed: command-line front end. Parses options, calls the library, formats output.
// Exit codes: 0 success, 1 data error (files, contents), 2 usage error (options, specs).
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "commands.h"
#include "twosed/error.h"

int main(int argc, char** argv) {
  CLI::App app{"twosed: the two-scale effective dimension (2sED) of neural networks"};
  app.set_version_flag("--version", std::string("twosed ") + TWOSED_VERSION);
  app.footer(
      "Run 'twosed measure --help' for the measurement options.\n"
      "With no subcommand, twosed runs 'twosed measure' on its embedded default\n"
      "(a small MLP on Fashion-MNIST, or on synthetic data if that is not installed).");
  auto measure = twosed::cli::add_measure_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 2;
  }
  try {
    return measure();  // the only subcommand so far, and the default
  } catch (const twosed::UsageError& e) {
    std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 2;
  } catch (const twosed::DataError& e) {
    std::fprintf(stderr, "twosed: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // LibTorch reports multi-line errors; keep the first line.
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    std::fprintf(stderr, "twosed: internal error: %s\n", msg.c_str());
    return 3;
  }
}
