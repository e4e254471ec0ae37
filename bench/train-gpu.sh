#!/bin/bash
# train-gpu.sh — issue 8's training benchmark on one GPU: the Revela step for
# the Llama-3.2-1B ARCHITECTURE with RANDOM weights (the GPU machine has no
# network and no model files), ours against the PyTorch peer on the same GPU
# in the same run, plus the in-batch attention's peak memory at B = 16 and 64.
# `make bench-gpu` (bench/gpu.sh --all) and scripts/gpu-check.sh run it.
#
# Model (transformers builds it on the device, saves bf16 safetensors ~2.5 GB to
# a temporary folder): 16 layers, hidden 2048, 32 heads / 8 kv heads, head_dim
# 64, ffn 8192, vocab 128256, tied embeddings, rope theta 500000 with llama3
# rope_scaling {factor 32, low 1, high 4, original_max_position_embeddings
# 8192} (lib/model_config.c reads it); the byte-level fixture tokenizer
# (tests/fixtures/model/llama_tied/tokenizer.json, BOS/EOS 1/2), groups of
# TRB_B random-word chunks long enough that every view reaches --max-len.
# Both sides: one checkpoint as retriever and LM, LoRA r TRB_R, alpha TRB_ALPHA,
# dropout TRB_DROPOUT (the paper's train.sh: 256, 64, 0.1) on q,k,v,o,gate,up,down
# of both, tau 0.05, V-norm, grad-accum 1, clip 1.0, AdamW; the same groups in the
# same order.
#   ours   rv-train --device cuda --gpu-dtype bf16 (then f32 when the budget allows);
#          ms/step = median of log.jsonl's ms_per_step after TRB_WARM warm-up steps
#          (tokenisation, the step, gradient download and the host optimiser included)
#   peer   scripts/revela_torch.py bench --device cuda --dtype bf16: transformers 4.45
#          (SDPA attention) + PEFT LoRA, in-batch attention materialising [B,B,H,L,L],
#          model and LoRA in bf16 with fp32 master weights (the original under DeepSpeed
#          bf16); each step between torch.cuda.synchronize() calls, tokenisation included
#   memory peak device memory of each process: nvidia-smi memory.used polled every
#          100 ms minus the idle figure before it started (the peer also reports
#          torch.cuda.max_memory_allocated)
#   MFU    model FLOPs per step / (ms/step x the card's dense bf16 peak); the formula is
#          printed with the figures (bench/README-gpu.md explains it)
#   in-batch attention memory (TRB_MEM=1): build/gpu/bench_gpu --mem-only (our fused
#          kernels, forward + backward, device memory measured by cudaMemGetInfo) and
#          bench/gpu_ref.py (the reference's inbatch_attention from scripts/revela_torch.py,
#          bf16 autograd, torch.cuda.max_memory_allocated) at B = 16 and 64.
# A side that runs out of memory is recorded as OOM (a result, not a failure).
# Output: PASS/FAIL/SKIP/INFO lines, then a table; key/value figures to
# $TRB_FIGURES when set (bench/gpu.sh --table reads them). Without python +
# torch + transformers + peft, or without a CUDA device: SKIP lines, exit 0.
#
# Environment (defaults: the H100 run, ~150 s):
#   PYTHON (python3), BIN (bin), BUILD (build), TRB_BUDGET (150 s for the whole script),
#   TRB_LAYERS TRB_HIDDEN TRB_FF TRB_HEADS TRB_KV TRB_VOCAB TRB_ROPE (llama3 | none),
#   TRB_B (16), TRB_LEN (160), TRB_R (256), TRB_ALPHA (64), TRB_DROPOUT (0.1), TRB_STEPS (5 timed) TRB_WARM (2),
#   TRB_PEER_STEPS (4 timed after 1 warm-up), TRB_DEVICE (cuda: where the model is made and the
#   peer runs; cpu for dry runs), TRB_F32 (1: also ours with --gpu-dtype f32 if time remains),
#   TRB_MEM (1), TRB_MEM_B ("16 64"), TRB_PROFILE (1: ours bf16 again with --gpu-profile if time
#   remains, the top operations and the matrix products' rates by group and shape as INFO lines),
#   TRB_PROFILE_OUT (a folder: gpu_profile.tsv and gpu_gemm_profile.tsv copied there),
#   TRB_TUNED (1: ours bf16 again with RV_GEMM_TUNE=1 if time remains, before the f32 run),
#   TRB_FIGURES (file), GPU_PEAK_TFLOPS (override the card's peak).
# Dry run on a machine without a GPU (the emulated backend, a tiny model, the peer on the CPU):
#   RV_CUDA_LIB=build/gpu-emu/librevela-cuda.so PYTHON=/tmp/rvref/bin/python TRB_DEVICE=cpu \
#   TRB_LAYERS=2 TRB_HIDDEN=64 TRB_FF=128 TRB_HEADS=4 TRB_KV=2 TRB_VOCAB=256 TRB_B=4 TRB_LEN=16 \
#   TRB_R=4 TRB_STEPS=2 TRB_WARM=1 TRB_PEER_STEPS=2 TRB_MEM_B="4 6" bench/train-gpu.sh
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
T_START=$(date +%s)
BIN=${BIN:-bin}
BUILD=${BUILD:-build}
TRAIN=$ROOT/$BIN/rv-train
PY=${PYTHON:-python3}
S=bench-train
export TRB_LAYERS=${TRB_LAYERS:-16} TRB_HIDDEN=${TRB_HIDDEN:-2048} TRB_FF=${TRB_FF:-8192} TRB_HEADS=${TRB_HEADS:-32}
export TRB_KV=${TRB_KV:-8} TRB_VOCAB=${TRB_VOCAB:-128256} TRB_ROPE=${TRB_ROPE:-llama3} TRB_B=${TRB_B:-16}
export TRB_LEN=${TRB_LEN:-160} TRB_R=${TRB_R:-256} TRB_STEPS=${TRB_STEPS:-5} TRB_WARM=${TRB_WARM:-2}
export TRB_PEER_STEPS=${TRB_PEER_STEPS:-4} TRB_DEVICE=${TRB_DEVICE:-cuda}
export TRB_ALPHA=${TRB_ALPHA:-64} TRB_DROPOUT=${TRB_DROPOUT:-0.1}
BUDGET=${TRB_BUDGET:-150}
TOTAL=$((TRB_WARM + TRB_STEPS))
FIG=${TRB_FIGURES:-}
W=$(mktemp -d)
MW_PID=
cleanup() { [ -n "$MW_PID" ] && kill "$MW_PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
[ -n "$FIG" ] && : >"$FIG"

left() { echo $((BUDGET - ($(date +%s) - T_START))); }
fig() { [ -n "$FIG" ] && printf '%s %s\n' "$1" "$2" >>"$FIG"; }   # fig KEY VALUE
skip_all() { for c in model ours-bf16 peer-bf16 inbatch-mem; do echo "SKIP $S/$c ($1)"; done; fig status "SKIP: $1"; exit 0; }
FAILED=0
fail() { echo "FAIL $S/$1"; shift; printf '  %s\n' "$@"; FAILED=1; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# limit WANTED: WANTED seconds, or what is left of the budget (minus 5) when that is less
limit() { local l=$(($(left) - 5)); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }

[ -x "$TRAIN" ] || { fail build "$TRAIN not built (make)"; exit 1; }
"$PY" -c 'import torch, transformers, peft, tokenizers, safetensors; torch.set_default_device' 2>/dev/null ||
    skip_all "$PY lacks torch >= 2.0, transformers, peft, tokenizers or safetensors"

# no device: SKIP before building a 1B model (bench_gpu opens the device and
# writes nothing else with an empty --mem-b); the emulator (RV_CUDA_LIB) needs no probe
if [ -z "${RV_CUDA_LIB:-}" ] && [ -x "$ROOT/$BUILD/gpu/bench_gpu" ]; then
    mkdir -p "$W/probe"
    probe=$("$ROOT/$BUILD/gpu/bench_gpu" "$W/probe" --mem-only --mem-b "" 2>&1)
    grep -q '^SKIP' <<<"$probe" && skip_all "$(grep -m1 '^SKIP' <<<"$probe" | sed 's/^SKIP bench_gpu (//; s/)$//')"
fi

# ---------------------------------------------------------------- device memory watch (nvidia-smi)
HAVE_SMI=0
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && HAVE_SMI=1
CARD=$([ "$HAVE_SMI" = 1 ] && nvidia-smi --query-gpu=name --format=csv,noheader -i 0 2>/dev/null | head -1)
gpu_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1; }
watch_start() {   # watch_start FILE: the idle figure, then a sample every 100 ms
    MW_BASE=
    MW_FILE=$1
    [ "$HAVE_SMI" = 1 ] || return 0
    MW_BASE=$(gpu_used)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >"$MW_FILE" 2>/dev/null &
    MW_PID=$!
}
watch_stop() {    # prints the peak minus the idle figure (MiB), or nothing without nvidia-smi
    [ -n "$MW_PID" ] || return 0
    kill "$MW_PID" 2>/dev/null
    wait "$MW_PID" 2>/dev/null
    MW_PID=
    local peak
    peak=$(grep -E '^[0-9]+$' "$MW_FILE" | sort -g | tail -1)
    [ -n "$peak" ] && [ -n "$MW_BASE" ] && echo $((peak - MW_BASE))
}

# ---------------------------------------------------------------- the random model and groups
if ! timeout --kill-after=5 "$(limit 60)" "$PY" - "$W" "$ROOT/tests/fixtures/model/llama_tied/tokenizer.json" \
    >"$W/make.log" 2>&1 <<'PY'; then
import json, os, random, shutil, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

w, tok_src = sys.argv[1], sys.argv[2]
env = lambda k: int(os.environ[k])
t0 = time.time()
dev = torch.device(os.environ["TRB_DEVICE"] if os.environ["TRB_DEVICE"] != "cuda" or torch.cuda.is_available()
                   else "cpu")
# Llama-3.2-1B's config.json (meta-llama/Llama-3.2-1B), bos/eos from the fixture tokenizer
rope = None if os.environ["TRB_ROPE"] == "none" else {
    "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}
cfg = LlamaConfig(
    vocab_size=env("TRB_VOCAB"), hidden_size=env("TRB_HIDDEN"), intermediate_size=env("TRB_FF"),
    num_hidden_layers=env("TRB_LAYERS"), num_attention_heads=env("TRB_HEADS"),
    num_key_value_heads=env("TRB_KV"), head_dim=env("TRB_HIDDEN") // env("TRB_HEADS"), hidden_act="silu",
    max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=rope,
    tie_word_embeddings=True, attention_bias=False, mlp_bias=False, initializer_range=0.02,
    bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
torch.manual_seed(1234)
with dev:   # initialised on the device: seconds instead of a minute on the CPU
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
os.makedirs(w + "/model")
model.save_pretrained(w + "/model", safe_serialization=True)
shutil.copy(tok_src, w + "/model/tokenizer.json")
n = sum(p.numel() for p in model.parameters())
del model
rng = random.Random(7)
words = ["retrieval", "dense", "vector", "index", "query", "passage", "attention", "batch", "model", "token",
         "wikipedia", "science", "history", "river", "mountain", "energy", "protein", "market", "theory", "music"]
# at least 3 bytes per word with the byte-level tokenizer: every view is cut to --max-len
nw = env("TRB_LEN") // 2 + 8
B, steps = env("TRB_B"), env("TRB_WARM") + env("TRB_STEPS") + 1
with open(w + "/groups.jsonl", "w") as f:
    for g in range(steps):
        f.write(json.dumps([" ".join(rng.choice(words) for _ in range(nw + rng.randint(0, 8))) for _ in range(B)]) + "\n")
print(f"made {n} parameters on {dev} in {time.time() - t0:.1f}s")
PY
    fail model "$(tail -5 "$W/make.log")"
    for c in ours-bf16 peer-bf16 inbatch-mem; do echo "SKIP $S/$c (no model)"; done
    fig status "FAIL: building the model"
    exit 1
fi
echo "PASS $S/model"
echo "INFO $S: RANDOM weights, Llama-3.2-1B architecture: $TRB_LAYERS layers, hidden $TRB_HIDDEN, heads" \
     "$TRB_HEADS/$TRB_KV kv, ffn $TRB_FF, vocab $TRB_VOCAB, tied, rope llama3 scaling: $TRB_ROPE;" \
     "$(tail -1 "$W/make.log"); B $TRB_B, max-len $TRB_LEN, LoRA r $TRB_R on q,k,v,o,gate,up,down of both"

# ---------------------------------------------------------------- ours
# ours DTYPE: rv-train until log.jsonl holds TOTAL steps (then stopped: the
# end-of-run checkpoint write, several GB at r = 256, is not part of the step);
# sets OURS_MS, OURS_MEM (MiB), OURS_ACT (MiB of device activations, log.jsonl), OURS_DEV
ours() {
    local dt=$1 out=$W/ours-$1${OURS_TAG:+-$OURS_TAG} lim rc n pid
    lim=$(limit 75)
    OURS_MS='' OURS_MEM='' OURS_ACT='' OURS_WHY=''
    if [ "$lim" -lt 15 ]; then OURS_WHY="not run: the time budget is spent"; return 1; fi
    watch_start "$W/mem-ours-$dt.txt"
    timeout --kill-after=5 "$lim" "$TRAIN" --model "$W/model" --from-jsonl "$W/groups.jsonl" --out "$out" \
        --lora-rank "$TRB_R" --lora-alpha "$TRB_ALPHA" --lora-dropout "$TRB_DROPOUT" --grad-accum 1 --max-steps "$TOTAL" \
        --max-len "$TRB_LEN" --tau 0.05 --save-every 0 --device cuda --gpu-dtype "$dt" ${OURS_EXTRA:-} \
        >"$out.out" 2>"$out.err" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        n=$(cat "$out/log.jsonl" 2>/dev/null | wc -l)
        if [ "$n" -ge "$TOTAL" ]; then kill "$pid" 2>/dev/null; break; fi
        sleep 0.2
    done
    wait "$pid"
    rc=$?
    OURS_MEM=$(watch_stop)
    n=$(cat "$out/log.jsonl" 2>/dev/null | wc -l)
    [ -z "${OURS_DEV:-}" ] && OURS_DEV=$(sed -n 's/^rv-train: device cuda:[0-9]* \(.*\) (backend .*/\1/p' "$out.err" | head -1)
    if [ "$n" -lt "$TOTAL" ]; then
        if grep -q "no CUDA device" "$out.err"; then OURS_WHY="NODEV $(grep -m1 'no CUDA device' "$out.err")"
        elif grep -qi "out of memory" "$out.err"; then OURS_WHY="OOM: $(grep -m1 -i 'out of memory' "$out.err" | cut -c1-200)"
        elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then OURS_WHY="timed out after ${lim}s with $n of $TOTAL steps"
        else OURS_WHY="exit $rc after $n of $TOTAL steps: $(tail -c 600 "$out.err")"; fi
        return 1
    fi
    OURS_MS=$(sed -n "$((TRB_WARM + 1)),${TOTAL}s/.*\"ms_per_step\":\([^,]*\),.*/\1/p" "$out/log.jsonl" | median)
    OURS_ACT=$(sed -n "${TOTAL}s/.*\"activations_mb\":\([^,}]*\).*/\1/p" "$out/log.jsonl")
    OURS_STEPS=$(sed -n "1,${TOTAL}s/.*\"ms_per_step\":\([^,]*\),.*/\1/p" "$out/log.jsonl" | tr '\n' ' ')
    return 0
}

OURS_DEV=
if ours bf16; then
    echo "PASS $S/ours-bf16"
    BF_MS=$OURS_MS BF_MEM=$OURS_MEM BF_ACT=$OURS_ACT
    echo "INFO $S: ours bf16 ms per step (warm-up first): $OURS_STEPS; device activations $OURS_ACT MiB"
else
    case $OURS_WHY in
    NODEV*) skip_all "${OURS_WHY#NODEV }" ;;
    OOM*) echo "INFO $S: ours bf16: $OURS_WHY"; BF_MS=OOM BF_MEM='' BF_ACT='' ;;
    *) fail ours-bf16 "$OURS_WHY"; BF_MS='' BF_MEM='' BF_ACT='' ;;
    esac
