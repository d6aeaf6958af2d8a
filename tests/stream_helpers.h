// Test helpers for the readers of streams: a named pipe fed from a thread, and peak memory.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

namespace twosed::testing {

// Serves `bytes` to one reader through a named pipe: a stream whose size the reader cannot
// know in advance (as a pipe or a device on the command line). A reader that stops early
// makes the writes fail with EPIPE (SIGPIPE is ignored), which ends the writer.
class FifoFeed {
 public:
  FifoFeed(const std::string& path, std::string bytes) {
    std::signal(SIGPIPE, SIG_IGN);
    ::unlink(path.c_str());
    if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path);
    writer_ = std::thread([path, bytes = std::move(bytes)] {
      const int fd = ::open(path.c_str(), O_WRONLY);  // blocks until the reader opens it
      if (fd < 0) return;
      for (size_t off = 0; off < bytes.size();) {
        const ssize_t w = ::write(fd, bytes.data() + off, bytes.size() - off);
        if (w <= 0) break;
        off += static_cast<size_t>(w);
      }
      ::close(fd);
    });
  }
  FifoFeed(const FifoFeed&) = delete;
  FifoFeed& operator=(const FifoFeed&) = delete;
  ~FifoFeed() { writer_.join(); }

 private:
  std::thread writer_;
};

// The peak resident set size of this process so far, in bytes.
int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace twosed::testing
