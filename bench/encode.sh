#!/bin/bash
# encode.sh — rv-encode throughput on the CPU against PyTorch (transformers
# AutoModel, float32) running the same SmolLM2-135M weights on the same texts
# with the same threads and the same batches (length-sorted, BATCH sequences,
# EOS pooling, L2 norm); median of RUNS runs each. Also prints the achieved
# GFLOP/s next to this machine's OpenBLAS sgemm rate.
#   bench/encode.sh                 (env: DOCS=64 BATCH=32 THREADS=$(nproc) RUNS=3)
# The PyTorch side needs a python with torch + transformers: $RV_TORCH_PYTHON
# (default /tmp/rvref/bin/python, see scripts/make-model-fixtures.py); the
# weights are converted once from the GGUF into .cache/models/smollm2-hf.
set -u
cd "$(dirname "$0")/.."
DOCS=${DOCS:-64}; BATCH=${BATCH:-32}; THREADS=${THREADS:-$(nproc)}; RUNS=${RUNS:-3}
PY=${RV_TORCH_PYTHON:-/tmp/rvref/bin/python}
G=$(scripts/get-model.sh | tail -n 1) || { echo "encode.sh: no model (scripts/get-model.sh failed)"; exit 1; }
HF=${RV_CACHE:-.cache}/models/smollm2-hf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -n "$DOCS" /work/shared/collections/cranfield/corpus.jsonl > "$tmp/docs.jsonl" 2>/dev/null ||
    head -n "$DOCS" tests/fixtures/model/smollm2_docs.jsonl > "$tmp/docs.jsonl"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ours
: > "$tmp/ours"
for r in $(seq "$RUNS"); do
    bin/rv-encode -m "$G" -p 'passage:  ' --batch-size "$BATCH" --batch-tokens 1000000 --threads "$THREADS" \
        "$tmp/docs.jsonl" 2> "$tmp/err" > /dev/null || { cat "$tmp/err"; exit 1; }
    grep -o '[0-9.]* tokens/s, [0-9.]* GFLOP/s' "$tmp/err" >> "$tmp/ours"
done
ours=$(awk '{print $1}' "$tmp/ours" | median)
gflops=$(awk '{print $3}' "$tmp/ours" | median)

# this machine's sgemm rate (OpenBLAS, same threads), on a layer-sized product
cat > "$tmp/sgemm.c" <<'C'
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int c, char **v) { int m = 2048, n = 1536, k = 576, it = 10; (void)c;
    openblas_set_num_threads(atoi(v[1]));
    float *a = calloc((size_t)m * k, 4), *b = calloc((size_t)n * k, 4), *y = calloc((size_t)m * n, 4);
    for (int i = 0; i < m * k; i++) a[i] = (float)(i % 7); for (int i = 0; i < n * k; i++) b[i] = (float)(i % 5);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 0, y, n);
    struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < it; i++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 0, y, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.1f\n", 2.0 * m * n * k * it / ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9) / 1e9); }
C
sgemm=$(cc -O2 $(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread) \
    "$tmp/sgemm.c" -o "$tmp/sgemm" -lopenblas 2>/dev/null && "$tmp/sgemm" "$THREADS" || echo "n/a")

# peer: transformers on the same weights
peer="n/a"
if "$PY" -c 'import torch, transformers' 2>/dev/null; then
    [ -f "$HF/model.safetensors" ] || "$PY" scripts/make-model-fixtures.py --gguf-to-hf "$G" "$HF" > /dev/null
    cat > "$tmp/peer.py" <<'PYEOF'
import json, sys, time
import torch
from transformers import AutoModel, PreTrainedTokenizerFast
hf, docs, batch, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
tok = PreTrainedTokenizerFast(tokenizer_file=hf + "/tokenizer.json")
model = AutoModel.from_pretrained(hf, torch_dtype=torch.float32).eval()
eos = model.config.eos_token_id
texts = []
for line in open(docs):
    d = json.loads(line)
    body = (d["title"] + " " + d["text"]).strip() if "title" in d else d["text"].strip()
    texts.append(f"passage:  {body}".strip())
seqs = [tok(t, add_special_tokens=False, truncation=True, max_length=511)["input_ids"] + [eos] for t in texts]
order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
n_tok = sum(len(s) for s in seqs)
for _ in range(runs):
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            idx = order[b:b + batch]
            L = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), L), eos, dtype=torch.long)
            mask = torch.zeros((len(idx), L), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(seqs[i])] = torch.tensor(seqs[i]); mask[r, :len(seqs[i])] = 1
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
            e = torch.nn.functional.normalize(h[torch.arange(len(idx)), mask.sum(1) - 1], dim=-1)
    print(n_tok / (time.perf_counter() - t0))
PYEOF
    peer=$("$PY" "$tmp/peer.py" "$HF" "$tmp/docs.jsonl" "$BATCH" "$THREADS" "$RUNS" 2>/dev/null | median | awk '{printf "%.0f", $1}')
fi
echo "rv-encode SmolLM2-135M, $DOCS Cranfield docs, batch $BATCH, $THREADS threads, median of $RUNS:"
echo "  rv-encode:                 $ours tokens/s ($gflops GFLOP/s; OpenBLAS sgemm on this machine: $sgemm GFLOP/s)"
echo "  transformers (PyTorch):    $peer tokens/s"
if [ "$peer" != "n/a" ] && [ -n "$peer" ]; then
    awk -v a="$ours" -v b="$peer" 'BEGIN { printf "  ratio rv-encode/pytorch:   %.2fx\n", a / b }'
fi
