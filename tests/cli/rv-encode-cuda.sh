#!/bin/bash
# rv-encode --device cuda and --shard I/N. The CUDA checks run the backend
# built on the CPU emulator ($BUILD/gpu-emu/librevela-cuda.so, `make gpu-emu`,
# built by `make check`) through RV_CUDA_LIB, on the tiny fixture models, and
# compare with --device cpu (independent of the device code: lib/forward.c)
# and, with the PEFT adapter, with transformers + PEFT's embeddings
# (tiny_encode_ref.jsonl). Where the emulated backend is not built (make
# check-asan) those checks print SKIP. The --shard checks use the CPU path
# and run everywhere. Texts are few and short: the emulator runs each GPU
# thread as a fiber (~1 s per run here).
. "$(dirname "$0")/lib.sh"
FX=$T_ROOT/tests/fixtures/model
ENC=rv-encode
EMU_LIB=$T_EMU_LIB
TOK=$FX/llama_tied   # llama_untied and qwen2 ship no tokenizer; all three share the byte-level vocabulary

# compare NAME GOT.jsonl REF.jsonl MIN_COS MAX_ABS: the same ids in the same
# order, every cosine >= MIN_COS and every element within MAX_ABS (vectors
# are compared as stored: with --no-normalize the cosine is computed on
# normalised copies and MAX_ABS also bounds the raw values)
compare() {
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
          dot = 0; ng = 0; nr = 0; d = 0
          for (i = 1; i <= g[0]; i++) { dot += g[i] * rv[FNR, i]; ng += g[i] * g[i]; nr += rv[FNR, i] * rv[FNR, i]
                                        e = g[i] - rv[FNR, i]; if (e < 0) e = -e; if (e > d) d = e }
          c = (ng > 0 && nr > 0) ? dot / sqrt(ng * nr) : 0
          if (c < mincos || d > maxabs) { printf "record %d (%s): cosine %.7f, max abs diff %.3g\n", FNR, id, c, d; bad = 1 }
          if (c < worst || n == 1) worst = c }
        END { if (n != nref) { print "got " n " records, want " nref; bad = 1 }
              if (n == 0) { print "no records"; bad = 1 }
              if (!bad) printf "ok %.7f\n", worst }' "$3" "$2")
    case $r in
    ok*) t_pass "$1"; echo "INFO $T_SUITE/$1: min cosine ${r#ok }" ;;
    *) t_fail "$1" "$r" ;;
    esac
}

# metadata of an emb file without the fields that must differ between
# devices; MODE cuda also requires them to be present
meta_of() { rv-cat --info "$1" | sed -n 's/^metadata: //p'; }
strip_device() { sed 's/,"device":"cuda","gpu_dtype":"\(bf16\|f32\)"//'; }

# ---------------------------------------------------------------- usage errors (no backend needed)
t_run $ENC --help
t_eq help-device "$(grep -c -- '--device D' "$T_OUT")$(grep -c -- '--shard I/N' "$T_OUT")" 11
t_run $ENC -m "$FX/llama_tied" --device tpu "$FX/tiny_texts.jsonl"
t_exit bad-device-exit 2
t_stderr_has bad-device-message '--device: expected cpu or cuda, found "tpu"'
t_run $ENC -m "$FX/llama_tied" --device cuda --gpu-dtype f16 "$FX/tiny_texts.jsonl"
t_exit bad-gpu-dtype-exit 2
t_run $ENC -m "$FX/llama_tied" --gpu 0 "$FX/tiny_texts.jsonl"
t_exit gpu-without-cuda-exit 2
t_stderr_has gpu-without-cuda-message "--gpu, --gpu-dtype and --gpu-profile need --device cuda"
t_run $ENC -m "$FX/llama_tied" --gpu-profile "$FX/tiny_texts.jsonl"
t_exit gpu-profile-without-cuda-exit 2
for bad in 3/3 1 0/0 a/2 1/ -1/2 2/1; do
    t_run $ENC -m "$FX/llama_tied" --shard "$bad" "$FX/tiny_texts.jsonl"
    t_exit "bad-shard-${bad//\//_}-exit" 2
done
t_stderr_has bad-shard-message "--shard 2/1: expected 0 <= I < N"

