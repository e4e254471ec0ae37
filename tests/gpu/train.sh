#!/bin/bash
# tests/gpu/train.sh — rv-train --device cuda end to end on a real GPU
# (scripts/gpu-check.sh runs it: `env BIN=bin BUILD=build RV_CUDA_LIB= bash
# tests/gpu/train.sh`, 120 s, no network). The GPU machine has no model
# files, so transformers builds a RANDOM-WEIGHT Llama (config below: 12
# layers, hidden 576, 9/3 heads, ffn 1536, vocab 49152, tied; float32
# safetensors) with the tiny byte-level fixture tokenizer
# (tests/fixtures/model/llama_tied/tokenizer.json, BOS/EOS 1/2), and groups
# of TR_B random-word chunks. Both programs train LoRA rank TR_R (alpha 2R,
# dropout 0) on q,k,v,o,gate,up,down of a retriever and an LM made from that
# one checkpoint, tau TR_TAU, V-norm on, grad-accum 1, clip 1.0, AdamW, on the
# same groups in the same order (rv-train's data order, seed 42):
#   ours   rv-train --device cuda --from-jsonl, TR_WARM + TR_STEPS steps; ms/step from log.jsonl
#   peer   scripts/revela_torch.py's step (transformers 4.45 + PEFT, in-batch attention
#          materialising [B,B,H,L,L]) imported and run on the same GPU in float32 with TF32
#          off; each step timed between torch.cuda.synchronize() calls (tokenisation of the
#          views included, as in ours)
# Checks:
#   step-gpu/*                  build/gpu/test_step_gpu (make gpu-tests) first: the step's
#                               fixture parity test on the real device (no torch needed)
#   model, cuda-run, peer-run   each side ran
#   loss-parity                 step 1 loss, |ours - peer| / peer <= 1e-4 (lora_B starts at 0
#                               on both sides, so step 1 does not depend on the LoRA init)
#   cuda-bf16-run, bf16-loss    ours again with --gpu-dtype bf16: step 1 loss within 5e-3 of
#                               the (f32) peer's; its ms/step in an INFO line
#   cuda-recompute-run,         ours again (f32) with --recompute: step 1 loss, pass-A loss and
#   recompute-parity            grad-norm within 1e-6 of the run without, fewer activation MiB;
#                               ms/step and MiB of both in an INFO line
#   INFO train: ours N ms/step, peer M ms/step, peer/ours R (medians over TR_STEPS steps
#   after TR_WARM warm-up; GPU name; shapes)
# Without python3 + torch (>= 2.0: set_default_device) + transformers + peft + tokenizers:
# SKIP lines. Without a CUDA device (rv-train reports "no CUDA device"): SKIP lines.
# Environment (defaults are the GPU run; the overrides let the CPU machine run
# the script on the emulated backend with a tiny model, TR_DEVICE=cpu):
#   PYTHON (python3), TR_LAYERS TR_HIDDEN TR_FF TR_HEADS TR_KV TR_VOCAB (model), TR_B (16
#   chunks per group), TR_LEN (--max-len 128), TR_R (16), TR_TAU (0.05), TR_STEPS (5),
#   TR_WARM (1), TR_DEVICE (cuda: where the peer runs).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${BIN:-bin}
TRAIN=$ROOT/$BIN/rv-train
PY=${PYTHON:-python3}
S=gpu-train
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export TR_LAYERS=${TR_LAYERS:-12} TR_HIDDEN=${TR_HIDDEN:-576} TR_FF=${TR_FF:-1536} TR_HEADS=${TR_HEADS:-9}
export TR_KV=${TR_KV:-3} TR_VOCAB=${TR_VOCAB:-49152} TR_B=${TR_B:-16} TR_LEN=${TR_LEN:-128} TR_R=${TR_R:-16}
export TR_TAU=${TR_TAU:-0.05} TR_STEPS=${TR_STEPS:-5} TR_WARM=${TR_WARM:-1} TR_DEVICE=${TR_DEVICE:-cuda}
TOTAL=$((TR_WARM + TR_STEPS))
CHECKS="model cuda-run cuda-bf16-run cuda-recompute-run recompute-parity peer-run loss-parity bf16-loss"

