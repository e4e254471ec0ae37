/* test_gpu_ops.c — every op of kernels/cuda_ops.h against its CPU twin
 * (lib/ops_cpu.c, lib/train_ops.c, lib/inbatch_attn.c, OpenBLAS sgemm) on
 * fresh random inputs of several shapes: odd lengths, partial tiles, GQA
 * ratios, head_dim 16..128, strided rows, misaligned pointers, f32 and bf16
 * storage. Device outputs are poisoned (NaN) before each run; gradient
 * outputs start from random values on both sides (the ops add into them).
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
static void test_rope_case(size_t n_tok, size_t n_heads, size_t hd, size_t extra_stride, rv_wtype t, int with_pos)
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
        void *d1 = dev_upload(xp, n, t), *d2 = dev_upload(xp, n, t);
        if (rv_cuda_rope(ctx, d1, t, n_tok, n_heads * hd, n_heads, hd, NULL, seq_len, dcs, dsn, max_pos, 1) != 0 ||
            rv_cuda_rope(ctx, d2, t, n_tok, n_heads * hd, n_heads, hd, NULL, seq_len, dcs, dsn, max_pos, -1) != 0)
            die_lib("rope");
        float *g1 = dev_download(d1, n, t), *g2 = dev_download(d2, n, t);
        compare(&v, "forward", g1, fwd, n, tol_for(t));
        compare(&v, "backward", g2, bwd, n, tol_for(t));
        report(&v, "rope seq %s tok=%zu heads=%zu hd=%zu seq_len=%zu", tn(t), n_tok, n_heads, hd, seq_len);
        rv_rope_table_free(&tab);
        free(xp), free(fwd), free(bwd), free(g1), free(g2);
        rv_cuda_free(ctx, dcs), rv_cuda_free(ctx, dsn), rv_cuda_free(ctx, d1), rv_cuda_free(ctx, d2);
    }
    free(inv), free(x);
}

static void test_rope(void)
{
    test_rope_case(13, 3, 8, 6, RV_WT_F32, 1);
    test_rope_case(13, 3, 8, 0, RV_WT_F32, 0);
    test_rope_case(9, 2, 16, 0, RV_WT_BF16, 0);
    if (!quick) {
        test_rope_case(200, 8, 64, 2 * 64 * 2, RV_WT_BF16, 1);
        test_rope_case(157, 32, 64, 0, RV_WT_F32, 0);
        test_rope_case(50, 4, 128, 0, RV_WT_BF16, 1);
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
static void test_gemm_case(int ta, int tb, int M, int N, int K, int pad, rv_wtype abt, rv_wtype ct, float beta,
                           int misalign)
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
    char *dc = beta == 0.0f ? dev_poisoned(nc + off, ct) : dev_upload_ex(cin, nc, ct, off);
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
    if (rv_cuda_gemm(ctx, ta, tb, M, N, K, alpha, da + off * ab, lda, db + off * ab, ldb, abt, beta, dc + off * cb, ldc,
                     ct) != 0)
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
    report(&v, "gemm %s->%s ta=%d tb=%d %dx%dx%d pad=%d beta=%g%s", tn(abt), tn(ct), ta, tb, M, N, K, pad,
           (double)beta, misalign ? " misaligned" : "");
    free(a), free(b), free(cin), free(ref), free(all), free(gc), free(rc);
    rv_cuda_free(ctx, da), rv_cuda_free(ctx, db), rv_cuda_free(ctx, dc);
}

static void test_linear_case(size_t m, size_t out, size_t in, rv_wtype t, int bias)
{
    float *x = rnd_alloc(m * in, 1.0f), *w = rnd_alloc(out * in, 0.5f), *bv = bias ? rnd_alloc(out, 1.0f) : NULL;
    round_to(x, m * in, t);
    round_to(w, out * in, t);
    void *hw = encode(w, out * in, t);
    rv_weight wt = {hw, t, out, in};
    float *scratch = xmalloc((rv_op_linear_scratch(&wt) + 1) * sizeof *scratch), *ref = xmalloc(m * out * sizeof *ref);
    rv_op_linear(ref, x, m, &wt, bv, scratch);
    void *dx = dev_upload(x, m * in, t), *dw = dev_upload_raw(hw, out * in * rv_wtype_size(t));
    void *db = bias ? dev_upload(bv, out, RV_WT_F32) : NULL, *dy = dev_poisoned(m * out, RV_WT_F32);
    if (rv_cuda_linear(ctx, dy, RV_WT_F32, dx, m, dw, out, in, t, db) != 0)
        die_lib("linear");
    float *got = dev_download(dy, m * out, RV_WT_F32);
    verdict v = {0};
    compare(&v, "y", got, ref, m * out, tol_for(t));
    report(&v, "linear %s m=%zu out=%zu in=%zu%s", tn(t), m, out, in, bias ? " bias" : "");
    free(x), free(w), free(bv), free(hw), free(scratch), free(ref), free(got);
    rv_cuda_free(ctx, dx), rv_cuda_free(ctx, dw), rv_cuda_free(ctx, db), rv_cuda_free(ctx, dy);
}

static void test_gemm(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_gemm_case(ta, tb, 7, 13, 5, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0);
            test_gemm_case(ta, tb, 9, 6, 11, 3, RV_WT_BF16, RV_WT_F32, 0.5f, 0);
        }
    test_gemm_case(0, 1, 1, 1, 1, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0);
    test_gemm_case(0, 1, 5, 4, 0, 0, RV_WT_F32, RV_WT_F32, 0.5f, 0);   /* K = 0: C = beta C */
    test_gemm_case(0, 1, 6, 10, 12, 0, RV_WT_BF16, RV_WT_BF16, 1.0f, 1);
    test_gemm_case(1, 0, 5, 3, 7, 1, RV_WT_F32, RV_WT_F32, 0.0f, 1);
    test_gemm_case(1, 0, 17, 9, 20, 0, RV_WT_BF16, RV_WT_F32, 0.5f, 1);
    test_gemm_case(1, 1, 8, 19, 33, 2, RV_WT_BF16, RV_WT_BF16, 0.0f, 1);
    test_linear_case(5, 7, 9, RV_WT_F32, 1);
    test_linear_case(4, 6, 8, RV_WT_BF16, 0);
    if (!quick) {
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                test_gemm_case(ta, tb, 129, 65, 257, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0);
                test_gemm_case(ta, tb, 200, 136, 384, 8, RV_WT_BF16, RV_WT_F32, 1.0f, 0);
            }
        test_gemm_case(0, 1, 512, 1000, 2048, 0, RV_WT_F32, RV_WT_F32, 0.0f, 0);   /* rv-search shape */
        test_gemm_case(0, 1, 2512, 512, 2048, 0, RV_WT_BF16, RV_WT_BF16, 0.0f, 0);
        test_gemm_case(0, 1, 333, 257, 129, 0, RV_WT_BF16, RV_WT_F32, 0.0f, 1);
        test_linear_case(157, 8192, 2048, RV_WT_BF16, 0);
        test_linear_case(33, 896, 896, RV_WT_F32, 1);
    }
}

