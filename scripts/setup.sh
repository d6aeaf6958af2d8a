#!/usr/bin/env bash
# Installs every Debian package twosed needs to build, test and benchmark. Idempotent:
# packages already present are skipped, so a second run costs a few seconds.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libtorch-dev          # LibTorch 1.13 (CPU): networks, forward/backward passes
  libopenblas-dev       # without it LibTorch uses the reference BLAS, ~50x slower
  libcli11-dev          # command-line parsing
  nlohmann-json3-dev    # JSON output
  libfmt-dev            # formatting
  libgtest-dev          # tests
  libbenchmark-dev      # Google Benchmark (bench/ currently times with its own harness)
  zlib1g-dev            # gzip-compressed IDX files
  dataset-fashion-mnist # the embedded default job's data
  clang-format          # the format check among the tests
  python3               # the CLI and reference tests (standard library only)
  gnuplot-nox           # --plot figures (PNG, SVG) without a display
  libsqlite3-dev        # the results store (--db)
  sqlite3               # inspecting a results store by hand; the CLI tests use it
  libopenmpi-dev        # MPI: `mpirun -np P twosed measure` spreads samples over ranks (optional)
  openmpi-bin           # mpirun, for the MPI test
  python3-torch         # writing TorchScript models and their reference Fisher spectra (tests)
  python3-torchvision   # TorchScript models of standard architectures
  clang                 # the sanitizer and libFuzzer build (scripts/sanitize.sh)
  libclang-rt-14-dev    # clang's ASan/UBSan runtimes and libFuzzer
  pybind11-dev          # the Python module (python/)
  python3-dev           # its Python headers (for /usr/bin/python3)
  python3-pytest        # the Python module's tests
  python3-matplotlib    # Result.plot() and the Python examples' figures
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
