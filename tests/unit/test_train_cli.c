/* test_train_cli.c — rv-train's internals: (1) the wiring — a step run on
 * the decoder rv_train_base/rv_train_net build from a loaded HF model gives
 * exactly the loss and LoRA gradients of rv_revela_step_ref on a decoder
 * assembled by hand from the same model.safetensors tensors and adapters;
 * (2) the three views of a group (method §3.5) against direct tokenizer
 * calls; (3) the seeded group order is a permutation that depends on seed
 * and epoch; (4) the JSONL reader's formats and errors. */
#include "test.h"

#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "model.h"
#include "model_config.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "train_data.h"
#include "train_model.h"
#include "test_fixture.h"   /* fixture_file() */

static const char *texts[4] = {"experimental study of a wing in a propeller slipstream",
                               "  the wing flutter was measured at high speed  ", "short one",
                               "heat transfer in laminar flow over a cylinder in a stream of compressible gas"};

static float *tensor(const rv_safetensors *st, const char *name)
{
    const rv_st_tensor *t = rv_safetensors_find(st, name);
    if (!t)
        return NULL;
    float *f = malloc(t->n_elements * sizeof *f);
    if (f && rv_st_tensor_to_f32(t, f) != 0) {
        free(f);
        return NULL;
    }
    return f;
}

