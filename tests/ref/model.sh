#!/bin/bash
# model.sh — live reference check of the model runtime (make check-ref): the
# NumPy reference of scripts/make-model-fixtures.py --smollm2 (gguf-py
# dequantisation + the LLaMA equations + a tokenizers BPE built from the GGUF)
# is run afresh on the real SmolLM2-135M GGUF, and rv-encode's embeddings of
# real Cranfield documents and queries must match it (cosine >= 0.999); the
# fresh reference must also reproduce the committed fixture. Needs numpy,
# gguf, safetensors and tokenizers in the reference venv; SKIP otherwise.
. "$(dirname "$0")/../cli/lib.sh"
T_SUITE=ref-model
. "$T_ROOT/tests/ref/venv.sh"
FX=$T_ROOT/tests/fixtures/model
if [ "$RV_VENV_OK" != 1 ] || ! python -c 'import numpy, gguf, safetensors, tokenizers' 2>/dev/null; then
    echo "SKIP $T_SUITE (the reference venv lacks gguf/safetensors: add them to scripts/requirements-ref.txt)"
    exit 0
fi
if ! G=$("$T_ROOT/scripts/get-model.sh" 2>/dev/null | tail -n 1) || [ ! -f "$G" ]; then
    echo "SKIP $T_SUITE (scripts/get-model.sh could not fetch the GGUF)"
    exit 0
fi

cmp_emb() {   # NAME GOT REF MINCOS
    local r
    r=$(python - "$2" "$3" "$4" <<'PY'
import json, sys
import numpy as np
got = [json.loads(l) for l in open(sys.argv[1])]
ref = [json.loads(l) for l in open(sys.argv[2])]
assert [g["id"] for g in got] == [r["id"] for r in ref], "ids differ"
c = min(float(np.dot(g["vector"], r["vector"])) for g, r in zip(got, ref))
print(("ok %.7f" if c >= float(sys.argv[3]) else "bad %.7f") % c)
PY
)
    case $r in ok*) t_pass "$1"; echo "  $1: min cosine ${r#ok }" ;; *) t_fail "$1" "$r" ;; esac
}

python "$T_ROOT/scripts/make-model-fixtures.py" --smollm2 "$G" "$T_DIR/ref.safetensors" 2> "$T_ERR"
T_RC=$?
t_exit reference-runs 0
cmp_emb reference-reproduces-fixture "$T_DIR/smollm2_ref_emb.jsonl" "$FX/smollm2_ref_emb.jsonl" 0.999999
rv-encode -q -m "$G" -p 'passage:  ' -o "$T_DIR/d.emb" "$FX/smollm2_docs.jsonl" &&
    rv-encode -q -m "$G" -p 'query:  ' -o "$T_DIR/q.emb" "$FX/smollm2_queries.jsonl" &&
    rv-cat "$T_DIR/d.emb" "$T_DIR/q.emb" > "$T_DIR/got.jsonl"
T_RC=$?
t_exit rv-encode-runs 0
cmp_emb rv-encode-vs-numpy-reference "$T_DIR/got.jsonl" "$T_DIR/smollm2_ref_emb.jsonl" 0.999
