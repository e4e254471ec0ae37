#!/bin/bash
# eval.sh — rv-eval against pytrec_eval, live: a fresh generated case of a
# few thousand queries (fixed seed; ties, repeats, graded and negative
# judgments, queries on one side only) and the BM25 run over Cranfield as a
# TREC text file, each under the options of the committed fixtures
# (scripts/make-eval-fixtures.py writes the reference tables). Every query's
# every value must agree within 1e-6. Env: SEED (default 7), QUERIES (3000).
set -u
cd "$(dirname "$0")/../.."
export RV_ROOT=$PWD
BIN=${BIN:-bin}
. tests/ref/venv.sh
if [ "$RV_VENV_OK" != 1 ]; then echo "SKIP ref/eval: no Python venv"; exit 0; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python scripts/make-eval-fixtures.py random --seed "${SEED:-7}" --queries "${QUERIES:-3000}" --out "$dir" >/dev/null ||
    { echo "FAIL ref/eval.generate"; exit 1; }
if [ -d /work/shared/collections/cranfield ] || [ -n "${RV_COLLECTIONS:-}" ]; then
    python scripts/make-eval-fixtures.py fixtures --out "$dir" \
        --collections "${RV_COLLECTIONS:-/work/shared/collections}" >/dev/null ||
        { echo "FAIL ref/eval.cranfield"; exit 1; }
else
    echo "SKIP ref/eval.cranfield: no collections (set RV_COLLECTIONS)"
fi
python - "$dir" "$BIN/rv-eval" <<'EOF'
import glob, os, subprocess, sys
d, rv = sys.argv[1], sys.argv[2]
for table in sorted(glob.glob(os.path.join(d, "*.expected.tsv"))):
    name = os.path.basename(table)[:-len(".expected.tsv")]
    meta, rows = {}, []
    for line in open(table, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("# "):
            k, _, v = line[2:].partition(": ")
            meta[k] = v
        else:
            rows.append(line.split("\t"))
    header, rows = rows[0], rows[1:]
    opt = dict(kv.split("=") for kv in meta["options"].split())
    args = [rv, "--qrels", os.path.join(d, meta["qrels"]), "--per-query", "--digits", "12"]
    for m in meta["measures"].split():
        args += ["-m", m]
    if opt["level"] != "1":
        args += ["-l", opt["level"]]
    if opt["complete"] == "1":
        args.append("-c")
    if opt["identical"] == "1":
        args.append("--ignore-identical-ids")
    args.append(os.path.join(d, meta["run"]))
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAIL ref/eval.{name}: rv-eval exited {p.returncode}: {p.stderr.strip()}")
        continue
    got = {}
    for line in p.stdout.splitlines():
        m, q, v = line.split("\t")
        got[(m, q)] = float(v)
    bad, n, worst = [], 0, 0.0
    for r in rows:
        for m, v in zip(header[1:], r[1:]):
            n += 1
            g = got.pop((m, r[0]), None)
            if g is None or abs(g - float(v)) > 1e-6:
                bad.append(f"{m} {r[0]}: rv-eval {g}, pytrec_eval {v}")
            else:
                worst = max(worst, abs(g - float(v)))
    if bad or got:
        print(f"FAIL ref/eval.{name}: {len(bad)} of {n} values differ, {len(got)} extra")
        for b in bad[:5]:
            print("  " + b)
    else:
        print(f"PASS ref/eval.{name} ({len(rows) - 1} queries, {n} values, largest difference {worst:.2g})")
EOF
