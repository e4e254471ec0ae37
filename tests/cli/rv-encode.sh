#!/bin/bash
# rv-encode CLI tests. Offline: the tiny llama fixture with its byte-level
# tokenizer and PEFT adapter, against embeddings computed by transformers +
# PEFT + tokenizers as mteb's RepLLaMA wrapper does (tiny_encode_ref.jsonl,
# scripts/make-model-fixtures.py). Online-or-cached: the real SmolLM2-135M
# GGUF (scripts/get-model.sh) against the NumPy reference embeddings
# (smollm2_ref_emb.jsonl); SKIP when the model cannot be fetched.
. "$(dirname "$0")/lib.sh"
FX=$T_ROOT/tests/fixtures/model
ENC=rv-encode

# compare_emb NAME GOT.jsonl REF.jsonl MIN_COS MAX_ABS: same ids in the same
# order, every cosine >= MIN_COS and every element within MAX_ABS
compare_emb() {
    local r
    r=$(awk -v mincos="$4" -v maxabs="$5" '
        function parse(line, v,   s, id, n) {
            match(line, /"id": *"[^"]*"/); id = substr(line, RSTART, RLENGTH); sub(/"id": *"/, "", id); sub(/"$/, "", id)
            s = line; sub(/.*"vector": *\[/, "", s); sub(/\].*/, "", s)
            n = split(s, v, ","); v[0] = n; return id
        }
        NR == FNR { rid[FNR] = parse($0, t); rn[FNR] = t[0]; for (i = 1; i <= t[0]; i++) rv[FNR, i] = t[i]; nref = FNR; next }
        { id = parse($0, g); n++
          if (id != rid[FNR]) { print "record " FNR ": id " id ", want " rid[FNR]; bad = 1; next }
          if (g[0] != rn[FNR]) { print "record " FNR ": dim " g[0] ", want " rn[FNR]; bad = 1; next }
          c = 0; d = 0
          for (i = 1; i <= g[0]; i++) { c += g[i] * rv[FNR, i]; e = g[i] - rv[FNR, i]; if (e < 0) e = -e; if (e > d) d = e }
          if (c < mincos || d > maxabs) { printf "record %d (%s): cosine %.7f, max abs diff %.3g\n", FNR, id, c, d; bad = 1 }
          if (c < worst || n == 1) worst = c }
        END { if (n != nref) { print "got " n " records, want " nref; bad = 1 }
              if (!bad) printf "ok %.7f\n", worst }' "$3" "$2")
    case $r in
    ok*) t_pass "$1"; echo "  $1: min cosine ${r#ok }" ;;
    *) t_fail "$1" "$r" ;;
    esac
}

# --- usage and errors
t_run $ENC --help
t_exit help-exit 0
t_eq help-mentions-prefix "$(grep -c "\"passage:  \"" "$T_OUT")" 1
t_run $ENC "$FX/tiny_texts.jsonl"
t_exit no-model-exit 2
t_stderr_has no-model-message "--model PATH is required"
t_run $ENC -m "$FX/llama_tied" --pooling max "$FX/tiny_texts.jsonl"
t_exit bad-pooling-exit 2
t_run $ENC -m "$FX/llama_tied" --frobnicate
t_exit unknown-option-exit 2
t_run $ENC -m "$FX/no-such-model" -o "$T_DIR/x.emb" "$FX/tiny_texts.jsonl"
t_exit missing-model-exit 1
t_stderr_has missing-model-message "no-such-model"
t_run $ENC -m "$FX/unknown_arch.gguf" -o "$T_DIR/x.emb" "$FX/tiny_texts.jsonl"
t_exit unknown-arch-exit 1
t_stderr_has unknown-arch-message 'general.architecture: expected "llama" or "qwen2"'
printf '{"_id":"a","text":"fine"}\n{"_id":"b","text":7}\n' > "$T_DIR/bad.jsonl"
t_run $ENC -q -m "$FX/llama_tied" -o "$T_DIR/bad.emb" "$T_DIR/bad.jsonl"
t_exit bad-input-exit 1
t_stderr_has bad-input-message "bad.jsonl:2: text: expected a string, found a number"
t_eq bad-input-no-output "$(ls "$T_DIR"/bad.emb* 2>/dev/null | wc -l)" 0

