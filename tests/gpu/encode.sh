#!/bin/bash
# tests/gpu/encode.sh — rv-encode --device cuda end to end on a real GPU
# (scripts/gpu-check.sh runs it: `env BIN=bin BUILD=build RV_CUDA_LIB= bash
# tests/gpu/encode.sh`, 120 s, no network). The GPU machine has no model
# files, so transformers builds a RANDOM-WEIGHT model with the SmolLM2-135M
# shape (config below; bf16 safetensors, tied embeddings) and the tiny
# byte-level fixture tokenizer (tests/fixtures/model/llama_tied/tokenizer.json;
# its BOS/EOS ids 1/2 replace SmolLM2's 0/0). Parity, not quality, is tested:
#   cuda-vs-cpu          rv-encode --device cuda (bf16) vs --device cpu (fp32) on the first
#                        ENC_CPU_N texts (the CPU is the slow side), cosine >= 0.999
#   cuda-f32-vs-hf-f32   --gpu-dtype f32 vs transformers fp32 (no TF32) on the GPU, cosine >= 0.9999
#   cuda-vs-hf-bf16      bf16 vs transformers bf16 SDPA, EOS-pooled and L2-normalised, cosine >= 0.99
#                        (both round differently: transformers keeps the residual stream in bf16;
#                        INFO lines print the min/mean cosines, and cpu-vs-hf-bf16 for scale)
#   INFO encode: ours N tok/s, transformers M tok/s, ratio R (GPU name) — the same texts,
#   max-len and EOS pooling; transformers: bf16, SDPA, length-sorted padded batches of
#   HF_BATCH, pre-tokenised and timed after a warm-up; ours: the tool's own figure (its
#   tokenisation and output writing included, model loading excluded).
# Without python3 + torch + transformers + tokenizers: SKIP lines. Without a
# CUDA device (rv-encode reports "no CUDA device"): SKIP lines.
# Environment (defaults are the GPU run; the overrides let the CPU machine
# exercise the script on the emulated backend with a tiny model):
#   PYTHON (python3), ENC_N texts (256), ENC_CPU_N (64), ENC_BIG timing texts (4096), ENC_MAXLEN (128),
#   ENC_LAYERS/ENC_HIDDEN/ENC_FF/ENC_HEADS/ENC_KV/ENC_VOCAB (SmolLM2-135M's), HF_DEVICE (cuda),
#   HF_BATCH (256), ENC_BATCH_TOKENS (ours for the timing run, 65536).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${BIN:-bin}
ENC=$ROOT/$BIN/rv-encode
PY=${PYTHON:-python3}
S=gpu-encode
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export ENC_N=${ENC_N:-256} ENC_BIG=${ENC_BIG:-4096} ENC_MAXLEN=${ENC_MAXLEN:-128} HF_DEVICE=${HF_DEVICE:-cuda}
export HF_BATCH=${HF_BATCH:-256} ENC_BATCH_TOKENS=${ENC_BATCH_TOKENS:-65536} ENC_CPU_N=${ENC_CPU_N:-64}
CHECKS="model cuda-exit cpu-exit cuda-vs-cpu cuda-f32-vs-hf-f32 cuda-vs-hf-bf16 throughput"

skip_all() { for c in $CHECKS; do echo "SKIP $S/$c ($1)"; done; exit 0; }
fail() { echo "FAIL $S/$1"; shift; printf '  %s\n' "$@"; }

[ -x "$ENC" ] || { fail build "$ENC not built"; exit 1; }
"$PY" -c 'import torch, transformers, tokenizers, safetensors' 2>/dev/null ||
    skip_all "$PY lacks torch, transformers, tokenizers or safetensors"

# ---------------------------------------------------------------- the random model and texts
if ! "$PY" - "$W" "$ROOT/tests/fixtures/model/llama_tied/tokenizer.json" >"$W/make.log" 2>&1 <<'PY'; then
import json, os, random, shutil, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM

w, tok_src = sys.argv[1], sys.argv[2]
env = lambda k, d: int(os.environ.get(k, d))
# SmolLM2-135M's config.json (HuggingFaceTB/SmolLM2-135M), bos/eos from the fixture tokenizer
cfg = LlamaConfig(
    vocab_size=env("ENC_VOCAB", 49152), hidden_size=env("ENC_HIDDEN", 576),
    intermediate_size=env("ENC_FF", 1536), num_hidden_layers=env("ENC_LAYERS", 30),
    num_attention_heads=env("ENC_HEADS", 9), num_key_value_heads=env("ENC_KV", 3),
    hidden_act="silu", max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
    rope_scaling=None, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
    initializer_range=0.02, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).to(torch.bfloat16)
