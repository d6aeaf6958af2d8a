// The Markov chain model's block Fisher spectra (docs/math.md sections 2 and 7): per-unit blocks of the
// hidden layers, the standard-model block of the output layer.
#include "twosed/fisher/markov.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

#include "fisher/unit_blocks.h"
#include "linalg/linalg.h"
#include "model/layers/layer.h"
#include "twosed/error.h"
#include "twosed/fisher/fisher.h"
#include "twosed/random.h"

namespace twosed {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One unit's block: its kept eigenvalues, trace and how it was solved.
struct UnitResult {
  std::vector<double> kept;
  double trace = 0.0;
  int64_t cut = 0, size = 0;
  bool solved = false, samples_side = false;
  double seconds_products = 0.0, seconds_eigen = 0.0;
};

// The per-unit blocks of one hidden layer (docs/math.md section 2). For unit c, the Jacobian rows are
// P_c[(i,p), :] = sum_k w[i,c,p,k] * design[i, idx[i,c,p,k], :], and A_c = scale * P_c^T P_c.
class UnitBlocks {
 public:
  UnitBlocks(const layers::ChannelMap& map, const torch::Tensor& design, double scale, const FisherOptions& opts,
             const UnitColumns& columns)
      : idx_(map.index.contiguous()), w_(map.weight.contiguous()), scale_(scale), opts_(opts) {
    rows_ = idx_.size(0);
    units_ = idx_.size(1);
    positions_ = idx_.size(2);
    terms_ = idx_.size(3);
    // (N, Q, D) shared by all units, or (N, G, Q, D): one design per group of units.
    design_ = (design.dim() == 3 ? design.unsqueeze(1) : design).contiguous();
    groups_ = design_.size(1);
    q_ = design_.size(2);
    dim_ = design_.size(3);
    if (columns.unit_scale.defined()) unit_scale_ = columns.unit_scale.to(torch::kFloat64).contiguous();
    if (columns.extra.defined()) {
      extra_ = columns.extra.to(torch::kFloat64).contiguous();
      extras_ = extra_.size(3);
    }
    width_ = dim_ + extras_;
    // A Linear layer's units share the inputs' Gram matrix (docs/math.md section 7): the sample-side
    // block of unit c is then diag(w_c) G diag(w_c), no product per unit.
    if (q_ == 1 && positions_ == 1 && terms_ == 1 && groups_ == 1 && extras_ == 0 && !unit_scale_.defined() &&
        opts.side != GramSide::Parameters) {
      gram_ = torch::empty({rows_, rows_}, design_.options());
      linalg::syrk_lower(design_.view({rows_, dim_}), gram_, 1.0, 0.0);
    }
  }