# --- the tiny llama + PEFT adapter against transformers + PEFT (mteb convention)
t_run $ENC -q -m "$FX/llama_tied" -a "$FX/adapter_retriever" -p 'passage:  ' --max-len 24 \
    -o "$T_DIR/tiny.emb" --npy "$T_DIR/tiny.npy" "$FX/tiny_texts.jsonl"
t_exit tiny-exit 0
rv-cat "$T_DIR/tiny.emb" > "$T_DIR/tiny.jsonl"
compare_emb tiny-vs-transformers-peft "$T_DIR/tiny.jsonl" "$FX/tiny_encode_ref.jsonl" 0.99999 1e-5
t_run rv-cat --info "$T_DIR/tiny.emb"
t_eq tiny-meta "$(grep -o '"dim":64,"dtype":"f32".*"prefix":"passage:  ","strip":true,"pooling":"eos","normalized":true,"max_len":24,"eos_id":2' "$T_OUT" | wc -l)" 1
# .npy: 128-byte v1.0 header, shape (5, 64), then 5*64 float32
t_eq npy-header "$(head -c 128 "$T_DIR/tiny.npy" | tail -c +11 | sed 's/ *$//')" "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 64), }"
t_eq npy-size "$(stat -c %s "$T_DIR/tiny.npy")" $((128 + 5 * 64 * 4))

# the same texts as a doc stream, in a different batching, give the same vectors
rv-cat --encode doc "$FX/tiny_texts.jsonl" > "$T_DIR/tiny.docs"
t_run_in "$T_DIR/tiny.docs" $ENC -q -m "$FX/llama_tied" -a "$FX/adapter_retriever" -p 'passage:  ' --max-len 24 \
    --batch-tokens 1 --window 2 --threads 1
t_exit doc-stream-exit 0
rv-cat "$T_OUT" > "$T_DIR/tiny2.jsonl"
compare_emb doc-stream-same "$T_DIR/tiny2.jsonl" "$FX/tiny_encode_ref.jsonl" 0.99999 1e-5

# mean pooling without normalisation differs from EOS pooling; f16 output is an emb stream of f16
t_run $ENC -q -m "$FX/llama_tied" --pooling mean --no-normalize --dtype f16 "$FX/tiny_texts.jsonl"
t_exit mean-f16-exit 0
t_eq mean-f16-meta "$(rv-cat --info "$T_OUT" | grep -c '"dtype":"f16".*"pooling":"mean","normalized":false')" 1

# --- the real SmolLM2-135M GGUF against the NumPy reference
if G=$("$T_ROOT/scripts/get-model.sh" 2>/dev/null | tail -n 1) && [ -f "$G" ]; then
    t_run $ENC -q -m "$G" -p 'passage:  ' -o "$T_DIR/smol_d.emb" "$FX/smollm2_docs.jsonl"
    t_exit smollm2-docs-exit 0
    t_run $ENC -q -m "$G" -p 'query:  ' -o "$T_DIR/smol_q.emb" "$FX/smollm2_queries.jsonl"
    t_exit smollm2-queries-exit 0
    rv-cat "$T_DIR/smol_d.emb" "$T_DIR/smol_q.emb" > "$T_DIR/smol.jsonl"
    compare_emb smollm2-vs-numpy-reference "$T_DIR/smol.jsonl" "$FX/smollm2_ref_emb.jsonl" 0.999 0.01
else
    echo "SKIP $T_SUITE/smollm2 (scripts/get-model.sh could not fetch the GGUF)"
fi
