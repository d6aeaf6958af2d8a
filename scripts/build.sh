#!/usr/bin/env bash
# Installs the Debian packages (scripts/setup.sh) and builds twosed, its tests and benchmarks
# into build/ (Release). Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
