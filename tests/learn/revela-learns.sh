#!/bin/bash
# revela-learns.sh — the learning test of rv-train (issue 7): on real text,
# Revela training must lower the loss and make the retriever better than the
# untrained one on held-out pairs of the same kind of text.
#
#   text     PAGES section-1 manual pages of this machine
#            (scripts/make-demo-corpus.sh); every 4th page is held out
#   task     held-out pages cut into 80-word pieces: query = first 40 words,
#            relevant document = the other 40 (scripts/split-heldout-pairs.py)
#   model    SmolLM2-135M (scripts/get-model.sh), retriever and LM, LoRA on both
#   pipeline rv-tokenize -> rv-bm25group -> rv-train -> rv-encode (base and
#            trained) -> rv-search -> rv-eval, as a user would run it
# Checks: the mean loss of the last 5 steps is below that of the first 5;
# the trained retriever's nDCG@10 exceeds the base model's; BM25 on the same
# task is printed for scale. Every number is computed here, from real runs.
# Environment: PAGES STEPS MAX_LEN RANK LR TAU THREADS (defaults below), KEEP=DIR.
set -u
cd "$(dirname "$0")/../.."
export RV_ROOT=$PWD
BIN=${BIN:-bin}
. tests/cli/lib.sh
T_SUITE=learn
PAGES=${PAGES:-160}; STEPS=${STEPS:-30}; MAX_LEN=${MAX_LEN:-32}; RANK=${RANK:-8}; LR=${LR:-3e-3}
TAU=${TAU:-0.05}; THREADS=${THREADS:-$(nproc)}
D=${KEEP:-$T_DIR}
mkdir -p "$D"
MODEL=$(scripts/get-model.sh | tail -n 1) || { echo "FAIL $T_SUITE/model (scripts/get-model.sh failed)"; exit 0; }
start=$(date +%s)

scripts/make-demo-corpus.sh "$PAGES" > "$D/all.jsonl" &&
    python3 scripts/split-heldout-pairs.py "$D/all.jsonl" "$D/train.jsonl" "$D/pairs" 2>"$D/pairs.log"
T_RC=$?; t_exit corpus 0
"$BIN/rv-tokenize" -q -t "$MODEL" --chunk-words 60 -o "$D/chunks.rvs" "$D/train.jsonl" &&
    "$BIN/rv-bm25group" -q --group-size 4 --other-docs --max-reuse 2 -o "$D/groups.rvs" "$D/chunks.rvs"
T_RC=$?; t_exit groups 0
t_run "$BIN/rv-train" --model "$MODEL" --groups "$D/groups.rvs" --out "$D/run" --lora-rank "$RANK" \
    --lora-alpha $((2 * RANK)) --max-len "$MAX_LEN" --max-steps "$STEPS" --grad-accum 1 --lr "$LR" --warmup 3 \
    --warmup-shape linear --tau "$TAU" --threads "$THREADS" -q
t_exit train 0

for f in corpus queries; do "$BIN/rv-cat" --encode doc -o "$D/$f.rvs" "$D/pairs/$f.jsonl" || T_RC=1; done
ndcg() { "$BIN/rv-eval" --qrels "$D/pairs/qrels/test.tsv" -m ndcg_cut.10 "$1" | awk '{print $3}'; }
"$BIN/rv-search" --bm25 -q --corpus "$D/corpus.rvs" -k 100 -o "$D/bm25.trec" "$D/queries.rvs"
for run in base trained; do
    ad=(); [ "$run" = trained ] && ad=(--adapter "$D/run/retriever")
    "$BIN/rv-encode" -q -m "$MODEL" "${ad[@]}" -p 'passage:  ' --threads "$THREADS" -o "$D/$run-c.emb" "$D/corpus.rvs" &&
        "$BIN/rv-encode" -q -m "$MODEL" "${ad[@]}" -p 'query:  ' --threads "$THREADS" -o "$D/$run-q.emb" "$D/queries.rvs" &&
        "$BIN/rv-search" -q --corpus "$D/$run-c.emb" -k 100 -o "$D/$run.trec" "$D/$run-q.emb" || T_RC=1
done
t_exit encode_search 0
n_pairs=$(wc -l < "$D/pairs/queries.jsonl")
bm25=$(ndcg "$D/bm25.trec"); base=$(ndcg "$D/base.trec"); trained=$(ndcg "$D/trained.trec")
read -r first last < <(sed 's/.*"loss":\([^,]*\),.*/\1/' "$D/run/log.jsonl" |
    awk '{l[NR] = $1} END {for (i = 1; i <= 5; i++) {a += l[i]; b += l[NR - 5 + i]} print a / 5, b / 5}')
echo "INFO learn: $n_pairs held-out pairs; loss (mean of 5 steps) first $first last $last; nDCG@10 BM25 $bm25," \
     "base $base, trained $trained ($STEPS steps, max-len $MAX_LEN, r $RANK, lr $LR, tau $TAU," \
     "$(($(date +%s) - start)) s)"
t_eq loss_falls "$(awk -v a="$first" -v b="$last" 'BEGIN {print (b < a) ? "yes" : "no: " a " -> " b}')" yes
t_eq retriever_improves "$(awk -v a="$base" -v b="$trained" 'BEGIN {print (b > a) ? "yes" : "no: " a " -> " b}')" yes
