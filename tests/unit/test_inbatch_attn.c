/* test_inbatch_attn.c — the Revela in-batch weights W and in-batch attention
 * (inbatch_attn.h): backward against fourth-order central differences,
 * forward against a direct double-precision evaluation of the equations,
 * and both against the JAX goldens of scripts/revela_reference.py
 * (tests/fixtures/train/ops.safetensors). Run the binary directly to see
 * the measured errors. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "inbatch_attn.h"
#include "test.h"
#include "test_train_util.h"

#define FD_TOL 2e-4
#define FD_H (1.0f / 32)
#define PROBES 48

/* ------------------------------------------------------------- weights W */
typedef struct {
    int B, D;
    double tau;
    float *q, *p, *s, *w, *G;
} w_ctx;

static double w_loss(void *ctx)
{
    w_ctx *c = ctx;
    if (rv_inbatch_weights_forward(c->B, c->D, c->q, c->p, c->tau, RV_SIM_FP32, c->s, c->w) != 0)
        return NAN;
    return dot_d(c->w, c->G, (size_t)c->B * c->B);
}

static void test_weights_fp32(void)
{
    w_ctx c = {.B = 5, .D = 6, .tau = 0.5};
    size_t BB = 25;
    c.q = rnd_alloc(30, 1.0f);
    c.p = rnd_alloc(30, 1.0f);
    c.s = zeros(BB);
    c.w = zeros(BB);
    c.G = rnd_alloc(BB, 1.0f);
    REQUIRE(!isnan(w_loss(&c)), "%s", rv_error_get());
    double ferr = 0;
    for (int i = 0; i < 5; i++) {
        double z[5], m = -1e300, sum = 0;
        for (int j = 0; j < 5; j++) {
            double s = 0;
            for (int d = 0; d < 6; d++)
                s += (double)c.q[i * 6 + d] * c.p[j * 6 + d];
            z[j] = s / c.tau;
            if (j != i)
                m = fmax(m, z[j]);
        }
        for (int j = 0; j < 5; j++)
            sum += j == i ? 0 : exp(z[j] - m);
        for (int j = 0; j < 5; j++)
            ferr = fmax(ferr, fabs((j == i ? 0 : exp(z[j] - m) / sum) - c.w[i * 5 + j]));
        CHECK(c.w[i * 5 + i] == 0.0f, "W[%d][%d] = %g, expected exactly 0", i, i, c.w[i * 5 + i]);
    }
    CHECK(ferr < 1e-7, "W differs from the formula by %g", ferr);
    float *ds = zeros(BB), *dq = zeros(30), *dp = zeros(30);
    rv_inbatch_weights_backward(5, 6, c.q, c.p, c.w, c.tau, c.G, ds, dq, dp);
    double eq = fd_check(w_loss, &c, c.q, 30, dq, 30, FD_H);
    double ep = fd_check(w_loss, &c, c.p, 30, dp, 30, FD_H);
    CHECK(eq < FD_TOL && ep < FD_TOL, "fd errors dq %g dp %g", eq, ep);
    REPORT_ERR("weights dq", eq);
    REPORT_ERR("weights dp", ep);
    /* dS directly: with p = I (D = B), S = q, so dL/dq is dL/dS */
    w_ctx e = {.B = 4, .D = 4, .tau = 0.3};
    e.q = rnd_alloc(16, 1.0f);
    e.p = zeros(16);
    for (int i = 0; i < 4; i++)
        e.p[i * 4 + i] = 1.0f;
    e.s = zeros(16);
    e.w = zeros(16);
    e.G = rnd_alloc(16, 1.0f);
    w_loss(&e);
    float *ds2 = zeros(16), *dq2 = zeros(16);
    rv_inbatch_weights_backward(4, 4, e.q, e.p, e.w, e.tau, e.G, ds2, dq2, NULL);
    double es = fd_check(w_loss, &e, e.q, 16, ds2, 16, FD_H);
    CHECK(es < FD_TOL, "ds fd error %g", es);
    REPORT_ERR("weights ds", es);
    CHECK(max_rel_err(ds2, dq2, 16) < 1e-6, "with p = I, dq must equal ds");
    CHECK(rv_inbatch_weights_forward(1, 6, c.q, c.p, 0.5, RV_SIM_FP32, c.s, c.w) == -1, "batch 1 refused");
    CHECK(rv_inbatch_weights_forward(5, 6, c.q, c.p, 0.0, RV_SIM_FP32, c.s, c.w) == -1, "tau 0 refused");
    free(c.q); free(c.p); free(c.s); free(c.w); free(c.G); free(ds); free(dq); free(dp);
    free(e.q); free(e.p); free(e.s); free(e.w); free(e.G); free(ds2); free(dq2);
}

