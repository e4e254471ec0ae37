/* test_gpu_ops.c — every op of kernels/cuda_ops.h against its CPU twin
 * (lib/ops_cpu.c, lib/train_ops.c, lib/inbatch_attn.c, lib/adamw.c, OpenBLAS sgemm) on
 * fresh random inputs of several shapes: odd lengths, partial tiles, GQA
 * ratios, head_dim 16..128, strided rows, misaligned pointers, f32 and bf16
 * storage. Device outputs are poisoned (NaN) before each run; gradient
 * outputs start from random values on both sides (the ops add into them;
 * the training-op backward tests compare what was added, got - start
 * against ref - start). Training ops covered: the backward of RMSNorm,
 * RoPE, SwiGLU, EOS pooling and causal attention, the LM head fused with
 * cross-entropy, AdamW with gradient-norm helpers, and the in-batch
 * weights W = softmax(S / tau) forward and backward.
 * Each case prints "PASS gpu/<case> rel=..." or "FAIL ...", where rel =
 * ||out - ref|| / ||ref|| must be <= 1e-5 for f32 storage and <= 1e-2 for
 * bf16 operands, and any non-finite output fails. Inputs that are bf16 on
 * the device are rounded to bf16 on the host first, so both sides compute
 * from the same values.
 *
 * No device (cudaGetDeviceCount finds none, or no driver): prints
 * "SKIP test_gpu_ops (no CUDA device: ...)" and exits 0 — nothing is
 * reported as passed. Built against the CPU emulator (kernels/dev/
 * cuda_emu.h, RV_CUDA_EMULATE) the suite is "gpu-emu" and runs the small
 * shapes only: that checks kernel logic, not the GPU.
 * Usage: test_gpu_ops [--quick]   (--quick: the small shapes only) */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"
#include "error.h"
#include "half.h"
#include "inbatch_attn.h"
#include "ops.h"
#include "train_ops.h"

#ifdef RV_CUDA_EMULATE
#define SUITE "gpu-emu"
#else
#define SUITE "gpu"
#endif

#define TOL_F32 1e-5
#define TOL_BF16 1e-2

static rv_cuda *ctx;
static int quick;   /* small shapes only (emulator, --quick) */
static int n_pass, n_fail;

/* ---------------------------------------------------------------- host helpers */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double rnd01(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}
static int rnd_int(int lo, int hi) { return lo + (int)(rnd01() * (hi - lo + 1)) % (hi - lo + 1); }

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_gpu_ops: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static float *rnd_alloc(size_t n, float scale)
{
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((2.0 * rnd01() - 1.0) * scale);
    return x;
}

static float *copy_alloc(const float *x, size_t n)
{
    float *y = xmalloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* Rounds to what the storage type holds, so host and device see one value. */
static void round_to(float *x, size_t n, rv_wtype t)
{
    for (size_t i = 0; i < n; i++)
        x[i] = t == RV_WT_BF16 ? rv_bf16_to_f32(rv_f32_to_bf16(x[i]))
             : t == RV_WT_F16  ? rv_f16_to_f32(rv_f32_to_f16(x[i]))
                               : x[i];
}

/* Host floats in storage type t (bf16/f16 rounded to nearest even). */
static void *encode(const float *x, size_t n, rv_wtype t)
{
    void *out = xmalloc(n * rv_wtype_size(t));
    for (size_t i = 0; i < n; i++) {
        if (t == RV_WT_F32)
            ((float *)out)[i] = x[i];
        else
            ((uint16_t *)out)[i] = t == RV_WT_BF16 ? rv_f32_to_bf16(x[i]) : rv_f32_to_f16(x[i]);
    }
    return out;
}

static void die_lib(const char *what)
{
    printf("FAIL " SUITE "/%s (library error: %s)\n", what, rv_error_get());
    exit(1);
}

/* A device copy of x[n] in storage type t; `extra` spare elements allow offset views. */
static void *dev_upload_ex(const float *x, size_t n, rv_wtype t, size_t extra)
{
    void *d = rv_cuda_alloc(ctx, (n + extra) * rv_wtype_size(t));
    if (!d)
        die_lib("alloc");
    void *h = encode(x, n, t);
    if (rv_cuda_upload(ctx, d, h, n * rv_wtype_size(t)) != 0)
        die_lib("upload");
    free(h);
    return d;
}
static void *dev_upload(const float *x, size_t n, rv_wtype t) { return dev_upload_ex(x, n, t, 0); }

static void *dev_upload_raw(const void *x, size_t bytes)
{
    void *d = rv_cuda_alloc(ctx, bytes);
    if (!d || rv_cuda_upload(ctx, d, x, bytes) != 0)
        die_lib("upload");
    return d;
}

/* A device buffer of n elements of type t, every byte 0xff (NaN in f32, bf16, f16). */
static void *dev_poisoned(size_t n, rv_wtype t)
{
    void *d = rv_cuda_alloc(ctx, n * rv_wtype_size(t));
    if (!d || rv_cuda_memset(ctx, d, 0xff, n * rv_wtype_size(t)) != 0)
        die_lib("alloc");
    return d;
}

static float *dev_download(const void *d, size_t n, rv_wtype t)
{
    if (rv_cuda_sync(ctx) != 0)
        die_lib("sync");
    void *h = xmalloc(n * rv_wtype_size(t));
    if (rv_cuda_download(ctx, h, d, n * rv_wtype_size(t)) != 0)
        die_lib("download");
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = t == RV_WT_F32 ? ((float *)h)[i]
             : t == RV_WT_BF16 ? rv_bf16_to_f32(((uint16_t *)h)[i])
                               : rv_f16_to_f32(((uint16_t *)h)[i]);
    free(h);
    return x;
}

/* ---------------------------------------------------------------- comparison */
typedef struct {
    double worst;    /* largest rel over the compared tensors */
    int bad;         /* a non-finite output or a tolerance miss */
    char detail[400];
} verdict;

/* Compares out to ref over n elements; records rel = ||out-ref||/||ref||. */
static void compare(verdict *v, const char *what, const float *out, const float *ref, size_t n, double tol)
{
    double num = 0, den = 0;
    size_t nonfinite = 0, first_bad = n;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) {
            if (nonfinite++ == 0)
                first_bad = i;
            continue;
        }
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (rel > v->worst)
        v->worst = rel;
    size_t used = strlen(v->detail);
    if (nonfinite) {
        v->bad = 1;
        snprintf(v->detail + used, sizeof v->detail - used, " %s: %zu non-finite (first [%zu] = %g, ref %g);",
                 what, nonfinite, first_bad, (double)out[first_bad], (double)ref[first_bad]);
    } else if (!(rel <= tol)) {
        v->bad = 1;
        size_t worst_i = 0;
        double worst_d = -1;
        for (size_t i = 0; i < n; i++)
            if (fabs((double)out[i] - ref[i]) > worst_d) {
                worst_d = fabs((double)out[i] - ref[i]);
                worst_i = i;
            }
        snprintf(v->detail + used, sizeof v->detail - used, " %s: rel %.3g > %.0e (worst [%zu] %g vs %g);", what,
                 rel, tol, worst_i, (double)out[worst_i], (double)ref[worst_i]);
    }
}

static void report(const verdict *v, const char *fmt, ...) RV_PRINTF(2, 3);
static void report(const verdict *v, const char *fmt, ...)
{
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (v->bad) {
        n_fail++;
        printf("FAIL " SUITE "/%s rel=%.2e:%s\n", name, v->worst, v->detail);
    } else {
        n_pass++;
        printf("PASS " SUITE "/%s rel=%.2e\n", name, v->worst);
    }
    fflush(stdout);
}

static double tol_for(rv_wtype t) { return t == RV_WT_F32 ? TOL_F32 : TOL_BF16; }
static const char *tn(rv_wtype t) { return rv_wtype_name(t); }

/* ---------------------------------------------------------------- tensor-core product */
/* kernels/mma_bf16.cuh: every fragment loader (the rv_frag_* pairings, A
 * from two accumulators, the ldmatrix ones) against a naive product in
 * double of the same bf16-rounded values (the products are exact in fp32;
 * only the fp32 summation differs). A wrong fragment layout puts elements
 * in the wrong place: rel ~1. Several draws, incl. small integers (exact
 * everywhere), which make any misplacement visible. On the emulator the
 * ldmatrix rows run the rv_frag_* loaders; only a device checks them. */
static void test_mma(void)
{
    for (int draw = 0; draw < 3; draw++) {
        float *a = rnd_alloc(256, 1.0f), *b = rnd_alloc(256, 1.0f);
        if (draw == 2)
            for (int i = 0; i < 256; i++) {
                a[i] = (float)rnd_int(-8, 8);
                b[i] = (float)rnd_int(-8, 8);
            }
        round_to(a, 256, RV_WT_BF16);
        round_to(b, 256, RV_WT_BF16);
        float ref[256];
        for (int r = 0; r < 16; r++)
            for (int n = 0; n < 16; n++) {
                double acc = 0;
                for (int k = 0; k < 16; k++)
                    acc += (double)a[r * 16 + k] * b[k * 16 + n];
                ref[r * 16 + n] = (float)acc;
            }
        float *da = dev_upload(a, 256, RV_WT_F32), *db = dev_upload(b, 256, RV_WT_F32);
        float *dd = dev_poisoned(7 * 256, RV_WT_F32);
        if (rv_cuda_mma_probe(ctx, da, db, dd) != 0)
            die_lib("mma_probe");
        float *out = dev_download(dd, 7 * 256, RV_WT_F32);
        static const char *names[7] = {"a.b_cols",  "a_t.b_cols",    "a.b_rows",   "a_t.b_rows",
                                       "acc.b_cols", "ldm_a.ldm_b_cols2", "ldm_a.ldm_b_rows2"};
        for (int v = 0; v < 7; v++) {
            verdict vd = {0};
            compare(&vd, names[v], out + v * 256, ref, 256, TOL_F32);
            report(&vd, "mma_bf16/%s/draw%d", names[v], draw);
        }
        free(a);
        free(b);
        free(out);
        rv_cuda_free(ctx, da);
        rv_cuda_free(ctx, db);
        rv_cuda_free(ctx, dd);
    }
}

/* ---------------------------------------------------------------- conversion */
static void test_convert(void)
{
    size_t n = 1000;
    float *x = rnd_alloc(n, 3.0f);
    x[0] = 0.0f;
    x[1] = 65504.0f;
    x[2] = 1e-6f;   /* an f16 subnormal */
    static const rv_wtype types[] = {RV_WT_BF16, RV_WT_F16};
    for (int ti = 0; ti < 2; ti++) {
        rv_wtype t = types[ti];
        void *src = dev_upload(x, n, RV_WT_F32), *mid = dev_poisoned(n, t), *back = dev_poisoned(n, RV_WT_F32);
        if (rv_cuda_convert(ctx, mid, t, src, RV_WT_F32, n) != 0 ||
            rv_cuda_convert(ctx, back, RV_WT_F32, mid, t, n) != 0)
            die_lib("convert");
        float *got = dev_download(back, n, RV_WT_F32), *ref = copy_alloc(x, n);
        round_to(ref, n, t);
        verdict v = {0};
        int exact = memcmp(got, ref, n * sizeof *got) == 0;
        if (!exact) {
            v.bad = 1;
            snprintf(v.detail, sizeof v.detail, " not bit-identical to the host's round-to-nearest-even");
        }
        report(&v, "convert f32->%s->f32 n=%zu", tn(t), n);
        free(got);
        free(ref);
        rv_cuda_free(ctx, src);
        rv_cuda_free(ctx, mid);
        rv_cuda_free(ctx, back);
    }
    free(x);
}

