#!/bin/bash
# gpu-check.sh — the ONE script for a session that has a lent GPU (H100/H200):
# builds revela there, runs the CUDA parity tests, compute-sanitizer on the
# small shapes and the GPU benchmark, and prints one summary table last.
#
# Before (on the development machine, once; needs Debian/PyPI access):
#     scripts/gpu-deps.sh          # fills gpu-deps/ (~14 MB of .debs, ignored by git)
# Then, with the device tool, exactly:
#     run(command="bash scripts/gpu-check.sh", carry=["gpu-deps"], timeout_s=570)
# The script keeps to a budget of GPU_CHECK_BUDGET seconds (default 540) and
# prints the summary before it; timeout_s=570 leaves room for the summary.
# One call only, then give_back: what it needs is in this repository and
# gpu-deps/ (the GPU machine reaches no registry).
#
# Time plan (seconds; each stage's limit, cut to what the budget has left; the
# stages before bench-train also leave it RESERVE_TRAIN = 170 s, so issue 8's
# figures come first even when the build is slow):
#   env, deps, cublas ~5 (find: 30 at most each) | build-gpu 180 | build-all 60 |
#   parity 60 | gpu-train 90 | bench-train 170 (bench/train-gpu.sh, TRB_BUDGET 150) |
#   gpu-encode 60 | gpu-search 100 (SEARCH_BUDGET = its limit - 10) | gpu-comm 40 |
#   other tests/gpu/*.sh 40 each | bench 60 | memcheck, racecheck 90 each, with what is left.
# Expected on an H100 with 16 cores: env ~10, build ~120, parity ~30, gpu-train ~50,
# bench-train ~130 (figures by ~340 s), encode ~40, search ~90, comm ~20, bench ~30:
# ~530 s; the sanitizers get what is left (often nothing: they are last on purpose).
#
# Stages (each under `timeout`, the later ones shortened to the remaining budget;
# a failed stage does not stop the next):
#   env       nvidia-smi, nvcc, gcc, make, python/torch versions (read only; no settings touched)
#   deps      when system headers (zstd, xxhash, utf8proc, libstemmer, OpenBLAS cblas)
#             are missing: unpack gpu-deps/*.deb into /tmp/rv-gpu-deps and point
#             CPATH, LIBRARY_PATH, LD_LIBRARY_PATH and the Makefile's BLAS flags at it
#   cublas    cuBLASLt headers and library: the toolkit's, else a Python wheel's copy
#   build     make -j gpu-tests (librevela, kernels for CUDA_ARCH (default sm_90), the GPU
#             programs), then make -j all (every tool)
#   parity    build/gpu/test_gpu_ops: every kernel against its CPU twin (all shapes)
#   gpu-train tests/gpu/train.sh (the step's parity test on the device, rv-train --device
#             cuda vs the PyTorch peer, SmolLM2 shape)
#   bench-train bench/train-gpu.sh: issue 8's training figures (Llama-3.2-1B architecture,
#             random weights, B 16, L 160, r 256: ours vs the PyTorch peer ms/step, MFU,
#             device memory; the in-batch attention's memory at B 16 and 64)
#   gpu-NAME  the other tests/gpu/NAME.sh (encode, search, comm, ...), each: a tool with
#             --device cuda end to end (vs the CPU backend and PyTorch where present),
#             PASS/FAIL/INFO lines
#   bench     bench/gpu.sh: in-batch attention vs naive PyTorch, cuBLASLt vs torch.matmul,
#             and our in-batch results vs PyTorch fp32 autograd
#   memcheck  compute-sanitizer --tool memcheck  test_gpu_ops --quick
#   racecheck compute-sanitizer --tool racecheck test_gpu_ops --quick
# Files under $OUT (when set; else /tmp/gpu-check-out), six at most since the
# device tool brings back eight: gpu-check.log (every stage's output, as it
# runs, so a killed run still has it), summary.txt, train.fig (bench-train's
# figures), gpu_profile.tsv and gpu_gemm_profile.tsv (where our step's device
# time goes, by operation and by matrix-product shape), and at the end
# logs.tar.gz: the stage logs (build, parity, tool-NAME, bench-train, bench,
# sanitizer), kept in /tmp/gpu-check-logs while it runs.
# Exit status 0 when no stage failed: a SKIP stage (no torch for the peer, a
# test's own SKIP lines) is listed in the summary and does not count as a
# failure, as SKIP never counts as a pass.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET:-540}
RESERVE_TRAIN=170   # kept for bench-train by the stages before it
CUDA_ARCH=${CUDA_ARCH:-sm_90}
JOBS=$(nproc 2>/dev/null || echo 8)
T_START=$(date +%s)
LOG=$OUT/gpu-check.log
LOGS=/tmp/gpu-check-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
: >"$LOG"
: >"$LOGS/sanitizer.log"
S_NAME=(); S_STATUS=(); S_SECS=(); S_NOTE=()