# no backend: the loader's message, exit 1, no output left behind
t_run env RV_CUDA_LIB="$T_DIR/no-such-lib.so" $ENC -q -m "$FX/llama_tied" --device cuda -o "$T_DIR/nolib.emb" \
    "$FX/tiny_texts.jsonl"
t_exit no-backend-exit 1
t_stderr_has no-backend-message "CUDA backend not available ($T_DIR/no-such-lib.so: not found)"
t_eq no-backend-no-output "$(ls "$T_DIR"/nolib.emb* 2>/dev/null | wc -l)" 0

# ---------------------------------------------------------------- --shard (CPU path)
# 7 inputs, 3 shards: shard i holds positions i, i+3, ... in input order; with
# --batch-size 1 every text is encoded alone, so the vectors do not depend
# on what else is in the shard and the union is byte-identical to one run.
for i in 1 2 3 4 5 6 7; do printf '{"_id":"p%d","text":"shard text number %d%s"}\n' $((i - 1)) "$i" "$(head -c $((i * 3)) /dev/zero | tr '\0' x)"; done > "$T_DIR/seven.jsonl"
t_run $ENC -q -m "$FX/llama_tied" --batch-size 1 -o "$T_DIR/all.emb" "$T_DIR/seven.jsonl"
t_exit shard-whole-exit 0
rv-cat "$T_DIR/all.emb" > "$T_DIR/all.jsonl"
: > "$T_DIR/union.jsonl"
for i in 0 1 2; do
    t_run $ENC -q -m "$FX/llama_tied" --batch-size 1 --shard $i/3 -o "$T_DIR/s$i.emb" "$T_DIR/seven.jsonl"
    t_exit "shard-$i-exit" 0
    rv-cat "$T_DIR/s$i.emb" > "$T_DIR/s$i.jsonl"
    want=$(seq $i 3 6 | sed 's/^/p/' | paste -sd' ')
    t_eq "shard-$i-positions" "$(sed 's/^{"id":"\([^"]*\)".*/\1/' "$T_DIR/s$i.jsonl" | paste -sd' ')" "$want"
    t_eq "shard-$i-meta" "$(meta_of "$T_DIR/s$i.emb" | grep -o ',"shard":"[0-9/]*"}$')" ",\"shard\":\"$i/3\"}"
    cat "$T_DIR/s$i.jsonl" >> "$T_DIR/union.jsonl"
done
t_eq shard-each-once "$(sed 's/^{"id":"\([^"]*\)".*/\1/' "$T_DIR/union.jsonl" | sort | uniq -d | wc -l) $(wc -l < "$T_DIR/union.jsonl")" "0 7"
sort "$T_DIR/union.jsonl" > "$T_DIR/union.sorted"; sort "$T_DIR/all.jsonl" > "$T_DIR/all.sorted"
t_files_eq shard-union-equals-whole "$T_DIR/union.sorted" "$T_DIR/all.sorted"
t_eq shard-meta-rest "$(meta_of "$T_DIR/s1.emb" | sed 's/,"shard":"1\/3"//')" "$(meta_of "$T_DIR/all.emb")"
# rv-search over the shards as repeated --corpus = over the unsharded file
# (the vectors are the same bytes; the texts make no exactly tied scores)
head -3 "$T_DIR/seven.jsonl" > "$T_DIR/q.jsonl"
$ENC -q -m "$FX/llama_tied" -o "$T_DIR/q.emb" "$T_DIR/q.jsonl"
rv-search -q -k 7 --corpus "$T_DIR/all.emb" "$T_DIR/q.emb" > "$T_DIR/run.whole" 2>/dev/null
rv-search -q -k 7 --corpus "$T_DIR/s0.emb" --corpus "$T_DIR/s1.emb" --corpus "$T_DIR/s2.emb" "$T_DIR/q.emb" \
    > "$T_DIR/run.shards" 2>/dev/null
t_eq shard-search-lines "$(wc -l < "$T_DIR/run.shards")" 21
t_files_eq shard-search-same-run "$T_DIR/run.shards" "$T_DIR/run.whole"
# more shards than inputs: the empty shards are valid, empty streams
t_run $ENC -q -m "$FX/llama_tied" --shard 9/10 -o "$T_DIR/empty.emb" "$T_DIR/seven.jsonl"
t_exit shard-empty-exit 0
t_eq shard-empty-records "$(rv-cat --info "$T_DIR/empty.emb" | sed -n 's/^records: //p')" 0

# ---------------------------------------------------------------- --device cuda on the emulator
cuda_checks="tied-f32 tied-f32-meta tied-bf16 untied-f32 qwen2-mean-f32 adapter-f32 adapter-vs-transformers-peft
    shard-cuda-union gpu-profile-exit gpu-profile-same-vectors gpu-profile-ops gpu-profile-products no-device-exit no-device-message bad-gpu-exit bad-gpu-message oom-exit oom-message oom-no-output"
if [ ! -f "$EMU_LIB" ]; then
    for c in $cuda_checks; do echo "SKIP $T_SUITE/$c (no emulated CUDA backend at $EMU_LIB; make gpu-emu builds it)"; done
    exit 0
fi
export RV_CUDA_LIB=$EMU_LIB

# encode_both NAME MODEL_ARGS...: CPU and CUDA runs on the tiny texts, the
# extra arguments (after --) going to the CUDA run only
encode_both() {
    local name=$1; shift
    local common=() cuda=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do common+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    cuda=("$@")
    $ENC -q "${common[@]}" -o "$T_DIR/$name.cpu.emb" "$FX/tiny_texts.jsonl" 2>"$T_DIR/$name.cpu.err"
    t_run $ENC -q "${common[@]}" --device cuda "${cuda[@]}" -o "$T_DIR/$name.cuda.emb" "$FX/tiny_texts.jsonl"
    if [ "$T_RC" -ne 0 ] || [ ! -f "$T_DIR/$name.cpu.emb" ]; then
        t_fail "$name" "exit $T_RC (cpu: $(head -c 300 "$T_DIR/$name.cpu.err"))"; return 1
    fi
    rv-cat "$T_DIR/$name.cpu.emb" > "$T_DIR/$name.cpu.jsonl"
    rv-cat "$T_DIR/$name.cuda.emb" > "$T_DIR/$name.cuda.jsonl"
}

# the tied llama in f32 (cosine bound for exact-ish parity) with the mteb prefix
if encode_both tied-f32 -m "$FX/llama_tied" -p 'passage:  ' --max-len 24 -- --gpu-dtype f32; then
    compare tied-f32 "$T_DIR/tied-f32.cuda.jsonl" "$T_DIR/tied-f32.cpu.jsonl" 0.9999 1e-4
    t_eq tied-f32-meta "$(meta_of "$T_DIR/tied-f32.cuda.emb" | grep -c ',"device":"cuda","gpu_dtype":"f32"}$') $(meta_of "$T_DIR/tied-f32.cuda.emb" | strip_device)" \
        "1 $(meta_of "$T_DIR/tied-f32.cpu.emb")"
fi
# the default bf16: storage rounding bounds the agreement (one text per
# batch, also the reference for the device --shard check below)
if encode_both tied-bf16 -m "$FX/llama_tied" --max-len 24 --batch-size 1 --; then
    compare tied-bf16 "$T_DIR/tied-bf16.cuda.jsonl" "$T_DIR/tied-bf16.cpu.jsonl" 0.999 1
fi
# untied llama with attention biases, sharded safetensors, several batches
if encode_both untied-f32 -m "$FX/llama_untied" --tokenizer "$TOK" --max-len 24 --batch-tokens 16 --batch-size 2 \
    -- --gpu-dtype f32; then
    compare untied-f32 "$T_DIR/untied-f32.cuda.jsonl" "$T_DIR/untied-f32.cpu.jsonl" 0.9999 1e-4
fi
# qwen2 (q/k/v biases), mean pooling, raw vectors
if encode_both qwen2-mean-f32 -m "$FX/qwen2" --tokenizer "$TOK" --max-len 24 --pooling mean --no-normalize \
    -- --gpu-dtype f32; then
    compare qwen2-mean-f32 "$T_DIR/qwen2-mean-f32.cuda.jsonl" "$T_DIR/qwen2-mean-f32.cpu.jsonl" 0.9999 1e-3
fi
# the PEFT adapter merged on the host, then uploaded; also against the
# transformers + PEFT reference (independent of revela's code)
if encode_both adapter-f32 -m "$FX/llama_tied" -a "$FX/adapter_retriever" -p 'passage:  ' --max-len 24 \
    -- --gpu-dtype f32; then
    compare adapter-f32 "$T_DIR/adapter-f32.cuda.jsonl" "$T_DIR/adapter-f32.cpu.jsonl" 0.9999 1e-4
    compare adapter-vs-transformers-peft "$T_DIR/adapter-f32.cuda.jsonl" "$FX/tiny_encode_ref.jsonl" 0.9999 1e-4
fi

# --shard on the device: the union of 2 shards = the unsharded device run
# (the same arguments; one text per batch, so byte-identical vectors)
: > "$T_DIR/cu.union"
for i in 0 1; do
    $ENC -q -m "$FX/llama_tied" --max-len 24 --batch-size 1 --device cuda --shard $i/2 -o "$T_DIR/cu$i.emb" \
        "$FX/tiny_texts.jsonl" && rv-cat "$T_DIR/cu$i.emb" >> "$T_DIR/cu.union"
done
sort "$T_DIR/cu.union" > "$T_DIR/cu.union.sorted"
if [ -f "$T_DIR/tied-bf16.cuda.jsonl" ] && [ "$(wc -l < "$T_DIR/tied-bf16.cuda.jsonl")" -eq 5 ]; then
    sort "$T_DIR/tied-bf16.cuda.jsonl" > "$T_DIR/cu.sorted"
    t_files_eq shard-cuda-union "$T_DIR/cu.union.sorted" "$T_DIR/cu.sorted"
else
    t_fail shard-cuda-union "no unsharded device run of 5 records to compare with"
fi

# --gpu-profile: the run's device time per operation and per product on stderr (even with -q: it
# is what was asked for); the vectors are the unprofiled run's, byte for byte
t_run $ENC -q -m "$FX/llama_tied" --max-len 24 --batch-size 1 --device cuda --gpu-profile -o "$T_DIR/prof.emb" \
    "$FX/tiny_texts.jsonl"
t_exit gpu-profile-exit 0
rv-cat "$T_DIR/prof.emb" > "$T_DIR/prof.jsonl" 2>/dev/null
t_files_eq gpu-profile-same-vectors "$T_DIR/prof.jsonl" "$T_DIR/tied-bf16.cuda.jsonl"
# 5 texts one at a time through 2 layers: 70 projections (7 a layer), 10 attentions
t_eq gpu-profile-ops "$(sed -n '/device time per run over 1 run/,/untimed/p' "$T_ERR" |
    grep -E '^  (linear|causal_attention) ' | sed 's/^  \([a-z_]*\) .*(\([0-9]*\) calls)$/\1 \2/' | sort | paste -sd' ')" \
    "causal_attention 10 linear 70"
t_eq gpu-profile-products "$(sed -n '/the largest matrix products/,$p' "$T_ERR" | sed 1d | awk '
    / linear .* cublasLt / { ok++ } { n++ } END { print (n > 0 && ok == n) ? "all linear on cublasLt" : ok "/" n }')" \
    "all linear on cublasLt"

# errors: no device, a device index past the count, out of device memory
# (the emulator's device memory is host memory: ulimit -v makes a 16M-token
# batch's activations fail to allocate)
t_run env RV_EMU_NO_DEVICE=1 $ENC -q -m "$FX/llama_tied" --device cuda -o "$T_DIR/nodev.emb" "$FX/tiny_texts.jsonl"
t_exit no-device-exit 1
t_stderr_has no-device-message "--device cuda: no CUDA device: "
t_run $ENC -q -m "$FX/llama_tied" --device cuda --gpu 1 -o "$T_DIR/gpu1.emb" "$FX/tiny_texts.jsonl"
t_exit bad-gpu-exit 1
t_stderr_has bad-gpu-message "CUDA device 1 does not exist (1 device: 0..0)"
t_run bash -c 'ulimit -v 3000000 && exec "$@"' _ $ENC -q -m "$FX/llama_tied" --device cuda --batch-tokens 16777216 \
    -o "$T_DIR/oom.emb" "$FX/tiny_texts.jsonl"
t_exit oom-exit 1
t_stderr_has oom-message "activations for 16777216-token batches"
t_eq oom-no-output "$(ls "$T_DIR"/oom.emb* 2>/dev/null | wc -l)" 0
