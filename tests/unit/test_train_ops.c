/* test_train_ops.c — the CPU training ops of train_ops.h: every backward
 * against fourth-order central differences of L = sum(out * G) on random
 * inputs (fixed seeds), and the forwards against direct double-precision
 * evaluations of their formulas. Run the binary directly to see the
 * measured errors. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "test.h"
#include "test_train_util.h"
#include "train_ops.h"

/* Finite differences in fp32 with h = 1/32 and a 4th-order stencil agree
 * with these gradients to ~1e-6..2e-5 of the gradient's scale; 2e-4 leaves
 * room for other BLAS builds while any wrong term (typically O(1) relative,
 * at least O(1e-2)) fails. */
#define FD_TOL 2e-4
#define FD_H (1.0f / 32)
#define PROBES 48

/* ------------------------------------------------------------- linear + LoRA */
typedef struct {
    rv_lora_linear l;
    size_t n;
    float *x, *keep, *xl, *xa, *y, *G, *A, *B;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    const float *xl = c->x;
    if (c->keep) {
        rv_mul(c->n * c->l.in, c->x, c->keep, c->xl);
        xl = c->xl;
    }
    if (rv_lora_linear_forward(&c->l, c->n, c->x, xl, c->xa, c->y) != 0)
        return NAN;
    return dot_d(c->y, c->G, c->n * c->l.out);
}

static void lora_linear_case(int with_dropout, int rank)
{
    lin_ctx c = {0};
    const int n = 5, in = 6, out = 7;
    c.n = n;
    float *W = rnd_alloc((size_t)out * in, 0.5f), *bias = rnd_alloc(out, 0.5f);
    c.A = rnd_alloc((size_t)(rank ? rank : 1) * in, 0.5f);
    c.B = rnd_alloc((size_t)out * (rank ? rank : 1), 0.5f);
    c.l = (rv_lora_linear){in, out, W, bias, rank, c.A, c.B, 0.75f};
    c.x = rnd_alloc((size_t)n * in, 1.0f);
    c.G = rnd_alloc((size_t)n * out, 1.0f);
    c.xl = zeros((size_t)n * in);
    c.xa = zeros((size_t)n * (rank ? rank : 1));
    c.y = zeros((size_t)n * out);
    if (with_dropout) {
        c.keep = zeros((size_t)n * in);
        rv_dropout_keep_mask((size_t)n * in, 0.3f, 7, 1, c.keep);
    }
    lin_loss(&c);
    /* forward against the formula */
    double ferr = 0;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double y = bias[o];
            for (int k = 0; k < in; k++)
                y += (double)W[o * in + k] * c.x[i * in + k];
            for (int r = 0; r < rank; r++) {
                double a = 0;
                for (int k = 0; k < in; k++)
                    a += (double)c.A[r * in + k] * c.x[i * in + k] * (c.keep ? c.keep[i * in + k] : 1.0f);
                y += 0.75 * c.B[o * rank + r] * a;
            }
            double d = fabs(y - c.y[i * out + o]);
            ferr = d > ferr ? d : ferr;
        }
    CHECK(ferr < 1e-5, "forward differs from the formula by %g", ferr);
    float *dx = zeros((size_t)n * in), *dA = zeros((size_t)(rank ? rank : 1) * in);
    float *dB = zeros((size_t)out * (rank ? rank : 1));
    REQUIRE(rv_lora_linear_backward(&c.l, (size_t)n, c.keep ? c.xl : c.x, c.keep, c.xa, c.G, dx, dA, dB) == 0,
            "%s", rv_error_get());
    double ex = fd_check(lin_loss, &c, c.x, (size_t)n * in, dx, PROBES, FD_H);
    CHECK(ex < FD_TOL, "dx fd error %g", ex);
    char label[64];
    snprintf(label, sizeof label, "lora_linear%s r=%d dx", with_dropout ? "+dropout" : "", rank);
    REPORT_ERR(label, ex);
    if (rank > 0) {
        double ea = fd_check(lin_loss, &c, c.A, (size_t)rank * in, dA, PROBES, FD_H);
        double eb = fd_check(lin_loss, &c, c.B, (size_t)out * rank, dB, PROBES, FD_H);
        CHECK(ea < FD_TOL, "dA fd error %g", ea);
        CHECK(eb < FD_TOL, "dB fd error %g", eb);
        snprintf(label, sizeof label, "lora_linear%s dA / dB", with_dropout ? "+dropout" : "");
        REPORT_ERR(label, ea > eb ? ea : eb);
    }
    free(W); free(bias); free(c.A); free(c.B); free(c.x); free(c.G); free(c.xl); free(c.xa); free(c.y);
    free(c.keep); free(dx); free(dA); free(dB);
}

