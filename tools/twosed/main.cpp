// twosed: the command-line front end users run. It links no LibTorch, whose loading and
// registration alone take about half a second: the store commands (bound, runs, show, export,
// compare) and --version run here; every other command line (measure, train, study, the
// default measurement, the top-level help) and every run under an MPI launcher is handed to
// the sibling executable twosed-torch with the same arguments, by exec(): the same process,
// so its exit code, signals and MPI rank stay the caller's. Exit codes: cli_run.h.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli_run.h"
#include "mpi/ranks.h"

namespace {

// twosed-torch next to this executable (the build tree and the installed bin/ alike).
std::string torch_executable() {
  char self[PATH_MAX + 1] = {};
  const ssize_t n = ::readlink("/proc/self/exe", self, PATH_MAX);
  std::string dir = n > 0 ? std::string(self, static_cast<size_t>(n)) : std::string();
  dir = dir.substr(0, dir.rfind('/') + 1);
  return dir + "twosed-torch";
}

// Replaces this process by twosed-torch; returns only if that fails.
int run_torch_executable(char** argv) {
  const std::string path = torch_executable();
  ::execv(path.c_str(), argv);
  std::fprintf(stderr,
               "twosed: internal error: cannot run %s (measure, train and study need it; is the installation "
               "complete?): %s\n",
               path.c_str(), std::strerror(errno));
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace twosed::cli;
  CLI::App app;
  describe_app(app);
  const Commands commands = add_store_commands(app);
  // The first argument decides: one of this program's commands, or --version alone. Under a
  // launcher every rank goes to twosed-torch, which initialises MPI (rank 0 alone reports).
  const std::string first = argc > 1 ? argv[1] : "";
  bool here = first == "--version" && argc == 2;
  for (const auto& [sub, run] : commands) here = here || first == sub->get_name();
  if (!here || twosed::mpi::launched()) return run_torch_executable(argv);
  if (const int code = parse_command_line(app, argc, argv); code >= 0) return code;
  return run_reporting_errors(parsed_command(commands, nullptr));
}
