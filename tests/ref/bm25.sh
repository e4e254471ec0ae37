#!/bin/bash
# bm25.sh — the BM25 engine against bm25s, live (Python venv):
#   - rv-search --bm25 vs bm25s on real collections (queries -> corpus,
#     top 100): every score equal to 1e-5 relative, rankings identical up to
#     exact score ties; nDCG@10 of both runs by pytrec_eval equal to 1e-4;
#   - the same over 14,714 chunks of Cranfield and Medline text (500 chunks
#     as queries);
#   - rv-bm25group: for 300 seeds over those chunks, each group's neighbours
#     are bm25s's best-ranked chunks that are neither the seed nor a
#     near-duplicate of a member, with bm25s's scores (among tied chunks,
#     which of two near-duplicates is taken is arbitrary).
# bm25s's stemmer (PyStemmer) must bundle the Snowball release of the
# libstemmer we link (PyStemmer 2.2.0.x for libstemmer 2.2); RV_BM25_PYTHON
# names another interpreter to use. Collections: RV_COLLECTIONS
# (default /work/shared/collections).
set -u
cd "$(dirname "$0")/../.."
export RV_ROOT=$PWD
BIN=${BIN:-bin}
BUILD=${BUILD:-build}
if [ -n "${RV_BM25_PYTHON:-}" ]; then
    PY=$RV_BM25_PYTHON
else
    . tests/ref/venv.sh
    if [ "$RV_VENV_OK" != 1 ]; then echo "SKIP ref/bm25: no Python venv"; exit 0; fi
    PY=python
fi
if ! "$PY" -c 'import Stemmer, sys; sys.exit(Stemmer.Stemmer("english").stemWord("added") != "ad")'; then
    echo "FAIL ref/bm25.stemmer: PyStemmer $("$PY" -c 'import Stemmer; print(Stemmer.version())') stems with" \
         "Snowball 3 (\"added\" -> \"add\"), libstemmer 2.2 gives \"ad\": pin PyStemmer==2.2.0.3"
    exit 1
fi
COLL=${RV_COLLECTIONS:-/work/shared/collections}
if [ ! -d "$COLL/cranfield" ]; then echo "SKIP ref/bm25: no collections in $COLL (set RV_COLLECTIONS)"; exit 0; fi
if "$BIN/rv-search" --bm25 --help 2>/dev/null | grep -q 'rv-search --bm25'; then
    SEARCH=("$BIN/rv-search" --bm25)
else
    SEARCH=("$BUILD/tests/test_bm25_cli" --run)   # the same front end, before rv-search wires it
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fix=scripts/make-bm25-fixtures.py

compare() {  # name, ours.trec, bm25s.trec [qrels]
    "$PY" - "$@" <<'EOF'
import collections, sys
name, ours, ref = sys.argv[1:4]
qrels = sys.argv[4] if len(sys.argv) > 4 else None
def load(p):
    d = collections.OrderedDict()
    for line in open(p):
        q, _, doc, rank, score, _ = line.split()
        d.setdefault(q, []).append((doc, float(score)))
    return d
a, b = load(ours), load(ref)
bad = []
for q, ref_hits in b.items():
    got = a.get(q, [])
    if len(got) < len(ref_hits):
        bad.append(f"{q}: {len(got)} hits, bm25s {len(ref_hits)}"); continue
    for i, ((d1, s1), (d2, s2)) in enumerate(zip(got, ref_hits)):
        if abs(s1 - s2) > 1e-5 * abs(s2):
            bad.append(f"{q} rank {i + 1}: {s1} vs {s2}"); break
    else:
        # documents per group of equal scores (the last group may run past the cut)
        last = ref_hits[-1][1] if ref_hits else None
        groups = collections.defaultdict(lambda: [set(), set()])
        for (d1, s1), (d2, s2) in zip(got, ref_hits):
            if s2 != last:
                groups[s2][0].add(d1); groups[s2][1].add(d2)
        for s, (x, y) in groups.items():
            if x != y:
                bad.append(f"{q} score {s}: {sorted(x - y)} vs {sorted(y - x)}"); break
for q in a:
    if q not in b and a[q]:
        bad.append(f"{q}: hits for a query bm25s has none for")
if bad:
    print(f"FAIL ref/bm25.{name}: {len(bad)} queries differ, e.g. {bad[:3]}")
else:
    print(f"PASS ref/bm25.{name} ({len(b)} queries)")
if qrels:
    import pytrec_eval
    rel = collections.defaultdict(dict)
    for line in open(qrels):
        p = line.split()
        if p[0] == "query-id": continue
        rel[p[0]][p[1]] = int(p[2])
    def ndcg(run):
        r = {q: {d: s for d, s in hits} for q, hits in run.items() if q in rel}
        ev = pytrec_eval.RelevanceEvaluator(dict(rel), {"ndcg_cut.10"})
        v = ev.evaluate(r)
        return sum(x["ndcg_cut_10"] for x in v.values()) / len(v) if v else 0.0
    x, y = ndcg(a), ndcg(b)
    ok = abs(x - y) <= 1e-4
    print(f"{'PASS' if ok else 'FAIL'} ref/bm25.{name}.ndcg10 (ours {x:.6f}, bm25s {y:.6f})")
EOF
}