static void test_lora_linear(void)
{
    lora_linear_case(0, 3);
    lora_linear_case(1, 3);
    lora_linear_case(0, 0);
}

static void test_dropout_mask(void)
{
    const size_t n = 100000;
    float *a = zeros(n), *b = zeros(n), *c = zeros(n);
    rv_dropout_keep_mask(n, 0.25f, 42, 3, a);
    rv_dropout_keep_mask(n, 0.25f, 42, 3, b);
    rv_dropout_keep_mask(n, 0.25f, 42, 4, c);
    size_t zero = 0, other = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        zero += a[i] == 0.0f;
        other += a[i] != 0.0f && a[i] != 1.0f / 0.75f;
        diff += a[i] != c[i];
    }
    CHECK(memcmp(a, b, n * sizeof *a) == 0, "same seed and stream must give the same mask");
    CHECK(fabs((double)zero / n - 0.25) < 0.01, "dropped fraction %g", (double)zero / n);
    CHECK(other == 0, "%zu kept values are not 1/(1-p)", other);
    CHECK(diff > n / 4, "another stream should give another mask (%zu differ)", diff);
    rv_dropout_keep_mask(n, 0.0f, 42, 3, a);
    CHECK(max_abs(a, n) == 1.0 && a[0] == 1.0f && a[n - 1] == 1.0f, "p = 0 keeps everything");
    free(a); free(b); free(c);
}

static void test_lora_init(void)
{
    const int r = 8, in = 300, out = 5;
    float *a = zeros((size_t)r * in), *a2 = zeros((size_t)r * in), *b = rnd_alloc((size_t)out * r, 1.0f);
    rv_lora_init(r, in, out, 11, 2, a, b);
    rv_lora_init(r, in, out, 11, 2, a2, b);
    double bound = 1 / sqrt(300.0), sum = 0, sq = 0;
    for (int i = 0; i < r * in; i++) {
        CHECK(fabs(a[i]) <= bound, "A[%d] = %g outside +-%g", i, a[i], bound);
        sum += a[i];
        sq += (double)a[i] * a[i];
    }
    /* U(-c, c): mean 0, variance c^2 / 3 (2400 draws: 5% tolerance) */
    CHECK(fabs(sum / (r * in)) < 0.05 * bound, "mean %g", sum / (r * in));
    CHECK(fabs(sq / (r * in) / (bound * bound / 3) - 1) < 0.06, "variance ratio %g", sq / (r * in) / (bound * bound / 3));
    CHECK(max_abs(b, (size_t)out * r) == 0.0, "B must start at zero");
    CHECK(memcmp(a, a2, (size_t)r * in * sizeof *a) == 0, "same seed, same A");
    free(a); free(a2); free(b);
}

/* ------------------------------------------------------------- RMSNorm */
typedef struct {
    size_t n;
    int dim;
    float *x, *w, *y, *rstd, *G;
} norm_ctx;

static double norm_loss(void *p)
{
    norm_ctx *c = p;
    rv_rmsnorm_forward(c->n, c->dim, c->x, c->w, 1e-5f, c->y, c->rstd);
    return dot_d(c->y, c->G, c->n * c->dim);
}

