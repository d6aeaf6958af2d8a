// `twosed train`: options -> twosed::record_training -> a training curve and a checkpoint.
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <thread>

#include "commands.h"
#include "reports.h"
#include "twosed/data/npy.h"
#include "twosed/data/write_file.h"
#include "twosed/error.h"
#include "twosed/execution.h"
#include "twosed/measure/measure.h"
#include "twosed/store/runs.h"

namespace twosed::cli {

namespace {

struct TrainParams {
  std::string model = "mlp:784-64-10", act = "relu", task = "classify", data, test_data, optimizer = "adam";
  bool no_bias = false, standardize = false, log_steps = false, quiet = false, no_db = false;
  double test_fraction = 0.0, lr = 1e-3, momentum = 0.0, weight_decay = 0.0;
  int64_t train_size = 0, test_size = 0, batch = 64, epochs = 10;
  int threads = 0;
  std::string seed = "0", checkpoint, db = kDefaultResultsDb, format = "table", out, plot, init;
};

// The training configuration the flags ask for; `--init` read and checked against the model.
TrainConfig train_config_from(const TrainParams& p, const ModelSpec& spec, const ModelOptions& options, Task task) {
  TrainConfig cfg;
  cfg.model = p.model;
  cfg.model_options = options;
  const uint64_t seed = parse_seed(p.seed, "--seed");
  cfg.data = {p.data, p.test_data, p.test_fraction, p.train_size, p.test_size, p.standardize, task, seed};
  auto& t = cfg.train;
  t.optimizer = p.optimizer;
  t.lr = p.lr;
  t.momentum = p.momentum;
  t.weight_decay = p.weight_decay;
  t.batch = p.batch;
  t.epochs = p.epochs;
  t.seed = seed;
  t.task = task;
  t.log_steps = p.log_steps;
  if (!p.init.empty()) {
    auto arr = read_npy(p.init);
    if (static_cast<int64_t>(arr.data.size()) != spec.num_params())
      throw DataError(fmt::format("{}: {} values, but model '{}' has d = {} parameters", p.init, arr.data.size(),
                                  spec.text, spec.num_params()));
    CheckpointInfo ci;
    if (read_checkpoint_info(p.init, ci)) check_checkpoint_matches(p.init, ci, spec, options, task);
    check_checkpoint_values(p.init, arr.data);
    t.initial_theta = std::move(arr.data);
  }
  return cfg;
}

// The report in the format asked for.
std::string train_report(const TrainParams& p, const TrainConfig& cfg, const ModelSpec& spec,
                         const RecordedTraining& rec, const std::string& stored) {
  RunInfo info;
  info.id = rec.run;
  info.label = spec.text;
  info.status = "done";
  if (p.format == "json") {
    auto j = training_json(info, rec.result.records);
    j["config"] = nlohmann::json::parse(train_config(cfg));
    j["data"] = rec.data_description;
    j["checkpoint"] = p.checkpoint;
    j["stored"] = stored;
    return j.dump(2) + "\n";
  }
  if (p.format == "csv") return training_csv(rec.result.records);
  const auto& t = cfg.train;
  const auto& f = rec.result.final_record;
  std::string text =
      fmt::format("twosed train: {} (d = {}), {}{} lr {:g}, batch {}, {} epochs, seed {}\n  data  {}\n\n", spec.text,
                  spec.num_params(), t.optimizer, t.optimizer == "sgd" ? fmt::format(" momentum {:g}", t.momentum) : "",
                  t.lr, t.batch, t.epochs, t.seed, rec.data_description) +
      training_table(info, rec.result.records) +
      fmt::format("\n  final train loss {:.6g}{}; {} steps in {:.1f} s\n", f.train_loss,
                  std::isnan(f.test_loss) ? "" : fmt::format(", test loss {:.6g}", f.test_loss), rec.result.steps,
                  rec.result.seconds);
  if (!p.checkpoint.empty())
    text += fmt::format("  checkpoint {} (+ {})\n", p.checkpoint, checkpoint_sidecar(p.checkpoint));
  if (!stored.empty()) text += "  stored as " + stored + "\n";
  return text;
}

int run_train(const TrainParams& p) {
  if (p.format != "table" && p.format != "json" && p.format != "csv")
    throw UsageError(fmt::format("--format {}: expected table, json or csv", p.format));
  ModelOptions options;
  options.activation = parse_activation(p.act, "--act");
  options.bias = !p.no_bias;
  if (p.task != "classify" && p.task != "regress")
    throw UsageError(fmt::format("--task {}: expected classify or regress", p.task));
  const Task task = p.task == "classify" ? Task::Classify : Task::Regress;
  const auto spec = parse_model_spec(p.model, options);
  auto cfg = train_config_from(p, spec, options, task);
  ScopedThreads threads(checked_threads(p.threads, "--threads"));
  const bool show = !p.quiet && ::isatty(2);
  // The default-data notice with the first record (the data are loaded by then), so that an
  // error before it stays the only line.
  cfg.train.on_record = [show, noted = false, data = p.data, model = cfg.model,
                         mo = cfg.model_options](const TrainingRecord& r) mutable {
    if (!noted) note_default_data(data, model, mo), noted = true;
    if (!show || r.step >= 0) return;
    std::fprintf(stderr, "  epoch %lld: train loss %.5g%s  (%.1f s)\n", static_cast<long long>(r.epoch), r.train_loss,
                 std::isnan(r.test_loss) ? "" : fmt::format(", test loss {:.5g}", r.test_loss).c_str(), r.seconds);
  };
  // Fail on a bad checkpoint path before training, not after.
  if (!p.checkpoint.empty() && p.checkpoint.size() < 5)
    throw UsageError(fmt::format("--checkpoint {}: expected a file name ending in .npy", p.checkpoint));
  if (!p.checkpoint.empty()) check_writable(p.checkpoint, "checkpoint");
  if (!p.out.empty()) check_writable(p.out, "output");
  if (!p.plot.empty()) {
    plot_extension(p.plot);
    check_writable(p.plot, "figure");
  }
  RecordedTraining rec;
  std::string stored;
  if (p.no_db) {
    rec = in_stage("training", [&] { return run_training(cfg); });
  } else {
    ResultsStore store(p.db);
    rec = in_stage("training", [&] { return record_training(store, cfg, {}); });
    stored = fmt::format("run {} in {}", rec.run, p.db);
  }
  if (!rec.result.diverged.empty())  // no checkpoint or report of a diverged state
    throw DataError(rec.result.diverged + (stored.empty() ? "" : "; recorded as " + stored));
  if (!p.checkpoint.empty())
    write_checkpoint(p.checkpoint, {spec.text, cfg.model_options, task, spec.num_params()}, rec.result.theta);
  write_output(train_report(p, cfg, spec, rec, stored), p.out);
  if (!p.plot.empty()) write_training_plot({{spec.text, rec.result.records}}, p.plot);
  return 0;
}

}  // namespace

Runner add_train_command(CLI::App& app) {
  auto p = std::make_shared<TrainParams>();
  auto* cmd = app.add_subcommand("train", "Train a model on a data set (Adam or SGD, float64, deterministic per seed)");
  cmd->add_option("--model", p->model, "Model spec (default: mlp:784-64-10)");
  cmd->add_option("--act", p->act, "Activation between mlp layers (default: relu)");
  cmd->add_flag("--no-bias", p->no_bias, "Layers without bias");
  cmd->add_option("--task", p->task, "classify (cross-entropy) | regress (squared error / 2) (default: classify)");
  cmd->add_option("--data", p->data, "Training data source (default: Fashion-MNIST for 784 inputs, else blobs)");
  cmd->add_option("--test-data", p->test_data,
                  "Test data source (default: an idx:DIR's t10k files, else --test-fraction, else none)");
  cmd->add_option("--test-fraction", p->test_fraction, "Hold out this fraction of --data as the test set");
  cmd->add_option("--train-size", p->train_size, "Use a seeded subset of this many training examples");
  cmd->add_option("--test-size", p->test_size, "Use a seeded subset of this many test examples");
  cmd->add_flag("--standardize", p->standardize, "z-score features with the training set's statistics");
  cmd->add_option("--optimizer", p->optimizer, "adam | sgd (default: adam)");
  cmd->add_option("--lr", p->lr, "Learning rate (default: 1e-3)");
  cmd->add_option("--momentum", p->momentum, "SGD momentum (default: 0)");
  cmd->add_option("--weight-decay", p->weight_decay, "L2 weight decay (default: 0)");
  cmd->add_option("--batch", p->batch, "Minibatch size (default: 64)");
  cmd->add_option("--epochs", p->epochs, "Epochs (default: 10)");
  cmd->add_option("--seed", p->seed, "Seed of the initial parameters, batch order and data subsets (default: 0)");
  cmd->add_option("--init", p->init, "Start from this checkpoint (.npy of d values) instead of the init box");
  cmd->add_flag("--log-steps", p->log_steps, "Also record the loss of every optimiser step");
  cmd->add_option("--threads", p->threads, "Threads (default: the number of cores)");
  cmd->add_option("--checkpoint", p->checkpoint,
                  "Save the trained parameters here (.npy, named_parameters() order) with a .json sidecar; "
                  "'--space local:CKPT:R' and '--thetas' accept it");
  auto* db = cmd->add_option("--db", p->db, "Results database (default: twosed.db)");
  cmd->add_flag("--no-db", p->no_db, "Do not record the run")->excludes(db);
  cmd->add_option("--format", p->format, "table | json | csv (default: table)");
  cmd->add_option("--out", p->out, "Write the curve to this file instead of stdout");
  cmd->add_option("--plot", p->plot, "Also draw the loss curves (.png or .svg)");
  cmd->add_flag("--quiet,-q", p->quiet, "No per-epoch progress on stderr");
  cmd->footer(R"(Examples:
  twosed train --model mlp:784-64-10 --epochs 5 --checkpoint fm64.npy
  twosed measure --model mlp:784-64-10 --space local:fm64.npy:0.01
  twosed train --model mlp:54-32-7 --data synthetic:covertype:20000 --standardize --test-fraction 0.2 \
               --optimizer sgd --lr 0.05 --momentum 0.9 --batch 128 --epochs 20 --plot loss.png)");
  return [p]() { return run_train(*p); };
}

}  // namespace twosed::cli
