#!/bin/bash
# rv-search --bm25: the lexical mode through the rv-search front end — TREC
# output (golden), the same run from JSONL and from doc streams, run streams,
# and error exits. Score parity with bm25s is checked in test_bm25* and
# tests/ref/bm25.sh.
. "$(dirname "$0")/lib.sh"
D=$T_DIR
cat > "$D/corpus.jsonl" <<'J'
{"_id":"d1","title":"Cats","text":"Cats purr and sleep in the sun."}
{"_id":"d2","title":"Dogs","text":"Dogs bark at cats and chase balls."}
{"_id":"d3","title":"Engines","text":"Diesel engines compress air before injecting fuel."}
{"_id":"d4","title":"","text":"A sleeping cat is a happy cat."}
J
cat > "$D/queries.jsonl" <<'J'
{"_id":"q1","text":"sleeping cats"}
{"_id":"q2","text":"fuel injection engine"}
{"_id":"q3","text":"zebra"}
J
t_run rv-search --bm25 -q --corpus "$D/corpus.jsonl" "$D/queries.jsonl"; t_exit jsonl_exit 0
t_golden rv-search-bm25.trec
cp "$T_OUT" "$D/from-jsonl.trec"
rv-cat --encode doc -o "$D/corpus.rvs" "$D/corpus.jsonl"
rv-cat --encode doc -o "$D/queries.rvs" "$D/queries.jsonl"
t_run rv-search --bm25 -q --corpus "$D/corpus.rvs" "$D/queries.rvs"; t_exit streams_exit 0
t_files_eq streams_same_run "$T_OUT" "$D/from-jsonl.trec"
rv-search --bm25 -q --corpus "$D/corpus.rvs" -k 1 --tag t < "$D/queries.rvs" > "$D/k1.trec"
t_eq k1_lines "$(wc -l < "$D/k1.trec")" 2
t_eq k1_tag "$(awk '{print $6}' "$D/k1.trec" | sort -u)" t
t_run rv-search --bm25 -q --stream -o "$D/run.rvs" --corpus "$D/corpus.rvs" "$D/queries.rvs"; t_exit stream_exit 0
t_eq stream_kind "$(rv-cat --info "$D/run.rvs" | sed -n 's/^kind: //p')" run
t_eq stream_hits_q1 "$(rv-cat "$D/run.rvs" | head -1 | grep -o '"docid"' | wc -l)" "$(grep -c '^q1 ' "$D/from-jsonl.trec")"
t_run rv-search --bm25 "$D/queries.jsonl"; t_exit no_corpus_exit 2
t_run rv-search --bm25 --corpus "$D/missing.jsonl" "$D/queries.jsonl"; t_exit missing_corpus_exit 1
t_stderr_has missing_corpus_msg "missing.jsonl"
t_run rv-search --bm25 --corpus "$D/corpus.jsonl" --variant nope "$D/queries.jsonl"; t_exit bad_variant_exit 2