static void test_rmsnorm(void)
{
    norm_ctx c = {.n = 4, .dim = 16};
    size_t N = c.n * c.dim;
    c.x = rnd_alloc(N, 1.0f);
    c.w = rnd_alloc((size_t)c.dim, 0.3f);
    for (int d = 0; d < c.dim; d++)
        c.w[d] += 1.0f;
    c.y = zeros(N);
    c.rstd = zeros(c.n);
    c.G = rnd_alloc(N, 1.0f);
    norm_loss(&c);
    double ferr = 0;
    for (size_t i = 0; i < c.n; i++) {
        double ss = 0;
        for (int d = 0; d < c.dim; d++)
            ss += (double)c.x[i * c.dim + d] * c.x[i * c.dim + d];
        double r = 1 / sqrt(ss / c.dim + 1e-5);
        for (int d = 0; d < c.dim; d++)
            ferr = fmax(ferr, fabs(c.x[i * c.dim + d] * r * c.w[d] - c.y[i * c.dim + d]));
    }
    CHECK(ferr < 1e-5, "forward differs from the formula by %g", ferr);
    float *dx = zeros(N), *dw = zeros((size_t)c.dim);
    rv_rmsnorm_backward(c.n, c.dim, c.x, c.w, c.rstd, c.G, dx, dw);
    double ex = fd_check(norm_loss, &c, c.x, N, dx, PROBES, FD_H);
    double ew = fd_check(norm_loss, &c, c.w, (size_t)c.dim, dw, PROBES, FD_H);
    CHECK(ex < FD_TOL, "dx fd error %g", ex);
    CHECK(ew < FD_TOL, "dw fd error %g", ew);
    REPORT_ERR("rmsnorm dx", ex);
    REPORT_ERR("rmsnorm dw", ew);
    free(c.x); free(c.w); free(c.y); free(c.rstd); free(c.G); free(dx); free(dw);
}

/* ------------------------------------------------------------- RoPE */
typedef struct {
    rv_rope_table t;
    size_t rows;
    int seq_len, heads, hd;
    float *x, *y, *G;
} rope_ctx;

static double rope_loss(void *p)
{
    rope_ctx *c = p;
    size_t N = c->rows * c->heads * c->hd;
    memcpy(c->y, c->x, N * sizeof *c->y);
    rv_rope_forward(&c->t, c->rows, c->seq_len, c->heads, c->hd, c->y);
    return dot_d(c->y, c->G, N);
}

static void test_rope(void)
{
    rope_ctx c = {.rows = 10, .seq_len = 5, .heads = 3, .hd = 8};
    /* llama3-scaled frequencies of a head_dim-8 model (theta 1e4, factor 8,
     * low 1, high 4, original context 1024): 1, 0.1, medium-smoothed, /8 */
    float inv_freq[4] = {1.0f, 0.1f, 0.0064f, 0.000125f};
    REQUIRE(rv_rope_table_init(&c.t, 16, c.hd, inv_freq) == 0, "%s", rv_error_get());
    size_t N = c.rows * c.heads * c.hd;
    c.x = rnd_alloc(N, 1.0f);
    c.y = zeros(N);
    c.G = rnd_alloc(N, 1.0f);
    rope_loss(&c);
    double ferr = 0;
    for (size_t r = 0; r < c.rows; r++)
        for (int h = 0; h < c.heads; h++)
            for (int i = 0; i < c.hd / 2; i++) {
                double a = (double)(r % c.seq_len) * inv_freq[i];
                const float *v = c.x + (r * c.heads + h) * c.hd;
                const float *o = c.y + (r * c.heads + h) * c.hd;
                ferr = fmax(ferr, fabs(v[i] * cos(a) - v[i + 4] * sin(a) - o[i]));
                ferr = fmax(ferr, fabs(v[i + 4] * cos(a) + v[i] * sin(a) - o[i + 4]));
            }
    CHECK(ferr < 1e-6, "forward differs from the formula by %g", ferr);
    float *dx = malloc(N * sizeof *dx);
    memcpy(dx, c.G, N * sizeof *dx);
    rv_rope_backward(&c.t, c.rows, c.seq_len, c.heads, c.hd, dx);
    double ex = fd_check(rope_loss, &c, c.x, N, dx, PROBES, FD_H);
    CHECK(ex < FD_TOL, "dx fd error %g", ex);
    REPORT_ERR("rope dx", ex);
    /* backward undoes forward (a rotation) */
    rope_loss(&c);   /* c.y was left at the last perturbed point */
    memcpy(dx, c.y, N * sizeof *dx);
    rv_rope_backward(&c.t, c.rows, c.seq_len, c.heads, c.hd, dx);
    double rerr = 0;
    for (size_t i = 0; i < N; i++)
        rerr = fmax(rerr, fabs(dx[i] - c.x[i]));
    CHECK(rerr < 1e-6, "backward(forward(x)) != x by %g", rerr);
    rv_rope_table_free(&c.t);
    free(c.x); free(c.y); free(c.G); free(dx);
}

