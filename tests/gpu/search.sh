#!/bin/bash
# tests/gpu/search.sh — rv-search --device cuda end to end on a real GPU
# (scripts/gpu-check.sh runs it: env BIN=bin BUILD=build RV_CUDA_LIB= bash
# tests/gpu/search.sh, 120 s, no network): random unit vectors written as
# .npy (a corpus in two shards with duplicated rows, queries of which some
# equal corpus rows), then
#   parity      --device cuda (all queries) against --device cpu on the first
#               SEARCH_QCPU queries: identical TREC lines (ids, order, scores);
#               the same for the corpus streamed block by block instead of
#               resident, for an f16 copy of the corpus, and for MaxP over
#               documents of 3 chunks spread over the corpus
#   timing      ours (rv-search's search time: context, corpus upload, GEMM,
#               top-k, exact rescoring, output) against PyTorch on the same
#               GPU (host-to-device copies, then torch.topk(q @ c.T) over
#               corpus blocks, fp32 without TF32, merged, copied back):
#               INFO search: ours X s, torch Y s, ratio R (GPU, sizes)
# Sizes come from the environment (defaults for an H100), so the script's CPU
# parts also run on a machine without a GPU, with the emulated backend and
# tiny sizes:
#   SEARCH_N=3000 SEARCH_DIM=24 SEARCH_Q=12 SEARCH_QCPU=6 SEARCH_K=10 \
#   RV_CUDA_LIB=build/gpu-emu/librevela-cuda.so bash tests/gpu/search.sh
# Other knobs: PYTHON (python3 with numpy; torch optional), SEARCH_DIR (work
# folder, removed at the end unless given), SEARCH_TORCH_CPU=1 (run the torch
# side on the CPU: only to exercise this script without a GPU),
# SEARCH_TORCH_BLOCK (corpus rows per torch product, default 262144),
# SEARCH_BUDGET / SEARCH_RESERVE (seconds: the streamed, f16 and MaxP checks
# print SKIP once fewer than RESERVE of BUDGET are left; defaults 110 / 25).
set -u
START=$(date +%s)
cd "$(dirname "$0")/../.." || exit 1
BIN=${BIN:-bin}
N=${SEARCH_N:-1000000}; DIM=${SEARCH_DIM:-768}; Q=${SEARCH_Q:-1000}; QCPU=${SEARCH_QCPU:-100}; K=${SEARCH_K:-100}
PY=${PYTHON:-python3}
S=search
if [ -n "${SEARCH_DIR:-}" ]; then W=$SEARCH_DIR; mkdir -p "$W"; else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi
[ "$QCPU" -le "$Q" ] || QCPU=$Q

if ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "SKIP $S/parity (no numpy for $PY to make the vectors)"; echo "SKIP $S/timing (no numpy)"; exit 0
fi
if [ ! -x "$BIN/rv-search" ]; then echo "FAIL $S/build ($BIN/rv-search missing)"; exit 1; fi