say() { echo "$*" | tee -a "$LOG"; }
remaining() { echo $((BUDGET - ($(date +%s) - T_START))); }

# record NAME STATUS SECONDS NOTE
record() { S_NAME+=("$1"); S_STATUS+=("$2"); S_SECS+=("$3"); S_NOTE+=("$4"); say "--- [$1] $2 (${3}s) $4"; }

# run_stage NAME LIMIT LOGFILE CMD...: runs CMD under timeout min(LIMIT, remaining-20-RESERVE),
# output to LOGFILE (appended) and to the main log; sets RC. RESERVE (default 0):
# seconds kept for later stages.
RESERVE=0
run_stage() {
    local name=$1 limit=$2 logfile=$3
    shift 3
    local left=$(($(remaining) - 20 - RESERVE))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 5 ]; then
        RC=124
        say "=== [$name] skipped: the time budget is spent"
        return
    fi
    say "=== [$name] $* (limit ${limit}s)"
    timeout --kill-after=5 "$limit" "$@" >>"$logfile" 2>&1
    RC=$?
    [ "$logfile" != "$LOG" ] && cat "$logfile" >>"$LOG"
}

# ---------------------------------------------------------------- env
t0=$(date +%s)
{
    echo "date: $(date -u +%FT%TZ)  host: $(uname -srm)"
    echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | head -2)"
    command -v nvcc >/dev/null && echo "nvcc: $(command -v nvcc) $(nvcc --version | tail -2 | head -1)" || \
        echo "nvcc: not on PATH ($(ls /usr/local/cuda/bin/nvcc 2>&1))"
    echo "cc: $(cc --version 2>&1 | head -1)"
    echo "make: $(command -v make || echo missing)"
    echo "cublasLt: $(ls /usr/local/cuda/lib64/libcublasLt.so* 2>/dev/null | head -2 | tr '\n' ' ')"
    echo "compute-sanitizer: $(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || echo missing)"
    echo "python3: $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"
    # scripts/revela_torch.py (the training peer) mirrors transformers 4.45's attention module
    echo "python3: $(python3 -c 'import transformers, peft; print("transformers", transformers.__version__, "peft", peft.__version__)' 2>&1 | tail -1)"
    echo "gpu-deps: $(ls gpu-deps/*.deb 2>/dev/null | wc -l) .debs"
} 2>&1 | tee -a "$LOG"
record env ok $(($(date +%s) - t0)) "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"

# ---------------------------------------------------------------- deps
t0=$(date +%s)
find_header() {
    for d in /usr/include /usr/local/include /usr/include/x86_64-linux-gnu; do [ -f "$d/$1" ] && return 0; done
    return 1
}
missing=""
for h in zstd.h xxhash.h utf8proc.h libstemmer.h; do find_header "$h" || missing="$missing $h"; done
[ -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] || [ -f /usr/include/openblas/cblas.h ] ||
    missing="$missing cblas.h"
