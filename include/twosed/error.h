// Error types of the twosed library.
//
// The library reports bad input by throwing; the CLI turns the type into an exit code:
// UsageError (a bad option or model spec) -> 2, DataError (a file or its contents) -> 1.
// Messages are one line that names the option, file, line or token and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace twosed {

/// A bad option value or a malformed specification string (exit code 2 in the CLI).
class UsageError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A missing, unreadable or malformed data file, or data that does not fit the model
/// (exit code 1 in the CLI).
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace twosed
