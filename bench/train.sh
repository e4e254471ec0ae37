#!/bin/bash
# train.sh — rv-train's step time and peak memory on the CPU against the
# PyTorch peer (scripts/revela_torch.py bench: transformers 4.45 + PEFT LoRA
# + in-batch attention materialising [B,B,H,L,L] as the original Revela code
# does), measured in the same run, on the same weights, the same groups (in
# the same order) and the same threads, the two programs alternating. The
# full optimiser step: retriever on the passage and query views, LM passes A
# and B, backward, clipping, AdamW; LoRA rank R (alpha 2R, dropout 0) on
# q,k,v,o,gate,up,down of both networks, grad-accum 1, tau 1e-4, V-norm on.
# Each run does WARMUP warm-up steps (not counted) and STEPS timed steps; printed:
# the median ms/step over all timed steps of RUNS runs, the largest peak RSS
# (/usr/bin/time), and peer/ours ratios.
#   bench/train.sh     (env: B=16 LEN=160 R=64 STEPS=1 WARMUP=0 RUNS=1 THREADS=$(nproc)
#                       TINY_B=8 TINY_LEN=64 TINY_R=8 TINY_STEPS=5 TINY_WARMUP=1 TINY_RUNS=3
#                       FALLBACK_B=8 FALLBACK_LEN=160 PEER_MAX_RSS_MIB
#                       CONFIGS="tiny smollm2")
# Configs: "tiny" = tests/fixtures/model/llama_tied (llama, 2 layers, hidden
# 64, 4 heads / 2 kv heads, vocab 256, byte-level tokenizer); "smollm2" =
# SmolLM2-135M (scripts/get-model.sh), dequantised once by gguf-py into
# .cache/models/smollm2-hf (float32), which both programs load. When the peer
# runs out of memory (its RSS passes PEER_MAX_RSS_MIB, default 80% of the
# memory available at start; it stops itself with status 3) that is printed,
# and the SmolLM2 pair is measured again at B=FALLBACK_B, LEN=FALLBACK_LEN.
# The peer's python: $RV_TORCH_PYTHON, default .venv-torch
# (tests/ref/venv-torch.sh: Debian's torch 1.13.1); its torch version prints.
set -u
cd "$(dirname "$0")/.."
# SmolLM2 at B=16 L=160 takes minutes per step on 2 cores: one timed step, no
# warm-up, by default (a warm-up step mostly pays page faults, small there)
B=${B:-16}; LEN=${LEN:-160}; R=${R:-64}; STEPS=${STEPS:-1}; WARMUP=${WARMUP:-0}; RUNS=${RUNS:-1}
THREADS=${THREADS:-$(nproc)}
TINY_B=${TINY_B:-8}; TINY_LEN=${TINY_LEN:-64}; TINY_R=${TINY_R:-8}; TINY_STEPS=${TINY_STEPS:-5}; TINY_WARMUP=${TINY_WARMUP:-1}
TINY_RUNS=${TINY_RUNS:-3}
FALLBACK_B=${FALLBACK_B:-8}; FALLBACK_LEN=${FALLBACK_LEN:-160}
CONFIGS=${CONFIGS:-tiny smollm2}
avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
PEER_MAX_RSS_MIB=${PEER_MAX_RSS_MIB:-$((avail * 8 / 10))}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

PY=${RV_TORCH_PYTHON:-}
peer_why=
if [ -z "$PY" ]; then
    . tests/ref/venv-torch.sh
    if [ "$RV_TORCH_VENV_OK" = 1 ]; then PY=$RV_TORCH_PYTHON; else peer_why=$RV_TORCH_VENV_WHY; fi
fi
if [ -n "$PY" ] && ! "$PY" -c 'import torch, transformers, peft' 2>/dev/null; then
    peer_why="$PY cannot import torch + transformers + peft"; PY=
fi
[ -n "$PY" ] && echo "peer: $PY ($("$PY" -c 'import torch, transformers, peft
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'))"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start, peer memory limit $PEER_MAX_RSS_MIB MiB"

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "n/a"}'; }

