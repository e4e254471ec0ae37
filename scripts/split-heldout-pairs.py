#!/usr/bin/env python3
"""split-heldout-pairs.py — split a BEIR corpus JSONL into training text and a
held-out retrieval task built from the same kind of text.

Every EVERY-th document (0, EVERY, 2*EVERY, ...) is held out; the others are
written to TRAIN (corpus JSONL, unchanged). Each held-out document is cut into
consecutive WORDS-word pieces (whitespace words; a shorter tail is dropped);
a piece gives one pair: the query is its first half, the relevant document
its second half ("which passage continues this text?"). Written to OUT as a
BEIR collection: corpus.jsonl, queries.jsonl, qrels/test.tsv (one relevant
document per query). No text of a held-out document reaches TRAIN.

usage: split-heldout-pairs.py CORPUS.jsonl TRAIN.jsonl OUTDIR [--every 4] [--words 80] [--max-pairs N]
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("train")
    ap.add_argument("outdir")
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--words", type=int, default=80)
    ap.add_argument("--max-pairs", type=int, default=0)
    a = ap.parse_args()
    if a.every < 2 or a.words < 2:
        sys.exit("split-heldout-pairs: --every and --words must be at least 2")
    os.makedirs(os.path.join(a.outdir, "qrels"), exist_ok=True)
    n = 0
    with open(a.corpus, encoding="utf-8") as f, open(a.train, "w", encoding="utf-8") as tr, \
            open(os.path.join(a.outdir, "corpus.jsonl"), "w", encoding="utf-8") as c, \
            open(os.path.join(a.outdir, "queries.jsonl"), "w", encoding="utf-8") as q, \
            open(os.path.join(a.outdir, "qrels", "test.tsv"), "w", encoding="utf-8") as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for i, line in enumerate(f):
            doc = json.loads(line)
            if i % a.every:
                tr.write(json.dumps(doc, ensure_ascii=False) + "\n")
                continue
            words = doc["text"].split()
            half = a.words // 2
            for k in range(0, len(words) - a.words + 1, a.words):
                if a.max_pairs and n >= a.max_pairs:
                    break
                n += 1
                piece = words[k:k + a.words]
                q.write(json.dumps({"_id": f"q{n}", "text": " ".join(piece[:half])}, ensure_ascii=False) + "\n")
                c.write(json.dumps({"_id": f"d{n}", "title": "", "text": " ".join(piece[half:])},
                                   ensure_ascii=False) + "\n")
                r.write(f"q{n}\td{n}\t1\n")
    if n == 0:
        sys.exit("split-heldout-pairs: no held-out pair (documents too short?)")
    print(f"split-heldout-pairs: {n} pairs", file=sys.stderr)


if __name__ == "__main__":
    main()