fi
[ -z "$CARD" ] && CARD=${OURS_DEV:-unknown device}

# ---------------------------------------------------------------- the PyTorch peer
PEER_MS='' PEER_MEM='' PEER_ALLOC='' PEER_L=''
lim=$(limit 75)
if [ "$lim" -lt 15 ]; then
    echo "SKIP $S/peer-bf16 (the time budget is spent)"
else
    watch_start "$W/mem-peer.txt"
    timeout --kill-after=5 "$lim" "$PY" scripts/revela_torch.py bench --model "$W/model" --groups "$W/groups.jsonl" \
        --lora-rank "$TRB_R" --lora-alpha "$TRB_ALPHA" --lora-dropout "$TRB_DROPOUT" --max-len "$TRB_LEN" --tau 0.05 \
        --steps "$TRB_PEER_STEPS" \
        --warmup-steps 1 --device "$TRB_DEVICE" --dtype bf16 >"$W/peer.out" 2>"$W/peer.err"
    rc=$?
    PEER_MEM=$(watch_stop)
    if [ "$rc" = 3 ] || grep -q 'out of memory' "$W/peer.out"; then
        PEER_MS=OOM
        echo "INFO $S: peer: $(grep -m1 'out of memory' "$W/peer.out" | cut -c1-240)"
        echo "PASS $S/peer-bf16 (ran out of memory: recorded as OOM)"
    elif [ "$rc" = 0 ] && grep -q '^torch-peer:' "$W/peer.out"; then
        PEER_MS=$(sed -n 's/^revela_torch: step \([0-9]*\)\/[0-9]* .* \([0-9.]*\) ms$/\1 \2/p' "$W/peer.err" |
                  awk '$1 > 1 {print $2}' | median)
        PEER_L=$(sed -n 's/^revela_torch: step 2\/[0-9]* B=[0-9]* L=\([0-9]*\) .*/\1/p' "$W/peer.err")
        PEER_ALLOC=$(sed -n 's/.*peak device memory \([0-9]*\) MiB allocated.*/\1/p' "$W/peer.out")
        echo "PASS $S/peer-bf16"
        echo "INFO $S: peer $(sed 's/^torch-peer: //' "$W/peer.out")"
        echo "INFO $S: peer ms per step (warm-up first): $(sed -n 's/^revela_torch: step .* \([0-9.]*\) ms.*/\1/p' \
            "$W/peer.err" | tr '\n' ' ')"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        fail peer-bf16 "timed out after ${lim}s" "$(tail -c 400 "$W/peer.err")"
    else
        fail peer-bf16 "exit $rc" "$(tail -c 800 "$W/peer.err")"
    fi