static void test_weights_sharp(void)
{
    /* tau = 1e-4 (the paper's): finite, W_ii = 0, rows sum to 1, near one-hot */
    const int B = 6, D = 8;
    float *q = rnd_alloc(B * D, 1.0f), *p = rnd_alloc(B * D, 1.0f), s[36], w[36], g[36], ds[36];
    REQUIRE(rv_inbatch_weights_forward(B, D, q, p, 1e-4, RV_SIM_FP32, s, w) == 0, "%s", rv_error_get());
    for (int i = 0; i < B; i++) {
        double sum = 0, mx = 0;
        for (int j = 0; j < B; j++) {
            CHECK(isfinite(w[i * B + j]) && w[i * B + j] >= 0, "W[%d][%d] = %g", i, j, w[i * B + j]);
            sum += w[i * B + j];
            mx = fmax(mx, w[i * B + j]);
        }
        CHECK(fabs(sum - 1) < 1e-6 && w[i * B + i] == 0.0f && mx > 0.99, "row %d: sum %g max %g", i, sum, mx);
    }
    for (int i = 0; i < 36; i++)
        g[i] = rnd_sym();
    rv_inbatch_weights_backward(B, D, q, p, w, 1e-4, g, ds, NULL, NULL);
    for (int i = 0; i < 36; i++)
        CHECK(isfinite(ds[i]), "ds[%d] = %g", i, ds[i]);
    free(q);
    free(p);
}

static void test_weights_bf16_fixture(void)
{
    rv_safetensors *st = open_train_fixture("ops.safetensors");
    REQUIRE(st, "%s", rv_error_get());
    const int B = 6, D = 16;
    float *q = fixture_f32(st, "weights_bf16.q", B * D), *p = fixture_f32(st, "weights_bf16.p", B * D);
    float *s_ref = fixture_f32(st, "weights_bf16.s", B * B), *w_ref = fixture_f32(st, "weights_bf16.w", B * B);
    float *tau = fixture_f32(st, "weights_bf16.tau", 1);
    if (q && p && s_ref && w_ref && tau) {
        float s[36], w[36];
        REQUIRE(rv_inbatch_weights_forward(B, D, q, p, tau[0], RV_SIM_BF16, s, w) == 0, "%s", rv_error_get());
        int s_diff = 0;
        double w_err = 0;
        for (int i = 0; i < B * B; i++) {
            s_diff += s[i] != s_ref[i];
            /* one bf16 step (2^-8 relative) allowed where float exp rounds differently at a tie */
            double d = fabs(w[i] - w_ref[i]);
            w_err = fmax(w_err, d / fmax(fabs(w_ref[i]), 1e-30));
            CHECK(d <= fabs(w_ref[i]) * (1.0 / 256) + 1e-30, "W[%d] %g vs reference %g", i, w[i], w_ref[i]);
        }
        CHECK(s_diff == 0, "%d bf16 similarities differ from the reference", s_diff);
        REPORT_ERR("weights bf16 W vs JAX (max rel per entry)", w_err);
    } else {
        CHECK(0, "fixture tensors missing");
    }
    free(q); free(p); free(s_ref); free(w_ref); free(tau);
    rv_safetensors_close(st);
}

