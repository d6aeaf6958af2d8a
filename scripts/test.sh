#!/usr/bin/env bash
# Fresh machine -> the test suite: set up, build, run every test under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 900
