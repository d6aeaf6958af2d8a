#!/usr/bin/env bash
# The installed C++ package as a user sees it: installs the build into a temporary prefix,
# checks what it holds (headers, static libraries, CLI, CMake package config), then configures
# and builds examples/cpp against it with find_package(twosed) and runs the example, which
# measures a network in memory and checks its own results (exit code 1 on a failed check).
#
# Usage: install_test.sh CMAKE BUILD_DIR SOURCE_DIR   (KEEP_WORK=1 keeps the temporary folder)
set -u
CMAKE="$1"
BUILD="$2"
SRC="$3"
WORK=$(mktemp -d)
if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit
}

P="$WORK/prefix"
if "$CMAKE" --install "$BUILD" --prefix "$P" > "$WORK/install.log" 2>&1; then ok; else
  bad "cmake --install failed: $(tail -5 "$WORK/install.log")"
  finish
fi

for f in include/twosed/twosed.h include/twosed/fisher/markov.h include/twosed/estimate/estimator.h \
  lib/libtwosed.a lib/libtwosed_core.a lib/cmake/twosed/twosedConfig.cmake \
  lib/cmake/twosed/twosedConfigVersion.cmake lib/cmake/twosed/twosedTargets.cmake bin/twosed bin/twosed-torch; do
  if [ -f "$P/$f" ]; then ok; else bad "not installed: $f (installed: $(cd "$P" && find . -type f | head -20 | tr '\n' ' '))"; fi
done
# The exported targets must not point back into the source or build tree (relocatable).
if grep -q -e "$SRC" -e "$BUILD" "$P"/lib/cmake/twosed/*.cmake; then
  bad "the installed package config refers to the source or build tree: $(grep -h -e "$SRC" -e "$BUILD" "$P"/lib/cmake/twosed/*.cmake | head -3)"
else ok; fi
if version=$("$P/bin/twosed" --version 2>&1) && grep -Eq '^twosed [0-9]+\.[0-9]+\.[0-9]+' <<< "$version"; then ok; else
  bad "installed CLI: '$P/bin/twosed --version' printed '$version'"
fi
# The installed front binary finds the installed twosed-torch for the commands that need LibTorch.
if plan=$("$P/bin/twosed" measure --plan --model mlp:6-5-3 2>&1) && grep -q "matrix" <<< "$plan"; then ok; else
  bad "installed CLI: '$P/bin/twosed measure --plan' printed '$(head -c 300 <<< "$plan")'"
fi

# The example, as a separate project against the installed package only.
if "$CMAKE" -S "$SRC/examples/cpp" -B "$WORK/build" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release \
  > "$WORK/configure.log" 2>&1; then ok; else
  bad "configuring examples/cpp failed: $(grep -A3 -i error "$WORK/configure.log" | head -10)"
  finish
fi
if "$CMAKE" --build "$WORK/build" -j2 > "$WORK/build.log" 2>&1; then ok; else
  bad "building examples/cpp failed: $(grep -A3 -i error "$WORK/build.log" | head -10)"
  finish
fi
if grep -q "warning:" "$WORK/build.log"; then bad "examples/cpp compiles with warnings: $(grep -A2 warning: "$WORK/build.log" | head -6)"; else ok; fi

"$WORK/build/measure_tensor" > "$WORK/out" 2> "$WORK/err"
code=$?
if [ "$code" -eq 0 ]; then ok; else bad "measure_tensor exited $code: $(head -c 600 "$WORK/err")"; fi
# One line per eps of the default grid (25), each with four numbers.
lines=$(grep -cE '^2sED +[0-9.e+-]+( +[0-9]+\.[0-9]+){4}$' "$WORK/out")
if [ "$lines" -eq 25 ]; then ok; else bad "measure_tensor printed $lines 2sED lines, expected 25: $(head -c 600 "$WORK/out")"; fi
if grep -q "^checks passed" "$WORK/out"; then ok; else bad "measure_tensor did not report its checks: $(tail -3 "$WORK/out")"; fi
finish
