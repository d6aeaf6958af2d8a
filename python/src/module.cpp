// _twosed: the engine for the Python package `twosed` (python/twosed). Options arrive as a
// dict already checked and typed by the Python side; inputs and parameter samples as float64
// C-contiguous numpy arrays whose memory the engine reads in place (no copy). Results go back
// as the result JSON (result_json.h, what the CLI's --format json prints) and the spectra as
// numpy arrays. The GIL is released while the engine works; the progress hook takes it briefly
// to let Python see Ctrl-C.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "twosed/error.h"
#include "twosed/estimate/generalization.h"
#include "twosed/measure/engine.h"
#include "twosed/measure/result_json.h"
#include "twosed/model/torchscript.h"
#include "twosed/store/runs.h"

namespace py = pybind11;
using namespace twosed;

namespace {

using DoubleArray = py::array_t<double, py::array::c_style>;

// Thrown by the progress hook when Python has an exception pending (Ctrl-C, or the user's
// callback raised): unwinds the engine, and the boundary restores the Python exception.
// A std::exception, so that record_measure marks the run failed (its samples stay, and a
// resume continues it).
struct PythonPending : std::runtime_error {
  PythonPending() : std::runtime_error("interrupted from Python") {}
};

// A bad option, raised to Python as _twosed.OptionError(option, rule) for the package to
// rename the option after its keyword.
PyObject* option_error_type = nullptr;

template <typename T>
T get(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) ? d[key].cast<T>() : fallback;
}

// MeasureOptions from the package's dict (keys are the struct's field names).
MeasureOptions options_from(const py::dict& d) {
  MeasureOptions o;
  o.model = get<std::string>(d, "model", "");
  o.input_shape = get<std::string>(d, "input_shape", "");
  o.jacobian = get<std::string>(d, "jacobian", "auto");
  o.model_options.activation = parse_activation(get<std::string>(d, "act", "relu"), "act");
  o.model_options.bias = get<bool>(d, "bias", true);
  o.data = get<std::string>(d, "data", "");
  o.inputs_file = get<std::string>(d, "inputs_file", "");
  o.standardize = get<bool>(d, "standardize", false);
  o.num_inputs = get<int64_t>(d, "num_inputs", 100);
  o.space = get<std::string>(d, "space", "init");
  o.thetas_file = get<std::string>(d, "thetas_file", "");
  o.num_param_samples = get<int64_t>(d, "samples", 100);
  const auto task = get<std::string>(d, "task", "classify");
  o.fisher.task = task == "regress" ? Task::Regress : Task::Classify;
  o.fisher.out_noise = get<double>(d, "out_noise", 1.0);
  o.fisher.kind = get<std::string>(d, "fisher", "exact") == "sampled" ? FisherKind::Sampled : FisherKind::Exact;
  const auto side = get<std::string>(d, "side", "auto");
  o.fisher.side = side == "samples" ? GramSide::Samples : side == "parameters" ? GramSide::Parameters : GramSide::Auto;
  o.fisher.memory_budget = get<int64_t>(d, "memory_budget", int64_t{256} << 20);
  o.estimator.eps = get<std::vector<double>>(d, "eps", {});
  o.estimator.zetas = get<std::vector<double>>(d, "zetas", {0.0, 0.5});
  o.estimator.cover = get<std::string>(d, "cover", "box") == "ellipsoid" ? Cover::Ellipsoid : Cover::Box;
  o.estimator.ed_n = get<std::vector<double>>(d, "ed_n", {});
  o.estimator.at_n = get<std::vector<double>>(d, "n", {});
  o.estimator.bootstrap = get<int64_t>(d, "bootstrap", 1000);
  o.seed = get<uint64_t>(d, "seed", 0);
  o.markov = get<bool>(d, "markov", false);
  o.sigma = get<double>(d, "sigma", 0.0);
  o.noise_draws = get<int64_t>(d, "noise_draws", 1);
  o.noise_file = get<std::string>(d, "noise_file", "");
  return o;
}

// A float64 tensor over the array's memory: the array outlives every use (the call).
torch::Tensor view_of(const DoubleArray& a) {
  std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  return torch::from_blob(const_cast<double*>(a.data()), shape, torch::kFloat64);
}

py::array_t<double> to_numpy(const std::vector<double>& v) {
  return py::array_t<double>(v.size(), v.data());
}

// Each record's spectra: one array per sample (standard model) or one list of per-layer
// arrays per sample (Markov).
py::list spectra_of(const std::vector<SampleRecord>& records, bool markov) {
  py::list out;
  for (const auto& r : records) {
    if (!markov) {
      out.append(to_numpy(merge_spectra(r.blocks).eigenvalues));
      continue;
    }
    py::list layers;
    for (const auto& b : r.blocks) layers.append(to_numpy(b.eigenvalues));
    out.append(layers);
  }
  return out;
}

