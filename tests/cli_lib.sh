# Shared by the CLI test scripts (sourced): a temporary working folder (measurements record into
# ./twosed.db, so it lands there), pass/fail counters, and `expect`.
# The sourcing script sets TWOSED (the binary) first.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect CODE REGEX ARGS...: runs twosed ARGS, checks the exit code and that stderr (for a
# non-zero code) or stdout (for 0) matches REGEX, and that stderr is a single line on error.
expect() {
  local code="$1" regex="$2"
  shift 2
  "$TWOSED" "$@" > "$WORK/out" 2> "$WORK/err" < /dev/null
  local got=$?
  local text
  if [ "$code" -eq 0 ]; then text=$(cat "$WORK/out"); else text=$(cat "$WORK/err"); fi
  if [ "$got" -ne "$code" ]; then
    bad "twosed $* : exit $got, expected $code; stderr: $(head -c 400 "$WORK/err")"
  elif ! grep -Eq -- "$regex" <<< "$text"; then
    bad "twosed $* : output does not match /$regex/: $(head -c 400 <<< "$text")"
  elif [ "$code" -ne 0 ] && [ "$(wc -l < "$WORK/err")" -ne 1 ]; then
    bad "twosed $* : error is not one line: $(cat "$WORK/err")"
  else
    ok
  fi
}

# Prints the counts; the script's exit status is the last command's.
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