fi

# ---------------------------------------------------------------- in-batch attention memory
# (our kernels alone vs the reference's [B,B,H,L,L] tensors, forward + backward of one layer)
if [ "${TRB_MEM:-1}" = 1 ]; then
    BG=$ROOT/$BUILD/gpu/bench_gpu
    [ -n "${RV_CUDA_LIB:-}" ] && [ -x "$ROOT/$BUILD/gpu-emu/bench_gpu" ] && BG=$ROOT/$BUILD/gpu-emu/bench_gpu
    lim=$(limit 40)
    if [ ! -x "$BG" ]; then
        echo "SKIP $S/inbatch-mem ($BG not built: make gpu-tests)"
    elif [ "$lim" -lt 10 ]; then
        echo "SKIP $S/inbatch-mem (the time budget is spent)"
    else
        mkdir -p "$W/mem"
        small=
        case $BG in */gpu-emu/*) small=--small ;; esac
        # shellcheck disable=SC2086
        timeout --kill-after=5 "$lim" "$BG" "$W/mem" --mem-only --mem-b "${TRB_MEM_B:-16 64}" $small >"$W/mem.log" 2>&1
        rc=$?
        rc2=0
        # the reference at the sizes ours finished (B=16 first: a failure at 64 keeps it)
        if [ -s "$W/mem/mem_ours.txt" ]; then
            timeout --kill-after=5 "$(limit 30)" "$PY" bench/gpu_ref.py "$W/mem" --mem-device "$TRB_DEVICE" \
                >>"$W/mem.log" 2>&1
            rc2=$?
        fi
        if [ "$rc" = 0 ] && [ "$rc2" = 0 ] && [ -s "$W/mem/mem_ours.txt" ]; then
            echo "PASS $S/inbatch-mem"
        elif grep -q '^SKIP' "$W/mem.log"; then
            echo "SKIP $S/inbatch-mem ($(grep -m1 '^SKIP' "$W/mem.log"))"
        else
            fail inbatch-mem "bench_gpu exit $rc, gpu_ref.py exit $rc2" "$(tail -c 600 "$W/mem.log")"
        fi
        grep -E '^(INFO|FAIL)' "$W/mem.log" | sed "s/^INFO /INFO $S: /"
        [ -n "$FIG" ] && [ -s "$W/mem/mem.txt" ] && cat "$W/mem/mem.txt" >>"$FIG"
    fi
fi

# ---------------------------------------------------------------- where our step's time goes (when time remains)
# the same bf16 run again with --gpu-profile (events around every operation: not the timed run);
# DIR/gpu_profile.tsv holds steps 2..n once the run is stopped after TOTAL steps
if [ "${TRB_PROFILE:-1}" = 1 ]; then
    if [ "$(left)" -lt 35 ]; then
        echo "INFO $S: ours --gpu-profile not run: $(left)s of the ${BUDGET}s budget left"
    elif OURS_EXTRA=--gpu-profile OURS_TAG=profile ours bf16 && [ -s "$W/ours-bf16-profile/gpu_profile.tsv" ]; then
        awk -F'\t' -v s="$S" 'NR > 1 && NR <= 16 {
            printf "INFO %s: profile %-24s %9.3f ms/step %5.1f%% (%s calls)\n", s, $1, $3, 100 * $4, $2 }' \
            "$W/ours-bf16-profile/gpu_profile.tsv"
        # the matrix products by group (rate over all its products), then the 12 slowest shapes
        G=$W/ours-bf16-profile/gpu_gemm_profile.tsv
        awk -F'\t' -v s="$S" 'NR > 1 { ms[$1] += $12; fl[$1] += 2 * $2 * $3 * $4 * $11; n[$1] += $11 }
            END { for (g in ms) printf "INFO %s: products %-12s %9.3f ms/step %7.1f TFLOP/s (%d products)\n", s, g,
                  ms[g], (ms[g] > 0 ? fl[g] / (ms[g] * 1e9) : 0), n[g] }' "$G" | sort
        awk -F'\t' -v s="$S" 'NR > 1 && NR <= 13 {
            printf "INFO %s: product %-11s %5dx%5dx%5d t%d%d %s>%s%s%s %8.3f ms/step %7.1f TFLOP/s (%s calls)\n", s, $1,
                   $2, $3, $4, $5, $6, $7, $8, $9 == 1 ? " +C" : "", $10 == 1 ? " FALLBACK" : "", $12, $13, $11 }' \
            "$G"
        [ -n "${TRB_PROFILE_OUT:-}" ] && cp "$W/ours-bf16-profile/gpu_profile.tsv" "$G" "$TRB_PROFILE_OUT/" 2>/dev/null
    else
        echo "INFO $S: ours --gpu-profile: ${OURS_WHY:-no gpu_profile.tsv}"
    fi
fi

# ---------------------------------------------------------------- ours with tuned products (when time remains)
# RV_GEMM_TUNE=1: every product's plan times cuBLASLt's candidates at its first call (in the
# warm-up steps) and keeps the fastest; the same median as the timed run, so the two compare
TUNED_MS=''
if [ "${TRB_TUNED:-1}" = 1 ]; then
    if [ "$(left)" -lt 35 ]; then
        echo "INFO $S: ours RV_GEMM_TUNE=1 not run: $(left)s of the ${BUDGET}s budget left"
    elif RV_GEMM_TUNE=1 OURS_TAG=tuned ours bf16; then
        TUNED_MS=$OURS_MS
        echo "INFO $S: ours bf16 RV_GEMM_TUNE=1 ms per step (warm-up first, tuning in step 1): $OURS_STEPS" \
             "(median $TUNED_MS vs ${BF_MS:-n/a} untuned)"
    else
        echo "INFO $S: ours RV_GEMM_TUNE=1: $OURS_WHY"
    fi
fi

# ---------------------------------------------------------------- ours in f32 (when time remains)
F32_MS='' F32_MEM=''
if [ "${TRB_F32:-1}" = 1 ]; then
    if [ "$(left)" -lt 40 ]; then
        echo "INFO $S: ours --gpu-dtype f32 not run: $(left)s of the ${BUDGET}s budget left"
    elif ours f32; then
        F32_MS=$OURS_MS F32_MEM=$OURS_MEM
        echo "INFO $S: ours f32 ms per step (warm-up first): $OURS_STEPS; device activations $OURS_ACT MiB"
    else
        echo "INFO $S: ours --gpu-dtype f32: $OURS_WHY"
        case $OURS_WHY in OOM*) F32_MS=OOM ;; esac
    fi
fi

# ---------------------------------------------------------------- model FLOPs, MFU and the table
L=${PEER_L:-$TRB_LEN}
# dense bf16 tensor-core peak (no sparsity) of the card, by name
peak_for() {
    case $1 in
    *H100*PCIe*) echo 756.5 ;;
    *H100*NVL* | *H200*NVL*) echo 835.5 ;;
    *H100* | *H200* | *H800*) echo 989.4 ;;   # H200 also matches GH200
    *A100* | *A800*) echo 312 ;;
    *L40S*) echo 362.05 ;;
    *) echo "" ;;
    esac
}
PEAK=${GPU_PEAK_TFLOPS:-$(peak_for "$CARD")}
FLOPS=$(awk -v nl="$TRB_LAYERS" -v D="$TRB_HIDDEN" -v F="$TRB_FF" -v H="$TRB_HEADS" -v Hk="$TRB_KV" \
    -v V="$TRB_VOCAB" -v r="$TRB_R" -v B="$TRB_B" -v L="$L" 'BEGIN {
    d = D / H; T = B * L
    Nb = nl * (2 * D * H * d + 2 * D * Hk * d + 3 * D * F)                      # frozen projections
    Nl = nl * r * ((D + H * d) * 2 + (D + Hk * d) * 2 + (D + F) * 2 + (F + D))  # LoRA A and B
    Nh = V * D                                                                   # LM head (tied)
    Ac = nl * B * H * 2 * L * L * d                                              # causal: QK^T + PV, lower half
    Ai = nl * B * (B - 1) * H * (4 * L * L * d + 2 * L * L)                      # in-batch pairs i != j, + A|V|
    total = 4 * (4 * T * Nb + 6 * T * Nl + 3 * Ac) + 4 * T * Nh + 3 * Ai
    printf "%.6g %.6g %.6g %.6g %.6g %.6g %.6g %.0f %.0f\n", total, 4 * 4 * T * Nb, 4 * 6 * T * Nl, 4 * T * Nh, 12 * Ac,
        3 * Ai, T, Nb + Nh + (2 * nl + 1) * D, 2 * Nl }')
read -r F_TOT F_BODY F_LORA F_HEAD F_CAUSAL F_INB F_T N_MODEL N_LORA <<<"$FLOPS"
# the parameter counts the formula uses, against what transformers and PEFT built
# (every weight matrix + the norms; both networks' LoRA tensors)
n_made=$(sed -n 's/^made \([0-9]*\) parameters.*/\1/p' "$W/make.log")
n_peft=$(sed -n 's/.* \([0-9]*\) LoRA parameters.*/\1/p' "$W/peer.out" 2>/dev/null)
if [ "$n_made" != "$N_MODEL" ]; then
    fail flops-count "the formula's weights ($N_MODEL) differ from the model's parameter count ($n_made)"