/* ------------------------------------------------------------- causal attention */
typedef struct {
    rv_attn_shape s;
    int lengths[3];
    float *q, *k, *v, *out, *lse, *G;
} attn_ctx;

static double attn_loss(void *p)
{
    attn_ctx *c = p;
    if (rv_causal_attn_forward(&c->s, c->lengths, c->q, c->k, c->v, c->out, c->lse) != 0)
        return NAN;
    return dot_d(c->out, c->G, (size_t)c->s.batch * c->s.seq_len * c->s.n_heads * c->s.head_dim);
}

/* Direct evaluation: out[b,t,h] = sum over allowed s of softmax * v. */
static double attn_forward_error(const attn_ctx *c)
{
    const rv_attn_shape *s = &c->s;
    int L = s->seq_len, H = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, rep = H / Hkv;
    double err = 0;
    for (int b = 0; b < s->batch; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < L; t++) {
                double sc[64], m = -1e300, sum = 0;
                int lim = t + 1 < c->lengths[b] ? t + 1 : c->lengths[b];
                for (int j = 0; j < lim; j++) {
                    double d = 0;
                    for (int e = 0; e < hd; e++)
                        d += (double)c->q[((b * L + t) * H + h) * hd + e] * c->k[((b * L + j) * Hkv + h / rep) * hd + e];
                    sc[j] = d / sqrt(hd);
                    m = fmax(m, sc[j]);
                }
                for (int j = 0; j < lim; j++)
                    sum += (sc[j] = exp(sc[j] - m));
                for (int e = 0; e < hd; e++) {
                    double o = 0;
                    for (int j = 0; j < lim; j++)
                        o += sc[j] / sum * c->v[((b * L + j) * Hkv + h / rep) * hd + e];
                    err = fmax(err, fabs(o - c->out[((b * L + t) * H + h) * hd + e]));
                }
            }
    return err;
}

static void test_causal_attention(void)
{
    attn_ctx c = {.s = {3, 6, 4, 2, 8}, .lengths = {6, 3, 5}};
    size_t nq = (size_t)3 * 6 * 4 * 8, nk = (size_t)3 * 6 * 2 * 8;
    c.q = rnd_alloc(nq, 1.5f);
    c.k = rnd_alloc(nk, 1.5f);
    c.v = rnd_alloc(nk, 1.0f);
    c.out = zeros(nq);
    c.lse = zeros((size_t)3 * 4 * 6);
    c.G = rnd_alloc(nq, 1.0f);
    REQUIRE(!isnan(attn_loss(&c)), "%s", rv_error_get());
    double ferr = attn_forward_error(&c);
    CHECK(ferr < 1e-5, "forward differs from the formula by %g", ferr);
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    REQUIRE(rv_causal_attn_backward(&c.s, c.lengths, c.q, c.k, c.v, c.out, c.lse, c.G, dq, dk, dv) == 0, "%s",
            rv_error_get());
    double eq = fd_check(attn_loss, &c, c.q, nq, dq, PROBES, FD_H);
    double ek = fd_check(attn_loss, &c, c.k, nk, dk, PROBES, FD_H);
    double ev = fd_check(attn_loss, &c, c.v, nk, dv, PROBES, FD_H);
    CHECK(eq < FD_TOL && ek < FD_TOL && ev < FD_TOL, "fd errors dq %g dk %g dv %g", eq, ek, ev);
    REPORT_ERR("causal_attn dq", eq);
    REPORT_ERR("causal_attn dk", ek);
    REPORT_ERR("causal_attn dv", ev);
    /* padded keys (sequence 1 has 3 tokens of 6) are never read */
    double pad = 0;
    for (int t = 3; t < 6; t++)
        for (int e = 0; e < 2 * 8; e++)
            pad = fmax(pad, fabs(dk[(1 * 6 + t) * 16 + e]) + fabs(dv[(1 * 6 + t) * 16 + e]));
    CHECK(pad == 0.0, "padded keys got gradient %g", pad);
    int bad[3] = {6, 0, 5};
    CHECK(rv_causal_attn_forward(&c.s, bad, c.q, c.k, c.v, c.out, c.lse) == -1 &&
              strstr(rv_error_get(), "lengths[1]"), "length 0 must be refused: %s", rv_error_get());
    free(c.q); free(c.k); free(c.v); free(c.out); free(c.lse); free(c.G); free(dq); free(dk); free(dv);
}

