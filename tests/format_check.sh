#!/usr/bin/env bash
# Checks that every tracked C++ file is formatted as .clang-format says.
# Exit 77 (skipped under CTest) when clang-format or git is not available.
set -u
cd "$(dirname "$0")/.."
command -v clang-format > /dev/null && command -v git > /dev/null && git rev-parse --git-dir > /dev/null 2>&1 || exit 77
mapfile -t files < <(git ls-files '*.cpp' '*.h')
if clang-format --dry-run --Werror "${files[@]}" 2> /tmp/twosed-format.log; then
  echo "${#files[@]} passed, 0 failed"
else
  grep -E "error:" /tmp/twosed-format.log | head -20
  echo "run: clang-format -i \$(git ls-files '*.cpp' '*.h')"
  exit 1
fi
