#!/usr/bin/env python3
"""make-eval-fixtures.py — reference values for rv-eval from pytrec_eval.

pytrec_eval runs trec_eval 9.x's own measure code, so its per-query values
are the independent reference rv-eval must reproduce (to 1e-6; in practice
bit for bit). Modes:

  fixtures [--out tests/fixtures/eval] [--collections /work/shared/collections]
           [--rv-cat bin/rv-cat]
      the committed fixtures: a generated case with every awkward input
      (ties, prefix ids, non-ASCII ids, repeated documents and judgments,
      graded and negative judgments, queries on one side only) and a BM25
      run (bm25s) over Cranfield, each with its expected tables. With --rv-cat
      the Cranfield run is stored as a run stream (the committed form),
      otherwise as a TREC run file.
  random --seed S --queries N --out DIR
      a fresh generated case for tests/ref/eval.sh (not committed).
  bench --lines L --queries N --out DIR
      a large run and qrels for bench/eval.sh (no expected tables).

An expected table (NAME.expected.tsv) holds '# key: value' lines (qrels, run,
options, measures), a header "qid<TAB>measure...", one row per evaluated
query in byte order of its id, and a last row "all" (trec_eval's summary:
the mean, or the sum for num_ret/num_rel/num_rel_ret, or the count for num_q,
computed here from pytrec_eval's per-query values).

How the reference is asked, where pytrec_eval differs from trec_eval:
  * a run listing a document twice is refused by trec_eval and by
    pytrec_eval.parse_run; rv-eval keeps the highest score, so the run dict
    handed to pytrec_eval keeps the highest score;
  * a repeated judgment is refused by trec_eval; rv-eval and a Python dict keep
    the last one;
  * an empty ranking (a query of a run stream with no documents, or all of
    whose documents --ignore-identical-ids drops, or a judged query missing
    from the run under --complete) is evaluated as trec_eval -c does: with the
    one unjudged placeholder document trec_eval uses, then num_ret set to 0.
    (pytrec_eval given an empty dict reports num_rel 0 there, an artefact of
    an allocation of 0 bytes failing inside trec_eval.)
"""
import argparse
import json
import os
import random
import subprocess
import sys

import pytrec_eval

MEASURES = [
    "ndcg_cut.1,3,5,10,100,1000", "ndcg", "map", "map_cut.1,5,10,100,1000",
    "recall.1,5,10,100,1000", "P.1,5,10,100,1000", "recip_rank", "Rprec",
    "num_q", "num_ret", "num_rel", "num_rel_ret",
]
COUNTS = {"num_q", "num_ret", "num_rel", "num_rel_ret"}
PLACEHOLDER = "ceci_nest_pas_un_docno"   # trec_eval's document for missing topics


def columns(measures):
    cols = []
    for m in measures:
        if "." in m:
            name, cuts = m.split(".", 1)
            cols += [f"{name}_{c}" for c in sorted(int(x) for x in cuts.split(","))]
        else:
            cols.append(m)
    return cols


def id_key(s):
    return s.encode("utf-8")


def evaluate(qrels, run, measures, level=1, complete=False, identical=False):
    """Per-query values {qid: {column: value}} as trec_eval reports them."""
    ev = pytrec_eval.RelevanceEvaluator(qrels, set(measures), relevance_level=level)
    ranked = {}
    for q, docs in run.items():
        if q not in qrels:
            continue
        ranked[q] = {d: s for d, s in docs.items() if not (identical and d == q)}
    if complete:
        for q in qrels:
            ranked.setdefault(q, {})
    empty = [q for q, docs in ranked.items() if not docs]
    for q in empty:
        ranked[q] = {PLACEHOLDER: 1.0}
    out = ev.evaluate(ranked)
    for q in empty:
        if "num_ret" in out[q]:
            out[q]["num_ret"] = 0.0
    return out


def write_expected(path, per_query, measures, header):
    cols = columns(measures)
    qids = sorted(per_query, key=id_key)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# rv-eval reference values from pytrec_eval %s (scripts/make-eval-fixtures.py)\n"
                % pytrec_eval.__version__)
        for k, v in header.items():
            f.write(f"# {k}: {v}\n")
        f.write("# measures: %s\n" % " ".join(measures))
        f.write("qid\t" + "\t".join(cols) + "\n")
        for q in qids:
            f.write(q + "\t" + "\t".join(num(per_query[q][c]) for c in cols) + "\n")
        summary = []
        for c in cols:
            vals = [per_query[q][c] for q in qids]
            if c == "num_q":
                summary.append(float(len(qids)))
            elif c in COUNTS:
                summary.append(float(sum(vals)))
            else:
                summary.append(sum(vals) / len(vals))
        f.write("all\t" + "\t".join(num(v) for v in summary) + "\n")


def num(v):
    return "%.12g" % v   # 12 significant digits: far inside the 1e-6 the checks need


# ------------------------------------------------------------ generated case