elif [ -n "$n_peft" ] && [ "$n_peft" != "$N_LORA" ]; then
    fail flops-count "the formula's LoRA parameters ($N_LORA) differ from PEFT's ($n_peft)"
else
    echo "PASS $S/flops-count (weights $N_MODEL as built; LoRA $N_LORA$([ -n "$n_peft" ] && echo " as PEFT's" || echo ", PEFT's not known: the peer did not run"))"
fi
mfu() { awk -v f="$F_TOT" -v ms="$1" -v p="$PEAK" 'BEGIN {
    if (ms + 0 > 0 && p + 0 > 0) printf "%.1f", 100 * f / (ms * 1e-3) / (p * 1e12); else print "n/a" }'; }
num() { case $1 in '' | OOM) return 1 ;; esac; }
MFU_OURS=n/a MFU_PEER=n/a RATIO=n/a
num "$BF_MS" && MFU_OURS=$(mfu "$BF_MS")
num "$PEER_MS" && MFU_PEER=$(mfu "$PEER_MS")
num "$BF_MS" && num "$PEER_MS" && RATIO=$(awk -v a="$BF_MS" -v b="$PEER_MS" 'BEGIN {printf "%.2f", b / a}')
[ "$PEER_MS" = OOM ] && num "$BF_MS" && RATIO="peer OOM"
tf() { awk -v f="$1" 'BEGIN {printf "%.4g", f / 1e12}'; }
echo "INFO $S: model FLOPs per step $(tf "$F_TOT") TFLOP = frozen projections 4 passes x 4·T·N_body $(tf "$F_BODY")" \
     "+ LoRA 4 x 6·T·N_lora $(tf "$F_LORA") + LM head (pass B only) 4·T·V·D $(tf "$F_HEAD") + causal attention" \
     "4 x 3·A_causal $(tf "$F_CAUSAL") + in-batch attention (pass B) 3·A_inbatch $(tf "$F_INB")" \
     "(T = B·L = $F_T padded tokens per pass; formula in bench/README-gpu.md);" \
     "MFU = FLOPs / (ms/step x peak), peak ${PEAK:-unknown} TFLOP/s dense bf16 for '$CARD'"

