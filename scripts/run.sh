#!/usr/bin/env bash
# Fresh machine -> the main job: set up, build, and run `twosed measure` on its embedded
# default (mlp:784-64-10 on Fashion-MNIST, or on synthetic data if that is not installed).
# Extra arguments go to `twosed measure`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec ./build/twosed measure "$@"
