// `twosed study STUDY.json`: measures and trains a family of models and correlates.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "commands.h"
#include "mpi/ranks.h"
#include "reports.h"
#include "twosed/error.h"
#include "twosed/execution.h"
#include "twosed/measure/measure.h"
#include "twosed/study/study.h"

namespace twosed::cli {

Runner add_study_command(CLI::App& app) {
  struct P {
    std::string file, db = kDefaultResultsDb, format = "table", out, plot;
    int64_t resume = 0;
    int threads = 0;
    bool quiet = false, no_db = false;
  };
  auto p = std::make_shared<P>();
  auto* cmd = app.add_subcommand(
      "study", "Model selection: measure a family of models before training, train them, and rank-correlate");
  cmd->add_option("file", p->file, "Study file (JSON; see examples/ and docs/design.md)")->required();
  auto* db = cmd->add_option("--db", p->db, "Results database (default: twosed.db)");
  auto* no_db = cmd->add_flag("--no-db", p->no_db,
                              "Run in an in-memory results store and only print the result (nothing is kept)");
  auto* resume = cmd->add_option("--resume", p->resume,
                                 "Continue the newest unfinished study of this file (or run RUN); finished "
                                 "measurements and trainings are not recomputed")
                     ->expected(0, 1)
                     ->type_name("[RUN]");
  no_db->excludes(db)->excludes(resume);
  cmd->add_option("--format", p->format, "table | json | csv (default: table)");
  cmd->add_option("--out", p->out, "Write the report to this file instead of stdout");
  cmd->add_option("--plot", p->plot,
                  "Figures PREFIX-curves.EXT, PREFIX-training.EXT, PREFIX-scatter.EXT from PREFIX.png or PREFIX.svg");
  cmd->add_option("--threads", p->threads, "Threads (default: the number of cores)");
  cmd->add_flag("--quiet,-q", p->quiet, "No progress lines on stderr");
  cmd->footer(R"(Examples:
  twosed study examples/covertype-mlps.json --db study.db --plot covertype.png
  twosed study examples/covertype-mlps.json --db study.db --resume     (after a kill)
  twosed show 1 --db study.db --format csv                              (the stored study)

Study file keys: name, data {source, test_data, test_fraction, train_size, test_size,
standardize, seed}, task, models [spec or {spec, act, bias}], measure {inputs, samples, eps,
zetas, sigmas, noise_draws, bootstrap, seed}, train {optimizer, lr, momentum, weight_decay,
batch, epochs, seeds}, correlation {bootstrap, confidence, seed}.)");
  return [p, resume]() {
    if (p->format != "table" && p->format != "json" && p->format != "csv")
      throw UsageError(fmt::format("--format {}: expected table, json or csv", p->format));
    if (!p->plot.empty()) study_plot_prefix(p->plot);  // a bad name fails before the study runs
    const auto cfg = parse_study(p->file);
    ScopedThreads threads(p->threads != 0 ? p->threads : mpi::default_threads());
    ResultsStore store(p->no_db ? ":memory:" : p->db);  // SQLite's in-memory database
    StudyOptions so;
    so.resume = resume->count() > 0;
    so.resume_run = p->resume;
    so.execution.executor = mpi::executor();  // measurements over MPI ranks; training on rank 0
    if (!p->quiet) so.progress = [](const std::string& s) { std::fprintf(stderr, "twosed study: %s\n", s.c_str()); };
    if (!p->quiet && ::isatty(2))
      so.step_progress = [](int64_t done, int64_t total) {
        std::fprintf(stderr, "\r  %lld/%lld%s", static_cast<long long>(done), static_cast<long long>(total),
                     done == total ? "\r            \r" : "");
        std::fflush(stderr);
      };
    const auto result = run_study(store, cfg, so);
    return report_study(store, result, store.run(result.run), p->format, p->out, p->plot);
  };
}

}  // namespace twosed::cli
