// The MPI messages' codec (src/mpi/codec.h): records and setups survive a round trip bit for
// bit; a truncated or corrupt message throws DataError instead of reading past its end.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mpi/codec.h"

namespace twosed::mpi {
namespace {

SampleRecord markov_record() {
  SampleRecord r;
  r.index = 41;
  r.side = GramSide::Parameters;
  r.summary = {12, 10, 2, 3.25, 1.5, -1e-17, 0.125, 0.25, 0.5};
  r.blocks.push_back({{1.0 / 3.0, 2e-300, std::nextafter(1.0, 2.0)}, 0.75, 1});
  r.blocks.push_back({{}, 0.0, 4});  // a layer with every eigenvalue cut
  r.blocks.push_back({{std::numeric_limits<double>::denorm_min()}, 1e300, 0});
  r.costs.push_back({3, 1, 7, 0.1, 0.2, 0.3});
  r.costs.push_back({0, 2, 9, 1.1, 1.2, 1.3});
  r.costs.push_back({5, 0, 1, 2.1, 2.2, 2.3});
  return r;
}

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

TEST(MpiCodec, RecordRoundTripIsBitExact) {
  const auto r = markov_record();
  Writer w;
  encode_record(w, r);
  Reader in(w.bytes().data(), w.bytes().size(), "test");
  const auto back = decode_record(in);
  EXPECT_TRUE(in.at_end());
  EXPECT_EQ(back.index, r.index);
  EXPECT_EQ(back.side, r.side);
  EXPECT_EQ(back.summary.matrix_size, 12);
  EXPECT_EQ(back.summary.kept, 10);
  EXPECT_EQ(back.summary.cut, 2);
  EXPECT_TRUE(same_bits(back.summary.most_negative, r.summary.most_negative));
  EXPECT_TRUE(same_bits(back.summary.seconds_eigen, 0.5));
  ASSERT_EQ(back.blocks.size(), r.blocks.size());
  for (size_t b = 0; b < r.blocks.size(); ++b) {
    ASSERT_EQ(back.blocks[b].eigenvalues.size(), r.blocks[b].eigenvalues.size());
    for (size_t i = 0; i < r.blocks[b].eigenvalues.size(); ++i)
      EXPECT_TRUE(same_bits(back.blocks[b].eigenvalues[i], r.blocks[b].eigenvalues[i])) << b << " " << i;
    EXPECT_TRUE(same_bits(back.blocks[b].trace, r.blocks[b].trace));
    EXPECT_EQ(back.blocks[b].num_cut, r.blocks[b].num_cut);
  }
  ASSERT_EQ(back.costs.size(), 3u);
  EXPECT_EQ(back.costs[1].blocks_parameter_side, 2);
  EXPECT_EQ(back.costs[1].largest_block, 9);
  EXPECT_TRUE(same_bits(back.costs[2].cpu_seconds_eigen, 2.3));
}

TEST(MpiCodec, TruncatedRecordThrowsDataError) {
  Writer w;
  encode_record(w, markov_record());
  const auto& b = w.bytes();
  for (size_t cut : {size_t{0}, size_t{7}, b.size() / 2, b.size() - 1}) {
    Reader in(b.data(), cut, "rank 3's record");
    EXPECT_THROW(decode_record(in), DataError) << cut;
  }
}

TEST(MpiCodec, CorruptCountThrowsInsteadOfAllocating) {
  Writer w;
  w.put<int64_t>(0);
  w.put<int32_t>(0);
  for (int i = 0; i < 3; ++i) w.put<int64_t>(0);
  for (int i = 0; i < 6; ++i) w.put<double>(0);
  w.put<uint64_t>(uint64_t{1} << 60);  // blocks
  Reader in(w.bytes().data(), w.bytes().size(), "test");
  try {
    decode_record(in);
    FAIL() << "no exception";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("test: message ends early"), std::string::npos) << e.what();
  }
}

TEST(MpiCodec, SetupRoundTrip) {
  WorkerSetup s;
  s.spec = parse_model_spec("cnn:1x8x8-c4k3-relu-p2-f3", {Activation::Tanh, false});
  s.spec_summary = s.spec.describe();
  s.fisher.task = Task::Regress;
  s.fisher.out_noise = 0.3;
  s.fisher.kind = FisherKind::Sampled;
  s.fisher.side = GramSide::Samples;
  s.fisher.memory_budget = 12345;
  s.fisher.label_seed = 99;
  s.markov = true;
  s.sigma = 0.1;
  s.noise_draws = 3;
  s.noise_seed = 7;
  s.noise_given = true;
  s.draw_thetas = true;
  s.space = "box:0.5";
  s.theta_seed = 8;
  s.num_samples = 40;
  s.num_params = s.spec.num_params();
  s.input_shape = {20, 1, 8, 8};
  s.inputs_description = "x.npy (20 inputs)";
  const auto bytes = encode_setup(s);
  const auto back = decode_setup(bytes.data(), bytes.size());
  EXPECT_EQ(back.spec.text, s.spec.text);
  EXPECT_EQ(back.spec.input_shape, s.spec.input_shape);
  ASSERT_EQ(back.spec.layers.size(), s.spec.layers.size());
  EXPECT_EQ(back.spec.describe(), s.spec.describe());
  EXPECT_EQ(back.spec.num_params(), s.spec.num_params());
  for (size_t i = 0; i < s.spec.layers.size(); ++i) {
    EXPECT_EQ(back.spec.layers[i].kind, s.spec.layers[i].kind);
    EXPECT_EQ(back.spec.layers[i].bias, s.spec.layers[i].bias);
    EXPECT_EQ(back.spec.layers[i].out_shape, s.spec.layers[i].out_shape);
  }
  EXPECT_EQ(back.fisher.task, Task::Regress);
  EXPECT_EQ(back.fisher.out_noise, 0.3);
  EXPECT_EQ(back.fisher.kind, FisherKind::Sampled);
  EXPECT_EQ(back.fisher.side, GramSide::Samples);
  EXPECT_EQ(back.fisher.memory_budget, 12345);
  EXPECT_EQ(back.fisher.label_seed, 99u);
  EXPECT_TRUE(back.markov);
  EXPECT_EQ(back.sigma, 0.1);
  EXPECT_EQ(back.noise_draws, 3);
  EXPECT_EQ(back.noise_seed, 7u);
  EXPECT_TRUE(back.noise_given);
  EXPECT_TRUE(back.draw_thetas);
  EXPECT_EQ(back.space, "box:0.5");
  EXPECT_EQ(back.theta_seed, 8u);
  EXPECT_EQ(back.num_samples, 40);
  EXPECT_EQ(back.input_shape, s.input_shape);
  EXPECT_EQ(back.inputs_description, s.inputs_description);
  EXPECT_THROW(decode_setup(bytes.data(), bytes.size() - 1), DataError);
}

}  // namespace
}  // namespace twosed::mpi