  UnitResult solve(int64_t c) const {
    UnitResult out;
    const auto t0 = Clock::now();
    // Rows (i, p) of P_c that are not identically zero (e.g. inactive ReLU units): dropping
    // them removes exact zero eigenvalues only.
    const int64_t* idx = idx_.data_ptr<int64_t>();
    const double* w = w_.data_ptr<double>();
    std::vector<int64_t> active;  // flat (i*P + p)
    for (int64_t i = 0; i < rows_; ++i)
      for (int64_t p = 0; p < positions_; ++p) {
        const double* wr = w + ((i * units_ + c) * positions_ + p) * terms_;
        if (std::any_of(wr, wr + terms_, [](double v) { return v != 0.0; })) active.push_back(i * positions_ + p);
      }
    const int64_t n_act = static_cast<int64_t>(active.size());
    if (n_act == 0) return out;
    const bool samples = linalg::choose_side(opts_.side, n_act, width_) == GramSide::Samples;
    const int64_t m = samples ? n_act : width_;
    std::vector<double> a(static_cast<size_t>(m * m), 0.0);
    const double* design = design_.data_ptr<double>();
    const int64_t group = c / (units_ / groups_);
    // A normalisation after the layer scales the unit's filter and bias columns by a_c.
    const double a_c = unit_scale_.defined() ? unit_scale_.data_ptr<double>()[c] : 1.0;
    const double* extra = extras_ ? extra_.data_ptr<double>() : nullptr;
    auto build_row = [&](int64_t flat, double* dst) {
      const int64_t i = flat / positions_, p = flat % positions_;
      const int64_t base = ((i * units_ + c) * positions_ + p) * terms_;
      std::fill(dst, dst + width_, 0.0);
      for (int64_t k = 0; k < terms_; ++k) {
        const double wk = w[base + k];
        if (wk == 0.0) continue;
        const double* src = design + ((i * groups_ + group) * q_ + idx[base + k]) * dim_;
        for (int64_t e = 0; e < dim_; ++e) dst[e] += wk * a_c * src[e];
        if (!extra) continue;
        const double* ex = extra + ((i * units_ + c) * q_ + idx[base + k]) * extras_;
        for (int64_t e = 0; e < extras_; ++e) dst[dim_ + e] += wk * ex[e];
      }
    };
    if (samples && gram_.defined()) {
      const double* g = gram_.data_ptr<double>();
      for (int64_t r = 0; r < n_act; ++r) {
        const double wr = w[(active[r] * units_ + c)] * scale_;
        for (int64_t s = 0; s <= r; ++s)
          a[r * m + s] = wr * w[active[s] * units_ + c] * g[active[r] * rows_ + active[s]];
      }
    } else {
      // Rows of P_c in chunks within the memory budget; samples side needs them all at once.
      const int64_t chunk =
          samples ? n_act : std::clamp<int64_t>(opts_.memory_budget / std::max<int64_t>(width_ * 8, 1), 1, n_act);
      std::vector<double> x(static_cast<size_t>(chunk * width_));
      for (int64_t r0 = 0; r0 < n_act; r0 += chunk) {
        const int64_t cnt = std::min(chunk, n_act - r0);
        for (int64_t r = 0; r < cnt; ++r) build_row(active[r0 + r], &x[r * width_]);
        linalg::syrk_lower(x.data(), m, samples ? width_ : cnt, /*trans=*/!samples, scale_, 1.0, a.data());
      }
    }
    for (int64_t r = 0; r < m; ++r) out.trace += a[r * m + r];
    const auto t1 = Clock::now();
    out.seconds_products = std::chrono::duration<double>(t1 - t0).count();
    // Spec section 5's zero cutoff, relative to this block's largest eigenvalue.
    auto cs = linalg::zero_cutoff(linalg::symmetric_eigenvalues(a.data(), m, /*uplo=*/'U'), opts_.cutoff);
    out.seconds_eigen = seconds_since(t1);
    out.kept = std::move(cs.kept);
    out.cut = cs.cut;
    out.size = m;
    out.solved = true;
    out.samples_side = samples;
    return out;
  }

  int64_t units() const { return units_; }

 private:
  torch::Tensor idx_, w_, design_, gram_, unit_scale_, extra_;
  double scale_;
  FisherOptions opts_;
  int64_t rows_ = 0, units_ = 0, positions_ = 0, terms_ = 0, groups_ = 1, q_ = 0, dim_ = 0, extras_ = 0, width_ = 0;
};

}  // namespace

