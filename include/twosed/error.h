// Error types of the twosed library.
//
// The library reports bad input by throwing; the CLI turns the type into an exit code:
// UsageError (a bad option or model spec) -> 2, DataError (a file or its contents) -> 1.
// Messages are one line that names the option, file, line or token and what was expected.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace twosed {

/// A bad option value or a malformed specification string (exit code 2 in the CLI).
class UsageError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A bad value of one named option. `option` is the field as the library names it,
/// "Struct.field" ("TrainOptions.momentum", "MeasureOptions.num_inputs"); `rule` says what was
/// expected and what was given ("must be in [0, 1), got 1.5"). what() is "option rule". Front
/// ends print their own name for the option instead (the CLI a flag, Python a keyword), so the
/// library never speaks of flags.
class OptionError : public UsageError {
 public:
  OptionError(std::string option, std::string rule)
      : UsageError(option + " " + rule), option_(std::move(option)), rule_(std::move(rule)) {}
  const std::string& option() const noexcept { return option_; }
  const std::string& rule() const noexcept { return rule_; }

 private:
  std::string option_, rule_;
};

/// A missing, unreadable or malformed data file, or data that does not fit the model
/// (exit code 1 in the CLI).
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace twosed
