// Figures through gnuplot: the script (text only, testable without gnuplot) and running gnuplot
// on it without a shell.
#include "twosed/report/plot.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <string>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (in format.h before fmt 11)

#include "twosed/error.h"

extern char** environ;

namespace twosed {
namespace {

enum class Format { Png, Svg };

// One colour per series (stack) index, so that "series 2" looks the same in every panel.
constexpr const char* kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                    "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
const char* colour(size_t i) {
  return kColours[i % std::size(kColours)];
}

// Past the palette's length, series repeat colours with another dash pattern (lines) or point
// shape (scatter), so that a dozen models stay distinguishable.
std::string line_style(size_t i, bool points) {
  constexpr int kPointTypes[] = {7, 5, 9, 11, 13};
  const size_t cycle = i / std::size(kColours);
  if (points) return fmt::format("points pt {} ps 1.0", kPointTypes[cycle % std::size(kPointTypes)]);
  return cycle == 0 ? "lines lw 2" : fmt::format("lines lw 2 dt {}", 1 + cycle % 4);
}

// gnuplot reads '' inside single quotes as one quote, but its scanner fails on two such pairs
// in a row ('q''''2' is an error), so text with a quote goes in double quotes instead, where
// only backslash escapes apply (\\ and \" here). Text without one keeps the plain single
// quotes. A newline would end the command, so it is dropped.
std::string quote(const std::string& s) {
  const bool double_quoted = s.find('\'') != std::string::npos;
  std::string out = double_quoted ? "\"" : "'";
  for (char c : s) {
    if (c == '\n' || c == '\r') continue;
    if (double_quoted && (c == '"' || c == '\\')) out += '\\';
    out += c;
  }
  return out + (double_quoted ? "\"" : "'");
}

// Text is literal: "d_0.5" must not become a subscript in the enhanced-text terminals.
std::string text(const std::string& s) {
  return quote(s) + " noenhanced";
}

std::string num(double v) {
  return fmt::format("{:.17g}", v);
}

Format format_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  const size_t dot = path.rfind('.');
  std::string ext;
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "png") return Format::Png;
  if (ext == "svg") return Format::Svg;
  throw UsageError(fmt::format("figure file '{}': expected a .png or .svg file name", path));
}

void validate(const Figure& fig) {
  if (fig.panels.empty() || fig.panels.size() > 4)
    throw UsageError(fmt::format("a figure has 1 to 4 panels, got {}", fig.panels.size()));
  if (fig.panel_width <= 0 || fig.height <= 0 || fig.panel_width > 10000 || fig.height > 10000)
    throw UsageError(
        fmt::format("figure panel size must be in 1..10000 pixels, got {}x{}", fig.panel_width, fig.height));
  for (const auto& panel : fig.panels) {
    if (const auto* lp = std::get_if<LinePanel>(&panel)) {
      for (const PlotSeries& s : lp->series)
        if (s.y.size() != s.x.size() || (!s.y_err.empty() && s.y_err.size() != s.x.size()))
          throw UsageError(fmt::format(
              "figure series '{}' has {} x, {} y and {} y_err values; expected equal lengths (y_err may be empty)",
              s.label, s.x.size(), s.y.size(), s.y_err.size()));
    } else {
      const auto& bp = std::get<StackedBarPanel>(panel);
      for (const BarStack& s : bp.stacks)
        if (s.values.size() != bp.categories.size())
          throw UsageError(fmt::format("figure bar stack '{}' has {} values for {} categories", s.label,
                                       s.values.size(), bp.categories.size()));
    }
  }
}

// The datablocks ($D0, $D1, ...) of a script, all defined before the plots that use them.
class Blocks {
 public:
  // Adds a block of rows (skipped rows are empty strings, which become one blank line: a gap in
  // gnuplot's lines and filled curves). Returns its name, or "" when it has no row to plot.
  std::string add(const std::vector<std::string>& rows) {
    std::string body;
    bool any = false, gap = false;
    for (const std::string& r : rows) {
      if (r.empty()) {
        if (any && !gap) body += '\n';
        gap = true;
      } else {
        body += r + '\n';
        any = true;
        gap = false;
      }
    }
    if (!any) return "";
    std::string name = fmt::format("$D{}", count_++);
    text_ += name + " << EOD\n" + body + "EOD\n";
    return name;
  }
  const std::string& text() const { return text_; }

 private:
  int count_ = 0;
  std::string text_;
};

// Axis titles and the panel title, shared by both kinds of panel.
std::string labels(const std::string& title, const std::string& x_label, const std::string& y_label) {
  std::string out;
  if (!title.empty()) out += "set title " + text(title) + "\n";
  if (!x_label.empty()) out += "set xlabel " + text(x_label) + "\n";
  if (!y_label.empty()) out += "set ylabel " + text(y_label) + "\n";
  return out;
}

// gnuplot fails on a plot with no valid point at all; an empty frame says so instead.
const char* kEmptyPlot = "unset logscale\nset label 'no data' at graph 0.5,0.5 center\nplot [0:1] [0:1] 1/0 notitle\n";

