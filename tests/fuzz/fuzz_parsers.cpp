// libFuzzer harnesses of the input parsers (the coverage-guided counterpart of the seeded
// tests in tests/test_fuzz_parsers.cpp). One source, one harness per executable, chosen with
// TWOSED_FUZZ_HARNESS. Acceptable outcomes are success or twosed::DataError/UsageError; any
// other exception aborts (a finding), as do the sanitizers' reports. A finding becomes a
// TEST(FuzzRegression, ...) case in tests/test_fuzz_parsers.cpp.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <typeinfo>

#include "twosed/data/data.h"
#include "twosed/data/npy.h"
#include "twosed/error.h"
#include "twosed/model/model_spec.h"
#include "twosed/store/spectra_file.h"
#if TWOSED_FUZZ_HARNESS == 6
#include "twosed/study/study.h"
#endif

namespace {

// A file of its own per process (the gzip and spectra readers take paths).
std::string scratch(const char* name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/twosed_fuzz_" + std::to_string(::getpid()) + "_" + name;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

void run_one(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
#if TWOSED_FUZZ_HARNESS == 0  // CSV; the first byte picks the options
  twosed::CsvOptions o;
  const unsigned flags = size > 0 ? data[0] : 0;
  o.has_labels = flags & 1;
  if (flags & 2) o.label_column = "label";
  o.integer_labels = !(flags & 4);
  const auto d = twosed::parse_csv(size > 0 ? bytes.substr(1) : bytes, "fuzz.csv", o);
  if (static_cast<int64_t>(d.x.size()) != d.size() * d.num_features()) std::abort();
#elif TWOSED_FUZZ_HARNESS == 1  // IDX in memory: images | labels split at the first byte's position
  const size_t cut = size > 0 ? std::min<size_t>(data[0] * 4u, size - 1) : 0;
  const auto d = twosed::parse_idx(bytes.substr(size > 0 ? 1 : 0, cut), size > 0 ? bytes.substr(1 + cut) : "", "fuzz");
  for (int64_t l : d.labels)
    if (l < 0 || l >= d.num_classes) std::abort();
#elif TWOSED_FUZZ_HARNESS == 2  // IDX through the file reader (gzip streams)
  static const std::string path = scratch("images.gz");
  write_file(path, data, size);
  twosed::load_idx(path, "");
#elif TWOSED_FUZZ_HARNESS == 3  // npy
  const auto a = twosed::parse_npy(bytes, "fuzz.npy");
  if (static_cast<int64_t>(a.data.size()) != a.numel()) std::abort();
#elif TWOSED_FUZZ_HARNESS == 4  // model specs
  const auto spec = twosed::parse_model_spec(bytes);
  if (spec.num_params() < 1 || spec.num_outputs() < 1) std::abort();
#elif TWOSED_FUZZ_HARNESS == 5  // spectra files (JSON lines)
  static const std::string path = scratch("spectra.jsonl");
  write_file(path, data, size);
  twosed::read_spectra(path);
#elif TWOSED_FUZZ_HARNESS == 6  // study files (JSON)
  twosed::parse_study_text(bytes, "fuzz.json");
#else
#error "TWOSED_FUZZ_HARNESS must be 0..6"
#endif
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    run_one(data, size);
  } catch (const twosed::DataError&) {
  } catch (const twosed::UsageError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
  return 0;
}