skip_all() { for c in $CHECKS; do echo "SKIP $S/$c ($1)"; done; exit 0; }
fail() { echo "FAIL $S/$1"; shift; printf '  %s\n' "$@"; }

[ -x "$TRAIN" ] || { fail build "$TRAIN not built"; exit 1; }

# ---------------------------------------------------------------- the step against the CPU step, on the device
# build/gpu/test_step_gpu (make gpu-tests): tests/gpu/test_step_gpu.c's fixture cases (loss, S, W,
# every LoRA gradient, a short loss curve vs lib/revela_step_ref.c) with the real backend
STEP_TEST=$ROOT/${BUILD:-build}/gpu/test_step_gpu
if [ -x "$STEP_TEST" ]; then
    RV_ROOT=$ROOT timeout 60 "$STEP_TEST" >"$W/step.out" 2>&1
    rc=$?
    sed 's/^  /INFO step-gpu: /' "$W/step.out"
    [ $rc = 0 ] || grep -q '^FAIL' "$W/step.out" || fail step-parity "$STEP_TEST exited $rc"
else
    echo "SKIP $S/step-parity ($STEP_TEST not built: make gpu-tests)"
fi
"$PY" -c 'import torch, transformers, peft, tokenizers, safetensors; torch.set_default_device' 2>/dev/null ||
    skip_all "$PY lacks torch >= 2.0, transformers, peft, tokenizers or safetensors"

# ---------------------------------------------------------------- the random model and groups
if ! "$PY" - "$W" "$ROOT/tests/fixtures/model/llama_tied/tokenizer.json" >"$W/make.log" 2>&1 <<'PY'; then
import json, os, random, shutil, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM

w, tok_src = sys.argv[1], sys.argv[2]
env = lambda k: int(os.environ[k])
cfg = LlamaConfig(
    vocab_size=env("TR_VOCAB"), hidden_size=env("TR_HIDDEN"), intermediate_size=env("TR_FF"),
    num_hidden_layers=env("TR_LAYERS"), num_attention_heads=env("TR_HEADS"), num_key_value_heads=env("TR_KV"),
    hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0, rope_scaling=None,
    tie_word_embeddings=True, attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2,
    torch_dtype="float32")
torch.manual_seed(1234)
model = LlamaForCausalLM(cfg).to(torch.float32)
os.makedirs(w + "/model")
model.save_pretrained(w + "/model", safe_serialization=True)
shutil.copy(tok_src, w + "/model/tokenizer.json")
rng = random.Random(7)
words = ["retrieval", "dense", "vector", "index", "query", "passage", "attention", "batch", "model", "token",
         "wikipedia", "science", "history", "river", "mountain", "energy", "protein", "market", "theory", "music"]
B, n = env("TR_B"), env("TR_WARM") + env("TR_STEPS")
with open(w + "/groups.jsonl", "w") as f:
    for g in range(n):
        f.write(json.dumps([" ".join(rng.choice(words) for _ in range(rng.randint(12, 40))) for _ in range(B)]) + "\n")
PY
    fail model "$(tail -5 "$W/make.log")"
    for c in cuda-run cuda-bf16-run cuda-recompute-run recompute-parity peer-run loss-parity bf16-loss; do echo "SKIP $S/$c (no model)"; done
    exit 1
fi
echo "PASS $S/model"

