#!/bin/bash
# rv-search: exact rankings against the NumPy references in tests/fixtures/search
# (made by scripts/make-search-fixtures.py: integer-valued vectors, so every
# score and every tie is exact), input forms (emb streams of each dtype, .npy,
# shards), output forms (TREC, run stream, -o), MaxP, and every error path.
. "$(dirname "$0")/lib.sh"
F=$T_ROOT/tests/fixtures/search
D=$T_DIR

rv-cat --encode emb -o "$D/ic.emb" "$F/int_corpus.jsonl"
rv-cat --encode emb --dtype f16 -o "$D/ic16.emb" "$F/int_corpus.jsonl"
rv-cat --encode emb --dtype bf16 -o "$D/icb16.emb" "$F/int_corpus.jsonl"
rv-cat --encode emb -o "$D/iq.emb" "$F/int_queries.jsonl"

# --- exact rankings, ties by corpus order; k larger than the corpus ranks it all
for k in 1 10 1000; do
    t_run_in "$D/iq.emb" rv-search -q --corpus "$D/ic.emb" -k $k; t_exit "int_k$k.exit" 0
    t_files_eq "int_k$k" "$T_OUT" "$F/int_k$k.trec"
done
t_eq int_k1000_whole_corpus "$(grep -c '^q1 ' "$F/int_k1000.trec")" 200

# any thread count gives the same bytes
for t in 1 2 3; do
    t_run rv-search -q --corpus "$D/ic.emb" -k 1000 --threads $t "$D/iq.emb"
    t_files_eq "threads_$t" "$T_OUT" "$F/int_k1000.trec"
done

# f16 / bf16 storage (the integers are exact in both)
for c in ic16 icb16; do
    t_run rv-search -q --corpus "$D/$c.emb" -k 10 "$D/iq.emb"; t_files_eq "dtype_$c" "$T_OUT" "$F/int_k10.trec"
done

# queries from stdin, "-", or a file operand
rv-search -q --corpus "$D/ic.emb" -k 10 - < "$D/iq.emb" > "$D/dash.trec"
t_files_eq queries_dash "$D/dash.trec" "$F/int_k10.trec"

# .npy inputs: '<f4', '<f2', '<f8' corpus with ids; .npy queries
for n in int_corpus int_corpus_f2 int_corpus_f8; do
    t_run rv-search -q --corpus-npy "$F/$n.npy" --corpus-ids "$F/int_corpus.ids" -k 10 \
        --queries-npy "$F/int_queries.npy" --queries-ids "$F/int_queries.ids"
    t_exit "npy_$n.exit" 0; t_files_eq "npy_$n" "$T_OUT" "$F/int_k10.trec"
done
t_run rv-search -q --corpus-npy "$F/int_corpus.npy" -k 10 --queries-npy "$F/int_queries.npy"
t_files_eq npy_row_number_ids "$T_OUT" "$F/int_k10_rowids.trec"
t_run rv-search -q --corpus-npy "$F/int_corpus.npy" --corpus-ids "$F/int_corpus.ids" -k 10 "$D/iq.emb"
t_files_eq npy_corpus_stream_queries "$T_OUT" "$F/int_k10.trec"

# shards: one corpus, corpus order = file order then record order; mixed dtypes widen
head -n 70 "$F/int_corpus.jsonl" > "$D/s1.jsonl"
sed -n '71,140p' "$F/int_corpus.jsonl" > "$D/s2.jsonl"
tail -n +141 "$F/int_corpus.jsonl" > "$D/s3.jsonl"
rv-cat --encode emb --dtype f16 -o "$D/s1.emb" "$D/s1.jsonl"
rv-cat --encode emb -o "$D/s2.emb" "$D/s2.jsonl"
rv-cat --encode emb --dtype bf16 -o "$D/s3.emb" "$D/s3.jsonl"
rv-cat --encode emb -o "$D/s2b.emb" "$D/s2.jsonl"
for k in 10 1000; do
    t_run rv-search -q --corpus "$D/s1.emb" --corpus "$D/s2.emb" --corpus "$D/s3.emb" -k $k "$D/iq.emb"
    t_exit "shards_k$k.exit" 0; t_files_eq "shards_k$k" "$T_OUT" "$F/int_k$k.trec"
done
rv-cat --encode emb < /dev/null > "$D/empty.emb"
t_run rv-search -q -c "$D/s1.emb" -c "$D/empty.emb" -c "$D/s2.emb" -c "$D/s3.emb" -k 1000 "$D/iq.emb"
t_files_eq shards_with_empty "$T_OUT" "$F/int_k1000.trec"

