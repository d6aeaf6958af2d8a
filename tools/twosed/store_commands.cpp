// Commands on the results store: `twosed runs`, `twosed show`, `twosed export`, `twosed bound`.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "commands.h"
#include "reports.h"
#include "twosed/error.h"
#include "twosed/estimate/generalization.h"
#include "twosed/report/plot.h"
#include "twosed/store/runs.h"
#include "twosed/store/spectra_file.h"

namespace twosed::cli {
namespace {

using nlohmann::json;

// The estimator options a stored measurement was made with, overridden by the given flags.
struct CurveFlags {
  std::string eps, zeta, cover, n, ed_n;
  int64_t bootstrap = 0;
  void add(CLI::App* cmd) {
    cmd->add_option("--eps", eps, "eps grid: LO:HI:COUNT or a list (default: the run's)");
    cmd->add_option("--zeta", zeta, "zeta values (default: the run's)");
    cmd->add_option("--cover", cover, "box | ellipsoid (default: the run's)");
    cmd->add_option("--n", n, "Also d_zeta at eps_zeta(n) for these n (default: the run's)");
    cmd->add_option("--ed-n", ed_n, "Also the Abbas ED at these n (default: the run's)");
    cmd->add_option("--bootstrap", bootstrap, "Bootstrap resamples (default: the run's)");
  }
  // The run's own estimator options (runs.h reads them back), overridden by the flags given.
  EstimatorOptions options(const ResultsStore& store, int64_t run) const {
    EstimatorOptions e = stored_estimator_options(store, run);
    if (!eps.empty()) e.eps = parse_eps_grid(eps, "--eps");
    if (!zeta.empty()) e.zetas = parse_double_list(zeta, "--zeta");
    if (!cover.empty()) {
      if (cover != "box" && cover != "ellipsoid")
        throw UsageError(fmt::format("--cover {}: expected box or ellipsoid", cover));
      e.cover = cover == "box" ? Cover::Box : Cover::Ellipsoid;
    }
    if (!n.empty()) e.at_n = parse_double_list(n, "--n");
    if (!ed_n.empty()) e.ed_n = parse_double_list(ed_n, "--ed-n");
    if (bootstrap > 0) e.bootstrap = bootstrap;
    validate_estimator_options(e);
    return e;
  }
};

// "  (diverged)" for a training run that stopped at a non-finite loss (train.h).
std::string diverged_note(const RunInfo& r) {
  if (r.kind != "train" || r.result.empty()) return "";
  const auto j = json::parse(r.result, nullptr, false);
  return j.is_object() && j.contains("diverged") && j["diverged"].is_string() ? "  (diverged)" : "";
}

}  // namespace

Runner add_runs_command(CLI::App& app) {
  struct P {
    std::string db = kDefaultResultsDb, kind, format = "table";
    int64_t del = 0;
  };
  auto p = std::make_shared<P>();
  auto* cmd = app.add_subcommand("runs", "List the runs in a results database");
  cmd->add_option("--delete", p->del, "Delete run RUN (a study with its runs); a run still in progress is refused")
      ->type_name("RUN");
  cmd->add_option("--db", p->db, "Results database (default: twosed.db)");
  cmd->add_option("--kind", p->kind, "Only runs of this kind: measure | train | study");
  cmd->add_option("--format", p->format, "table | json (default: table)");
  cmd->footer(
      "Examples:\n  twosed runs\n  twosed runs --db study.db --kind study --format json\n  twosed runs --delete 3");
  return [p]() {
    if (p->del != 0) {
      ResultsStore store(p->db, /*create=*/false);
      const auto n = delete_stored_run(store, p->del);
      write_output(
          fmt::format("deleted run {}{} from {}\n", p->del, n > 1 ? fmt::format(" and its {} runs", n - 1) : "", p->db),
          "");
      return 0;
    }
    if (p->format != "table" && p->format != "json")
      throw UsageError(fmt::format("--format {}: expected table or json", p->format));
    if (!p->kind.empty() && p->kind != "measure" && p->kind != "train" && p->kind != "study")
      throw UsageError(fmt::format("--kind {}: expected measure, train or study", p->kind));
    ResultsStore store(p->db, /*create=*/false, /*read_only=*/true);
    const auto runs = store.runs(p->kind);
    if (p->format == "json") {
      json arr = json::array();
      for (const auto& r : runs)
        arr.push_back({{"id", r.id},
                       {"kind", r.kind},
                       {"status", run_is_stopped(store, r) ? "stopped" : r.status},
                       {"label", r.label},
                       {"parent", r.parent},
                       {"created", r.created},
                       {"updated", r.updated},
                       {"version", r.version},
                       {"samples", r.num_samples},
                       {"records", r.num_records},
                       {"message", r.message}});
      write_output(arr.dump(2) + "\n", "");
      return 0;
    }
    // The legend only where it explains a listed status.
    bool any_stopped = false;
    for (const auto& r : runs) any_stopped = any_stopped || run_is_stopped(store, r);
    std::string out = fmt::format("{} runs in {}{}\n", runs.size(), p->db,
                                  any_stopped ? " (stopped: killed or crashed; continue with --resume)" : "");
    out += fmt::format("  {:>4} {:>7} {:>8} {:>6} {:>8} {:>20}  {}\n", "id", "kind", "status", "study", "done",
                       "updated", "label");
    for (const auto& r : runs) {
      const std::string done = r.kind == "measure" ? fmt::format("{} smp", r.num_samples)
                               : r.kind == "train" ? fmt::format("{} rec", r.num_records)
                                                   : std::to_string(store.children(r.id).size()) + " run";
      out += fmt::format("  {:>4} {:>7} {:>8} {:>6} {:>8} {:>20}  {}{}\n", r.id, r.kind,
                         run_is_stopped(store, r) ? "stopped" : r.status, r.parent ? std::to_string(r.parent) : "-",
                         done, r.updated, r.label, r.message.empty() ? diverged_note(r) : "  (" + r.message + ")");
    }
    write_output(out, "");
    return 0;
  };
}

Runner add_show_command(CLI::App& app) {
  struct P {
    std::string db = kDefaultResultsDb, format = "table", out, plot;
    int64_t run = 0;
    double breakdown_eps = 0;
    CurveFlags curves;
  };
  auto p = std::make_shared<P>();
  auto* cmd = app.add_subcommand("show",
                                 "Show a stored run; measurements are recomputed for new eps/zeta from their "
                                 "stored spectra, without the network");
  cmd->add_option("run", p->run, "Run id (see 'twosed runs')")->required();
  cmd->add_option("--db", p->db, "Results database (default: twosed.db)");
  p->curves.add(cmd);
  cmd->add_option("--format", p->format, "table | json | csv (default: table)");
  cmd->add_option("--out", p->out, "Write to this file instead of stdout");
  cmd->add_option("--plot", p->plot, "Also draw the curves to this .png or .svg");
  cmd->add_option("--breakdown-eps", p->breakdown_eps, "eps of a Markov run's layer breakdown");
  cmd->footer(
      "Examples:\n  twosed show 3\n  twosed show 3 --eps 1e-8:1e-1:30 --zeta 0,0.25,0.5,0.75 --format json\n"
      "  twosed show 5 --format csv --out curve.csv");
  return [p]() {
    if (p->format != "table" && p->format != "json" && p->format != "csv")
      throw UsageError(fmt::format("--format {}: expected table, json or csv", p->format));
    ResultsStore store(p->db, /*create=*/false, /*read_only=*/true);
    const auto info = store.run(p->run);
    if (info.kind == "measure") {
      const auto config = json::parse(info.config);
      const auto r = stored_measure(store, p->run, p->curves.options(store, p->run));
      const size_t b = breakdown_index(r.estimate.curves.front().eps, p->breakdown_eps);
      if (p->format == "json") {
        auto j = result_json(r);
        j["run"] = info.id;
        j["status"] = info.status;
        j["config"] = config;
        write_output(j.dump(2) + "\n", p->out);
      } else if (p->format == "csv") {
        write_output(r.markov.enabled ? markov_csv(r) : to_csv(r), p->out);
      } else {
        write_output(
            fmt::format("run {} ({}, created {}, twosed {})\n", info.id, info.status, info.created, info.version) +
                to_table(r, b),
            p->out);
      }
      if (!p->plot.empty()) write_plot(r, p->plot, b);
      return 0;
    }
    if (info.kind == "train") {
      const auto recs = store.training_records(info.id);
      write_output(p->format == "json"  ? training_json(info, recs).dump(2) + "\n"
                   : p->format == "csv" ? training_csv(recs)
                                        : training_table(info, recs),
                   p->out);
      if (!p->plot.empty()) write_training_plot({{info.label, recs}}, p->plot);
      return 0;
    }
    return show_study(store, info, p->format, p->out, p->plot);
  };
}

Runner add_export_command(CLI::App& app) {
  struct P {
    std::string db = kDefaultResultsDb, format = "json", out;
    int64_t run = 0;
  };
  auto p = std::make_shared<P>();
  auto* cmd = app.add_subcommand("export", "Export a stored run with its configuration as CSV or JSON");
  cmd->add_option("run", p->run, "Run id (see 'twosed runs')")->required();
  cmd->add_option("--db", p->db, "Results database (default: twosed.db)");
  cmd->add_option("--format", p->format,
                  "csv | json | spectra (a measurement's spectra as a --spectra-out file, for --spectra-in) "
                  "(default: json)");
  cmd->add_option("--out", p->out, "Write to this file instead of stdout");
  cmd->footer(
      "Examples:\n  twosed export 3 --format csv --out run3.csv\n  twosed export 1 --format json\n"
      "  twosed export 3 --format spectra --out run3.jsonl && twosed measure --spectra-in run3.jsonl");
  return [p]() {
    if (p->format != "json" && p->format != "csv" && p->format != "spectra")
      throw UsageError(fmt::format("--format {}: expected csv, json or spectra", p->format));
    ResultsStore store(p->db, /*create=*/false, /*read_only=*/true);
    const auto info = store.run(p->run);
    if (p->format == "spectra") {
      if (info.kind != "measure")
        throw UsageError(fmt::format("--format spectra: run {} is a {} run, not a measurement", p->run, info.kind));
      if (p->out.empty()) throw UsageError("--format spectra needs --out FILE");
      SpectraHeader header;
      const auto records = stored_samples(store, p->run, &header);
      SpectraWriter writer(p->out, header);
      for (const auto& r : records) {
        if (header.markov)
          writer.append_layers(r.index, r.blocks);
        else
          writer.append(r.index, r.blocks.front());
      }
      return 0;
    }
    if (info.kind == "measure") {
      const auto config = json::parse(info.config);
      const auto r = stored_measure(store, p->run, stored_estimator_options(store, p->run));
      if (p->format == "csv") {
        write_output(r.markov.enabled ? markov_csv(r) : to_csv(r), p->out);
      } else {
        auto j = result_json(r);
        j["run"] = info.id;
        j["status"] = info.status;
        j["config"] = config;
        j["created"] = info.created;
        j["twosed_version"] = info.version;
        write_output(j.dump(2) + "\n", p->out);
      }
      return 0;
    }
    if (info.kind == "train") {
      const auto recs = store.training_records(info.id);
      write_output(p->format == "csv" ? training_csv(recs) : training_json(info, recs).dump(2) + "\n", p->out);
      return 0;
    }
    return show_study(store, info, p->format, p->out, "");
  };
}

namespace {

struct BoundParams {
  std::string db = kDefaultResultsDb, n, zeta, format = "table", out, search = "continuous", use = "chain", plot;
  int64_t run = 0;
  double eps_min = 1e-12, eps_max = 0.99;
  BoundOptions bound;
};

// The flags checked before the store is opened; returns the n values.
std::vector<double> check_bound_flags(const BoundParams& p) {
  validate_bound_options(p.bound);
  if (p.format != "table" && p.format != "json" && p.format != "csv")
    throw UsageError(fmt::format("--format {}: expected table, json or csv", p.format));
  if (p.search != "continuous" && p.search != "grid")
    throw UsageError(fmt::format("--search {}: expected continuous or grid", p.search));
  if (p.use != "chain" && p.use != "lower") throw UsageError(fmt::format("--use {}: expected chain or lower", p.use));
  const auto ns = parse_double_list(p.n, "--n");
  for (double n : ns)
    if (!(n > 1 && std::isfinite(n))) throw UsageError(fmt::format("--n {}: every n must be a number > 1", p.n));
  return ns;
}

// What the estimate needs of the stored measurement: d_zeta(eps) from its spectra.
struct BoundSource {
  json config;
  SpectraHeader header;
  size_t samples = 0;
  std::vector<double> zetas;  // --zeta, else the run's
  std::string measure;        // "2sED", "chain 2sED" or "lower 2sED"
  std::optional<TwoScaleFunction> dimension;
};

BoundSource load_bound_source(const ResultsStore& store, const BoundParams& p) {
  const auto info = store.run(p.run);
  if (info.kind != "measure")
    throw UsageError(fmt::format("run {} is a {} run; twosed bound needs a measurement", p.run, info.kind));
  BoundSource src;
  src.config = json::parse(info.config);
  src.zetas = p.zeta.empty() ? src.config.at("zetas").get<std::vector<double>>() : parse_double_list(p.zeta, "--zeta");
  const auto records = stored_samples(store, p.run, &src.header);
  if (records.empty()) throw DataError(fmt::format("{}: run {} has no finished samples", p.db, p.run));
  src.samples = records.size();
  std::vector<SampleSpectrum> merged;
  for (const auto& r : records) merged.push_back(merge_spectra(r.blocks));
  const Cover cover = src.config.value("cover", "box") == "box" ? Cover::Box : Cover::Ellipsoid;
  const bool lower = src.header.markov && p.use == "lower";
  src.dimension.emplace(merged, src.header.num_params, cover, lower ? Aggregate::Mean : Aggregate::LogMeanExp);
  src.measure = src.header.markov ? (lower ? "lower 2sED" : "chain 2sED") : "2sED";
  return src;
}

struct BoundRow {
  double n = 0, zeta = 0;
  GapEstimate gap;
};

// The estimate for every (zeta, n), zeta outermost.
std::vector<BoundRow> bound_rows(const BoundParams& p, const BoundSource& src, const std::vector<double>& ns) {
  std::vector<BoundRow> rows;
  for (double zeta : src.zetas)
    for (double n : ns) {
      auto f = [&](double eps) { return (*src.dimension)(zeta, eps); };
      rows.push_back({n, zeta,
                      p.search == "grid" ? minimize_gap(f, n, src.config.at("eps").get<std::vector<double>>(), p.bound)
                                         : minimize_gap_continuous(f, n, p.eps_min, p.eps_max, p.bound)});
    }
  return rows;
}

std::string bound_table(const BoundParams& p, const BoundSource& src, const std::vector<BoundRow>& rows) {
  std::string table = fmt::format(
      "twosed bound: generalisation estimate (docs/math.md section 6) for run {} ({}, d = {}, M = {}, {})\n"
      "  gap(n) ~ min over eps of [ 2 L eps + B sqrt((d_zeta(eps) |log eps| + log(2/delta)) / (2n)) ]\n"
      "  B = {:g}, L = {:g}, delta = {:g}; eps searched {}\n\n",
      p.run, src.header.model, src.header.num_params, src.samples, src.measure, p.bound.loss_bound, p.bound.lipschitz,
      p.bound.delta,
      p.search == "grid" ? "over the run's eps grid" : fmt::format("over [{:g}, {:g}]", p.eps_min, p.eps_max));
  table += fmt::format("  {:>10} {:>6} {:>11} {:>11} {:>10} {:>11} {:>10}\n", "n", "zeta", "eps*", "d_zeta(eps*)",
                       "2 L eps", "complexity", "gap");
  for (const auto& [n, zeta, g] : rows)
    table += fmt::format("  {:>10g} {:>6g} {:>11.4e} {:>11.4f} {:>10.4g} {:>11.4g} {:>10.4g}{}\n", n, zeta, g.eps,
                         g.dimension, g.lipschitz_term, g.complexity_term, g.gap,
                         g.at_grid_edge ? "  (at the edge of the eps range)" : "");
  table += fmt::format("\n  This is {}.\n", kBoundCaveat);
  return table;
}

json bound_json(const BoundParams& p, const BoundSource& src, const std::vector<BoundRow>& rows) {
  json estimates = json::array();
  for (const auto& [n, zeta, g] : rows)
    estimates.push_back({{"n", n},
                         {"zeta", zeta},
                         {"eps", g.eps},
                         {"dimension", g.dimension},
                         {"lipschitz_term", g.lipschitz_term},
                         {"complexity_term", g.complexity_term},
                         {"gap", g.gap},
                         {"at_edge", g.at_grid_edge}});
  return {{"run", p.run},
          {"measure", src.measure},
          {"loss_bound", p.bound.loss_bound},
          {"lipschitz", p.bound.lipschitz},
          {"delta", p.bound.delta},
          {"search", p.search},
          {"caveat", kBoundCaveat},
          {"estimates", estimates}};
}

std::string bound_csv(const std::vector<BoundRow>& rows) {
  std::string csv = "n,zeta,eps,dimension,lipschitz_term,complexity_term,gap,at_edge\n";
  for (const auto& [n, zeta, g] : rows)
    csv += fmt::format("{},{},{},{},{},{},{},{}\n", n, zeta, g.eps, g.dimension, g.lipschitz_term, g.complexity_term,
                       g.gap, g.at_grid_edge ? 1 : 0);
  return csv;
}

// The gap against n, one line per zeta (rows holds `per_zeta` n values for each).
void bound_plot(const BoundParams& p, const BoundSource& src, const std::vector<BoundRow>& rows, size_t per_zeta) {
  LinePanel panel;
  panel.title = fmt::format("generalisation estimate, run {} ({}); covering constants set to one", p.run, src.measure);
  panel.x_label = "training-set size n";
  panel.y_label = "gap estimate";
  panel.log_x = true;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i % per_zeta == 0) panel.series.push_back({fmt::format("zeta = {:g}", rows[i].zeta), {}, {}, {}});
    panel.series.back().x.push_back(rows[i].n);
    panel.series.back().y.push_back(rows[i].gap.gap);
  }
  Figure fig;
  fig.panels.push_back(panel);
  write_figure(fig, p.plot);
}