/* ------------------------------------------------------------- SwiGLU */
typedef struct {
    size_t n;
    float *g, *u, *y, *G;
} swiglu_ctx;

static double swiglu_loss(void *p)
{
    swiglu_ctx *c = p;
    rv_swiglu_forward(c->n, c->g, c->u, c->y);
    return dot_d(c->y, c->G, c->n);
}

static void test_swiglu(void)
{
    swiglu_ctx c = {.n = 60};
    c.g = rnd_alloc(c.n, 4.0f);
    c.u = rnd_alloc(c.n, 1.0f);
    c.y = zeros(c.n);
    c.G = rnd_alloc(c.n, 1.0f);
    swiglu_loss(&c);
    double ferr = 0;
    for (size_t i = 0; i < c.n; i++)
        ferr = fmax(ferr, fabs(c.g[i] / (1 + exp(-(double)c.g[i])) * c.u[i] - c.y[i]));
    CHECK(ferr < 1e-6, "forward differs from the formula by %g", ferr);
    float *dg = zeros(c.n), *du = zeros(c.n);
    rv_swiglu_backward(c.n, c.g, c.u, c.G, dg, du);
    double eg = fd_check(swiglu_loss, &c, c.g, c.n, dg, c.n, FD_H);
    double eu = fd_check(swiglu_loss, &c, c.u, c.n, du, c.n, FD_H);
    CHECK(eg < FD_TOL && eu < FD_TOL, "fd errors dgate %g dup %g", eg, eu);
    REPORT_ERR("swiglu dgate", eg);
    REPORT_ERR("swiglu dup", eu);
    free(c.g); free(c.u); free(c.y); free(c.G); free(dg); free(du);
}

/* ------------------------------------------------------------- LM head + CE */
typedef struct {
    size_t n;
    int dim, vocab;
    float *x, *head, scale;
    int32_t *tgt;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    double sum;
    if (rv_lm_head_ce(c->n, c->dim, c->vocab, c->x, c->head, c->tgt, c->scale, &sum, NULL, NULL) != 0)
        return NAN;
    return sum * c->scale;
}

