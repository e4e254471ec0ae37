#!/bin/bash
# demo.sh — `make demo`: the longest real pipeline the tools allow, on a real
# collection (Cranfield from ../shared/collections, or $RV_COLLECTIONS).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
COLL=${RV_COLLECTIONS:-../shared/collections}
C=$COLL/cranfield
if [ ! -f "$C/corpus.jsonl" ]; then
    echo "demo: $C/corpus.jsonl not found; set RV_COLLECTIONS to a folder of BEIR collections" >&2
    exit 1
fi
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"
echo "== Cranfield: $(wc -l < "$C/corpus.jsonl") documents, $(wc -l < "$C/queries.jsonl") queries"
rv-cat --encode doc -o "$OUT/corpus.rvs" "$C/corpus.jsonl"
rv-cat --encode doc -o "$OUT/queries.rvs" "$C/queries.jsonl"
rv-cat --info "$OUT/corpus.rvs"
echo "== first query, back as JSON:"
rv-cat -o "$OUT/queries.jsonl" "$OUT/queries.rvs"
head -1 "$OUT/queries.jsonl"
echo "== outputs in $OUT/"
