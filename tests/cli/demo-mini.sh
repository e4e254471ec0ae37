#!/bin/bash
# demo-mini.sh — a miniature of `make demo`, run through the real demo/Makefile
# with its variables: the tiny llama fixture (random weights, byte-level
# tokenizer.json) as retriever and LM, 3 training steps on 10 Cranfield
# abstracts, evaluation on ADI (82 documents, 35 queries; judgments in
# tests/fixtures/demo, documents and queries in tests/fixtures/bm25).
# The numbers mean nothing about retrieval quality; what is checked is that
# the whole pipeline rv-tokenize -> rv-bm25group -> rv-train -> rv-encode
# (base and trained) -> rv-search (dense and --bm25) -> rv-eval runs and that
# every output is well-formed: each stream reads back with rv-cat with the
# record count it should have, every run covers every query, the trained
# adapter changes the embeddings, and the metrics in the table are those of
# the run files — nDCG@10 and recall@100 are recomputed here from the runs and
# the qrels by a few lines of Python written from trec_eval's definitions.
. "$(dirname "$0")/lib.sh"
FX=$T_ROOT/tests/fixtures
D=$T_DIR
OUT=$D/out
COLL=$D/adi
STEPS=3
mkdir -p "$COLL/qrels" "$OUT"
cp "$FX/bm25/adi-corpus.jsonl" "$COLL/corpus.jsonl"
cp "$FX/bm25/adi-queries.jsonl" "$COLL/queries.jsonl"
cp "$FX/demo/adi-qrels.tsv" "$COLL/qrels/test.tsv"
# The demo builds its training text from the machine's man pages; a clean CI
# image may have none, so the miniature seeds train.jsonl (a target without
# prerequisites: make keeps it) with text disjoint from ADI. The man-page
# script itself is checked at the end when pages exist.
cp "$FX/model/smollm2_docs.jsonl" "$OUT/train.jsonl"

# A clean sub-make: the test may run under `make check`, whose MAKEFLAGS would
# carry its own command-line variables and jobserver into demo/Makefile.
unset MAKEFLAGS MFLAGS MAKELEVEL
VARS=(BIN="${BIN:-bin}" MODEL="$FX/model/llama_tied" COLL="$COLL" OUT="$OUT" STEPS=$STEPS GROUP=4
      MAX_LEN=24 RANK=4 THREADS=2)
t_run make --no-print-directory -C "$T_ROOT" -f demo/Makefile "${VARS[@]}"
t_exit demo_makefile "0"
[ "$T_RC" -eq 0 ] || { cat "$T_OUT" | tail -20; exit 1; }
cp "$T_OUT" "$D/table.txt"

# --- every stream reads back, with the record count it should have
count() { rv-cat --info "$1" 2>/dev/null | sed -n 's/^records: //p'; }
kind() { rv-cat --info "$1" 2>/dev/null | sed -n 's/^kind: //p'; }
lines() { wc -l < "$1" | tr -d ' '; }
NDOC=$(lines "$COLL/corpus.jsonl"); NQ=$(lines "$COLL/queries.jsonl")
for f in chunks.rvs groups.rvs corpus.rvs queries.rvs base-corpus.emb base-queries.emb \
         revela-corpus.emb revela-queries.emb; do
    # decoding the whole stream verifies its checksum and trailer count
    n=$(rv-cat "$OUT/$f" 2>"$D/cat.err" | wc -l); rc=${PIPESTATUS[0]}
    t_eq "readable_$f" "$rc $n" "0 $(count "$OUT/$f")"
done
t_eq kinds "$(for f in chunks.rvs groups.rvs corpus.rvs base-corpus.emb; do kind "$OUT/$f"; done | tr '\n' ' ')" \
    "chunk group doc emb "
for r in base revela; do
    t_eq "${r}_corpus_records" "$(count "$OUT/$r-corpus.emb")" "$NDOC"
    t_eq "${r}_query_records" "$(count "$OUT/$r-queries.emb")" "$NQ"
done
t_eq corpus_records "$(count "$OUT/corpus.rvs")" "$NDOC"
t_eq query_records "$(count "$OUT/queries.rvs")" "$NQ"
# every training document is chunked, every chunk comes from one of them
t_eq chunk_docs "$(rv-cat "$OUT/chunks.rvs" | python3 -c 'import json,sys; print(sorted({json.loads(l)["doc_id"] for l in sys.stdin}))')" \
    "$(python3 -c 'import json,sys; print(sorted({json.loads(l)["_id"] for l in open(sys.argv[1])}))' "$OUT/train.jsonl")"
# groups: 4 members each, a seed (score 0) first, then neighbours from other
# documents than the seed's (--other-docs) that are not the seed chunk itself
t_eq group_shape "$(rv-cat "$OUT/groups.rvs" | python3 -c '
import json, sys
bad = 0
for g in map(json.loads, sys.stdin):
    m = g["members"]
    bad += len(m) != 4 or m[0]["score"] != 0 or any(x["doc_id"] == m[0]["doc_id"] for x in m[1:])
print(bad)')" 0
t_eq emb_ids_in_order "$(rv-cat "$OUT/base-corpus.emb" | python3 -c 'import json,sys; print([json.loads(l)["id"] for l in sys.stdin])')" \
    "$(python3 -c 'import json,sys; print([json.loads(l)["_id"] for l in open(sys.argv[1])])' "$COLL/corpus.jsonl")"

