#!/bin/bash
# train.sh — rv-train step time and peak memory on the CPU with the real
# SmolLM2-135M (scripts/get-model.sh; retriever and LM the same checkpoint):
# groups of B chunks from Cranfield (or the fixture texts), max-len LEN, LoRA
# rank R on all seven projections, grad-accum 1, STEPS steps; prints the
# median ms/step over the steps of RUNS runs and the largest peak RSS.
#   bench/train.sh                  (env: B=4 LEN=32 R=8 STEPS=2 THREADS=$(nproc) RUNS=3)
# No peer figure: a PyTorch implementation of the Revela step on the same
# threads is not part of this repository yet, so only our numbers print.
set -u
cd "$(dirname "$0")/.."
B=${B:-4}; LEN=${LEN:-32}; R=${R:-8}; STEPS=${STEPS:-2}; THREADS=${THREADS:-$(nproc)}; RUNS=${RUNS:-3}
G=$(scripts/get-model.sh | tail -n 1) || { echo "train.sh: no model (scripts/get-model.sh failed)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
src=/work/shared/collections/cranfield/corpus.jsonl
[ -f "$src" ] || src=tests/fixtures/model/smollm2_docs.jsonl
# one group per line: B consecutive document texts
head -n $((B * STEPS)) "$src" | sed 's/.*"text": *"\([^"]*\)".*/\1/' |
    awk -v b="$B" '{ gsub(/\\/, ""); t[++n] = "\"" $0 "\"" } n == b { s = t[1]; for (i = 2; i <= b; i++) s = s ", " t[i]; print "[" s "]"; n = 0 }' \
    > "$tmp/groups.jsonl"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$tmp/ms"; : > "$tmp/rss"
for r in $(seq "$RUNS"); do
    rm -rf "$tmp/out"
    /usr/bin/time -f '%M' -o "$tmp/rss.$r" bin/rv-train --model "$G" --from-jsonl "$tmp/groups.jsonl" --out "$tmp/out" \
        --lora-rank "$R" --lora-alpha $((2 * R)) --grad-accum 1 --max-steps "$STEPS" --max-len "$LEN" \
        --threads "$THREADS" -q || { echo "train.sh: rv-train failed"; exit 1; }
    sed 's/.*"ms_per_step":\([^,]*\),.*/\1/' "$tmp/out/log.jsonl" >> "$tmp/ms"
    cat "$tmp/rss.$r" >> "$tmp/rss"
done
ms=$(median < "$tmp/ms")
rss=$(sort -g "$tmp/rss" | tail -n 1)
echo "rv-train SmolLM2-135M B=$B max-len=$LEN r=$R threads=$THREADS: median $ms ms/step over $((RUNS * STEPS)) steps, peak RSS $((rss / 1024)) MiB"
echo "peer: none measured (no PyTorch Revela step in this repository); ratio: n/a"
