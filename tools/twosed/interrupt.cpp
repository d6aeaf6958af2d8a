// SIGINT during a recorded measurement. The handler only reads state prepared beforehand
// (strings) or atomics, formats with its own digits and calls write/_exit (async-signal-safe).
#include "interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

namespace twosed::cli {
namespace {

std::atomic<int64_t> g_run{0}, g_stored{0}, g_total{0};
std::string g_db, g_command;  // set before the handler is installed, not changed while it is
struct sigaction g_previous {};

// The command line as typed (from /proc/self/cmdline), without a --resume of its own, shell-quoted.
std::string resume_command() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t at = 0; at < all.size();) {
    const size_t end = all.find('\0', at);
    args.push_back(all.substr(at, end == std::string::npos ? std::string::npos : end - at));
    at = end == std::string::npos ? all.size() : end + 1;
  }
  std::string out = "twosed";
  for (size_t i = 1; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a.rfind("--resume=", 0) == 0) continue;
    if (a == "--resume") {
      if (i + 1 < args.size() && !args[i + 1].empty() &&
          args[i + 1].find_first_not_of("0123456789") == std::string::npos)
        ++i;
      continue;
    }
    const bool plain = !a.empty() && a.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_./:,=+-@%") == std::string::npos;
    if (plain) {
      out += " " + a;
    } else {
      out += " '";
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += "'";
    }
  }
  return out;
}

void append(char* buf, size_t& len, size_t cap, const char* s) {
  while (*s && len + 1 < cap) buf[len++] = *s++;
}

void append_number(char* buf, size_t& len, size_t cap, int64_t v) {
  char digits[24];
  int n = 0;
  uint64_t u = v < 0 ? 0 : static_cast<uint64_t>(v);
  do digits[n++] = static_cast<char>('0' + u % 10);
  while ((u /= 10) != 0 && n < 23);
  while (n > 0 && len + 1 < cap) buf[len++] = digits[--n];
}

void on_sigint(int) {
  const int64_t run = g_run.load();
  if (run == 0) {  // nothing recorded yet: the default action
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
    return;
  }
  static char buf[16384];
  size_t len = 0;
  const size_t cap = sizeof buf;
  append(buf, len, cap, "\ntwosed: stopped; ");
  append_number(buf, len, cap, g_stored.load());
  append(buf, len, cap, " of ");
  if (g_total.load() > 0)
    append_number(buf, len, cap, g_total.load());
  else
    append(buf, len, cap, "the");
  append(buf, len, cap, " samples are stored in run ");
  append_number(buf, len, cap, run);
  append(buf, len, cap, " of ");
  append(buf, len, cap, g_db.c_str());
  append(buf, len, cap, "; continue with: ");
  append(buf, len, cap, g_command.c_str());
  append(buf, len, cap, " --resume ");
  append_number(buf, len, cap, run);
  append(buf, len, cap, "\n");
  (void)!::write(2, buf, len);
  ::_exit(130);
}

}  // namespace

ResumeOnInterrupt::ResumeOnInterrupt(const std::string& db, int64_t total) {
  g_db = db;
  g_command = resume_command();
  g_run = 0, g_stored = 0, g_total = total;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, nullptr, &g_previous);
  // A SIGINT ignored by the parent (a background job of a script) stays ignored.
  if (g_previous.sa_handler != SIG_IGN) ::sigaction(SIGINT, &sa, nullptr);
}

ResumeOnInterrupt::~ResumeOnInterrupt() {
  ::sigaction(SIGINT, &g_previous, nullptr);
  g_run = 0;
}

void ResumeOnInterrupt::set_run(int64_t run, int64_t stored) {
  g_stored = stored;
  g_run = run;
}

void ResumeOnInterrupt::sample_stored() {
  ++g_stored;
}

void ResumeOnInterrupt::set_total(int64_t total) {
  g_total = total;
}

}  // namespace twosed::cli