# run stream: same ranking, scores as f64 of the float32 score; metadata
t_run rv-search -q --corpus "$D/ic.emb" -k 3 --stream -o "$D/run.rvs" "$D/iq.emb"; t_exit stream_exit 0
rv-cat "$D/run.rvs" > "$D/run.jsonl"
t_files_eq stream_hits "$D/run.jsonl" "$F/int_k3.stream.jsonl"
t_eq stream_no_part "$(ls "$D" | grep -c '\.part$')" 0
rv-cat --info "$D/run.rvs" | sed "s|$D/||g; s|rv-search [0-9.]*|rv-search VERSION|; s|rv-cat [0-9.]*|rv-cat VERSION|" > "$T_OUT"
t_golden rv-search.stream-info
t_run rv-search -q --corpus "$D/ic.emb" -k 3 --stream "$D/iq.emb" -o -
t_files_eq stream_to_stdout "$T_OUT" "$D/run.rvs"

# -o FILE for TREC text, and --tag
t_run rv-search -q --corpus "$D/ic.emb" -k 10 --tag myrun -o "$D/tag.trec" "$D/iq.emb"; t_exit output_file_exit 0
t_eq output_file_stdout_empty "$(wc -c < "$T_OUT")" 0
t_files_eq tag "$D/tag.trec" <(sed 's/ rv-search$/ myrun/' "$F/int_k10.trec")

# MaxP: chunk ids DOC#N (not all contiguous); document = id up to the last '#'
rv-cat --encode emb -o "$D/mc.emb" "$F/maxp_corpus.jsonl"
rv-cat --encode emb -o "$D/mq.emb" "$F/maxp_queries.jsonl"
for k in 5 1000; do
    t_run rv-search -q --corpus "$D/mc.emb" --doc-agg max -k $k "$D/mq.emb"; t_exit "maxp_k$k.exit" 0
    t_files_eq "maxp_k$k" "$T_OUT" "$F/maxp_k$k.trec"
done
sed 's/#/::/g' "$F/maxp_corpus.jsonl" | rv-cat --encode emb -o "$D/mc2.emb"
t_run rv-search -q --corpus "$D/mc2.emb" --doc-agg max --doc-id-sep :: -k 5 --threads 2 "$D/mq.emb"
t_files_eq maxp_sep "$T_OUT" <(sed 's/#/::/g' "$F/maxp_k5.trec")
t_run rv-search -q --corpus "$D/mc.emb" --doc-agg none -k 5 "$D/mq.emb"; t_exit maxp_off_exit 0
# without aggregation the hits are chunks: every id without '#' is a one-chunk "soloN"
t_eq maxp_off_chunk_ids "$(awk '{print $3}' "$T_OUT" | grep -vc '#')" "$(awk '{print $3}' "$T_OUT" | grep -c '^solo')"

# empty inputs: valid, no hits
t_run rv-search -q --corpus "$D/empty.emb" -k 5 "$D/iq.emb"; t_exit empty_corpus_exit 0
t_eq empty_corpus_output "$(wc -c < "$T_OUT")" 0
t_run rv-search -q --corpus "$D/ic.emb" -k 5 "$D/empty.emb"; t_exit empty_queries_exit 0
t_eq empty_queries_output "$(wc -c < "$T_OUT")" 0

# parameters on stderr unless -q
t_run rv-search --corpus "$D/ic.emb" -k 7 --threads 2 "$D/iq.emb"
t_stderr_has params_line "8 queries, 200 corpus vectors (1 file), dim 16, f32; k 7, 2 threads, doc-agg none"
t_run rv-search -q --corpus "$D/ic.emb" "$D/iq.emb"
t_eq quiet_stderr "$(wc -c < "$T_ERR")" 0
t_eq default_k_100 "$(grep -c '^q1 ' "$T_OUT")" 100