# ---------------------------------------------------------------- data
t0=$(date +%s.%N)
"$PY" - "$W" "$N" "$DIM" "$Q" "$QCPU" <<'EOF' || { echo "FAIL $S/data (generating vectors failed)"; exit 1; }
import sys
import numpy as np
w, n, dim, q, qcpu = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(20240607)
c = rng.standard_normal((n, dim), dtype=np.float32)
c /= np.linalg.norm(c, axis=1, keepdims=True)
# ties: a few rows repeated in the other shard, and queries equal to corpus rows
split = n * 3 // 5 + 7 if n > 20 else n // 2
dup = min(16, split, n - split)
c[split:split + dup] = c[:dup]
qs = rng.standard_normal((q, dim), dtype=np.float32)
qs /= np.linalg.norm(qs, axis=1, keepdims=True)
m = min(q // 4, n)
qs[:m] = c[rng.choice(n, size=m, replace=False)]
np.save(f"{w}/c1.npy", c[:split]); np.save(f"{w}/c2.npy", c[split:])
np.save(f"{w}/c1h.npy", c[:split].astype(np.float16)); np.save(f"{w}/c2h.npy", c[split:].astype(np.float16))
np.save(f"{w}/q.npy", qs); np.save(f"{w}/qsub.npy", qs[:qcpu])
with open(f"{w}/c1.ids", "w") as f:   # ids unique over both shards: d<row>
    f.write("".join(f"d{r}\n" for r in range(split)))
with open(f"{w}/c2.ids", "w") as f:
    f.write("".join(f"d{r}\n" for r in range(split, n)))
# MaxP ids: chunks of documents spread over the corpus (row r is chunk r of
# document r % (n // 3), so a document's 3 chunks are far apart)
docs = max(1, n // 3)
with open(f"{w}/c1.chunks", "w") as f:
    f.write("".join(f"doc{r % docs}#{r}\n" for r in range(split)))
with open(f"{w}/c2.chunks", "w") as f:
    f.write("".join(f"doc{r % docs}#{r}\n" for r in range(split, n)))
EOF
echo "INFO $S: data $N x $DIM corpus (2 shards), $Q queries in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

C="--corpus-npy $W/c1.npy --corpus-ids $W/c1.ids --corpus-npy $W/c2.npy --corpus-ids $W/c2.ids"
CH="--corpus-npy $W/c1h.npy --corpus-ids $W/c1.ids --corpus-npy $W/c2h.npy --corpus-ids $W/c2.ids"
# the lines of queries 0..QCPU-1 (ids are row numbers)
subset() { awk -v n="$QCPU" '$1 < n' "$1"; }
# search_secs STDERR: the search time rv-search reports
search_secs() { sed -n 's/.*GFLOP\/s (2 x queries x corpus x dim in \([0-9.]*\)s).*/\1/p' "$1" | tail -1; }

# ---------------------------------------------------------------- parity
# shellcheck disable=SC2086
"$BIN/rv-search" --device cuda $C -k "$K" --queries-npy "$W/q.npy" -o "$W/gpu.trec" 2>"$W/gpu.err"; rc=$?
if [ $rc -ne 0 ]; then
    echo "FAIL $S/cuda_run (exit $rc): $(tail -3 "$W/gpu.err")"; exit 1
fi
grep -E 'device cuda|GFLOP' "$W/gpu.err" | sed "s/^/INFO $S: /"
gpu_name=$(sed -n 's/.*device cuda: \([^;(]*\).*/\1/p' "$W/gpu.err" | sed 's/ *$//')
lines=$(wc -l < "$W/gpu.trec"); want=$((Q * (K < N ? K : N)))
if [ "$lines" -eq "$want" ]; then echo "PASS $S/cuda_lines"; else echo "FAIL $S/cuda_lines ($lines lines, want $want)"; fi

# shellcheck disable=SC2086
"$BIN/rv-search" -q --device cpu $C -k "$K" --queries-npy "$W/qsub.npy" -o "$W/cpu.trec" 2>"$W/cpu.err" ||
    echo "FAIL $S/cpu_run: $(tail -3 "$W/cpu.err")"
if [ -s "$W/cpu.trec" ] && cmp -s <(subset "$W/gpu.trec") "$W/cpu.trec"; then
    echo "PASS $S/parity_resident (first $QCPU of $Q queries, k $K: cuda = cpu)"
else
    echo "FAIL $S/parity_resident: $(diff <(subset "$W/gpu.trec") "$W/cpu.trec" | head -5 | tr '\n' '|')"
fi

# ---------------------------------------------------------------- timing vs torch
ours=$(search_secs "$W/gpu.err")
ready=$(sed -n 's/.*, ready in \([0-9.]*\)s;.*/\1/p' "$W/gpu.err")   # CUDA context and corpus upload, part of ours
"$PY" - "$W" "$K" >"$W/torch.out" 2>"$W/torch.err" <<'EOF'
import sys, time
import numpy as np
try:
    import torch
except ImportError:
    print("SKIP no torch"); sys.exit(0)
import os
on_cpu = os.environ.get("SEARCH_TORCH_CPU") == "1"   # only to exercise this code without a GPU
if not torch.cuda.is_available() and not on_cpu:
    print("SKIP torch sees no CUDA device"); sys.exit(0)
torch.backends.cuda.matmul.allow_tf32 = False   # fp32, as ours
w, k = sys.argv[1], int(sys.argv[2])
shards = [np.load(f"{w}/c1.npy"), np.load(f"{w}/c2.npy")]
q = np.load(f"{w}/q.npy")
dev = torch.device("cpu" if on_cpu else "cuda")
sync = (lambda: None) if on_cpu else torch.cuda.synchronize
torch.ones(8, 8, device=dev) @ torch.ones(8, 8, device=dev)   # context and cuBLAS start-up, untimed
sync()

def run(block=int(os.environ.get("SEARCH_TORCH_BLOCK", "262144"))):
    t0 = time.perf_counter()
    cs = [torch.from_numpy(s).to(dev) for s in shards]
    qd = torch.from_numpy(q).to(dev)
    sync()
    t1 = time.perf_counter()
    best_s = best_i = None
    base = 0
    for c in cs:
        for r0 in range(0, c.shape[0], block):
            s = qd @ c[r0:r0 + block].T
            v, i = torch.topk(s, min(k, s.shape[1]), dim=1)
            i = i + (base + r0)
            if best_s is None:
                best_s, best_i = v, i
            else:
                v2, j = torch.topk(torch.cat([best_s, v], 1), min(k, best_s.shape[1] + v.shape[1]), dim=1)
                best_s, best_i = v2, torch.gather(torch.cat([best_i, i], 1), 1, j)
        base += c.shape[0]
    sync()
    t2 = time.perf_counter()
    out = (best_s.cpu(), best_i.cpu())
    t3 = time.perf_counter()
    return t3 - t0, t2 - t1, out

run()                    # warm-up (allocator, kernels)
total, compute, (vals, idx) = run()
print(f"TIME {total:.4f} {compute:.4f}")
print(f"TOP1 {' '.join(str(int(x)) for x in idx[:, 0].tolist())}")
EOF
if grep -q '^SKIP' "$W/torch.out"; then
    echo "SKIP $S/timing ($(sed -n 's/^SKIP //p' "$W/torch.out"); ours ${ours:-?} s)"
elif ! grep -q '^TIME' "$W/torch.out"; then
    echo "FAIL $S/torch_run: $(tail -3 "$W/torch.err" | tr '\n' '|')"
else
    read -r _ torch_total torch_compute < <(grep '^TIME' "$W/torch.out")
    ratio=$(awk -v a="$ours" -v b="$torch_total" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "INFO search: ours $ours s, torch $torch_total s, ratio $ratio ($gpu_name, corpus $N x $DIM f32 in 2 shards, $Q queries, k $K; ours includes ${ready:-?} s of CUDA start-up and corpus upload, torch was warm; torch without host-device copies $torch_compute s)"
    # torch's top-1 against ours: the same row unless fp32 rounding reorders a near-tie
    ours_top1=$(awk '$4 == 1 { print substr($3, 2) }' "$W/gpu.trec" | tr '\n' ' ')
    agree=$(paste <(echo "$ours_top1" | tr ' ' '\n' | sed '/^$/d') <(grep '^TOP1' "$W/torch.out" | cut -d' ' -f2- | tr ' ' '\n') |
        awk '$1 == $2 { a++ } END { print a + 0 }')
    echo "INFO $S: top-1 agrees with torch for $agree of $Q queries"
fi

# ---------------------------------------------------------------- more parity, time allowing
# (gpu-check.sh gives this script 120 s; each check below reloads the corpus)
over_budget() {  # name: SKIP it when less than SEARCH_RESERVE seconds of SEARCH_BUDGET are left
    local used=$(( $(date +%s) - START ))
    if [ "$used" -gt $(( ${SEARCH_BUDGET:-110} - ${SEARCH_RESERVE:-25} )) ]; then
        echo "SKIP $S/$1 (${used} s used of the ${SEARCH_BUDGET:-110} s budget)"; return 0
    fi
    return 1
}

# the corpus streamed block by block (as when it exceeds device memory)
if ! over_budget parity_streamed; then
    # shellcheck disable=SC2086
    RV_SEARCH_GPU_RESIDENT=0 RV_SEARCH_GPU_BLOCK=$(((N + 2) / 3)) "$BIN/rv-search" --device cuda $C -k "$K" \
        --queries-npy "$W/qsub.npy" -o "$W/gpu_streamed.trec" 2>"$W/streamed.err"
    if [ -s "$W/cpu.trec" ] && cmp -s "$W/gpu_streamed.trec" "$W/cpu.trec" && grep -q 'streamed per query tile' "$W/streamed.err"; then
        echo "PASS $S/parity_streamed"
    else
        echo "FAIL $S/parity_streamed: $(tail -2 "$W/streamed.err" | tr '\n' '|')"
    fi
fi

# f16 storage: uploaded as stored, widened on the device
if ! over_budget parity_f16; then
    # shellcheck disable=SC2086
    "$BIN/rv-search" -q --device cpu $CH -k "$K" --queries-npy "$W/qsub.npy" -o "$W/cpu16.trec" 2>"$W/cpu16.err"
    # shellcheck disable=SC2086
    "$BIN/rv-search" -q --device cuda $CH -k "$K" --queries-npy "$W/qsub.npy" -o "$W/gpu16.trec" 2>"$W/gpu16.err"
    if [ -s "$W/cpu16.trec" ] && cmp -s "$W/gpu16.trec" "$W/cpu16.trec"; then
        echo "PASS $S/parity_f16"
    else
        echo "FAIL $S/parity_f16: $(tail -2 "$W/gpu16.err" "$W/cpu16.err" | tr '\n' '|')"
    fi
fi

# MaxP: documents of 3 chunks
if ! over_budget parity_maxp; then
    CM="--corpus-npy $W/c1.npy --corpus-ids $W/c1.chunks --corpus-npy $W/c2.npy --corpus-ids $W/c2.chunks"
    # shellcheck disable=SC2086
    "$BIN/rv-search" -q --device cpu $CM --doc-agg max -k "$K" --queries-npy "$W/qsub.npy" -o "$W/cpu_maxp.trec" 2>"$W/cpu_maxp.err"
    # shellcheck disable=SC2086
    "$BIN/rv-search" --device cuda $CM --doc-agg max -k "$K" --queries-npy "$W/qsub.npy" -o "$W/gpu_maxp.trec" 2>"$W/gpu_maxp.err"
    if [ -s "$W/cpu_maxp.trec" ] && cmp -s "$W/gpu_maxp.trec" "$W/cpu_maxp.trec"; then
        echo "PASS $S/parity_maxp ($(grep -o '[0-9]* queries rescanned in full' "$W/gpu_maxp.err"))"
    else
        echo "FAIL $S/parity_maxp: $(tail -2 "$W/gpu_maxp.err" "$W/cpu_maxp.err" | tr '\n' '|')"
    fi
fi
