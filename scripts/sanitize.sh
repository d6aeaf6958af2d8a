#!/usr/bin/env bash
# The standing sanitizer and fuzz checks (a step of .ci/run): a clang build in build-asan with
# -fsanitize=address,undefined (TWOSED_SANITIZE) and the parsers' libFuzzer harnesses
# (TWOSED_FUZZ); runs the LibTorch-free unit tests and the fastest LibTorch tests under the
# sanitizers, then each harness for FUZZ_SECONDS (default 30) from its seed corpus.
#
# LibTorch itself is not instrumented. Its static initialisers allocate memory that is never
# freed, which LeakSanitizer would report at exit of every LibTorch binary: leak detection is
# therefore off (ASAN_OPTIONS=detect_leaks=0); every other ASan/UBSan check stays on.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
JOBS=${JOBS:-$(nproc)}
start=$(date +%s)
CXX=clang++ CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTWOSED_BUILD_BENCH=OFF \
  -DTWOSED_SANITIZE=ON -DTWOSED_FUZZ=ON > /dev/null
CORE_TESTS="test_npy test_data test_estimator test_model_spec test_fuzz_parsers test_plot test_results_store \
test_rank_correlation test_generalization"
TORCH_TESTS="test_network test_runs"  # the fastest LibTorch tests (seconds each)
HARNESSES="csv idx idx_gzip npy model_spec spectra study"
targets=""
for t in $CORE_TESTS $TORCH_TESTS; do targets="$targets $t"; done
for h in $HARNESSES; do targets="$targets fuzz_$h"; done
# shellcheck disable=SC2086
cmake --build build-asan -j "$JOBS" --target $targets
built=$(date +%s)
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
regex="^($(echo $CORE_TESTS $TORCH_TESTS | tr ' ' '|'))\$"
(cd build-asan && ctest --output-on-failure --timeout 900 -R "$regex")
tested=$(date +%s)
# Each harness from a corpus of valid inputs (tests/fuzz/corpus/NAME, if any), for a bounded
# time; a crash leaves crash-* in build-asan/fuzz-NAME and fails this script.
for h in $HARNESSES; do
  work="build-asan/fuzz-$h"
  mkdir -p "$work/corpus"
  [ -d "tests/fuzz/corpus/$h" ] && cp -n tests/fuzz/corpus/"$h"/* "$work/corpus/" 2>/dev/null || true
  echo "fuzz_$h: ${FUZZ_SECONDS} s"
  (cd "$work" && ../tests/fuzz/fuzz_"$h" -max_total_time="$FUZZ_SECONDS" -max_len=4096 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus 2>&1 | tail -n 12)
done
end=$(date +%s)
echo "sanitize: build $((built - start)) s, tests $((tested - built)) s, fuzz $((end - tested)) s, total $((end - start)) s"