int run_bound(const BoundParams& p) {
  const auto ns = check_bound_flags(p);
  ResultsStore store(p.db, /*create=*/false, /*read_only=*/true);
  const auto src = load_bound_source(store, p);
  const auto rows = bound_rows(p, src, ns);
  if (p.format == "json")
    write_output(bound_json(p, src, rows).dump(2) + "\n", p.out);
  else if (p.format == "csv")
    write_output(bound_csv(rows), p.out);
  else
    write_output(bound_table(p, src, rows), p.out);
  if (!p.plot.empty()) bound_plot(p, src, rows, ns.size());
  return 0;
}

}  // namespace

Runner add_bound_command(CLI::App& app) {
  auto p = std::make_shared<BoundParams>();
  auto* cmd = app.add_subcommand(
      "bound", "Generalisation estimate of docs/math.md section 6 for a stored measurement and training-set sizes n");
  cmd->add_option("run", p->run, "Measurement run id (see 'twosed runs')")->required();
  cmd->add_option("--n", p->n, "Training-set sizes n (a list gives a curve)")->required();
  cmd->add_option("--db", p->db, "Results database (default: twosed.db)");
  cmd->add_option("--zeta", p->zeta, "zeta values (default: the run's)");
  cmd->add_option("--loss-bound", p->bound.loss_bound, "B: the loss lies in [0, B] (default: 1)");
  cmd->add_option("--lipschitz", p->bound.lipschitz,
                  "L: Lipschitz constant of the loss in the Fisher metric (default: 1)");
  cmd->add_option("--delta", p->bound.delta, "Confidence 1 - delta (default: 0.05)");
  cmd->add_option("--search", p->search,
                  "continuous: minimise over [--eps-min, --eps-max] (d_zeta recomputed from the spectra at any "
                  "eps); grid: over the run's eps grid only (default: continuous)");
  cmd->add_option("--eps-min", p->eps_min, "Lower end of the continuous search (default: 1e-12)");
  cmd->add_option("--eps-max", p->eps_max, "Upper end of the continuous search (default: 0.99)");
  cmd->add_option("--use", p->use,
                  "Markov runs: chain (the 2sED of M_sigma) | lower (the lower 2sED; smaller, so an optimistic "
                  "estimate) (default: chain)");
  cmd->add_option("--format", p->format, "table | json | csv (default: table)");
  cmd->add_option("--out", p->out, "Write to this file instead of stdout");
  cmd->add_option("--plot", p->plot, "Also draw the gap against n (.png or .svg)");
  cmd->footer(
      "Examples:\n  twosed bound 3 --n 60000\n  twosed bound 3 --n 1e3,1e4,1e5,1e6 --zeta 0,0.5 --plot gap.png\n"
      "  twosed bound 4 --n 5e4 --loss-bound 2 --lipschitz 0.5 --delta 0.01 --format json");
  return [p]() { return run_bound(*p); };
}

}  // namespace twosed::cli
