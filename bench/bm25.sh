#!/bin/bash
# bm25.sh — BM25 neighbourhoods of every chunk, rv-bm25group vs bm25s, on N
# chunks of real text from this machine (default 100,000; 120-word windows of
# /usr/share/doc, man pages and the Python standard library, at most 100
# chunks per file).
#
#   ours:  rv-bm25group -t THREADS -g 16 (index + the top of every chunk's
#          ranking + groups written)
#   bm25s: bm25s.tokenize (English stopwords, PyStemmer) + BM25().index +
#          retrieve(k=16, n_threads=THREADS) with every chunk as a query
#
# Both read the same chunks; each is timed with /usr/bin/time -v (wall clock
# and peak resident memory). Runs alternate (ours, bm25s, ours, ...) so both
# see the same machine load; the medians of RUNS runs and their ratios are
# printed. bm25s takes about 15-20 minutes a run at N=100000 on 2 cores.
# Env: N, RUNS (3), THREADS (2), RV_BM25_PYTHON (default: the .venv of
# tests/ref/venv.sh), KEEP=DIR to keep the corpus between invocations.
set -u
cd "$(dirname "$0")/.."
N=${N:-100000}
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}
BIN=${BIN:-bin}
if [ -n "${RV_BM25_PYTHON:-}" ]; then PY=$RV_BM25_PYTHON; else
    . tests/ref/venv.sh
    [ "$RV_VENV_OK" = 1 ] || { echo "bench/bm25: no Python venv"; exit 1; }
    PY=python
fi
[ -x /usr/bin/time ] || { echo "bench/bm25: needs /usr/bin/time (GNU time)"; exit 1; }
dir=${KEEP:-$(mktemp -d)}
[ -n "${KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"

if [ ! -s "$dir/chunks-$N.rvs" ]; then
    "$PY" - "$N" > "$dir/chunks-$N.jsonl" <<'EOF'
import gzip, json, os, sys
target, W = int(sys.argv[1]), 120
roots = ["/usr/share/doc", "/usr/share/man/man1", "/usr/share/man/man3", "/usr/share/man/man5",
         "/usr/share/man/man8", "/usr/lib/python3"] + sorted(
             os.path.join("/usr/lib", d) for d in os.listdir("/usr/lib") if d.startswith("python3."))
files = []
for r in roots:
    for dp, dn, fn in os.walk(r):
        dn.sort()
        files += [os.path.join(dp, f) for f in sorted(fn)]
n = 0
for p in files:
    if n >= target:
        break
    if os.path.islink(p):
        continue
    try:
        raw = gzip.open(p).read() if p.endswith(".gz") else open(p, "rb").read()
        text = raw.decode("utf-8")
    except Exception:
        continue
    if "\0" in text[:4096]:
        continue
    words = text.split()
    for i in range(0, min(len(words), 100 * W), W):
        if n >= target:
            break
        print(json.dumps({"doc_id": p, "chunk": i // W, "text": " ".join(words[i:i + W]), "ids": []}))
        n += 1
if n < target:
    sys.exit(f"only {n} chunks of text found on this machine")
EOF
    [ $? -eq 0 ] || exit 1
    "$BIN/rv-cat" --encode chunk "$dir/chunks-$N.jsonl" > "$dir/chunks-$N.rvs" || exit 1
fi

cat > "$dir/bm25s_run.py" <<'EOF'
import json, sys
import bm25s, Stemmer
path, threads = sys.argv[1], int(sys.argv[2])
texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
tokens = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)
retriever = bm25s.BM25()
retriever.index(tokens, show_progress=False)
docs, scores = retriever.retrieve(tokens, k=16, n_threads=threads, show_progress=False)
print(docs.shape, file=sys.stderr)
EOF

measure() {  # label, command...: appends "seconds kbytes" to $dir/$label
    local label=$1; shift
    /usr/bin/time -v "$@" 2> "$dir/time.txt" > /dev/null || { echo "bench/bm25: $label failed:"; tail -5 "$dir/time.txt"; exit 1; }
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/time.txt" |
           awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/time.txt")
    echo "$wall $rss" >> "$dir/$label"
    printf '  %-6s run: %8.1f s  %8.0f MB\n' "$label" "$wall" "$((rss / 1024))"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rm -f "$dir/ours" "$dir/bm25s"
echo "bench/bm25: $N chunks, $THREADS threads, $RUNS runs each ($(nproc) processors: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
for r in $(seq "$RUNS"); do
    measure ours "$BIN/rv-bm25group" -q -t "$THREADS" -g 16 "$dir/chunks-$N.rvs"
    measure bm25s "$PY" "$dir/bm25s_run.py" "$dir/chunks-$N.jsonl" "$THREADS"
done
ot=$(cut -d' ' -f1 "$dir/ours" | median); om=$(cut -d' ' -f2 "$dir/ours" | median)
bt=$(cut -d' ' -f1 "$dir/bm25s" | median); bm=$(cut -d' ' -f2 "$dir/bm25s" | median)
awk -v ot="$ot" -v om="$om" -v bt="$bt" -v bm="$bm" 'BEGIN {
    printf "bench/bm25: time   rv-bm25group %.1f s, bm25s %.1f s: %.2fx faster\n", ot, bt, bt / ot
    printf "bench/bm25: memory rv-bm25group %.0f MB, bm25s %.0f MB: %.2fx less\n", om / 1024, bm / 1024, bm / om
}'