std::string line_panel(const LinePanel& p, Blocks& blocks) {
  std::string out = labels(p.title, p.x_label, p.y_label) + "set grid\n";
  // '%g': the default log-axis tic format prints 1e-6 as "0.0000010".
  if (p.log_x) out += "set logscale x\nset format x '%g'\n";
  if (p.log_y) out += "set logscale y\nset format y '%g'\n";
  auto ok_x = [&](double x) { return std::isfinite(x) && (!p.log_x || x > 0); };
  auto ok_y = [&](double y) { return std::isfinite(y) && (!p.log_y || y > 0); };
  std::vector<std::string> plots;
  for (size_t i = 0; i < p.series.size(); ++i) {
    const PlotSeries& s = p.series[i];
    std::vector<std::string> line, band;
    for (size_t k = 0; k < s.x.size(); ++k) {
      line.push_back(ok_x(s.x[k]) && ok_y(s.y[k]) ? num(s.x[k]) + " " + num(s.y[k]) : "");
      if (s.y_err.empty()) continue;
      const double e = std::fabs(s.y_err[k]), lo = s.y[k] - e, hi = s.y[k] + e;
      band.push_back(ok_x(s.x[k]) && ok_y(lo) && ok_y(hi) ? num(s.x[k]) + " " + num(lo) + " " + num(hi) : "");
    }
    // The band first, so that the line is drawn on top of it.
    const std::string b = blocks.add(band), l = blocks.add(line);
    if (!b.empty())
      plots.push_back(fmt::format(
          "{} using 1:2:3 with filledcurves lc rgb '{}' fs transparent solid 0.25 noborder notitle", b, colour(i)));
    if (!l.empty())
      plots.push_back(fmt::format("{} using 1:2 with {} lc rgb '{}' {}", l, line_style(i, p.points), colour(i),
                                  s.label.empty() ? "notitle" : "title " + text(s.label)));
  }
  if (plots.empty()) return out + kEmptyPlot;
  return out + "plot " + fmt::format("{}", fmt::join(plots, ", \\\n     ")) + "\n";
}

std::string bar_panel(const StackedBarPanel& p, Blocks& blocks) {
  std::string out = labels(p.title, p.x_label, p.y_label);
  if (p.categories.empty() || p.stacks.empty()) return out + kEmptyPlot;
  out +=
      "set style data histograms\nset style histogram rowstacked\nset style fill solid border -1\n"
      "set boxwidth 0.75\nset grid ytics\nset key outside right top\n";
  // Categories as explicit tics at the rows' x positions 0, 1, ..., so that the data hold numbers only.
  std::vector<std::string> tics, rows;
  for (size_t c = 0; c < p.categories.size(); ++c) {
    tics.push_back(fmt::format("{} {}", quote(p.categories[c]), c));
    std::string row;
    // A non-finite value adds nothing to its bar (a missing row would shift the categories).
    for (const BarStack& s : p.stacks)
      row += (row.empty() ? "" : " ") + num(std::isfinite(s.values[c]) ? s.values[c] : 0.0);
    rows.push_back(row);
  }
  out += fmt::format("set xtics ({}) noenhanced\n", fmt::join(tics, ", "));
  const std::string d = blocks.add(rows);
  std::vector<std::string> plots;
  for (size_t s = 0; s < p.stacks.size(); ++s)
    plots.push_back(fmt::format("{} using {} lc rgb '{}' {}", d, s + 1, colour(s),
                                p.stacks[s].label.empty() ? "notitle" : "title " + text(p.stacks[s].label)));
  return out + "plot " + fmt::format("{}", fmt::join(plots, ", \\\n     ")) + "\n";
}

std::string script_for(const Figure& fig, Format format, const std::string& out_path) {
  validate(fig);
  if (out_path.find_first_of("\r\n") != std::string::npos)
    throw UsageError("figure file name must not contain a line break");
  const size_t n = fig.panels.size();
  Blocks blocks;
  std::string body =
      fmt::format("set multiplot layout 1,{}{}\n", n, fig.title.empty() ? "" : " title " + text(fig.title));
  for (const auto& panel : fig.panels) {
    // reset: each panel starts from gnuplot's defaults (log scales, tics and styles do not leak).
    body += "reset\n";
    if (const auto* lp = std::get_if<LinePanel>(&panel))
      body += line_panel(*lp, blocks);
    else
      body += bar_panel(std::get<StackedBarPanel>(panel), blocks);
  }
  body += "unset multiplot\nunset output\n";  // unset output closes (flushes) the file
  const int w = fig.panel_width * static_cast<int>(n), h = fig.height;
  const std::string term =
      format == Format::Png
          ? fmt::format("set terminal pngcairo size {},{} enhanced font 'Sans,10'\n", w, h)
          : fmt::format("set terminal svg size {},{} dynamic enhanced font 'Sans,10' background rgb 'white'\n", w, h);
  return "# twosed figure\n" + term + "set output " + quote(out_path) + "\n" + blocks.text() + body;
}