static void test_lm_head_ce(void)
{
    ce_ctx c = {.n = 75, .dim = 8, .vocab = 50};   /* 75 rows: several 32-row blocks */
    c.x = rnd_alloc(c.n * c.dim, 1.0f);
    c.head = rnd_alloc((size_t)c.vocab * c.dim, 1.0f);
    c.tgt = malloc(c.n * sizeof *c.tgt);
    size_t valid = 0;
    for (size_t r = 0; r < c.n; r++) {
        c.tgt[r] = test_rand() % 4 == 0 ? -100 : (int32_t)(test_rand() % c.vocab);
        valid += c.tgt[r] >= 0;
    }
    c.scale = 1.0f / (float)valid;
    double loss = ce_loss(&c), direct = 0;
    for (size_t r = 0; r < c.n; r++) {
        if (c.tgt[r] < 0)
            continue;
        double z[50], m = -1e300, s = 0;
        for (int v = 0; v < c.vocab; v++) {
            z[v] = 0;
            for (int d = 0; d < c.dim; d++)
                z[v] += (double)c.x[r * c.dim + d] * c.head[v * c.dim + d];
            m = fmax(m, z[v]);
        }
        for (int v = 0; v < c.vocab; v++)
            s += exp(z[v] - m);
        direct += m + log(s) - z[c.tgt[r]];
    }
    direct /= (double)valid;
    CHECK(fabs(loss - direct) < 1e-6 * fabs(direct), "loss %.9g, direct %.9g", loss, direct);
    float *dx = zeros(c.n * c.dim);
    double sum;
    REQUIRE(rv_lm_head_ce(c.n, c.dim, c.vocab, c.x, c.head, c.tgt, c.scale, &sum, dx, NULL) == 0, "%s", rv_error_get());
    CHECK(fabs(sum * c.scale - loss) < 1e-12, "loss with and without gradient differ");
    double ex = fd_check(ce_loss, &c, c.x, c.n * c.dim, dx, 3 * PROBES, FD_H);
    CHECK(ex < FD_TOL, "dx fd error %g", ex);
    REPORT_ERR("lm_head_ce dx", ex);
    double ignored = 0;
    for (size_t r = 0; r < c.n; r++)
        if (c.tgt[r] < 0)
            ignored = fmax(ignored, max_abs(dx + r * c.dim, (size_t)c.dim));
    CHECK(ignored == 0.0, "ignored rows got gradient %g", ignored);
    /* the full-parameter head gradient: same loss, dhead against finite differences */
    float *dhead = zeros((size_t)c.vocab * c.dim), *dx2 = zeros(c.n * c.dim);
    REQUIRE(rv_lm_head_ce(c.n, c.dim, c.vocab, c.x, c.head, c.tgt, c.scale, &sum, dx2, dhead) == 0, "%s",
            rv_error_get());
    CHECK(fabs(sum * c.scale - loss) < 1e-12 && max_abs_diff(dx, dx2, c.n * c.dim) < 1e-6,
          "the dhead path changes loss or dx");
    double eh = fd_check(ce_loss, &c, c.head, (size_t)c.vocab * c.dim, dhead, 3 * PROBES, FD_H);
    CHECK(eh < FD_TOL, "dhead fd error %g", eh);
    REPORT_ERR("lm_head_ce dhead", eh);
    free(dhead); free(dx2);
    c.tgt[3] = 50;
    CHECK(rv_lm_head_ce(c.n, c.dim, c.vocab, c.x, c.head, c.tgt, c.scale, &sum, dx, NULL) == -1 &&
              strstr(rv_error_get(), "targets[3]"), "target >= vocab must be refused: %s", rv_error_get());
    free(c.x); free(c.head); free(c.tgt); free(dx);
}

static void test_lm_targets(void)
{
    int32_t ids[2 * 4] = {1, 10, 11, 12, 1, 20, 99, 99}, tgt[8];
    int lengths[2] = {4, 2};
    size_t n = rv_lm_targets(2, 4, ids, lengths, tgt);
    int32_t want[8] = {10, 11, 12, -100, 20, -100, -100, -100};
    CHECK(n == 4, "valid targets %zu", n);
    CHECK(memcmp(tgt, want, sizeof want) == 0, "targets differ");
}

/* ------------------------------------------------------------- EOS pooling */
typedef struct {
    int lengths[3];
    float *h, *e, *norm, *G;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    rv_eos_pool_l2_forward(3, 4, 6, c->lengths, c->h, c->e, c->norm);
    return dot_d(c->e, c->G, 3 * 6);
}

static void test_eos_pool(void)
{
    pool_ctx c = {.lengths = {4, 2, 3}};
    c.h = rnd_alloc(3 * 4 * 6, 1.0f);
    c.e = zeros(3 * 6);
    c.norm = zeros(3);
    c.G = rnd_alloc(3 * 6, 1.0f);
    pool_loss(&c);
    double ferr = 0;
    for (int b = 0; b < 3; b++) {
        const float *row = c.h + (b * 4 + c.lengths[b] - 1) * 6;
        double n = 0;
        for (int d = 0; d < 6; d++)
            n += (double)row[d] * row[d];
        for (int d = 0; d < 6; d++)
            ferr = fmax(ferr, fabs(row[d] / sqrt(n) - c.e[b * 6 + d]));
    }
    CHECK(ferr < 1e-6, "forward differs from the formula by %g", ferr);
    float *dh = zeros(3 * 4 * 6);
    rv_eos_pool_l2_backward(3, 4, 6, c.lengths, c.e, c.norm, c.G, dh);
    double eh = fd_check(pool_loss, &c, c.h, 3 * 4 * 6, dh, 3 * 4 * 6, FD_H);
    CHECK(eh < FD_TOL, "dh fd error %g", eh);
    REPORT_ERR("eos_pool_l2 dh", eh);
    free(c.h); free(c.e); free(c.norm); free(c.G); free(dh);
}