/* ------------------------------------------------------------- in-batch attention */
typedef struct {
    rv_inbatch_cfg cfg;
    int lengths[3];
    float *w, *q, *k, *v, *out, *lse, *den, *G;
} ib_ctx;

static size_t ib_nq(const ib_ctx *c)
{
    const rv_attn_shape *s = &c->cfg.shape;
    return (size_t)s->batch * s->seq_len * s->n_heads * s->head_dim;
}

static size_t ib_nk(const ib_ctx *c)
{
    const rv_attn_shape *s = &c->cfg.shape;
    return (size_t)s->batch * s->seq_len * s->n_kv_heads * s->head_dim;
}

static double ib_loss(void *ctx)
{
    ib_ctx *c = ctx;
    if (rv_inbatch_attn_forward(&c->cfg, c->lengths, c->w, c->q, c->k, c->v, c->out, c->lse, c->den) != 0)
        return NAN;
    return dot_d(c->out, c->G, ib_nq(c));
}

/* C from the equations in double, every pair computed. */
static double ib_forward_error(const ib_ctx *c)
{
    const rv_attn_shape *s = &c->cfg.shape;
    int B = s->batch, L = s->seq_len, H = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim, rep = H / Hkv;
    double err = 0;
    for (int i = 0; i < B; i++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < L; t++) {
                double C[64] = {0};
                for (int j = 0; j < B; j++) {
                    int g = h / rep, nk = c->lengths[j];
                    double a[64], m = -1e300, sum = 0, n = 0, b[64] = {0};
                    for (int u = 0; u < nk; u++) {
                        double d = 0;
                        for (int e = 0; e < hd; e++)
                            d += (double)c->q[((i * L + t) * H + h) * hd + e] * c->k[((j * L + u) * Hkv + g) * hd + e];
                        a[u] = d / sqrt(hd);
                        m = fmax(m, a[u]);
                    }
                    for (int u = 0; u < nk; u++)
                        sum += (a[u] = exp(a[u] - m));
                    for (int u = 0; u < nk; u++) {
                        const float *vr = c->v + ((j * L + u) * Hkv + g) * hd;
                        double nv = 0;
                        for (int e = 0; e < hd; e++) {
                            b[e] += a[u] / sum * vr[e];
                            nv += (double)vr[e] * vr[e];
                        }
                        n += a[u] / sum * sqrt(nv);
                    }
                    double den = c->cfg.v_norm ? n + c->cfg.eps : 1.0;
                    for (int e = 0; e < hd; e++)
                        C[e] += c->w[i * B + j] * b[e] / den;
                }
                for (int e = 0; e < hd; e++)
                    err = fmax(err, fabs(C[e] - c->out[((i * L + t) * H + h) * hd + e]));
            }
    return err;
}

static void ib_setup(ib_ctx *c, int v_norm, int skip)
{
    memset(c, 0, sizeof *c);
    c->cfg = (rv_inbatch_cfg){{3, 6, 4, 2, 8}, v_norm, 1e-6f, skip};
    c->lengths[0] = 6;
    c->lengths[1] = 3;
    c->lengths[2] = 5;
    c->q = rnd_alloc(ib_nq(c), 1.5f);
    c->k = rnd_alloc(ib_nk(c), 1.5f);
    c->v = rnd_alloc(ib_nk(c), 1.0f);
    c->G = rnd_alloc(ib_nq(c), 1.0f);
    c->out = zeros(ib_nq(c));
    c->lse = zeros(3 * 3 * 4 * 6);
    c->den = zeros(3 * 3 * 4 * 6);
    /* row-stochastic, zero diagonal, and one exactly-zero off-diagonal weight */
    float w[9] = {0, 0.7f, 0.3f, 0.25f, 0, 0.75f, 1.0f, 0, 0};
    c->w = malloc(sizeof w);
    memcpy(c->w, w, sizeof w);
}