// The line of gnuplot's stderr that states the error ("line 3: undefined variable: x"); gnuplot
// often precedes it with the offending command and a caret.
std::string first_message(const std::string& err) {
  std::string first;
  size_t pos = 0;
  while (pos < err.size()) {
    size_t end = err.find('\n', pos);
    if (end == std::string::npos) end = err.size();
    std::string line = err.substr(pos, end - pos);
    pos = end + 1;
    const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos) continue;
    std::string trimmed;  // gnuplot pads its messages with runs of spaces
    for (size_t i = b; i <= e; ++i)
      if (line[i] != ' ' || trimmed.back() != ' ') trimmed += line[i];
    line = trimmed;
    if (line.rfind("line ", 0) == 0) return line;
    if (first.empty()) first = line;
  }
  return first.empty() ? "no message on stderr" : first;
}

// Runs `program -d` (-d: no ~/.gnuplot) with `script` on stdin and stdout to /dev/null; returns
// its wait status and fills `err` with its stderr. Throws DataError only when it cannot start.
int run(const std::string& program, const std::string& script, std::string& err) {
  int in[2], er[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw DataError(fmt::format("cannot draw a figure: pipe: {}", std::strerror(errno)));
  if (pipe2(er, O_CLOEXEC) != 0) {
    const int e = errno;
    close(in[0]), close(in[1]);
    throw DataError(fmt::format("cannot draw a figure: pipe: {}", std::strerror(e)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);  // dup2 clears O_CLOEXEC on the child's copy
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, er[1], 2);
  // The child starts with no blocked signals and default SIGPIPE, whatever this thread does.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, pipe_set;
  sigemptyset(&none);
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &pipe_set);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string arg0 = program, arg1 = "-d";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  // glibc reports a failed exec here (and reaps that child itself).
  const int rc = posix_spawnp(&pid, program.c_str(), &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in[0]), close(er[1]);
  if (rc != 0) {
    close(in[1]), close(er[0]);
    throw DataError(fmt::format("cannot run '{}' to draw a figure: {} (install gnuplot-nox; scripts/setup.sh does)",
                                program, std::strerror(rc)));
  }

  // Block SIGPIPE while writing: a gnuplot that quits early gives EPIPE instead of killing us;
  // a SIGPIPE raised here is consumed below. poll() on both pipes: gnuplot may fill stderr
  // before it has read the whole script.
  sigset_t old_mask, pending;
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  sigpending(&pending);
  const bool pipe_was_pending = sigismember(&pending, SIGPIPE);
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  int wfd = in[1], rfd = er[0];
  size_t off = 0;
  while (wfd >= 0 || rfd >= 0) {
    pollfd fds[2];
    int n = 0, wi = -1, ri = -1;
    if (wfd >= 0) wi = n, fds[n++] = {wfd, POLLOUT, 0};
    if (rfd >= 0) ri = n, fds[n++] = {rfd, POLLIN, 0};
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (wi >= 0 && fds[wi].revents != 0) {
      const ssize_t k = write(wfd, script.data() + off, script.size() - off);
      if (k > 0) off += static_cast<size_t>(k);
      if (off == script.size() || (k < 0 && errno != EINTR && errno != EAGAIN)) close(wfd), wfd = -1;
    }
    if (ri >= 0 && fds[ri].revents != 0) {
      char buf[4096];
      const ssize_t k = read(rfd, buf, sizeof buf);
      if (k > 0 && err.size() < (1 << 16)) err.append(buf, static_cast<size_t>(k));
      if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) close(rfd), rfd = -1;
    }
  }
  if (wfd >= 0) close(wfd);
  if (rfd >= 0) close(rfd);
  if (!pipe_was_pending) {
    sigpending(&pending);
    const timespec zero{0, 0};
    if (sigismember(&pending, SIGPIPE))
      while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
      }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

std::string gnuplot_script(const Figure& fig, const std::string& path) {
  return script_for(fig, format_of(path), path);
}

void write_figure(const Figure& fig, const std::string& path) {
  const Format format = format_of(path);
  // A hidden, unique name in the target's directory: rename() is then atomic and a failed run
  // never leaves a half-written figure under the final name.
  static std::atomic<unsigned> counter{0};
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string tmp =
      fmt::format("{}.{}.{}-{}.tmp", dir, path.substr(dir.size()), static_cast<long>(getpid()), counter++);
  const std::string script = script_for(fig, format, tmp);
  std::string err;
  int status = 0;
  try {
    status = run(fig.gnuplot, script, err);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::remove(tmp.c_str());
    const std::string how = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                              : fmt::format("signal {}", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    throw DataError(fmt::format("'{}' failed writing '{}' ({}): {}", fig.gnuplot, path, how, first_message(err)));
  }
  struct stat st;
  if (stat(tmp.c_str(), &st) != 0 || st.st_size == 0) {
    std::remove(tmp.c_str());
    throw DataError(fmt::format("'{}' produced no figure for '{}'", fig.gnuplot, path));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    throw DataError(fmt::format("cannot write figure '{}': {}", path, std::strerror(e)));
  }
}

}  // namespace twosed