static void test_wiring(void)
{
    rv_model *m = rv_model_load(fixture_file("model/llama_tied"));
    REQUIRE(m, "%s", rv_error_get());
    rv_train_base base;
    REQUIRE(rv_train_base_init(&base, m) == 0, "%s", rv_error_get());
    rv_train_net r, l;
    REQUIRE(rv_train_net_init(&r, &base, 3, 1.5, 0x7f, 5, 1, 0) == 0 &&
                rv_train_net_init(&l, &base, 3, 1.5, 0x7f, 5, 2, 1) == 0, "%s", rv_error_get());
    for (size_t i = 0; i < r.n_params; i++) {   /* non-zero B so every gradient path is live */
        r.params[i] += (float)((double)(test_rand() >> 11) / 9007199254740992.0 - 0.5) * 0.05f;
        l.params[i] += (float)((double)(test_rand() >> 11) / 9007199254740992.0 - 0.5) * 0.05f;
    }

    /* the hand-built decoders: tensors read straight from model.safetensors */
    rv_safetensors *st = rv_safetensors_open(fixture_file("model/llama_tied/model.safetensors"));
    REQUIRE(st, "%s", rv_error_get());
    rv_model_config cfg;
    REQUIRE(rv_model_config_load_hf(fixture_file("model/llama_tied"), &cfg) == 0, "%s", rv_error_get());
    const int NL = (int)cfg.n_layers;
    float inv_freq[256];
    rv_rope_inv_freq(&cfg, inv_freq);
    float *embed = tensor(st, "model.embed_tokens.weight"), *norm = tensor(st, "model.norm.weight");
    rv_step_layer hl[2][8];
    float *owned[2][8][RV_N_PROJ * 3 + 2] = {{{0}}};
    float *hg[2][8][RV_N_PROJ * 2] = {{{0}}};
    rv_step_layer_grads hgrads[2][8];
    REQUIRE(NL <= 8 && embed && norm, "fixture shape");
    const rv_train_net *nets[2] = {&r, &l};
    for (int k = 0; k < 2; k++)
        for (int ly = 0; ly < NL; ly++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", ly);
            hl[k][ly].input_norm = owned[k][ly][0] = tensor(st, name);
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", ly);
            hl[k][ly].post_norm = owned[k][ly][1] = tensor(st, name);
            for (int p = 0; p < RV_N_PROJ; p++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", ly, p <= RV_PROJ_O ? "self_attn" : "mlp",
                         rv_proj_names[p]);
                size_t oa, ob;
                int in, out;
                REQUIRE(rv_train_net_tensor(nets[k], ly, p, &oa, &ob, &in, &out), "adapter");
                float *w = owned[k][ly][2 + 3 * p] = tensor(st, name);
                float *a = owned[k][ly][3 + 3 * p] = malloc((size_t)3 * in * sizeof *a);
                float *b = owned[k][ly][4 + 3 * p] = malloc((size_t)3 * out * sizeof *b);
                REQUIRE(w && a && b, "%s", name);
                memcpy(a, nets[k]->params + oa, (size_t)3 * in * sizeof *a);
                memcpy(b, nets[k]->params + ob, (size_t)3 * out * sizeof *b);
                hl[k][ly].proj[p] = (rv_lora_linear){in, out, w, NULL, 3, a, b, 0.5f};
                hgrads[k][ly].lora_a[p] = hg[k][ly][2 * p] = calloc((size_t)3 * in, sizeof(float));
                hgrads[k][ly].lora_b[p] = hg[k][ly][2 * p + 1] = calloc((size_t)3 * out, sizeof(float));
            }
        }
    rv_step_decoder hr = {(int)cfg.vocab_size, (int)cfg.hidden_size, NL, (int)cfg.n_heads, (int)cfg.n_kv_heads,
                          (int)cfg.head_dim, (int)cfg.intermediate_size, (float)cfg.rms_norm_eps, inv_freq, embed,
                          hl[0], norm, NULL};
    rv_step_decoder hlm = hr;
    hlm.layers = hl[1];
    hlm.lm_head = embed;   /* tied */

    rv_tokenizer *tok = rv_tokenizer_load(fixture_file("model/llama_tied"));
    REQUIRE(tok, "%s", rv_error_get());
    rv_tok_state *ts = rv_tok_state_new(tok);
    rv_view_ctx vc = {tok, tok, ts, ts, 2, 2, 40, 1};
    rv_train_group g = {(char *)"", 4, (char **)texts};
    rv_train_batch bt = {0};
    REQUIRE(rv_train_batch_build(&vc, &g, &bt) == 0, "%s", rv_error_get());
    rv_step_opts so = {1e-2, 1, 1e-6f, RV_SIM_FP32, 1};
    float w1[16], w2[16];
    rv_step_result res1 = {0}, res2 = {0};
    res1.w = w1;
    res2.w = w2;
    REQUIRE(rv_revela_step_ref(&r.dec, &l.dec, &bt.b, &so, r.layer_grads, l.layer_grads, &res1) == 0, "%s",
            rv_error_get());
    REQUIRE(rv_revela_step_ref(&hr, &hlm, &bt.b, &so, hgrads[0], hgrads[1], &res2) == 0, "%s", rv_error_get());
    CHECK(res1.loss == res2.loss && isfinite(res1.loss) && res1.loss > 0, "loss %.17g vs %.17g", res1.loss, res2.loss);
    CHECK(memcmp(w1, w2, sizeof w1) == 0, "W differs");
    double gsum = 0;
    for (int k = 0; k < 2; k++)
        for (int ly = 0; ly < NL; ly++)
            for (int p = 0; p < RV_N_PROJ; p++) {
                size_t oa, ob;
                int in, out;
                rv_train_net_tensor(nets[k], ly, p, &oa, &ob, &in, &out);
                if (memcmp(nets[k]->grads + oa, hg[k][ly][2 * p], (size_t)3 * in * sizeof(float)) != 0) {
                    double md = 0, mx = 0;
                    for (int i = 0; i < 3 * in; i++) {
                        double d = fabs(nets[k]->grads[oa + i] - hg[k][ly][2 * p][i]);
                        md = d > md ? d : md;
                        mx = fabs(hg[k][ly][2 * p][i]) > mx ? fabs(hg[k][ly][2 * p][i]) : mx;
                    }
                    printf("  diff %g of %g\n", md, mx);
                }
                CHECK(memcmp(nets[k]->grads + oa, hg[k][ly][2 * p], (size_t)3 * in * sizeof(float)) == 0 &&
                          memcmp(nets[k]->grads + ob, hg[k][ly][2 * p + 1], (size_t)3 * out * sizeof(float)) == 0,
                      "net %d layer %d %s: gradients differ", k, ly, rv_proj_names[p]);
                for (int i = 0; i < 3 * in; i++)
                    gsum += fabs(hg[k][ly][2 * p][i]);
            }
    CHECK(gsum > 0, "all gradients zero");

    for (int k = 0; k < 2; k++)
        for (int ly = 0; ly < NL; ly++) {
            for (int j = 0; j < RV_N_PROJ * 3 + 2; j++)
                free(owned[k][ly][j]);
            for (int j = 0; j < RV_N_PROJ * 2; j++)
                free(hg[k][ly][j]);
        }
    free(embed);
    free(norm);
    rv_train_batch_free(&bt);
    rv_tok_state_free(ts);
    rv_tokenizer_free(tok);
    rv_safetensors_close(st);
    rv_train_net_free(&r);
    rv_train_net_free(&l);
    rv_train_base_free(&base);
    rv_model_free(m);
}