static void ib_free(ib_ctx *c)
{
    free(c->w); free(c->q); free(c->k); free(c->v); free(c->G); free(c->out); free(c->lse); free(c->den);
}

typedef struct {
    float *dq, *dk, *dv, *dw;
} ib_grads;

static int ib_backward(ib_ctx *c, ib_grads *g)
{
    g->dq = zeros(ib_nq(c));
    g->dk = zeros(ib_nk(c));
    g->dv = zeros(ib_nk(c));
    g->dw = zeros(9);
    if (isnan(ib_loss(c)))
        return -1;
    return rv_inbatch_attn_backward(&c->cfg, c->lengths, c->w, c->q, c->k, c->v, c->lse, c->den, c->G, g->dq, g->dk,
                                    g->dv, g->dw);
}

static void ib_grads_free(ib_grads *g)
{
    free(g->dq); free(g->dk); free(g->dv); free(g->dw);
}

static void inbatch_fd_case(int v_norm)
{
    test_rng_state = 0x1234 + (unsigned)v_norm;
    ib_ctx c;
    ib_setup(&c, v_norm, 0);
    ib_grads g;
    REQUIRE(ib_backward(&c, &g) == 0, "%s", rv_error_get());
    ib_loss(&c);
    double ferr = ib_forward_error(&c);
    CHECK(ferr < 1e-5, "forward differs from the equations by %g", ferr);
    double eq = fd_check(ib_loss, &c, c.q, ib_nq(&c), g.dq, PROBES, FD_H);
    double ek = fd_check(ib_loss, &c, c.k, ib_nk(&c), g.dk, PROBES, FD_H);
    double ev = fd_check(ib_loss, &c, c.v, ib_nk(&c), g.dv, PROBES, FD_H);
    double ew = fd_check(ib_loss, &c, c.w, 9, g.dw, 9, FD_H);
    CHECK(eq < FD_TOL && ek < FD_TOL && ev < FD_TOL && ew < FD_TOL, "fd errors dq %g dk %g dv %g dw %g", eq, ek, ev,
          ew);
    const char *tag = v_norm ? "inbatch vnorm" : "inbatch plain";
    char label[64];
    snprintf(label, sizeof label, "%s forward vs direct (abs)", tag);
    REPORT_ERR(label, ferr);
    snprintf(label, sizeof label, "%s dq", tag);
    REPORT_ERR(label, eq);
    snprintf(label, sizeof label, "%s dk", tag);
    REPORT_ERR(label, ek);
    snprintf(label, sizeof label, "%s dv", tag);
    REPORT_ERR(label, ev);
    snprintf(label, sizeof label, "%s dW", tag);
    REPORT_ERR(label, ew);
    /* padded keys of chunk 1 (3 of 6 tokens) are never read */
    double pad = 0;
    for (int t = 3; t < 6; t++)
        for (int e = 0; e < 16; e++)
            pad = fmax(pad, fabs(g.dk[(1 * 6 + t) * 16 + e]) + fabs(g.dv[(1 * 6 + t) * 16 + e]));
    CHECK(pad == 0.0, "padded keys got gradient %g", pad);

    /* Skipping zero-weight pairs changes nothing that reaches the loss. */
    ib_ctx s = c;
    s.cfg.skip_zero_weights = 1;
    ib_loss(&c);   /* c.out was left at the last perturbed point */
    float *out_all = malloc(ib_nq(&c) * sizeof *out_all);
    memcpy(out_all, c.out, ib_nq(&c) * sizeof *out_all);
    s.out = zeros(ib_nq(&c));
    ib_grads gs;
    REQUIRE(ib_backward(&s, &gs) == 0, "%s", rv_error_get());
    double d_out = max_rel_err(s.out, out_all, ib_nq(&c));
    double d_q = max_rel_err(gs.dq, g.dq, ib_nq(&c)), d_k = max_rel_err(gs.dk, g.dk, ib_nk(&c));
    double d_v = max_rel_err(gs.dv, g.dv, ib_nk(&c));
    CHECK(d_out < 1e-6 && d_q < 1e-6 && d_k < 1e-6 && d_v < 1e-6, "skip changes out %g dq %g dk %g dv %g", d_out,
          d_q, d_k, d_v);
    for (int e = 0; e < 9; e++) {
        if (c.w[e] != 0.0f)
            CHECK(fabs(gs.dw[e] - g.dw[e]) <= 1e-6 * fabs(g.dw[e]) + 1e-7, "dw[%d] %g vs %g", e, gs.dw[e], g.dw[e]);
        else
            CHECK(gs.dw[e] == 0.0f, "skipped dw[%d] = %g, expected untouched", e, gs.dw[e]);
    }
    free(out_all);
    free(s.out);
    ib_grads_free(&gs);
    ib_grads_free(&g);
    ib_free(&c);
}

