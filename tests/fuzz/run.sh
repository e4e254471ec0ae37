#!/bin/bash
# run.sh — runs each libFuzzer target for FUZZ_SECONDS on its seed corpus
# (tests/fuzz/corpus/<name>/, seeded from the test fixtures) and prints one
# PASS/FAIL line per target. A crash leaves its input in build-fuzz/.
set -u
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-60}
status=0
for bin in "$@"; do
    name=$(basename "$bin"); area=${name#fuzz_}
    seeds=tests/fuzz/corpus/$area
    work=build-fuzz/corpus-$area
    mkdir -p "$work"
    cp -n "$seeds"/* "$work"/ 2>/dev/null
    if "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix=build-fuzz/"$name"- "$work" > build-fuzz/"$name".log 2>&1; then
        echo "PASS fuzz/$name ($(grep -o 'stat::number_of_executed_units: *[0-9]*' build-fuzz/"$name".log | grep -o '[0-9]*$') runs in ${secs}s)"
    else
        echo "FAIL fuzz/$name"; tail -30 build-fuzz/"$name".log; status=1
    fi
done
exit $status