# groups FILE B N: N groups of B consecutive document texts (Cranfield, else the fixture texts)
groups() {
    local src=/work/shared/collections/cranfield/corpus.jsonl
    [ -f "$src" ] || src=tests/fixtures/model/smollm2_docs.jsonl
    head -n $(($2 * $3)) "$src" | sed 's/.*"text": *"\([^"]*\)".*/\1/' |
        awk -v b="$2" '{ gsub(/\\/, ""); t[++n] = "\"" $0 "\"" } n == b { s = t[1]; for (i = 2; i <= b; i++) s = s ", " t[i]; print "[" s "]"; n = 0 }' \
        > "$1"
    [ "$(wc -l < "$1")" -eq "$3" ] || { echo "train.sh: not enough documents in $src for $3 groups of $2"; return 1; }
}

# measure LABEL MODEL B LEN R STEPS WARMUP RUNS: prints both figures; returns 3 when the peer ran out of memory
measure() {
    local label=$1 model=$2 b=$3 len=$4 r=$5 steps=$6 warm=$7 runs=$8 peer_oom= run rc ours_loss1= peer_loss1= peer_line=
    local ours_mem=
    groups "$tmp/groups.jsonl" "$b" $((warm + steps)) || return 1
    : > "$tmp/ours.ms"; : > "$tmp/ours.rss"; : > "$tmp/peer.ms"; : > "$tmp/peer.rss"; : > "$tmp/peer.err"
    echo "== $label: B=$b max-len=$len r=$r threads=$THREADS, $runs run(s) x $steps timed step(s) after $warm warm-up step(s)"
    for run in $(seq "$runs"); do
        rm -rf "$tmp/out"
        /usr/bin/time -f '%M' -o "$tmp/rss" bin/rv-train --model "$model" --from-jsonl "$tmp/groups.jsonl" \
            --out "$tmp/out" --lora-rank "$r" --lora-alpha $((2 * r)) --lora-dropout 0 --grad-accum 1 \
            --max-steps $((warm + steps)) --save-every 0 --max-len "$len" --threads "$THREADS" -q 2> "$tmp/ours.err" ||
            { echo "train.sh: rv-train failed:"; head -c 1000 "$tmp/ours.err"; return 1; }
        sed -n 's/.*"step":\([0-9]*\),.*"ms_per_step":\([^,]*\),.*/\1 \2/p' "$tmp/out/log.jsonl" |
            awk -v w="$warm" '$1 > w {print $2}' >> "$tmp/ours.ms"
        tail -n 1 "$tmp/rss" >> "$tmp/ours.rss"
        [ "$run" = 1 ] && ours_mem=$(tr -d '{}"' < "$tmp/out/memory.json" | tr ',' '\n' |
            awk -F: '{printf "%s%s %.1f MiB", (NR > 1 ? ", " : ""), $1, $2 / 1048576}' | sed 's/_bytes//g')
        [ "$run" = 1 ] && ours_loss1=$(sed -n '1s/.*"loss":\([^,]*\),.*/\1/p' "$tmp/out/log.jsonl")
        [ -n "$PY" ] && [ -z "$peer_oom" ] || continue
        /usr/bin/time -f '%M' -o "$tmp/rss" "$PY" scripts/revela_torch.py bench --model "$model" \
            --groups "$tmp/groups.jsonl" --lora-rank "$r" --lora-alpha $((2 * r)) --max-len "$len" --threads "$THREADS" \
            --steps "$steps" --warmup-steps "$warm" --max-rss-mib "$PEER_MAX_RSS_MIB" > "$tmp/peer.out" 2> "$tmp/peer.err"
        rc=$?
        if [ "$rc" = 3 ] || [ "$rc" = 137 ] || grep -q 'out of memory' "$tmp/peer.out"; then
            peer_oom=$(grep -m1 'out of memory' "$tmp/peer.out" | sed 's/^revela_torch: //')
            [ -n "$peer_oom" ] || peer_oom="killed (exit $rc), peak RSS $(($(tail -n 1 "$tmp/rss") / 1024)) MiB"
            continue
        fi
        [ "$rc" = 0 ] || { echo "train.sh: the peer failed (exit $rc):"; tail -c 1500 "$tmp/peer.err"; return 1; }
        sed -n 's/^revela_torch: step [0-9]*\/[0-9]* .* \([0-9.]*\) ms$/\1/p' "$tmp/peer.err" >> "$tmp/peer.ms"
        tail -n 1 "$tmp/rss" >> "$tmp/peer.rss"
        [ "$run" = 1 ] && peer_loss1=$(sed -n 's/^revela_torch: step 1\/.* loss \([^ ]*\) .*/\1/p' "$tmp/peer.err")
        peer_line=$(grep '^torch-peer:' "$tmp/peer.out")
    done
    local ours_ms ours_rss peer_ms peer_rss
    ours_ms=$(median < "$tmp/ours.ms"); ours_rss=$(( $(sort -g "$tmp/ours.rss" | tail -n 1) / 1024 ))
    echo "ours (rv-train):     median $ours_ms ms/step over $(wc -l < "$tmp/ours.ms") steps, peak RSS $ours_rss MiB"
    echo "  ours by kind (memory.json): $ours_mem"
    if [ -z "$PY" ]; then
        echo "peer: not measured ($peer_why); ratio: n/a"
        return 0
    fi
    if [ -n "$peer_oom" ]; then
        echo "peer (PyTorch):      out of memory at B=$b L=$len: $peer_oom; ratio: n/a"
        return 3
    fi
    peer_ms=$(median < "$tmp/peer.ms"); peer_rss=$(( $(sort -g "$tmp/peer.rss" | tail -n 1) / 1024 ))
    echo "peer (PyTorch):      median $peer_ms ms/step over $(wc -l < "$tmp/peer.ms") steps, peak RSS $peer_rss MiB"
    echo "  (${peer_line#torch-peer: })"
    # both start from LoRA B = 0, i.e. from the base models: on the same
    # tokens the first step's loss must agree (a check that the inputs match)
    echo "first-step loss:     ours $ours_loss1, peer $peer_loss1"
    awk -v pm="$peer_ms" -v om="$ours_ms" -v pr="$peer_rss" -v orr="$ours_rss" \
        'BEGIN {printf "ratio peer/ours:     time %.2fx, peak RSS %.2fx\n", pm / om, pr / orr}'
}

