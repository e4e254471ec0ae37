/* test_train_step.c — the whole Revela step composed from the CPU ops
 * (revela_step_ref.h) against the JAX reference (scripts/revela_reference.py,
 * tests/fixtures/train/step_{llama,qwen2}.safetensors): the loss, S, W,
 * dL/dW, dL/dS and the gradient of every LoRA A and B of the retriever and
 * the LM, for each variant (V-norm on/off, tau 0.1 and 1e-4), with and
 * without the exact skipping of zero-weight pairs. Run the binary directly
 * to see the measured errors. */
#include <math.h>
#include <string.h>

#include "json.h"
#include "model_config.h"
#include "revela_step_ref.h"
#include "test.h"
#include "test_train_util.h"

/* Errors are measured relative to each tensor's largest reference value;
 * tensors whose reference is below GRAD_FLOOR everywhere (the retriever's at
 * tau = 1e-4, where W is one-hot and d softmax vanishes) are compared to
 * the floor instead. */
#define STEP_TOL 1e-4
#define GRAD_FLOOR 1e-6

typedef struct {
    float **ptr;
    size_t n, cap;
    int failed;
} owned;

static float *keep_ptr(owned *o, float *p)
{
    if (!p) {
        o->failed = 1;
        return NULL;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        float **q = realloc(o->ptr, cap * sizeof *q);
        if (!q) {
            free(p);
            o->failed = 1;
            return NULL;
        }
        o->ptr = q;
        o->cap = cap;
    }
    o->ptr[o->n++] = p;
    return p;
}

static void owned_free(owned *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->ptr[i]);
    free(o->ptr);
}

typedef struct {
    int vocab, hidden, layers, heads, kv_heads, head_dim, ffn, rank, batch, seq_len, tied, qkv_bias;
    double eps, alpha, theta;
    int llama3;                  /* rope_scaling {rope_type: llama3, ...} */
    double rope_factor, rope_low, rope_high, rope_orig;
} fixture_cfg;

static int json_num(const rv_json *o, const char *key, double *out)
{
    const rv_json *v = rv_json_get(o, key);
    if (!v || v->type != RV_JSON_NUMBER) {
        printf("  config: %s missing or not a number\n", key);
        return -1;
    }
    *out = v->u.number;
    return 0;
}

static int json_bool(const rv_json *o, const char *key)
{
    const rv_json *v = rv_json_get(o, key);
    return v && v->type == RV_JSON_TRUE;
}

static int read_cfg(const rv_safetensors *st, rv_json_parser *jp, fixture_cfg *c)
{
    const char *text = rv_safetensors_meta(st, "config");
    const rv_json *o = text ? rv_json_parse(jp, text, strlen(text)) : NULL;
    if (!o || o->type != RV_JSON_OBJECT)
        return -1;
    double v[11];
    const char *keys[11] = {"vocab", "hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "lora_rank",
                            "batch", "seq_len", "eps"};
    for (int i = 0; i < 11; i++)
        if (json_num(o, keys[i], &v[i]) != 0)
            return -1;
    c->vocab = (int)v[0];
    c->hidden = (int)v[1];
    c->layers = (int)v[2];
    c->heads = (int)v[3];
    c->kv_heads = (int)v[4];
    c->head_dim = (int)v[5];
    c->ffn = (int)v[6];
    c->rank = (int)v[7];
    c->batch = (int)v[8];
    c->seq_len = (int)v[9];
    c->eps = v[10];
    if (json_num(o, "lora_alpha", &c->alpha) != 0)
        return -1;
    if (json_num(o, "theta", &c->theta) != 0)
        return -1;
    const rv_json *rs = rv_json_get(o, "rope_scaling");
    c->llama3 = rs && rs->type == RV_JSON_OBJECT;
    if (c->llama3 && (json_num(rs, "factor", &c->rope_factor) != 0 || json_num(rs, "low_freq_factor", &c->rope_low) != 0 ||
                      json_num(rs, "high_freq_factor", &c->rope_high) != 0 ||
                      json_num(rs, "original_max_position_embeddings", &c->rope_orig) != 0))
        return -1;
    c->tied = json_bool(o, "tied");
    c->qkv_bias = json_bool(o, "qkv_bias");
    return 0;
}

