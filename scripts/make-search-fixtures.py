#!/usr/bin/env python3
"""make-search-fixtures.py — reference rankings for rv-search from NumPy
brute force (and faiss IndexFlatIP in `compare`).

The reference ranks by score descending, then corpus row ascending (np.lexsort
on (row, -score)); MaxP scores a document by the best of its chunks and ranks
documents by that score, then by the first row reaching it. Scores are
computed in float64 from the stored (float32/float16/bfloat16) values;
rv-search's scores are their float32 rounding.

Modes:
  fixtures [--out tests/fixtures/search]
      the committed fixtures:
      int_*    integer-valued vectors in -2..2 (dim 16), planted duplicate rows
               and an all-zero query: every score is an exact small integer in
               any summation order, so rankings (ties included) must match
               exactly. Stored as emb JSONL, '<f4', '<f2' and '<f8' .npy and id
               lists; expected TREC runs for k = 1, 10, 1000 (> corpus) and a
               run-stream dump (rv-cat JSON) for k = 3.
      maxp_*   chunk ids "DOC#N" (some documents' chunks not contiguous, ids
               with '#' inside the document id, ids without '#'), integer
               vectors in -1..1: expected MaxP runs for k = 5 and 1000.
      rand_*   random unit vectors (float32 and float16 .npy) with planted
               duplicates: expected top-50 rows with float64 scores; the C unit
               test requires rv-search's scores to equal their float32
               rounding and its ranking to be theirs re-sorted by those values.
      npy_*    small .npy files of every accepted version and of rejected
               kinds, for the .npy reader's unit test.
  random --seed S --out DIR [--corpus N --queries M --dim D --dtype T]
      a fresh random case for tests/ref/search.sh: corpus.jsonl, queries.jsonl
      (and .npy + .ids), float vectors with planted duplicates and a block of
      integer-valued rows.
  compare --case DIR --run RUN.trec --k K [--doc-agg max] [--dtype T] [--faiss]
      checks an rv-search run against the reference for a `random` case: ids
      must match wherever the reference's score gap exceeds 1e-5, exactly-tied
      rows (duplicates, integer rows) must be in corpus order, scores must
      agree to 1e-5 and be the float32 rounding of the float64 ones (a rare
      1-ulp double rounding allowed); with --faiss, faiss's ids must match
      ours wherever the gaps are clear. Prints PASS/FAIL lines.
  bench-data --out DIR [--corpus 100000 --queries 1000 --dim 768]
      the bench/search.sh inputs (.npy + .ids), unit vectors, seed 2024.
"""
import argparse
import json
import os
import sys

import numpy as np

TAG = "rv-search"
SCORE_TOL = 1e-5


# --------------------------------------------------------------- reference

def bf16_round(x):
    """float32 -> nearest-even bfloat16, returned as float32 (as lib/half.h)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def stored(x, dtype):
    """The values rv-search sees after storing x in dtype."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return bf16_round(x)
    return x


def scores64(q, c):
    return np.asarray(q, np.float64) @ np.asarray(c, np.float64).T


def rank_rows(s_row, k):
    order = np.lexsort((np.arange(len(s_row)), -s_row))
    return order[:k]


def doc_of(cid, sep):
    i = cid.rfind(sep)
    return cid[:i] if i >= 0 else cid


def rank_docs(s_row, groups, k):
    """groups: group index per row (first-appearance order). Returns
    [(group, best score, best row)] best first."""
    best = {}
    for row, g in enumerate(groups):
        s = s_row[row]
        if g not in best or s > best[g][0]:
            best[g] = (s, row)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
    return [(g, s, r) for g, (s, r) in ranked[:k]]


def group_rows(ids, sep):
    index, names, groups = {}, [], []
    for cid in ids:
        d = doc_of(cid, sep)
        if d not in index:
            index[d] = len(names)
            names.append(d)
        groups.append(index[d])
    return groups, names


def fmt_score(s):
    return "%.9g" % float(np.float32(s))


