#!/bin/bash
# rv-search --device cuda on the CPU emulator of the CUDA backend
# ($BUILD/gpu-emu/librevela-cuda.so, kernels/dev/cuda_emu.h): the GPU path
# (fp32 GEMM, block radix select, merge over corpus blocks and shards, exact
# rescoring on the host) must print byte for byte what --device cpu prints,
# and the NumPy-made references of tests/fixtures/search where they apply.
# Small GPU blocks and query tiles (RV_SEARCH_GPU_*) force many merges; the
# emulator is slow, so the shapes are small. Without the emulated backend
# (make check-asan does not build it) every check prints SKIP.
. "$(dirname "$0")/lib.sh"
F=$T_ROOT/tests/fixtures/search
D=$T_DIR
B=${BUILD:-build}
case $B in /*) ;; *) B=$T_ROOT/$B ;; esac
EMU=$B/gpu-emu/librevela-cuda.so

# The error for a missing backend needs no backend at all.
rv-cat --encode emb -o "$D/ic.emb" "$F/int_corpus.jsonl"
rv-cat --encode emb -o "$D/iq.emb" "$F/int_queries.jsonl"
t_run env RV_CUDA_LIB="$D/no-such-backend.so" rv-search -q --device cuda --corpus "$D/ic.emb" "$D/iq.emb"
t_exit no_backend.exit 1
t_stderr_has no_backend.message "CUDA backend not available ($D/no-such-backend.so: not found)"
t_eq no_backend.no_output "$(wc -c < "$T_OUT")" 0

if [ ! -f "$EMU" ]; then
    for n in no_device int_fixture random_shards streamed f16_bf16 maxp stream_output k_limit; do
        echo "SKIP rv-search-cuda/$n (no emulated backend $EMU; make gpu-emu builds it)"
    done
    exit 0
fi
export RV_CUDA_LIB=$EMU

# cuda_vs_cpu NAME ARGS...: the same command on both devices, identical stdout.
cuda_vs_cpu() {
    local name=$1; shift
    t_run rv-search -q --device cpu "$@"; t_exit "$name.cpu_exit" 0
    cp "$T_OUT" "$D/$name.cpu"
    t_run rv-search --device cuda "$@"; t_exit "$name.cuda_exit" 0
    cp "$T_OUT" "$D/$name.cuda"
    t_files_eq "$name.same_as_cpu" "$D/$name.cuda" "$D/$name.cpu"
    if [ -s "$D/$name.cuda" ]; then t_pass "$name.nonempty"; else t_fail "$name.nonempty" "empty run"; fi
}

# --- integer vectors (masses of exact ties), three shards of three dtypes,
# against the NumPy references; blocks of 37 rows and tiles of 3 queries.
head -n 70 "$F/int_corpus.jsonl" > "$D/s1.jsonl"
sed -n '71,140p' "$F/int_corpus.jsonl" > "$D/s2.jsonl"
tail -n +141 "$F/int_corpus.jsonl" > "$D/s3.jsonl"
rv-cat --encode emb --dtype f16 -o "$D/s1.emb" "$D/s1.jsonl"
rv-cat --encode emb -o "$D/s2.emb" "$D/s2.jsonl"
rv-cat --encode emb --dtype bf16 -o "$D/s3.emb" "$D/s3.jsonl"
for k in 1 10 1000; do
    RV_SEARCH_GPU_BLOCK=37 RV_SEARCH_GPU_QUERY_TILE=3 \
        cuda_vs_cpu "int_k$k" --corpus "$D/s1.emb" --corpus "$D/s2.emb" --corpus "$D/s3.emb" -k $k "$D/iq.emb"
    t_files_eq "int_k$k.reference" "$D/int_k$k.cuda" "$F/int_k$k.trec"
    # Small integers: GPU and sgemm scores are both exact, so with the same
    # tie order (score, then row) the candidates, and the counts of rescored
    # candidates and full rescans, are the CPU's too.
    stats() { grep -o '[0-9]* candidates rescored exactly, [0-9]* queries rescanned in full' "$T_ERR"; }
    t_stderr_has "int_k$k.on_device" "device cuda: CPU emulator"
    cuda_stats=$(stats)
    t_run rv-search --device cpu --corpus "$D/s1.emb" --corpus "$D/s2.emb" --corpus "$D/s3.emb" -k $k "$D/iq.emb"
    t_eq "int_k$k.same_candidates" "$cuda_stats" "$(stats)"
done
t_run rv-search -q --device cuda --corpus-npy "$F/int_corpus.npy" --corpus-ids "$F/int_corpus.ids" -k 10 \
    --queries-npy "$F/int_queries.npy" --queries-ids "$F/int_queries.ids"
t_exit int_npy.exit 0; t_files_eq int_npy.reference "$T_OUT" "$F/int_k10.trec"

# --- random vectors: shards of odd sizes (one of a single row), duplicated
# rows (ties by corpus order across shards), a zero row, and queries that
# equal a corpus row, are zero (every score ties: the exact rescan path) or
# are random. awk makes them so the test needs no Python.
gen() {  # seed rows dim prefix: random vectors with 6 decimals, JSON lines
    awk -v seed="$1" -v n="$2" -v d="$3" -v p="$4" 'BEGIN { srand(seed);
        for (i = 0; i < n; i++) { printf "{\"id\": \"%s%d\", \"vector\": [", p, i;
            for (j = 0; j < d; j++) printf "%s%.6f", j ? ", " : "", 2 * rand() - 1; print "]}" } }'
}
DIM=13
gen 11 101 $DIM a > "$D/r1.jsonl"
gen 12 1 $DIM b > "$D/r2.jsonl"
gen 13 150 $DIM c > "$D/r3.jsonl"
# duplicates: r3 rows 0-4 repeat r1 rows 0-4 (so each tie spans two shards), r3 row 9 is zero
{ sed -n '1,5p' "$D/r1.jsonl" | sed 's/"id": "a/"id": "dup/'; tail -n +6 "$D/r3.jsonl" | head -n 4
  echo "{\"id\": \"zero\", \"vector\": [$(printf '0.0, %.0s' $(seq 2 $DIM))0.0]}"
  tail -n +11 "$D/r3.jsonl"; } > "$D/r3d.jsonl"
for s in r1 r2; do rv-cat --encode emb -o "$D/$s.emb" "$D/$s.jsonl"; done
rv-cat --encode emb -o "$D/r3.emb" "$D/r3d.jsonl"
gen 21 15 $DIM q > "$D/rq.jsonl"
{ cat "$D/rq.jsonl"; sed -n '3p' "$D/r1.jsonl" | sed 's/"id": "a2"/"id": "qdup"/'
  echo "{\"id\": \"qzero\", \"vector\": [$(printf '0.0, %.0s' $(seq 2 $DIM))0.0]}"; } > "$D/rq2.jsonl"
rv-cat --encode emb -o "$D/rq.emb" "$D/rq.jsonl"
rv-cat --encode emb -o "$D/rq2.emb" "$D/rq2.jsonl"
R="--corpus $D/r1.emb --corpus $D/r2.emb --corpus $D/r3.emb"
for k in 1 7 40 1000; do
    # shellcheck disable=SC2086
    RV_SEARCH_GPU_BLOCK=29 RV_SEARCH_GPU_QUERY_TILE=4 cuda_vs_cpu "random_k$k" $R -k $k "$D/rq2.emb"
done
t_eq random_k1000.whole_corpus "$(grep -c '^qzero ' "$D/random_k1000.cuda")" 252
t_eq random_k1.dup_query_finds_first_copy "$(grep '^qdup ' "$D/random_k1.cuda" | cut -d' ' -f3)" a2
# Random queries alone: the GPU candidates suffice (no exact rescans), so
# the parity above is the selection's own, not the fallback's.
# shellcheck disable=SC2086
RV_SEARCH_GPU_BLOCK=29 cuda_vs_cpu random_plain $R -k 7 "$D/rq.emb"
t_stderr_has random_plain.no_rescans ", 0 queries rescanned in full"
# default block (the whole corpus in one GEMM) and a single query tile
# shellcheck disable=SC2086
cuda_vs_cpu random_one_block $R -k 40 "$D/rq2.emb"

# --- streamed corpus (not resident): uploaded block by block per query tile
# shellcheck disable=SC2086
RV_SEARCH_GPU_RESIDENT=0 RV_SEARCH_GPU_BLOCK=64 RV_SEARCH_GPU_QUERY_TILE=5 cuda_vs_cpu streamed $R -k 40 "$D/rq2.emb"
t_stderr_has streamed.mode "corpus streamed per query tile"

# --- f16 / bf16 storage of random values (widened on the device)
for t in f16 bf16; do
    rv-cat --encode emb --dtype $t -o "$D/r1$t.emb" "$D/r1.jsonl"
    rv-cat --encode emb --dtype $t -o "$D/r3$t.emb" "$D/r3d.jsonl"
    RV_SEARCH_GPU_BLOCK=50 cuda_vs_cpu "dtype_$t" --corpus "$D/r1$t.emb" --corpus "$D/r3$t.emb" -k 12 "$D/rq2.emb"
done

# --- MaxP (--doc-agg max): the GPU ranks rows, the host keeps each
# document's best; against the NumPy reference, then random chunks of 23
# documents spread over the corpus (DOC#N ids, not adjacent), with the same
# duplicated rows as above, so documents tie too.
rv-cat --encode emb -o "$D/mc.emb" "$F/maxp_corpus.jsonl"
rv-cat --encode emb -o "$D/mq.emb" "$F/maxp_queries.jsonl"
for k in 5 1000; do
    RV_SEARCH_GPU_BLOCK=16 cuda_vs_cpu "maxp_k$k" --corpus "$D/mc.emb" --doc-agg max -k $k "$D/mq.emb"
    t_files_eq "maxp_k$k.reference" "$D/maxp_k$k.cuda" "$F/maxp_k$k.trec"
done
cat "$D/r1.jsonl" "$D/r2.jsonl" "$D/r3d.jsonl" | awk '{ sub(/"id": "[^"]*"/, sprintf("\"id\": \"D%02d#%d\"", (NR * 7) % 23, NR)); print }' > "$D/chunks.jsonl"
rv-cat --encode emb -o "$D/chunks.emb" "$D/chunks.jsonl"
t_eq maxp_random.documents "$(cut -d'#' -f1 "$D/chunks.jsonl" | sort -u | wc -l)" 23
for k in 1 4 30; do
    RV_SEARCH_GPU_BLOCK=41 RV_SEARCH_GPU_QUERY_TILE=6 cuda_vs_cpu "maxp_random_k$k" --corpus "$D/chunks.emb" \
        --doc-agg max -k $k "$D/rq2.emb"
done
t_eq maxp_random_k30.whole "$(grep -c '^q0 ' "$D/maxp_random_k30.cuda")" 23
# one query of random values: the rows asked of the GPU hold the top
# documents, so no exact rescan is needed
RV_SEARCH_GPU_BLOCK=41 cuda_vs_cpu maxp_random_plain --corpus "$D/chunks.emb" --doc-agg max -k 4 "$D/rq.emb"
t_stderr_has maxp_random_plain.no_rescans ", 0 queries rescanned in full"
# One document with 320 chunks (the query scaled down: all the best rows)
# among 180 one-chunk documents: the rows asked of the GPU (2 x mean chunks
# per document x (k + margin) = 228) hold a single document, fewer than k, so the
# query must be rescanned exactly, not answered with one hit.
awk -v d=$DIM -v qf="$D/big_q.jsonl" 'BEGIN { srand(5); for (j = 0; j < d; j++) v[j] = 2 * rand() - 1
    for (i = 0; i < 500; i++) {
        small = i % 5 == 0 || i >= 400
        printf "{\"id\": \"%s\", \"vector\": [", small ? sprintf("S%d", i) : sprintf("BIG#%d", i)
        for (j = 0; j < d; j++) printf "%s%.6f", j ? ", " : "", small ? 0.1 * (2 * rand() - 1) : (1 - i / 1000) * v[j]
        print "]}" }
    printf "{\"id\": \"qbig\", \"vector\": [" > qf
    for (j = 0; j < d; j++) printf "%s%.6f", j ? ", " : "", v[j] > qf
    print "]}" > qf }' > "$D/big_doc.jsonl"
rv-cat --encode emb -o "$D/big_doc.emb" "$D/big_doc.jsonl"
rv-cat --encode emb -o "$D/big_q.emb" "$D/big_q.jsonl"
RV_SEARCH_GPU_BLOCK=64 cuda_vs_cpu maxp_one_big_doc --corpus "$D/big_doc.emb" --doc-agg max -k 5 "$D/big_q.emb"
t_eq maxp_one_big_doc.hits "$(wc -l < "$D/maxp_one_big_doc.cuda")" 5
t_stderr_has maxp_one_big_doc.rescanned ", 1 queries rescanned in full"

# --- run stream output
# shellcheck disable=SC2086
cuda_vs_cpu stream_output $R -k 5 --stream -f "$D/rq.emb"

# --- errors: no device, k beyond the GPU limit
# shellcheck disable=SC2086
t_run env RV_EMU_NO_DEVICE=1 rv-search -q --device cuda $R "$D/rq.emb"
t_exit no_device.exit 1
t_stderr_has no_device.message "no CUDA device: no CUDA-capable device"
awk 'BEGIN { for (i = 0; i < 16385; i++) printf "{\"id\": \"d%d\", \"vector\": [%d.0]}\n", i, i % 7 }' > "$D/big.jsonl"
rv-cat --encode emb -o "$D/big.emb" "$D/big.jsonl"
echo '{"id": "q", "vector": [1.0]}' | rv-cat --encode emb -o "$D/q1.emb"
t_run rv-search -q --device cuda --corpus "$D/big.emb" -k 16385 "$D/q1.emb"
t_exit k_limit.exit 1
t_stderr_has k_limit.message "--k 16385: --device cuda handles k up to 16384; use --device cpu"
# k above the limit is fine when the corpus is smaller (ranked whole)
# shellcheck disable=SC2086
cuda_vs_cpu k_large_small_corpus $R -k 20000 "$D/rq.emb"
