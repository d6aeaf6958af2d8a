// Writing output files so that a failure is never silent and a reader never sees half a file.
//
// Every result, export, training curve, checkpoint and .npy array goes through
// write_file_atomically: a regular (or new) file is written to a temporary file in the same
// directory, flushed, synced, closed and renamed over the target; a special file (/dev/full,
// /dev/stdout, a FIFO) is written directly. Every write, flush and close is checked.
#pragma once

#include <string>

namespace twosed {

/// Writes `text` to `path` (see above). Throws DataError "PATH: cannot write WHAT: REASON"
/// (e.g. "No space left on device"); on failure the temporary file is removed and an existing
/// file at `path` is left as it was.
void write_file_atomically(const std::string& path, const std::string& text, const std::string& what = "file");

/// Checks, before a long computation, that `path` can be written later: it is not a directory,
/// an existing file is writable, and its directory exists and is writable. Throws DataError
/// "PATH: cannot write WHAT: REASON".
void check_writable(const std::string& path, const std::string& what = "file");

}  // namespace twosed
