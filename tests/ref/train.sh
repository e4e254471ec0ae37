#!/bin/bash
# train.sh — rv-train's PEFT adapters loaded live by Python PEFT (needs a
# python with torch, transformers and peft: $RV_TORCH_PYTHON, default the
# .venv-torch of tests/ref/venv-torch.sh (Debian's torch + PyPI transformers
# 4.45.2 and peft 0.13.2), created when missing; SKIP when neither gives
# one). On the tiny llama fixture:
#   - the retriever adapter on AutoModel, the LM adapter on
#     AutoModelForCausalLM: every LoRA parameter PEFT created is found in our
#     file under its PEFT key and holds our values (a wrong prefix would leave
#     PEFT's zero init in place, silently); no key of ours is left unused;
#   - the merged retriever's EOS embeddings (mteb RepLLaMA convention:
#     "passage:  " + text, stripped) equal rv-encode --adapter's to 1e-5.
set -u
cd "$(dirname "$0")/../.."
export RV_ROOT=$PWD
BIN=${BIN:-bin}
. tests/cli/lib.sh
T_SUITE=ref-train
. tests/ref/torch-python.inc
M=$RV_ROOT/tests/fixtures/model/llama_tied
D=$T_DIR
t_run "$BIN/rv-train" --model "$M" --from-jsonl tests/fixtures/train/tiny_groups.jsonl --out "$D/run" \
    --lora-rank 4 --lora-alpha 8 --grad-accum 1 --max-steps 4 --warmup 1 --warmup-shape linear --lr 5e-2 \
    --max-len 24 --tau 0.05 -q
t_exit train 0
t_run "$BIN/rv-encode" -m "$M" --adapter "$D/run/retriever" -p 'passage:  ' --max-len 24 -o "$D/ours.emb" \
    tests/fixtures/model/tiny_texts.jsonl
t_exit encode 0
"$BIN/rv-cat" "$D/ours.emb" > "$D/ours.jsonl"
r=$("$PY" - "$M" "$D/run" "$D/ours.jsonl" tests/fixtures/model/tiny_texts.jsonl <<'PY' 2>"$T_ERR"
import json, sys, torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoModel, AutoModelForCausalLM
from peft import PeftModel
base, run, ours_path, texts_path = sys.argv[1:]
out = []
for kind, cls in (("retriever", AutoModel), ("lm", AutoModelForCausalLM)):
    ours = load_file(f"{run}/{kind}/adapter_model.safetensors")
    model = PeftModel.from_pretrained(cls.from_pretrained(base, torch_dtype=torch.float32), f"{run}/{kind}")
    seen, bad = set(), []
    for name, p in model.named_parameters():
        if "lora_" not in name:
            continue
        key = name.replace(".default", "")
        if key not in ours:
            bad.append("missing " + key)
        elif not torch.equal(ours[key], p.detach()):
            bad.append("differs " + key)
        seen.add(key)
    bad += ["unused " + k for k in ours if k not in seen]
    out.append(f"{kind}_keys {'ok' if not bad and seen else '; '.join(bad[:3]) or 'no LoRA parameters'} {len(seen)}")
    if kind == "retriever":
        merged = model.merge_and_unload().eval()
        tok = Tokenizer.from_file(f"{base}/tokenizer.json")
        eos = merged.config.eos_token_id
        worst = 0.0
        ours_emb = [json.loads(l) for l in open(ours_path)]
        for rec, line in zip(ours_emb, open(texts_path)):
            d = json.loads(line)
            body = (d["title"] + " " + d["text"]).strip() if "title" in d else d["text"].strip()
            ids = tok.encode(f"passage:  {body}".strip(), add_special_tokens=False).ids[:23] + [eos]
            with torch.no_grad():
                h = merged(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            h = torch.nn.functional.normalize(h, dim=-1)
            worst = max(worst, (h - torch.tensor(rec["vector"])).abs().max().item())
        out.append(f"retriever_embeddings {'ok' if worst < 1e-5 else 'max abs diff %.3g' % worst}")
print("\n".join(out))
PY
)
[ -n "$r" ] && echo "$r" | while read -r name verdict rest; do
    if [ "$verdict" = ok ]; then echo "PASS $T_SUITE/$name"; else echo "FAIL $T_SUITE/$name"; echo "  $verdict $rest"; fi
done
[ -n "$r" ] || { echo "FAIL $T_SUITE/python"; head -c 2000 "$T_ERR"; }