# --- errors: usage errors exit 2, data errors exit 1; messages in one golden
printf '{"id":"a b","vector":[1,0]}\n' | rv-cat --encode emb -o "$D/space.emb"
printf '{"id":"x","vector":[1,0]}\n{"id":"x","vector":[0,1]}\n' | rv-cat --encode emb -o "$D/dup.emb"
printf '{"id":"#1","vector":[1,0]}\n' | rv-cat --encode emb -o "$D/emptydoc.emb"
printf '{"id":"q","vector":[1,0]}\n' | rv-cat --encode emb -o "$D/q2.emb"
printf '{"_id":"d","text":"x"}\n' | rv-cat --encode doc -o "$D/doc.rvs"
head -c 200 "$D/ic.emb" > "$D/trunc.emb"
head -n 5 "$F/int_corpus.ids" > "$D/short.ids"
: > "$D/errors"
err_case() {  # name, expected exit, command...
    local name=$1 code=$2; shift 2
    t_run "$@"; t_exit "err_$name" "$code"
    { echo "== $name: exit $T_RC"; sed "s|$D/||g; s|$F/||g" "$T_ERR"; } >> "$D/errors"
}
err_case no_corpus 2 rv-search -k 5 "$D/iq.emb"
err_case k_zero 2 rv-search --corpus "$D/ic.emb" -k 0 "$D/iq.emb"
err_case k_text 2 rv-search --corpus "$D/ic.emb" --k ten "$D/iq.emb"
err_case threads_zero 2 rv-search --corpus "$D/ic.emb" --threads 0 "$D/iq.emb"
err_case doc_agg_bad 2 rv-search --corpus "$D/ic.emb" --doc-agg min "$D/iq.emb"
err_case doc_sep_empty 2 rv-search --corpus "$D/ic.emb" --doc-id-sep "" "$D/iq.emb"
err_case device_bad 2 rv-search --corpus "$D/ic.emb" --device tpu "$D/iq.emb"
err_case corpus_ids_alone 2 rv-search --corpus "$D/ic.emb" --corpus-ids "$F/int_corpus.ids" "$D/iq.emb"
err_case queries_ids_alone 2 rv-search --corpus "$D/ic.emb" --queries-ids "$F/int_queries.ids"
err_case two_operands 2 rv-search --corpus "$D/ic.emb" "$D/iq.emb" "$D/iq.emb"
err_case npy_and_operand 2 rv-search --corpus "$D/ic.emb" --queries-npy "$F/int_queries.npy" "$D/iq.emb"
err_case two_stdin 2 rv-search --corpus - -
err_case tag_space 2 rv-search --corpus "$D/ic.emb" --tag "a b" "$D/iq.emb"
err_case unknown_option 2 rv-search --corpus "$D/ic.emb" --nope "$D/iq.emb"
err_case missing_arg 2 rv-search --corpus
err_case device_cuda 1 env RV_CUDA_LIB="$D/none.so" rv-search --corpus "$D/ic.emb" --device cuda "$D/iq.emb"
err_case missing_file 1 rv-search --corpus "$D/nonexistent.emb" "$D/iq.emb"
err_case dim_mismatch 1 rv-search --corpus "$D/ic.emb" "$D/mq.emb"
err_case shard_dim_mismatch 1 rv-search --corpus "$D/ic.emb" --corpus "$D/mc.emb" "$D/iq.emb"
err_case not_emb 1 rv-search --corpus "$D/doc.rvs" "$D/iq.emb"
err_case truncated 1 rv-search --corpus "$D/trunc.emb" "$D/iq.emb"
err_case npy_fortran 1 rv-search --corpus-npy "$F/npy_bad_fortran.npy" "$D/iq.emb"
err_case npy_ids_short 1 rv-search --corpus-npy "$F/int_corpus.npy" --corpus-ids "$D/short.ids" "$D/iq.emb"
err_case npy_ids_long 1 rv-search --corpus-npy "$F/int_corpus.npy" --corpus-ids "$F/int_corpus.ids" \
    --queries-npy "$F/int_queries.npy" --queries-ids "$F/int_corpus.ids"
err_case duplicate_ids 1 rv-search --corpus "$D/dup.emb" "$D/q2.emb"
err_case id_whitespace 1 rv-search --corpus "$D/space.emb" "$D/q2.emb"
err_case empty_doc_id 1 rv-search --corpus "$D/emptydoc.emb" --doc-agg max "$D/q2.emb"
cp "$D/errors" "$T_OUT"; t_golden rv-search.errors
t_eq failed_output_no_part "$(ls "$D" | grep -c '\.part$')" 0

# whitespace in ids is fine in a run stream
t_run rv-search -q --corpus "$D/space.emb" --stream -o "$D/space.rvs" "$D/q2.emb"; t_exit id_whitespace_stream 0
t_eq id_whitespace_stream_hit "$(rv-cat "$D/space.rvs")" '{"qid":"q","hits":[{"docid":"a b","score":1}]}'