// The engine hooks the package asks for: Ctrl-C checks and the user's progress callback, both
// with the GIL taken for a moment only. The hooks are copied while the GIL is released, so they
// hold a pointer to the callback (which outlives the call), never a py::object of their own.
MeasureHooks python_hooks(const py::object* progress) {
  MeasureHooks hooks;
  auto call = [progress](double done, int64_t total) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw PythonPending{};
    if (progress->is_none()) return;
    try {
      (*progress)(done, total);
    } catch (py::error_already_set& e) {
      e.restore();
      throw PythonPending{};
    }
  };
  hooks.progress = [call](int64_t done, int64_t total) { call(static_cast<double>(done), total); };
  hooks.layer_progress = [call](int64_t j, int64_t done, int64_t layers, int64_t total) {
    if (done < layers) call(static_cast<double>(j) + static_cast<double>(done) / static_cast<double>(layers), total);
  };
  return hooks;
}

struct MeasureCall {
  MeasureResult result;
  std::vector<SampleRecord> records;
  int64_t run = 0;
};

// No database: the engine on the given (or loaded) inputs and parameter samples.
MeasureCall measure_in_memory(const MeasureOptions& o, const std::optional<DoubleArray>& inputs,
                              const std::optional<DoubleArray>& thetas, const MeasureHooks& python, int threads) {
  const auto t0 = std::chrono::steady_clock::now();
  ExecutionContext ctx;
  ctx.threads = threads;
  ScopedThreads scoped(ctx);
  std::optional<MeasureInputs> given;
  if (inputs) given = MeasureInputs{view_of(*inputs), "inputs given from Python"};
  MeasureCall out;
  auto prepared = prepare_measurement(o, given ? &*given : nullptr);
  if (thetas)
    prepared.thetas = std::make_unique<GivenParameters>(view_of(*thetas), prepared.thetas->num_params(),
                                                        "parameter samples given from Python", "thetas");
  MeasureRun run;
  run.hooks = python;
  run.hooks.on_record = [&out](const SampleRecord& r) { out.records.push_back(r); };
  out.result = measure_prepared(prepared, o, std::move(run));  // as the CLI: same choices, same numbers
  out.result.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

// With a database: record_measure (samples committed as they are done; resume takes them
// back), then the records read from the store.
MeasureCall measure_recorded(MeasureOptions o, const std::string& db, int64_t resume, const MeasureHooks& python,
                             int threads) {
  ExecutionContext ctx;
  ctx.threads = threads;
  o.progress = python.progress;
  o.layer_progress = python.layer_progress;
  ResultsStore store(db);
  RecordOptions ropts;
  ropts.resume = resume >= 0;
  ropts.resume_run = resume > 0 ? resume : 0;
  MeasureCall out;
  auto rec = record_measure(store, o, ropts, ctx);
  out.result = std::move(rec.result);
  out.run = rec.run;
  out.records = stored_samples(store, rec.run);
  return out;
}

// The result as the CLI's --format json would print it, plus the spectra.
py::tuple measure_entry(const py::dict& opts, std::optional<DoubleArray> inputs, std::optional<DoubleArray> thetas,
                        const std::string& db, int64_t resume, const py::object& progress, int threads) {
  const MeasureOptions o = options_from(opts);
  const auto hooks = python_hooks(&progress);
  MeasureCall call;
  try {
    py::gil_scoped_release released;
    call = db.empty() ? measure_in_memory(o, inputs, thetas, hooks, threads)
                      : measure_recorded(o, db, resume, hooks, threads);
  } catch (const PythonPending&) {
    throw py::error_already_set();
  }
  auto j = result_json(call.result);
  j["resumed_samples"] = call.result.resumed_samples;
  if (call.run != 0) j["stored"] = "run " + std::to_string(call.run) + " in " + db;
  return py::make_tuple(j.dump(), spectra_of(call.records, o.markov), call.run);
}

// Store access: runs, a run's stored result JSON, its spectra, curves recomputed.
py::list store_runs(const std::string& path) {
  ResultsStore store(path, /*create=*/false, /*read_only=*/true);
  py::list out;
  for (const auto& r : store.runs()) {
    py::dict d;
    d["id"] = r.id, d["kind"] = r.kind, d["status"] = r.status, d["label"] = r.label;
    d["config"] = r.config, d["created"] = r.created, d["updated"] = r.updated, d["parent"] = r.parent;
    d["num_samples"] = r.num_samples, d["message"] = r.message, d["result"] = r.result;
    out.append(d);
  }
  return out;
}

py::tuple store_spectra(const std::string& path, int64_t run) {
  ResultsStore store(path, false, true);
  SpectraHeader header;
  const auto records = stored_samples(store, run, &header);
  py::list indices;
  for (const auto& r : records) indices.append(r.index);
  return py::make_tuple(spectra_of(records, header.markov), indices);
}

std::string store_recompute(const std::string& path, int64_t run, const py::dict& opts) {
  ResultsStore store(path, false, true);
  EstimatorOptions e = stored_estimator_options(store, run);
  if (opts.contains("eps")) e.eps = opts["eps"].cast<std::vector<double>>();
  if (opts.contains("zetas")) e.zetas = opts["zetas"].cast<std::vector<double>>();
  if (opts.contains("n")) e.at_n = opts["n"].cast<std::vector<double>>();
  if (opts.contains("ed_n")) e.ed_n = opts["ed_n"].cast<std::vector<double>>();
  if (opts.contains("bootstrap")) e.bootstrap = opts["bootstrap"].cast<int64_t>();
  validate_estimator_options(e);
  auto j = result_json(stored_measure(store, run, e));
  return j.dump();
}

// The generalisation estimate (docs/math.md section 6) of a stored measurement: d_zeta(eps)
// from its spectra, minimised over eps in [lo, hi], for every (zeta, n), zeta outermost.
py::list store_bound(const std::string& path, int64_t run, const std::vector<double>& ns, std::vector<double> zetas,
                     double loss_bound, double lipschitz, double delta, double lo, double hi, bool lower) {
  ResultsStore store(path, false, true);
  const BoundOptions b{loss_bound, lipschitz, delta};
  validate_bound_options(b);
  const auto info = store.run(run);
  if (info.kind != "measure")
    throw DataError(path + ": run " + std::to_string(run) + " is a " + info.kind + " run, not a measurement");
  const auto config = nlohmann::json::parse(info.config);
  if (zetas.empty()) zetas = config.at("zetas").get<std::vector<double>>();
  SpectraHeader header;
  const auto records = stored_samples(store, run, &header);
  if (records.empty()) throw DataError(path + ": run " + std::to_string(run) + " has no finished samples");
  std::vector<SampleSpectrum> merged;
  for (const auto& r : records) merged.push_back(merge_spectra(r.blocks));
  const Cover cover = config.value("cover", "box") == "box" ? Cover::Box : Cover::Ellipsoid;
  const TwoScaleFunction dimension(merged, header.num_params, cover,
                                   header.markov && lower ? Aggregate::Mean : Aggregate::LogMeanExp);
  py::list out;
  for (double zeta : zetas)
    for (double n : ns) {
      const auto g = minimize_gap_continuous([&](double eps) { return dimension(zeta, eps); }, n, lo, hi, b);
      py::dict d;
      d["zeta"] = zeta, d["n"] = g.n, d["eps"] = g.eps, d["dimension"] = g.dimension;
      d["lipschitz_term"] = g.lipschitz_term, d["complexity_term"] = g.complexity_term, d["gap"] = g.gap;
      d["at_grid_edge"] = g.at_grid_edge;
      out.append(d);
    }
  return out;
}

void register_errors(py::module_& m) {
  static py::exception<DataError> data_error(m, "DataError", PyExc_ValueError);
  static py::exception<OptionError> option_error(m, "OptionError", PyExc_ValueError);
  option_error_type = option_error.ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const OptionError& e) {
      py::tuple args = py::make_tuple(e.what(), e.option(), e.rule());
      PyErr_SetObject(option_error_type, args.ptr());
    } catch (const UsageError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const DataError& e) {
      data_error(e.what());
    }
  });
}

}  // namespace

PYBIND11_MODULE(_twosed, m) {
  m.doc() = "The twosed engine (use the package `twosed`, not this module).";
  register_errors(m);
  m.attr("version") = TWOSED_VERSION;
  m.def("measure", &measure_entry, py::arg("options"), py::arg("inputs"), py::arg("thetas"), py::arg("db"),
        py::arg("resume"), py::arg("progress"), py::arg("threads"));
  m.def("store_runs", &store_runs);
  m.def("store_spectra", &store_spectra);
  m.def("store_recompute", &store_recompute);
  m.def("store_bound", &store_bound);
  m.attr("bound_caveat") = kBoundCaveat;
  m.def("default_eps_grid", &default_eps_grid);
  // The address of the engine's tensor over an array (tests: inputs are not copied).
  m.def("_address", [](const DoubleArray& a) { return reinterpret_cast<uintptr_t>(view_of(a).data_ptr()); });
  m.def("hardware_threads", [] { return static_cast<int>(std::thread::hardware_concurrency()); });
}
