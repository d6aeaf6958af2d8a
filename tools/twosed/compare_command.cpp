// `twosed compare RUN1 RUN2 ...`: several stored measurements side by side, recomputed from
// their stored spectra with one set of estimator options so that they are comparable.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "reports.h"
#include "twosed/error.h"
#include "twosed/report/plot.h"
#include "twosed/store/runs.h"

namespace twosed::cli {
namespace {

using nlohmann::json;

struct Compared {
  RunInfo info;
  MeasureResult result;
};

// "mlp:6-5-3 (run 3, M = 8)": a run's name in tables, legends and JSON.
std::string run_name(const Compared& c) {
  return fmt::format("{} (run {}, M = {})", c.info.label, c.info.id, c.result.estimate.num_param_samples);
}

std::string compare_table(const std::vector<Compared>& runs, const EstimatorOptions& e) {
  std::string out =
      fmt::format("twosed compare: {} stored measurements, recomputed from their spectra ({} cover, B = {})\n",
                  runs.size(), e.cover == Cover::Box ? "box" : "ellipsoid", e.bootstrap);
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i].result;
    out += fmt::format("  [{}] run {}: {} (d = {}, M = {}, N = {}{}), {}\n", i + 1, runs[i].info.id, r.spec.text,
                       r.estimate.num_params, r.estimate.num_param_samples, r.num_inputs,
                       r.markov.enabled ? fmt::format(", chain 2sED, sigma = {:g}", r.markov.sigma) : "",
                       runs[i].info.status);
  }
  const auto& first = runs.front().result.estimate;
  for (size_t z = 0; z < first.curves.size(); ++z) {
    out += fmt::format("\n  d_zeta(eps) +- standard error at zeta = {:g}\n  {:>10}", first.curves[z].zeta, "eps");
    for (size_t i = 0; i < runs.size(); ++i) out += fmt::format(" {:>22}", fmt::format("[{}]", i + 1));
    out += "\n";
    for (size_t k = 0; k < first.curves[z].eps.size(); ++k) {
      out += fmt::format("  {:>10.3e}", first.curves[z].eps[k]);
      for (const auto& c : runs) {
        const auto& curve = c.result.estimate.curves[z];
        out += fmt::format(" {:>22}", fmt::format("{:.4f} +- {:.4f}", curve.value[k], curve.std_error[k]));
      }
      out += "\n";
    }
  }
  if (!first.at_n.empty()) {
    out += "\n  d_zeta at eps_zeta(n) +- standard error\n";
    out += fmt::format("  {:>10} {:>6}", "n", "zeta");
    for (size_t i = 0; i < runs.size(); ++i) out += fmt::format(" {:>34}", fmt::format("[{}] (eps_zeta)", i + 1));
    out += "\n";
    for (size_t a = 0; a < first.at_n.size(); ++a) {
      out += fmt::format("  {:>10g} {:>6g}", first.at_n[a].n, first.at_n[a].zeta);
      for (const auto& c : runs) {
        const auto& p = c.result.estimate.at_n[a];
        out += fmt::format(" {:>34}", fmt::format("{:.4f} +- {:.4f} ({:.3e})", p.value, p.std_error, p.eps));
      }
      out += "\n";
    }
  }
  return out;
}

json compare_json(const std::vector<Compared>& runs, const EstimatorOptions& e) {
  json arr = json::array();
  for (const auto& c : runs) {
    const auto& est = c.result.estimate;
    json curves = json::array(), at_n = json::array();
    for (const auto& curve : est.curves)
      curves.push_back({{"zeta", curve.zeta}, {"value", curve.value}, {"stderr", curve.std_error}});
    for (const auto& p : est.at_n)
      at_n.push_back({{"n", p.n}, {"zeta", p.zeta}, {"eps", p.eps}, {"value", p.value}, {"stderr", p.std_error}});
    arr.push_back({{"run", c.info.id},
                   {"label", c.info.label},
                   {"status", c.info.status},
                   {"model", c.result.spec.text},
                   {"d", est.num_params},
                   {"samples", est.num_param_samples},
                   {"inputs", c.result.num_inputs},
                   {"markov", c.result.markov.enabled},
                   {"curves", curves},
                   {"at_n", at_n}});
  }
  return json{{"eps", e.eps},
              {"zetas", e.zetas},
              {"n", e.at_n},
              {"cover", e.cover == Cover::Box ? "box" : "ellipsoid"},
              {"bootstrap", e.bootstrap},
              {"runs", arr}};
}

