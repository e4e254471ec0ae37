#!/bin/sh
# deps-torch.sh — install Debian's PyTorch (python3-torch 1.13.1, CPU) for the
# PyTorch peer of rv-train (scripts/revela_torch.py: tests/ref/train*.sh and
# bench/train.sh). transformers and peft come from PyPI on top of it, into
# .venv-torch (tests/ref/venv-torch.sh). Idempotent: installs only what is
# missing. As root it runs apt-get; otherwise it prints the exact command.
#   scripts/deps-torch.sh [--print]
# Debian's torch instead of PyPI's: a few hundred MB of .debs instead of the
# 2-3 GB CUDA wheels, and the same package every run.
set -eu

# python3-venv: .venv-torch is made by /usr/bin/python3 -m venv
PKGS="python3-torch python3-venv"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps-torch.sh: all packages present"
    exit 0
fi

# recommends would add libtorch-dev and a compiler toolchain, which the peer never uses
cmd="apt-get install -y --no-install-recommends$missing"
if [ "${1:-}" = "--print" ] || [ "$(id -u)" != 0 ]; then
    echo "deps-torch.sh: missing:$missing"
    echo "deps-torch.sh: run as root:  apt-get update && $cmd"
    [ "${1:-}" = "--print" ] && exit 0
    exit 1
fi

echo "deps-torch.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# update only when the package lists are absent or the install fails on stale lists
if ! $cmd >/tmp/revela-deps-torch.log 2>&1; then
    apt-get update -qq
    $cmd
fi
echo "deps-torch.sh: done"
