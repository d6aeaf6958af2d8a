// Subcommands of the twosed CLI. Each registers its options on a CLI11 app and returns the
// function that runs it (after parsing); the function returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <utility>

#include "twosed/store/results_store.h"
#include "twosed/study/study.h"

namespace twosed::cli {

using Runner = std::function<int()>;

/// `twosed measure`: the 2sED of a network on a data set.
Runner add_measure_command(CLI::App& app);
/// `twosed train`: trains a model, records its curve, saves a checkpoint.
Runner add_train_command(CLI::App& app);
/// `twosed study STUDY.json`: measures and trains a family of models, rank correlations.
Runner add_study_command(CLI::App& app);
/// `twosed runs`, `show`, `export`, `bound`: the results store.
Runner add_runs_command(CLI::App& app);
Runner add_show_command(CLI::App& app);
Runner add_export_command(CLI::App& app);
Runner add_bound_command(CLI::App& app);
/// `twosed compare RUN1 RUN2 ...`: stored measurements side by side (compare_command.cpp).
Runner add_compare_command(CLI::App& app);

/// "fig.png" -> {"fig", "png"}: a study's figures get -curves/-training/-scatter suffixes.
/// UsageError for a name that is not .png or .svg.
std::pair<std::string, std::string> study_plot_prefix(const std::string& plot);

/// A study's result as the format asks (study_report.cpp); JSON adds the run's status and version.
int report_study(const ResultsStore& store, const StudyResult& r, const RunInfo& info, const std::string& format,
                 const std::string& out, const std::string& plot);

/// A stored study as a table, JSON or CSV (and its figures with a plot path): for show/export.
int show_study(const ResultsStore& store, const RunInfo& info, const std::string& format, const std::string& out,
               const std::string& plot);

}  // namespace twosed::cli
