// What a study's run (run_study.cpp, LibTorch side) shares with its file and result formats
// and reports (study.cpp, twosed_core).
#pragma once

#include <string>

#include "twosed/error.h"

namespace twosed {

/// An OptionError from the library in the study file's words: "PATH: key 'train.momentum': RULE".
UsageError study_error(const std::string& file, const OptionError& e);

/// The measure every model has: its parameter count.
inline constexpr const char* kParamsD = "params d";

}  // namespace twosed