/* LoRA dropout in the step: the masks are fixed by (seed, micro), so the
 * loss is a smooth function of the adapters and central differences must
 * match the analytic gradients; the masks change the loss, differ between
 * micro-batches and p = 0 equals the step without dropout. */
static double step_loss(rv_train_net *r, rv_train_net *l, const rv_train_batch *bt, const rv_step_dropout *d)
{
    rv_step_opts so = {0.5, 1, 1e-6f, RV_SIM_FP32, 1};
    rv_step_result res = {0};
    memset(r->grads, 0, r->n_params * sizeof(float));
    memset(l->grads, 0, l->n_params * sizeof(float));
    if (rv_revela_step_ref_dropout(&r->dec, &l->dec, &bt->b, &so, d, r->layer_grads, l->layer_grads, &res) != 0)
        return NAN;
    return res.loss;
}

static void test_dropout(void)
{
    rv_model *m = rv_model_load(fixture_file("model/llama_tied"));
    REQUIRE(m, "%s", rv_error_get());
    rv_train_base base;
    REQUIRE(rv_train_base_init(&base, m) == 0, "%s", rv_error_get());
    rv_train_net r, l;
    REQUIRE(rv_train_net_init(&r, &base, 2, 2.0, 0x7f, 9, 1, 0) == 0 &&
                rv_train_net_init(&l, &base, 2, 2.0, 0x7f, 9, 2, 1) == 0, "%s", rv_error_get());
    for (size_t i = 0; i < r.n_params; i++) {
        r.params[i] += (float)((double)(test_rand() >> 11) / 9007199254740992.0 - 0.5) * 0.2f;
        l.params[i] += (float)((double)(test_rand() >> 11) / 9007199254740992.0 - 0.5) * 0.2f;
    }
    rv_tokenizer *tok = rv_tokenizer_load(fixture_file("model/llama_tied"));
    REQUIRE(tok, "%s", rv_error_get());
    rv_tok_state *ts = rv_tok_state_new(tok);
    rv_view_ctx vc = {tok, tok, ts, ts, 2, 2, 16, 1};
    rv_train_group g = {(char *)"", 4, (char **)texts};
    rv_train_batch bt = {0};
    REQUIRE(rv_train_batch_build(&vc, &g, &bt) == 0, "%s", rv_error_get());

    rv_step_dropout d0 = {0.0f, 3, 0}, d1 = {0.3f, 3, 0}, d2 = {0.3f, 3, 1};
    double plain = step_loss(&r, &l, &bt, NULL), p0 = step_loss(&r, &l, &bt, &d0);
    double l2 = step_loss(&r, &l, &bt, &d2), l1 = step_loss(&r, &l, &bt, &d1);
    CHECK(plain == p0, "p = 0 changes the loss: %.17g vs %.17g", plain, p0);
    CHECK(l1 != plain && l1 != l2 && isfinite(l1), "dropout losses %.9g %.9g %.9g", plain, l1, l2);
    CHECK(step_loss(&r, &l, &bt, &d1) == l1, "dropout not reproducible");
    /* gradients of d1 are in r.grads / l.grads now; check the largest entry of a few tensors */
    float *gr = malloc(r.n_params * sizeof *gr), *gl = malloc(l.n_params * sizeof *gl);
    REQUIRE(gr && gl, "oom");
    memcpy(gr, r.grads, r.n_params * sizeof *gr);
    memcpy(gl, l.grads, l.n_params * sizeof *gl);
    struct { rv_train_net *n; const float *g; int layer, proj, b; } picks[] = {
        {&r, gr, 0, RV_PROJ_Q, 0}, {&r, gr, 1, RV_PROJ_UP, 1}, {&r, gr, 0, RV_PROJ_V, 1},
        {&l, gl, 0, RV_PROJ_K, 0}, {&l, gl, 1, RV_PROJ_DOWN, 1}, {&l, gl, 1, RV_PROJ_O, 0}};
    for (size_t k = 0; k < sizeof picks / sizeof *picks; k++) {
        size_t oa, ob;
        int in, out;
        rv_train_net_tensor(picks[k].n, picks[k].layer, picks[k].proj, &oa, &ob, &in, &out);
        size_t off = picks[k].b ? ob : oa, cnt = (size_t)2 * (picks[k].b ? out : in), best = off;
        for (size_t i = off; i < off + cnt; i++)
            if (fabsf(picks[k].g[i]) > fabsf(picks[k].g[best]))
                best = i;
        float keep = picks[k].n->params[best];
        const float h = 2e-2f;
        picks[k].n->params[best] = keep + h;
        double up = step_loss(&r, &l, &bt, &d1);
        picks[k].n->params[best] = keep - h;
        double down = step_loss(&r, &l, &bt, &d1);
        picks[k].n->params[best] = keep;
        double fd = (up - down) / (2.0 * h), an = picks[k].g[best];
        CHECK(fabs(fd - an) <= 0.03 * fabs(an) + 2e-5 && fabs(an) > 1e-4, "%s layer %d %s %c: analytic %.6g, "
              "central difference %.6g", picks[k].n == &r ? "retriever" : "lm", picks[k].layer,
              rv_proj_names[picks[k].proj], picks[k].b ? 'B' : 'A', an, fd);
    }
    free(gr);
    free(gl);
    rv_train_batch_free(&bt);
    rv_tok_state_free(ts);
    rv_tokenizer_free(tok);
    rv_train_net_free(&r);
    rv_train_net_free(&l);
    rv_train_base_free(&base);
    rv_model_free(m);
}