/* ---------------------------------------------------------------- causal attention */
static void test_attention_packed_case(int n_seqs, const int *lens, int H, int Hkv, int hd, int q_extra, rv_wtype t)
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
    size_t T = off[n_seqs], qs = (size_t)H * hd + (size_t)q_extra, ks = (size_t)Hkv * hd, os = (size_t)H * hd;
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
    report(&v_, "attention_causal packed %s seqs=%d max_len=%d H=%d Hkv=%d hd=%d q_stride=%zu", tn(t), n_seqs,
           max_len, H, Hkv, hd, qs);
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

static void test_attention(void)
{
    static const int l1[] = {1, 17, 40}, l2[] = {5}, l3[] = {157, 33, 160, 1, 97}, l4[] = {64, 200};
    test_attention_packed_case(3, l1, 4, 2, 16, 0, RV_WT_F32);
    test_attention_packed_case(1, l2, 2, 1, 128, 0, RV_WT_BF16);
    test_attention_padded_case(3, 37, 4, 1, 32, RV_WT_F32);
    if (!quick) {
        test_attention_packed_case(5, l3, 32, 8, 64, 0, RV_WT_BF16);
        test_attention_packed_case(5, l3, 14, 2, 64, 2 * 2 * 64, RV_WT_F32);   /* Qwen2.5-0.5B heads, fused qkv row */
        test_attention_packed_case(2, l4, 8, 8, 128, 0, RV_WT_F32);
        test_attention_padded_case(8, 160, 32, 8, 64, RV_WT_BF16);
        test_attention_padded_case(4, 77, 6, 3, 96, RV_WT_F32);
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
    test_rmsnorm();
    test_rope();
    test_swiglu_add();
    test_embedding();
    test_rows();
    test_gemm();
    test_attention();
    test_inbatch();
    test_errors();
    rv_cuda_close(ctx);
    printf("# %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