/* ---------------------------------------------------------------- RMSNorm */
static void test_rmsnorm_case(size_t rows, size_t dim, rv_wtype xt, rv_wtype wt, int in_place)
{
    float *x = rnd_alloc(rows * dim, 2.0f), *w = rnd_alloc(dim, 1.5f);
    round_to(x, rows * dim, xt);
    round_to(w, dim, wt);
    float *ref = xmalloc(rows * dim * sizeof *ref), *ref_rstd = xmalloc(rows * sizeof *ref_rstd);
    rv_rmsnorm_forward(rows, (int)dim, x, w, 1e-5f, ref, ref_rstd);
    void *dx = dev_upload(x, rows * dim, xt), *dw = dev_upload(w, dim, wt);
    void *dy = in_place ? dx : dev_poisoned(rows * dim, xt);
    float *drstd = dev_poisoned(rows, RV_WT_F32);
    if (rv_cuda_rmsnorm(ctx, dy, xt, dx, xt, dw, wt, rows, dim, 1e-5f, drstd) != 0)
        die_lib("rmsnorm");
    float *y = dev_download(dy, rows * dim, xt), *rstd = dev_download(drstd, rows, RV_WT_F32);
    verdict v = {0};
    compare(&v, "y", y, ref, rows * dim, tol_for(xt));
    compare(&v, "rstd", rstd, ref_rstd, rows, TOL_F32);
    report(&v, "rmsnorm x=%s w=%s rows=%zu dim=%zu%s", tn(xt), tn(wt), rows, dim, in_place ? " in-place" : "");
    free(x), free(w), free(ref), free(ref_rstd), free(y), free(rstd);
    rv_cuda_free(ctx, dx), rv_cuda_free(ctx, dw), rv_cuda_free(ctx, drstd);
    if (!in_place)
        rv_cuda_free(ctx, dy);
}

static void test_rmsnorm(void)
{
    test_rmsnorm_case(1, 1, RV_WT_F32, RV_WT_F32, 0);
    test_rmsnorm_case(7, 129, RV_WT_F32, RV_WT_F32, 0);
    test_rmsnorm_case(5, 64, RV_WT_BF16, RV_WT_BF16, 1);
    if (!quick) {
        test_rmsnorm_case(33, 2048, RV_WT_F32, RV_WT_BF16, 1);
        test_rmsnorm_case(100, 896, RV_WT_BF16, RV_WT_F32, 0);
    }
}

/* ---------------------------------------------------------------- RoPE */
/* ot != t (sequence positions only): rv_cuda_rope_to from t into fresh
 * poisoned buffers of type ot */
static void test_rope_case(size_t n_tok, size_t n_heads, size_t hd, size_t extra_stride, rv_wtype t, int with_pos,
                           rv_wtype ot)
{
    size_t half = hd / 2, stride = n_heads * hd + extra_stride, max_pos = 300;
    float *inv = xmalloc(half * sizeof *inv);
    for (size_t i = 0; i < half; i++)
        inv[i] = (float)pow(10000.0, -2.0 * (double)i / (double)hd);
    float *x = rnd_alloc(n_tok * stride, 1.0f);
    round_to(x, n_tok * stride, t);
    verdict v = {0};
    if (with_pos) {   /* rv_op_rope: explicit positions, float32 angles */
        float *cs = xmalloc(max_pos * half * sizeof *cs), *sn = xmalloc(max_pos * half * sizeof *sn);
        rv_rope_tables(inv, half, max_pos, cs, sn);
        uint32_t *pos = xmalloc(n_tok * sizeof *pos);
        for (size_t i = 0; i < n_tok; i++)
            pos[i] = (uint32_t)rnd_int(0, (int)max_pos - 1);
        float *ref = copy_alloc(x, n_tok * stride);
        rv_op_rope(ref, n_tok, stride, n_heads, hd, pos, cs, sn);
        void *dx = dev_upload(x, n_tok * stride, t), *dcs = dev_upload(cs, max_pos * half, RV_WT_F32);
        void *dsn = dev_upload(sn, max_pos * half, RV_WT_F32), *dpos = dev_upload_raw(pos, n_tok * sizeof *pos);
        if (rv_cuda_rope(ctx, dx, t, n_tok, stride, n_heads, hd, dpos, 0, dcs, dsn, max_pos, 1) != 0)
            die_lib("rope");
        float *got = dev_download(dx, n_tok * stride, t);
        compare(&v, "x", got, ref, n_tok * stride, tol_for(t));
        free(cs), free(sn), free(pos), free(ref), free(got);
        rv_cuda_free(ctx, dx), rv_cuda_free(ctx, dcs), rv_cuda_free(ctx, dsn), rv_cuda_free(ctx, dpos);
        report(&v, "rope pos %s tok=%zu heads=%zu hd=%zu stride=%zu", tn(t), n_tok, n_heads, hd, stride);
    } else {          /* rv_rope_forward / rv_rope_backward: position = row % seq_len, packed rows */
        size_t seq_len = n_tok > 3 ? n_tok / 3 + 1 : 1;
        rv_rope_table tab;
        if (rv_rope_table_init(&tab, (int)max_pos, (int)hd, inv) != 0)
            die_lib("rope table");
        size_t n = n_tok * n_heads * hd;
        float *xp = rnd_alloc(n, 1.0f);
        round_to(xp, n, t);
        float *fwd = copy_alloc(xp, n), *bwd = copy_alloc(xp, n);
        rv_rope_forward(&tab, n_tok, (int)seq_len, (int)n_heads, (int)hd, fwd);
        rv_rope_backward(&tab, n_tok, (int)seq_len, (int)n_heads, (int)hd, bwd);
        void *dcs = dev_upload(tab.cos, max_pos * half, RV_WT_F32), *dsn = dev_upload(tab.sin, max_pos * half, RV_WT_F32);
        void *d1 = dev_upload(xp, n, t), *d2 = dev_upload(xp, n, t), *o1 = d1, *o2 = d2;
        if (ot != t) {
            o1 = dev_poisoned(n, ot);
            o2 = dev_poisoned(n, ot);
        }
        if (rv_cuda_rope_to(ctx, o1, ot, d1, t, n_tok, n_heads * hd, n_heads, hd, NULL, seq_len, dcs, dsn, max_pos,
                            1) != 0 ||
            rv_cuda_rope_to(ctx, o2, ot, d2, t, n_tok, n_heads * hd, n_heads, hd, NULL, seq_len, dcs, dsn, max_pos,
                            -1) != 0)
            die_lib("rope");
        float *g1 = dev_download(o1, n, ot), *g2 = dev_download(o2, n, ot);
        compare(&v, "forward", g1, fwd, n, tol_for(ot == RV_WT_F32 ? t : ot));
        compare(&v, "backward", g2, bwd, n, tol_for(ot == RV_WT_F32 ? t : ot));
        report(&v, "rope seq %s%s%s tok=%zu heads=%zu hd=%zu seq_len=%zu", tn(t), ot != t ? " to " : "",
               ot != t ? tn(ot) : "", n_tok, n_heads, hd, seq_len);
        rv_rope_table_free(&tab);
        free(xp), free(fwd), free(bwd), free(g1), free(g2);
        if (ot != t)
            rv_cuda_free(ctx, o1), rv_cuda_free(ctx, o2);
        rv_cuda_free(ctx, dcs), rv_cuda_free(ctx, dsn), rv_cuda_free(ctx, d1), rv_cuda_free(ctx, d2);
    }
    free(inv), free(x);
}

static void test_rope(void)
{
    test_rope_case(13, 3, 8, 6, RV_WT_F32, 1, RV_WT_F32);
    test_rope_case(13, 3, 8, 0, RV_WT_F32, 0, RV_WT_F32);
    test_rope_case(9, 2, 16, 0, RV_WT_BF16, 0, RV_WT_BF16);
    test_rope_case(13, 3, 8, 0, RV_WT_F32, 0, RV_WT_BF16);   /* the training step's rotate-and-narrow */
    test_rope_case(9, 2, 16, 0, RV_WT_BF16, 0, RV_WT_F32);
    if (!quick) {
        test_rope_case(200, 8, 64, 2 * 64 * 2, RV_WT_BF16, 1, RV_WT_BF16);
        test_rope_case(157, 32, 64, 0, RV_WT_F32, 0, RV_WT_F32);
        test_rope_case(157, 32, 64, 0, RV_WT_F32, 0, RV_WT_BF16);
        test_rope_case(50, 4, 128, 0, RV_WT_BF16, 1, RV_WT_BF16);
    }
}

/* ---------------------------------------------------------------- SwiGLU, add */
static void test_swiglu_add_case(size_t n, rv_wtype t)
{
    float *g = rnd_alloc(n, 4.0f), *u = rnd_alloc(n, 2.0f);
    round_to(g, n, t);
    round_to(u, n, t);
    float *ref = xmalloc(n * sizeof *ref);
    rv_op_swiglu(ref, g, u, n);
    void *dg = dev_upload(g, n, t), *du = dev_upload(u, n, t), *dh = dev_poisoned(n, t);
    verdict v = {0};
    if (rv_cuda_swiglu(ctx, dh, t, dg, t, du, t, n) != 0)
        die_lib("swiglu");
    float *got = dev_download(dh, n, t);
    compare(&v, "h", got, ref, n, tol_for(t));
    free(got);
    if (rv_cuda_swiglu(ctx, dg, t, dg, t, du, t, n) != 0)   /* in place, h = gate */
        die_lib("swiglu");
    got = dev_download(dg, n, t);
    compare(&v, "h in-place", got, ref, n, tol_for(t));
    free(got);
    report(&v, "swiglu %s n=%zu", tn(t), n);

    verdict va = {0};
    float *ya = copy_alloc(g, n);
    rv_op_add(ya, u, n);
    void *dy = dev_upload(g, n, t);
    if (rv_cuda_add(ctx, dy, t, du, t, n) != 0)
        die_lib("add");
    got = dev_download(dy, n, t);
    compare(&va, "y", got, ya, n, tol_for(t));
    report(&va, "add %s n=%zu", tn(t), n);
    free(g), free(u), free(ref), free(ya), free(got);
    rv_cuda_free(ctx, dg), rv_cuda_free(ctx, du), rv_cuda_free(ctx, dh), rv_cuda_free(ctx, dy);
}

static void test_swiglu_add(void)
{
    test_swiglu_add_case(1, RV_WT_F32);
    test_swiglu_add_case(1000, RV_WT_BF16);
    if (!quick) {
        test_swiglu_add_case(100003, RV_WT_F32);
        test_swiglu_add_case(3 * 1000 * 1000 + 7, RV_WT_BF16);
    }
}

/* ---------------------------------------------------------------- embedding */
static void test_embedding_case(size_t vocab, size_t dim, size_t n, rv_wtype tt, rv_wtype yt)
{
    float *tab = rnd_alloc(vocab * dim, 1.0f);
    round_to(tab, vocab * dim, tt);
    void *htab = encode(tab, vocab * dim, tt);
    rv_weight wt = {htab, tt, vocab, dim};
    uint32_t *ids = xmalloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = (uint32_t)rnd_int(0, (int)vocab - 1);
    ids[n] = (uint32_t)vocab;   /* one id out of range: must give NaN, not a stray read */
    float *ref = xmalloc(n * dim * sizeof *ref);
    rv_op_embedding(ref, &wt, ids, n);
    round_to(ref, n * dim, yt);
    void *dtab = dev_upload_raw(htab, vocab * dim * rv_wtype_size(tt)), *dids = dev_upload_raw(ids, (n + 1) * sizeof *ids);
    void *dy = dev_poisoned((n + 1) * dim, yt);
    if (rv_cuda_embedding(ctx, dy, yt, dtab, tt, vocab, dim, dids, n + 1) != 0)
        die_lib("embedding");
    float *got = dev_download(dy, (n + 1) * dim, yt);
    verdict v = {0};
    compare(&v, "y", got, ref, n * dim, 0.0);   /* a copy (and a rounding of a rounded value): exact */
    size_t finite = 0;
    for (size_t i = 0; i < dim; i++)
        finite += isfinite(got[n * dim + i]) != 0;
    if (finite) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " out-of-range id gave %zu finite values instead of NaN", finite);
    }
    report(&v, "embedding table=%s y=%s vocab=%zu dim=%zu n=%zu", tn(tt), tn(yt), vocab, dim, n);
    free(tab), free(htab), free(ids), free(ref), free(got);
    rv_cuda_free(ctx, dtab), rv_cuda_free(ctx, dids), rv_cuda_free(ctx, dy);
}

static void test_embedding(void)
{
    test_embedding_case(50, 37, 23, RV_WT_F32, RV_WT_F32);
    test_embedding_case(50, 16, 9, RV_WT_BF16, RV_WT_BF16);
    test_embedding_case(64, 24, 11, RV_WT_F16, RV_WT_F32);
    if (!quick)
        test_embedding_case(32000, 2048, 517, RV_WT_BF16, RV_WT_F32);
}

