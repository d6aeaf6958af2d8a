// What MPI ranks send each other, as flat byte buffers: one sample's record (worker -> rank 0)
// and the description of a measurement's model (rank 0 -> workers). LibTorch- and MPI-free, so
// that a round trip is tested without either.
//
// Layout: little-endian host order (every rank of a job runs the same binary on the same kind
// of machine), fixed-size integers and IEEE doubles copied bit for bit, strings and vectors as
// a length then the elements. A decoder that runs out of bytes throws DataError.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "twosed/error.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/measure/measure.h"
#include "twosed/model/model_spec.h"

namespace twosed::mpi {

/// Appends fixed-size values, strings and vectors to a byte buffer.
class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const char*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  template <typename T>
  void put_array(const T* p, size_t n) {
    const auto* b = reinterpret_cast<const char*>(p);
    bytes_.insert(bytes_.end(), b, b + n * sizeof(T));
  }
  void put_string(const std::string& s);
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    const auto* p = reinterpret_cast<const char*>(v.data());
    bytes_.insert(bytes_.end(), p, p + v.size() * sizeof(T));
  }
  std::vector<char>& bytes() { return bytes_; }

 private:
  std::vector<char> bytes_;
};

/// Reads what a Writer wrote, in the same order. Throws DataError naming `what` when the
/// buffer ends early.
class Reader {
 public:
  Reader(const char* data, size_t size, std::string what) : p_(data), end_(data + size), what_(std::move(what)) {}
  template <typename T>
  T get() {
    T v;
    need(sizeof(T));
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  /// n values (written with put_array) into out[0..n).
  template <typename T>
  void get_array(T* out, size_t n) {
    need(n * sizeof(T));
    std::memcpy(out, p_, n * sizeof(T));
    p_ += n * sizeof(T);
  }
  std::string get_string();
  template <typename T>
  std::vector<T> get_vector() {
    const auto n = check_count(get<uint64_t>(), sizeof(T));
    std::vector<T> v(n);
    std::memcpy(v.data(), p_, n * sizeof(T));
    p_ += n * sizeof(T);
    return v;
  }
  /// A count read from the buffer: throws unless `n` elements of at least `min_bytes` each fit
  /// in what is left (a corrupt count must not allocate gigabytes).
  uint64_t check_count(uint64_t n, size_t min_bytes) const {
    if (n > left() / min_bytes) need(left() + 1);
    return n;
  }
  bool at_end() const { return p_ == end_; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }

 private:
  void need(size_t n) const;
  const char* p_;
  const char* end_;
  std::string what_;
};

/// One sample's record: index, side, summary, every block's eigenvalues/trace/cut, Markov costs.
void encode_record(Writer& w, const SampleRecord& r);
SampleRecord decode_record(Reader& r);

/// What a worker needs to build a measurement's statistical model without reading a file. The
/// inputs themselves follow as a broadcast of `input_shape` float64 values.
struct WorkerSetup {
  ModelSpec spec;            ///< the network, layer by layer (the worker builds Network(spec))
  std::string spec_summary;  ///< spec.describe() on rank 0: the worker checks its network against it
  FisherOptions fisher;      ///< effective (label seed set)
  bool markov = false;
  double sigma = 0.0;
  int64_t noise_draws = 1;
  uint64_t noise_seed = 0;   ///< drawn noise: Rng(noise_seed, Parameters, j) after theta^(j)
  bool noise_given = false;  ///< true: each task carries sample j's noise (N*R x H)
  bool draw_thetas = false;  ///< true: the worker draws theta^(j) from `space`; false: each task carries it
  std::string space;         ///< ParameterSpace text (init, box:A) when draw_thetas
  uint64_t theta_seed = 0;
  int64_t num_samples = 0;  ///< M
  int64_t num_params = 0;   ///< d
  std::vector<int64_t> input_shape;
  std::string inputs_description;
};
std::vector<char> encode_setup(const WorkerSetup& s);
WorkerSetup decode_setup(const char* data, size_t size);

}  // namespace twosed::mpi
