#!/bin/sh
# deps.sh — install the Debian packages revela's build, tests and demo need.
# Idempotent: installs only what is missing. As root it runs apt-get; otherwise
# it prints the exact command to run.  Usage: scripts/deps.sh [--torch] [--print]
#   --torch  instead: Debian's PyTorch (python3-torch 1.13.1, CPU) for the
#            PyTorch peer of rv-train (scripts/revela_torch.py, tests/ref/train*.sh,
#            bench/train.sh); transformers and peft come from PyPI into
#            .venv-torch (tests/ref/venv-torch.sh). A few hundred MB of .debs
#            instead of PyPI's 2-3 GB CUDA wheels, and the same package every run.
set -eu

PKGS="libzstd-dev libxxhash-dev libopenblas-dev libutf8proc-dev libstemmer-dev \
pkg-config zstd python3-venv gnuplot-nox man-db groff-base"
VENV_PYTHON=python3   # the python whose venv module makes python3-venv optional
if [ "${1:-}" = "--torch" ]; then
    shift
    # .venv-torch is made by /usr/bin/python3 -m venv, so it needs Debian's python3-venv
    PKGS="python3-torch python3-venv"
    VENV_PYTHON=/usr/bin/python3
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# python3-venv is only needed when the system python lacks the venv module
# (a pyenv or source-built python ships it).
case "$missing" in
*python3-venv*)
    if "$VENV_PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        missing=$(echo "$missing" | sed 's/ python3-venv//')
    fi ;;
esac

if [ -z "$missing" ]; then
    echo "deps.sh: all packages present ($PKGS)"
    exit 0
fi

cmd="apt-get install -y --no-install-recommends$missing"
if [ "${1:-}" = "--print" ] || [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing:$missing"
    echo "deps.sh: run as root:  apt-get update && $cmd"
    [ "${1:-}" = "--print" ] && exit 0
    exit 1
fi

echo "deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# update only when the package lists are absent or the install fails on stale lists
if ! $cmd >/tmp/revela-deps.log 2>&1; then
    apt-get update -qq
    $cmd
fi
echo "deps.sh: done"
