#!/bin/bash
# gpu.sh — the GPU benchmark (part of `make bench`; scripts/gpu-check.sh runs
# it on a lent GPU): our fused in-batch attention (B=16, L=160, H=32/8 kv,
# d=64, bf16) forward and backward against a naive PyTorch version that
# materialises the B x B x H x L x L scores, and cuBLASLt products in
# rv-search / rv-train shapes against torch.matmul, on the same GPU in the
# same run. bench/gpu_ref.py also checks our in-batch results against the
# PyTorch fp32 autograd on the same inputs (PASS/FAIL line). Prints one
# table (medians of 5; ratio = torch ms / our ms, > 1: we are faster).
# No nvcc or no device: prints SKIP and exits 0.
# Environment: GPU_BENCH_DIR (inputs/outputs; default a temporary folder),
# PYTHON (default python3: the one with torch on the GPU machine),
# GPU_BENCH_NO_BUILD=1 (use the programs already built, as gpu-check.sh does).
set -u
cd "$(dirname "$0")/.."
if [ -z "${GPU_BENCH_NO_BUILD:-}" ]; then
    make -s gpu-tests >/dev/null || { echo "gpu.sh: building the GPU programs failed"; exit 1; }
fi
if [ ! -x build/gpu/bench_gpu ]; then
    echo "SKIP bench/gpu.sh (nvcc not found)"
    exit 0
fi
dir=${GPU_BENCH_DIR:-}
if [ -z "$dir" ]; then
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
build/gpu/bench_gpu "$dir" || exit 1
[ -s "$dir/results.txt" ] || exit 0   # bench_gpu printed SKIP: no device
"${PYTHON:-python3}" bench/gpu_ref.py "$dir"