std::string compare_csv(const std::vector<Compared>& runs) {
  std::string out = "run,kind,zeta,eps,n,value,stderr\n";
  for (const auto& c : runs) {
    for (const auto& curve : c.result.estimate.curves)
      for (size_t k = 0; k < curve.eps.size(); ++k)
        out += fmt::format("{},curve,{},{},,{},{}\n", c.info.id, curve.zeta, curve.eps[k], curve.value[k],
                           curve.std_error[k]);
    for (const auto& p : c.result.estimate.at_n)
      out += fmt::format("{},at_n,{},{},{},{},{}\n", c.info.id, p.zeta, p.eps, p.n, p.value, p.std_error);
  }
  return out;
}

// One panel per zeta (up to four), every run a curve with its standard-error band.
void compare_plot(const std::vector<Compared>& runs, const std::string& path) {
  Figure fig;
  fig.title = fmt::format("{} stored measurements, recomputed from their spectra", runs.size());
  const auto& curves = runs.front().result.estimate.curves;
  for (size_t z = 0; z < curves.size() && z < 4; ++z) {
    LinePanel panel;
    panel.log_x = true;
    panel.x_label = "eps";
    panel.y_label = "dimension";
    panel.title = fmt::format("d_zeta(eps) +- stderr at zeta = {:g}", curves[z].zeta);
    for (const auto& c : runs) {
      const auto& curve = c.result.estimate.curves[z];
      panel.series.push_back({run_name(c), curve.eps, curve.value, curve.std_error});
    }
    fig.panels.push_back(panel);
  }
  write_figure(fig, path);
}

}  // namespace

Runner add_compare_command(CLI::App& app) {
  struct P {
    std::vector<int64_t> runs;
    std::string db = kDefaultResultsDb, eps, zeta, n, format = "table", out, plot;
  };
  auto p = std::make_shared<P>();
  auto* cmd = app.add_subcommand(
      "compare", "Stored measurements side by side: curves and d_zeta at eps_zeta(n), with one set of eps/zeta");
  cmd->add_option("runs", p->runs, "Measurement run ids (see 'twosed runs')")->required()->expected(1, -1);
  cmd->add_option("--db", p->db, "Results database (default: twosed.db)");
  cmd->add_option("--eps", p->eps, "eps grid for all runs: LO:HI:COUNT or a list (default: the first run's)");
  cmd->add_option("--zeta", p->zeta, "zeta values for all runs (default: the first run's)");
  cmd->add_option("--n", p->n, "Also d_zeta at eps_zeta(n) for these n (default: the first run's)");
  cmd->add_option("--format", p->format, "table | json | csv (default: table)");
  cmd->add_option("--out", p->out, "Write to this file instead of stdout");
  cmd->add_option("--plot", p->plot, "Also draw the curves with standard-error bands to this .png or .svg");
  cmd->footer(
      "Examples:\n  twosed compare 3 4\n  twosed compare 3 4 7 --eps 1e-6:1e-1:20 --zeta 0,0.5 --n 1e4 --plot cmp.png\n"
      "  twosed compare 3 4 --format csv --out cmp.csv");
  return [p]() {
    if (p->format != "table" && p->format != "json" && p->format != "csv")
      throw UsageError(fmt::format("--format {}: expected table, json or csv", p->format));
    if (!p->plot.empty()) plot_extension(p->plot);
    ResultsStore store(p->db, /*create=*/false);
    for (int64_t id : p->runs)
      if (store.run(id).kind != "measure")
        throw UsageError(fmt::format("run {} is a {} run; twosed compare needs measurements", id, store.run(id).kind));
    // One set of estimator options for every run (the first run's, overridden by the flags);
    // each run keeps its own bootstrap seed (stored_measure).
    EstimatorOptions e = stored_estimator_options(store, p->runs.front());
    if (!p->eps.empty()) e.eps = parse_eps_grid(p->eps, "--eps");
    if (!p->zeta.empty()) e.zetas = parse_double_list(p->zeta, "--zeta");
    if (!p->n.empty()) e.at_n = parse_double_list(p->n, "--n");
    e.ed_n.clear();
    validate_estimator_options(e);
    std::vector<Compared> runs;
    for (int64_t id : p->runs) runs.push_back({store.run(id), stored_measure(store, id, e)});
    if (p->format == "json")
      write_output(compare_json(runs, e).dump(2) + "\n", p->out);
    else if (p->format == "csv")
      write_output(compare_csv(runs), p->out);
    else
      write_output(compare_table(runs, e), p->out);
    if (!p->plot.empty()) compare_plot(runs, p->plot);
    return 0;
  };
}

}  // namespace twosed::cli
