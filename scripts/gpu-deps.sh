#!/bin/sh
# gpu-deps.sh — fetch, on a machine WITH package-registry access, the Debian
# packages (headers, link libraries, runtime libraries) that revela's build
# needs, into gpu-deps/ (ignored by git), for a machine without registry
# access (the lent GPU machine): `run` carries gpu-deps/ there and
# scripts/gpu-check.sh unpacks it with dpkg -x into a private prefix and
# builds with CPATH/LIBRARY_PATH/LD_LIBRARY_PATH pointing into it. Nothing is
# installed on either machine.
#
# Usage: scripts/gpu-deps.sh            (from the repository root; idempotent)
# Result: gpu-deps/*.deb and gpu-deps/MANIFEST (package versions, for the log).
# The .debs stay compressed (they travel within run's 64 MiB limit); the
# runtime libraries are this distribution's (Debian 12 here), which need a
# glibc at least as new, as any later Debian/Ubuntu has.
set -eu
cd "$(dirname "$0")/.."
out=gpu-deps

# -dev packages for headers and link symlinks, their runtime libraries, and
# OpenBLAS's Fortran runtime. `make` in case the GPU image lacks it.
pkgs="libzstd-dev libzstd1 libxxhash-dev libxxhash0 libutf8proc-dev libutf8proc2 libstemmer-dev libstemmer0d
libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread libgfortran5 libquadmath0 make"

mkdir -p "$out"
cd "$out"
have_lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)
if [ -z "$have_lists" ]; then
    echo "gpu-deps: apt lists are missing; running apt-get update" >&2
    apt-get update -qq
fi
# One version of each: download what the local apt resolves (matching the
# headers this machine builds with when the packages are installed here).
for p in $pkgs; do
    if ls "${p}"_*.deb >/dev/null 2>&1; then
        continue
    fi
    if ! apt-get download -q "$p" >/dev/null 2>&1; then
        apt-get update -qq
        apt-get download -q "$p"
    fi
done
: >MANIFEST
for d in *.deb; do
    dpkg-deb -f "$d" Package Version Architecture | paste -sd' ' >>MANIFEST
done
echo "gpu-deps: $(ls *.deb | wc -l) packages, $(du -sh . | cut -f1) in $(pwd)"
cat MANIFEST
