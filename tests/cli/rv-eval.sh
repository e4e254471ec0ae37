#!/bin/bash
# rv-eval: pytrec_eval's values (tests/fixtures/eval/*.expected.tsv) through
# the command line, output formats (goldens), inputs (stdin, BEIR qrels, run
# streams, -o), warnings, and every error path's exit status and message.
. "$(dirname "$0")/lib.sh"
F=$T_ROOT/tests/fixtures/eval
D=$T_DIR
cp "$F"/gen.qrels "$F"/gen-beir.tsv "$F"/gen.run "$D"/
cd "$D"   # messages name files as given: keep them short
all=(-m ndcg_cut.1,3,5,10,100,1000 -m ndcg -m map -m map_cut.10 -m recall.100 -m P.5,10 -m recip_rank -m Rprec
     -m num_q -m num_ret -m num_rel -m num_rel_ret)

# --- every value of every reference table, end to end, within 1e-6 ---
for table in "$F"/*.expected.tsv; do
    name=$(basename "$table" .expected.tsv)
    meta() { sed -n "s/^# $1: //p" "$table"; }
    args=(--qrels "$F/$(meta qrels)" --per-query --digits 12)
    for m in $(meta measures); do args+=(-m "$m"); done
    read -r level complete identical <<<"$(meta options | sed 's/[a-z]*=//g')"
    [ "$level" != 1 ] && args+=(-l "$level")
    [ "$complete" = 1 ] && args+=(-c)
    [ "$identical" = 1 ] && args+=(--ignore-identical-ids)
    t_run rv-eval "${args[@]}" "$F/$(meta run)"
    if [ "$T_RC" -ne 0 ]; then t_fail "pytrec_eval.$name" "exit $T_RC"; continue; fi
    # the table is wide (qid, then one column per measure); rv-eval is long
    verdict=$(awk -F'\t' '
        NR == FNR { got[$1 SUBSEP $2] = $3; n_got++; next }
        /^#/ { next }
        $1 == "qid" { for (i = 2; i <= NF; i++) col[i] = $i; next }
        { for (i = 2; i <= NF; i++) {
              k = col[i] SUBSEP $1; n++
              if (!(k in got)) { print "missing " col[i] " " $1; exit }
              d = got[k] - $i; if (d < 0) d = -d
              if (d > 1e-6) { print "differs " col[i] " " $1 ": " got[k] " vs " $i; exit } } }
        END { if (n != n_got) print n_got " values printed, " n " expected"; else print "ok " n }' "$T_OUT" "$table")
    case "$verdict" in ok*) t_pass "pytrec_eval.$name";; *) t_fail "pytrec_eval.$name" "$verdict";; esac
done

# --- output formats ---
t_run rv-eval --qrels gen.qrels "${all[@]}" gen.run; t_exit summary_exit 0
t_golden rv-eval.summary
t_stderr_has repeat_warning "warning: gen.run:35: document d4790 is listed again for query q63_x; kept its highest score"
t_stderr_has qrels_repeat_warning "warning: gen.qrels:785: judges a (query, document) pair again; the last judgment counts"
t_run rv-eval --qrels gen.qrels gen.run
t_eq default_measure "$(cut -f1,2 "$T_OUT")" "$(printf 'ndcg_cut_10\tall')"
t_run rv-eval --qrels gen.qrels -q -m ndcg_cut.10 -m num_ret gen.run
t_golden rv-eval.per-query
t_run rv-eval --qrels gen.qrels --digits 3 -m map -m num_rel gen.run
t_golden rv-eval.digits
t_run rv-eval --qrels gen.qrels --json -q -m P.5 -m num_rel gen.run; t_exit json_exit 0
t_golden rv-eval.json
t_eq json_parses "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sorted(d), len(d["P_5"]["per_query"]))' "$T_OUT")" \
     "['P_5', 'num_rel'] $(grep -c "^P_5	" <(rv-eval --qrels gen.qrels -q -m P.5 gen.run 2>/dev/null | grep -v '	all	'))"
t_run rv-eval --qrels gen.qrels --json -m map gen.run
t_eq json_summary_only "$(tr -d '\n' <"$T_OUT" | sed 's/[0-9.e-]*}/V}/')" '{"map": {"all": V}}'

# --- inputs: stdin, BEIR qrels, run stream, -o ---
rv-eval --qrels gen.qrels "${all[@]}" gen.run >ref.out 2>/dev/null
rv-eval --qrels gen.qrels "${all[@]}" <gen.run >stdin.out 2>/dev/null
t_files_eq run_from_stdin stdin.out ref.out
rv-eval --qrels gen.qrels "${all[@]}" - <gen.run >dash.out 2>/dev/null
t_files_eq run_from_dash dash.out ref.out
cat gen.run | rv-eval --qrels gen.qrels "${all[@]}" >pipe.out 2>/dev/null
t_files_eq run_from_pipe pipe.out ref.out
cat gen.qrels | rv-eval --qrels - "${all[@]}" gen.run >qpipe.out 2>/dev/null
t_files_eq qrels_from_pipe qpipe.out ref.out
# a file read from where standard input stands (not from its start)
(read -r _; rv-eval --qrels gen.qrels -q -m num_ret) <gen.run >offset.out 2>/dev/null
tail -n +2 gen.run | rv-eval --qrels gen.qrels -q -m num_ret >offset.ref 2>/dev/null
t_files_eq run_from_stdin_offset offset.out offset.ref
rv-eval --qrels gen-beir.tsv "${all[@]}" gen.run >beir.out 2>/dev/null
t_files_eq beir_qrels_same beir.out ref.out
# the same run as a stream: one record per line of the text run
awk '{ printf "{\"qid\":\"%s\",\"hits\":[{\"docid\":\"%s\",\"score\":%s}]}\n", $1, $3, $5 }' gen.run |
    sed 's/"score":\([-+]\?\)\./"score":\10./; s/"score":+/"score":/; s/\([0-9]\)\.}/\1}/; s/\([0-9]\)\.\([eE]\)/\1\2/' |
    rv-cat --encode run -o gen.rvs
t_run rv-eval --qrels gen.qrels "${all[@]}" gen.rvs; t_exit stream_exit 0
t_files_eq stream_same "$T_OUT" ref.out
t_stderr_has stream_repeat_warning "warning: gen.rvs: document"
t_run rv-eval --qrels gen.qrels "${all[@]}" -o out.txt gen.run; t_exit output_exit 0
t_files_eq output_file out.txt ref.out
t_eq output_no_part "$(ls | grep -c '\.part$')" 0
t_eq output_stdout_empty "$(wc -c <"$T_OUT")" 0

# --- usage errors: exit 2 ---
t_run rv-eval --qrels gen.qrels -m nDCG@10 gen.run; t_exit unknown_measure_exit 2
t_stderr_has unknown_measure_msg 'rv-eval: --measure: unknown measure "nDCG@10" (known: ndcg_cut.K'
t_run rv-eval --qrels gen.qrels -m P.0 gen.run; t_exit bad_cutoff_exit 2
t_stderr_has bad_cutoff_msg 'measure "P.0": expected cutoffs as positive integers'
t_run rv-eval --qrels gen.qrels -m map.10 gen.run; t_exit map_params_exit 2
t_run rv-eval gen.run; t_exit no_qrels_exit 2
t_stderr_has no_qrels_msg "--qrels FILE is required"
t_run rv-eval --qrels gen.qrels gen.run gen.run; t_exit two_runs_exit 2
t_run rv-eval --qrels gen.qrels -l 0 gen.run; t_exit level_zero_exit 2
t_run rv-eval --qrels gen.qrels --digits 40 gen.run; t_exit digits_exit 2
t_run rv-eval --qrels - ; t_exit both_stdin_exit 2

# --- data errors: exit 1, naming file:line and field ---
printf 'q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 t\n' >short.run
t_run rv-eval --qrels gen.qrels short.run; t_exit short_line_exit 1
t_stderr_has short_line_msg "rv-eval: short.run:2: expected 6 fields (qid Q0 docid rank score tag), found 5"
printf 'q1 Q0 d1 1 high t\n' >score.run
t_run rv-eval --qrels gen.qrels score.run; t_exit bad_score_exit 1
t_stderr_has bad_score_msg 'rv-eval: score.run:1: field 5 (score): expected a number, found "high"'
printf 'q1 0 d1 1\nq1 0 d2 maybe\n' >bad.qrels
t_run rv-eval --qrels bad.qrels gen.run; t_exit bad_rel_exit 1
t_stderr_has bad_rel_msg 'rv-eval: bad.qrels:2: field 4 (rel): expected an integer judgment, found "maybe"'
printf 'query-id\tcorpus-id\tscore\nq1\td1\n' >short.tsv
t_run rv-eval --qrels short.tsv gen.run; t_exit beir_short_exit 1
t_stderr_has beir_short_msg "rv-eval: short.tsv:2: expected 3 tab-separated fields (query-id corpus-id score), found 2"
t_run rv-eval --qrels gen.qrels missing.run; t_exit missing_run_exit 1
t_stderr_has missing_run_msg "rv-eval: missing.run: cannot open"
printf 'nobody Q0 d1 1 1 t\n' >other.run
t_run rv-eval --qrels gen.qrels -o never.txt other.run; t_exit no_overlap_exit 1
t_stderr_has no_overlap_msg "other.run: no query of the run has judgments (1 run queries, "
t_eq no_overlap_no_output "$(ls | grep -c '^never')" 0
head -c 2000 gen.rvs >cut.rvs
t_run rv-eval --qrels gen.qrels cut.rvs; t_exit truncated_stream_exit 1
t_stderr_has truncated_stream_msg "rv-eval: cut.rvs"
rv-cat --encode doc </dev/null >docs.rvs
t_run rv-eval --qrels gen.qrels docs.rvs; t_exit wrong_kind_exit 1
t_stderr_has wrong_kind_msg "docs.rvs"