static void test_inbatch_vnorm(void) { inbatch_fd_case(1); }
static void test_inbatch_plain(void) { inbatch_fd_case(0); }

/* Large enough to take the OpenMP paths: one thread and several must give
 * the same C, dq, dk, dv bit for bit (each value is owned by one task) and
 * dW up to summation order; C also against the direct evaluation. */
static void test_inbatch_threads(void)
{
    ib_ctx c;
    memset(&c, 0, sizeof c);
    c.cfg = (rv_inbatch_cfg){{3, 40, 4, 2, 16}, 1, 1e-6f, 1};
    c.lengths[0] = 40;
    c.lengths[1] = 17;
    c.lengths[2] = 33;
    c.q = rnd_alloc(ib_nq(&c), 1.0f);
    c.k = rnd_alloc(ib_nk(&c), 1.0f);
    c.v = rnd_alloc(ib_nk(&c), 1.0f);
    c.G = rnd_alloc(ib_nq(&c), 1.0f);
    c.out = zeros(ib_nq(&c));
    c.lse = zeros(3 * 3 * 4 * 40);
    c.den = zeros(3 * 3 * 4 * 40);
    float w[9] = {0, 0.6f, 0.4f, 0.5f, 0, 0.5f, 0.2f, 0.8f, 0};
    c.w = malloc(sizeof w);
    memcpy(c.w, w, sizeof w);
    int saved = omp_get_max_threads();
    ib_grads g1, g3;
    omp_set_num_threads(1);
    REQUIRE(ib_backward(&c, &g1) == 0, "%s", rv_error_get());
    float *out1 = malloc(ib_nq(&c) * sizeof *out1);
    memcpy(out1, c.out, ib_nq(&c) * sizeof *out1);
    omp_set_num_threads(3);
    REQUIRE(ib_backward(&c, &g3) == 0, "%s", rv_error_get());
    omp_set_num_threads(saved);
    CHECK(memcmp(out1, c.out, ib_nq(&c) * sizeof *out1) == 0, "C depends on the thread count");
    CHECK(memcmp(g1.dq, g3.dq, ib_nq(&c) * sizeof(float)) == 0, "dq depends on the thread count");
    CHECK(memcmp(g1.dk, g3.dk, ib_nk(&c) * sizeof(float)) == 0, "dk depends on the thread count");
    CHECK(memcmp(g1.dv, g3.dv, ib_nk(&c) * sizeof(float)) == 0, "dv depends on the thread count");
    CHECK(max_rel_err(g3.dw, g1.dw, 9) < 1e-6, "dw differs by %g", max_rel_err(g3.dw, g1.dw, 9));
    double ferr = ib_forward_error(&c);
    CHECK(ferr < 1e-5, "forward differs from the equations by %g", ferr);
    REPORT_ERR("inbatch L=40 forward vs direct (abs)", ferr);
    free(out1);
    ib_grads_free(&g1);
    ib_grads_free(&g3);
    ib_free(&c);
}