def trec_lines(qids, cids, S, k):
    out = []
    for qi, qid in enumerate(qids):
        for r, j in enumerate(rank_rows(S[qi], k)):
            out.append("%s Q0 %s %d %s %s\n" % (qid, cids[j], r + 1, fmt_score(S[qi, j]), TAG))
    return "".join(out)


def trec_lines_maxp(qids, cids, S, k, sep="#"):
    groups, names = group_rows(cids, sep)
    out = []
    for qi, qid in enumerate(qids):
        for r, (g, s, _) in enumerate(rank_docs(S[qi], groups, k)):
            out.append("%s Q0 %s %d %s %s\n" % (qid, names[g], r + 1, fmt_score(s), TAG))
    return "".join(out)


def stream_json_lines(qids, cids, S, k):
    """rv-cat's JSON view of a run stream (scores as %.17g of the float32)."""
    out = []
    for qi, qid in enumerate(qids):
        hits = ",".join('{"docid":%s,"score":%s}' % (json.dumps(cids[j]), "%.17g" % float(np.float32(S[qi, j])))
                        for j in rank_rows(S[qi], k))
        out.append('{"qid":%s,"hits":[%s]}\n' % (json.dumps(qid), hits))
    return "".join(out)


# ------------------------------------------------------------------ writers

def write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_emb_jsonl(path, ids, vecs):
    with open(path, "w", encoding="utf-8") as f:
        for i, v in zip(ids, vecs):
            # repr of a float32 widened to float64 reads back to the same float32
            f.write(json.dumps({"id": i, "vector": [float(x) for x in np.asarray(v, np.float32)]}) + "\n")


def write_ids(path, ids):
    write_text(path, "".join(i + "\n" for i in ids))


# ----------------------------------------------------------------- fixtures

def make_int_case(out):
    rng = np.random.default_rng(20240601)
    nc, nq, dim = 200, 8, 16
    C = rng.integers(-2, 3, size=(nc, dim)).astype(np.float32)
    # planted exact duplicates: later rows copy earlier ones
    for dst, src in zip(range(150, 170), rng.choice(150, 20, replace=False)):
        C[dst] = C[src]
    Q = rng.integers(-2, 3, size=(nq, dim)).astype(np.float32)
    Q[3] = 0.0                      # every score 0: the ranking is corpus order
    Q[5] = C[7]                     # a query equal to a corpus row
    cids = ["c%03d" % i for i in range(nc)]
    qids = ["q%d" % (i + 1) for i in range(nq)]
    write_emb_jsonl(os.path.join(out, "int_corpus.jsonl"), cids, C)
    write_emb_jsonl(os.path.join(out, "int_queries.jsonl"), qids, Q)
    np.save(os.path.join(out, "int_corpus.npy"), C)
    np.save(os.path.join(out, "int_corpus_f2.npy"), C.astype(np.float16))
    np.save(os.path.join(out, "int_corpus_f8.npy"), C.astype(np.float64))
    np.save(os.path.join(out, "int_queries.npy"), Q)
    write_ids(os.path.join(out, "int_corpus.ids"), cids)
    write_ids(os.path.join(out, "int_queries.ids"), qids)
    S = scores64(Q, C)
    assert np.all(S == np.round(S))
    for k in (1, 10, 1000):
        write_text(os.path.join(out, "int_k%d.trec" % k), trec_lines(qids, cids, S, k))
    write_text(os.path.join(out, "int_k3.stream.jsonl"), stream_json_lines(qids, cids, S, 3))
    # the npy default ids are row numbers
    rows = [str(i) for i in range(nc)]
    qrows = [str(i) for i in range(nq)]
    write_text(os.path.join(out, "int_k10_rowids.trec"), trec_lines(qrows, rows, S, 10))


