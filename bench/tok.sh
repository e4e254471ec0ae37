#!/bin/bash
# bench/tok.sh — rv-tokenize --format ids against Hugging Face `tokenizers`
# encode_batch on the same ≥ 10 MB of real text, for llama3 and qwen2.5, with
# 2 threads and with 1 (RAYON_NUM_THREADS for HF, --threads for ours).
#
# The text: man pages (roff source, one document per .PP paragraph block),
# Python sources of the standard library and gettext translations in 18
# languages, all read from this machine, written once as {"text": …} JSONL.
# rv-tokenize is timed as a whole process (tokenizer loading, JSON parsing
# and printing included); HF is timed inside Python around encode_batch
# only (file reading, JSON parsing and tokenizer loading excluded, which
# favours the peer). Each side runs RUNS times (default 3); medians, MB/s of
# input text and the ratio are printed. The ids of both sides are compared
# first, so the times are of identical work.
# Usage: bench/tok.sh   (env: RUNS, MB (default 10))
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}; MB=${MB:-10}
export RV_ROOT=$PWD
. tests/ref/venv.sh
if [ "$RV_VENV_OK" != 1 ]; then echo "SKIP bench/tok: no Python venv (needs PyPI once)"; exit 0; fi
TOKS=${RV_TOKENIZERS:-$PWD/../shared/tokenizers}
[ -d "$TOKS/llama3" ] || { echo "SKIP bench/tok: $TOKS not found"; exit 0; }
[ -x bin/rv-tokenize ] || make -s bin/rv-tokenize
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python - "$dir/text.jsonl" "$MB" <<'EOF'
import glob, gettext, gzip, json, sys
out, limit = open(sys.argv[1], "w"), int(sys.argv[2]) * 1_000_000
n = 0
def emit(t):
    global n
    if t.strip():
        out.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        n += len(t.encode())
for lang in ["ru", "uk", "zh_CN", "zh_TW", "ja", "ko", "ar", "fa", "hi", "mr", "ne", "el", "he", "th", "ka", "de",
             "fr", "es"]:
    for mo in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo")):
        try:
            cat = gettext.GNUTranslations(open(mo, "rb"))._catalog
        except Exception:
            continue
        emit("\n".join(v for k, v in sorted(cat.items(), key=lambda kv: str(kv[0])) if isinstance(v, str)))
    if n > limit * 0.25:
        break
for p in sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True)):
    emit(open(p, encoding="utf-8", errors="replace").read())
    if n > limit * 0.5:
        break
for p in sorted(glob.glob("/usr/share/man/man*/*.gz")):
    for para in gzip.decompress(open(p, "rb").read()).decode("utf-8", "replace").split("\n.PP\n"):
        emit(para)
    if n > limit:
        break
print(f"text: {n / 1e6:.1f} MB in {sum(1 for _ in open(sys.argv[1]))} documents", file=sys.stderr)
EOF
bytes=$(python -c 'import json,sys; print(sum(len(json.loads(l)["text"].encode()) for l in open(sys.argv[1])))' "$dir/text.jsonl")

cat >"$dir/peer.py" <<'EOF'
import json, sys, time
from tokenizers import Tokenizer
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
tok = Tokenizer.from_file(sys.argv[1])
t0 = time.perf_counter()
enc = tok.encode_batch(texts, add_special_tokens=False)
t1 = time.perf_counter()
print("%.6f" % (t1 - t0))
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as f:
        for e in enc:
            f.write(json.dumps(e.ids, separators=(",", ":")) + "\n")
EOF

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %7s  %12s  %12s  %6s\n' tokenizer threads "rv-tokenize" "HF tokenizers" ratio
for name in llama3 qwen2.5; do
    tj=$TOKS/$name/tokenizer.json
    RAYON_NUM_THREADS=2 python "$dir/peer.py" "$tj" "$dir/text.jsonl" "$dir/peer.ids" >/dev/null
    bin/rv-tokenize -q -j 2 -t "$tj" --format ids "$dir/text.jsonl" >"$dir/ours.ids"
    cmp -s "$dir/ours.ids" "$dir/peer.ids" || { echo "FAIL bench/tok: $name ids differ from HF"; exit 1; }
    for th in 2 1; do
        ours=(); peer=()
        for i in $(seq "$RUNS"); do
            t0=$(now)
            bin/rv-tokenize -q -j "$th" -t "$tj" --format ids "$dir/text.jsonl" >/dev/null
            t1=$(now)
            ours+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f", b - a}')")
            peer+=("$(RAYON_NUM_THREADS=$th python "$dir/peer.py" "$tj" "$dir/text.jsonl")")
        done
        mo=$(median "${ours[@]}"); mp=$(median "${peer[@]}")
        awk -v n="$name" -v th="$th" -v b="$bytes" -v o="$mo" -v p="$mp" \
            'BEGIN {printf "%-8s %7d  %7.2f MB/s  %7.2f MB/s  %5.2fx\n", n, th, b / o / 1e6, b / p / 1e6, p / o}'
    done
done
echo "(MB/s of input text, median of $RUNS runs; rv-tokenize includes start-up, tokenizer loading and JSON I/O)"
