#!/bin/bash
# run.sh — runs the test suite and prints "N passed, N failed" last.
#   tests/run.sh          unit tests (build/tests/test_*) and CLI tests (tests/cli/*.sh)
#   tests/run.sh --ref    reference checks (tests/ref/*.sh) in a Python venv
#   tests/run.sh --learn  learning tests on real text (tests/learn/*.sh; minutes)
# Every test prints "PASS name" or "FAIL name" lines; a program that dies
# without reporting (signal, sanitizer abort) counts as one failure.
# Environment: BUILD (default build), BIN (default bin), TESTS_ONLY=pattern.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}; BIN=${BIN:-bin}
export BUILD BIN
export PATH="$PWD/$BIN:$PATH"
export RV_ROOT="$PWD"
mode=${1:-}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
passed=0; failed=0

run_one() {  # name, command...
    local name=$1; shift
    local out="$log/out" rc
    if [ -n "${TESTS_ONLY:-}" ] && [[ "$name" != *$TESTS_ONLY* ]]; then return; fi
    "$@" >"$out" 2>&1; rc=$?
    local p f
    p=$(grep -c '^PASS ' "$out"); f=$(grep -c '^FAIL ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name (exited $rc without reporting a failure)" >>"$out"; f=1
    fi
    if [ "$f" -gt 0 ]; then cat "$out"; else grep -E '^(PASS|SKIP|INFO) ' "$out"; fi
    passed=$((passed + p)); failed=$((failed + f))
}

if [ "$mode" = "--ref" ]; then
    for t in tests/ref/*.sh; do [ -e "$t" ] && run_one "$t" bash "$t"; done
elif [ "$mode" = "--learn" ]; then
    for t in tests/learn/*.sh; do [ -e "$t" ] && run_one "$t" bash "$t"; done
else
    for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && run_one "$t" "$t"; done
    for t in tests/cli/*.sh; do
        [ "$(basename "$t")" = lib.sh ] && continue
        run_one "$t" bash "$t"
    done
fi
echo "$passed passed, $failed failed"
[ -n "${RV_COUNTS_FILE:-}" ] && echo "$passed $failed" >>"$RV_COUNTS_FILE"
[ "$failed" -eq 0 ]