static void inbatch_fixture_case(rv_safetensors *st, int v_norm)
{
    const int B = 3, L = 7, H = 4, Hkv = 2, hd = 8;
    size_t nq = (size_t)B * L * H * hd, nk = (size_t)B * L * Hkv * hd;
    const char *tag = v_norm ? "vnorm" : "plain";
    char name[64];
    float *q = fixture_f32(st, "inbatch.q", nq), *k = fixture_f32(st, "inbatch.k", nk);
    float *v = fixture_f32(st, "inbatch.v", nk), *w = fixture_f32(st, "inbatch.w", B * B);
    float *G = fixture_f32(st, "inbatch.g", nq);
    int *lengths = fixture_i32(st, "inbatch.lengths", B);
    float *ref[5] = {0};
    const char *part[5] = {"out", "dq", "dk", "dv", "dw"};
    size_t count[5] = {nq, nq, nk, nk, (size_t)B * B};
    int ok = q && k && v && w && G && lengths;
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "inbatch.%s.%s", tag, part[i]);
        ok &= (ref[i] = fixture_f32(st, name, count[i])) != NULL;
    }
    if (ok) {
        rv_inbatch_cfg cfg = {{B, L, H, Hkv, hd}, v_norm, 1e-6f, 0};
        float *got[5] = {zeros(nq), zeros(nq), zeros(nk), zeros(nk), zeros(B * B)};
        float *lse = zeros((size_t)B * B * H * L), *den = zeros((size_t)B * B * H * L);
        int rc = rv_inbatch_attn_forward(&cfg, lengths, w, q, k, v, got[0], lse, den);
        rc |= rv_inbatch_attn_backward(&cfg, lengths, w, q, k, v, lse, den, G, got[1], got[2], got[3], got[4]);
        CHECK(rc == 0, "%s", rv_error_get());
        double worst = 0;
        for (int i = 0; i < 5; i++) {
            double e = max_rel_err(got[i], ref[i], count[i]);
            worst = fmax(worst, e);
            CHECK(e < 1e-5, "%s %s: max rel error %g vs JAX", tag, part[i], e);
            free(got[i]);
        }
        snprintf(name, sizeof name, "inbatch %s vs JAX (worst of C,dq,dk,dv,dW)", tag);
        REPORT_ERR(name, worst);
        free(lse);
        free(den);
    } else {
        CHECK(0, "fixture tensors missing");
    }
    for (int i = 0; i < 5; i++)
        free(ref[i]);
    free(q); free(k); free(v); free(w); free(G); free(lengths);
}

static void test_inbatch_fixture(void)
{
    rv_safetensors *st = open_train_fixture("ops.safetensors");
    REQUIRE(st, "%s", rv_error_get());
    inbatch_fixture_case(st, 1);
    inbatch_fixture_case(st, 0);
    rv_safetensors_close(st);
}

static void test_inbatch_errors(void)
{
    ib_ctx c;
    ib_setup(&c, 1, 0);
    c.lengths[2] = 7;
    CHECK(rv_inbatch_attn_forward(&c.cfg, c.lengths, c.w, c.q, c.k, c.v, c.out, c.lse, c.den) == -1 &&
              strstr(rv_error_get(), "lengths[2]"), "length > seq_len refused: %s", rv_error_get());
    c.lengths[2] = 5;
    c.cfg.shape.n_kv_heads = 3;
    CHECK(rv_inbatch_attn_forward(&c.cfg, c.lengths, c.w, c.q, c.k, c.v, c.out, c.lse, c.den) == -1,
          "heads not a multiple of kv heads refused");
    ib_free(&c);
}

int main(void)
{
    test_suite = "inbatch_attn";
    RUN_TEST(test_weights_fp32);
    RUN_TEST(test_weights_sharp);
    RUN_TEST(test_weights_bf16_fixture);
    RUN_TEST(test_inbatch_vnorm);
    RUN_TEST(test_inbatch_plain);
    RUN_TEST(test_inbatch_threads);
    RUN_TEST(test_inbatch_fixture);
    RUN_TEST(test_inbatch_errors);
    TEST_EXIT();
}