fig card "$CARD"
fig peak_tflops "${PEAK:-n/a}"
fig flops_per_step "$F_TOT"
fig shape "B$TRB_B L$L r$TRB_R ${TRB_LAYERS}x$TRB_HIDDEN"
fig step_ms_ours "${BF_MS:-n/a}"
fig step_ms_peer "${PEER_MS:-n/a}"
fig step_ratio "$RATIO"
fig mfu_ours "$MFU_OURS"
fig mfu_peer "$MFU_PEER"
fig mem_ours_mib "${BF_MEM:-n/a}"
fig mem_peer_mib "${PEER_MEM:-n/a}"
fig mem_peer_alloc_mib "${PEER_ALLOC:-n/a}"
fig act_ours_mib "${BF_ACT:-n/a}"
fig step_ms_ours_tuned "${TUNED_MS:-n/a}"
fig step_ms_ours_f32 "${F32_MS:-n/a}"
fig mem_ours_f32_mib "${F32_MEM:-n/a}"
fig status "$([ "$FAILED" = 0 ] && echo ok || echo FAIL)"

{
    echo "training step, Llama-3.2-1B architecture (RANDOM weights), B=$TRB_B L=$L r=$TRB_R alpha=$TRB_ALPHA dropout=$TRB_DROPOUT, one optimiser step; $CARD"
    printf '%-34s %12s %12s %10s\n' figure ours peer peer/ours
    printf '%-34s %12s %12s %10s\n' "ms/step (bf16, median)" "${BF_MS:-n/a}" "${PEER_MS:-n/a}" "$RATIO"
    printf '%-34s %12s %12s %10s\n' "MFU % (peak ${PEAK:-n/a} TFLOP/s)" "$MFU_OURS" "$MFU_PEER" ""
    printf '%-34s %12s %12s %10s\n' "peak device memory MiB (smi)" "${BF_MEM:-n/a}" "${PEER_MEM:-n/a}" \
        "$(num "$BF_MEM" && num "$PEER_MEM" && awk -v a="$BF_MEM" -v b="$PEER_MEM" 'BEGIN {if (a > 0) printf "%.2f", b / a}')"
    printf '%-34s %12s %12s %10s\n' "  torch max_memory_allocated MiB" "" "${PEER_ALLOC:-n/a}" ""
    printf '%-34s %12s %12s %10s\n' "ms/step ours bf16 RV_GEMM_TUNE=1" "${TUNED_MS:-n/a}" "" ""
    printf '%-34s %12s %12s %10s\n' "ms/step ours --gpu-dtype f32" "${F32_MS:-n/a}" "" ""
} | tee "$W/table.txt"
exit $FAILED
