#include "mpi/codec.h"

#include <fmt/format.h>

namespace twosed::mpi {

void Writer::put_string(const std::string& s) {
  put<uint64_t>(s.size());
  bytes_.insert(bytes_.end(), s.begin(), s.end());
}

std::string Reader::get_string() {
  const auto n = get<uint64_t>();
  need(n);
  std::string s(p_, n);
  p_ += n;
  return s;
}

void Reader::need(size_t n) const {
  if (n > static_cast<size_t>(end_ - p_))
    throw DataError(fmt::format("{}: message ends early ({} bytes left, {} needed)", what_, end_ - p_, n));
}

void encode_record(Writer& w, const SampleRecord& r) {
  w.put<int64_t>(r.index);
  w.put<int32_t>(static_cast<int32_t>(r.side));
  const auto& s = r.summary;
  for (int64_t v : {s.matrix_size, s.kept, s.cut}) w.put<int64_t>(v);
  for (double v : {s.trace, s.largest, s.most_negative, s.seconds_forward_backward, s.seconds_gram, s.seconds_eigen})
    w.put<double>(v);
  w.put<uint64_t>(r.blocks.size());
  for (const auto& b : r.blocks) {
    w.put_vector(b.eigenvalues);
    w.put<double>(b.trace);
    w.put<int64_t>(b.num_cut);
  }
  w.put<uint64_t>(r.costs.size());
  for (const auto& c : r.costs) {
    for (int64_t v : {c.blocks_samples_side, c.blocks_parameter_side, c.largest_block}) w.put<int64_t>(v);
    for (double v : {c.seconds, c.cpu_seconds_products, c.cpu_seconds_eigen}) w.put<double>(v);
  }
}

SampleRecord decode_record(Reader& in) {
  SampleRecord r;
  r.index = in.get<int64_t>();
  r.side = static_cast<GramSide>(in.get<int32_t>());
  auto& s = r.summary;
  for (int64_t* v : {&s.matrix_size, &s.kept, &s.cut}) *v = in.get<int64_t>();
  for (double* v :
       {&s.trace, &s.largest, &s.most_negative, &s.seconds_forward_backward, &s.seconds_gram, &s.seconds_eigen})
    *v = in.get<double>();
  const auto blocks = in.check_count(in.get<uint64_t>(), 24);
  for (uint64_t i = 0; i < blocks; ++i) {
    SampleSpectrum b;
    b.eigenvalues = in.get_vector<double>();
    b.trace = in.get<double>();
    b.num_cut = in.get<int64_t>();
    r.blocks.push_back(std::move(b));
  }
  const auto costs = in.check_count(in.get<uint64_t>(), 48);
  for (uint64_t i = 0; i < costs; ++i) {
    MarkovLayerCost c;
    for (int64_t* v : {&c.blocks_samples_side, &c.blocks_parameter_side, &c.largest_block}) *v = in.get<int64_t>();
    for (double* v : {&c.seconds, &c.cpu_seconds_products, &c.cpu_seconds_eigen}) *v = in.get<double>();
    r.costs.push_back(c);
  }
  return r;
}

namespace {

void encode_layer(Writer& w, const LayerSpec& l) {
  w.put<int32_t>(static_cast<int32_t>(l.kind));
  w.put_string(l.token);
  for (int64_t v : {l.out, l.kernel, l.stride, l.padding}) w.put<int64_t>(v);
  w.put<int32_t>(static_cast<int32_t>(l.activation));
  w.put<uint8_t>(l.bias ? 1 : 0);
  w.put_vector(l.in_shape);
  w.put_vector(l.out_shape);
}

LayerSpec decode_layer(Reader& in) {
  LayerSpec l;
  l.kind = static_cast<LayerKind>(in.get<int32_t>());
  l.token = in.get_string();
  for (int64_t* v : {&l.out, &l.kernel, &l.stride, &l.padding}) *v = in.get<int64_t>();
  l.activation = static_cast<Activation>(in.get<int32_t>());
  l.bias = in.get<uint8_t>() != 0;
  l.in_shape = in.get_vector<int64_t>();
  l.out_shape = in.get_vector<int64_t>();
  return l;
}

}  // namespace

std::vector<char> encode_setup(const WorkerSetup& s) {
  Writer w;
  w.put_string(s.spec.text);
  w.put_vector(s.spec.input_shape);
  w.put<uint64_t>(s.spec.layers.size());
  for (const auto& l : s.spec.layers) encode_layer(w, l);
  w.put_string(s.spec_summary);
  const auto& f = s.fisher;
  w.put<int32_t>(static_cast<int32_t>(f.task));
  w.put<double>(f.out_noise);
  w.put<int32_t>(static_cast<int32_t>(f.kind));
  w.put<int32_t>(static_cast<int32_t>(f.side));
  w.put<double>(f.cutoff);
  w.put<int64_t>(f.memory_budget);
  w.put<uint64_t>(f.label_seed);
  w.put<uint8_t>(s.markov);
  w.put<double>(s.sigma);
  w.put<int64_t>(s.noise_draws);
  w.put<uint64_t>(s.noise_seed);
  w.put<uint8_t>(s.noise_given);
  w.put<uint8_t>(s.draw_thetas);
  w.put_string(s.space);
  w.put<uint64_t>(s.theta_seed);
  w.put<int64_t>(s.num_samples);
  w.put<int64_t>(s.num_params);
  w.put_vector(s.input_shape);
  w.put_string(s.inputs_description);
  return std::move(w.bytes());
}

WorkerSetup decode_setup(const char* data, size_t size) {
  Reader in(data, size, "measurement setup from rank 0");
  WorkerSetup s;
  s.spec.text = in.get_string();
  s.spec.input_shape = in.get_vector<int64_t>();
  const auto layers = in.check_count(in.get<uint64_t>(), 24);
  for (uint64_t i = 0; i < layers; ++i) s.spec.layers.push_back(decode_layer(in));
  s.spec_summary = in.get_string();
  auto& f = s.fisher;
  f.task = static_cast<Task>(in.get<int32_t>());
  f.out_noise = in.get<double>();
  f.kind = static_cast<FisherKind>(in.get<int32_t>());
  f.side = static_cast<GramSide>(in.get<int32_t>());
  f.cutoff = in.get<double>();
  f.memory_budget = in.get<int64_t>();
  f.label_seed = in.get<uint64_t>();
  s.markov = in.get<uint8_t>() != 0;
  s.sigma = in.get<double>();
  s.noise_draws = in.get<int64_t>();
  s.noise_seed = in.get<uint64_t>();
  s.noise_given = in.get<uint8_t>() != 0;
  s.draw_thetas = in.get<uint8_t>() != 0;
  s.space = in.get_string();
  s.theta_seed = in.get<uint64_t>();
  s.num_samples = in.get<int64_t>();
  s.num_params = in.get<int64_t>();
  s.input_shape = in.get_vector<int64_t>();
  s.inputs_description = in.get_string();
  return s;
}

}  // namespace twosed::mpi
