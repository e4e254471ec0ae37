#!/bin/bash
# tests/gpu/comm.sh — the NCCL communicator (kernels/comm_nccl.cu) and the
# bucketed gradient all-reduce (lib/grad_buckets.c) on real GPUs. Needs the
# real backend ($BIN/librevela-cuda.so) and $BUILD/librevela.a (make all).
# Run: `env BIN=bin BUILD=build bash tests/gpu/comm.sh` (about 10 s).
#   nccl-load        libnccl found and loaded (INFO: its version)
#   world1-bits      world size 1 through NCCL: 2^20+3 floats (NaN payloads, infinities,
#                    -0, subnormals among them) split into 37 tensors, 1 MiB buckets,
#                    shuffled readiness, then a plain all-reduce, a host broadcast and a
#                    barrier: the device buffer is bit-for-bit what was uploaded
#   world2-average   only with >= 2 GPUs: two processes (rank r on GPU r, file
#                    rendezvous) reduce gradients drawn from (seed, rank); each rank
#                    computes both ranks' values itself and expects (a + b) / 2 bit for bit
#                    (a sum of two floats does not depend on the order)
# Without a CUDA device or without libnccl: SKIP lines (RV_NCCL_LIB=/path/libnccl.so.2
# points at a library outside the loader's path).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${BIN:-bin}
BUILD=${BUILD:-build}
S=gpu-comm
CHECKS="nccl-load world1-bits world2-average"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL $S/$1"; shift; printf '  %s\n' "$@"; }

[ -f "$ROOT/$BIN/librevela-cuda.so" ] && [ -f "$ROOT/$BUILD/librevela.a" ] ||
    { fail build "$BIN/librevela-cuda.so or $BUILD/librevela.a not built (make all with nvcc)"; exit 1; }
if [ -z "${RV_NCCL_LIB:-}" ]; then   # the toolkit's copy when the loader's path has none
    for d in /usr/local/cuda/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -f "$d/libnccl.so.2" ] && { export RV_NCCL_LIB=$d/libnccl.so.2; break; }
    done
fi

cat >"$W/drv.c" <<'C'
/* One rank: argv rank world rendezvous-path. Exit 0 pass, 1 fail, 77 skip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "comm_nccl.h"
#include "cuda_loader.h"
#include "cuda_ops.h"
#include "error.h"
#include "grad_buckets.h"
#include "launch_env.h"

#define N (((size_t)1 << 20) + 3)
#define NT 37

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* finite values of mixed sign and scale; with specials=1 also NaNs with
 * payloads, infinities, -0 and subnormals (bits taken as they come) */
static float value(int rank, size_t i, int specials)
{
    uint64_t z = mix(((uint64_t)rank << 40) ^ i);
    uint32_t bits = (uint32_t)z;
    if (specials && (z >> 32) % 64 == 0) {
        float f;
        memcpy(&f, &bits, 4);
        return f;   /* any bit pattern */
    }
    int e = (int)((z >> 32) % 24) - 12;
    return ((float)(bits >> 8) / 16777216.0f - 0.5f) * (e >= 0 ? (float)(1u << e) : 1.0f / (float)(1u << -e));
}

