/* test_forward.c — the CPU forward pass against Hugging Face transformers
 * (golden hidden states and logits of tiny random-weight llama and qwen2
 * models from scripts/make-model-fixtures.py), packed batches, output-row
 * selection, and the ops on their own. */
#include "buf.h"
#include "error.h"
#include "forward.h"
#include "half.h"
#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "test.h"
#include "test_fixture.h"   /* fixture() */

#include <math.h>
#include <stdlib.h>

typedef struct {
    rv_safetensors *st;
    uint32_t *ids;
    size_t *off, n_seqs, n_tok;
    float *hidden, *logits;
} golden;

static int golden_load(golden *g, const char *path)
{
    memset(g, 0, sizeof *g);
    g->st = rv_safetensors_open(path);
    if (!g->st)
        return -1;
    const rv_st_tensor *ids = rv_safetensors_find(g->st, "ids"), *off = rv_safetensors_find(g->st, "offsets"),
                       *h = rv_safetensors_find(g->st, "hidden"), *lg = rv_safetensors_find(g->st, "logits");
    if (!ids || !off || !h)
        return -1;
    g->n_tok = (size_t)ids->n_elements;
    g->n_seqs = (size_t)off->n_elements - 1;
    g->ids = malloc(g->n_tok * sizeof *g->ids);
    g->off = malloc((g->n_seqs + 1) * sizeof *g->off);
    for (size_t i = 0; i < g->n_tok; i++)
        g->ids[i] = rv_load_u32(ids->data + 4 * i);
    for (size_t i = 0; i <= g->n_seqs; i++)
        g->off[i] = (size_t)rv_load_u64(off->data + 8 * i);
    g->hidden = malloc(h->n_elements * sizeof(float));
    rv_st_tensor_to_f32(h, g->hidden);
    if (lg) {
        g->logits = malloc(lg->n_elements * sizeof(float));
        rv_st_tensor_to_f32(lg, g->logits);
    }
    return 0;
}

static void golden_free(golden *g)
{
    rv_safetensors_close(g->st);
    free(g->ids); free(g->off); free(g->hidden); free(g->logits);
}

/* max |a-b| / max |b|: relative to the tensor's scale (elementwise relative
 * error is meaningless near zero). */
static double rel_err(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return mb > 0 ? md / mb : md;
}

static void check_model(const char *name, int with_logits)
{
    char dir[1024], gp[1100];
    snprintf(dir, sizeof dir, "%s", fixture(name));
    snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
    rv_model *m = rv_model_load(dir);
    REQUIRE(m, "load %s: %s", dir, rv_error_get());
    golden g;
    if (golden_load(&g, gp) < 0) {
        CHECK(0, "golden %s: %s", gp, rv_error_get());
        golden_free(&g);
        rv_model_free(m);
        return;
    }
    size_t D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    float *hidden = calloc(g.n_tok * D, sizeof(float)), *logits = calloc(g.n_tok * V, sizeof(float));
    rv_forward *f = rv_forward_new(m);
    int rc = rv_forward_run(f, g.ids, g.off, g.n_seqs, NULL, 0, hidden, with_logits ? logits : NULL);
    CHECK(rc == 0, "forward: %s", rv_error_get());
    double eh = rel_err(hidden, g.hidden, g.n_tok * D);
    printf("  %s: last hidden state max rel error %.3g\n", name, eh);
    CHECK(eh <= 1e-4, "%s hidden rel error %g", name, eh);
    if (with_logits && g.logits) {
        double el = rel_err(logits, g.logits, g.n_tok * V);
        printf("  %s: logits max rel error %.3g\n", name, el);
        CHECK(el <= 1e-4, "%s logits rel error %g", name, el);
    }
    /* last row of every sequence only: the same values */
    size_t rows[16];
    for (size_t s = 0; s < g.n_seqs; s++)
        rows[s] = g.off[s + 1] - 1;
    float *sel = calloc(g.n_seqs * D, sizeof(float)), *sel_logits = calloc(g.n_seqs * V, sizeof(float));
    rc = rv_forward_run(f, g.ids, g.off, g.n_seqs, rows, g.n_seqs, sel, sel_logits);
    CHECK(rc == 0, "forward rows: %s", rv_error_get());
    for (size_t s = 0; s < g.n_seqs; s++) {
        CHECK(rel_err(sel + s * D, g.hidden + rows[s] * D, D) <= 1e-4, "selected row %zu", s);
        if (g.logits)
            CHECK(rel_err(sel_logits + s * V, g.logits + rows[s] * V, V) <= 1e-4, "selected logits %zu", s);
    }
    /* each sequence alone gives what the packed batch gave */
    for (size_t s = 0; s < g.n_seqs; s++) {
        size_t off1[2] = {0, g.off[s + 1] - g.off[s]};
        float *one = calloc(off1[1] * D, sizeof(float));
        CHECK(rv_forward_run(f, g.ids + g.off[s], off1, 1, NULL, 0, one, NULL) == 0, "single");
        CHECK(rel_err(one, hidden + g.off[s] * D, off1[1] * D) <= 1e-5, "sequence %zu alone differs", s);
        free(one);
    }
    free(sel); free(sel_logits);
    rv_forward_free(f);
    free(hidden); free(logits);
    golden_free(&g);
    rv_model_free(m);
}

static void forward_llama_tied_bf16_llama3_rope(void) { check_model("llama_tied", 1); }
static void forward_llama_untied_bias_sharded(void) { check_model("llama_untied", 1); }
static void forward_qwen2_bias_gqa_f16(void) { check_model("qwen2", 1); }