/* ---------------------------------------------------------------- L2 normalisation, EOS pooling */
static void test_l2_case(size_t rows, size_t dim, rv_wtype t)
{
    float *x = rnd_alloc(rows * dim, 3.0f);
    memset(x, 0, dim * sizeof *x);   /* row 0 is zero and must stay zero */
    round_to(x, rows * dim, t);
    float *ref = copy_alloc(x, rows * dim);
    rv_op_l2_normalize(ref, rows, dim);
    void *dx = dev_upload(x, rows * dim, t);
    if (rv_cuda_l2_normalize(ctx, dx, t, rows, dim) != 0)
        die_lib("l2_normalize");
    float *got = dev_download(dx, rows * dim, t);
    verdict v = {0};
    compare(&v, "x", got, ref, rows * dim, tol_for(t));
    report(&v, "l2_normalize %s rows=%zu dim=%zu", tn(t), rows, dim);
    free(x), free(ref), free(got);
    rv_cuda_free(ctx, dx);
}

static void test_eos_pool_case(int batch, int seq_len, int dim, rv_wtype t)
{
    size_t n = (size_t)batch * seq_len * dim;
    float *h = rnd_alloc(n, 2.0f);
    round_to(h, n, t);
    int *len = xmalloc((size_t)batch * sizeof *len);
    for (int b = 0; b < batch; b++)
        len[b] = rnd_int(1, seq_len);
    len[0] = seq_len;
    float *e = xmalloc((size_t)batch * dim * sizeof *e), *nrm = xmalloc((size_t)batch * sizeof *nrm);
    rv_eos_pool_l2_forward(batch, seq_len, dim, len, h, e, nrm);
    void *dh = dev_upload(h, n, t), *dlen = dev_upload_raw(len, (size_t)batch * sizeof *len);
    float *de = dev_poisoned((size_t)batch * dim, RV_WT_F32), *dn = dev_poisoned((size_t)batch, RV_WT_F32);
    if (rv_cuda_eos_pool_l2(ctx, de, dn, dh, t, batch, seq_len, dim, dlen) != 0)
        die_lib("eos_pool");
    float *ge = dev_download(de, (size_t)batch * dim, RV_WT_F32), *gn = dev_download(dn, (size_t)batch, RV_WT_F32);
    verdict v = {0};
    compare(&v, "e", ge, e, (size_t)batch * dim, TOL_F32);
    compare(&v, "norm", gn, nrm, (size_t)batch, TOL_F32);
    report(&v, "eos_pool_l2 h=%s batch=%d seq_len=%d dim=%d", tn(t), batch, seq_len, dim);
    free(h), free(len), free(e), free(nrm), free(ge), free(gn);
    rv_cuda_free(ctx, dh), rv_cuda_free(ctx, dlen), rv_cuda_free(ctx, de), rv_cuda_free(ctx, dn);
}

static void test_rows(void)
{
    test_l2_case(4, 33, RV_WT_F32);
    test_l2_case(3, 64, RV_WT_BF16);
    test_eos_pool_case(5, 9, 33, RV_WT_F32);
    test_eos_pool_case(3, 7, 16, RV_WT_BF16);
    if (!quick) {
        test_l2_case(1000, 2048, RV_WT_F32);
        test_eos_pool_case(32, 160, 2048, RV_WT_BF16);
    }
}

/* ---------------------------------------------------------------- matrix products */
/* misalign: the operands start one element into their buffers. sep_c (not
 * with misalign): rv_cuda_gemm_c with Cin in a buffer of its own, which
 * must come out unchanged, and C poisoned. */
static void test_gemm_case(int ta, int tb, int M, int N, int K, int pad, rv_wtype abt, rv_wtype ct, float beta,
                           int misalign, int sep_c)
{
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *a = rnd_alloc(na, 1.0f), *b = rnd_alloc(nb, 1.0f), *cin = rnd_alloc(nc, 1.0f);
    round_to(a, na, abt);
    round_to(b, nb, abt);
    round_to(cin, nc, ct);
    float alpha = 0.75f, *ref = copy_alloc(cin, nc);
    if (M > 0 && N > 0 && K > 0)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, a,
                    lda, b, ldb, beta, ref, ldc);
    else
        for (size_t i = 0; i < nc; i++)
            ref[i] = beta == 0.0f ? 0.0f : beta * cin[i];
    /* misalign: the operands start one element into their buffers */
    size_t off = misalign ? 1 : 0, ab = rv_wtype_size(abt), cb = rv_wtype_size(ct);
    char *da = dev_upload_ex(a, na, abt, off), *db = dev_upload_ex(b, nb, abt, off);
    char *dc = beta == 0.0f || sep_c ? dev_poisoned(nc + off, ct) : dev_upload_ex(cin, nc, ct, off);
    void *dcin = sep_c ? dev_upload(cin, nc, ct) : NULL;
    if (off) {   /* shift the uploaded data by one element */
        float *sa = xmalloc((na + 1) * sizeof *sa), *sb = xmalloc((nb + 1) * sizeof *sb);
        sa[0] = sb[0] = 0.0f;
        memcpy(sa + 1, a, na * sizeof *a);
        memcpy(sb + 1, b, nb * sizeof *b);
        void *ha = encode(sa, na + 1, abt), *hb = encode(sb, nb + 1, abt);
        if (rv_cuda_upload(ctx, da, ha, (na + 1) * ab) != 0 || rv_cuda_upload(ctx, db, hb, (nb + 1) * ab) != 0)
            die_lib("upload");
        if (beta != 0.0f) {
            float *sc = xmalloc((nc + 1) * sizeof *sc);
            sc[0] = 0.0f;
            memcpy(sc + 1, cin, nc * sizeof *cin);
            void *hc = encode(sc, nc + 1, ct);
            if (rv_cuda_upload(ctx, dc, hc, (nc + 1) * cb) != 0)
                die_lib("upload");
            free(sc), free(hc);
        }
        free(sa), free(sb), free(ha), free(hb);
    }
    if ((sep_c ? rv_cuda_gemm_c(ctx, ta, tb, M, N, K, alpha, da, lda, db, ldb, abt, beta, dcin, dc, ldc, ct)
               : rv_cuda_gemm(ctx, ta, tb, M, N, K, alpha, da + off * ab, lda, db + off * ab, ldb, abt, beta,
                              dc + off * cb, ldc, ct)) != 0)
        die_lib("gemm");
    float *all = dev_download(dc, nc + off, ct), *got = all + off;
    /* columns past N (the row padding) are not part of C: compare only C */
    float *gc = xmalloc((size_t)M * N * sizeof *gc), *rc = xmalloc((size_t)M * N * sizeof *rc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            gc[(size_t)i * N + j] = got[(size_t)i * ldc + j];
            rc[(size_t)i * N + j] = ref[(size_t)i * ldc + j];
        }
    verdict v = {0};
    compare(&v, "C", gc, rc, (size_t)M * N, abt == RV_WT_F32 && ct == RV_WT_F32 ? TOL_F32 : TOL_BF16);
    if (sep_c) {
        float *cin_after = dev_download(dcin, nc, ct);
        compare(&v, "Cin unchanged", cin_after, cin, nc, 0.0);
        free(cin_after);
        rv_cuda_free(ctx, dcin);
    }
    report(&v, "gemm%s %s->%s ta=%d tb=%d %dx%dx%d pad=%d beta=%g%s", sep_c ? "_c" : "", tn(abt), tn(ct), ta, tb, M,
           N, K, pad, (double)beta, misalign ? " misaligned" : "");
    free(a), free(b), free(cin), free(ref), free(all), free(gc), free(rc);
    rv_cuda_free(ctx, da), rv_cuda_free(ctx, db), rv_cuda_free(ctx, dc);
}

/* res: rv_cuda_linear_res adding onto y's own contents (the residual stream's use) */
static void test_linear_case(size_t m, size_t out, size_t in, rv_wtype t, int bias, int res)
{
    float *x = rnd_alloc(m * in, 1.0f), *w = rnd_alloc(out * in, 0.5f), *bv = bias ? rnd_alloc(out, 1.0f) : NULL;
    round_to(x, m * in, t);
    round_to(w, out * in, t);
    void *hw = encode(w, out * in, t);
    rv_weight wt = {hw, t, out, in};
    float *scratch = xmalloc((rv_op_linear_scratch(&wt) + 1) * sizeof *scratch), *ref = xmalloc(m * out * sizeof *ref);
    rv_op_linear(ref, x, m, &wt, bv, scratch);
    float *y0 = rnd_alloc(m * out, 1.0f);
    if (res)
        for (size_t i = 0; i < m * out; i++)
            ref[i] += y0[i];
    void *dx = dev_upload(x, m * in, t), *dw = dev_upload_raw(hw, out * in * rv_wtype_size(t));
    void *db = bias ? dev_upload(bv, out, RV_WT_F32) : NULL;
    void *dy = res ? dev_upload(y0, m * out, RV_WT_F32) : dev_poisoned(m * out, RV_WT_F32);
    if ((res ? rv_cuda_linear_res(ctx, dy, RV_WT_F32, dy, dx, m, dw, out, in, t, db)
             : rv_cuda_linear(ctx, dy, RV_WT_F32, dx, m, dw, out, in, t, db)) != 0)
        die_lib("linear");
    float *got = dev_download(dy, m * out, RV_WT_F32);
    verdict v = {0};
    compare(&v, "y", got, ref, m * out, tol_for(t));
    report(&v, "linear%s %s m=%zu out=%zu in=%zu%s", res ? "_res" : "", tn(t), m, out, in, bias ? " bias" : "");
    free(x), free(w), free(bv), free(hw), free(scratch), free(ref), free(got), free(y0);
    rv_cuda_free(ctx, dx), rv_cuda_free(ctx, dw), rv_cuda_free(ctx, db), rv_cuda_free(ctx, dy);
}

/* The plan cache: a repeated product builds its plan once (what keeps a
 * training step from querying cuBLASLt's heuristic at every call), and the
 * counters of rv_cuda_gemm_get_stats move as documented. */
static void test_gemm_stats(void)
{
    const int n = 32;
    float *a = rnd_alloc((size_t)n * n, 1.0f);
    void *da = dev_upload(a, (size_t)n * n, RV_WT_BF16), *dc = dev_poisoned((size_t)n * n, RV_WT_F32);
    rv_cuda_gemm_stats s0, s1, s2;
    rv_cuda_gemm_get_stats(ctx, &s0);
    /* a shape no other case uses: 31 x 29 x 30 */
    if (rv_cuda_gemm(ctx, 0, 1, 31, 29, 30, 1.0f, da, n, da, n, RV_WT_BF16, 0.0f, dc, n, RV_WT_F32) != 0)
        die_lib("gemm");
    rv_cuda_gemm_get_stats(ctx, &s1);
    for (int i = 0; i < 3; i++)
        if (rv_cuda_gemm(ctx, 0, 1, 31, 29, 30, 1.0f, da, n, da, n, RV_WT_BF16, 0.0f, dc, n, RV_WT_F32) != 0)
            die_lib("gemm");
    rv_cuda_gemm_get_stats(ctx, &s2);
    verdict v = {0};
    if (s1.calls != s0.calls + 1 || s1.plans_built != s0.plans_built + 1 || s2.calls != s1.calls + 3 ||
        s2.plans_built != s1.plans_built || s2.fallback_calls - s1.fallback_calls != 3 * (s1.fallback_calls -
                                                                                          s0.fallback_calls)) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail,
                 " calls %llu -> %llu -> %llu, plans built %llu -> %llu -> %llu, fallbacks %llu -> %llu -> %llu;",
                 s0.calls, s1.calls, s2.calls, s0.plans_built, s1.plans_built, s2.plans_built, s0.fallback_calls,
                 s1.fallback_calls, s2.fallback_calls);
    }
    report(&v, "gemm_plan_cache (1 plan for 4 calls of one product)");
    free(a);
    rv_cuda_free(ctx, da);
    rv_cuda_free(ctx, dc);
}

/* RV_GEMM_TUNE=1: plans built while it is set time their cuBLASLt candidates
 * on the first call's operands, into a buffer of their own, and keep the
 * fastest. The products must come out as without it: in place with beta
 * (C read once, written once), into a separate C, and narrowed to bf16. */