LayerBlockSpectrum unit_block_spectrum(const layers::ChannelMap& map, const torch::Tensor& design, double scale,
                                       const FisherOptions& opts, const UnitColumns& columns) {
  const UnitBlocks blocks(map, design, scale, opts, columns);
  const int64_t units = blocks.units();
  std::vector<UnitResult> results(static_cast<size_t>(units));
  {
    linalg::SingleThreadedBlas guard;
    const int threads = static_cast<int>(std::min<int64_t>(std::max(guard.saved(), 1), units));
    std::atomic<int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&] {
      try {
        for (int64_t c; (c = next++) < units;) results[static_cast<size_t>(c)] = blocks.solve(c);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = units;
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
  }
  LayerBlockSpectrum out;
  for (const auto& r : results) {
    out.spectrum.trace += r.trace;
    out.cpu_seconds_products += r.seconds_products;
    out.cpu_seconds_eigen += r.seconds_eigen;
    if (!r.solved) continue;
    out.spectrum.eigenvalues.insert(out.spectrum.eigenvalues.end(), r.kept.begin(), r.kept.end());
    out.spectrum.num_cut += r.cut;
    ++out.blocks;
    (r.samples_side ? out.blocks_samples_side : out.blocks_parameter_side) += 1;
    out.largest_block = std::max(out.largest_block, r.size);
  }
  return out;
}

namespace {

std::string describe_layers(const ModelSpec& spec, int64_t first, int64_t last) {
  std::vector<std::string> parts;
  for (int64_t l = first; l < last; ++l) {
    const auto& ls = spec.layers[static_cast<size_t>(l)];
    parts.push_back(layers::descriptor(ls.kind).describe(ls));
  }
  const auto& out = spec.layers[static_cast<size_t>(last - 1)].out_shape;
  if (out.size() > 1) parts.back() += fmt::format(" -> {}", fmt::join(out, "x"));
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

SampleSpectrum MarkovSpectrum::merged() const {
  std::vector<SampleSpectrum> blocks;
  for (const auto& l : layers) blocks.push_back(l.spectrum);
  return merge_spectra(blocks);
}

MarkovChainModel::MarkovChainModel(const Network& net, MarkovOptions opts) : net_(&net), opts_(std::move(opts)) {
  if (!(opts_.sigma > 0 && std::isfinite(opts_.sigma)))
    throw OptionError("MarkovOptions.sigma", fmt::format("must be a finite number > 0, got {}", opts_.sigma));
  // The Fisher divides by sigma^2, which must be a normal float64 (sigma^2 >= ~2.2e-308).
  if (opts_.sigma < 1e-150)
    throw OptionError("MarkovOptions.sigma",
                      fmt::format("must be >= 1e-150 (sigma^2 must be a normal float64), got {}", opts_.sigma));
  if (opts_.noise_draws < 1)
    throw OptionError("MarkovOptions.noise_draws", fmt::format("must be >= 1, got {}", opts_.noise_draws));
  const auto& spec = net.spec();
  std::vector<int64_t> starts;
  for (size_t l = 0; l < spec.layers.size(); ++l)
    if (spec.layers[l].is_parametric()) starts.push_back(static_cast<int64_t>(l));
  if (starts.empty()) throw UsageError(fmt::format("model '{}' has no parametric layer", spec.text));
  for (size_t s = 0; s < starts.size(); ++s) {
    MarkovLayer ml;
    ml.first = starts[s];
    ml.last = s + 1 < starts.size() ? starts[s + 1] : static_cast<int64_t>(spec.layers.size());
    ml.hidden = s + 1 < starts.size();
    // A hidden block splits into unit blocks only if what follows the parametric layer keeps
    // every value in its channel (docs/math.md section 2).
    for (int64_t l = ml.first + 1; ml.hidden && l < ml.last; ++l) {
      const auto& t = spec.layers[static_cast<size_t>(l)];
      if (!layers::descriptor(t.kind).channelwise())
        throw UsageError(fmt::format(
            "model '{}': layer {} '{}' does not act channel by channel, so the Markov chain model cannot split "
            "the layer before it into unit blocks",
            spec.text, l + 1, t.token));
    }
    const auto& p = spec.layers[static_cast<size_t>(ml.first)];
    ml.params = p.num_params();
    ml.param_offset = net.param_offset(ml.first);
    ml.units = ml.hidden ? p.out : 1;
    for (const auto& slice : net.parameters())
      if (slice.layer == ml.first) {
        ml.name = slice.name.substr(0, slice.name.find('.'));
        break;
      }
    ml.description = describe_layers(spec, ml.first, ml.last);
    if (ml.hidden) {
      ml.noise_width = 1;
      for (int64_t v : spec.layers[static_cast<size_t>(ml.last - 1)].out_shape) ml.noise_width *= v;
      ml.noise_offset = noise_width_;
      noise_width_ += ml.noise_width;
    }
    layers_.push_back(std::move(ml));
  }
  const auto& out = layers_.back();
  ModelSpec sub;
  sub.text = out.description;
  sub.input_shape = spec.layers[static_cast<size_t>(out.first)].in_shape;
  sub.layers.assign(spec.layers.begin() + out.first, spec.layers.begin() + out.last);
  output_net_ = std::make_unique<Network>(std::move(sub));
}

MarkovChainModel::~MarkovChainModel() = default;
MarkovChainModel::MarkovChainModel(MarkovChainModel&&) noexcept = default;

template <typename Visit>
void MarkovChainModel::walk(const torch::Tensor& theta, const torch::Tensor& x, const torch::Tensor& noise,
                            Visit&& visit) const {
  check_theta(*net_, theta);
  const int64_t n = x.size(0), r = opts_.noise_draws;
  if (noise.dim() != 2 || noise.size(0) != n * r || noise.size(1) != noise_width_)
    throw UsageError(fmt::format("Markov noise must have shape ({}, {}) (N*R rows, H columns), got ({})", n * r,
                                 noise_width_, fmt::join(noise.sizes(), ", ")));
  torch::NoGradGuard no_grad;
  torch::Tensor cur = x;
  // Non-parametric layers before the first parametric one only transform the inputs.
  for (int64_t l = 0; l < layers_.front().first; ++l) cur = net_->layer(l).forward(cur, {});
  for (size_t li = 0; li < layers_.size(); ++li) {
    const auto& ml = layers_[li];
    auto y = visit(li, cur, theta.narrow(0, ml.param_offset, ml.params));
    if (!ml.hidden) break;
    // Layer 1's inputs are the same for all R draws, so its block uses the N inputs once (the
    // same matrix); from here on every row is one draw of one input, i*R + r.
    if (y.size(0) != n * r) y = y.repeat_interleave(r, 0);
    cur = y + opts_.sigma * noise.narrow(1, ml.noise_offset, ml.noise_width).reshape(y.sizes());
  }
}

MarkovSpectrum MarkovChainModel::spectrum(const torch::Tensor& theta, const torch::Tensor& x,
                                          const torch::Tensor& noise, uint64_t rng_index,
                                          const std::function<void(size_t)>& after_layer) const {
  MarkovSpectrum out;
  walk(theta, x, noise, [&](size_t li, const torch::Tensor& in, const torch::Tensor& params) {
    const auto t0 = Clock::now();
    const auto& ml = layers_[li];
    torch::Tensor y;
    LayerBlockSpectrum block;
    if (ml.hidden) {
      const auto& param_layer = net_->layer(ml.first);
      std::vector<torch::Tensor> acts{param_layer.forward(in, params)};
      auto map = layers::ChannelMap::identity(acts[0]);
      for (int64_t l = ml.first + 1; l < ml.last; ++l) {
        acts.push_back(net_->layer(l).forward(acts.back(), {}));
        map = net_->layer(l).map_channels(map, acts[acts.size() - 2], acts.back());
      }
      y = acts.back();
      acts.clear();
      const double scale = 1.0 / (static_cast<double>(in.size(0)) * opts_.sigma * opts_.sigma);
      block = unit_block_spectrum(map, param_layer.design_rows(in), scale, opts_.fisher);
      map = {};
    } else {
      auto fs = fisher_spectrum(*output_net_, params, in, opts_.fisher, rng_index);
      block.spectrum = std::move(fs.spectrum);
      block.blocks = 1;
      (fs.side == GramSide::Samples ? block.blocks_samples_side : block.blocks_parameter_side) = 1;
      block.largest_block = fs.matrix_size;
    }
    block.seconds = seconds_since(t0);
    out.layers.push_back(std::move(block));
    if (after_layer) after_layer(li);
    return y;
  });
  return out;
}

std::vector<MarkovLayerPlan> MarkovChainModel::plan(int64_t num_inputs, int threads) const {
  const auto& spec = net_->spec();
  const double b = sizeof(double);
  std::vector<MarkovLayerPlan> out;
  for (size_t li = 0; li < layers_.size(); ++li) {
    const auto& ml = layers_[li];
    const auto& p = spec.layers[static_cast<size_t>(ml.first)];
    MarkovLayerPlan lp;
    lp.rows = li == 0 ? num_inputs : num_inputs * opts_.noise_draws;
    const double rows = static_cast<double>(lp.rows);
    double acts = 0;
    for (int64_t l = ml.first; l < ml.last; ++l) {
      double size = 1;
      for (int64_t v : spec.layers[static_cast<size_t>(l)].out_shape) size *= static_cast<double>(v);
      acts += rows * size * b;
    }
    if (!ml.hidden) {
      const int64_t k = p.out;
      const int64_t per =
          opts_.fisher.kind == FisherKind::Sampled ? 1 : (opts_.fisher.task == Task::Classify ? k - 1 : k);
      lp.blocks = 1;
      lp.block_rows = lp.rows * per;
      lp.block_params = ml.params;
      lp.matrix = std::min(lp.block_rows, lp.block_params);
      const double m = static_cast<double>(lp.matrix);
      lp.bytes = acts + 3 * m * m * b + static_cast<double>(opts_.fisher.memory_budget);
      out.push_back(lp);
      continue;
    }
    // Positions of z (the parametric layer's output) and of the layer's output, per channel;
    // some layers (average pooling) multiply the terms per output position.
    const auto& type = layers::descriptor(p.kind);
    const double q = static_cast<double>(type.positions_per_channel(p));
    double out_size = 1, terms = 1;
    for (int64_t v : spec.layers[static_cast<size_t>(ml.last - 1)].out_shape) out_size *= static_cast<double>(v);
    for (int64_t l = ml.first + 1; l < ml.last; ++l) {
      const auto& t = spec.layers[static_cast<size_t>(l)];
      terms *= static_cast<double>(layers::descriptor(t.kind).map_terms(t));
    }
    const double positions = out_size / static_cast<double>(p.out);
    lp.blocks = p.out;
    lp.block_rows = lp.rows * static_cast<int64_t>(positions);
    lp.block_params = p.fan_in() + (p.bias ? 1 : 0);
    lp.matrix = std::min(lp.block_rows, lp.block_params);
    const double dim = static_cast<double>(lp.block_params), m = static_cast<double>(lp.matrix);
    // The identity map and the composed map (index and weight), the design rows, and per thread
    // one block with its rows (capped by the memory budget on the parameter side).
    const double maps = 2 * rows * static_cast<double>(p.out) * std::max(q, positions * terms) * 2 * b;
    const double design = rows * q * dim * b;
    const double x_rows = std::min(static_cast<double>(lp.block_rows) * dim * b,
                                   std::max(m * dim * b, static_cast<double>(opts_.fisher.memory_budget)));
    lp.bytes = acts + maps + design + threads * (2 * m * m * b + x_rows);
    if (type.shares_input_gram()) lp.bytes += rows * rows * b;  // the shared Gram
    out.push_back(lp);
  }
  return out;
}

std::vector<torch::Tensor> MarkovChainModel::dense_blocks(const torch::Tensor& theta, const torch::Tensor& x,
                                                          const torch::Tensor& noise, uint64_t rng_index) const {
  std::vector<torch::Tensor> out;
  walk(theta, x, noise, [&](size_t li, const torch::Tensor& in, const torch::Tensor& params) {
    const auto& ml = layers_[li];
    if (!ml.hidden) {
      torch::AutoGradMode grad(true);
      out.push_back(dense_fisher(*output_net_, params, in, opts_.fisher, rng_index));
      return torch::Tensor();
    }
    torch::AutoGradMode grad(true);
    auto p = params.detach().clone().requires_grad_(true);
    auto y = net_->layer(ml.first).forward(in, p);
    for (int64_t l = ml.first + 1; l < ml.last; ++l) y = net_->layer(l).forward(y, {});
    const int64_t rows = y.size(0);
    auto flat = y.reshape({rows, -1});
    auto fisher = torch::zeros({ml.params, ml.params}, theta.options());
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t e = 0; e < flat.size(1); ++e) {
        auto g = torch::autograd::grad({flat[i][e]}, {p}, {}, /*retain_graph=*/true, false, /*allow_unused=*/true)[0];
        if (g.defined()) fisher.add_(torch::outer(g, g));
      }
    out.push_back(fisher / (static_cast<double>(rows) * opts_.sigma * opts_.sigma));
    return y.detach();
  });
  return out;
}

torch::Tensor draw_noise(uint64_t seed, uint64_t j, int64_t num_params, int64_t rows, int64_t width) {
  Rng rng(seed, Stream::Parameters, j);
  for (int64_t i = 0; i < num_params; ++i) rng.next();  // theta^(j)'s d uniforms come first
  auto noise = torch::empty({rows, width}, torch::kFloat64);
  double* p = noise.data_ptr<double>();
  for (int64_t i = 0; i < rows * width; ++i) p[i] = rng.normal();
  return noise;
}

}  // namespace twosed