/* Builds a decoder ("retr." or "lm.") from the fixture's tensors, and zeroed
 * gradient buffers for its adapters. */
static int build_decoder(const rv_safetensors *st, const fixture_cfg *c, const char *prefix, int with_head,
                         float *inv_freq, rv_step_decoder *m, rv_step_layer *layers, rv_step_layer_grads *grads,
                         owned *o)
{
    char name[128];
    const int D = c->hidden, QW = c->heads * c->head_dim, KW = c->kv_heads * c->head_dim, F = c->ffn;
    const int in[RV_N_PROJ] = {D, D, D, QW, D, D, F}, out[RV_N_PROJ] = {QW, KW, KW, D, F, F, D};
    *m = (rv_step_decoder){c->vocab, D, c->layers, c->heads, c->kv_heads, c->head_dim, F, (float)c->eps,
                           inv_freq, NULL, layers, NULL, NULL};
    snprintf(name, sizeof name, "%sembed_tokens", prefix);
    m->embed = keep_ptr(o, fixture_f32(st, name, (size_t)c->vocab * D));
    snprintf(name, sizeof name, "%snorm", prefix);
    m->final_norm = keep_ptr(o, fixture_f32(st, name, (size_t)D));
    if (with_head) {
        snprintf(name, sizeof name, "%slm_head", prefix);
        m->lm_head = c->tied ? m->embed : keep_ptr(o, fixture_f32(st, name, (size_t)c->vocab * D));
    }
    for (int l = 0; l < c->layers; l++) {
        snprintf(name, sizeof name, "%slayers.%d.input_layernorm", prefix, l);
        layers[l].input_norm = keep_ptr(o, fixture_f32(st, name, (size_t)D));
        snprintf(name, sizeof name, "%slayers.%d.post_attention_layernorm", prefix, l);
        layers[l].post_norm = keep_ptr(o, fixture_f32(st, name, (size_t)D));
        for (int p = 0; p < RV_N_PROJ; p++) {
            rv_lora_linear *lin = &layers[l].proj[p];
            *lin = (rv_lora_linear){in[p], out[p], NULL, NULL, c->rank, NULL, NULL, (float)(c->alpha / c->rank)};
            snprintf(name, sizeof name, "%slayers.%d.%s.weight", prefix, l, rv_proj_names[p]);
            lin->weight = keep_ptr(o, fixture_f32(st, name, (size_t)out[p] * in[p]));
            if (c->qkv_bias && p <= RV_PROJ_V) {
                snprintf(name, sizeof name, "%slayers.%d.%s.bias", prefix, l, rv_proj_names[p]);
                lin->bias = keep_ptr(o, fixture_f32(st, name, (size_t)out[p]));
            }
            snprintf(name, sizeof name, "%slayers.%d.%s.lora_A", prefix, l, rv_proj_names[p]);
            lin->lora_a = keep_ptr(o, fixture_f32(st, name, (size_t)c->rank * in[p]));
            snprintf(name, sizeof name, "%slayers.%d.%s.lora_B", prefix, l, rv_proj_names[p]);
            lin->lora_b = keep_ptr(o, fixture_f32(st, name, (size_t)out[p] * c->rank));
            grads[l].lora_a[p] = keep_ptr(o, zeros((size_t)c->rank * in[p]));
            grads[l].lora_b[p] = keep_ptr(o, zeros((size_t)out[p] * c->rank));
        }
    }
    return o->failed ? -1 : 0;
}

static void zero_grads(const fixture_cfg *c, rv_step_layer_grads *g, const rv_step_layer *layers)
{
    for (int l = 0; l < c->layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *lin = &layers[l].proj[p];
            memset(g[l].lora_a[p], 0, (size_t)lin->rank * lin->in * sizeof(float));
            memset(g[l].lora_b[p], 0, (size_t)lin->out * lin->rank * sizeof(float));
        }
}