# --- training: STEPS log lines, both adapters, a finite loss
t_eq train_log_steps "$(lines "$OUT/train/log.jsonl")" "$STEPS"
t_eq train_loss_finite "$(python3 -c '
import json, math, sys
print(all(math.isfinite(json.loads(l)["loss"]) for l in open(sys.argv[1])))' "$OUT/train/log.jsonl")" True
for a in retriever lm; do
    [ -s "$OUT/train/$a/adapter_model.safetensors" ] && [ -s "$OUT/train/$a/adapter_config.json" ]; T_RC=$?
    t_exit "adapter_$a" 0
done
t_eq adapter_in_metadata "$(rv-cat --info "$OUT/revela-corpus.emb" | grep -c '"adapter":"'"$OUT/train/retriever"'"')" 1
if cmp -s "$OUT/base-corpus.emb" "$OUT/revela-corpus.emb"; then
    t_fail adapter_changes_embeddings "base and trained corpus embeddings are the same bytes"
else t_pass adapter_changes_embeddings; fi

# --- runs: every query present; ids known; ranks 1..n; scores non-increasing
for r in bm25 base revela; do
    t_eq "run_${r}" "$(python3 - "$OUT/$r.trec" "$COLL/corpus.jsonl" "$COLL/queries.jsonl" "$r" <<'PY'
import json, sys
run, corpus, queries, tag = sys.argv[1:]
docs = {json.loads(l)["_id"] for l in open(corpus)}
qids = {json.loads(l)["_id"] for l in open(queries)}
per = {}
problems = []
for line in open(run):
    q, q0, d, rank, score, t = line.split()
    if q0 != "Q0" or t != tag or d not in docs or q not in qids:
        problems.append("bad line: " + line.strip())
    per.setdefault(q, []).append((int(rank), float(score)))
for q, hits in per.items():
    if [h[0] for h in hits] != list(range(1, len(hits) + 1)):
        problems.append(f"{q}: ranks not 1..n")
    if any(a[1] < b[1] for a, b in zip(hits, hits[1:])):
        problems.append(f"{q}: scores increase")
if set(per) != qids:
    problems.append(f"queries without hits: {sorted(qids - set(per))}")
# dense runs rank the whole (82-document) corpus under -k 100
if tag != "bm25" and any(len(h) != len(docs) for h in per.values()):
    problems.append("a dense run does not rank every document")
print("ok" if not problems else "; ".join(problems[:5]))
PY
)" ok
done

# --- metrics: recomputed from the run files and the qrels (trec_eval rules:
# a query's documents sorted by score descending, ties by document id
# descending; nDCG gain = judgment, discount log2(rank+1), ideal from all
# judged documents; mean over the queries of the run that have judgments)
recompute() {
    python3 - "$1" "$COLL/qrels/test.tsv" <<'PY'
import math, sys
run, qrels = sys.argv[1:]
rel = {}
for line in open(qrels):
    q, d, s = line.split("\t")
    if q == "query-id":
        continue
    rel.setdefault(q, {})[d] = int(s)
hits = {}
for line in open(run):
    q, _, d, _, s, _ = line.split()
    hits.setdefault(q, []).append((float(s), d))
ndcg, r100 = [], []
for q, h in hits.items():
    if q not in rel:
        continue
    h.sort(key=lambda x: (x[0], x[1]), reverse=True)
    ranked = [d for _, d in h]
    dcg = sum(rel[q].get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((v for v in rel[q].values() if v > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    ndcg.append(dcg / idcg if idcg > 0 else 0.0)
    npos = sum(1 for v in rel[q].values() if v > 0)
    r100.append(sum(1 for d in ranked[:100] if rel[q].get(d, 0) > 0) / npos)
print(f"{sum(ndcg) / len(ndcg):.4f} {sum(r100) / len(r100):.4f}")
PY
}
for r in bm25 base revela; do
    mine=$(recompute "$OUT/$r.trec")
    evals=$(awk '$1 == "ndcg_cut_10" {n = $3} $1 == "recall_100" {r = $3} END {printf "%.4f %.4f", n, r}' "$OUT/$r.eval")
    t_eq "metrics_${r}_recomputed" "$evals" "$mine"
    # the printed table is the same numbers
    t_eq "table_${r}" "$(awk -v r=$r '$1 == r {print $2, $4}' "$D/table.txt")" "$mine"
done

# --- pictures: two PNG files
for p in results.png loss.png; do
    t_eq "png_$p" "$(head -c 8 "$OUT/$p" | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a
done

# --- make's dependency graph: everything is up to date after one run
t_run make -q -C "$T_ROOT" -f demo/Makefile "${VARS[@]}" "$OUT/results.tsv" "$OUT/loss.png"
t_exit up_to_date 0

# --- the demo's training-text script, when this machine has man pages
if [ -n "$(find /usr/share/man/man1 -name '*.1.gz' 2>/dev/null | head -1)" ] && command -v man >/dev/null; then
    t_run "$T_ROOT/scripts/make-demo-corpus.sh" 3
    t_exit demo_corpus_exit 0
    t_eq demo_corpus_jsonl "$(python3 -c '
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1])]
print(len(docs) > 0 and all(set(d) == {"_id", "title", "text"} and len(d["text"]) >= 400 for d in docs))' "$T_OUT")" True
else
    echo "SKIP demo-mini/demo_corpus: no manual pages in /usr/share/man/man1 (or no man)"
fi