static void test_embed_lookup(void)
{
    float table[3 * 2] = {0, 1, 10, 11, 20, 21}, out[2 * 2];
    int32_t ids[2] = {2, 0}, bad[2] = {1, 3};
    CHECK(rv_embed_lookup(2, 2, 3, table, ids, out) == 0 && out[0] == 20 && out[1] == 21 && out[2] == 0 &&
              out[3] == 1, "lookup");
    CHECK(rv_embed_lookup(2, 2, 3, table, bad, out) == -1 && strstr(rv_error_get(), "ids[1]"), "bad id: %s",
          rv_error_get());
}

/* Full-parameter gradients of a linear layer and of the embedding table:
 * loss = <x W^T + b, G> and <lookup(ids), G>, checked by finite differences. */
typedef struct {
    rv_lora_linear l;
    size_t n;
    float *x, *y, *G, *W, *b;
    int32_t *ids;
} wlin_ctx;

static double wlin_loss(void *p)
{
    wlin_ctx *c = p;
    if (rv_lora_linear_forward(&c->l, c->n, c->x, c->x, NULL, c->y) != 0)
        return NAN;
    return dot_d(c->y, c->G, c->n * c->l.out);
}

static double embed_loss(void *p)
{
    wlin_ctx *c = p;
    if (rv_embed_lookup(c->n, c->l.in, c->l.out, c->W, c->ids, c->y) != 0)
        return NAN;
    return dot_d(c->y, c->G, c->n * c->l.in);
}

static void test_full_param_grads(void)
{
    wlin_ctx c = {.n = 9};
    const int in = 6, out = 5;
    c.W = rnd_alloc((size_t)out * in, 1.0f);
    c.b = rnd_alloc((size_t)out, 1.0f);
    c.x = rnd_alloc(c.n * in, 1.0f);
    c.y = zeros(c.n * out);
    c.G = rnd_alloc(c.n * out, 1.0f);
    c.l = (rv_lora_linear){in, out, c.W, c.b, 0, NULL, NULL, 0};
    float *dW = zeros((size_t)out * in), *db = zeros((size_t)out);
    REQUIRE(rv_linear_weight_grad(c.n, in, out, c.x, c.G, dW, db) == 0, "%s", rv_error_get());
    double ew = fd_check(wlin_loss, &c, c.W, (size_t)out * in, dW, PROBES, FD_H);
    double eb = fd_check(wlin_loss, &c, c.b, (size_t)out, db, PROBES, FD_H);
    CHECK(ew < FD_TOL && eb < FD_TOL, "linear weight fd error %g, bias %g", ew, eb);
    REPORT_ERR("linear dweight", ew);
    /* the gradient is added, never overwritten */
    REQUIRE(rv_linear_weight_grad(c.n, in, out, c.x, c.G, dW, NULL) == 0, "%s", rv_error_get());
    float *dW1 = zeros((size_t)out * in);
    rv_linear_weight_grad(c.n, in, out, c.x, c.G, dW1, NULL);
    double worst = 0;
    for (size_t i = 0; i < (size_t)out * in; i++)
        worst = fmax(worst, fabs(dW[i] - 2 * dW1[i]));
    CHECK(worst < 1e-5, "second call must add: off by %g", worst);
    /* embedding rows with repeated ids: vocab = out rows of dim = in */
    int32_t ids[9] = {0, 3, 3, 1, 4, 0, 3, 2, 2};
    c.ids = ids;
    free(c.G);
    c.G = rnd_alloc(c.n * in, 1.0f);
    free(c.y);
    c.y = zeros(c.n * in);
    float *dT = zeros((size_t)out * in);
    rv_embed_backward(c.n, in, ids, c.G, dT);
    double et = fd_check(embed_loss, &c, c.W, (size_t)out * in, dT, (size_t)out * in, FD_H);
    CHECK(et < FD_TOL, "embedding fd error %g", et);
    REPORT_ERR("embed dtable", et);
    free(c.W); free(c.b); free(c.x); free(c.y); free(c.G); free(dW); free(db); free(dW1); free(dT);
}

