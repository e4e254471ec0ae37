#!/bin/bash
# train_torch.sh — the PyTorch peer (scripts/revela_torch.py: transformers
# 4.45 Llama/Qwen2 modules + PEFT LoRA + in-batch attention materialised the
# way the original Revela code does it) against the JAX float64 goldens of
# scripts/revela_reference.py (tests/fixtures/train/step_{llama,qwen2}
# .safetensors), in float64 and float32: loss, q, p, S, W, dL/dW and every
# LoRA gradient of the retriever and the LM, relative error <= 1e-4. The C
# step is checked against the same goldens by tests/unit/test_train_step.c,
# so the three implementations agree. A golden perturbed by 1e-3 must make
# the check fail (the comparison is live).
# Python: $RV_TORCH_PYTHON, default the .venv-torch of tests/ref/venv-torch.sh
# (created when missing); SKIP when there is none.
set -u
cd "$(dirname "$0")/../.."
export RV_ROOT=$PWD
. tests/cli/lib.sh
T_SUITE=ref-train-torch
. tests/ref/torch-python.inc
FX=tests/fixtures/train

for f in llama qwen2; do
    for d in fp64 fp32; do
        t_run "$PY" scripts/revela_torch.py check "$FX/step_$f.safetensors" --dtype "$d"
        # every quantity must be reported: 2 + 8 lines per variant of the fixture
        nv=$("$PY" -c 'import json, sys; from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f: print(len(json.loads(f.metadata()["variants"])))' "$FX/step_$f.safetensors")
        n=$(grep -c '^\(PASS\|FAIL\) ' "$T_OUT")
        sed "s#^\(PASS\|FAIL\) torch-check/#\1 $T_SUITE/#" "$T_OUT"
        t_eq "$f-$d-lines" "$n" $((2 + 8 * nv))
        t_exit "$f-$d-status" 0
        grep '^#' "$T_ERR" | head -n 1 | sed 's/^#/ /'
    done
done

# the check must notice a golden gradient off by 1e-3 (relative)
"$PY" - "$FX/step_llama.safetensors" "$T_DIR/bad.safetensors" <<'PY' 2>"$T_ERR"
import sys
from safetensors import safe_open
from safetensors.torch import save_file
with safe_open(sys.argv[1], "pt") as f:
    meta, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
k = "out.vnorm.grad.lm.layers.1.down_proj.lora_B"
t[k] = t[k] * 1.001
save_file(t, sys.argv[2], metadata=meta)
PY
t_run "$PY" scripts/revela_torch.py check "$T_DIR/bad.safetensors"
t_exit perturbed-golden-fails 1
bad=$(grep '^FAIL ' "$T_OUT" | sed 's/ max-rel-err.*//')
t_eq perturbed-golden-names-it "$bad" "FAIL torch-check/bad.safetensors[fp64]/vnorm/grad.lm"
