// The CLI's names for library options. The library reports a bad option value as an
// OptionError naming the options-struct field ("TrainOptions.momentum"); the CLI prints the flag
// that sets it instead ("--momentum must be in [0, 1), got 1.5"). One table, in
// option_names.cpp, maps every field a flag sets to that flag.
#pragma once

#include <string>

#include "twosed/error.h"

namespace twosed::cli {

/// The flag that sets library option `option` ("TrainOptions.momentum" -> "--momentum"); empty
/// if no flag sets it.
std::string flag_of(const std::string& option);

/// The error as the CLI says it: "FLAG RULE", or the library's what() when no flag sets the option.
std::string cli_message(const OptionError& e);

}  // namespace twosed::cli