MAKE_ARGS=()
MAKE_BIN=$(command -v make || true)
[ -n "$MAKE_BIN" ] && ! "$MAKE_BIN" --version >/dev/null 2>&1 && MAKE_BIN=""   # present but not runnable
DEPS=/tmp/rv-gpu-deps
if [ -n "$missing" ] || [ -z "$MAKE_BIN" ]; then
    if ! ls gpu-deps/*.deb >/dev/null 2>&1; then
        record deps FAIL $(($(date +%s) - t0)) "missing:$missing and no gpu-deps/ (run scripts/gpu-deps.sh here, carry gpu-deps)"
    else
        rm -rf "$DEPS" && mkdir -p "$DEPS"
        ok=1
        for deb in gpu-deps/*.deb; do
            if command -v dpkg-deb >/dev/null; then
                dpkg-deb -x "$deb" "$DEPS" || ok=0
            else   # a .deb is an ar archive holding data.tar.*
                member=$(ar t "$deb" | grep '^data\.tar')
                ar p "$deb" "$member" | tar -x -C "$DEPS" -f - || ok=0
            fi
        done
        inc=$DEPS/usr/include lib=$DEPS/usr/lib/x86_64-linux-gnu
        export CPATH="$inc:$inc/x86_64-linux-gnu/openblas-pthread${CPATH:+:$CPATH}"
        export LIBRARY_PATH="$lib:$lib/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}"
        export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        MAKE_ARGS=(-o probe "BLAS_CFLAGS=-I$inc/x86_64-linux-gnu/openblas-pthread"
                   "BLAS_LIBS=-L$lib/openblas-pthread -lopenblas")
        [ -z "$MAKE_BIN" ] && MAKE_BIN=$DEPS/usr/bin/make
        [ "$ok" = 1 ] && st=ok || st=FAIL
        record deps "$st" $(($(date +%s) - t0)) "system lacked:${missing:- make}; using gpu-deps ($(ls gpu-deps/*.deb | wc -l) debs)"
    fi
else
    record deps ok $(($(date +%s) - t0)) "system headers present; gpu-deps not needed"
fi

# ---------------------------------------------------------------- cuBLASLt
# The toolkit's, else a Python wheel's copy (torch brings nvidia-cublas):
# headers through CPATH (nvcc preprocesses with the host gcc), the library
# through the Makefile's CUBLASLT_LIB (linked by path, with an rpath).
existing() { while read -r f; do [ -f "$f" ] && echo "$f"; done; }   # drops dangling links
t0=$(date +%s)
NVCC_BIN=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CH=${NVCC_BIN%/bin/nvcc}
note="toolkit $CH"
if [ ! -f "$CH/include/cublasLt.h" ] && [ ! -f "$CH/targets/x86_64-linux/include/cublasLt.h" ]; then
    h=$(timeout 30 find /usr/local /opt /usr/lib /usr/include -name cublasLt.h 2>/dev/null | existing | head -1)
    if [ -n "$h" ]; then
        export CPATH="$(dirname "$h")${CPATH:+:$CPATH}"
        note="$note; header from $(dirname "$h")"
    else
        note="$note; cublasLt.h NOT FOUND"
    fi
fi
if ! ls "$CH"/lib64/libcublasLt.so* "$CH"/targets/x86_64-linux/lib/libcublasLt.so* "$CH"/lib/libcublasLt.so* \
    >/dev/null 2>&1; then
    l=$(timeout 30 find /usr/local /opt /usr/lib -name 'libcublasLt.so*' 2>/dev/null | existing | sort | head -1)
    if [ -n "$l" ]; then
        MAKE_ARGS+=("CUBLASLT_LIB=$l")
        note="$note; library $l"
    else
        note="$note; libcublasLt NOT FOUND"
    fi
fi
case "$note" in *"NOT FOUND"*) st=FAIL ;; *) st=ok ;; esac
record cublas "$st" $(($(date +%s) - t0)) "$note"

# ---------------------------------------------------------------- build
t0=$(date +%s)
: >"$LOGS/build.log"
MAKE=("${MAKE_BIN:-make}" -j"$JOBS" CUDA_ARCH="$CUDA_ARCH" "${MAKE_ARGS[@]}")
# the GPU programs first (library + kernels), so a tool that fails to build
# elsewhere in the tree cannot keep the tests from running
run_stage build-gpu 180 "$LOGS/build.log" "${MAKE[@]}" gpu-tests
rc_gpu=$RC
run_stage build-all 60 "$LOGS/build.log" "${MAKE[@]}" all
rc_all=$RC
note="make all rc=$rc_all, make gpu-tests rc=$rc_gpu; $(grep -c 'warning:' "$LOGS/build.log") warnings"
if [ "$rc_gpu" = 0 ] && [ -x build/gpu/test_gpu_ops ]; then
    [ "$rc_all" = 0 ] && st=ok || st=PART
else
    st=FAIL
    grep -E 'error|Error' "$LOGS/build.log" | head -15 | tee -a "$LOG"
fi
record build "$st" $(($(date +%s) - t0)) "$note"

# ---------------------------------------------------------------- parity tests
if [ -x build/gpu/test_gpu_ops ]; then
    t0=$(date +%s)
    : >"$LOGS/parity.log"
    RESERVE=$RESERVE_TRAIN
    run_stage parity 60 "$LOGS/parity.log" build/gpu/test_gpu_ops
    RESERVE=0
    p=$(grep -c '^PASS ' "$LOGS/parity.log"); f=$(grep -c '^FAIL ' "$LOGS/parity.log")
    if grep -q '^SKIP ' "$LOGS/parity.log"; then
        st=SKIP
    elif [ "$RC" = 0 ] && [ "$f" = 0 ] && [ "$p" -gt 0 ]; then
        st=ok
    else
        st=FAIL
    fi
    [ "$RC" = 124 ] || [ "$RC" = 137 ] && note="TIMEOUT; " || note=""
    record parity "$st" $(($(date +%s) - t0)) "${note}$p passed, $f failed (rc $RC)"
else
    record parity FAIL 0 "not built"
fi

# ---------------------------------------------------------------- tools on the GPU
# Every tests/gpu/*.sh: a tool run end to end with --device cuda on the real
# backend (bin/librevela-cuda.so), against the CPU backend and, where the image
# has torch, PyTorch; each prints PASS/FAIL/SKIP/INFO lines (INFO: timings).
: >"$LOGS/tools.log"
# tool_stage NAME LIMIT [VAR=VALUE...]: tests/gpu/NAME.sh as stage gpu-NAME, with those variables
tool_stage() {
    local name=$1 limit=$2 t=tests/gpu/$1.sh t0 p f sk st
    shift 2
    [ -f "$t" ] || return 0
    t0=$(date +%s)
    : >"$LOGS/tool-$name.log"
    run_stage "gpu-$name" "$limit" "$LOGS/tool-$name.log" env BIN=bin BUILD=build RV_CUDA_LIB= "$@" bash "$t"
    cat "$LOGS/tool-$name.log" >>"$LOGS/tools.log"
    p=$(grep -c '^PASS ' "$LOGS/tool-$name.log"); f=$(grep -c '^FAIL ' "$LOGS/tool-$name.log")
    sk=$(grep -c '^SKIP ' "$LOGS/tool-$name.log")
    if [ "$RC" = 0 ] && [ "$f" = 0 ] && [ "$p" -gt 0 ]; then st=ok
    elif [ "$RC" = 124 ] || [ "$RC" = 137 ]; then st=TIMEOUT
    elif [ "$RC" = 0 ] && [ "$f" = 0 ] && [ "$sk" -gt 0 ]; then st=SKIP   # e.g. no device, no torch
    else st=FAIL; fi
    record "gpu-$name" "$st" $(($(date +%s) - t0)) "$p passed, $f failed, $sk skipped (rc $RC)"
}
RESERVE=$RESERVE_TRAIN
tool_stage train 90
RESERVE=0

# ---------------------------------------------------------------- issue 8's training figures
# bench/train-gpu.sh: figures to $FIGS/train.fig; the summary's headline table
# (bench/gpu.sh --table) reads it and the encode stage's INFO line.
FIGS=/tmp/rv-gpu-figs
rm -rf "$FIGS" && mkdir -p "$FIGS"
t0=$(date +%s)
: >"$LOGS/bench-train.log"
lim=$(($(remaining) - 25))
[ "$lim" -gt 160 ] && lim=160
run_stage bench-train 170 "$LOGS/bench-train.log" env BIN=bin BUILD=build RV_CUDA_LIB= TRB_FIGURES="$FIGS/train.fig" \
    TRB_PROFILE_OUT="$FIGS" \
    TRB_BUDGET="$lim" bash bench/train-gpu.sh
[ -f "$FIGS/train.fig" ] && cp "$FIGS/train.fig" "$OUT/train.fig"
cp "$FIGS"/gpu_profile.tsv "$FIGS"/gpu_gemm_profile.tsv "$OUT/" 2>/dev/null
p=$(grep -c '^PASS ' "$LOGS/bench-train.log"); f=$(grep -c '^FAIL ' "$LOGS/bench-train.log")
sk=$(grep -c '^SKIP ' "$LOGS/bench-train.log")
if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then st=TIMEOUT
elif [ "$f" -gt 0 ] || [ "$RC" != 0 ]; then st=FAIL
elif [ "$p" -gt 0 ]; then st=ok
elif [ "$sk" -gt 0 ]; then st=SKIP
else st=FAIL; fi
fv() { [ -f "$FIGS/train.fig" ] && sed -n "s/^$1 //p" "$FIGS/train.fig" | tail -1; }
if [ "$st" = SKIP ]; then note="$(grep -m1 '^SKIP ' "$LOGS/bench-train.log" | cut -c1-120)"
else note="ms/step ours $(fv step_ms_ours) peer $(fv step_ms_peer) (peer/ours $(fv step_ratio)), MFU $(fv mfu_ours)%/$(fv mfu_peer)%"; fi
record bench-train "$st" $(($(date +%s) - t0)) "$note; $p passed, $f failed, $sk skipped (rc $RC)"

tool_stage encode 60
cp "$LOGS/tool-encode.log" "$FIGS/encode.log" 2>/dev/null
# search.sh keeps to SEARCH_BUDGET (its later checks print SKIP when short of time):
# the stage's own limit less 10 s
lim=$(($(remaining) - 20))
[ "$lim" -gt 100 ] && lim=100
tool_stage search 100 SEARCH_BUDGET=$((lim > 30 ? lim - 10 : 20))
tool_stage comm 40
for t in tests/gpu/*.sh; do   # any other GPU test, after the planned ones
    n=$(basename "$t" .sh)
    case $n in train | encode | search | comm) continue ;; esac
    tool_stage "$n" 40
done

# ---------------------------------------------------------------- benchmark
if [ -x build/gpu/bench_gpu ]; then
    t0=$(date +%s)
    : >"$LOGS/bench.log"
    bdir=/tmp/rv-gpu-bench
    rm -rf "$bdir"
    # built above, with the deps flags; the in-batch memory rows were bench-train's
    run_stage bench 60 "$LOGS/bench.log" env GPU_BENCH_DIR=$bdir GPU_BENCH_NO_BUILD=1 GPU_BENCH_MEM_B= bash bench/gpu.sh
    if grep -q '^SKIP ' "$LOGS/bench.log"; then st=SKIP
    elif [ "$RC" = 0 ] && [ -s "$bdir/table.txt" ]; then st=ok
    elif [ -s "$bdir/results.txt" ]; then st=PART
    else st=FAIL; fi
    record bench "$st" $(($(date +%s) - t0)) "rc $RC; $(grep -E '^(PASS|FAIL) ' "$LOGS/bench.log" | cut -c1-80 | tr '\n' ' ')"
else
    record bench FAIL 0 "not built"
fi

# ---------------------------------------------------------------- compute-sanitizer
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
for tool in memcheck racecheck; do
    if [ -z "$SAN" ] || [ ! -x build/gpu/test_gpu_ops ]; then
        record "$tool" n/a 0 "compute-sanitizer or the test is missing"
        continue
    fi
    t0=$(date +%s)
    echo "=== compute-sanitizer --tool $tool" >>"$LOGS/sanitizer.log"
    run_stage "$tool" 90 "$LOGS/sanitizer.log" "$SAN" --tool "$tool" --error-exitcode 99 build/gpu/test_gpu_ops --quick
    summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/sanitizer.log" | tail -1)
    if [ "$RC" = 0 ]; then st=ok
    elif [ "$RC" = 124 ] || [ "$RC" = 137 ]; then st=TIMEOUT
    else st=FAIL; fi
    record "$tool" "$st" $(($(date +%s) - t0)) "rc $RC; ${summary:-no summary line}"
done

# ---------------------------------------------------------------- summary (printed last)
{
    echo
    echo "==================== revela GPU check: summary ===================="
    echo "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)  arch: $CUDA_ARCH  total: $(($(date +%s) - T_START))s"
    printf '%-12s %-7s %5s  %s\n' stage status secs note
    for i in "${!S_NAME[@]}"; do
        printf '%-12s %-7s %5s  %s\n' "${S_NAME[$i]}" "${S_STATUS[$i]}" "${S_SECS[$i]}" "${S_NOTE[$i]:0:150}"
    done
    if [ -s "$LOGS/parity.log" ]; then
        echo "--- parity failures (first 25):"
        grep '^FAIL ' "$LOGS/parity.log" | head -25 | cut -c1-300
        grep -q '^FAIL ' "$LOGS/parity.log" || echo "(none)"
    fi
    if [ -s "$LOGS/tools.log" ]; then
        echo "--- tools on the GPU (FAIL, SKIP and INFO lines):"
        grep -E '^(FAIL|SKIP|INFO) ' "$LOGS/tools.log" | head -70 | cut -c1-200
    fi
    if [ -s "$LOGS/bench-train.log" ]; then
        echo "--- bench-train (FAIL, SKIP and INFO lines):"
        grep -E '^(FAIL|SKIP|INFO) |^  ' "$LOGS/bench-train.log" | head -60 | cut -c1-400
    fi
    echo
    GPU_BENCH_DIR=$FIGS GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" \
        bash bench/gpu.sh --table
    if [ -s /tmp/rv-gpu-bench/table.txt ]; then
        echo "--- benchmark ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1); medians of 5):"
        cat /tmp/rv-gpu-bench/table.txt
    elif [ -s /tmp/rv-gpu-bench/results.txt ]; then
        echo "--- benchmark, ours only (name ms flops shape):"
        cat /tmp/rv-gpu-bench/results.txt
    fi
} >"$OUT/summary.txt"
cat "$OUT/summary.txt" | tee -a "$LOG"
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" . 2>/dev/null
for s in "${S_STATUS[@]}"; do
    case "$s" in ok | n/a | SKIP) ;; *) exit 1 ;; esac
done
exit 0