# --- queries -> corpus
run_pair() {  # collection variant [extra options as "--k1 X --b Y"]
    local c=$1 v=$2; shift 2
    "$PY" $fix search --corpus "$COLL/$c/corpus.jsonl" --queries "$COLL/$c/queries.jsonl" --k 100 --variant "$v" "$@" \
        > "$dir/ref.trec" || { echo "FAIL ref/bm25.$c.$v: bm25s"; return; }
    "${SEARCH[@]}" -q --corpus "$COLL/$c/corpus.jsonl" -k 100 --variant "$v" "$@" "$COLL/$c/queries.jsonl" \
        > "$dir/ours.trec" || { echo "FAIL ref/bm25.$c.$v: rv-search"; return; }
    compare "$c.$v$(echo "$@" | tr -d ' -')" "$dir/ours.trec" "$dir/ref.trec" "$COLL/$c/qrels/test.tsv"
}
for c in cranfield cacm medline lisa time adi; do
    [ -d "$COLL/$c" ] && run_pair "$c" lucene
done
for v in robertson atire bm25l bm25+; do run_pair cranfield "$v"; done
run_pair cacm lucene --k1 0.9 --b 0.4 --stopwords none --stem none

# --- chunks -> chunks (>= 10k chunks of real text)
"$PY" $fix chunks --collections "$COLL" --out "$dir/chunks.jsonl" || { echo "FAIL ref/bm25.chunks: setup"; exit 1; }
"$PY" - "$dir" <<'EOF'
import json, random, sys
d = sys.argv[1]
chunks = [json.loads(l) for l in open(f"{d}/chunks.jsonl")]
with open(f"{d}/chunk-corpus.jsonl", "w") as f:
    for i, c in enumerate(chunks):
        f.write(json.dumps({"_id": str(i), "title": "", "text": c["text"]}) + "\n")
rng = random.Random(17)
with open(f"{d}/chunk-queries.jsonl", "w") as f:
    for i in sorted(rng.sample(range(len(chunks)), 500)):
        f.write(json.dumps({"_id": str(i), "text": chunks[i]["text"]}) + "\n")

EOF
"$PY" $fix search --corpus "$dir/chunk-corpus.jsonl" --queries "$dir/chunk-queries.jsonl" --k 100 > "$dir/ref.trec" &&
    "${SEARCH[@]}" -q --corpus "$dir/chunk-corpus.jsonl" -k 100 "$dir/chunk-queries.jsonl" > "$dir/ours.trec" &&
    compare chunks "$dir/ours.trec" "$dir/ref.trec" || echo "FAIL ref/bm25.chunks: a run failed"

# --- rv-bm25group neighbours
"$BIN/rv-cat" --encode chunk "$dir/chunks.jsonl" > "$dir/chunks.rvs" &&
    "$BIN/rv-bm25group" -q -g 16 --seeds 300 --jsonl "$dir/chunks.rvs" > "$dir/groups.jsonl" ||
    { echo "FAIL ref/bm25.groups: rv-bm25group"; exit 1; }
"$BIN/rv-bm25group" -q -g 16 --seeds 300 "$dir/chunks.rvs" | "$BIN/rv-cat" > "$dir/groups.json"
"$PY" - "$dir" <<'EOF'
import json, re, sys
import bm25s, Stemmer
import numpy as np
d = sys.argv[1]
recs = [json.loads(l) for l in open(f"{d}/chunks.jsonl")]
chunks = [c["text"] for c in recs]
index = {(c["doc_id"], c["chunk"]): i for i, c in enumerate(recs)}
fp = [" ".join(re.findall(r"\w+", t.lower())) for t in chunks]
tok = bm25s.tokenize(chunks, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False, return_ids=False)
r = bm25s.BM25()
r.index(tok, show_progress=False)
groups = [json.loads(l) for l in open(f"{d}/groups.json")]
seeds = []
for g in groups:
    m = g["members"][0]
    seeds.append(index[(m["doc_id"], m["chunk"])])
docs, scores = r.retrieve([tok[s] for s in seeds], k=200, show_progress=False)
bad, checked = [], 0
for g, s, ds, ss in zip(groups, seeds, docs, scores):
    got = [(index[(m["doc_id"], m["chunk"])], np.float32(m["score"])) for m in g["members"][1:]]
    want, keys = [], {fp[s]}
    for c, sc in zip(ds, ss):
        c = int(c)
        if c == s or fp[c] in keys or sc <= 0: continue
        want.append((c, np.float32(sc))); keys.add(fp[c])
        if len(want) == 15: break
    if len(want) < 15: continue
    checked += 1
    if [x for _, x in got] != [y for _, y in want]:
        bad.append(f"seed {s}: scores {[x for _, x in got][:4]} vs {[y for _, y in want][:4]}"); continue
    last = want[-1][1]
    by = {}
    for (a, x), (b, y) in zip(got, want):
        if y != last:  # tied near-duplicates are interchangeable: compare their keys
            by.setdefault(y, [set(), set()]); by[y][0].add(fp[a]); by[y][1].add(fp[b])
    if any(u != v for u, v in by.values()):
        bad.append(f"seed {s}: members differ")
ok = not bad and checked >= 250
print(f"{'PASS' if ok else 'FAIL'} ref/bm25.groups ({checked} groups checked){': ' + '; '.join(bad[:3]) if bad else ''}")
EOF