static void forward_rejects_bad_ids(void)
{
    rv_model *m = rv_model_load(fixture("llama_tied"));
    REQUIRE(m, "%s", rv_error_get());
    rv_forward *f = rv_forward_new(m);
    uint32_t ids[3] = {1, 300, 2};
    size_t off[2] = {0, 3};
    float h[3 * 64];
    CHECK(rv_forward_run(f, ids, off, 1, NULL, 0, h, NULL) < 0, "id 300 accepted");
    CHECK(strstr(rv_error_get(), "300") != NULL, "message: %s", rv_error_get());
    size_t row = 5;
    ids[1] = 3;
    CHECK(rv_forward_run(f, ids, off, 1, &row, 1, h, NULL) < 0, "row outside accepted");
    /* an empty batch is fine */
    size_t off0[1] = {0};
    CHECK(rv_forward_run(f, ids, off0, 0, NULL, 0, h, NULL) == 0, "empty batch");
    rv_forward_free(f);
    rv_model_free(m);
}

/* attention against a direct double-precision evaluation of the formula */
static void op_attention_matches_naive(void)
{
    size_t H = 4, KV = 2, hd = 8, lens[3] = {1, 5, 12}, off[4] = {0, 1, 6, 18}, T = 18;
    size_t qd = H * hd, kvd = KV * hd;
    float *q = malloc(T * qd * 4), *k = malloc(T * kvd * 4), *v = malloc(T * kvd * 4), *o = malloc(T * qd * 4);
    for (size_t i = 0; i < T * qd; i++) q[i] = (float)((int)(test_rand() % 2001) - 1000) / 400.0f;
    for (size_t i = 0; i < T * kvd; i++) k[i] = (float)((int)(test_rand() % 2001) - 1000) / 400.0f;
    for (size_t i = 0; i < T * kvd; i++) v[i] = (float)((int)(test_rand() % 2001) - 1000) / 400.0f;
    CHECK(rv_op_attention_causal(o, qd, q, qd, k, v, kvd, 3, off, H, KV, hd) == 0, "attention");
    double worst = 0;
    for (size_t s = 0; s < 3; s++)
        for (size_t t = 0; t < lens[s]; t++)
            for (size_t h = 0; h < H; h++) {
                size_t g = h / (H / KV);
                double sc[16], mx = -1e300, sum = 0;
                for (size_t j = 0; j <= t; j++) {
                    double acc = 0;
                    for (size_t i = 0; i < hd; i++)
                        acc += (double)q[(off[s] + t) * qd + h * hd + i] * k[(off[s] + j) * kvd + g * hd + i];
                    sc[j] = acc / sqrt((double)hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (size_t j = 0; j <= t; j++) sum += sc[j] = exp(sc[j] - mx);
                for (size_t i = 0; i < hd; i++) {
                    double r = 0;
                    for (size_t j = 0; j <= t; j++) r += sc[j] / sum * v[(off[s] + j) * kvd + g * hd + i];
                    double d = fabs(r - o[(off[s] + t) * qd + h * hd + i]);
                    if (d > worst) worst = d;
                }
            }
    CHECK(worst < 1e-5, "attention max abs error %g", worst);
    free(q); free(k); free(v); free(o);
}

/* a bf16 and an f16 weight give the product of their widened values */
static void op_linear_typed_weights(void)
{
    size_t m = 3, n = 5, k = 7;
    uint16_t wb[35], wh[35];
    float wf[35], x[21], bias[5], y[15], ref[15], scratch[35];
    for (size_t i = 0; i < 35; i++) {
        float val = (float)((int)(test_rand() % 201) - 100) / 64.0f;
        wb[i] = rv_f32_to_bf16(val);
        wh[i] = rv_f32_to_f16(val);
        wf[i] = val;   /* exact in both formats (multiples of 1/64 below 2) */
    }
    for (size_t i = 0; i < 21; i++) x[i] = (float)((int)(test_rand() % 201) - 100) / 50.0f;
    for (size_t i = 0; i < 5; i++) bias[i] = (float)i - 2.0f;
    for (size_t r = 0; r < m; r++)
        for (size_t c = 0; c < n; c++) {
            double acc = bias[c];
            for (size_t i = 0; i < k; i++) acc += (double)x[r * k + i] * wf[c * k + i];
            ref[r * n + c] = (float)acc;
        }
    rv_weight ws[3] = {{wf, RV_WT_F32, n, k}, {wb, RV_WT_BF16, n, k}, {wh, RV_WT_F16, n, k}};
    for (int t = 0; t < 3; t++) {
        rv_op_linear(y, x, m, &ws[t], bias, scratch);
        for (size_t i = 0; i < m * n; i++)
            CHECK(fabsf(y[i] - ref[i]) < 1e-4f, "%s y[%zu] %g vs %g", rv_wtype_name(ws[t].type), i, y[i], ref[i]);
    }
}

int main(void)
{
    test_suite = "forward";
    RUN_TEST(forward_llama_tied_bf16_llama3_rope);
    RUN_TEST(forward_llama_untied_bias_sharded);
    RUN_TEST(forward_qwen2_bias_gqa_f16);
    RUN_TEST(forward_rejects_bad_ids);
    RUN_TEST(op_attention_matches_naive);
    RUN_TEST(op_linear_typed_weights);
    TEST_EXIT();
}
