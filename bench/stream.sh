#!/bin/bash
# stream.sh — stream write/read throughput against zstd on the same bytes.
# Payload: the real collections in ../shared/collections repeated to ~200 MB
# of doc records. Ours: rv-cat --encode doc (JSONL parse + write) and
# build/bench/stream_read (read + decode every record). Peers: `zstd -1` on
# the stream's decompressed content and `zstd -d` of that compressed content,
# timed in the same run. Medians of 3.
set -eu
cd "$(dirname "$0")/.."
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
COLL=${RV_COLLECTIONS:-../shared/collections}
target_mb=${STREAM_BENCH_MB:-200}
python3 - "$COLL" "$W/big.jsonl" "$target_mb" <<'PY'
import json, sys, glob, os
coll, out, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = []
for p in sorted(glob.glob(os.path.join(coll, "*", "corpus.jsonl"))):
    for line in open(p, encoding="utf-8"):
        docs.append(json.loads(line))
size, rep = 0, 0
with open(out, "w", encoding="utf-8") as f:
    while size < mb * 1e6:
        for d in docs:
            s = json.dumps({"_id": f"{rep}-{d['_id']}", "title": d.get("title", ""), "text": d["text"]}, ensure_ascii=False)
            f.write(s + "\n"); size += len(s) + 1
        rep += 1
PY
med() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN {printf "%.4f\n", e - s}'; }
for i in 1 2 3; do timeit bin/rv-cat --encode doc -o "$W/big.rvs" "$W/big.jsonl"; done | med > "$W/t_write"
zstd -q -dc "$W/big.rvs" > "$W/content.raw"
for i in 1 2 3; do build/bench/stream_read "$W/big.rvs" | awk '{print $3}'; done | med > "$W/t_read"
read -r recs payload _ < <(build/bench/stream_read "$W/big.rvs")
for i in 1 2 3; do timeit zstd -q -1 -c -o "$W/c.zst" -f "$W/content.raw"; done | med > "$W/t_zc"
for i in 1 2 3; do timeit zstd -q -dc "$W/c.zst"; done | med > "$W/t_zd"
for i in 1 2 3; do timeit bin/rv-cat "$W/big.rvs"; done | med > "$W/t_cat"
awk -v recs="$recs" -v pay="$payload" -v w="$(cat "$W/t_write")" -v r="$(cat "$W/t_read")" \
    -v zc="$(cat "$W/t_zc")" -v zd="$(cat "$W/t_zd")" -v cat="$(cat "$W/t_cat")" 'BEGIN {
    mb = pay / 1e6
    printf "stream bench: %d doc records, %.1f MB payload (median of 3, seconds)\n", recs, mb
    printf "%-34s %8s %10s %12s\n", "operation", "s", "MB/s", "records/s"
    printf "%-34s %8.3f %10.1f %12.0f\n", "rv-cat --encode doc (JSONL->rvs)", w, mb / w, recs / w
    printf "%-34s %8.3f %10.1f %12s\n", "zstd -1 (same content)", zc, mb / zc, "-"
    printf "%-34s %8.3f %10.1f %12.0f\n", "stream read + doc decode", r, mb / r, recs / r
    printf "%-34s %8.3f %10.1f %12s\n", "zstd -d (same content)", zd, mb / zd, "-"
    printf "%-34s %8.3f %10.1f %12.0f\n", "rv-cat (rvs->JSONL)", cat, mb / cat, recs / cat
    printf "read cost vs zstd -d: %.2fx (goal <= 1.5x); write vs zstd -1: %.2fx\n", r / zd, w / zc
}'
