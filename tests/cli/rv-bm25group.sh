#!/bin/bash
# rv-bm25group: BM25 and interleaved groups on ADI chunks (476 chunks, two
# planted near-duplicates): group sizes, near-duplicate / other-docs /
# max-reuse rules seen from the outside, determinism (seed, threads), the
# original JSONL batch format both ways, the index cache, metadata, and every
# error path's exit status. The grouping rules themselves are checked
# against exhaustive rankings in tests/unit/test_bm25_group.c.
. "$(dirname "$0")/lib.sh"
F=$T_ROOT/tests/fixtures/bm25
D=$T_DIR
rv-cat --encode chunk -o "$D/c.rvs" "$F/adi-chunks.jsonl" || { echo "FAIL rv-bm25group/setup"; exit 1; }

# members per group (rv-cat prints one group per line)
sizes() { rv-cat "$1" | awk '{ print gsub(/"doc_id":/, "&") }' | sort -u | tr '\n' ' '; }

# --- BM25 groups
t_run rv-bm25group -g 4 -o "$D/g.rvs" "$D/c.rvs"; t_exit bm25_default 0
t_stderr_has bm25_params "bm25 lucene k1 1.5 b 0.75 delta 0.5, stopwords en, stemmer english; groups of 4"
t_stderr_has bm25_summary "groups of 4 from 476 chunks"
t_eq bm25_sizes "$(sizes "$D/g.rvs")" "4 "
n_groups=$(rv-cat --info "$D/g.rvs" | sed -n 's/^records: //p')
dropped=$(sed -n 's/.* \([0-9]*\) dropped short.*/\1/p' "$T_ERR")
t_eq bm25_every_seed_accounted "$((n_groups + dropped))" 476
near=$(sed -n 's/.*skipped: \([0-9]*\) near-duplicates.*/\1/p' "$T_ERR")
t_eq bm25_near_duplicates_skipped "$((near > 0))" 1
# the two planted copies never share a group with their original
rv-cat "$D/g.rvs" | awk '{ n = split(tolower($0), t, /"text":"/); delete seen;
    for (i = 2; i <= n; i++) { s = t[i]; sub(/".*/, "", s); sub(/ !!$/, "", s); if (s in seen) bad++; seen[s] = 1 } }
    END { print bad + 0 }' > "$D/clash"
t_eq bm25_no_duplicates_in_a_group "$(cat "$D/clash")" 0
# token ids and scores travel with the members; the seed comes first with its own score
rv-cat "$D/g.rvs" | head -1 > "$D/first"
t_eq bm25_ids_kept "$(grep -c '"ids":\[[0-9]' "$D/first")" 1
rv-cat --info "$D/g.rvs" | sed -n 's/^metadata: //p' > "$T_OUT"; t_golden rv-bm25group.meta

# deterministic for a seed, whatever the thread count; another seed differs
rv-bm25group -q -g 4 -t 1 < "$D/c.rvs" > "$D/g1.rvs"
t_files_eq bm25_threads_same "$D/g.rvs" "$D/g1.rvs"
rv-bm25group -q -g 4 --seed 7 < "$D/c.rvs" > "$D/g7.rvs"
t_eq bm25_seed_changes "$(cmp -s "$D/g.rvs" "$D/g7.rvs"; echo $?)" 1

# the first groups, as the original batch file (JSONL), are fixed
t_run rv-bm25group -q -g 4 --seeds 8 --jsonl "$D/c.rvs"; t_exit jsonl 0
t_golden rv-bm25group.jsonl
t_run rv-bm25group -q -g 3 --seeds 2 --src stackoverflow --jsonl "$D/c.rvs"
t_eq jsonl_src_form "$(grep -c '^{"src": "stackoverflow", "text": \["' "$T_OUT")" 2

# export -> import -> export is the identity, and the imported groups hold the same texts
rv-bm25group -q -g 4 --jsonl < "$D/c.rvs" > "$D/a.jsonl"
t_run rv-bm25group --from-jsonl -o "$D/imp.rvs" "$D/a.jsonl"; t_exit import 0
t_stderr_has import_count "imported $n_groups groups"
rv-bm25group -q --from-jsonl --jsonl < "$D/a.jsonl" > "$D/b.jsonl"
t_files_eq jsonl_round_trip "$D/a.jsonl" "$D/b.jsonl"
texts() { rv-cat "$1" | sed -e 's/"doc_id":"[^"]*","chunk":[0-9]*,//g' -e 's/,"ids":\[[0-9,]*\],"score":[^}]*}/}/g'; }
texts "$D/g.rvs" > "$D/t1"; texts "$D/imp.rvs" > "$D/t2"
t_files_eq import_same_texts "$D/t1" "$D/t2"
t_eq import_ids_empty "$(rv-cat "$D/imp.rvs" | grep -c '"ids":\[[0-9]')" 0

# --max-reuse 1: no chunk in two groups; --other-docs: no neighbour from the seed's document
rv-bm25group -q -g 4 --max-reuse 1 < "$D/c.rvs" > "$D/r.rvs"
t_eq max_reuse_once "$(rv-cat "$D/r.rvs" | grep -o '"doc_id":"[^"]*","chunk":[0-9]*' | sort | uniq -d | wc -l)" 0
t_eq max_reuse_sizes "$(sizes "$D/r.rvs")" "4 "
rv-bm25group -q -g 4 --other-docs < "$D/c.rvs" > "$D/o.rvs"
rv-cat "$D/o.rvs" | awk '{ n = split($0, t, /"doc_id":"/); split(t[2], s, /"/);
    for (i = 3; i <= n; i++) { split(t[i], m, /"/); if (m[1] == s[1]) bad++ } } END { print bad + 0 }' > "$D/same"
t_eq other_docs "$(cat "$D/same")" 0
# --short fill keeps every seed
t_run rv-bm25group -g 4 --short fill --max-reuse 2 -o "$D/f.rvs" "$D/c.rvs"; t_exit short_fill 0
t_stderr_has short_fill_none_dropped " 0 dropped short"
t_eq short_fill_sizes "$(sizes "$D/f.rvs")" "4 "

# the index cache: reused when it fits, refused when it does not
t_run rv-bm25group -g 4 --index "$D/i.idx" -o "$D/x1.rvs" "$D/c.rvs"; t_exit index_build 0
t_run rv-bm25group -g 4 --index "$D/i.idx" -o "$D/x2.rvs" "$D/c.rvs"; t_exit index_load 0
t_stderr_has index_loaded "loaded the index"
t_files_eq index_same_groups "$D/x1.rvs" "$D/x2.rvs"
t_files_eq index_same_as_without "$D/x1.rvs" "$D/g.rvs"
t_run rv-bm25group -g 4 --k1 1.2 --index "$D/i.idx" "$D/c.rvs"; t_exit index_other_k1 1
t_stderr_has index_other_k1_msg "not the options given"
head -100 "$F/adi-chunks.jsonl" | rv-cat --encode chunk > "$D/c100.rvs"
t_run rv-bm25group -g 4 --index "$D/i.idx" "$D/c100.rvs"; t_exit index_other_chunks 1

# --- interleaving
t_run rv-bm25group -m interleave -g 4 -o "$D/il.rvs" "$D/c.rvs"; t_exit interleave 0
t_eq interleave_sizes "$(sizes "$D/il.rvs")" "4 "
t_stderr_has interleave_all_used "476 of 476 chunks used (at most 1 times each)"
rv-cat "$D/il.rvs" | head -3 | sed -e 's/"text":"[^"]*",//g' > "$T_OUT"; t_golden rv-bm25group.interleave
t_eq interleave_meta "$(rv-cat --info "$D/il.rvs" | grep -c '"mode":"interleave","group_size":4,.*"docs_per_group":2')" 1

# --- usage errors (exit 2) and data errors (exit 1)
for args in "--mode foo" "-g 1" "--docs-per-group 3" "-m interleave --max-reuse 1" "-m interleave --k1 1" \
            "--from-jsonl --max-reuse 1" "--short maybe" "--seeds 0" "--bogus" "--b 7" "--variant x" "a b"; do
    t_run rv-bm25group $args; t_exit "usage: $args" 2
done
t_run rv-bm25group --help; t_exit help 0
t_eq help_usage "$(grep -c '^Usage: rv-bm25group' "$T_OUT")" 1
rv-cat --encode doc "$T_ROOT/tests/fixtures/bm25/adi-queries.jsonl" > "$D/docs.rvs"
t_run rv-bm25group "$D/docs.rvs"; t_exit not_chunks 1
t_stderr_has not_chunks_msg "chunk"
head -c 3000 "$D/c.rvs" > "$D/trunc.rvs"
t_run rv-bm25group "$D/trunc.rvs"; t_exit truncated 1
printf '["a", "b"]\n{"text": 5}\n' > "$D/bad.jsonl"
t_run rv-bm25group --from-jsonl "$D/bad.jsonl"; t_exit bad_jsonl 1
t_stderr_has bad_jsonl_line "bad.jsonl:2:"
t_eq no_part_left "$(ls "$D" | grep -c '\.part$')" 0