#define SYM(var, name)                                                                                \
    __typeof__(&name) var = (__typeof__(&name))rv_cuda_backend_sym(#name);                            \
    if (!var) {                                                                                       \
        fprintf(stderr, "%s\n", rv_error_get());                                                      \
        return 1;                                                                                     \
    }

int main(int argc, char **argv)
{
    int rank = atoi(argv[1]), world = atoi(argv[2]);
    const char *rdv = argv[3];
    if (rv_cuda_backend_load() < 0) {
        fprintf(stderr, "%s\n", rv_error_get());
        return 1;
    }
    SYM(count, rv_cuda_device_count);
    SYM(open_ctx, rv_cuda_open);
    SYM(alloc, rv_cuda_alloc);
    SYM(upload, rv_cuda_upload);
    SYM(download, rv_cuda_download);
    SYM(sync, rv_cuda_sync);
    SYM(version, rv_comm_nccl_version);
    SYM(uid, rv_comm_nccl_unique_id);
    SYM(nopen, rv_comm_nccl_open);
    const char *why = "";
    if (count(&why) < world) {
        printf("SKIP-REASON %d CUDA device(s) (%s), %d needed\n", count(&why), why, world);
        return 77;
    }
    const char *v = version();
    if (!v) {
        printf("SKIP-REASON %s\n", rv_error_get());
        return 77;
    }
    if (rank == 0)
        printf("INFO libnccl %s\n", v);
    rv_cuda *ctx = open_ctx(rank);
    if (!ctx) {
        fprintf(stderr, "rank %d: %s\n", rank, rv_error_get());
        return 1;
    }
    unsigned char id[RV_NCCL_ID_BYTES] = {0};
    if (rank == 0 && uid(id, sizeof id) < 0) {
        fprintf(stderr, "%s\n", rv_error_get());
        return 1;
    }
    if (world > 1 && rv_rendezvous_file(rdv, rank, id, sizeof id, 60) < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, rv_error_get());
        return 1;
    }
    rv_comm *c = nopen(ctx, rank, world, id, sizeof id);
    if (!c) {
        fprintf(stderr, "rank %d: %s\n", rank, rv_error_get());
        return 1;
    }
    if (rank == 0 && world > 1)
        rv_rendezvous_file_remove(rdv);
    const int specials = world == 1;
    float *host = malloc(N * sizeof *host), *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
    for (size_t i = 0; i < N; i++) {
        host[i] = value(rank, i, specials);
        if (world == 1)
            want[i] = host[i];
        else {
            float s = value(0, i, 0) + value(1, i, 0);
            want[i] = s / 2.0f;
        }
    }
    float *d = alloc(ctx, N * sizeof *d);
    if (!d || upload(ctx, d, host, N * sizeof *d) < 0) {
        fprintf(stderr, "%s\n", rv_error_get());
        return 1;
    }
    /* NT tensors laid out top-down like rv_train_net's layers in backward order */
    rv_grad_tensor t[NT];
    size_t top = N;
    for (int i = 0; i < NT; i++) {
        size_t n = i == NT - 1 ? top : N / NT - (size_t)(i % 5) * 1000;
        top -= n;
        t[i] = (rv_grad_tensor){d + top, n};
    }
    rv_grad_buckets *b = rv_grad_buckets_new(t, NT, (size_t)1 << 20, c);
    if (!b) {
        fprintf(stderr, "%s\n", rv_error_get());
        return 1;
    }
    size_t order[NT];
    for (size_t i = 0; i < NT; i++)
        order[i] = i;
    for (size_t i = NT; i > 1; i--) {   /* a per-rank readiness order */
        size_t k = (size_t)(mix(i * 7 + (size_t)rank) % i), x = order[i - 1];
        order[i - 1] = order[k];
        order[k] = x;
    }
    for (size_t i = 0; i < NT; i++)
        if (rv_grad_buckets_ready(b, order[i]) < 0) {
            fprintf(stderr, "rank %d: %s\n", rank, rv_error_get());
            return 1;
        }
    if (rv_grad_buckets_finish(b) < 0 || sync(ctx) < 0 || download(ctx, got, d, N * sizeof *got) < 0) {
        fprintf(stderr, "rank %d: %s\n", rank, rv_error_get());
        return 1;
    }
    int bad = 0;
    size_t nbad = 0;
    for (size_t i = 0; i < N; i++)
        if (memcmp(&got[i], &want[i], 4) != 0 && nbad++ < 3) {
            uint32_t g, w;
            memcpy(&g, &got[i], 4);
            memcpy(&w, &want[i], 4);
            fprintf(stderr, "rank %d: element %zu: got %08x (%g), expected %08x (%g)\n", rank, i, g, got[i], w,
                    want[i]);
        }
    if (nbad) {
        fprintf(stderr, "rank %d: %zu of %zu elements differ after the bucketed all-reduce (%zu buckets)\n", rank,
                nbad, N, rv_grad_buckets_count(b));
        bad = 1;
    }
    if (world == 1) {   /* the plain calls too: all-reduce, host broadcast, barrier */
        char msg[32] = "rank zero speaks";
        if (rv_comm_allreduce_sum(c, d, N) < 0 || c->broadcast(c, msg, sizeof msg, 0) < 0 || c->barrier(c) < 0 ||
            sync(ctx) < 0 || download(ctx, got, d, N * sizeof *got) < 0) {
            fprintf(stderr, "%s\n", rv_error_get());
            return 1;
        }
        if (memcmp(got, want, N * sizeof *got) != 0 || strcmp(msg, "rank zero speaks") != 0) {
            fprintf(stderr, "plain all-reduce or broadcast changed the data\n");
            bad = 1;
        }
    }
    printf("INFO rank %d: %zu buckets over %zu floats\n", rank, rv_grad_buckets_count(b), N);
    rv_grad_buckets_free(b);
    rv_comm_close(c);
    return bad;
}
C

BLAS_LIBS=$(pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
if ! cc -std=c11 -D_GNU_SOURCE -O1 -Ilib -Ikernels -fopenmp -rdynamic -o "$W/drv" "$W/drv.c" \
        -Wl,--whole-archive "$BUILD/librevela.a" -Wl,--no-whole-archive \
        -lzstd -lxxhash $BLAS_LIBS -lutf8proc -lstemmer -lm -lpthread -ldl >"$W/cc.log" 2>&1; then
    fail build "compiling the driver failed:" "$(tail -20 "$W/cc.log")"
    exit 1
fi
export RV_CUDA_LIB=${RV_CUDA_LIB:-$ROOT/$BIN/librevela-cuda.so}   # the emulated one: SKIP (no NCCL there)

timeout 120 "$W/drv" 0 1 none >"$W/w1.out" 2>"$W/w1.err"
rc=$?
grep '^INFO' "$W/w1.out"
if [ $rc -eq 77 ]; then
    why=$(sed -n 's/^SKIP-REASON //p' "$W/w1.out")
    for c in $CHECKS; do echo "SKIP $S/$c ($why)"; done
    exit 0
fi
echo "PASS $S/nccl-load"
if [ $rc -eq 0 ]; then echo "PASS $S/world1-bits"; else fail world1-bits "exit $rc" "$(tail -8 "$W/w1.err")"; fi

ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "${ngpu:-0}" -lt 2 ]; then
    echo "SKIP $S/world2-average (${ngpu:-0} GPU visible, 2 needed)"
else
    timeout 120 "$W/drv" 0 2 "$W/rdv" >"$W/r0.out" 2>"$W/r0.err" &
    p0=$!
    timeout 120 "$W/drv" 1 2 "$W/rdv" >"$W/r1.out" 2>"$W/r1.err"
    r1=$?
    wait $p0
    r0=$?
    grep -h '^INFO' "$W/r0.out" "$W/r1.out"
    if [ $r0 -eq 0 ] && [ $r1 -eq 0 ]; then echo "PASS $S/world2-average"
    else fail world2-average "rank 0 exit $r0, rank 1 exit $r1" "$(tail -5 "$W/r0.err" "$W/r1.err")"; fi
fi
[ $rc -eq 0 ]