status=0
for c in $CONFIGS; do
    case $c in
    tiny)
        measure "tiny (tests/fixtures/model/llama_tied: llama 2 layers, hidden 64, vocab 256)" \
            tests/fixtures/model/llama_tied "$TINY_B" "$TINY_LEN" "$TINY_R" "$TINY_STEPS" "$TINY_WARMUP" "$TINY_RUNS" || status=1 ;;
    smollm2)
        G=$(scripts/get-model.sh | tail -n 1) || { echo "train.sh: no model (scripts/get-model.sh failed)"; status=1; continue; }
        M=${RV_CACHE:-.cache}/models/smollm2-hf
        if [ ! -f "$M/model.safetensors" ]; then
            if [ -z "$PY" ]; then M=$G   # no python to dequantise with: ours alone, on the GGUF
            else "$PY" scripts/make-model-fixtures.py --gguf-to-hf "$G" "$M" > /dev/null ||
                { echo "train.sh: dequantising $G failed"; status=1; continue; }
            fi
        fi
        label="SmolLM2-135M ($M, float32, from $(basename "$G") by gguf-py)"
        measure "$label" "$M" "$B" "$LEN" "$R" "$STEPS" "$WARMUP" "$RUNS"
        rc=$?
        if [ "$rc" = 3 ]; then
            echo "comparing at a size where both run instead:"
            measure "$label" "$M" "$FALLBACK_B" "$FALLBACK_LEN" "$R" "$STEPS" "$WARMUP" "$RUNS" || status=1
        elif [ "$rc" != 0 ]; then status=1; fi ;;
    *) echo "train.sh: unknown config $c (tiny, smollm2)"; status=1 ;;
    esac
done
exit $status
