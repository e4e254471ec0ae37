#!/bin/sh
# probe.sh — report what the build found, and fail clearly when a required
# header is missing (after trying scripts/deps.sh when run as root).
# Usage: scripts/probe.sh CC NVCC CUDA_ARCH
set -u
CC=${1:-cc}; NVCC=${2:-}; ARCH=${3:-sm_90}
here=$(dirname "$0")

need_headers="zstd.h xxhash.h utf8proc.h libstemmer.h"
find_header() {
    for d in /usr/include /usr/local/include /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu; do
        [ -f "$d/$1" ] && { echo "$d/$1"; return 0; }
    done
    return 1
}
find_cblas() {
    for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/aarch64-linux-gnu/openblas-pthread /usr/include/openblas; do
        [ -f "$d/cblas.h" ] && { echo "$d/cblas.h"; return 0; }
    done
    return 1
}
missing=""
for h in $need_headers; do find_header "$h" >/dev/null || missing="$missing $h"; done
find_cblas >/dev/null || missing="$missing cblas.h(openblas)"
if [ -n "$missing" ]; then
    echo "probe: missing headers:$missing — running scripts/deps.sh" >&2
    "$here/deps.sh" >&2 || true
    missing=""
    for h in $need_headers; do find_header "$h" >/dev/null || missing="$missing $h"; done
    find_cblas >/dev/null || missing="$missing cblas.h(openblas)"
    if [ -n "$missing" ]; then
        echo "probe: ERROR: still missing:$missing" >&2
        echo "probe: HINT: run 'sudo scripts/deps.sh' (Debian/Ubuntu) or install zstd, xxHash, OpenBLAS, utf8proc and libstemmer development packages" >&2
        exit 1
    fi
fi
ver() { pkg-config --modversion "$1" 2>/dev/null || echo "?"; }
ccv=$($CC --version 2>/dev/null | head -1)
if [ -n "$NVCC" ]; then
    nv="$($NVCC --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') ($ARCH)"
else
    nv="not found (CUDA objects skipped)"
fi
echo "revela build: cc: $ccv | nvcc: $nv | blas: openblas $(ver openblas) | zstd $(ver libzstd) | xxhash $(ver libxxhash) | utf8proc $(ver libutf8proc) | libstemmer"