static void test_gemm_tune(void)
{
    rv_cuda_gemm_stats s0, s1;
    rv_cuda_gemm_get_stats(ctx, &s0);
    setenv("RV_GEMM_TUNE", "1", 1);
    /* shapes no other case uses, so each builds (and tunes) its plan here */
    test_gemm_case(0, 1, 37, 23, 19, 0, RV_WT_BF16, RV_WT_F32, 1.0f, 0, 0);
    test_gemm_case(1, 0, 21, 17, 33, 3, RV_WT_F32, RV_WT_F32, 0.5f, 0, 1);
    test_gemm_case(0, 0, 19, 27, 11, 0, RV_WT_BF16, RV_WT_BF16, 0.0f, 0, 0);
    unsetenv("RV_GEMM_TUNE");
    rv_cuda_gemm_get_stats(ctx, &s1);
    verdict v = {0};
    unsigned long long tuned = s1.plans_tuned - s0.plans_tuned, failed = s1.tune_failed - s0.tune_failed;
#ifdef RV_CUDA_EMULATE
    const int all_tuned = tuned == 3;   /* the emulator offers 3 candidates for each */
#else
    const int all_tuned = tuned >= 1;   /* cuBLASLt may offer a single candidate for some */
#endif
    if (!all_tuned || failed != 0 || s1.plans_built - s0.plans_built != 3) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " plans built %llu, tuned %llu, tunings failed %llu;",
                 s1.plans_built - s0.plans_built, tuned, failed);
    }
    report(&v, "gemm_tune (RV_GEMM_TUNE=1: 3 plans tuned, none failed; %llu picked another than the first)",
           s1.tune_changed - s0.tune_changed);
}

static void test_gemm(void)
{
    test_gemm_stats();
    test_gemm_tune();
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_gemm_case(ta, tb, 7, 13, 5, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0, 0);
            test_gemm_case(ta, tb, 9, 6, 11, 3, RV_WT_BF16, RV_WT_F32, 0.5f, 0, 0);
        }
    test_gemm_case(0, 1, 1, 1, 1, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0, 0);
    test_gemm_case(0, 1, 5, 4, 0, 0, RV_WT_F32, RV_WT_F32, 0.5f, 0, 0);   /* K = 0: C = beta C */
    test_gemm_case(0, 1, 6, 10, 12, 0, RV_WT_BF16, RV_WT_BF16, 1.0f, 1, 0);
    test_gemm_case(1, 0, 5, 3, 7, 1, RV_WT_F32, RV_WT_F32, 0.0f, 1, 0);
    test_gemm_case(1, 0, 17, 9, 20, 0, RV_WT_BF16, RV_WT_F32, 0.5f, 1, 0);
    test_gemm_case(1, 1, 8, 19, 33, 2, RV_WT_BF16, RV_WT_BF16, 0.0f, 1, 0);
    /* rv_cuda_gemm_c: the residual projections' use, K = 0 (C = beta Cin), odd bf16 row strides */
    test_gemm_case(0, 1, 9, 6, 11, 0, RV_WT_BF16, RV_WT_F32, 1.0f, 0, 1);
    test_gemm_case(1, 0, 5, 3, 7, 2, RV_WT_F32, RV_WT_F32, 0.5f, 0, 1);
    test_gemm_case(0, 1, 5, 4, 0, 0, RV_WT_F32, RV_WT_F32, 0.5f, 0, 1);
    test_gemm_case(0, 0, 7, 5, 9, 1, RV_WT_BF16, RV_WT_BF16, 1.0f, 0, 1);
    test_linear_case(5, 7, 9, RV_WT_F32, 1, 0);
    test_linear_case(4, 6, 8, RV_WT_BF16, 0, 0);
    test_linear_case(5, 7, 9, RV_WT_F32, 1, 1);   /* the residual projections: onto y, with and without a bias */
    test_linear_case(6, 16, 8, RV_WT_BF16, 0, 1);
    if (!quick) {
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                test_gemm_case(ta, tb, 129, 65, 257, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0, 0);
                test_gemm_case(ta, tb, 200, 136, 384, 8, RV_WT_BF16, RV_WT_F32, 1.0f, 0, 0);
            }
        test_gemm_case(0, 1, 512, 1000, 2048, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0, 0);   /* rv-search shape */
        test_gemm_case(0, 1, 2512, 512, 2048, 0, RV_WT_BF16, RV_WT_BF16, 0.0f, 0, 0);
        test_gemm_case(0, 1, 333, 257, 129, 0, RV_WT_BF16, RV_WT_F32, 0.0f, 1, 0);
        test_linear_case(157, 8192, 2048, RV_WT_BF16, 0, 0);
        test_linear_case(33, 896, 896, RV_WT_F32, 1, 0);
    }
}

/* ---------------------------------------------------------------- causal attention */
static void test_attention_packed_case(int n_seqs, const int *lens, int H, int Hkv, int hd, int q_extra, int kv_extra,
                                       rv_wtype t)
{
    size_t *off = xmalloc(((size_t)n_seqs + 1) * sizeof *off);
    int *ioff = xmalloc(((size_t)n_seqs + 1) * sizeof *ioff), max_len = 0;
    off[0] = 0;
    ioff[0] = 0;
    for (int s = 0; s < n_seqs; s++) {
        off[s + 1] = off[s] + (size_t)lens[s];
        ioff[s + 1] = (int)off[s + 1];
        max_len = lens[s] > max_len ? lens[s] : max_len;
    }
    size_t T = off[n_seqs], qs = (size_t)H * hd + (size_t)q_extra, ks = (size_t)Hkv * hd + (size_t)kv_extra,
           os = (size_t)H * hd;
    float *q = rnd_alloc(T * qs, 1.5f), *k = rnd_alloc(T * ks, 1.5f), *v = rnd_alloc(T * ks, 1.0f);
    round_to(q, T * qs, t);
    round_to(k, T * ks, t);
    round_to(v, T * ks, t);
    float *ref = xmalloc((T * os + 1) * sizeof *ref);
    if (rv_op_attention_causal(ref, os, q, qs, k, v, ks, (size_t)n_seqs, off, (size_t)H, (size_t)Hkv, (size_t)hd) != 0)
        die_lib("cpu attention");
    void *dq = dev_upload(q, T * qs, t), *dk = dev_upload(k, T * ks, t), *dv = dev_upload(v, T * ks, t);
    void *doff = dev_upload_raw(ioff, ((size_t)n_seqs + 1) * sizeof *ioff), *dout = dev_poisoned(T * os, t);
    if (rv_cuda_attention_causal(ctx, dout, t, os, dq, qs, dk, dv, ks, t, (size_t)n_seqs, doff, (size_t)max_len,
                                 (size_t)H, (size_t)Hkv, (size_t)hd) != 0)
        die_lib("attention");
    float *got = dev_download(dout, T * os, t);
    verdict v_ = {0};
    compare(&v_, "out", got, ref, T * os, tol_for(t));
    report(&v_, "attention_causal packed %s seqs=%d max_len=%d H=%d Hkv=%d hd=%d q_stride=%zu kv_stride=%zu", tn(t),
           n_seqs, max_len, H, Hkv, hd, qs, ks);
    free(off), free(ioff), free(q), free(k), free(v), free(ref), free(got);
    rv_cuda_free(ctx, dq), rv_cuda_free(ctx, dk), rv_cuda_free(ctx, dv), rv_cuda_free(ctx, doff),
        rv_cuda_free(ctx, dout);
}

static void test_attention_padded_case(int B, int L, int H, int Hkv, int hd, rv_wtype t)
{
    rv_attn_shape s = {B, L, H, Hkv, hd};
    int *len = xmalloc((size_t)B * sizeof *len);
    for (int b = 0; b < B; b++)
        len[b] = rnd_int(1, L);
    len[0] = L;
    size_t nq = (size_t)B * L * H * hd, nk = (size_t)B * L * Hkv * hd, nl = (size_t)B * H * L;
    float *q = rnd_alloc(nq, 1.5f), *k = rnd_alloc(nk, 1.5f), *v = rnd_alloc(nk, 1.0f);
    round_to(q, nq, t);
    round_to(k, nk, t);
    round_to(v, nk, t);
    float *ref = xmalloc(nq * sizeof *ref), *ref_lse = xmalloc(nl * sizeof *ref_lse);
    if (rv_causal_attn_forward(&s, len, q, k, v, ref, ref_lse) != 0)
        die_lib("cpu causal attention");
    void *dq = dev_upload(q, nq, t), *dk = dev_upload(k, nk, t), *dv = dev_upload(v, nk, t);
    void *dlen = dev_upload_raw(len, (size_t)B * sizeof *len), *dout = dev_poisoned(nq, RV_WT_F32);
    float *dlse = dev_poisoned(nl, RV_WT_F32);
    if (rv_cuda_causal_attn_forward(ctx, &s, dlen, dq, dk, dv, t, dout, RV_WT_F32, dlse) != 0)
        die_lib("causal attention");
    float *got = dev_download(dout, nq, RV_WT_F32), *glse = dev_download(dlse, nl, RV_WT_F32);
    verdict v_ = {0};
    compare(&v_, "out", got, ref, nq, tol_for(t));
    compare(&v_, "lse", glse, ref_lse, nl, tol_for(t));
    report(&v_, "causal_attn_forward padded %s B=%d L=%d H=%d Hkv=%d hd=%d", tn(t), B, L, H, Hkv, hd);
    free(len), free(q), free(k), free(v), free(ref), free(ref_lse), free(got), free(glse);
    rv_cuda_free(ctx, dq), rv_cuda_free(ctx, dk), rv_cuda_free(ctx, dv), rv_cuda_free(ctx, dlen),
        rv_cuda_free(ctx, dout), rv_cuda_free(ctx, dlse);
}

/* bf16 q/k/v with head_dim a multiple of 16 (<= 128) run the tensor-core
 * kernels (attention_tc.cu): every head_dim they are built for (16 to 128
 * in steps of 16), odd lengths (1, 5, 17, 37, 157: partial 64-row tiles and
 * a diagonal inside a tile), key lengths below L, GQA ratios 1, 2, 4,
 * strided rows (fused qkv; an odd stride takes the element-wise tile
 * loads); test_train_backward has their backward. head_dim 8 in bf16 stays
 * on the fp32 kernels. */
static void test_attention(void)
{
    static const int l1[] = {1, 17, 40}, l2[] = {5}, l3[] = {157, 33, 160, 1, 97}, l4[] = {64, 200};
    static const int l5[] = {1, 5, 17, 37}, l6[] = {157, 33}, l7[] = {70, 1, 129}, l8[] = {37, 5}, l9[] = {65, 17};
    test_attention_packed_case(3, l1, 4, 2, 16, 0, 0, RV_WT_F32);
    test_attention_packed_case(1, l2, 2, 1, 128, 0, 0, RV_WT_BF16);
    test_attention_padded_case(3, 37, 4, 1, 32, RV_WT_F32);
    test_attention_packed_case(4, l5, 4, 1, 16, 2 * 1 * 16, 2 * 1 * 16, RV_WT_BF16);   /* fused-qkv-like strides */
    test_attention_packed_case(2, l6, 4, 2, 32, 0, 0, RV_WT_BF16);
    test_attention_packed_case(3, l7, 2, 2, 64, 3, 5, RV_WT_BF16);   /* odd strides: element-wise loads */
    test_attention_packed_case(2, l8, 2, 1, 96, 0, 0, RV_WT_BF16);
    test_attention_packed_case(2, l9, 2, 2, 128, 0, 0, RV_WT_BF16);
    for (int hd = 48; hd <= 112; hd += 32)   /* the other head_dims compiled: 48, 80, 112 */
        test_attention_packed_case(2, l8, 2, 1, hd, 0, 0, RV_WT_BF16);
    test_attention_packed_case(2, l8, 2, 1, 8, 0, 0, RV_WT_BF16);   /* head_dim 8: the fp32 kernel */
    test_attention_padded_case(3, 37, 4, 1, 32, RV_WT_BF16);
    test_attention_padded_case(2, 70, 4, 2, 64, RV_WT_BF16);
    if (!quick) {
        test_attention_packed_case(5, l3, 32, 8, 64, 0, 0, RV_WT_BF16);
        test_attention_packed_case(5, l3, 14, 2, 64, 2 * 2 * 64, 0, RV_WT_F32);   /* Qwen2.5-0.5B heads, fused qkv row */
        test_attention_packed_case(5, l3, 14, 2, 64, 2 * 2 * 64, 0, RV_WT_BF16);
        test_attention_packed_case(2, l4, 8, 8, 128, 0, 0, RV_WT_F32);
        test_attention_packed_case(2, l4, 8, 8, 128, 0, 0, RV_WT_BF16);
        test_attention_padded_case(8, 160, 32, 8, 64, RV_WT_BF16);
        test_attention_padded_case(4, 77, 6, 3, 96, RV_WT_F32);
        test_attention_padded_case(4, 77, 6, 3, 96, RV_WT_BF16);
        test_attention_padded_case(4, 513, 8, 2, 128, RV_WT_BF16);
    }
}