# ---------------------------------------------------------------- ours
ours() {   # ours OUTDIR DTYPE [more rv-train options]
    "$TRAIN" --model "$W/model" --from-jsonl "$W/groups.jsonl" --out "$1" --lora-rank "$TR_R" \
        --lora-alpha $((2 * TR_R)) --lora-dropout 0 --grad-accum 1 --max-steps "$TOTAL" --max-len "$TR_LEN" \
        --tau "$TR_TAU" --save-every 0 --device cuda --gpu-dtype "$2" "${@:3}" >"$1.out" 2>"$1.err"
}
# median ms/step of a log.jsonl after the warm-up steps
median_ms() {
    sed -n "$((TR_WARM + 1)),\$s/.*\"ms_per_step\":\([^,]*\),.*/\1/p" "$1" | sort -g |
        awk '{v[NR] = $1} END {if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
ours "$W/ours" f32
rc=$?
if [ $rc != 0 ]; then
    if grep -q "no CUDA device" "$W/ours.err"; then
        for c in cuda-run cuda-bf16-run cuda-recompute-run recompute-parity peer-run loss-parity bf16-loss; do
            echo "SKIP $S/$c ($(grep -m1 'no CUDA device' "$W/ours.err"))"
        done
        exit 0
    fi
    fail cuda-run "exit $rc" "$(tail -c 800 "$W/ours.err")"
    exit 1
fi
echo "PASS $S/cuda-run"
dev=$(sed -n 's/^rv-train: device cuda:[0-9]* \(.*\) (backend .*/\1/p' "$W/ours.err" | head -1)
ours_loss1=$(sed -n '1s/.*"loss":\([^,]*\),.*/\1/p' "$W/ours/log.jsonl")
ours_ms=$(median_ms "$W/ours/log.jsonl")
# the same run with bf16 frozen matrices (tensor-core products)
if ours "$W/bf16" bf16; then
    echo "PASS $S/cuda-bf16-run"
    bf16_loss1=$(sed -n '1s/.*"loss":\([^,]*\),.*/\1/p' "$W/bf16/log.jsonl")
    bf16_ms=$(median_ms "$W/bf16/log.jsonl")
else
    fail cuda-bf16-run "$(tail -c 800 "$W/bf16.err")"
    bf16_loss1= bf16_ms=
fi

# the f32 run again with --recompute: the same step-1 loss, pass-A loss and grad-norm (1e-6 relative:
# the same kernels on the same values; none uses atomics), fewer activation bytes, a second forward's time
if ours "$W/rc" f32 --recompute; then
    echo "PASS $S/cuda-recompute-run"
    r=$(python3 - "$W/rc/log.jsonl" "$W/ours/log.jsonl" <<'EOF'
import json, sys
a, b = (json.loads(open(p).readline()) for p in sys.argv[1:3])
e = max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-30) for k in ("loss", "loss_plain", "grad_norm"))
print("%s %.3g %s %s" % ("ok" if e <= 1e-6 else "bad", e, a["activations_mb"], b["activations_mb"]))
EOF
)
    set -- $r
    if [ "${1:-}" = ok ] && awk -v a="$3" -v b="$4" 'BEGIN {exit !(a + 0 < b + 0)}'; then
        echo "PASS $S/recompute-parity"
    else
        fail recompute-parity "step 1 with --recompute vs without: $r (want rel <= 1e-6 and fewer MiB)"
    fi
    echo "INFO train: --recompute: $(median_ms "$W/rc/log.jsonl") ms/step (without: $ours_ms), activations ${3:-?} MiB" \
         "(without: ${4:-?} MiB), step-1 relative difference ${2:-?}"
else
    fail cuda-recompute-run "$(tail -c 800 "$W/rc.err")"
    echo "SKIP $S/recompute-parity (the --recompute run failed)"
fi

# ---------------------------------------------------------------- the PyTorch peer on the same device
if ! "$PY" - "$ROOT/scripts" "$W" >"$W/peer.out" 2>"$W/peer.err" <<'PY'; then
import os, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import revela_torch as rt
from transformers import AutoModelForCausalLM

