#!/bin/bash
# gpu.sh — the GPU benchmarks (`make bench-gpu` runs `bench/gpu.sh --all`;
# scripts/gpu-check.sh runs the parts on a lent GPU).
#
#   bench/gpu.sh          kernels: our fused in-batch attention (B=16, L=160,
#                         H=32/8 kv, d=64, bf16) forward and backward against a naive
#                         PyTorch version that materialises the B x B x H x L x L scores,
#                         cuBLASLt products in rv-search / rv-train shapes against
#                         torch.matmul, and the in-batch attention's device memory at
#                         B = 16 and 64 against the reference's (bench/gpu_ref.py), on the
#                         same GPU in the same run. gpu_ref.py also checks our in-batch
#                         results against the PyTorch fp32 autograd (PASS/FAIL line).
#                         One table (medians of 5; ratio = torch ms / our ms, > 1: we
#                         are faster).
#   bench/gpu.sh --all    issue 8's figures: bench/train-gpu.sh (the training step,
#                         Llama-3.2-1B architecture, ours vs the PyTorch peer, MFU,
#                         in-batch memory), tests/gpu/encode.sh (rv-encode tok/s vs
#                         transformers), then the kernels above; ends with ONE table
#                         (figure | ours | peer | ratio | goal | card) from --table.
#   bench/gpu.sh --table  that table alone, from the files a run left in GPU_BENCH_DIR:
#                         train.fig (train-gpu.sh's TRB_FIGURES) and encode.log (the
#                         output of tests/gpu/encode.sh); scripts/gpu-check.sh prints it.
# No nvcc or no device: prints SKIP and exits 0.
# Environment: GPU_BENCH_DIR (inputs/outputs; default a temporary folder),
# PYTHON (default python3: the one with torch on the GPU machine),
# GPU_BENCH_NO_BUILD=1 (use the programs already built, as gpu-check.sh does),
# GPU_BENCH_MEM_B (the B list of the in-batch memory rows; default "16 64",
# "" for none), RV_CUDA_LIB=…/gpu-emu/librevela-cuda.so (dry runs on the CPU
# emulator: the emulated bench_gpu with --small shapes; train-gpu.sh and
# encode.sh then need their tiny-model overrides, see bench/README-gpu.md).
set -u
cd "$(dirname "$0")/.." || exit 1
MODE=kernels
case ${1:-} in
--all) MODE=all ;;
--table) MODE=table ;;
'') ;;
*) echo "usage: bench/gpu.sh [--all | --table]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
dir=${GPU_BENCH_DIR:-}
if [ -z "$dir" ]; then
    [ "$MODE" = table ] && { echo "gpu.sh --table: set GPU_BENCH_DIR to a run's folder" >&2; exit 2; }
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"

# ---------------------------------------------------------------- the one table
# table: figure | ours | peer | ratio | goal | card, from $dir/train.fig and $dir/encode.log
table() {
    local fig=$dir/train.fig enc=$dir/encode.log
    val() { [ -s "$fig" ] && sed -n "s/^$1 //p" "$fig" | tail -1; }
    local card ours peer ratio e_ours e_peer e_ratio e_card st
    card=$(val card)
    card=${card:-${GPU_NAME:-unknown card}}
    # goal_cell VALUE OP LIMIT TEXT: "TEXT: met" / "NOT met" / "n/a"
    goal_cell() { awk -v v="$1" -v op="$2" -v lim="$3" -v t="$4" 'BEGIN {
        if (v !~ /^[0-9.]+$/) { printf "%s: n/a", t; exit }
        ok = (op == ">=") ? (v + 0 >= lim + 0) : (v + 0 <= lim + 0)
        printf "%s: %s", t, ok ? "met" : "NOT met" }'; }
    ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a + 0 > 0) printf "%.2f", b / a; else print "n/a" }'; }
    row() { printf '%-44s | %12s | %12s | %8s | %-22s | %s\n' "$@"; }
    echo "==================== revela GPU benchmark (issue 8) ===================="
    row figure ours peer ratio goal card
    row "$(printf '%.44s' -------------------------------------------------)" ------------ ------------ -------- \
        ---------------------- ----
    local shape
    shape=$(val shape)
    if [ -s "$fig" ] && ! val status | grep -q '^SKIP'; then
        ours=$(val step_ms_ours) peer=$(val step_ms_peer) ratio=$(val step_ratio)
        row "train ms/step bf16 ($shape)" "${ours:-n/a}" "${peer:-n/a}" "${ratio:-n/a}" \
            "$(goal_cell "$ratio" ">=" 2 ">=2x")" "$card"
        local mlabel
        mlabel="train MFU % ($(awk -v f="$(val flops_per_step)" 'BEGIN {printf "%.3g", f / 1e12}') TFLOP/step, peak $(val peak_tflops))"
        row "$mlabel" "$(val mfu_ours)" "$(val mfu_peer)" \
            "$(ratio_of "$(val mfu_peer)" "$(val mfu_ours)")" "$(goal_cell "$(val mfu_ours)" ">=" 40 ">=40% (ours)")" "$card"
        row "train peak device MiB (nvidia-smi)" "$(val mem_ours_mib)" "$(val mem_peer_mib)" \
            "$(ratio_of "$(val mem_ours_mib)" "$(val mem_peer_mib)")" "-" "$card"
        row "train ms/step ours bf16 RV_GEMM_TUNE=1" "$(val step_ms_ours_tuned)" "$(val step_ms_peer)" \
            "$(ratio_of "$(val step_ms_ours_tuned)" "$(val step_ms_peer)")" "-" "$card"
        row "train ms/step ours --gpu-dtype f32" "$(val step_ms_ours_f32)" "-" "-" "-" "$card"
        local b
        for b in $(sed -n 's/^inbatch_mem_b\([0-9]*\)_ours_mib .*/\1/p' "$fig"); do
            row "in-batch attn fwd+bwd peak MiB B=$b" "$(val "inbatch_mem_b${b}_ours_mib")" \
                "$(val "inbatch_mem_b${b}_ref_mib")" \
                "$(ratio_of "$(val "inbatch_mem_b${b}_ours_mib")" "$(val "inbatch_mem_b${b}_ref_mib")")" \
                "- (one BxBxHxLxL $(val "inbatch_mem_b${b}_tensor_mib"))" "$card"
        done
    else
        st=$(val status)
        row "train step / MFU / in-batch memory" SKIP SKIP - "${st:-not run}" "$card"
    fi
    # "INFO encode: ours N tok/s, transformers M tok/s, ratio R (NAME; ..."
    local line
    line=$([ -s "$enc" ] && grep -m1 '^INFO encode: ours' "$enc")
    if [ -n "$line" ]; then
        e_ours=$(sed -n 's/.*ours \([0-9.]*\) tok\/s.*/\1/p' <<<"$line")
        e_peer=$(sed -n 's/.*transformers \([0-9.]*\) tok\/s.*/\1/p' <<<"$line")
        e_ratio=$(ratio_of "$e_peer" "$e_ours")
        e_card=$(sed -n 's/.*ratio [0-9.]* (\([^;]*\);.*/\1/p' <<<"$line")
        row "encode tok/s bf16 (vs transformers)" "$e_ours" "$e_peer" "$e_ratio" \
            "$(goal_cell "$e_ratio" ">=" 1.5 ">=1.5x")" "${e_card:-$card}"
    else
        st=$([ -s "$enc" ] && grep -m1 -E '^(SKIP|FAIL) ' "$enc" | cut -c1-60)
        row "encode tok/s bf16 (vs transformers)" n/a n/a - "${st:-not run}" "$card"
    fi
    echo "ratio: train and memory rows peer/ours, MFU and encode rows ours/peer (> 1: ours better);"
    echo "MFU = model FLOPs of the 4 passes (fwd + bwd) / (ms/step x dense bf16 peak), see bench/README-gpu.md"
}
if [ "$MODE" = table ]; then
    table
    exit 0