# random init leaves the norms at 1; perturb them so the norm weights matter
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.add_(0.1 * torch.randn_like(p))
model.save_pretrained(os.path.join(w, "model"), safe_serialization=True)
shutil.copy(tok_src, os.path.join(w, "model", "tokenizer.json"))
words = ("retrieval dense encoder query passage document attention layer token vector search index "
         "corpus batch gradient model weight norm cosine similarity neighbour ranking score chunk "
         "language transformer decoder embedding pooling sequence length the of and a to in is for").split()
rng = random.Random(0)
def texts(n, prefix):
    return [{"_id": f"{prefix}{i}", "text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 40)))}
            for i in range(n)]
for name, n, prefix in (("texts", env("ENC_N", 256), "t"), ("big", env("ENC_BIG", 4096), "b")):
    with open(os.path.join(w, name + ".jsonl"), "w") as f:
        for d in texts(n, prefix):
            f.write(json.dumps(d) + "\n")
print("params", sum(p.numel() for p in model.parameters()))
PY
    fail model "building the random model failed:" "$(tail -5 "$W/make.log")"
    exit 1
fi
echo "PASS $S/model"
CHECKS=${CHECKS#model }
echo "INFO $S: RANDOM weights, SmolLM2-135M shape ($(grep -o 'params [0-9]*' "$W/make.log")), byte-level fixture tokenizer, $ENC_N texts, max-len $ENC_MAXLEN"

# ---------------------------------------------------------------- our runs
enc() { "$ENC" -m "$W/model" --max-len "$ENC_MAXLEN" "$@"; }
if ! enc --device cuda -o "$W/cuda.emb" "$W/texts.jsonl" 2>"$W/cuda.err"; then
    if grep -q "no CUDA device" "$W/cuda.err"; then
        skip_all "no CUDA device: $(tail -1 "$W/cuda.err")"
    fi
    fail cuda-exit "$(tail -3 "$W/cuda.err")"
    exit 1
fi
echo "PASS $S/cuda-exit"
grep -o 'device cuda:.*' "$W/cuda.err" | head -1 | sed "s/^/INFO $S: /"
enc --device cuda --gpu-dtype f32 -o "$W/cuda32.emb" "$W/texts.jsonl" 2>"$W/cuda32.err" ||
    fail cuda-f32-exit "$(tail -3 "$W/cuda32.err")"
head -n "$ENC_CPU_N" "$W/texts.jsonl" >"$W/texts_cpu.jsonl"
if enc -o "$W/cpu.emb" "$W/texts_cpu.jsonl" 2>"$W/cpu.err"; then
    echo "PASS $S/cpu-exit"
else
    fail cpu-exit "$(tail -3 "$W/cpu.err")"
fi
enc --device cuda --batch-tokens "$ENC_BATCH_TOKENS" -o "$W/big.emb" "$W/big.jsonl" 2>"$W/big.err" ||
    fail big-exit "$(tail -3 "$W/big.err")"
for f in cuda cuda32 cpu; do
    [ -f "$W/$f.emb" ] && "$ROOT/$BIN/rv-cat" "$W/$f.emb" >"$W/$f.jsonl"
done
# "rv-encode: N texts, T tokens in S s: R tokens/s, ..."
OURS=$(tr '\r' '\n' <"$W/big.err" | sed -n 's/^rv-encode: [0-9]* texts, [0-9]* tokens in [0-9.]*s: \([0-9]*\) tokens\/s.*/\1/p')

# ---------------------------------------------------------------- transformers and the verdicts
"$PY" - "$W" "${OURS:-0}" <<'PY'
import json, os, sys, time
import torch
from tokenizers import Tokenizer
from transformers import LlamaModel

w, ours = sys.argv[1], float(sys.argv[2])
S = "gpu-encode"
dev = os.environ["HF_DEVICE"]
max_len, hf_batch = int(os.environ["ENC_MAXLEN"]), int(os.environ["HF_BATCH"])
if dev == "cuda" and not torch.cuda.is_available():
    for c in ("cuda-vs-cpu", "cuda-f32-vs-hf-f32", "cuda-vs-hf-bf16", "throughput"):
        print(f"SKIP {S}/{c} (torch sees no CUDA device)")
    sys.exit(0)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
tok = Tokenizer.from_file(os.path.join(w, "model", "tokenizer.json"))
EOS = 2

def load(name):
    docs = [json.loads(l) for l in open(os.path.join(w, name + ".jsonl"))]
    # rv-encode's convention (mteb RepLLaMA): strip, no template for this tokenizer,
    # truncate to max_len - 1, append EOS
    return [d["_id"] for d in docs], [tok.encode(d["text"].strip(), add_special_tokens=False).ids[: max_len - 1] + [EOS]
                                      for d in docs]

def embed(model, seqs, dtype):
    """EOS-pooled, L2-normalised embeddings in input order; length-sorted, right-padded batches."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out = torch.empty(len(seqs), model.config.hidden_size, dtype=torch.float32)
    with torch.inference_mode():
        for b in range(0, len(order), hf_batch):
            idx = order[b:b + hf_batch]
            L = len(seqs[idx[0]])
            ids = torch.zeros(len(idx), L, dtype=torch.long)
            mask = torch.zeros(len(idx), L, dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[r, :len(seqs[i])] = 1
            h = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
            last = torch.tensor([len(seqs[i]) - 1 for i in idx], device=dev)
            e = h[torch.arange(len(idx), device=dev), last].float()
            out[idx] = torch.nn.functional.normalize(e, dim=-1).cpu()
    return out

def ours_emb(name, ids):
    p = os.path.join(w, name + ".jsonl")
    if not os.path.exists(p):
        return None, "no output"
    got = [json.loads(l) for l in open(p)]
    if [g["id"] for g in got] != ids:
        return None, "ids or order differ from the input"
    return torch.tensor([g["vector"] for g in got], dtype=torch.float32), ""

def verdict(check, a, b, bound, why=""):
    if a is None or b is None:
        print(f"FAIL {S}/{check}\n  {why}")
        return
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-30)
    ok = bool(cos.min() >= bound)
    print(f"{'PASS' if ok else 'FAIL'} {S}/{check}")
    print(f"INFO {S}/{check}: min cosine {cos.min():.6f}, mean {cos.mean():.6f} over {len(cos)} texts (bound {bound})")

ids, seqs = load("texts")
cuda, why_c = ours_emb("cuda", ids)
cuda32, why_32 = ours_emb("cuda32", ids)
n_cpu = min(int(os.environ["ENC_CPU_N"]), len(ids))
cpu, why_p = ours_emb("cpu", ids[:n_cpu])
verdict("cuda-vs-cpu", None if cuda is None else cuda[:n_cpu], cpu, 0.999, why_c or why_p)

path = os.path.join(w, "model")
m32 = LlamaModel.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="sdpa").to(dev).eval()
hf32 = embed(m32, seqs, torch.float32)
verdict("cuda-f32-vs-hf-f32", cuda32, hf32, 0.9999, why_32)
del m32
m16 = LlamaModel.from_pretrained(path, torch_dtype=torch.bfloat16, attn_implementation="sdpa").to(dev).eval()
hf16 = embed(m16, seqs, torch.bfloat16)
verdict("cuda-vs-hf-bf16", cuda, hf16, 0.99, why_c)
if cpu is not None:
    c = (cpu * hf16[:n_cpu]).sum(-1)
    print(f"INFO {S}/cpu-vs-hf-bf16: min cosine {c.min():.6f}, mean {c.mean():.6f} (transformers bf16's own distance from fp32)")

# throughput on the big set: pre-tokenised, one warm-up batch, synchronised
_, big = load("big")
n_tok = sum(len(s) for s in big)
embed(m16, big[:hf_batch], torch.bfloat16)
if dev == "cuda":
    torch.cuda.synchronize()
t = time.perf_counter()
embed(m16, big, torch.bfloat16)
if dev == "cuda":
    torch.cuda.synchronize()
hf_tps = n_tok / (time.perf_counter() - t)
name = torch.cuda.get_device_name() if dev == "cuda" else "cpu (" + dev + ")"
if ours > 0:
    print(f"PASS {S}/throughput")
    print(f"INFO encode: ours {ours:.0f} tok/s, transformers {hf_tps:.0f} tok/s, ratio {ours / hf_tps:.2f} ({name}; "
          f"{len(big)} texts, {n_tok} tokens, max-len {max_len}, RANDOM weights)")
else:
    print(f"FAIL {S}/throughput\n  no tokens/s line from rv-encode on the timing set")
PY
rc=$?
[ "$rc" -eq 0 ] || fail reference "the transformers step exited $rc"

# where our encode's device time goes: the timing set again with --gpu-profile (not the timed
# run: events around every operation), its tables as INFO lines
if enc -q --device cuda --batch-tokens "$ENC_BATCH_TOKENS" --gpu-profile -o "$W/prof.emb" "$W/big.jsonl" \
    2>"$W/prof.err"; then
    grep -E '^  ' "$W/prof.err" | head -20 | sed "s/^  */INFO $S: profile /"
else
    echo "INFO $S: rv-encode --gpu-profile: $(tail -1 "$W/prof.err")"
fi
exit 0