w = sys.argv[2]
env = lambda k: os.environ[k]
dev = torch.device(env("TR_DEVICE"))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_default_device(dev)    # revela_torch builds its masks with default-device factories
R, steps, warm = int(env("TR_R")), int(env("TR_STEPS")), int(env("TR_WARM"))
mdir = w + "/model"
retr_c = AutoModelForCausalLM.from_pretrained(mdir, torch_dtype=torch.float32).to(dev)
lm_c = AutoModelForCausalLM.from_pretrained(mdir, torch_dtype=torch.float32).to(dev)
views = rt.Views(mdir, mdir, 2, 2, int(env("TR_LEN")), True)
retr, lm = rt.build_pair(retr_c, lm_c, R, 2.0 * R, 0.0)
retr.train()
lm.train()
params = [p for m in (retr, lm) for p in m.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
groups = rt.load_groups(w + "/groups.jsonl")
order = rt.data_order(len(groups), 42, 0)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
for step in range(1, warm + steps + 1):
    src, texts = groups[order[step - 1]]
    sync()
    t0 = time.perf_counter()
    batch, L = views.batch(src, texts)
    batch = {k: v.to(dev) for k, v in batch.items()}
    opt.zero_grad(set_to_none=True)
    out = rt.revela_step(retr, lm, batch, float(env("TR_TAU")), True)
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sync()
    ms = (time.perf_counter() - t0) * 1000
    print(f"peer step {step} B={len(texts)} L={L} loss {out['loss'].item():.9g} ms {ms:.3f}")
print(f"peer torch {torch.__version__} attention {lm_c.config._attn_implementation}")
PY
    fail peer-run "$(tail -c 800 "$W/peer.err")"
    exit 1
fi
echo "PASS $S/peer-run"
peer_loss1=$(sed -n 's/^peer step 1 .* loss \([^ ]*\) ms .*/\1/p' "$W/peer.out")
peer_ms=$(sed -n 's/^peer step \([0-9]*\) .* ms \([0-9.]*\)$/\1 \2/p' "$W/peer.out" | awk -v w="$TR_WARM" '$1 > w {print $2}' |
          sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
shape=$(sed -n 's/^peer step 1 \(B=[0-9]* L=[0-9]*\) .*/\1/p' "$W/peer.out")

# rel_diff A B LIMIT: "ok E" or "bad E" (E = |A - B| / |B|), "missing" when either is empty
rel_diff() {
    awk -v a="$1" -v b="$2" -v lim="$3" 'BEGIN {
        if (a == "" || b == "" || b + 0 == 0) { print "missing"; exit }
        e = (a - b) / b; if (e < 0) e = -e; printf "%s %.3g\n", (e <= lim + 0 ? "ok" : "bad"), e }'
}
r=$(rel_diff "$ours_loss1" "$peer_loss1" 1e-4)
case $r in
ok*) echo "PASS $S/loss-parity" ;;
*) fail loss-parity "step 1 loss: ours $ours_loss1, peer $peer_loss1 (${r#* } relative, limit 1e-4)" ;;
esac
echo "INFO train: step 1 loss ours $ours_loss1 peer $peer_loss1 (relative ${r#* })"
r2=$(rel_diff "$bf16_loss1" "$peer_loss1" 5e-3)
case $r2 in
ok*) echo "PASS $S/bf16-loss" ;;
*) fail bf16-loss "step 1 loss: ours bf16 $bf16_loss1, peer (f32) $peer_loss1 (${r2#* } relative, limit 5e-3)" ;;
esac
echo "INFO train: ours --gpu-dtype bf16: $bf16_ms ms/step, step 1 loss $bf16_loss1 (relative to the f32 peer ${r2#* })"
echo "INFO train: ours $ours_ms ms/step, peer $peer_ms ms/step, peer/ours $(awk -v a="$ours_ms" -v b="$peer_ms" \
    'BEGIN {if (a > 0) printf "%.2f", b / a; else print "n/a"}') (median of $TR_STEPS steps after $TR_WARM warm-up;" \
    "$dev; $TR_LAYERS layers hidden $TR_HIDDEN vocab $TR_VOCAB, first group $shape, LoRA r $TR_R; $(tail -1 "$W/peer.out"))"
