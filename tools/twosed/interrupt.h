// Ctrl-C during a recorded measurement: say what is stored and how to continue.
#pragma once

#include <cstdint>
#include <string>

namespace twosed::cli {

/// While it lives, SIGINT prints "twosed: stopped; N of M samples are stored in run R of DB;
/// continue with: twosed measure ... --resume R" on stderr and exits with 130 (before the run
/// exists, SIGINT keeps its default action). The committed samples are safe: every sample is
/// its own transaction. One at a time.
class ResumeOnInterrupt {
 public:
  /// `total`: M as far as known (0: not known yet).
  ResumeOnInterrupt(const std::string& db, int64_t total);
  ~ResumeOnInterrupt();
  ResumeOnInterrupt(const ResumeOnInterrupt&) = delete;
  ResumeOnInterrupt& operator=(const ResumeOnInterrupt&) = delete;

  /// The run is known (created or claimed) with `stored` samples already in it.
  void set_run(int64_t run, int64_t stored);
  /// One more sample committed.
  void sample_stored();
  void set_total(int64_t total);
};

}  // namespace twosed::cli