/* Copies every adapter gradient of one network into out (NULL: count only);
 * returns the number of floats. */
static size_t snapshot_grads(const fixture_cfg *c, const rv_step_layer *layers, const rv_step_layer_grads *g,
                             float *out)
{
    size_t k = 0;
    for (int l = 0; l < c->layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *lin = &layers[l].proj[p];
            size_t na = (size_t)lin->rank * lin->in, nb = (size_t)lin->out * lin->rank;
            if (out) {
                memcpy(out + k, g[l].lora_a[p], na * sizeof *out);
                memcpy(out + k + na, g[l].lora_b[p], nb * sizeof *out);
            }
            k += na + nb;
        }
    return k;
}

/* Error of got vs the fixture tensor `name`, relative to max(|ref|max, floor). */
static double compare(const rv_safetensors *st, const char *name, const float *got, size_t count, double floor,
                      const float *mask)
{
    float *ref = fixture_f32(st, name, count);
    if (!ref)
        return INFINITY;
    double scale = fmax(max_abs(ref, count), floor), err = 0;
    for (size_t i = 0; i < count; i++)
        if (!mask || mask[i] != 0.0f)
            err = fmax(err, fabs((double)got[i] - ref[i]));
    free(ref);
    return err / scale;
}

/* Worst error over the adapter gradients of one network. */
static double compare_grads(const rv_safetensors *st, const char *variant, const char *prefix, const fixture_cfg *c,
                            const rv_step_layer *layers, const rv_step_layer_grads *g)
{
    char name[160];
    double worst = 0;
    for (int l = 0; l < c->layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *lin = &layers[l].proj[p];
            snprintf(name, sizeof name, "out.%s.grad.%slayers.%d.%s.lora_A", variant, prefix, l, rv_proj_names[p]);
            double ea = compare(st, name, g[l].lora_a[p], (size_t)lin->rank * lin->in, GRAD_FLOOR, NULL);
            snprintf(name, sizeof name, "out.%s.grad.%slayers.%d.%s.lora_B", variant, prefix, l, rv_proj_names[p]);
            double eb = compare(st, name, g[l].lora_b[p], (size_t)lin->out * lin->rank, GRAD_FLOOR, NULL);
            CHECK(ea < STEP_TOL && eb < STEP_TOL, "%s %slayers.%d.%s: lora_A err %g lora_B err %g", variant, prefix,
                  l, rv_proj_names[p], ea, eb);
            worst = fmax(worst, fmax(ea, eb));
        }
    return worst;
}