fi

# ---------------------------------------------------------------- build and device
EMU=
case ${RV_CUDA_LIB:-} in */gpu-emu/*) EMU=1 ;; esac
if [ -z "${GPU_BENCH_NO_BUILD:-}" ]; then
    if [ -n "$EMU" ]; then
        make -s all gpu-emu >/dev/null || { echo "gpu.sh: building the emulated programs failed"; exit 1; }
    else
        make -s all gpu-tests >/dev/null || { echo "gpu.sh: building the GPU programs failed"; exit 1; }
    fi
fi
BG=${BUILD:-build}/gpu/bench_gpu SMALL=()
[ -n "$EMU" ] && BG=${BUILD:-build}/gpu-emu/bench_gpu SMALL=(--small)
if [ ! -x "$BG" ]; then
    echo "SKIP bench/gpu.sh (nvcc not found)"
    exit 0
fi

kernels() {
    local mem=()
    [ -n "${GPU_BENCH_MEM_B+set}" ] && mem=(--mem-b "$GPU_BENCH_MEM_B")
    mkdir -p "$dir/kernels"
    "$BG" "$dir/kernels" "${SMALL[@]}" "${mem[@]}" || return 1
    [ -s "$dir/kernels/results.txt" ] || return 0   # bench_gpu printed SKIP: no device
    local dev=cuda
    [ -n "$EMU" ] && dev=cpu
    "$PY" bench/gpu_ref.py "$dir/kernels" --mem-device "$dev" && cp "$dir/kernels/table.txt" "$dir/table.txt"
}

if [ "$MODE" = kernels ]; then
    # (the original layout: inputs and table.txt in $dir itself)
    mem=()
    [ -n "${GPU_BENCH_MEM_B+set}" ] && mem=(--mem-b "$GPU_BENCH_MEM_B")
    "$BG" "$dir" "${SMALL[@]}" "${mem[@]}" || exit 1
    [ -s "$dir/results.txt" ] || exit 0   # bench_gpu printed SKIP: no device
    dev=cuda
    [ -n "$EMU" ] && dev=cpu
    "$PY" bench/gpu_ref.py "$dir" --mem-device "$dev"
    exit
fi

# ---------------------------------------------------------------- --all
probe=$("$BG" "$dir" --mem-only --mem-b "" 2>&1)
if grep -q '^SKIP' <<<"$probe"; then
    echo "SKIP make bench-gpu ($(grep -m1 '^SKIP' <<<"$probe" | sed 's/^SKIP bench_gpu (//; s/)$//'))"
    exit 0
fi
status=0
echo "=== bench/train-gpu.sh"
TRB_FIGURES=$dir/train.fig bash bench/train-gpu.sh 2>&1 | tee "$dir/train.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "=== tests/gpu/encode.sh"
if [ -n "$EMU" ]; then
    BIN=${BIN:-bin} BUILD=${BUILD:-build} bash tests/gpu/encode.sh 2>&1 | tee "$dir/encode.log"
else
    env BIN=${BIN:-bin} BUILD=${BUILD:-build} RV_CUDA_LIB= bash tests/gpu/encode.sh 2>&1 | tee "$dir/encode.log"
fi
grep -q '^FAIL' "$dir/encode.log" && status=1
echo "=== kernels (bench_gpu + bench/gpu_ref.py; the in-batch memory rows are train-gpu.sh's)"
GPU_BENCH_MEM_B="" kernels || status=1
echo
table
exit $status
