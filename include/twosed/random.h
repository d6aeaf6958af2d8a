// Seeded random numbers with a portable, documented bit stream.
//
// std::uniform_real_distribution and std::normal_distribution are implementation-defined, so
// twosed uses xoshiro256** (Blackman & Vigna) seeded through splitmix64, and converts bits to
// doubles itself. Every random choice in twosed takes its generator from a (seed, stream, index)
// triple, so results depend only on the seed, never on thread scheduling.
#pragma once

#include <cmath>
#include <cstdint>

namespace twosed {

/// splitmix64 step: a well-mixed 64-bit value from any 64-bit state.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// Named streams, so that different uses of one seed never share random numbers.
enum class Stream : uint64_t {
  Parameters = 1,  ///< theta^(j) draws, then (Markov) the noise of sample j (docs/math.md section 3)
  Inputs = 2,      ///< choice of the input subset
  Bootstrap = 3,   ///< bootstrap resampling of the M parameter samples
  Data = 4,        ///< synthetic data sets
  Labels = 5,      ///< sampled-label Fisher
  Training = 6,    ///< minibatch order of training (twosed train)
};

/// xoshiro256** generator.
class Rng {
 public:
  /// Generator for (seed, stream, index): e.g. Rng(seed, Stream::Parameters, j) for sample j.
  Rng(uint64_t seed, Stream stream, uint64_t index = 0) {
    uint64_t st = seed ^ (static_cast<uint64_t>(stream) * 0xD1B54A32D192ED03ULL);
    uint64_t mix = splitmix64(st) ^ (index * 0x8CB92BA72F3D8DD7ULL);
    for (auto& w : s_) w = splitmix64(mix);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Uniform integer in [0, n) (n >= 1), by rejection so that it is exactly uniform.
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = next();
    while (r >= limit);
    return r % n;
  }

  /// Standard normal (Box-Muller; one value per call, the pair's partner is discarded so the
  /// stream position does not depend on call history).
  double normal() {
    double u1;
    do u1 = uniform();
    while (u1 <= 0.0);
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace twosed
