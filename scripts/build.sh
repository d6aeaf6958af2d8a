#!/usr/bin/env bash
# Installs the Debian packages (scripts/setup.sh) and builds twosed, its tests and benchmarks
# into build/ (Release). Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
# `import twosed` for /usr/bin/python3 (the interpreter with Debian's python3-torch): a .pth file
# in its site-packages naming the build tree's package, build/python. Written only when it changes.
if [ -d build/python/twosed ]; then
  site=$(/usr/bin/python3 -c 'import site; print(site.getsitepackages()[0])')
  want="$(pwd)/build/python"
  if [ "$(cat "$site/twosed.pth" 2>/dev/null)" != "$want" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO mkdir -p "$site"
    echo "$want" | $SUDO tee "$site/twosed.pth" > /dev/null
  fi
fi