/* Large enough to take the OpenMP paths: one thread and several must agree
 * (attention bit for bit: each value is owned by one task; the loss up to
 * summation order), and the attention output with the direct evaluation. */
static void test_threads(void)
{
    attn_ctx c = {.s = {3, 48, 4, 2, 16}, .lengths = {48, 20, 37}};
    size_t nq = (size_t)3 * 48 * 4 * 16, nk = (size_t)3 * 48 * 2 * 16;
    c.q = rnd_alloc(nq, 1.0f);
    c.k = rnd_alloc(nk, 1.0f);
    c.v = rnd_alloc(nk, 1.0f);
    c.out = zeros(nq);
    c.lse = zeros((size_t)3 * 4 * 48);
    c.G = rnd_alloc(nq, 1.0f);
    float *d1 = zeros(3 * nq), *d3 = zeros(3 * nq), *out1 = zeros(nq);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    attn_loss(&c);
    memcpy(out1, c.out, nq * sizeof *out1);
    int rc = rv_causal_attn_backward(&c.s, c.lengths, c.q, c.k, c.v, c.out, c.lse, c.G, d1, d1 + nq, d1 + 2 * nq);
    omp_set_num_threads(3);
    attn_loss(&c);
    rc |= rv_causal_attn_backward(&c.s, c.lengths, c.q, c.k, c.v, c.out, c.lse, c.G, d3, d3 + nq, d3 + 2 * nq);
    CHECK(rc == 0, "%s", rv_error_get());
    CHECK(memcmp(out1, c.out, nq * sizeof *out1) == 0, "attention output depends on the thread count");
    CHECK(memcmp(d1, d3, (nq + 2 * nk) * sizeof *d1) == 0, "attention gradients depend on the thread count");
    double ferr = attn_forward_error(&c);
    CHECK(ferr < 1e-5, "forward differs from the formula by %g", ferr);

    ce_ctx e = {.n = 400, .dim = 16, .vocab = 300};
    e.x = rnd_alloc(e.n * e.dim, 1.0f);
    e.head = rnd_alloc((size_t)e.vocab * e.dim, 1.0f);
    e.tgt = malloc(e.n * sizeof *e.tgt);
    for (size_t r = 0; r < e.n; r++)
        e.tgt[r] = r % 5 == 0 ? -100 : (int32_t)(test_rand() % e.vocab);
    e.scale = 1.0f / 320;
    float *dx1 = zeros(e.n * e.dim), *dx3 = zeros(e.n * e.dim);
    double s1, s3;
    omp_set_num_threads(1);
    rc = rv_lm_head_ce(e.n, e.dim, e.vocab, e.x, e.head, e.tgt, e.scale, &s1, dx1, NULL);
    omp_set_num_threads(3);
    rc |= rv_lm_head_ce(e.n, e.dim, e.vocab, e.x, e.head, e.tgt, e.scale, &s3, dx3, NULL);
    omp_set_num_threads(saved);
    CHECK(rc == 0, "%s", rv_error_get());
    CHECK(fabs(s1 - s3) < 1e-9 * fabs(s1), "loss %.12g vs %.12g", s1, s3);
    CHECK(memcmp(dx1, dx3, e.n * e.dim * sizeof *dx1) == 0, "CE gradient depends on the thread count");
    free(c.q); free(c.k); free(c.v); free(c.out); free(c.lse); free(c.G); free(d1); free(d3); free(out1);
    free(e.x); free(e.head); free(e.tgt); free(dx1); free(dx3);
}

int main(void)
{
    test_suite = "train_ops";
    RUN_TEST(test_lora_linear);
    RUN_TEST(test_dropout_mask);
    RUN_TEST(test_lora_init);
    RUN_TEST(test_rmsnorm);
    RUN_TEST(test_rope);
    RUN_TEST(test_causal_attention);
    RUN_TEST(test_swiglu);
    RUN_TEST(test_lm_head_ce);
    RUN_TEST(test_lm_targets);
    RUN_TEST(test_eos_pool);
    RUN_TEST(test_embed_lookup);
    RUN_TEST(test_full_param_grads);
    RUN_TEST(test_threads);
    TEST_EXIT();
}