/* ---------------------------------------------------------------- in-batch attention */
typedef struct {
    int B, L, H, Hkv, hd, v_norm, skip, zero_pair;
    rv_wtype t;
} ib_case;

static void test_inbatch_case(const ib_case *cs)
{
    const int B = cs->B, L = cs->L, H = cs->H, Hkv = cs->Hkv, hd = cs->hd;
    const rv_wtype t = cs->t;
    rv_inbatch_cfg cfg = {{B, L, H, Hkv, hd}, cs->v_norm, 1e-6f, cs->skip};
    int *len = xmalloc((size_t)B * sizeof *len);
    for (int b = 0; b < B; b++)
        len[b] = rnd_int(1, L);
    len[B - 1] = L;
    /* W: the masked tempered softmax of random unit embeddings (diagonal 0) */
    int D = 8;
    float *qe = rnd_alloc((size_t)B * D, 1.0f), *pe = rnd_alloc((size_t)B * D, 1.0f);
    rv_op_l2_normalize(qe, (size_t)B, (size_t)D);
    rv_op_l2_normalize(pe, (size_t)B, (size_t)D);
    float *S = xmalloc((size_t)B * B * sizeof *S), *W = xmalloc((size_t)B * B * sizeof *W);
    if (rv_inbatch_weights_forward(B, D, qe, pe, 0.2, RV_SIM_FP32, S, W) != 0)
        die_lib("weights");
    if (cs->zero_pair && B >= 3)
        W[0 * B + 2] = 0.0f;   /* an off-diagonal zero: skipped or computed per the config */

    size_t nq = (size_t)B * L * H * hd, nk = (size_t)B * L * Hkv * hd, ns = (size_t)B * B * H * L;
    float *q = rnd_alloc(nq, 1.5f), *k = rnd_alloc(nk, 1.5f), *v = rnd_alloc(nk, 1.0f), *g = rnd_alloc(nq, 1.0f);
    round_to(q, nq, t);
    round_to(k, nk, t);
    round_to(v, nk, t);
    round_to(g, nq, t);
    float *out = xmalloc(nq * sizeof *out), *lse = xmalloc(ns * sizeof *lse), *den = xmalloc(ns * sizeof *den);
    if (rv_inbatch_attn_forward(&cfg, len, W, q, k, v, out, lse, den) != 0)
        die_lib("cpu inbatch forward");
    /* gradients start from random values: the backward adds into them */
    float *gq0 = rnd_alloc(nq, 0.1f), *gk0 = rnd_alloc(nk, 0.1f), *gv0 = rnd_alloc(nk, 0.1f),
          *gw0 = rnd_alloc((size_t)B * B, 0.1f);
    round_to(gq0, nq, t);
    round_to(gk0, nk, t);
    round_to(gv0, nk, t);
    float *rq = copy_alloc(gq0, nq), *rk = copy_alloc(gk0, nk), *rvv = copy_alloc(gv0, nk),
          *rw = copy_alloc(gw0, (size_t)B * B);
    if (rv_inbatch_attn_backward(&cfg, len, W, q, k, v, lse, den, g, rq, rk, rvv, rw) != 0)
        die_lib("cpu inbatch backward");

    void *dlen = dev_upload_raw(len, (size_t)B * sizeof *len), *dW = dev_upload(W, (size_t)B * B, RV_WT_F32);
    void *dq = dev_upload(q, nq, t), *dk = dev_upload(k, nk, t), *dv = dev_upload(v, nk, t), *dg = dev_upload(g, nq, t);
    void *dout = dev_poisoned(nq, t);
    float *dlse = dev_poisoned(ns, RV_WT_F32), *dden = dev_poisoned(ns, RV_WT_F32);
    if (rv_cuda_inbatch_attn_forward(ctx, &cfg, dlen, dW, dq, dk, dv, t, dout, t, dlse, dden) != 0)
        die_lib("inbatch forward");
    float *got = dev_download(dout, nq, t), *glse = dev_download(dlse, ns, RV_WT_F32),
          *gden = dev_download(dden, ns, RV_WT_F32);
    verdict vf = {0};
    compare(&vf, "out", got, out, nq, tol_for(t));
    compare(&vf, "lse", glse, lse, ns, tol_for(t));
    compare(&vf, "denom", gden, den, ns, tol_for(t));
    report(&vf, "inbatch_fwd %s B=%d L=%d H=%d Hkv=%d hd=%d vnorm=%d skip=%d%s", tn(t), B, L, H, Hkv, hd, cs->v_norm,
           cs->skip, cs->zero_pair ? " zero-pair" : "");

    void *dgq = dev_upload(gq0, nq, RV_WT_F32), *dgk = dev_upload(gk0, nk, RV_WT_F32),
         *dgv = dev_upload(gv0, nk, RV_WT_F32), *dgw = dev_upload(gw0, (size_t)B * B, RV_WT_F32);
    if (rv_cuda_inbatch_attn_backward(ctx, &cfg, dlen, dW, dq, dk, dv, t, dlse, dden, dg, dgq, dgk, dgv, RV_WT_F32,
                                      dgw) != 0)
        die_lib("inbatch backward");
    float *hq = dev_download(dgq, nq, RV_WT_F32), *hk = dev_download(dgk, nk, RV_WT_F32),
          *hv = dev_download(dgv, nk, RV_WT_F32), *hw = dev_download(dgw, (size_t)B * B, RV_WT_F32);
    verdict vb = {0};
    compare(&vb, "dq", hq, rq, nq, tol_for(t));
    compare(&vb, "dk", hk, rk, nk, tol_for(t));
    compare(&vb, "dv", hv, rvv, nk, tol_for(t));
    compare(&vb, "dw", hw, rw, (size_t)B * B, tol_for(t));
    report(&vb, "inbatch_bwd %s B=%d L=%d H=%d Hkv=%d hd=%d vnorm=%d skip=%d%s", tn(t), B, L, H, Hkv, hd, cs->v_norm,
           cs->skip, cs->zero_pair ? " zero-pair" : "");

    /* NULL gradient outputs are skipped; the others are unchanged by that */
    float *gk2 = dev_download(dgk, nk, RV_WT_F32);   /* = gk0 + one backward */
    if (rv_cuda_inbatch_attn_backward(ctx, &cfg, dlen, dW, dq, dk, dv, t, dlse, dden, dg, NULL, dgk, NULL, RV_WT_F32,
                                      NULL) != 0)
        die_lib("inbatch backward (dk only)");
    float *gk3 = dev_download(dgk, nk, RV_WT_F32), *twice = xmalloc(nk * sizeof *twice);
    for (size_t i = 0; i < nk; i++)
        twice[i] = rk[i] + (rk[i] - gk0[i]);
    verdict vn = {0};
    compare(&vn, "dk twice", gk3, twice, nk, tol_for(t));
    report(&vn, "inbatch_bwd dk-only accumulate %s B=%d L=%d", tn(t), B, L);

    free(len), free(qe), free(pe), free(S), free(W), free(q), free(k), free(v), free(g), free(out), free(lse),
        free(den);
    free(gq0), free(gk0), free(gv0), free(gw0), free(rq), free(rk), free(rvv), free(rw), free(got), free(glse),
        free(gden);
    free(hq), free(hk), free(hv), free(hw), free(gk2), free(gk3), free(twice);
    rv_cuda_free(ctx, dlen), rv_cuda_free(ctx, dW), rv_cuda_free(ctx, dq), rv_cuda_free(ctx, dk),
        rv_cuda_free(ctx, dv), rv_cuda_free(ctx, dg), rv_cuda_free(ctx, dout), rv_cuda_free(ctx, dlse),
        rv_cuda_free(ctx, dden), rv_cuda_free(ctx, dgq), rv_cuda_free(ctx, dgk), rv_cuda_free(ctx, dgv),
        rv_cuda_free(ctx, dgw);
}

static void test_inbatch(void)
{
    static const ib_case small[] = {
        {3, 7, 2, 1, 16, 1, 1, 1, RV_WT_F32},
        {3, 5, 2, 2, 8, 0, 0, 1, RV_WT_F32},
        {2, 40, 1, 1, 32, 1, 1, 0, RV_WT_F32},
        {2, 6, 2, 1, 128, 1, 0, 0, RV_WT_BF16},
        /* bf16 with head_dim a multiple of 16 runs the tensor-core kernels (inbatch_attn_tc.cu):
         * partial query/key tiles, GQA 1/2/4, V-norm on and off, zero pairs skipped and computed */
        {3, 7, 2, 1, 16, 1, 1, 1, RV_WT_BF16},
        {3, 19, 4, 1, 32, 0, 0, 1, RV_WT_BF16},
        {4, 40, 2, 2, 64, 1, 0, 0, RV_WT_BF16},
        {2, 157, 2, 1, 64, 1, 1, 0, RV_WT_BF16},   /* several 64-row query and key tiles */
        {5, 23, 2, 1, 96, 1, 1, 1, RV_WT_BF16},
        {2, 70, 2, 2, 128, 0, 1, 0, RV_WT_BF16},
        {3, 9, 2, 2, 8, 1, 1, 1, RV_WT_BF16},      /* head_dim 8: the fp32 kernels on bf16 inputs */
    };
    static const ib_case large[] = {
        {4, 19, 4, 2, 16, 1, 1, 1, RV_WT_F32},
        {3, 40, 2, 2, 64, 0, 0, 1, RV_WT_F32},
        {5, 33, 8, 2, 128, 1, 1, 0, RV_WT_F32},
        {4, 19, 4, 2, 16, 1, 1, 1, RV_WT_BF16},
        {16, 160, 32, 8, 64, 1, 1, 0, RV_WT_BF16},   /* the Revela group on LLaMA-3.2-1B */
        {16, 157, 14, 2, 64, 1, 0, 1, RV_WT_F32},    /* Qwen2.5-0.5B heads, odd length */
    };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        test_inbatch_case(&small[i]);
    if (!quick)
        for (size_t i = 0; i < sizeof large / sizeof large[0]; i++)
            test_inbatch_case(&large[i]);
}

/* ---------------------------------------------------------------- training ops: backward
 * Gradient outputs start from random values (base) on both sides; what is
 * compared is what the op added, got - base against ref - base, so a small
 * gradient is not hidden under a large starting value. */
static void compare_delta(verdict *v, const char *what, const float *got, const float *ref, const float *base,
                          size_t n, double tol)
{
    float *dg = xmalloc(n * sizeof *dg), *dr = xmalloc(n * sizeof *dr);
    for (size_t i = 0; i < n; i++) {
        dg[i] = got[i] - base[i];
        dr[i] = ref[i] - base[i];
    }
    compare(v, what, dg, dr, n, tol);
    free(dg), free(dr);
}

/* Gradient base values in storage type t (rounded so both sides start equal). */
static float *grad_base(size_t n, rv_wtype t)
{
    float *g = rnd_alloc(n, 0.1f);
    round_to(g, n, t);
    return g;
}

/* Tolerance for a gradient: the operands' storage and the gradient's
 * (adding into a bf16 gradient rounds the sum). */
static double tol_grad(rv_wtype in_t, rv_wtype g_t)
{
    return in_t == RV_WT_F32 && g_t == RV_WT_F32 ? TOL_F32 : TOL_BF16;
}

