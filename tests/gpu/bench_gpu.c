/* bench_gpu.c — times the CUDA backend's in-batch attention (forward and
 * backward, the Revela group shape: B=16 chunks, L=160, H=32 query heads,
 * 8 kv heads, head_dim 64, bf16 storage) and cuBLASLt matrix products in the
 * shapes rv-search and rv-train use, and writes the in-batch inputs and
 * outputs to DIR so that bench/gpu_ref.py can time a naive PyTorch
 * reference on the same input and check our results against it.
 *
 * The same attention shapes also time the causal self-attention, and both
 * attentions once more with f32 operands (the fp32 CUDA-core kernels; the
 * bf16 ones run on tensor cores): rows inbatch_*, causal_*, *_f32.
 * Usage: bench_gpu DIR [--reps N] [--small] [--mem-only] [--mem-b "16 64"]
 * (--small: tiny shapes, for dry runs of the pipeline on the CPU emulator)
 * Writes meta.json and NAME.bin files (raw little-endian f32 / int32) in DIR
 * and DIR/results.txt ("name ms flops [M N K]" per line: the median over N
 * repetitions of the per-call time, each repetition timing several calls
 * after a device sync). Prints the same lines.
 * In-batch attention memory (also alone with --mem-only): for each B of
 * --mem-b (default 16 and 64; same L, H, Hkv, d as above) one forward +
 * backward from a fresh set of buffers; the device memory it took (used
 * memory after minus before, cudaMemGetInfo: inputs, outputs, gradients,
 * the per-row statistics and the backward's scratch) goes to DIR/mem_ours.txt
 * as "B L H Hkv hd measured_bytes io_bytes" (io_bytes: q, k, v, dout, out,
 * dq, dk, dv, W, dW alone, what any implementation holds; measured -1 on
 * the emulator, which has no device memory). bench/gpu_ref.py measures the
 * reference at the same shapes. Without a device: prints
 * "SKIP bench_gpu (no CUDA device: ...)" and exits 0. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_ops.h"
#include "error.h"
#include "half.h"
#include "inbatch_attn.h"

static rv_cuda *ctx;
static const char *out_dir;
static FILE *results;
static int reps = 5;
static int small;

/* Device memory in use (all processes; the bench is the only one on the
 * card). The CUDA runtime's cudaMemGetInfo, declared here rather than
 * through cuda_runtime_api.h so that this file builds with the host
 * compiler and no CUDA include path (C linkage; cudaError_t is an int-sized
 * enum, 0 = cudaSuccess). The emulator has no device memory: -1. */
#ifdef RV_CUDA_EMULATE
static int device_used(size_t *used)
{
    (void)used;
    return -1;
}
#else
extern int cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
static int device_used(size_t *used)
{
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != 0)
        return -1;
    *used = total_b - free_b;
    return 0;
}
#endif

static void die(const char *what)
{
    fprintf(stderr, "bench_gpu: %s: %s\n", what, rv_error_get());
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_gpu: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static float rnd(float scale)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(((double)(z >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0) * scale);
}

static float *rnd_alloc(size_t n, float scale, int round_bf16)
{
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        x[i] = rnd(scale);
        if (round_bf16)
            x[i] = rv_bf16_to_f32(rv_f32_to_bf16(x[i]));
    }
    return x;
}

static void *upload(const float *x, size_t n, rv_wtype t)
{
    size_t es = rv_wtype_size(t);
    void *h = xmalloc(n * es), *d = rv_cuda_alloc(ctx, n * es);
    if (!d)
        die("alloc");
    for (size_t i = 0; i < n; i++) {
        if (t == RV_WT_F32)
            ((float *)h)[i] = x[i];
        else
            ((uint16_t *)h)[i] = rv_f32_to_bf16(x[i]);
    }
    if (rv_cuda_upload(ctx, d, h, n * es) != 0)
        die("upload");
    free(h);
    return d;
}

static void write_file(const char *name, const void *data, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "bench_gpu: writing %s failed\n", path);
        exit(1);
    }
}