/* ids of s (no template: this tokenizer has none) */
static size_t enc(rv_tokenizer *t, rv_tok_state *s, const char *text, uint32_t *out, size_t cap)
{
    rv_ids ids = {0};
    size_t n = 0;
    if (rv_tok_encode(t, s, text, strlen(text), 0, &ids) == 0) {
        n = ids.n < cap ? ids.n : cap;
        memcpy(out, ids.v, n * sizeof *out);
    }
    free(ids.v);
    return n;
}

static void test_views(void)
{
    rv_tokenizer *tok = rv_tokenizer_load(fixture_file("model/llama_tied"));
    REQUIRE(tok, "%s", rv_error_get());
    const uint32_t *pre, *suf;
    size_t npre, nsuf;
    rv_tokenizer_template(tok, &pre, &npre, &suf, &nsuf);
    REQUIRE(npre == 0 && nsuf == 0, "fixture tokenizer has a template");
    rv_tok_state *ts = rv_tok_state_new(tok);
    const size_t max_len = 24;
    for (int half = 0; half < 2; half++) {
        rv_view_ctx vc = {tok, tok, ts, ts, 2, 2, max_len, half};
        rv_train_group g = {(char *)"", 4, (char **)texts};
        rv_train_batch bt = {0};
        REQUIRE(rv_train_batch_build(&vc, &g, &bt) == 0, "%s", rv_error_get());
        const int L = bt.b.seq_len;
        for (int i = 0; i < 4; i++) {
            char buf[256];
            uint32_t want[256];
            const char *t = texts[i];
            while (*t == ' ')
                t++;
            size_t tl = strlen(t);
            while (tl && t[tl - 1] == ' ')
                tl--;
            snprintf(buf, sizeof buf, "passage: %.*s", (int)tl, t);
            size_t n = enc(tok, ts, buf, want, 256);
            n = n < max_len - 1 ? n : max_len - 1;
            CHECK(bt.pl[i] == (int)n + 1 && bt.p[i * L + n] == 2, "P %d: length %d, want %zu", i, bt.pl[i], n + 1);
            for (size_t k = 0; k < n; k++)
                CHECK(bt.p[i * L + k] == (int32_t)want[k], "P %d token %zu", i, k);
            snprintf(buf, sizeof buf, "query: %.*s", (int)tl, t);
            n = enc(tok, ts, buf, want, 256);
            n = n < max_len - 1 ? n : max_len - 1;
            size_t q = half ? n / 2 : n;
            CHECK(bt.ql[i] == (int)q + 1 && bt.q[i * L + q] == 2, "Q %d: length %d, want %zu", i, bt.ql[i], q + 1);
            for (size_t k = 0; k < q; k++)
                CHECK(bt.q[i * L + k] == (int32_t)want[k], "Q %d token %zu", i, k);
            snprintf(buf, sizeof buf, "%.*s", (int)tl, t);
            n = enc(tok, ts, buf, want, 256);
            n = n < max_len - 1 ? n : max_len - 1;
            CHECK(bt.xl[i] == (int)n, "X %d: length %d, want %zu", i, bt.xl[i], n);
            for (size_t k = 0; k < n; k++)
                CHECK(bt.x[i * L + k] == (int32_t)want[k], "X %d token %zu", i, k);
        }
        rv_train_batch_free(&bt);
    }
    /* stackoverflow groups keep the whole query view */
    rv_view_ctx vc = {tok, tok, ts, ts, 2, 2, max_len, 1};
    char *shorts[2] = {(char *)texts[2], (char *)texts[2]};
    rv_train_group g = {(char *)"stackoverflow", 2, shorts};
    rv_train_batch bt = {0};
    REQUIRE(rv_train_batch_build(&vc, &g, &bt) == 0, "%s", rv_error_get());
    CHECK(bt.ql[0] == bt.pl[0] - 2, "stackoverflow Q %d vs P %d (\"query: \" is 2 shorter than \"passage: \")",
          bt.ql[0], bt.pl[0]);
    rv_train_batch_free(&bt);
    rv_tok_state_free(ts);
    rv_tokenizer_free(tok);
}

