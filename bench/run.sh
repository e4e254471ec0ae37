#!/bin/bash
# run.sh — `make bench`: every bench/*.sh in turn (each prints our figure, the
# peer's figure from the same run, and the ratio). BENCH_ONLY=name filters.
set -u
cd "$(dirname "$0")/.."
make -s bench-build >/dev/null || exit 1
for b in bench/*.sh; do
    [ "$(basename "$b")" = run.sh ] && continue
    if [ -n "${BENCH_ONLY:-}" ] && [[ "$b" != *$BENCH_ONLY* ]]; then continue; fi
    echo "=== $b"
    bash "$b" || echo "bench $b failed (exit $?)"
done