static void test_rmsnorm_bwd_case(size_t rows, size_t dim, rv_wtype xt, rv_wtype wt, rv_wtype gt)
{
    size_t n = rows * dim;
    float *x = rnd_alloc(n, 2.0f), *w = rnd_alloc(dim, 1.5f), *dy = rnd_alloc(n, 1.0f);
    round_to(x, n, xt);
    round_to(w, dim, wt);
    round_to(dy, n, gt);
    float *y = xmalloc(n * sizeof *y), *rstd = xmalloc(rows * sizeof *rstd);
    rv_rmsnorm_forward(rows, (int)dim, x, w, 1e-5f, y, rstd);
    float *dx0 = grad_base(n, gt), *dw0 = grad_base(dim, RV_WT_F32);
    float *rdx = copy_alloc(dx0, n), *rdw = copy_alloc(dw0, dim);
    rv_rmsnorm_backward(rows, (int)dim, x, w, rstd, dy, rdx, rdw);
    void *d_x = dev_upload(x, n, xt), *d_w = dev_upload(w, dim, wt), *d_dy = dev_upload(dy, n, gt);
    void *d_dx = dev_upload(dx0, n, gt);
    float *d_dw = dev_upload(dw0, dim, RV_WT_F32), *d_rstd = dev_poisoned(rows, RV_WT_F32);
    void *d_y = dev_poisoned(n, xt);
    /* rstd from the device forward, as a training step would have it */
    if (rv_cuda_rmsnorm(ctx, d_y, xt, d_x, xt, d_w, wt, rows, dim, 1e-5f, d_rstd) != 0 ||
        rv_cuda_rmsnorm_backward(ctx, d_x, xt, d_w, wt, d_rstd, d_dy, d_dx, gt, d_dw, rows, dim) != 0)
        die_lib("rmsnorm_backward");
    float *gdx = dev_download(d_dx, n, gt), *gdw = dev_download(d_dw, dim, RV_WT_F32);
    verdict v = {0};
    compare_delta(&v, "dx", gdx, rdx, dx0, n, tol_grad(xt == RV_WT_F32 && wt == RV_WT_F32 ? RV_WT_F32 : RV_WT_BF16, gt));
    compare_delta(&v, "dw", gdw, rdw, dw0, dim, tol_grad(xt == RV_WT_F32 && wt == RV_WT_F32 ? RV_WT_F32 : RV_WT_BF16, gt));
    report(&v, "rmsnorm_backward x=%s w=%s grad=%s rows=%zu dim=%zu", tn(xt), tn(wt), tn(gt), rows, dim);
    free(x), free(w), free(dy), free(y), free(rstd), free(dx0), free(dw0), free(rdx), free(rdw), free(gdx), free(gdw);
    rv_cuda_free(ctx, d_x), rv_cuda_free(ctx, d_w), rv_cuda_free(ctx, d_dy), rv_cuda_free(ctx, d_dx),
        rv_cuda_free(ctx, d_dw), rv_cuda_free(ctx, d_rstd), rv_cuda_free(ctx, d_y);
}

/* accumulate 0: the device outputs start poisoned and must be overwritten
 * (the CPU twin adds into zeros) */
static void test_swiglu_bwd_case(size_t n, rv_wtype it, rv_wtype dt, rv_wtype gt, int which, int accumulate)
{
    float *g = rnd_alloc(n, 4.0f), *u = rnd_alloc(n, 2.0f), *d = rnd_alloc(n, 1.0f);
    round_to(g, n, it);
    round_to(u, n, it);
    round_to(d, n, dt);
    float *dg0 = grad_base(n, gt), *du0 = grad_base(n, gt);
    if (!accumulate) {
        memset(dg0, 0, n * sizeof *dg0);
        memset(du0, 0, n * sizeof *du0);
    }
    float *rdg = copy_alloc(dg0, n), *rdu = copy_alloc(du0, n);
    rv_swiglu_backward(n, g, u, d, which & 1 ? rdg : NULL, which & 2 ? rdu : NULL);
    void *d_g = dev_upload(g, n, it), *d_u = dev_upload(u, n, it), *d_d = dev_upload(d, n, dt);
    void *d_dg = accumulate ? dev_upload(dg0, n, gt) : dev_poisoned(n, gt);
    void *d_du = accumulate ? dev_upload(du0, n, gt) : dev_poisoned(n, gt);
    if (!accumulate) {   /* an output not asked for stays as the CPU side has it */
        if (!(which & 1))
            rv_cuda_free(ctx, d_dg), d_dg = dev_upload(dg0, n, gt);
        if (!(which & 2))
            rv_cuda_free(ctx, d_du), d_du = dev_upload(du0, n, gt);
    }
    if (rv_cuda_swiglu_backward(ctx, d_g, d_u, it, d_d, dt, which & 1 ? d_dg : NULL, which & 2 ? d_du : NULL, gt,
                                n, accumulate) != 0)
        die_lib("swiglu_backward");
    float *gdg = dev_download(d_dg, n, gt), *gdu = dev_download(d_du, n, gt);
    verdict v = {0};
    compare_delta(&v, "dgate", gdg, rdg, dg0, n, tol_grad(it, gt));
    compare_delta(&v, "dup", gdu, rdu, du0, n, tol_grad(it, gt));
    report(&v, "swiglu_backward in=%s dout=%s grad=%s n=%zu%s%s", tn(it), tn(dt), tn(gt), n,
           which == 3 ? "" : which == 1 ? " dgate only" : " dup only", accumulate ? "" : " overwrite");
    free(g), free(u), free(d), free(dg0), free(du0), free(rdg), free(rdu), free(gdg), free(gdu);
    rv_cuda_free(ctx, d_g), rv_cuda_free(ctx, d_u), rv_cuda_free(ctx, d_d), rv_cuda_free(ctx, d_dg),
        rv_cuda_free(ctx, d_du);
}

static void test_eos_pool_bwd_case(int batch, int seq_len, int dim, rv_wtype gt, int zero_row)
{
    size_t n = (size_t)batch * seq_len * dim;
    float *h = rnd_alloc(n, 2.0f);
    int *len = xmalloc((size_t)batch * sizeof *len);
    for (int b = 0; b < batch; b++)
        len[b] = rnd_int(1, seq_len);
    len[0] = seq_len;
    if (zero_row)   /* sequence 1's EOS row is zero: the clamped (1e-12) branch */
        memset(h + ((size_t)1 * seq_len + len[1] - 1) * dim, 0, (size_t)dim * sizeof *h);
    float *e = xmalloc((size_t)batch * dim * sizeof *e), *nrm = xmalloc((size_t)batch * sizeof *nrm);
    rv_eos_pool_l2_forward(batch, seq_len, dim, len, h, e, nrm);
    float *de = rnd_alloc((size_t)batch * dim, 1.0f);
    if (zero_row)   /* keep the clamped row's gradient finite in bf16 (de / 1e-12 ~ 1e12) */
        for (int c = 0; c < dim; c++)
            de[(size_t)1 * dim + c] *= 1e-10f;
    float *dh0 = grad_base(n, gt), *rdh = copy_alloc(dh0, n);
    rv_eos_pool_l2_backward(batch, seq_len, dim, len, e, nrm, de, rdh);
    float *d_e = dev_upload(e, (size_t)batch * dim, RV_WT_F32), *d_n = dev_upload(nrm, (size_t)batch, RV_WT_F32);
    float *d_de = dev_upload(de, (size_t)batch * dim, RV_WT_F32);
    void *d_dh = dev_upload(dh0, n, gt), *d_len = dev_upload_raw(len, (size_t)batch * sizeof *len);
    if (rv_cuda_eos_pool_l2_backward(ctx, d_e, d_n, d_de, d_dh, gt, batch, seq_len, dim, d_len) != 0)
        die_lib("eos_pool_backward");
    float *gdh = dev_download(d_dh, n, gt);
    verdict v = {0};
    compare_delta(&v, "dh", gdh, rdh, dh0, n, tol_grad(RV_WT_F32, gt));
    report(&v, "eos_pool_l2_backward grad=%s batch=%d seq_len=%d dim=%d%s", tn(gt), batch, seq_len, dim,
           zero_row ? " zero-row" : "");
    free(h), free(len), free(e), free(nrm), free(de), free(dh0), free(rdh), free(gdh);
    rv_cuda_free(ctx, d_e), rv_cuda_free(ctx, d_n), rv_cuda_free(ctx, d_de), rv_cuda_free(ctx, d_dh),
        rv_cuda_free(ctx, d_len);
}

static void test_causal_bwd_case(int B, int L, int H, int Hkv, int hd, rv_wtype t, rv_wtype gt)
{
    rv_attn_shape s = {B, L, H, Hkv, hd};
    int *len = xmalloc((size_t)B * sizeof *len);
    for (int b = 0; b < B; b++)
        len[b] = rnd_int(1, L);
    len[0] = L;
    if (B > 1)
        len[1] = 1;   /* a one-token sequence: every padded row sees key 0 only */
    size_t nq = (size_t)B * L * H * hd, nk = (size_t)B * L * Hkv * hd, nl = (size_t)B * H * L;
    float *q = rnd_alloc(nq, 1.5f), *k = rnd_alloc(nk, 1.5f), *v = rnd_alloc(nk, 1.0f), *g = rnd_alloc(nq, 1.0f);
    round_to(q, nq, t);
    round_to(k, nk, t);
    round_to(v, nk, t);
    round_to(g, nq, t);
    float *out = xmalloc(nq * sizeof *out), *lse = xmalloc(nl * sizeof *lse);
    if (rv_causal_attn_forward(&s, len, q, k, v, out, lse) != 0)
        die_lib("cpu causal attention");
    round_to(out, nq, t);   /* the device backward reads out in qkv_t: both sides use that value */
    float *dq0 = grad_base(nq, gt), *dk0 = grad_base(nk, gt), *dv0 = grad_base(nk, gt);
    float *rdq = copy_alloc(dq0, nq), *rdk = copy_alloc(dk0, nk), *rdv = copy_alloc(dv0, nk);
    if (rv_causal_attn_backward(&s, len, q, k, v, out, lse, g, rdq, rdk, rdv) != 0)
        die_lib("cpu causal attention backward");
    void *d_q = dev_upload(q, nq, t), *d_k = dev_upload(k, nk, t), *d_v = dev_upload(v, nk, t);
    void *d_g = dev_upload(g, nq, t), *d_len = dev_upload_raw(len, (size_t)B * sizeof *len);
    void *d_out = dev_poisoned(nq, t);
    float *d_lse = dev_poisoned(nl, RV_WT_F32);
    /* lse (and out) from the device forward: the pair a training step runs */
    if (rv_cuda_causal_attn_forward(ctx, &s, d_len, d_q, d_k, d_v, t, d_out, t, d_lse) != 0)
        die_lib("causal attention forward");
    void *d_dq = dev_upload(dq0, nq, gt), *d_dk = dev_upload(dk0, nk, gt), *d_dv = dev_upload(dv0, nk, gt);
    if (rv_cuda_causal_attn_backward(ctx, &s, d_len, d_q, d_k, d_v, d_out, d_lse, d_g, t, d_dq, d_dk, d_dv, gt) != 0)
        die_lib("causal attention backward");
    float *gdq = dev_download(d_dq, nq, gt), *gdk = dev_download(d_dk, nk, gt), *gdv = dev_download(d_dv, nk, gt);
    verdict vb = {0};
    compare_delta(&vb, "dq", gdq, rdq, dq0, nq, tol_grad(t, gt));
    compare_delta(&vb, "dk", gdk, rdk, dk0, nk, tol_grad(t, gt));
    compare_delta(&vb, "dv", gdv, rdv, dv0, nk, tol_grad(t, gt));
    report(&vb, "causal_attn_backward %s grad=%s B=%d L=%d H=%d Hkv=%d hd=%d", tn(t), tn(gt), B, L, H, Hkv, hd);

    /* NULL outputs are skipped: dv alone, added a second time */
    float *gdv1 = dev_download(d_dv, nk, gt);
    if (rv_cuda_causal_attn_backward(ctx, &s, d_len, d_q, d_k, d_v, d_out, d_lse, d_g, t, NULL, NULL, d_dv, gt) != 0)
        die_lib("causal attention backward (dv only)");
    float *gdv2 = dev_download(d_dv, nk, gt);
    float *want = xmalloc(nk * sizeof *want);   /* the first call's contribution once more */
    for (size_t i = 0; i < nk; i++)
        want[i] = gdv1[i] + (rdv[i] - dv0[i]);
    verdict vn = {0};
    compare_delta(&vn, "dv second", gdv2, want, gdv1, nk, tol_grad(t, gt));
    free(gdv1), free(want);
    report(&vn, "causal_attn_backward dv-only accumulate %s B=%d L=%d", tn(t), B, L);

    free(len), free(q), free(k), free(v), free(g), free(out), free(lse), free(dq0), free(dk0), free(dv0), free(rdq),
        free(rdk), free(rdv), free(gdq), free(gdk), free(gdv), free(gdv2);
    rv_cuda_free(ctx, d_q), rv_cuda_free(ctx, d_k), rv_cuda_free(ctx, d_v), rv_cuda_free(ctx, d_g),
        rv_cuda_free(ctx, d_len), rv_cuda_free(ctx, d_out), rv_cuda_free(ctx, d_lse), rv_cuda_free(ctx, d_dq),
        rv_cuda_free(ctx, d_dk), rv_cuda_free(ctx, d_dv);
}