static void step_case(const char *file)
{
    rv_safetensors *st = open_train_fixture(file);
    REQUIRE(st, "%s", rv_error_get());
    rv_json_parser *jp = rv_json_parser_new();
    fixture_cfg c;
    owned o = {0};
    rv_step_layer *lr = NULL, *ll = NULL;
    rv_step_layer_grads *gr = NULL, *gl = NULL;
    int *p_len = NULL, *q_len = NULL, *x_len = NULL, *p_ids = NULL, *q_ids = NULL, *x_ids = NULL;
    if (!jp || read_cfg(st, jp, &c) != 0) {
        CHECK(0, "%s: unreadable config metadata", file);
        goto done;
    }
    lr = calloc((size_t)c.layers, sizeof *lr);
    ll = calloc((size_t)c.layers, sizeof *ll);
    gr = calloc((size_t)c.layers, sizeof *gr);
    gl = calloc((size_t)c.layers, sizeof *gl);
    float *inv_freq = keep_ptr(&o, fixture_f32(st, "rope.inv_freq", (size_t)c.head_dim / 2));
    rv_step_decoder retr, lm;
    if (!lr || !ll || !gr || !gl || !inv_freq ||
        build_decoder(st, &c, "retr.", 0, inv_freq, &retr, lr, gr, &o) != 0 ||
        build_decoder(st, &c, "lm.", 1, inv_freq, &lm, ll, gl, &o) != 0) {
        CHECK(0, "%s: missing weights", file);
        goto done;
    }
    size_t BL = (size_t)c.batch * c.seq_len, BB = (size_t)c.batch * c.batch;
    p_ids = fixture_i32(st, "batch.p_ids", BL);
    q_ids = fixture_i32(st, "batch.q_ids", BL);
    x_ids = fixture_i32(st, "batch.x_ids", BL);
    p_len = fixture_i32(st, "batch.p_len", (size_t)c.batch);
    q_len = fixture_i32(st, "batch.q_len", (size_t)c.batch);
    x_len = fixture_i32(st, "batch.x_len", (size_t)c.batch);
    if (!p_ids || !q_ids || !x_ids || !p_len || !q_len || !x_len) {
        CHECK(0, "%s: missing batch", file);
        goto done;
    }
    rv_step_batch batch = {c.batch, c.seq_len, (const int32_t *)p_ids, (const int32_t *)q_ids,
                           (const int32_t *)x_ids, p_len, q_len, x_len};
    const char *vtext = rv_safetensors_meta(st, "variants");
    const rv_json *variants = vtext ? rv_json_parse(jp, vtext, strlen(vtext)) : NULL;
    if (!variants || variants->type != RV_JSON_ARRAY || variants->len == 0) {
        CHECK(0, "%s: unreadable variants metadata", file);
        goto done;
    }
    float *S = keep_ptr(&o, zeros(BB)), *W = keep_ptr(&o, zeros(BB)), *dW = keep_ptr(&o, zeros(BB));
    float *dS = keep_ptr(&o, zeros(BB));
    float *qe = keep_ptr(&o, zeros((size_t)c.batch * c.hidden)), *pe = keep_ptr(&o, zeros((size_t)c.batch * c.hidden));
    for (size_t vi = 0; vi < variants->len && !o.failed; vi++) {
        const rv_json *v = &variants->u.items[vi];
        const rv_json *vn = rv_json_get(v, "name");
        double tau;
        if (!vn || vn->type != RV_JSON_STRING || json_num(v, "tau", &tau) != 0) {
            CHECK(0, "%s: variant %zu malformed", file, vi);
            continue;
        }
        const char *name = vn->u.string;
        for (int skip = 0; skip <= 1; skip++) {
            rv_step_opts opts = {tau, json_bool(v, "v_norm"), 1e-6f, RV_SIM_FP32, skip, json_bool(v, "dual_loss"), 0};
            rv_step_result res = {.s = S, .w = W, .dw = dW, .ds = dS, .q_emb = qe, .p_emb = pe};
            zero_grads(&c, gr, lr);
            zero_grads(&c, gl, ll);
            memset(dW, 0, BB * sizeof *dW);
            int rc = rv_revela_step_ref(&retr, &lm, &batch, &opts, gr, gl, &res);
            CHECK(rc == 0, "%s/%s: %s", file, name, rv_error_get());
            if (rc != 0)
                continue;
            char tn[128];
            snprintf(tn, sizeof tn, "out.%s.loss", name);
            float *loss_ref = fixture_f32(st, tn, 1);
            double e_loss = loss_ref ? fabs(res.loss - loss_ref[0]) / fabs(loss_ref[0]) : INFINITY;
            free(loss_ref);
            double e_q, e_p, e_s, e_w, e_dw, e_ds;
            snprintf(tn, sizeof tn, "out.%s.q", name);
            e_q = compare(st, tn, qe, (size_t)c.batch * c.hidden, 0, NULL);
            snprintf(tn, sizeof tn, "out.%s.p", name);
            e_p = compare(st, tn, pe, (size_t)c.batch * c.hidden, 0, NULL);
            snprintf(tn, sizeof tn, "out.%s.S", name);
            e_s = compare(st, tn, S, BB, 0, NULL);
            snprintf(tn, sizeof tn, "out.%s.W", name);
            e_w = compare(st, tn, W, BB, 0, NULL);
            snprintf(tn, sizeof tn, "out.%s.dW", name);   /* skipped pairs report no dW */
            e_dw = compare(st, tn, dW, BB, GRAD_FLOOR, skip ? W : NULL);
            snprintf(tn, sizeof tn, "out.%s.dS", name);
            e_ds = compare(st, tn, dS, BB, GRAD_FLOOR, NULL);
            double e_gr = compare_grads(st, name, "retr.", &c, lr, gr);
            double e_gl = compare_grads(st, name, "lm.", &c, ll, gl);
            CHECK(e_loss < 1e-5, "%s/%s loss %.10g, reference error %g", file, name, res.loss, e_loss);
            CHECK(e_q < STEP_TOL && e_p < STEP_TOL && e_s < STEP_TOL && e_w < STEP_TOL,
                  "%s/%s q %g p %g S %g W %g", file, name, e_q, e_p, e_s, e_w);
            CHECK(e_dw < STEP_TOL && e_ds < STEP_TOL, "%s/%s dW %g dS %g", file, name, e_dw, e_ds);
            const rv_json *nt = rv_json_get(v, "n_targets");
            CHECK(nt && nt->type == RV_JSON_NUMBER && (size_t)nt->u.number == res.n_targets, "%s/%s n_targets %zu",
                  file, name, res.n_targets);
            printf("  %s/%s%s: loss %.3e  q,p,S,W %.3e  dW %.3e  dS %.3e  retr grads %.3e  lm grads %.3e\n", file,
                   name, skip ? "+skip" : "", e_loss, fmax(fmax(e_q, e_p), fmax(e_s, e_w)), e_dw, e_ds, e_gr, e_gl);
            /* per-layer recomputation: the same step bit for bit, in less activation memory */
            size_t nr = snapshot_grads(&c, lr, gr, NULL), nl = snapshot_grads(&c, ll, gl, NULL);
            float *r0 = malloc(nr * sizeof *r0), *l0 = malloc(nl * sizeof *l0);
            float *r1 = malloc(nr * sizeof *r1), *l1 = malloc(nl * sizeof *l1);
            REQUIRE(r0 && l0 && r1 && l1, "out of memory");
            snapshot_grads(&c, lr, gr, r0);
            snapshot_grads(&c, ll, gl, l0);
            double loss0 = res.loss;
            size_t act0 = res.activation_bytes;
            opts.recompute = 1;
            zero_grads(&c, gr, lr);
            zero_grads(&c, gl, ll);
            memset(dW, 0, BB * sizeof *dW);
            rc = rv_revela_step_ref(&retr, &lm, &batch, &opts, gr, gl, &res);
            CHECK(rc == 0, "%s/%s recompute: %s", file, name, rv_error_get());
            snapshot_grads(&c, lr, gr, r1);
            snapshot_grads(&c, ll, gl, l1);
            CHECK(res.loss == loss0 && memcmp(r0, r1, nr * sizeof *r0) == 0 && memcmp(l0, l1, nl * sizeof *l0) == 0,
                  "%s/%s: recomputation changed the loss or gradients", file, name);
            CHECK(res.activation_bytes < act0, "%s/%s: recomputation held %zu activation bytes, without %zu", file,
                  name, res.activation_bytes, act0);
            free(r0); free(l0); free(r1); free(l1);
        }
    }
done:
    owned_free(&o);
    free(lr); free(ll); free(gr); free(gl);
    free(p_ids); free(q_ids); free(x_ids); free(p_len); free(q_len); free(x_len);
    rv_json_parser_free(jp);
    rv_safetensors_close(st);
}