static void test_order(void)
{
    size_t a[50], b[50], c[50];
    rv_train_data_order(50, 42, 0, a);
    rv_train_data_order(50, 42, 0, b);
    rv_train_data_order(50, 42, 1, c);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed/epoch differs");
    CHECK(memcmp(a, c, sizeof a) != 0, "epochs share an order");
    int seen[50] = {0};
    for (int i = 0; i < 50; i++)
        seen[a[i] < 50 ? a[i] : 0]++;
    int ok = 1;
    for (int i = 0; i < 50; i++)
        ok &= seen[i] == 1;
    CHECK(ok, "not a permutation");
}

static void test_jsonl(void)
{
    rv_train_data d = {0};
    FILE *f = fopen(fixture_file("train/tiny_groups.jsonl"), "rb");
    REQUIRE(f, "fixture");
    CHECK(rv_train_data_load_jsonl(&d, f, "tiny") == 0, "%s", rv_error_get());
    fclose(f);
    CHECK(d.n == 5 && d.skipped == 1, "%zu groups, %zu skipped", d.n, d.skipped);
    if (d.n == 5) {
        CHECK(strcmp(d.groups[1].src, "wiki") == 0 && d.groups[1].n == 4, "object form");
        CHECK(strcmp(d.groups[3].src, "stackoverflow") == 0 && d.groups[3].n == 3, "src");
        CHECK(strcmp(d.groups[0].texts[1], "the wing flutter was measured at high speed") == 0, "text");
    }
    rv_train_data_free(&d);
    const char *bad = "[\"a\", \"b\"]\n[\"a\", 3]\n";
    f = fmemopen((void *)bad, strlen(bad), "rb");
    REQUIRE(f, "fmemopen");
    CHECK(rv_train_data_load_jsonl(&d, f, "bad.jsonl") < 0 && strstr(rv_error_get(), "bad.jsonl:2: text[1]"),
          "error: %s", rv_error_get());
    fclose(f);
    rv_train_data_free(&d);
}

int main(void)
{
    RUN_TEST(test_wiring);
    RUN_TEST(test_dropout);
    RUN_TEST(test_views);
    RUN_TEST(test_order);
    RUN_TEST(test_jsonl);
    TEST_EXIT();
}