static void write_device_f32(const char *name, const void *d, size_t n)
{
    float *h = xmalloc(n * sizeof *h);
    if (rv_cuda_sync(ctx) != 0 || rv_cuda_download(ctx, h, d, n * sizeof *h) != 0)
        die("download");
    write_file(name, h, n * sizeof *h);
    free(h);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef int (*op_fn)(void *arg);

/* Median over `reps` of (time of `calls` calls, synced) / calls, after a warm-up. */
static double time_op(op_fn fn, void *arg, int calls)
{
    if (fn(arg) != 0 || fn(arg) != 0 || rv_cuda_sync(ctx) != 0)
        die("warm-up");
    double *t = xmalloc((size_t)reps * sizeof *t);
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        for (int i = 0; i < calls; i++)
            if (fn(arg) != 0)
                die("timed call");
        if (rv_cuda_sync(ctx) != 0)
            die("sync");
        t[r] = (now_ms() - t0) / calls;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = t[reps / 2];
    free(t);
    return med;
}

static void record(const char *name, double ms, double flops, const char *shape)
{
    printf("%-28s %10.4f ms  %8.2f TFLOP/s  %s\n", name, ms, flops / (ms * 1e-3) / 1e12, shape);
    fprintf(results, "%s %.6f %.6g %s\n", name, ms, flops, shape);
    fflush(stdout);
}

/* ---------------------------------------------------------------- in-batch attention */
typedef struct {
    rv_inbatch_cfg cfg;
    rv_wtype t;      /* q, k, v, dout: bf16 (tensor cores) or f32 (the fp32 kernels) */
    int *lengths;
    float *w, *lse, *denom, *dw;
    void *q, *k, *v, *dout, *out, *dq, *dk, *dv;
} ib_args;

static int ib_forward(void *a)
{
    ib_args *x = a;
    return rv_cuda_inbatch_attn_forward(ctx, &x->cfg, x->lengths, x->w, x->q, x->k, x->v, x->t, x->out, RV_WT_F32,
                                        x->lse, x->denom);
}

static int ib_backward(void *a)
{
    ib_args *x = a;
    return rv_cuda_inbatch_attn_backward(ctx, &x->cfg, x->lengths, x->w, x->q, x->k, x->v, x->t, x->lse, x->denom,
                                         x->dout, x->dq, x->dk, x->dv, RV_WT_F32, x->dw);
}

/* The causal self-attention of the same q, k, v (chunk b alone, keys < lengths[b]). */
static int causal_forward(void *a)
{
    ib_args *x = a;
    return rv_cuda_causal_attn_forward(ctx, &x->cfg.shape, x->lengths, x->q, x->k, x->v, x->t, x->out, RV_WT_F32,
                                       x->lse);
}

static int causal_backward(void *a)
{
    ib_args *x = a;   /* out and dout in q's type: dout stands in for the forward's output too */
    return rv_cuda_causal_attn_backward(ctx, &x->cfg.shape, x->lengths, x->q, x->k, x->v, x->dout, x->lse, x->dout,
                                        x->t, x->dq, x->dk, x->dv, RV_WT_F32);
}

/* The in-batch shape of the benchmark: L, H, Hkv, d (B is an argument). */
#define IB_L (small ? 20 : 160)
#define IB_H (small ? 4 : 32)
#define IB_HKV (small ? 2 : 8)
#define IB_HD (small ? 16 : 64)

/* Host inputs for B chunks: lengths (3/4 L .. L real tokens, chunk 0 full),
 * W (masked softmax, tau 0.1, of random similarities; diagonal 0), q, k, v,
 * dout (bf16-rounded), and the device buffers of one forward + backward. */
typedef struct {
    int *len;
    float *w, *q, *k, *v, *g;
} ib_host;

static void ib_setup(int B, ib_args *a, ib_host *h, rv_wtype t)
{
    const int L = IB_L, H = IB_H, Hkv = IB_HKV, hd = IB_HD;
    memset(a, 0, sizeof *a);
    a->t = t;
    a->cfg = (rv_inbatch_cfg){{B, L, H, Hkv, hd}, 1, 1e-6f, 0};
    size_t nq = (size_t)B * L * H * hd, nk = (size_t)B * L * Hkv * hd, ns = (size_t)B * B * H * L;
    h->len = xmalloc((size_t)B * sizeof *h->len);
    for (int b = 0; b < B; b++)
        h->len[b] = b == 0 ? L : L - (int)((rnd(1.0f) + 1.0f) * (float)L / 8.0f);
    h->w = xmalloc((size_t)B * B * sizeof *h->w);
    double *z = xmalloc((size_t)B * sizeof *z);
    for (int i = 0; i < B; i++) {
        double mx = -1e30, sum = 0;
        for (int j = 0; j < B; j++) {
            z[j] = 0;
            if (j != i && (z[j] = rnd(1.0f) / 0.1) > mx)
                mx = z[j];
        }
        for (int j = 0; j < B; j++)
            sum += j == i ? 0 : exp(z[j] - mx);
        for (int j = 0; j < B; j++)
            h->w[i * B + j] = j == i ? 0.0f : (float)(exp(z[j] - mx) / sum);
    }
    free(z);
    h->q = rnd_alloc(nq, 1.5f, 1), h->k = rnd_alloc(nk, 1.5f, 1), h->v = rnd_alloc(nk, 1.0f, 1);
    h->g = rnd_alloc(nq, 1.0f, 1);
    a->lengths = rv_cuda_alloc(ctx, (size_t)B * sizeof *h->len);
    if (!a->lengths || rv_cuda_upload(ctx, a->lengths, h->len, (size_t)B * sizeof *h->len) != 0)
        die("upload");
    a->w = upload(h->w, (size_t)B * B, RV_WT_F32);
    a->q = upload(h->q, nq, t);
    a->k = upload(h->k, nk, t);
    a->v = upload(h->v, nk, t);
    a->dout = upload(h->g, nq, t);
    a->out = rv_cuda_alloc(ctx, nq * 4);
    a->lse = rv_cuda_alloc(ctx, ns * 4);
    a->denom = rv_cuda_alloc(ctx, ns * 4);
    a->dq = rv_cuda_alloc(ctx, nq * 4);
    a->dk = rv_cuda_alloc(ctx, nk * 4);
    a->dv = rv_cuda_alloc(ctx, nk * 4);
    a->dw = rv_cuda_alloc(ctx, (size_t)B * B * 4);
    if (!a->out || !a->lse || !a->denom || !a->dq || !a->dk || !a->dv || !a->dw)
        die("alloc");
}

static void ib_teardown(ib_args *a, ib_host *h)
{
    free(h->len), free(h->w), free(h->q), free(h->k), free(h->v), free(h->g);
    rv_cuda_free(ctx, a->lengths), rv_cuda_free(ctx, a->w), rv_cuda_free(ctx, a->q), rv_cuda_free(ctx, a->k);
    rv_cuda_free(ctx, a->v), rv_cuda_free(ctx, a->dout), rv_cuda_free(ctx, a->out), rv_cuda_free(ctx, a->lse);
    rv_cuda_free(ctx, a->denom), rv_cuda_free(ctx, a->dq), rv_cuda_free(ctx, a->dk), rv_cuda_free(ctx, a->dv);
    rv_cuda_free(ctx, a->dw);
}

/* Device memory of one in-batch forward + backward at B chunks, from fresh
 * buffers: used memory after (nothing is freed in between; the backward's
 * scratch stays allocated in the context) minus before. The context's
 * scratch is first released by opening a new context, so an earlier, larger
 * run does not hide this one's scratch. One line to mem_ours.txt. */
static void mem_inbatch(int B, FILE *mf)
{
    const int L = IB_L, H = IB_H, Hkv = IB_HKV, hd = IB_HD;
    rv_cuda_close(ctx);
    if (!(ctx = rv_cuda_open(0)))
        die("open");
    size_t before = 0, after = 0;
    int ok = rv_cuda_sync(ctx) == 0 && device_used(&before) == 0;
    ib_args a;
    ib_host h;
    ib_setup(B, &a, &h, RV_WT_BF16);
    if (ib_forward(&a) != 0 || ib_backward(&a) != 0 || rv_cuda_sync(ctx) != 0)
        die("in-batch memory run");
    ok = ok && device_used(&after) == 0;
    size_t nq = (size_t)B * L * H * hd, nk = (size_t)B * L * Hkv * hd;
    /* q, k, v, dout bf16; out, dq, dk, dv f32; W, dW f32; lengths */
    size_t io = 2 * (2 * nq + 2 * nk) + 4 * (2 * nq + 2 * nk) + 8 * (size_t)B * B + 4 * (size_t)B;
    long long measured = ok ? (long long)(after - before) : -1;
    char took[64] = "not measurable (no device memory)";
    if (measured >= 0)
        snprintf(took, sizeof took, "%.1f MiB", measured / 1048576.0);
    printf("inbatch_mem B=%d L=%d H=%d/%d d=%d: device memory taken %s (inputs, outputs and gradients alone "
           "%.1f MiB)\n", B, L, H, Hkv, hd, took, io / 1048576.0);
    fprintf(mf, "%d %d %d %d %d %lld %zu\n", B, L, H, Hkv, hd, measured, io);
    fflush(stdout);
    ib_teardown(&a, &h);
}

/* Both attentions with f32 operands (the fp32 CUDA-core kernels), for the
 * ratio to the tensor-core path in the same run. */
static void bench_attention_f32(void)
{
    const int B = small ? 4 : 16, L = IB_L, H = IB_H, Hkv = IB_HKV, hd = IB_HD;
    ib_args a;
    ib_host h;
    ib_setup(B, &a, &h, RV_WT_F32);
    double fwd_flops = 4.0 * B * B * H * (double)L * L * hd, bwd_flops = 2.5 * fwd_flops;
    double c_fwd = 2.0 * B * H * (double)L * L * hd, c_bwd = 2.0 * c_fwd;
    char shape[64];
    snprintf(shape, sizeof shape, "%d %d %d %d %d", B, L, H, Hkv, hd);
    record("inbatch_fwd_f32", time_op(ib_forward, &a, 1), fwd_flops, shape);
    record("inbatch_bwd_f32", time_op(ib_backward, &a, 1), bwd_flops, shape);
    record("causal_fwd_f32", time_op(causal_forward, &a, small ? 1 : 5), c_fwd, shape);
    record("causal_bwd_f32", time_op(causal_backward, &a, small ? 1 : 5), c_bwd, shape);
    ib_teardown(&a, &h);
}

static void bench_inbatch(void)
{
    const int B = small ? 4 : 16, L = IB_L, H = IB_H, Hkv = IB_HKV, hd = IB_HD;
    ib_args a;
    ib_host h;
    ib_setup(B, &a, &h, RV_WT_BF16);
    size_t nq = (size_t)B * L * H * hd, nk = (size_t)B * L * Hkv * hd;
    const int *len = h.len;
    const float *w = h.w, *q = h.q, *k = h.k, *v = h.v, *g = h.g;

    /* attention FLOPs per pair and head: QK^T and PV, 2*L*L*hd each; the backward
     * counted as 2.5 x forward (the usual model-FLOPs convention, not the recompute) */
    double fwd_flops = 4.0 * B * B * H * (double)L * L * hd, bwd_flops = 2.5 * fwd_flops;
    char shape[64];
    snprintf(shape, sizeof shape, "%d %d %d %d %d", B, L, H, Hkv, hd);
    record("inbatch_fwd", time_op(ib_forward, &a, small ? 1 : 10), fwd_flops, shape);
    record("inbatch_bwd", time_op(ib_backward, &a, small ? 1 : 5), bwd_flops, shape);
    /* causal attention FLOPs (bench/README-gpu.md): 2*L*L*hd per chunk and head forward (the
     * lower triangle of QK^T and PV), backward 2 x forward */
    double c_fwd = 2.0 * B * H * (double)L * L * hd, c_bwd = 2.0 * c_fwd;
    record("causal_fwd", time_op(causal_forward, &a, small ? 1 : 10), c_fwd, shape);
    record("causal_bwd", time_op(causal_backward, &a, small ? 1 : 10), c_bwd, shape);

    /* one clean forward + backward (gradients from zero) for the cross-check */
    if (rv_cuda_memset(ctx, a.dq, 0, nq * 4) != 0 || rv_cuda_memset(ctx, a.dk, 0, nk * 4) != 0 ||
        rv_cuda_memset(ctx, a.dv, 0, nk * 4) != 0 || rv_cuda_memset(ctx, a.dw, 0, (size_t)B * B * 4) != 0 ||
        ib_forward(&a) != 0 || ib_backward(&a) != 0)
        die("inbatch run");
    write_file("lengths.bin", len, (size_t)B * sizeof len[0]);
    write_file("w.bin", w, (size_t)B * B * sizeof w[0]);
    write_file("q.bin", q, nq * 4);
    write_file("k.bin", k, nk * 4);
    write_file("v.bin", v, nk * 4);
    write_file("dout.bin", g, nq * 4);
    write_device_f32("out.bin", a.out, nq);
    write_device_f32("dq.bin", a.dq, nq);
    write_device_f32("dk.bin", a.dk, nk);
    write_device_f32("dv.bin", a.dv, nk);
    write_device_f32("dw.bin", a.dw, (size_t)B * B);
    char meta[512];
    snprintf(meta, sizeof meta,
             "{\"B\": %d, \"L\": %d, \"H\": %d, \"Hkv\": %d, \"hd\": %d, \"v_norm\": 1, \"eps\": 1e-6, "
             "\"skip_zero_weights\": 0, \"storage\": \"bf16\"}\n", B, L, H, Hkv, hd);
    write_file("meta.json", meta, strlen(meta));
    ib_teardown(&a, &h);
}

/* ---------------------------------------------------------------- matrix products */
typedef struct {
    int M, N, K;
    rv_wtype ab, c;
    void *A, *B, *C;
} gemm_args;

static int gemm_nt(void *p)
{
    gemm_args *g = p;
    return rv_cuda_gemm(ctx, 0, 1, g->M, g->N, g->K, 1.0f, g->A, g->K, g->B, g->K, g->ab, 0.0f, g->C, g->N, g->c);
}

static void bench_gemm(const char *name, int M, int N, int K, rv_wtype ab, rv_wtype c)
{
    gemm_args g = {M, N, K, ab, c, NULL, NULL, NULL};
    size_t na = (size_t)M * K, nb = (size_t)N * K;
    float *a = rnd_alloc(na, 1.0f, 0), *b = rnd_alloc(nb, 1.0f, 0);
    g.A = upload(a, na, ab);
    g.B = upload(b, nb, ab);
    g.C = rv_cuda_alloc(ctx, (size_t)M * N * rv_wtype_size(c));
    if (!g.C)
        die("alloc");
    free(a), free(b);
    char shape[64];
    snprintf(shape, sizeof shape, "%d %d %d", M, N, K);
    record(name, time_op(gemm_nt, &g, small ? 1 : 5), 2.0 * M * N * (double)K, shape);
    rv_cuda_free(ctx, g.A), rv_cuda_free(ctx, g.B), rv_cuda_free(ctx, g.C);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_gpu DIR [--reps N] [--small]\n");
        return 2;
    }
    out_dir = argv[1];
    int mem_only = 0;
    const char *mem_b = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc && atoi(argv[i + 1]) >= 1)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--small") == 0)
            small = 1;
        else if (strcmp(argv[i], "--mem-only") == 0)
            mem_only = 1;
        else if (strcmp(argv[i], "--mem-b") == 0 && i + 1 < argc)
            mem_b = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gpu DIR [--reps N] [--small] [--mem-only] [--mem-b \"B1 B2 ..\"]\n");
            return 2;
        }
    }
    int mem_bs[16], n_mem = 0;
    if (!mem_b)
        mem_b = small ? "4 6" : "16 64";
    for (const char *p = mem_b; *p;) {
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || b < 2 || b > 1024 || n_mem == 16) {
            fprintf(stderr, "bench_gpu: --mem-b: expected up to 16 group sizes 2..1024, found \"%s\"\n", mem_b);
            return 2;
        }
        mem_bs[n_mem++] = (int)b;
        for (p = end; *p == ' ' || *p == ','; p++)
            ;
    }
    const char *why = "";
    if (rv_cuda_device_count(&why) < 1) {
        printf("SKIP bench_gpu (no CUDA device: %s)\n", why);
        return 0;
    }
    ctx = rv_cuda_open(0);
    if (!ctx)
        die("open");
    char path[4096];
    snprintf(path, sizeof path, "%s/mem_ours.txt", out_dir);
    FILE *mf = fopen(path, "w");
    if (!mf) {
        fprintf(stderr, "bench_gpu: cannot write %s\n", path);
        return 1;
    }
    printf("# device: %s\n", rv_cuda_device_name(ctx));
    for (int i = 0; i < n_mem; i++)
        mem_inbatch(mem_bs[i], mf);
    if (fclose(mf) != 0) {
        fprintf(stderr, "bench_gpu: writing %s failed\n", path);
        return 1;
    }
    if (mem_only) {
        rv_cuda_close(ctx);
        return 0;
    }
    snprintf(path, sizeof path, "%s/results.txt", out_dir);
    results = fopen(path, "w");
    if (!results) {
        fprintf(stderr, "bench_gpu: cannot write %s\n", path);
        return 1;
    }
    printf("# device: %s; median of %d repetitions\n", rv_cuda_device_name(ctx), reps);
    bench_inbatch();
    bench_attention_f32();
    int sq = small ? 16 : 4096, sd = small ? 48 : 32768, sk = small ? 32 : 2048;
    bench_gemm("sgemm_search_f32", sq, sd, sk, RV_WT_F32, RV_WT_F32);
    bench_gemm("gemm_search_bf16", sq, sd, sk, RV_WT_BF16, RV_WT_BF16);
    bench_gemm("gemm_mlp_up_bf16", small ? 24 : 2512, small ? 40 : 8192, sk, RV_WT_BF16, RV_WT_BF16);
    if (fclose(results) != 0) {
        fprintf(stderr, "bench_gpu: writing %s failed\n", path);
        return 1;
    }
    rv_cuda_close(ctx);
    return 0;
}