/* Error of one gradient buffer against "lmstep.grad.<name>". */
static double lm_grad_err(const rv_safetensors *st, const char *name, const float *got, size_t count)
{
    char tn[160];
    snprintf(tn, sizeof tn, "lmstep.grad.%s", name);
    double e = compare(st, tn, got, count, GRAD_FLOOR, NULL);
    CHECK(e < STEP_TOL, "lm step %s: error %g", name, e);
    return e;
}

/* rv-train --objective lm: one causal pass with the LM's LoRA, gradients of
 * the LoRA factors and of every base tensor (full-parameter training)
 * against the reference's plain_lm_step. */
static void lm_step_case(const char *file)
{
    rv_safetensors *st = open_train_fixture(file);
    REQUIRE(st, "%s", rv_error_get());
    rv_json_parser *jp = rv_json_parser_new();
    fixture_cfg c;
    owned o = {0};
    rv_step_layer *ll = NULL;
    rv_step_layer_grads *gl = NULL;
    int *x_len = NULL, *x_ids = NULL;
    if (!jp || read_cfg(st, jp, &c) != 0) {
        CHECK(0, "%s: unreadable config metadata", file);
        goto done;
    }
    ll = calloc((size_t)c.layers, sizeof *ll);
    gl = calloc((size_t)c.layers, sizeof *gl);
    float *inv_freq = keep_ptr(&o, fixture_f32(st, "rope.inv_freq", (size_t)c.head_dim / 2));
    rv_step_decoder lm;
    if (!ll || !gl || !inv_freq || build_decoder(st, &c, "lm.", 1, inv_freq, &lm, ll, gl, &o) != 0) {
        CHECK(0, "%s: missing weights", file);
        goto done;
    }
    const size_t D = (size_t)c.hidden, V = (size_t)c.vocab;
    rv_step_decoder_grads dg = {keep_ptr(&o, zeros(V * D)), keep_ptr(&o, zeros(D)), NULL};
    dg.lm_head = c.tied ? dg.embed : keep_ptr(&o, zeros(V * D));
    for (int l = 0; l < c.layers; l++) {
        gl[l].input_norm = keep_ptr(&o, zeros(D));
        gl[l].post_norm = keep_ptr(&o, zeros(D));
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *lin = &ll[l].proj[p];
            gl[l].weight[p] = keep_ptr(&o, zeros((size_t)lin->out * lin->in));
            gl[l].bias[p] = lin->bias ? keep_ptr(&o, zeros((size_t)lin->out)) : NULL;
        }
    }
    size_t BL = (size_t)c.batch * c.seq_len;
    x_ids = fixture_i32(st, "batch.x_ids", BL);
    x_len = fixture_i32(st, "batch.x_len", (size_t)c.batch);
    float *loss_ref = keep_ptr(&o, fixture_f32(st, "lmstep.loss", 1));
    if (!x_ids || !x_len || o.failed) {
        CHECK(0, "%s: missing batch or lmstep outputs", file);
        goto done;
    }
    rv_step_batch batch = {c.batch, c.seq_len, NULL, NULL, (const int32_t *)x_ids, NULL, NULL, x_len};
    rv_step_result res = {0};
    int rc = rv_lm_step(&lm, &batch, NULL, 0, gl, &dg, &res);
    REQUIRE(rc == 0, "%s: %s", file, rv_error_get());
    double e_loss = fabs(res.loss - loss_ref[0]) / fabs(loss_ref[0]), worst = 0;
    CHECK(e_loss < 1e-5 && res.loss == res.loss_plain, "%s lm step loss %.10g, reference error %g", file, res.loss,
          e_loss);
    char name[160];
    worst = fmax(worst, lm_grad_err(st, "lm.embed_tokens", dg.embed, V * D));
    worst = fmax(worst, lm_grad_err(st, "lm.norm", dg.final_norm, D));
    if (!c.tied)
        worst = fmax(worst, lm_grad_err(st, "lm.lm_head", dg.lm_head, V * D));
    for (int l = 0; l < c.layers; l++) {
        snprintf(name, sizeof name, "lm.layers.%d.input_layernorm", l);
        worst = fmax(worst, lm_grad_err(st, name, gl[l].input_norm, D));
        snprintf(name, sizeof name, "lm.layers.%d.post_attention_layernorm", l);
        worst = fmax(worst, lm_grad_err(st, name, gl[l].post_norm, D));
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *lin = &ll[l].proj[p];
            const char *pn = rv_proj_names[p];
            snprintf(name, sizeof name, "lm.layers.%d.%s.weight", l, pn);
            worst = fmax(worst, lm_grad_err(st, name, gl[l].weight[p], (size_t)lin->out * lin->in));
            if (lin->bias) {
                snprintf(name, sizeof name, "lm.layers.%d.%s.bias", l, pn);
                worst = fmax(worst, lm_grad_err(st, name, gl[l].bias[p], (size_t)lin->out));
            }
            snprintf(name, sizeof name, "lm.layers.%d.%s.lora_A", l, pn);
            worst = fmax(worst, lm_grad_err(st, name, gl[l].lora_a[p], (size_t)lin->rank * lin->in));
            snprintf(name, sizeof name, "lm.layers.%d.%s.lora_B", l, pn);
            worst = fmax(worst, lm_grad_err(st, name, gl[l].lora_b[p], (size_t)lin->out * lin->rank));
        }
    }
    printf("  %s/lmstep: loss %.3e  every LoRA and base gradient %.3e\n", file, e_loss, worst);
