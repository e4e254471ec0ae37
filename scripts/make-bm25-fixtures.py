#!/usr/bin/env python3
"""make-bm25-fixtures.py — reference results from bm25s for the BM25 engine
(lib/analyzer.c, lib/bm25*.c) and its tests.

bm25s 0.3 (numpy backend, float32) with PyStemmer's English Snowball stemmer
is the reference. PyStemmer must bundle the same Snowball release as the
system libstemmer the C code links (2.2.0 on Debian 12: PyStemmer 2.2.0.x);
PyStemmer 3.x ships Snowball 3, whose English stemmer differs on some words
("added", "international", "-ologist"), and is refused.

  make-bm25-fixtures.py fixtures [--collections DIR] [--out DIR] [--rv-cat BIN]
      writes the committed fixtures (tests/fixtures/bm25/):
        cranfield.rvs, medline.rvs     the two corpora as doc streams
        cranfield-queries.jsonl        their queries (BEIR queries.jsonl)
        medline-queries.jsonl
        adi-corpus.jsonl, adi-queries.jsonl   a tiny BEIR collection for CLI tests
        adi-chunks.jsonl               ADI in 12-word chunks with near-duplicates,
                                       chunk JSONL for the rv-bm25group CLI tests
        search-*.tsv                   top-10 of every query per configuration
        chunks-*.tsv                   top-10 of sampled chunks over all chunks
        tokens.jsonl                   analyzed tokens of tricky strings
        npsum.jsonl                    numpy float32 sums (bm25l/bm25+ constant)
  make-bm25-fixtures.py search --corpus C --queries Q --k K [config options]
      prints bm25s's run as TREC lines (for tests/ref/bm25.sh)
  make-bm25-fixtures.py chunks --collections DIR --out FILE
      writes the chunk set as chunk JSONL (for tests/ref/bm25.sh)

A fixture .tsv starts with "# key=value ..." lines (configuration, corpus,
queries) and has one line per hit: query, rank, document, score (%.9g, which
reads back as the same float32). Only documents sharing a term with the query
are listed (bm25s pads the top k with non-matching documents); "# next"
lines give, per query, the score of the hit after the last one listed
("none" when there is none), so a tie across the cut can be recognised.
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys

import numpy as np

try:
    import bm25s
    import Stemmer
except ImportError as e:  # pragma: no cover
    sys.exit(f"make-bm25-fixtures: {e} (run . tests/ref/venv.sh)")

CONFIGS = {
    # name: (method, k1, b, delta, stopwords, stemmer)
    "lucene": ("lucene", 1.5, 0.75, 0.5, "en", "english"),
    "robertson": ("robertson", 1.5, 0.75, 0.5, "en", "english"),
    "atire": ("atire", 1.5, 0.75, 0.5, "en", "english"),
    "bm25l": ("bm25l", 1.5, 0.75, 0.5, "en", "english"),
    "bm25plus": ("bm25+", 1.5, 0.75, 0.5, "en", "english"),
    "lucene-k1.2-b0.3-nostop-nostem": ("lucene", 1.2, 0.3, 0.5, "none", "none"),
    "bm25plus-k0.9-b0.4-d1": ("bm25+", 0.9, 0.4, 1.0, "en", "english"),
}
CHUNK_WORDS = 30
K = 10


def check_stemmer():
    st = Stemmer.Stemmer("english")
    got = st.stemWords(["added", "international", "biologists"])
    if got != ["ad", "intern", "biologist"]:
        sys.exit("make-bm25-fixtures: PyStemmer %s stems like Snowball 3 (%s); the C code links libstemmer "
                 "2.2: install PyStemmer==2.2.0.3" % (getattr(Stemmer, "version", lambda: "?")(), got))


def analyzer(stopwords, stemmer):
    sw = "en" if stopwords == "en" else None
    st = Stemmer.Stemmer("english") if stemmer == "english" else None
    return sw, st


def tokenize(texts, stopwords, stemmer):
    sw, st = analyzer(stopwords, stemmer)
    return bm25s.tokenize(texts, stopwords=sw, stemmer=st, show_progress=False, return_ids=False)


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def doc_text(d):
    return d.get("title", "") + " " + d["text"]


def retrieve(doc_tokens, query_tokens, cfg, k):
    """Top k+1 per query from bm25s, as (doc index, float32 score) lists with
    non-matching documents removed."""
    method, k1, b, delta, _, _ = cfg
    r = bm25s.BM25(method=method, k1=k1, b=b, delta=delta)
    r.index(doc_tokens, show_progress=False)
    kk = min(k + 1, len(doc_tokens))
    docs, scores = r.retrieve(query_tokens, k=kk, show_progress=False)
    doc_sets = [set(t) for t in doc_tokens]
    out = []
    for qi, q in enumerate(query_tokens):
        qs = set(q)
        hits = [(int(d), np.float32(s)) for d, s in zip(docs[qi], scores[qi]) if qs & doc_sets[int(d)]]
        out.append(hits)
    return out


def write_hits(path, header, qids, hits, ids):
    with open(path, "w", encoding="utf-8") as f:
        for key, val in header.items():
            f.write(f"# {key}={val}\n")
        for qid, h in zip(qids, hits):
            top, rest = h[:K], h[K:]
            f.write(f"# next {qid} {'%.9g' % rest[0][1] if rest else 'none'}\n")
            for rank, (d, s) in enumerate(top, 1):
                f.write(f"{qid}\t{rank}\t{ids[d]}\t{'%.9g' % s}\n")


def cfg_header(name):
    method, k1, b, delta, sw, st = CONFIGS[name]
    return {"variant": method, "k1": repr(k1), "b": repr(b), "delta": repr(delta), "stopwords": sw, "stemmer": st}


def make_chunks(collections):
    """Cranfield then Medline documents (title + " " + text) cut into windows
    of CHUNK_WORDS space-separated words; chunk ids are 0, 1, 2, ..."""
    chunks = []
    for coll in ("cranfield", "medline"):
        for d in load_jsonl(os.path.join(collections, coll, "corpus.jsonl")):
            text = doc_text(d)
            words = [w for w in text.split(" ") if w]
            if words != text.split():
                sys.exit(f"make-bm25-fixtures: {coll} {d['_id']}: text has non-space whitespace")
            for i in range(0, len(words), CHUNK_WORDS):
                chunks.append((f"{coll}:{d['_id']}", i // CHUNK_WORDS, " ".join(words[i:i + CHUNK_WORDS])))
    return chunks


TRICKY = [
    "", " ", "a", "I am a cat.", "The AND the and THE", "don't it's o'clock rock'n'roll",
    "running runs ran runner easily fairly generously", "co-operate e-mail state-of-the-art",
    "foo_bar __init__ snake_case CamelCase x_1", "3.14159 1,000,000 2024-06-01 v1.2.3 0x1F",
    "user@example.com https://example.org/a/b?c=d#e", "added adding international biologists",
    "Café naïve résumé CAFÉ NAÏVE", "ΟΔΟΣ ΟΔΟΣ. ΣΑ Σ ΑΣ' ΑΣΑ", "ΧΑΟΣ, ΚΟΣΜΟΣ! Σ.Α ΑΣ\u0301 Α\u00adΣ",
    "İstanbul İİ Iİ", "Straße STRASSE", "ﬁnance ﬂow ﬀ", "МОСКВА москва Ёлка", "日本語のテキスト 中文 한국어",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "x² H₂O ½ ¾ Ⅻ ⅷ ①②", "ＡＢＣ１２３ ｆｕｌｌ",
    "e\u0301clair cafe\u0301", "ǅemal ǈ ǋ", "ıi İı", "ª º ªº aª", "\U0001F130\U0001F131 \U0001F130Σ",
    "emoji 😀 test 👍🏽 ok", "tab\tnew\nline\rreturn", "zero\u200bwidth\u200djoiner", "ÀÉÎÕÜ àéîõü",
    "the quick brown fox jumps over the lazy dog", "THE QUICK BROWN FOX", "Ωmega ΩMEGA ωmega",
    "À la carte — “quoted” «guillemets» ‘single’", "naïveté coöperation", "1st 2nd 3rd 4th",
    "ǈubljana Ǉ ǉ", "ß ẞ", "Ⅰ Ⅱ Ⅲ ⅰⅱⅲ", "٣٤٥ ۱۲۳ १२३", "ΣΣ ΑΣΣ ΑΣ\u0345 Α\u0345Σ",
]


def random_strings(n, seed):
    rng = random.Random(seed)
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0x1E00, 0x1FFF), (0x2000, 0x218F), (0x2460, 0x24FF), (0x3040, 0x30FF), (0x4E00, 0x4E80),
              (0xFF00, 0xFFEF), (0x1D400, 0x1D4FF), (0x1F100, 0x1F1FF), (0x1F600, 0x1F64F)]
    import unicodedata
    out = []
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.5:
                parts.append(rng.choice(["the", "of", "Σ", " ", " ", ".", "'", "-", "ing", "ed", "s", "A", "İ"]))
            else:
                lo, hi = rng.choice(blocks)
                c = chr(rng.randint(lo, hi))
                if unicodedata.category(c) not in ("Cn", "Cs", "Co"):
                    parts.append(c)
        out.append("".join(parts))
    return out


def npsum_cases(seed):
    rng = np.random.default_rng(seed)
    cases = []
    for n in (1, 2, 5, 7, 8, 9, 15, 16, 17, 31, 64, 100, 127, 128, 129, 130, 255, 256, 257, 1000, 1031, 2049):
        v = (rng.lognormal(0, 2, n) * rng.choice([1e-3, 1.0, 1e3])).astype(np.float32)
        s = v.sum()
        cases.append({"bits": [int(x) for x in v.view(np.uint32)], "sum_bits": int(np.float32(s).view(np.uint32))})
    return cases


def write_adi_chunks(corpus, out_path):
    """ADI documents in 12-word windows; ids are word lengths (stand-ins for
    token ids); every 25th chunk is repeated in upper case with punctuation
    (a near-duplicate, in the same document)."""
    with open(out_path, "w", encoding="utf-8") as f:
        for d in load_jsonl(corpus):
            words = doc_text(d).split()
            idx = 0
            for i in range(0, len(words), 12):
                w = words[i:i + 12]
                rec = {"doc_id": "adi:" + d["_id"], "chunk": idx, "text": " ".join(w), "ids": [len(x) for x in w]}
                f.write(json.dumps(rec) + "\n")
                idx += 1
                if (i // 12) % 25 == 24 or (d["_id"] in ("3", "40") and i == 0):
                    rec = dict(rec, chunk=idx, text=" ".join(w).upper() + " !!")
                    f.write(json.dumps(rec) + "\n")
                    idx += 1


def encode_docs(rv_cat, jsonl_path, out_path):
    subprocess.run([rv_cat, "--encode", "doc", "--level", "19", "-o", out_path, jsonl_path], check=True)


def cmd_fixtures(a):
    check_stemmer()
    out = a.out
    os.makedirs(out, exist_ok=True)
    col = a.collections
    # corpora and queries
    for coll in ("cranfield", "medline"):
        encode_docs(a.rv_cat, os.path.join(col, coll, "corpus.jsonl"), os.path.join(out, f"{coll}.rvs"))
        shutil.copyfile(os.path.join(col, coll, "queries.jsonl"), os.path.join(out, f"{coll}-queries.jsonl"))
    shutil.copyfile(os.path.join(col, "adi", "corpus.jsonl"), os.path.join(out, "adi-corpus.jsonl"))
    shutil.copyfile(os.path.join(col, "adi", "queries.jsonl"), os.path.join(out, "adi-queries.jsonl"))

    write_adi_chunks(os.path.join(col, "adi", "corpus.jsonl"), os.path.join(out, "adi-chunks.jsonl"))

    # queries -> corpus, every configuration on Cranfield, the default on Medline and ADI
    runs = [("cranfield", name) for name in CONFIGS] + [("medline", "lucene"), ("adi", "lucene")]
    for coll, name in runs:
        cfg = CONFIGS[name]
        docs = load_jsonl(os.path.join(col, coll, "corpus.jsonl"))
        qs = load_jsonl(os.path.join(col, coll, "queries.jsonl"))
        dt = tokenize([doc_text(d) for d in docs], cfg[4], cfg[5])
        qt = tokenize([q["text"] for q in qs], cfg[4], cfg[5])
        hits = retrieve(dt, qt, cfg, K)
        header = cfg_header(name)
        header.update({"corpus": f"{coll}.rvs" if coll != "adi" else "adi-corpus.jsonl",
                       "queries": f"{coll}-queries.jsonl", "k": K})
        write_hits(os.path.join(out, f"search-{coll}-{name}.tsv"), header, [q["_id"] for q in qs], hits,
                   [d["_id"] for d in docs])

    # chunks -> chunks (documents as queries), sampled queries
    chunks = make_chunks(col)
    rng = random.Random(5)
    for name, nq in (("lucene", 300), ("robertson", 100), ("bm25plus", 100)):
        cfg = CONFIGS[name]
        ct = tokenize([c[2] for c in chunks], cfg[4], cfg[5])
        sample = sorted(rng.sample(range(len(chunks)), nq))
        hits = retrieve(ct, [ct[i] for i in sample], cfg, K)
        header = cfg_header(name)
        header.update({"chunks": f"cranfield+medline words/{CHUNK_WORDS}", "n_chunks": len(chunks), "k": K})
        write_hits(os.path.join(out, f"chunks-{name}.tsv"), header, [str(i) for i in sample], hits,
                   [str(i) for i in range(len(chunks))])

    # analysis of tricky and random strings
    strings = TRICKY + random_strings(150, 11)
    with open(os.path.join(out, "tokens.jsonl"), "w", encoding="utf-8") as f:
        toks = {cfg: tokenize(strings, *cfg) for cfg in (("en", "english"), ("none", "none"), ("en", "none"))}
        for i, s in enumerate(strings):
            rec = {"text": s}
            for (sw, st), t in toks.items():
                rec[f"{sw}_{st}"] = t[i]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    with open(os.path.join(out, "npsum.jsonl"), "w") as f:
        for c in npsum_cases(3):
            f.write(json.dumps(c) + "\n")
    print(f"make-bm25-fixtures: wrote {out} ({len(chunks)} chunks)", file=sys.stderr)


def cmd_search(a):
    check_stemmer()
    cfg = (a.variant, a.k1, a.b, a.delta, a.stopwords, a.stem)
    docs = load_jsonl(a.corpus)
    qs = load_jsonl(a.queries)
    dt = tokenize([doc_text(d) for d in docs], a.stopwords, a.stem)
    qt = tokenize([q["text"] for q in qs], a.stopwords, a.stem)
    hits = retrieve(dt, qt, cfg, a.k)
    for q, h in zip(qs, hits):
        for rank, (d, s) in enumerate(h[:a.k], 1):
            print(f"{q['_id']} Q0 {docs[d]['_id']} {rank} {'%.9g' % s} bm25s")


def cmd_chunks(a):
    with open(a.out, "w", encoding="utf-8") as f:
        for doc_id, idx, text in make_chunks(a.collections):
            f.write(json.dumps({"doc_id": doc_id, "chunk": idx, "text": text, "ids": []}) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("--collections", default=os.environ.get("RV_COLLECTIONS", "/work/shared/collections"))
    f.add_argument("--out", default="tests/fixtures/bm25")
    f.add_argument("--rv-cat", default="bin/rv-cat")
    s = sub.add_parser("search")
    s.add_argument("--corpus", required=True)
    s.add_argument("--queries", required=True)
    s.add_argument("--k", type=int, default=1000)
    s.add_argument("--variant", default="lucene")
    s.add_argument("--k1", type=float, default=1.5)
    s.add_argument("--b", type=float, default=0.75)
    s.add_argument("--delta", type=float, default=0.5)
    s.add_argument("--stopwords", default="en", choices=["en", "none"])
    s.add_argument("--stem", default="english", choices=["english", "none"])
    c = sub.add_parser("chunks")
    c.add_argument("--collections", default=os.environ.get("RV_COLLECTIONS", "/work/shared/collections"))
    c.add_argument("--out", required=True)
    a = p.parse_args()
    {"fixtures": cmd_fixtures, "search": cmd_search, "chunks": cmd_chunks}[a.cmd](a)


if __name__ == "__main__":
    main()