static void test_train_backward(void)
{
    test_rmsnorm_bwd_case(1, 3, RV_WT_F32, RV_WT_F32, RV_WT_F32);   /* dim 1: dx ~ eps, all cancellation */
    test_rmsnorm_bwd_case(7, 129, RV_WT_F32, RV_WT_F32, RV_WT_F32);
    test_rmsnorm_bwd_case(37, 64, RV_WT_BF16, RV_WT_BF16, RV_WT_F32);
    test_rmsnorm_bwd_case(5, 48, RV_WT_BF16, RV_WT_F32, RV_WT_BF16);
    test_swiglu_bwd_case(1, RV_WT_F32, RV_WT_F32, RV_WT_F32, 3, 1);
    test_swiglu_bwd_case(1001, RV_WT_F32, RV_WT_F32, RV_WT_F32, 3, 1);
    test_swiglu_bwd_case(777, RV_WT_BF16, RV_WT_BF16, RV_WT_BF16, 3, 1);
    test_swiglu_bwd_case(300, RV_WT_BF16, RV_WT_F32, RV_WT_F32, 1, 1);
    test_swiglu_bwd_case(300, RV_WT_F32, RV_WT_F32, RV_WT_F32, 2, 1);
    /* the training step's first write (no zeroed buffer): f32 dout, grads in the storage type */
    test_swiglu_bwd_case(1001, RV_WT_F32, RV_WT_F32, RV_WT_F32, 3, 0);
    test_swiglu_bwd_case(777, RV_WT_BF16, RV_WT_F32, RV_WT_BF16, 3, 0);
    test_swiglu_bwd_case(300, RV_WT_BF16, RV_WT_F32, RV_WT_F32, 2, 0);
    test_eos_pool_bwd_case(5, 9, 33, RV_WT_F32, 1);
    test_eos_pool_bwd_case(3, 7, 16, RV_WT_BF16, 0);
    test_causal_bwd_case(3, 37, 4, 1, 32, RV_WT_F32, RV_WT_F32);
    test_causal_bwd_case(2, 21, 2, 2, 16, RV_WT_F32, RV_WT_F32);
    test_causal_bwd_case(2, 19, 3, 1, 128, RV_WT_BF16, RV_WT_F32);
    test_causal_bwd_case(3, 40, 4, 2, 8, RV_WT_BF16, RV_WT_BF16);   /* head_dim 8: the fp32 kernels */
    /* bf16 with head_dim a multiple of 16: the tensor-core kernels (see test_attention) */
    test_causal_bwd_case(3, 37, 4, 1, 16, RV_WT_BF16, RV_WT_BF16);
    test_causal_bwd_case(2, 5, 4, 2, 32, RV_WT_BF16, RV_WT_F32);
    test_causal_bwd_case(2, 70, 2, 2, 64, RV_WT_BF16, RV_WT_F32);
    test_causal_bwd_case(2, 17, 2, 1, 96, RV_WT_BF16, RV_WT_BF16);
    test_causal_bwd_case(2, 157, 2, 1, 32, RV_WT_BF16, RV_WT_F32);
    test_causal_bwd_case(2, 70, 2, 1, 128, RV_WT_BF16, RV_WT_F32);
    for (int hd = 48; hd <= 112; hd += 32)
        test_causal_bwd_case(2, 17, 2, 1, hd, RV_WT_BF16, RV_WT_F32);
    if (!quick) {
        test_rmsnorm_bwd_case(2560, 2048, RV_WT_BF16, RV_WT_BF16, RV_WT_F32);
        test_rmsnorm_bwd_case(333, 896, RV_WT_F32, RV_WT_F32, RV_WT_F32);
        test_swiglu_bwd_case(3 * 1000 * 1000 + 7, RV_WT_BF16, RV_WT_F32, RV_WT_BF16, 3, 0);
        test_eos_pool_bwd_case(32, 160, 2048, RV_WT_F32, 0);
        test_causal_bwd_case(8, 160, 32, 8, 64, RV_WT_BF16, RV_WT_F32);    /* LLaMA-3.2-1B heads */
        test_causal_bwd_case(4, 157, 14, 2, 64, RV_WT_F32, RV_WT_F32);     /* Qwen2.5-0.5B heads, odd length */
        test_causal_bwd_case(4, 77, 6, 3, 96, RV_WT_F32, RV_WT_F32);
        test_causal_bwd_case(4, 77, 6, 3, 96, RV_WT_BF16, RV_WT_F32);
        test_causal_bwd_case(4, 157, 14, 2, 64, RV_WT_BF16, RV_WT_BF16);
        test_causal_bwd_case(2, 200, 8, 8, 128, RV_WT_BF16, RV_WT_BF16);
        test_causal_bwd_case(2, 513, 8, 2, 128, RV_WT_BF16, RV_WT_F32);
    }
}

/* ---------------------------------------------------------------- LM head + cross-entropy */
static double download_double(const double *d)
{
    double x;
    if (rv_cuda_sync(ctx) != 0 || rv_cuda_download(ctx, &x, d, sizeof x) != 0)
        die_lib("download");
    return x;
}

/* which: 1 dx, 2 dhead. chunk: rows per chunk (0: the op's default). */
static void test_ce_case(size_t n, int dim, int vocab, rv_wtype t, rv_wtype gt, int which, size_t chunk)
{
    float *x = rnd_alloc(n * dim, 1.0f), *head = rnd_alloc((size_t)vocab * dim, 0.5f);
    round_to(x, n * dim, t);
    round_to(head, (size_t)vocab * dim, t);
    int32_t *tg = xmalloc(n * sizeof *tg);
    size_t n_valid = 0;
    for (size_t r = 0; r < n; r++) {
        tg[r] = rnd01() < 0.25 ? -100 : rnd_int(0, vocab - 1);   /* a quarter ignored, as padding would be */
        n_valid += tg[r] >= 0;
    }
    tg[0] = vocab - 1;   /* the last vocabulary entry and an ignored row are always there */
    if (n > 1)
        tg[n - 1] = -100;
    n_valid = 0;
    for (size_t r = 0; r < n; r++)
        n_valid += tg[r] >= 0;
    float gs = n_valid ? 1.0f / (float)n_valid : 1.0f;
    float *dx0 = grad_base(n * dim, gt), *dh0 = grad_base((size_t)vocab * dim, gt);
    float *rdx = copy_alloc(dx0, n * dim), *rdh = copy_alloc(dh0, (size_t)vocab * dim);
    double ref_loss = 0;
    if (rv_lm_head_ce(n, dim, vocab, x, head, tg, gs, &ref_loss, which & 1 ? rdx : NULL, which & 2 ? rdh : NULL) != 0)
        die_lib("cpu lm_head_ce");
    void *d_x = dev_upload(x, n * dim, t), *d_h = dev_upload(head, (size_t)vocab * dim, t);
    void *d_tg = dev_upload_raw(tg, n * sizeof *tg);
    void *d_dx = dev_upload(dx0, n * dim, gt), *d_dh = dev_upload(dh0, (size_t)vocab * dim, gt);
    double nan_d = NAN, *d_loss = dev_upload_raw(&nan_d, sizeof nan_d);
    if (rv_cuda_lm_head_ce(ctx, n, dim, vocab, d_x, d_h, t, d_tg, gs, d_loss, which & 1 ? d_dx : NULL,
                           which & 2 ? d_dh : NULL, gt, chunk) != 0)
        die_lib("lm_head_ce");
    float *gdx = dev_download(d_dx, n * dim, gt), *gdh = dev_download(d_dh, (size_t)vocab * dim, gt);
    float loss = (float)download_double(d_loss), rloss = (float)ref_loss;
    verdict v = {0};
    compare(&v, "loss", &loss, &rloss, 1, t == RV_WT_F32 ? TOL_F32 : TOL_BF16);
    compare_delta(&v, "dx", gdx, rdx, dx0, n * dim, tol_grad(t, gt));
    compare_delta(&v, "dhead", gdh, rdh, dh0, (size_t)vocab * dim, tol_grad(t, gt));
    report(&v, "lm_head_ce %s grad=%s n=%zu dim=%d vocab=%d chunk=%zu%s%s", tn(t), tn(gt), n, dim, vocab, chunk,
           which & 1 ? " dx" : "", which & 2 ? " dhead" : "");
    free(x), free(head), free(tg), free(dx0), free(dh0), free(rdx), free(rdh), free(gdx), free(gdh);
    rv_cuda_free(ctx, d_x), rv_cuda_free(ctx, d_h), rv_cuda_free(ctx, d_tg), rv_cuda_free(ctx, d_dx),
        rv_cuda_free(ctx, d_dh), rv_cuda_free(ctx, d_loss);
}

/* A target past the vocabulary must poison the loss (NaN), never read past the logits row. */
static void test_ce_bad_target(void)
{
    const size_t n = 3;
    const int dim = 8, vocab = 10;
    float *x = rnd_alloc(n * dim, 1.0f), *head = rnd_alloc((size_t)vocab * dim, 1.0f);
    int32_t tg[3] = {2, vocab, -100};
    void *d_x = dev_upload(x, n * dim, RV_WT_F32), *d_h = dev_upload(head, (size_t)vocab * dim, RV_WT_F32);
    void *d_tg = dev_upload_raw(tg, sizeof tg);
    double zero = 0.0, *d_loss = dev_upload_raw(&zero, sizeof zero);
    if (rv_cuda_lm_head_ce(ctx, n, dim, vocab, d_x, d_h, RV_WT_F32, d_tg, 0.5f, d_loss, NULL, NULL, RV_WT_F32, 0) != 0)
        die_lib("lm_head_ce");
    double loss = download_double(d_loss);
    verdict v = {0};
    if (!isnan(loss)) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " loss %g with a target = vocab, expected NaN", loss);
    }
    report(&v, "lm_head_ce target >= vocab gives a NaN loss");
    free(x), free(head);
    rv_cuda_free(ctx, d_x), rv_cuda_free(ctx, d_h), rv_cuda_free(ctx, d_tg), rv_cuda_free(ctx, d_loss);
}

static void test_ce(void)
{
    test_ce_bad_target();
    test_ce_case(13, 24, 50, RV_WT_F32, RV_WT_F32, 3, 4);   /* 4 chunks, the last partial */
    test_ce_case(9, 16, 77, RV_WT_BF16, RV_WT_F32, 1, 0);
    test_ce_case(10, 8, 33, RV_WT_F32, RV_WT_F32, 0, 3);    /* loss only */
    test_ce_case(7, 32, 40, RV_WT_BF16, RV_WT_BF16, 2, 2);
    if (!quick) {
        test_ce_case(320, 1024, 32000, RV_WT_BF16, RV_WT_F32, 3, 96);
        test_ce_case(157, 896, 5003, RV_WT_F32, RV_WT_F32, 3, 0);
    }
}

