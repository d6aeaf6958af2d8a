// A study's result as a table, JSON or CSV with its figures: after `twosed study` and for a
// stored study in `twosed show` / `twosed export` (torch-free: part of the front binary).
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <utility>

#include "commands.h"
#include "reports.h"
#include "twosed/error.h"
#include "twosed/study/study.h"

namespace twosed::cli {

// "fig.png" -> {"fig", "png"}; the study's figures get -curves/-training/-scatter suffixes.
std::pair<std::string, std::string> study_plot_prefix(const std::string& plot) {
  const auto ext = plot_extension(plot, "the figures are PREFIX-curves.EXT, PREFIX-training.EXT, PREFIX-scatter.EXT");
  return {plot.substr(0, plot.rfind('.')), ext};
}

// The typed result as the format asks; JSON adds the run's status and twosed version.
int report_study(const ResultsStore& store, const StudyResult& r, const RunInfo& info, const std::string& format,
                 const std::string& out, const std::string& plot) {
  if (format == "json") {
    auto j = study_result_json(r);
    j["status"] = info.status;
    j["twosed_version"] = info.version;
    write_output(j.dump(2) + "\n", out);
  } else if (format == "csv") {
    write_output(study_csv(r), out);
  } else {
    write_output(study_table(r), out);
  }
  if (!plot.empty()) {
    const auto [prefix, ext] = study_plot_prefix(plot);
    for (const auto& f : study_plots(store, r, prefix, ext)) std::fprintf(stderr, "twosed: wrote %s\n", f.c_str());
  }
  return 0;
}

int show_study(const ResultsStore& store, const RunInfo& info, const std::string& format, const std::string& out,
               const std::string& plot) {
  if (info.result.empty())
    throw DataError(fmt::format("{}: study {} has not finished ({}); resume it with 'twosed study FILE --resume'",
                                store.path(), info.id, info.status));
  StudyResult r;
  try {
    r = parse_study_result(info.result, info.config);
  } catch (const DataError& e) {
    throw DataError(fmt::format("{}: run {}: {}", store.path(), info.id, e.what()));
  }
  return report_study(store, r, info, format, out, plot);
}

}  // namespace twosed::cli
