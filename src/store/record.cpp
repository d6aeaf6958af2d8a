// Measurements and training runs recorded in the results store as they are computed: every
// sample and training record committed as soon as it exists (LibTorch side; runs.cpp has the
// rest of runs.h).
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

#include "runs_detail.h"
#include "twosed/error.h"
#include "twosed/measure/result_json.h"
#include "twosed/model/network.h"
#include "twosed/store/runs.h"

namespace twosed {

using nlohmann::json;

RecordedMeasurement record_measure(ResultsStore& store, MeasureOptions opts, const RecordOptions& ropts,
                                   const ExecutionContext& ctx) {
  const auto config = measure_config(opts);
  RecordedMeasurement out;
  std::string stored_header;
  if (ropts.resume) {
    const auto info = find_resumable(store, "measure", config, ropts);
    // Extending a run to more samples reopens it (even finished) under the new configuration.
    const bool extend = info.config != config;
    claim_run(store, info.id, extend, extend ? config : "");
    out.run = info.id;  // ours from here on
    stored_header = store.get_text(out.run, "header").value_or("");
    opts.completed = stored_samples(store, out.run);
    if (ropts.on_run) ropts.on_run(out.run, static_cast<int64_t>(opts.completed.size()));
  }
  auto user_start = opts.on_start;
  opts.on_start = [&](const SpectraHeader& h) {
    const auto text = spectra_header_json(h);
    if (out.run == 0) {
      out.run = store.create_run("measure", ropts.label.empty() ? h.model : ropts.label, config, ropts.parent);
      mark_process(store, out.run);
      store.put_text(out.run, "header", text);
      if (ropts.on_run) ropts.on_run(out.run, 0);
    } else if (stored_header.empty()) {
      store.put_text(out.run, "header", text);
    } else if (stored_header != text) {
      throw DataError(fmt::format(
          "cannot resume run {}: it was computed with another model or other inputs (its header differs: stored {}, "
          "now {})",
          out.run, stored_header, text));
    }
    if (user_start) user_start(h);
  };
  auto user_sample = opts.on_sample;
  opts.on_sample = [&](const SampleRecord& r) {
    store.add_sample(out.run, StoredSample{r.index, sample_stats_json(r), r.blocks});
    if (user_sample) user_sample(r);
  };
  try {
    out.result = run_measure(opts, ctx);
  } catch (const std::exception& e) {
    if (out.run != 0 && owns_run(store, out.run)) {
      std::string msg = e.what();
      store.fail_run(out.run, msg.substr(0, msg.find('\n')));
    }
    throw;
  }
  store.finish_run(out.run, result_json(out.result).dump());
  return out;
}

RecordedTraining run_training(const TrainConfig& cfg) {
  validate(cfg.train);  // before loading data
  const auto spec = parse_model_spec(cfg.model, cfg.model_options);
  Network net(spec);
  const auto data = load_training_data(cfg.data, spec, cfg.model_options);
  RecordedTraining out;
  out.data_description = data.description;
  out.result = train_network(net, data.train, data.test.size() > 0 ? &data.test : nullptr, cfg.train);
  return out;
}

RecordedTraining record_training(ResultsStore& store, const TrainConfig& cfg, const RecordOptions& ropts) {
  validate(cfg.train);  // before loading data and creating a run
  const auto config = train_config(cfg);
  const auto spec = parse_model_spec(cfg.model, cfg.model_options);
  Network net(spec);
  auto data = load_training_data(cfg.data, spec, cfg.model_options);
  RecordedTraining out;
  out.data_description = data.description;
  out.run = store.create_run("train", ropts.label.empty() ? spec.text : ropts.label, config, ropts.parent);
  mark_process(store, out.run);
  store.put_text(out.run, "data", data.description);
  TrainOptions topts = cfg.train;
  auto user_record = topts.on_record;
  // Step records are committed with their epoch's record: one transaction (and fsync) per
  // epoch, not per optimiser step.
  std::vector<TrainingRecord> pending;
  topts.on_record = [&](const TrainingRecord& r) {
    pending.push_back(r);
    if (r.step < 0) {
      store.add_training_records(out.run, pending);
      pending.clear();
    }
    if (user_record) user_record(r);
  };
  try {
    out.result = train_network(net, data.train, data.test.size() > 0 ? &data.test : nullptr, topts);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    store.fail_run(out.run, msg.substr(0, msg.find('\n')));
    throw;
  }
  store.put_array(out.run, "theta", out.result.theta);
  const auto& f = out.result.final_record;
  auto num = [](double v) { return std::isnan(v) ? json(nullptr) : json(v); };
  store.finish_run(out.run, json{{"train_loss", num(f.train_loss)},
                                 {"train_accuracy", num(f.train_accuracy)},
                                 {"test_loss", num(f.test_loss)},
                                 {"test_accuracy", num(f.test_accuracy)},
                                 {"epochs", f.epoch},
                                 {"steps", out.result.steps},
                                 {"seconds", out.result.seconds},
                                 {"d", net.num_params()},
                                 {"diverged", out.result.diverged.empty() ? json(nullptr) : json(out.result.diverged)}}
                                .dump());
  return out;
}

}  // namespace twosed