/* ---------------------------------------------------------------- optimizer */
static void test_adamw_case(size_t n, double wd, int steps)
{
    rv_adamw_hparams hp = {1e-3, 0.9, 0.999, 1e-8, wd};
    float *p = rnd_alloc(n, 1.0f), *m = xmalloc(n * sizeof *m), *v = xmalloc(n * sizeof *v);
    memset(m, 0, n * sizeof *m);
    memset(v, 0, n * sizeof *v);
    float *d_p = dev_upload(p, n, RV_WT_F32), *d_m = dev_upload(m, n, RV_WT_F32), *d_v = dev_upload(v, n, RV_WT_F32);
    float *d_g = rv_cuda_alloc(ctx, n * sizeof(float));
    if (!d_g)
        die_lib("alloc");
    verdict vr = {0};
    for (int t = 1; t <= steps; t++) {   /* fresh gradients each step: the moments carry over */
        float *g = rnd_alloc(n, t == 2 ? 1e-6f : 1.0f);   /* a tiny step: eps matters */
        hp.lr = 1e-3 * t;
        if (rv_cuda_upload(ctx, d_g, g, n * sizeof *g) != 0 || rv_cuda_adamw_update(ctx, n, d_p, d_g, d_m, d_v, t, &hp) != 0)
            die_lib("adamw");
        if (rv_adamw_update(n, p, g, m, v, t, &hp) != 0)
            die_lib("cpu adamw");
        free(g);
    }
    float *gp = dev_download(d_p, n, RV_WT_F32), *gm = dev_download(d_m, n, RV_WT_F32),
          *gv = dev_download(d_v, n, RV_WT_F32);
    compare(&vr, "param", gp, p, n, TOL_F32);
    compare(&vr, "m", gm, m, n, TOL_F32);
    compare(&vr, "v", gv, v, n, TOL_F32);
    report(&vr, "adamw n=%zu wd=%g steps=%d", n, wd, steps);

    /* sum of squares (added into a device double) and scale */
    double base = 0.5, *d_ss = dev_upload_raw(&base, sizeof base);
    if (rv_cuda_sum_squares(ctx, n, d_p, d_ss) != 0 || rv_cuda_scale(ctx, n, d_p, 0.37f) != 0)
        die_lib("sum_squares/scale");
    float ss = (float)download_double(d_ss), rss = (float)(base + rv_sum_squares(n, p));
    rv_scale(n, p, 0.37f);
    float *gs = dev_download(d_p, n, RV_WT_F32);
    verdict vs = {0};
    compare(&vs, "sum_squares", &ss, &rss, 1, TOL_F32);
    compare(&vs, "scale", gs, p, n, 0.0);   /* one float product per element: exact */
    report(&vs, "sum_squares+scale n=%zu", n);
    free(p), free(m), free(v), free(gp), free(gm), free(gv), free(gs);
    rv_cuda_free(ctx, d_p), rv_cuda_free(ctx, d_m), rv_cuda_free(ctx, d_v), rv_cuda_free(ctx, d_g),
        rv_cuda_free(ctx, d_ss);
}

/* ---------------------------------------------------------------- in-batch weights W */
static void test_weights_case(int B, int dim, double tau, rv_sim_numerics num, int which)
{
    float *q = rnd_alloc((size_t)B * dim, 1.0f), *p = rnd_alloc((size_t)B * dim, 1.0f);
    rv_op_l2_normalize(q, (size_t)B, (size_t)dim);   /* unit vectors, as the pooled embeddings are */
    rv_op_l2_normalize(p, (size_t)B, (size_t)dim);
    size_t bb = (size_t)B * B;
    float *S = xmalloc(bb * sizeof *S), *W = xmalloc(bb * sizeof *W);
    if (rv_inbatch_weights_forward(B, dim, q, p, tau, num, S, W) != 0)
        die_lib("cpu weights");
    float *d_q = dev_upload(q, (size_t)B * dim, RV_WT_F32), *d_p = dev_upload(p, (size_t)B * dim, RV_WT_F32);
    float *d_s = dev_poisoned(bb, RV_WT_F32), *d_w = dev_poisoned(bb, RV_WT_F32);
    if (rv_cuda_inbatch_weights_forward(ctx, B, dim, d_q, d_p, tau, num, d_s, d_w) != 0)
        die_lib("weights forward");
    float *gS = dev_download(d_s, bb, RV_WT_F32), *gW = dev_download(d_w, bb, RV_WT_F32);
    verdict vf = {0};
    /* bf16 mode: one ulp of bf16 in S or S/tau may flip in the last place between double dot products in
     * another order; the tolerance is bf16's */
    double tol = num == RV_SIM_BF16 ? TOL_BF16 : TOL_F32;
    compare(&vf, "S", gS, S, bb, tol);
    compare(&vf, "W", gW, W, bb, tol);
    for (int i = 0; i < B; i++)
        if (gW[i * B + i] != 0.0f) {
            vf.bad = 1;
            snprintf(vf.detail + strlen(vf.detail), sizeof vf.detail - strlen(vf.detail), " W[%d][%d] = %g != 0;", i,
                     i, (double)gW[i * B + i]);
            break;
        }
    report(&vf, "inbatch_weights_forward %s B=%d dim=%d tau=%g", num == RV_SIM_BF16 ? "bf16" : "fp32", B, dim, tau);

    /* backward from the CPU's W (both sides differentiate the same W) */
    float *dw = rnd_alloc(bb, 1.0f), *ds = xmalloc(bb * sizeof *ds);
    float *dq0 = grad_base((size_t)B * dim, RV_WT_F32), *dp0 = grad_base((size_t)B * dim, RV_WT_F32);
    /* The gradients the op adds are tiny at tau = 1e-4 (W is nearly one-hot:
     * ds cancels), so a base of the usual size would round them away in the
     * fp32 adds on both sides: scale the bases to the size of what is added. */
    {
        size_t n = (size_t)B * dim;
        float *zq = calloc(n, sizeof *zq), *zp = calloc(n, sizeof *zp);
        if (!zq || !zp)
            die_lib("host memory");
        rv_inbatch_weights_backward(B, dim, q, p, W, tau, dw, ds, zq, zp);
        double sq = 0, sp = 0;
        for (size_t e = 0; e < n; e++)
            sq += (double)zq[e] * zq[e], sp += (double)zp[e] * zp[e];
        for (size_t e = 0; e < n; e++) {
            dq0[e] *= (float)(10.0 * sqrt(sq / n));   /* base entries ~0.1: now ~ the delta's rms */
            dp0[e] *= (float)(10.0 * sqrt(sp / n));
        }
        free(zq);
        free(zp);
    }
    float *rdq = copy_alloc(dq0, (size_t)B * dim), *rdp = copy_alloc(dp0, (size_t)B * dim);
    rv_inbatch_weights_backward(B, dim, q, p, W, tau, dw, ds, which & 1 ? rdq : NULL, which & 2 ? rdp : NULL);
    float *d_W = dev_upload(W, bb, RV_WT_F32), *d_dw = dev_upload(dw, bb, RV_WT_F32), *d_ds = dev_poisoned(bb, RV_WT_F32);
    float *d_dq = dev_upload(dq0, (size_t)B * dim, RV_WT_F32), *d_dp = dev_upload(dp0, (size_t)B * dim, RV_WT_F32);
    if (rv_cuda_inbatch_weights_backward(ctx, B, dim, d_q, d_p, d_W, tau, d_dw, d_ds, which & 1 ? d_dq : NULL,
                                         which & 2 ? d_dp : NULL) != 0)
        die_lib("weights backward");
    float *gds = dev_download(d_ds, bb, RV_WT_F32), *gdq = dev_download(d_dq, (size_t)B * dim, RV_WT_F32),
          *gdp = dev_download(d_dp, (size_t)B * dim, RV_WT_F32);
    verdict vb = {0};
    compare(&vb, "ds", gds, ds, bb, TOL_F32);
    compare_delta(&vb, "dq", gdq, rdq, dq0, (size_t)B * dim, TOL_F32);
    compare_delta(&vb, "dp", gdp, rdp, dp0, (size_t)B * dim, TOL_F32);
    report(&vb, "inbatch_weights_backward B=%d dim=%d tau=%g%s%s", B, dim, tau, which & 1 ? " dq" : "",
           which & 2 ? " dp" : "");
    free(q), free(p), free(S), free(W), free(gS), free(gW), free(dw), free(ds), free(dq0), free(dp0), free(rdq),
        free(rdp), free(gds), free(gdq), free(gdp);
    rv_cuda_free(ctx, d_q), rv_cuda_free(ctx, d_p), rv_cuda_free(ctx, d_s), rv_cuda_free(ctx, d_w),
        rv_cuda_free(ctx, d_W), rv_cuda_free(ctx, d_dw), rv_cuda_free(ctx, d_ds), rv_cuda_free(ctx, d_dq),
        rv_cuda_free(ctx, d_dp);
}

static void test_optimizer_weights(void)
{
    test_adamw_case(1, 0.0, 1);
    test_adamw_case(1001, 0.01, 3);
    test_weights_case(2, 8, 0.05, RV_SIM_FP32, 3);
    test_weights_case(16, 64, 1e-4, RV_SIM_FP32, 3);   /* the reference's tau */
    test_weights_case(5, 33, 0.2, RV_SIM_BF16, 1);
    test_weights_case(16, 48, 1e-4, RV_SIM_BF16, 2);
    if (!quick) {
        test_adamw_case(3 * 1000 * 1000 + 7, 0.1, 2);
        test_weights_case(16, 2048, 1e-4, RV_SIM_FP32, 3);
        test_weights_case(64, 896, 0.05, RV_SIM_BF16, 3);
    }
}

/* ---------------------------------------------------------------- errors are reported, not fatal */
static void test_errors(void)
{
    verdict v = {0};
    rv_inbatch_cfg cfg = {{2, 4, 2, 2, 256, }, 1, 1e-6f, 1};   /* head_dim 256 > 128 */
    rv_error_clear();
    if (rv_cuda_inbatch_attn_forward(ctx, &cfg, NULL, NULL, NULL, NULL, NULL, RV_WT_F32, NULL, RV_WT_F32, NULL,
                                     NULL) != -1 ||
        !strstr(rv_error_get(), "head_dim")) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " head_dim 256 not refused (message: %s)", rv_error_get());
    }
    if (rv_cuda_gemm(ctx, 0, 0, 2, 2, 2, 1.0f, NULL, 1, NULL, 2, RV_WT_F32, 0.0f, NULL, 2, RV_WT_F32) != -1) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " gemm with lda < K not refused");
    }
    rv_attn_shape big = {2, 4, 2, 2, 256};
    if (rv_cuda_causal_attn_backward(ctx, &big, NULL, NULL, NULL, NULL, NULL, NULL, NULL, RV_WT_F32, NULL, NULL, NULL,
                                     RV_WT_F32) != -1 ||
        !strstr(rv_error_get(), "head_dim")) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " causal backward head_dim 256 not refused (message: %s)", rv_error_get());
    }
    if (rv_cuda_lm_head_ce(ctx, 4, 8, 16, NULL, NULL, RV_WT_BF16, NULL, 1.0f, NULL, (void *)16, NULL, RV_WT_F16, 0) !=
        -1) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " lm_head_ce with f16 gradients of bf16 operands not refused");
    }
    rv_adamw_hparams hp = {1e-3, 0.9, 0.999, 1e-8, 0.0};
    if (rv_cuda_adamw_update(ctx, 1, NULL, NULL, NULL, NULL, 0, &hp) != -1 || !strstr(rv_error_get(), "step")) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " adamw step 0 not refused (message: %s)", rv_error_get());
    }
    if (rv_cuda_inbatch_weights_forward(ctx, 4, 8, NULL, NULL, 0.0, RV_SIM_FP32, NULL, NULL) != -1 ||
        !strstr(rv_error_get(), "temperature")) {
        v.bad = 1;
        snprintf(v.detail, sizeof v.detail, " weights with tau 0 not refused (message: %s)", rv_error_get());
    }
    report(&v, "errors are returned with a message");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else {
            fprintf(stderr, "usage: test_gpu_ops [--quick]\n");
            return 2;
        }
    }
#ifdef RV_CUDA_EMULATE
    quick = 1;   /* the emulator runs a block at a time: small shapes only */
#endif
    const char *why = "";
    if (rv_cuda_device_count(&why) < 1) {
        printf("SKIP test_gpu_ops (no CUDA device: %s)\n", why);
        return 0;
    }
    ctx = rv_cuda_open(0);
    if (!ctx) {
        printf("FAIL " SUITE "/open (%s)\n", rv_error_get());
        return 1;
    }
    printf("# device: %s%s\n", rv_cuda_device_name(ctx), quick ? " (small shapes only)" : "");
    test_convert();
    test_mma();
    test_rmsnorm();
    test_rope();
    test_swiglu_add();
    test_embedding();
    test_rows();
    test_gemm();
    test_attention();
    test_inbatch();
    test_train_backward();
    test_ce();
    test_optimizer_weights();
    test_errors();
    rv_cuda_close(ctx);
    printf("# %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
