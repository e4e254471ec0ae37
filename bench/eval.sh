#!/bin/bash
# bench/eval.sh — rv-eval against pytrec_eval on a run of 1M lines over 10k
# queries (100 documents each, listed together, scores descending) and its
# qrels (30 judgments per query, 20 of them retrieved).
#
# Both sides do the whole job from the files: parse the qrels and the run,
# evaluate ndcg_cut.10, map, recall.100, P.10 and recip_rank, and average.
# rv-eval is timed as a whole process (start-up included); pytrec_eval is
# timed inside Python from opening the files to the averages (interpreter
# start-up and imports excluded, which favours the peer). Each side runs
# RUNS times (default 3); the medians and their ratio are printed, and the
# two summaries are checked to agree to 1e-6. rv-eval uses every core (OpenMP;
# set OMP_NUM_THREADS=1 for a one-thread figure); pytrec_eval uses one.
# Usage: bench/eval.sh   (env: RUNS, LINES, QUERIES)
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}; LINES=${LINES:-1000000}; QUERIES=${QUERIES:-10000}
export RV_ROOT=$PWD
. tests/ref/venv.sh
if [ "$RV_VENV_OK" != 1 ]; then echo "SKIP bench/eval: no Python venv (needs PyPI once)"; exit 0; fi
[ -x bin/rv-eval ] || make -s bin/rv-eval
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python scripts/make-eval-fixtures.py bench --out "$dir" --lines "$LINES" --queries "$QUERIES"
measures="ndcg_cut.10 map recall.100 P.10 recip_rank"
margs=(); for m in $measures; do margs+=(-m "$m"); done

cat >"$dir/peer.py" <<'EOF'
import sys, time
import pytrec_eval
qrels_path, run_path, measures = sys.argv[1], sys.argv[2], sys.argv[3].split()
t0 = time.perf_counter()
with open(qrels_path) as f:
    qrels = pytrec_eval.parse_qrel(f)
with open(run_path) as f:
    run = pytrec_eval.parse_run(f)
per_query = pytrec_eval.RelevanceEvaluator(qrels, set(measures)).evaluate(run)
names = sorted(next(iter(per_query.values())))
means = {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in names}
t1 = time.perf_counter()
print("%.6f" % (t1 - t0))
for m in names:
    print("%s\tall\t%.9f" % (m, means[m]))
EOF

now() { date +%s.%N; }
ours=(); peer=()
for i in $(seq "$RUNS"); do
    t0=$(now)
    bin/rv-eval --qrels "$dir/bench.qrels" "${margs[@]}" --digits 9 "$dir/bench.run" >"$dir/ours.txt"
    t1=$(now)
    ours+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f", b - a}')")
    python "$dir/peer.py" "$dir/bench.qrels" "$dir/bench.run" "$measures" >"$dir/peer.txt"
    peer+=("$(head -1 "$dir/peer.txt")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}"); mp=$(median "${peer[@]}")

# the two must agree before the times mean anything
tail -n +2 "$dir/peer.txt" | sort >"$dir/peer.sorted"
sort "$dir/ours.txt" >"$dir/ours.sorted"
if ! join -t "$(printf '\t')" -j 1 <(cut -f1,3 "$dir/ours.sorted") <(cut -f1,3 "$dir/peer.sorted") |
    awk -F'\t' '{d=$2-$3; if (d<0) d=-d; if (d>1e-6) bad=1; n++} END {exit (bad || n!=5)}'; then
    echo "FAIL bench/eval: rv-eval and pytrec_eval disagree"; paste "$dir/ours.sorted" "$dir/peer.sorted"; exit 1
fi
echo "eval: $LINES run lines, $QUERIES queries, measures: $measures (median of $RUNS;" \
     "rv-eval threads: ${OMP_NUM_THREADS:-$(nproc)}, pytrec_eval: 1)"
printf 'rv-eval      %8.3f s  (runs: %s)\n' "$mo" "${ours[*]}"
printf 'pytrec_eval  %8.3f s  (runs: %s)\n' "$mp" "${peer[*]}"
awk -v p="$mp" -v o="$mo" 'BEGIN {printf "ratio        %8.1fx  (pytrec_eval / rv-eval)\n", p / o}'