done:
    owned_free(&o);
    free(ll); free(gl); free(x_ids); free(x_len);
    rv_json_parser_free(jp);
    rv_safetensors_close(st);
}

static void test_step_llama(void) { step_case("step_llama.safetensors"); }
static void test_step_qwen2(void) { step_case("step_qwen2.safetensors"); }
static void test_lm_step_llama(void) { lm_step_case("step_llama.safetensors"); }
static void test_lm_step_qwen2(void) { lm_step_case("step_qwen2.safetensors"); }

/* The model runtime's RoPE frequencies (rv_rope_inv_freq, float32 as
 * transformers) against the reference's (float64, rounded), for the llama3
 * scaling of the llama fixture and the plain rule of the qwen2 one: the
 * step above used the reference's; the wired trainer will use the runtime's. */
static void rope_case(const char *file)
{
    rv_safetensors *st = open_train_fixture(file);
    REQUIRE(st, "%s", rv_error_get());
    rv_json_parser *jp = rv_json_parser_new();
    fixture_cfg c;
    float *ref = NULL;
    if (jp && read_cfg(st, jp, &c) == 0 && (ref = fixture_f32(st, "rope.inv_freq", (size_t)c.head_dim / 2))) {
        rv_model_config mc;
        memset(&mc, 0, sizeof mc);
        mc.head_dim = (uint32_t)c.head_dim;
        mc.rope_theta = c.theta;
        mc.rope_type = c.llama3 ? RV_ROPE_LLAMA3 : RV_ROPE_DEFAULT;
        mc.rope_factor = c.rope_factor;
        mc.rope_low_freq_factor = c.rope_low;
        mc.rope_high_freq_factor = c.rope_high;
        mc.rope_original_max_position = (uint32_t)c.rope_orig;
        float got[64];
        rv_rope_inv_freq(&mc, got);
        double worst = 0;
        for (int i = 0; i < c.head_dim / 2; i++)
            worst = fmax(worst, fabs(got[i] - ref[i]) / ref[i]);
        CHECK(worst < 1e-6, "%s: rv_rope_inv_freq differs from the reference by %g (relative)", file, worst);
        printf("  %s: rv_rope_inv_freq vs reference %.3e\n", file, worst);
    } else {
        CHECK(0, "%s: unreadable config or inv_freq", file);
    }
    free(ref);
    rv_json_parser_free(jp);
    rv_safetensors_close(st);
}

static void test_rope_inv_freq(void)
{
    rope_case("step_llama.safetensors");
    rope_case("step_qwen2.safetensors");
}

int main(void)
{
    test_suite = "train_step";
    RUN_TEST(test_step_llama);
    RUN_TEST(test_step_qwen2);
    RUN_TEST(test_lm_step_llama);
    RUN_TEST(test_lm_step_qwen2);
    RUN_TEST(test_rope_inv_freq);
    TEST_EXIT();
}