def make_maxp_case(out):
    rng = np.random.default_rng(20240602)
    ids = []
    for d in range(40):
        for c in range(int(rng.integers(1, 5))):
            ids.append("D%02d#%d" % (d, c))
    ids += ["x#y#0", "x#y#1", "solo1", "solo2", "x#y"]   # "x#y" alone is document "x"
    order = np.arange(len(ids))
    # move a quarter of the chunks elsewhere so that some documents are not contiguous
    moved = rng.choice(len(ids), len(ids) // 4, replace=False)
    rest = [i for i in order if i not in set(moved)]
    for m in moved:
        rest.insert(int(rng.integers(0, len(rest) + 1)), m)
    ids = [ids[i] for i in rest]
    nc, nq, dim = len(ids), 6, 8
    C = rng.integers(-1, 2, size=(nc, dim)).astype(np.float32)
    Q = rng.integers(-1, 2, size=(nq, dim)).astype(np.float32)
    Q[2] = 0.0
    qids = ["m%d" % (i + 1) for i in range(nq)]
    write_emb_jsonl(os.path.join(out, "maxp_corpus.jsonl"), ids, C)
    write_emb_jsonl(os.path.join(out, "maxp_queries.jsonl"), qids, Q)
    S = scores64(Q, C)
    for k in (5, 1000):
        write_text(os.path.join(out, "maxp_k%d.trec" % k), trec_lines_maxp(qids, ids, S, k))


def make_rand_case(out):
    rng = np.random.default_rng(20240603)
    nc, nq, dim, k = 400, 16, 24, 50
    C = rng.standard_normal((nc, dim)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    C[390:400] = C[10:20]           # duplicates: exact ties
    Q = rng.standard_normal((nq, dim)).astype(np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    Q[4] = C[15]                    # a query whose best hits are a tied pair
    np.save(os.path.join(out, "rand_corpus.npy"), C)
    np.save(os.path.join(out, "rand_corpus_f2.npy"), C.astype(np.float16))
    np.save(os.path.join(out, "rand_queries.npy"), Q)
    for name, dtype in (("rand_expected.txt", "f32"), ("rand_expected_f2.txt", "f16")):
        S = scores64(Q, stored(C, dtype))
        lines = ["# query rank row score (float64 reference; ties by row), k=%d\n" % k]
        for qi in range(nq):
            for r, j in enumerate(rank_rows(S[qi], k)):
                lines.append("%d %d %d %.17g\n" % (qi, r, j, S[qi, j]))
        write_text(os.path.join(out, name), "".join(lines))


def make_npy_cases(out):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 4
    np.lib.format.write_array(open(os.path.join(out, "npy_v1_f4.npy"), "wb"), a, version=(1, 0))
    np.lib.format.write_array(open(os.path.join(out, "npy_v2_f4.npy"), "wb"), a, version=(2, 0))
    np.lib.format.write_array(open(os.path.join(out, "npy_v3_f2.npy"), "wb"), a.astype(np.float16), version=(3, 0))
    np.save(os.path.join(out, "npy_f8.npy"), a.astype(np.float64) + 1e-12)   # narrowed to float32 on read
    np.save(os.path.join(out, "npy_empty.npy"), np.zeros((0, 4), np.float32))
    np.save(os.path.join(out, "npy_bad_fortran.npy"), np.asfortranarray(a))
    np.save(os.path.join(out, "npy_bad_bigendian.npy"), a.astype(">f4"))
    np.save(os.path.join(out, "npy_bad_int.npy"), np.arange(12, dtype=np.int32).reshape(3, 4))
    np.save(os.path.join(out, "npy_bad_1d.npy"), np.arange(4, dtype=np.float32))
    np.save(os.path.join(out, "npy_bad_3d.npy"), np.zeros((2, 2, 2), np.float32))


def cmd_fixtures(args):
    os.makedirs(args.out, exist_ok=True)
    make_int_case(args.out)
    make_maxp_case(args.out)
    make_rand_case(args.out)
    make_npy_cases(args.out)


# ------------------------------------------------------------ random (ref)

def cmd_random(args):
    rng = np.random.default_rng(args.seed)
    nc, nq, dim = args.corpus, args.queries, args.dim
    C = rng.standard_normal((nc, dim)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    Q = rng.standard_normal((nq, dim)).astype(np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    # planted ties: duplicated rows, and a block of small-integer rows (and
    # integer queries) whose scores are exact in any summation order
    n_dup = max(1, nc // 20)
    src = rng.choice(nc // 2, n_dup, replace=False)
    dst = rng.choice(np.arange(nc // 2, nc), n_dup, replace=False)
    C[dst] = C[src]
    n_int = max(1, nc // 10)
    int_rows = rng.choice(nc, n_int, replace=False)
    C[int_rows] = rng.integers(-1, 2, size=(n_int, dim)) / 8.0
    int_q = rng.choice(nq, max(1, nq // 4), replace=False)
    Q[int_q] = rng.integers(-1, 2, size=(len(int_q), dim)) / 8.0
    Q[0] = C[src[0]]                # a query whose top hits are a tied pair
    # chunk ids: "d<doc>#<chunk>" with 1-4 chunks per document, shuffled a little
    cids, d = [], 0
    while len(cids) < nc:
        for c in range(int(rng.integers(1, 5))):
            cids.append("d%d#%d" % (d, c))
        d += 1
    cids = cids[:nc]
    swap = rng.choice(nc, (nc // 10, 2))
    for a, b in swap:
        cids[a], cids[b] = cids[b], cids[a]
    qids = ["q%d" % i for i in range(nq)]
    os.makedirs(args.out, exist_ok=True)
    C = stored(C, args.dtype)
    Q = stored(Q, args.dtype)
    write_emb_jsonl(os.path.join(args.out, "corpus.jsonl"), cids, C)
    write_emb_jsonl(os.path.join(args.out, "queries.jsonl"), qids, Q)
    np.save(os.path.join(args.out, "corpus.npy"), C)
    np.save(os.path.join(args.out, "queries.npy"), Q)
    write_ids(os.path.join(args.out, "corpus.ids"), cids)
    write_ids(os.path.join(args.out, "queries.ids"), qids)
    # rows whose scores are exact against integer queries
    exact = np.zeros(nc, bool)
    exact[int_rows] = True
    np.save(os.path.join(args.out, "exact_rows.npy"), exact)
    np.save(os.path.join(args.out, "exact_queries.npy"), np.isin(np.arange(nq), int_q))


def read_trec(path):
    runs = {}
    with open(path) as f:
        for line in f:
            qid, q0, docid, rank, score, tag = line.split()
            assert q0 == "Q0" and tag
            runs.setdefault(qid, []).append((docid, int(rank), float(score)))
    return runs


class Checker:
    def __init__(self, label):
        self.label = label
        self.failures = 0

    def check(self, name, ok, detail=""):
        print("%s %s/%s%s" % ("PASS" if ok else "FAIL", self.label, name, "" if ok else "\n  " + detail))
        self.failures += not ok


def compare_ranking(ours, ref_ids, ref_scores, score_of, tol):
    """ours: [(id, score)], ref: ids and scores best first (ref_scores may hold
    one more: the best score left out, for the gap after the last rank).
    Returns a list of problems (empty when consistent)."""
    probs = []
    if len(ours) != len(ref_ids):
        return ["%d hits, expected %d" % (len(ours), len(ref_ids))]
    for r, (oid, oscore) in enumerate(ours):
        true = score_of(oid)
        if true is None:
            probs.append("rank %d: unknown id %s" % (r + 1, oid))
            continue
        if abs(oscore - true) > tol:
            probs.append("rank %d: %s score %.9g, reference %.9g" % (r + 1, oid, oscore, true))
        gap_before = ref_scores[r - 1] - ref_scores[r] if r > 0 else np.inf
        gap_after = ref_scores[r] - ref_scores[r + 1] if r + 1 < len(ref_scores) else np.inf
        if min(gap_before, gap_after) > tol and oid != ref_ids[r]:
            probs.append("rank %d: %s, reference %s (gap %.3g)" % (r + 1, oid, ref_ids[r], min(gap_before, gap_after)))
        if abs(true - ref_scores[r]) > tol:
            probs.append("rank %d: %s scores %.9g in the reference, rank %d there scores %.9g" %
                         (r + 1, oid, true, r + 1, ref_scores[r]))
    return probs


def cmd_compare(args):
    case = args.case
    C = np.load(os.path.join(case, "corpus.npy"))
    Q = np.load(os.path.join(case, "queries.npy"))
    cids = open(os.path.join(case, "corpus.ids")).read().split("\n")[:-1]
    qids = open(os.path.join(case, "queries.ids")).read().split("\n")[:-1]
    exact_rows = np.load(os.path.join(case, "exact_rows.npy"))
    exact_q = np.load(os.path.join(case, "exact_queries.npy"))
    S = scores64(Q, C)
    k = args.k
    run = read_trec(args.run)
    chk = Checker(args.label)
    row_of = {c: i for i, c in enumerate(cids)}
    probs, exact_probs, max_err = [], [], 0.0
    ours_all, ref_all = [], []   # our scores and the float64 ones they claim to round
    if args.doc_agg == "max":
        groups, names = group_rows(cids, "#")
        gi = {n: i for i, n in enumerate(names)}
        for qi, qid in enumerate(qids):
            ref = rank_docs(S[qi], groups, k)
            ref_next = rank_docs(S[qi], groups, k + 1)
            best = {}
            for row, g in enumerate(groups):
                best[g] = max(best.get(g, -np.inf), S[qi, row])
            ours = [(d, s) for d, _, s in run.get(qid, [])]
            p = compare_ranking(ours, [names[g] for g, _, _ in ref], [s for _, s, _ in ref_next],
                                lambda d: best.get(gi[d]) if d in gi else None, SCORE_TOL)
            probs += ["%s: %s" % (qid, x) for x in p]
            for d, s in ours:
                if d in gi:
                    max_err = max(max_err, abs(s - best[gi[d]]))
                    ours_all.append(s)
                    ref_all.append(best[gi[d]])
    else:
        for qi, qid in enumerate(qids):
            ref = rank_rows(S[qi], k)
            ref_next = rank_rows(S[qi], k + 1)
            ours = [(d, s) for d, _, s in run.get(qid, [])]
            p = compare_ranking(ours, [cids[j] for j in ref], S[qi, ref_next],
                                lambda d: S[qi, row_of[d]] if d in row_of else None, SCORE_TOL)
            probs += ["%s: %s" % (qid, x) for x in p]
            for d, s in ours:
                if d in row_of:
                    max_err = max(max_err, abs(s - S[qi, row_of[d]]))
                    ours_all.append(s)
                    ref_all.append(S[qi, row_of[d]])
            # exact ties: for an integer query, the integer rows have exact
            # scores; among our hits, those rows must be in exact order
            if exact_q[qi]:
                ex = [(S[qi, row_of[d]], row_of[d]) for d, _ in ours if exact_rows[row_of[d]]]
                if ex != sorted(ex, key=lambda t: (-t[0], t[1])):
                    exact_probs.append("%s: integer rows out of (score, row) order" % qid)
            # duplicated rows: among hits with identical vectors, row order
            for a in range(len(ours) - 1):
                ra, rb = row_of.get(ours[a][0]), row_of.get(ours[a + 1][0])
                if ra is not None and rb is not None and np.array_equal(C[ra], C[rb]) and ra > rb:
                    exact_probs.append("%s: duplicate rows %d, %d out of order" % (qid, ra, rb))
    chk.check("ranking", not probs, "\n  ".join(probs[:10]))
    chk.check("exact_ties", not exact_probs, "\n  ".join(exact_probs[:10]))
    chk.check("score_error", max_err <= SCORE_TOL, "max |ours - float64| = %.3g" % max_err)
    # rv-search's scores are the float32 rounding of the exact inner product:
    # equal to float32(float64 reference) up to a rare 1-ulp double rounding
    o = np.array(ours_all, np.float32)
    r32 = np.array(ref_all, np.float64).astype(np.float32)
    ulps = np.abs(o.view(np.int32).astype(np.int64) - r32.view(np.int32).astype(np.int64)) if len(o) else np.zeros(0)
    n_off = int(np.count_nonzero(ulps))
    chk.check("score_f32_rounding", len(o) == 0 or (ulps.max() <= 1 and n_off <= max(1, len(o) // 100000)),
              "%d of %d scores differ from float32(float64 reference), up to %d ulp" %
              (n_off, len(o), int(ulps.max()) if len(o) else 0))
    print("  (%s: max score error %.3g over %d queries)" % (args.label, max_err, len(qids)), file=sys.stderr)
    if args.faiss and args.doc_agg != "max":
        import faiss
        index = faiss.IndexFlatIP(C.shape[1])
        index.add(np.ascontiguousarray(C, np.float32))
        D, I = index.search(np.ascontiguousarray(Q, np.float32), min(k, len(cids)))
        fprobs = []
        for qi, qid in enumerate(qids):
            ours = [d for d, _, _ in run.get(qid, [])]
            theirs = [cids[j] for j in I[qi] if j >= 0]
            # faiss lists equal scores by descending id and rounds in float32:
            # compare where the float64 reference's gaps (to the next row left
            # out too) are clear
            ref_scores = S[qi, rank_rows(S[qi], k + 1)]
            for r in range(min(len(ours), len(theirs))):
                gb = ref_scores[r - 1] - ref_scores[r] if r > 0 else np.inf
                ga = ref_scores[r] - ref_scores[r + 1] if r + 1 < len(ref_scores) else np.inf
                if min(gb, ga) > SCORE_TOL and ours[r] != theirs[r]:
                    fprobs.append("%s rank %d: ours %s, faiss %s" % (qid, r + 1, ours[r], theirs[r]))
            if len(ours) != len(theirs):
                fprobs.append("%s: %d hits, faiss %d" % (qid, len(ours), len(theirs)))
        chk.check("faiss", not fprobs, "\n  ".join(fprobs[:10]))
    return 1 if chk.failures else 0


# --------------------------------------------------------------- bench data

def cmd_bench_data(args):
    rng = np.random.default_rng(2024)
    os.makedirs(args.out, exist_ok=True)
    for name, n in (("corpus", args.corpus), ("queries", args.queries)):
        X = rng.standard_normal((n, args.dim), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        np.save(os.path.join(args.out, name + ".npy"), X)
        write_ids(os.path.join(args.out, name + ".ids"), ["%s%d" % (name[0], i) for i in range(n)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("--out", default="tests/fixtures/search")
    r = sub.add_parser("random")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--corpus", type=int, default=3000)
    r.add_argument("--queries", type=int, default=64)
    r.add_argument("--dim", type=int, default=96)
    r.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    c = sub.add_parser("compare")
    c.add_argument("--case", required=True)
    c.add_argument("--run", required=True)
    c.add_argument("--k", type=int, required=True)
    c.add_argument("--doc-agg", choices=["none", "max"], default="none")
    c.add_argument("--faiss", action="store_true")
    c.add_argument("--label", default="search")
    b = sub.add_parser("bench-data")
    b.add_argument("--out", required=True)
    b.add_argument("--corpus", type=int, default=100000)
    b.add_argument("--queries", type=int, default=1000)
    b.add_argument("--dim", type=int, default=768)
    args = ap.parse_args()
    if args.mode == "fixtures":
        cmd_fixtures(args)
    elif args.mode == "random":
        cmd_random(args)
    elif args.mode == "compare":
        sys.exit(cmd_compare(args))
    else:
        cmd_bench_data(args)


if __name__ == "__main__":
    main()
