#!/bin/bash
# search.sh — rv-search against NumPy brute force (float64) and faiss
# IndexFlatIP, live, on fresh random cases (scripts/make-search-fixtures.py
# random: unit vectors with planted duplicate rows and a block of
# integer-valued rows and queries, chunk ids "dN#M"), in f32, f16 and bf16,
# for k = 1, 10, 1000 and more than the corpus, with and without MaxP.
# The comparison (make-search-fixtures.py compare) requires ids equal wherever
# the reference's score gap exceeds 1e-5, exactly tied rows in corpus order,
# scores within 1e-5 and equal to float32(float64 score) (±1 ulp, rarely), and
# faiss's ids equal to ours where gaps are clear. Also: .npy input, shards and
# thread counts give the same bytes as one emb stream.
# Env: SEED (default: the time; printed).
set -u
cd "$(dirname "$0")/../.."
export RV_ROOT=$PWD
BIN=${BIN:-bin}
. tests/ref/venv.sh
if [ "$RV_VENV_OK" != 1 ]; then echo "SKIP ref/search: no Python venv"; exit 0; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
seed=${SEED:-$(date +%s)}
echo "ref/search: seed $seed (rerun with SEED=$seed)"
script=scripts/make-search-fixtures.py
pass() { echo "PASS ref/search.$1"; }
fail() { echo "FAIL ref/search.$1"; shift; printf '  %s\n' "$@"; }
same() { if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$(diff "$2" "$3" | head -5)"; fi; }

run_case() {  # name dtype corpus queries dim ks...
    local name=$1 dtype=$2 nc=$3 nq=$4 dim=$5; shift 5
    local d=$dir/$name
    python "$script" random --seed "$seed" --out "$d" --dtype "$dtype" --corpus "$nc" --queries "$nq" --dim "$dim" ||
        { fail "$name.generate"; return; }
    "$BIN/rv-cat" --encode emb --dtype "$dtype" -o "$d/corpus.emb" "$d/corpus.jsonl"
    "$BIN/rv-cat" --encode emb --dtype "$dtype" -o "$d/queries.emb" "$d/queries.jsonl"
    local k faiss=""
    [ "$dtype" = f32 ] && faiss=--faiss
    for k in "$@"; do
        if "$BIN/rv-search" -q --corpus "$d/corpus.emb" -k "$k" "$d/queries.emb" > "$d/run$k.trec"; then
            python "$script" compare --case "$d" --run "$d/run$k.trec" --k "$k" $faiss --label "ref/search.$name.k$k" \
                2>/dev/null
        else
            fail "$name.k$k.run"
        fi
        if "$BIN/rv-search" -q --corpus "$d/corpus.emb" -k "$k" --doc-agg max "$d/queries.emb" > "$d/maxp$k.trec"; then
            python "$script" compare --case "$d" --run "$d/maxp$k.trec" --k "$k" --doc-agg max \
                --label "ref/search.$name.maxp.k$k" 2>/dev/null
        else
            fail "$name.maxp.k$k.run"
        fi
    done
    # the same corpus as .npy, as three shards, and with other thread counts: the same bytes
    k=$1
    "$BIN/rv-search" -q --corpus-npy "$d/corpus.npy" --corpus-ids "$d/corpus.ids" -k "$k" \
        --queries-npy "$d/queries.npy" --queries-ids "$d/queries.ids" > "$d/npy.trec"
    same "$name.npy_input" "$d/npy.trec" "$d/run$k.trec"
    local third=$(( nc / 3 ))
    head -n "$third" "$d/corpus.jsonl" | "$BIN/rv-cat" --encode emb --dtype "$dtype" -o "$d/s1.emb"
    sed -n "$((third + 1)),$((2 * third))p" "$d/corpus.jsonl" | "$BIN/rv-cat" --encode emb -o "$d/s2.emb"
    tail -n +"$((2 * third + 1))" "$d/corpus.jsonl" | "$BIN/rv-cat" --encode emb --dtype "$dtype" -o "$d/s3.emb"
    "$BIN/rv-search" -q -c "$d/s1.emb" -c "$d/s2.emb" -c "$d/s3.emb" -k "$k" "$d/queries.emb" > "$d/shards.trec"
    same "$name.shards" "$d/shards.trec" "$d/run$k.trec"
    for t in 1 3; do
        "$BIN/rv-search" -q --corpus "$d/corpus.emb" -k "$k" --threads $t "$d/queries.emb" > "$d/t$t.trec"
        same "$name.threads$t" "$d/t$t.trec" "$d/run$k.trec"
    done
}

run_case f32 f32 3000 64 96 10 1 1000 5000
run_case f16 f16 3000 64 96 10 1 1000 5000
run_case bf16 bf16 3000 64 96 10 1000
run_case large f32 20000 200 128 100