def score_text(rng, mode):
    if mode == "ties":
        return rng.choice(["1", "0.5", "0.25", "2", "-1"])
    if mode == "int":
        return str(rng.randint(-50, 50))
    if mode == "exp":
        return repr(rng.random() * 10 ** rng.randint(-12, 12))
    if mode == "odd":   # spellings float() and strtod both read
        return rng.choice(["+3", "1E2", "-0", ".5", "5.", "3.0e-1", "1e+01", "0.1000000000000000055511151231257827"])
    if mode == "fixed":
        return "%.4f" % (rng.random() * 30)
    return repr(rng.uniform(-5, 40))


def make_ids(rng, n, prefix):
    ids = set()
    styles = [lambda i: f"{prefix}{i}", lambda i: str(i), lambda i: f"{prefix.upper()}-{i}",
              lambda i: f"{prefix}é{i}", lambda i: f"{prefix}{i}_x", lambda i: f"{prefix}{i}0"]
    while len(ids) < n:
        ids.add(rng.choice(styles)(rng.randint(0, 3 * n)))
    return sorted(ids)


def generate(rng, n_queries, max_docs=120, long_queries=1, extra_run_queries=None):
    """Returns (qrels dict, qrels lines [(q, d, rel)], run dict with repeats
    merged by max, run lines [(q, d, score_text)])."""
    qids = make_ids(rng, n_queries, "q")
    rng.shuffle(qids)
    pool = make_ids(rng, max(400, n_queries * 6), "d")
    qrels, qlines = {}, []
    n_judged = int(n_queries * 0.85)
    judged_qids = qids[:n_judged]
    rel_values = [-2, -1, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4]
    for k, q in enumerate(judged_qids):
        docs = rng.sample(pool, rng.randint(1, 30))
        if k == 0:
            rels = [0] * len(docs)                     # judged, nothing relevant
        elif k == 1:
            rels = [rng.choice([-1, -2]) for _ in docs]   # only "unjudged in pool"
        else:
            rels = [rng.choice(rel_values) for _ in docs]
        qrels[q] = {}
        for d, r in zip(docs, rels):
            qrels[q][d] = r
            qlines.append((q, d, r))
    # repeated judgments: the last one counts
    for _ in range(max(2, n_queries // 20)):
        q, d, _r = rng.choice(qlines)
        r = rng.choice(rel_values)
        qrels[q][d] = r
        qlines.append((q, d, r))

    # trec_eval sizes an array by a query's largest judgment + 1 and crashes
    # (memset of a negative size) when that is below 0, so pytrec_eval cannot
    # be asked about a query judged only -2 or less: make one judgment -1.
    # (rv-eval evaluates such a query as one without relevant documents.)
    for q in qrels:
        if max(qrels[q].values()) < -1:
            d = next(iter(qrels[q]))
            qrels[q][d] = -1
            qlines.append((q, d, -1))

    run, rlines = {}, []
    in_run = [q for q in judged_qids if rng.random() < 0.9] + qids[n_judged:]
    if extra_run_queries:
        in_run += extra_run_queries
    for k, q in enumerate(in_run):
        n = rng.randint(1, max_docs) if k >= long_queries else rng.randint(1001, 1200)
        judged = list(qrels.get(q, {}))
        docs = []
        for _ in range(n):
            if judged and rng.random() < 0.3:
                docs.append(rng.choice(judged))
            else:
                docs.append(rng.choice(pool))
        if rng.random() < 0.15:
            docs.append(q)                                 # for --ignore-identical-ids
        mode = rng.choice(["ties", "float", "int", "exp", "fixed", "odd", "ties"])
        run[q] = {}
        for d in docs:   # sampling with replacement: repeats happen
            s = score_text(rng, mode)
            v = float(s)
            run[q][d] = max(run[q].get(d, v), v)
            rlines.append((q, d, s))
    # some queries' lines are not together in the file
    tail = [rlines.pop(rng.randrange(len(rlines))) for _ in range(len(rlines) // 10)]
    rlines += tail
    return qrels, qlines, run, rlines


def write_trec_qrels(path, qlines):
    with open(path, "w", encoding="utf-8") as f:
        for q, d, r in qlines:
            f.write(f"{q} 0 {d} {r}\n")


def write_beir_qrels(path, qlines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, r in qlines:
            f.write(f"{q}\t{d}\t{r}\n")


def write_trec_run(path, rlines, tag="gen"):
    with open(path, "w", encoding="utf-8") as f:
        rank = {}
        for q, d, s in rlines:
            rank[q] = rank.get(q, 0) + 1
            f.write(f"{q} Q0 {d} {rank[q]} {s} {tag}\n")


def generated_set(out, rng, n_queries, prefix="gen"):
    qrels, qlines, run, rlines = generate(rng, n_queries)
    write_trec_qrels(os.path.join(out, prefix + ".qrels"), qlines)
    write_beir_qrels(os.path.join(out, prefix + "-beir.tsv"), qlines)
    write_trec_run(os.path.join(out, prefix + ".run"), rlines)
    configs = [
        (prefix, prefix + ".qrels", {}),
        (prefix + "-complete", prefix + ".qrels", {"complete": True}),
        (prefix + "-level2", prefix + "-beir.tsv", {"level": 2}),
        (prefix + "-identical", prefix + "-beir.tsv", {"identical": True}),
    ]
    for name, qrels_file, opt in configs:
        per_query = evaluate(qrels, run, MEASURES, **opt)
        write_expected(os.path.join(out, name + ".expected.tsv"), per_query, MEASURES,
                       {"qrels": qrels_file, "run": prefix + ".run", "options": options_text(opt)})


def options_text(opt):
    return "level=%d complete=%d identical=%d" % (opt.get("level", 1), int(opt.get("complete", False)),
                                                  int(opt.get("identical", False)))


# ------------------------------------------------------------------ cranfield

def cranfield_set(out, collections, rv_cat=None):
    import bm25s
    import Stemmer

    base = os.path.join(collections, "cranfield")
    corpus = [json.loads(l) for l in open(os.path.join(base, "corpus.jsonl"), encoding="utf-8")]
    queries = [json.loads(l) for l in open(os.path.join(base, "queries.jsonl"), encoding="utf-8")]
    stemmer = Stemmer.Stemmer("english")
    texts = [(d.get("title", "") + " " + d.get("text", "")).strip() for d in corpus]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    qtok = bm25s.tokenize([q["text"] for q in queries], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(qtok, k=100, show_progress=False)
    run, rlines = {}, []
    for qi, q in enumerate(queries):
        run[q["_id"]] = {}
        for di, s in zip(docs[qi], scores[qi]):
            text = "%.4f" % float(s)      # 4 decimals, as many TREC runs print: ties happen
            d = corpus[int(di)]["_id"]
            run[q["_id"]][d] = float(text)
            rlines.append((q["_id"], d, text))
    qlines = []
    with open(os.path.join(base, "qrels", "test.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, r = line.rstrip("\n").split("\t")
            qlines.append((q, d, int(r)))
    qrels = {}
    for q, d, r in qlines:
        qrels.setdefault(q, {})[d] = r
    write_beir_qrels(os.path.join(out, "cranfield.qrels.tsv"), qlines)
    run_file = "cranfield-bm25.run"
    write_trec_run(os.path.join(out, run_file), rlines, tag="bm25s")
    if rv_cat:
        # committed as a run stream: a quarter of the text's size, and it
        # exercises rv-eval's stream input on real data
        run_file = "cranfield-bm25.rvs"
        jsonl = os.path.join(out, "cranfield-bm25.jsonl")
        with open(jsonl, "w", encoding="utf-8") as f:
            for q in run:
                hits = [{"docid": d, "score": s} for d, s in run[q].items()]
                f.write(json.dumps({"qid": q, "hits": hits}) + "\n")
        subprocess.run([rv_cat, "--encode", "run", "--level", "19", "-o", os.path.join(out, run_file), jsonl],
                       check=True)
        os.remove(jsonl)
        os.remove(os.path.join(out, "cranfield-bm25.run"))
    for name, opt in [("cranfield", {}), ("cranfield-identical", {"identical": True, "complete": True})]:
        per_query = evaluate(qrels, run, MEASURES, **opt)
        write_expected(os.path.join(out, name + ".expected.tsv"), per_query, MEASURES,
                       {"qrels": "cranfield.qrels.tsv", "run": run_file,
                        "options": options_text(opt)})


# ---------------------------------------------------------------------- bench

def bench_set(out, n_lines, n_queries, seed):
    """A run shaped like a real one: each query's documents listed together,
    scores descending (6 decimals, so a few ties), 20 of each query's 30
    judged documents retrieved."""
    rng = random.Random(seed)
    per_query = n_lines // n_queries
    with open(os.path.join(out, "bench.run"), "w") as run, open(os.path.join(out, "bench.qrels"), "w") as qrels:
        for qn in range(n_queries):
            q = f"q{qn}"
            docs = rng.sample(range(2_000_000), per_query + 10)
            judged = rng.sample(docs[:per_query], 20) + docs[per_query:]
            for d in judged:
                qrels.write(f"{q} 0 doc{d} {rng.choice((0, 1, 1, 2, 3))}\n")
            scores = sorted((rng.uniform(0, 30) for _ in range(per_query)), reverse=True)
            for rank, (d, s) in enumerate(zip(docs, scores), 1):
                run.write(f"{q} Q0 doc{d} {rank} {s:.6f} bench\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["fixtures", "random", "bench"])
    ap.add_argument("--out", default="tests/fixtures/eval")
    ap.add_argument("--collections", default="/work/shared/collections")
    ap.add_argument("--seed", type=int, default=20240607)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rv-cat", default=None,
                    help="fixtures: store the Cranfield run as a run stream made by this rv-cat")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.mode == "fixtures":
        generated_set(a.out, random.Random(a.seed), a.queries)
        cranfield_set(a.out, a.collections, a.rv_cat)
    elif a.mode == "random":
        generated_set(a.out, random.Random(a.seed), a.queries, prefix="random")
    else:
        bench_set(a.out, a.lines, a.queries, a.seed)


if __name__ == "__main__":
    sys.exit(main())
