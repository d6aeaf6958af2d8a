#include "twosed/data/write_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "twosed/error.h"

namespace twosed {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what, const std::string& reason) {
  throw DataError(fmt::format("{}: cannot write {}: {}", path, what, reason));
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Writes all of text to fd and closes it; returns 0 or the errno of the first failure. fsync
// because some file systems (NFS, quotas) report a full disk only when the data is flushed;
// devices and pipes cannot be synced (EINVAL, EROFS), which is no error.
int write_and_close(int fd, const std::string& text) {
  int err = 0;
  for (size_t done = 0; done < text.size() && err == 0;) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n >= 0)
      done += static_cast<size_t>(n);
    else if (errno != EINTR)
      err = errno;
  }
  if (err == 0 && ::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) err = errno;
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  return err;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& text, const std::string& what) {
  if (path.empty()) throw UsageError(fmt::format("cannot write {}: the file name is empty", what));
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) fail(path, what, "is a directory");
  if (exists && !S_ISREG(st.st_mode)) {
    // A device or FIFO: renaming over it would replace it, so it is written in place.
    const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) fail(path, what, std::strerror(errno));
    if (const int err = write_and_close(fd, text)) fail(path, what, std::strerror(err));
    return;
  }
  // A hidden, unique name next to the target, so that rename() is atomic.
  static std::atomic<unsigned> counter{0};
  const std::string dir = directory_of(path);
  const std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  const std::string tmp =
      fmt::format("{}/.{}.{}-{}.tmp", dir, base, static_cast<long>(::getpid()), counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) fail(path, what, std::strerror(errno));
  if (exists) (void)::fchmod(fd, st.st_mode & 07777);  // keep a replaced file's permissions
  int err = write_and_close(fd, text);
  if (err == 0 && std::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    std::remove(tmp.c_str());
    fail(path, what, std::strerror(err));
  }
}

void check_writable(const std::string& path, const std::string& what) {
  if (path.empty()) throw UsageError(fmt::format("cannot write {}: the file name is empty", what));
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail(path, what, "is a directory");
    if (::access(path.c_str(), W_OK) != 0) fail(path, what, std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return;                // a device or FIFO is written in place
  } else if (errno != ENOENT && errno != ENOTDIR) {  // ENOTDIR: reported below
    fail(path, what, std::strerror(errno));
  }
  const std::string dir = directory_of(path);
  if (::stat(dir.c_str(), &st) != 0) fail(path, what, fmt::format("directory '{}': {}", dir, std::strerror(errno)));
  if (!S_ISDIR(st.st_mode)) fail(path, what, fmt::format("'{}' is not a directory", dir));
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    fail(path, what, fmt::format("directory '{}' is not writable: {}", dir, std::strerror(errno)));
}

}  // namespace twosed
