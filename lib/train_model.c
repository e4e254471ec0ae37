/* train_model.c — rv_model -> fp32 step decoder and LoRA adapter sets (see
 * train_model.h). */
#include "train_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "splitmix.h"
#include "train_ops.h"

static float *own(rv_train_base *b, size_t count)
{
    if (b->n_owned == b->cap_owned) {
        size_t cap = b->cap_owned ? 2 * b->cap_owned : 64;
        void **p = realloc(b->owned, cap * sizeof *p);
        if (!p)
            return NULL;
        b->owned = p;
        b->cap_owned = cap;
    }
    float *f = malloc((count ? count : 1) * sizeof *f);
    if (f)
        b->owned[b->n_owned++] = f;
    return f;
}

static float *widen(rv_train_base *b, const rv_weight *w, const char *name)
{
    if (w->type == RV_WT_F32 && (uintptr_t)w->data % sizeof(float) == 0)
        return (float *)(uintptr_t)w->data;   /* already fp32 (GGUF, F32 safetensors): shared, read only */
    size_t count;
    if (rv_size_mul(w->rows, w->cols, &count, name) < 0)
        return NULL;
    float *f = own(b, count);
    if (!f) {
        rv_error_set("%s: out of memory widening %zux%zu to fp32", name, w->rows, w->cols);
        return NULL;
    }
    rv_weight_rows_f32(w, 0, w->rows, f);
    return f;
}

static float *copy_vec(rv_train_base *b, const float *v, size_t count, const char *name)
{
    if (!v)
        return NULL;
    float *f = own(b, count);
    if (!f) {
        rv_error_set("%s: out of memory", name);
        return NULL;
    }
    memcpy(f, v, count * sizeof *f);
    return f;
}

/* The shapes of c and the per-layer pointer tables (entries NULL). 0, or -1 when out of memory. */
static int base_shape(rv_train_base *b, const rv_model_config *c)
{
    memset(b, 0, sizeof *b);
    b->vocab = (int)c->vocab_size;
    b->hidden = (int)c->hidden_size;
    b->n_layers = (int)c->n_layers;
    b->n_heads = (int)c->n_heads;
    b->n_kv_heads = (int)c->n_kv_heads;
    b->head_dim = (int)c->head_dim;
    b->ffn = (int)c->intermediate_size;
    b->norm_eps = (float)c->rms_norm_eps;
    const size_t L = c->n_layers;
    b->layer_norms = calloc(L * 2, sizeof *b->layer_norms);
    b->proj_w = calloc(L * RV_N_PROJ, sizeof *b->proj_w);
    b->proj_b = calloc(L * RV_N_PROJ, sizeof *b->proj_b);
    return b->layer_norms && b->proj_w && b->proj_b ? 0 : -1;
}

int rv_train_base_init(rv_train_base *b, const rv_model *m)
{
    const rv_model_config *c = &m->cfg;
    const size_t D = c->hidden_size, L = c->n_layers;
    if (base_shape(b, c) < 0)
        goto oom;
    if (!(b->inv_freq = copy_vec(b, m->inv_freq, c->head_dim / 2, "inv_freq")) ||
        !(b->embed = widen(b, &m->embed, "embed_tokens")) || !(b->final_norm = copy_vec(b, m->final_norm, D, "norm")))
        goto fail;
    if (m->lm_head.data == m->embed.data)
        b->lm_head = b->embed;
    else if (!(b->lm_head = widen(b, &m->lm_head, "lm_head")))
        goto fail;
    for (size_t l = 0; l < L; l++) {
        const rv_layer *ly = &m->layers[l];
        const rv_weight *w[RV_N_PROJ] = {&ly->q, &ly->k, &ly->v, &ly->o, &ly->gate, &ly->up, &ly->down};
        float *bias[RV_N_PROJ] = {ly->q_bias, ly->k_bias, ly->v_bias, ly->o_bias,
                                  ly->gate_bias, ly->up_bias, ly->down_bias};
        if (!(b->layer_norms[2 * l] = copy_vec(b, ly->attn_norm, D, "input_layernorm")) ||
            !(b->layer_norms[2 * l + 1] = copy_vec(b, ly->ffn_norm, D, "post_attention_layernorm")))
            goto fail;
        for (int p = 0; p < RV_N_PROJ; p++) {
            if (!(b->proj_w[l * RV_N_PROJ + p] = widen(b, w[p], rv_proj_names[p])))
                goto fail;
            if (bias[p] && !(b->proj_b[l * RV_N_PROJ + p] = copy_vec(b, bias[p], w[p]->rows, rv_proj_names[p])))
                goto fail;
        }
    }
    return 0;
oom:
    rv_error_set("train model: out of memory");
fail:
    rv_train_base_free(b);
    return -1;
}

void rv_train_base_free(rv_train_base *b)
{
    for (size_t i = 0; i < b->n_owned; i++)
        free(b->owned[i]);
    free(b->owned);
    free(b->layer_norms);
    free(b->proj_w);
    free(b->proj_b);
    memset(b, 0, sizeof *b);
}

int rv_proj_mask_parse(const char *list, rv_proj_mask *mask)
{
    *mask = 0;
    const char *s = list;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        int found = -1;
        for (int p = 0; p < RV_N_PROJ; p++) {
            size_t short_len = strlen(rv_proj_names[p]) - 5;   /* without "_proj" */
            if ((len == short_len || len == short_len + 5) && strncmp(s, rv_proj_names[p], len) == 0)
                found = p;
        }
        if (found < 0)
            return rv_error_set("--lora-targets: expected names from q,k,v,o,gate,up,down, found \"%.*s\"", (int)len, s);
        *mask |= 1u << found;
        s += len;
        if (*s == ',')
            s++;
    }
    if (!*mask)
        return rv_error_set("--lora-targets: empty list");
    return 0;
}

static void proj_shape(const rv_train_base *b, int p, int *in, int *out)
{
    const int D = b->hidden, QW = b->n_heads * b->head_dim, KW = b->n_kv_heads * b->head_dim, F = b->ffn;
    const int ins[RV_N_PROJ] = {D, D, D, QW, D, D, F}, outs[RV_N_PROJ] = {QW, KW, KW, D, F, F, D};
    *in = ins[p];
    *out = outs[p];
}

int rv_train_net_tensor(const rv_train_net *n, int l, int p, size_t *off_a, size_t *off_b, int *in, int *out)
{
    size_t off = 0;
    for (int ll = 0; ll <= l; ll++)
        for (int pp = 0; pp < RV_N_PROJ; pp++) {
            if (!(n->targets & (1u << pp)))
                continue;
            int i, o;
            proj_shape(n->base, pp, &i, &o);
            if (ll == l && pp == p) {
                *off_a = off;
                *off_b = off + (size_t)n->rank * i;
                *in = i;
                *out = o;
                return 1;
            }
            off += (size_t)n->rank * ((size_t)i + o);
        }
    return 0;
}

int rv_train_net_init(rv_train_net *n, const rv_train_base *base, int rank, double alpha, rv_proj_mask targets,
                      uint64_t seed, uint64_t net_id, int with_head)
{
    memset(n, 0, sizeof *n);
    if (rank < 1 || rank > 65536)
        return rv_error_set("LoRA rank: expected 1..65536, found %d", rank);
    n->base = base;
    n->rank = rank;
    n->alpha = alpha;
    n->targets = targets;
    size_t total = 0;
    for (int l = 0; l < base->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++)
            if (targets & (1u << p)) {
                int in, out;
                proj_shape(base, p, &in, &out);
                size_t cnt;
                if (rv_size_mul((size_t)rank, (size_t)in + out, &cnt, "LoRA parameters") < 0 ||
                    rv_size_add(total, cnt, &total, "LoRA parameters") < 0)
                    return -1;
            }
    n->n_params = total;
    n->params = calloc(total ? total : 1, sizeof *n->params);
    n->grads = calloc(total ? total : 1, sizeof *n->grads);
    n->adam_m = calloc(total ? total : 1, sizeof *n->adam_m);
    n->adam_v = calloc(total ? total : 1, sizeof *n->adam_v);
    n->layers = calloc((size_t)base->n_layers, sizeof *n->layers);
    n->layer_grads = calloc((size_t)base->n_layers, sizeof *n->layer_grads);
    if (!n->params || !n->grads || !n->adam_m || !n->adam_v || !n->layers || !n->layer_grads) {
        rv_train_net_free(n);
        return rv_error_set("LoRA adapters: out of memory for %zu parameters", total);
    }
    const float scale = (float)(alpha / rank);
    for (int l = 0; l < base->n_layers; l++) {
        rv_step_layer *sl = &n->layers[l];
        sl->input_norm = base->layer_norms[2 * l];
        sl->post_norm = base->layer_norms[2 * l + 1];
        for (int p = 0; p < RV_N_PROJ; p++) {
            rv_lora_linear *ll = &sl->proj[p];
            proj_shape(base, p, &ll->in, &ll->out);
            ll->weight = base->proj_w[(size_t)l * RV_N_PROJ + p];
            ll->bias = base->proj_b[(size_t)l * RV_N_PROJ + p];
            size_t oa, ob;
            int in, out;
            if (!rv_train_net_tensor(n, l, p, &oa, &ob, &in, &out))
                continue;
            ll->rank = rank;
            ll->lora_a = n->params + oa;
            ll->lora_b = n->params + ob;
            ll->scale = scale;
            n->layer_grads[l].lora_a[p] = n->grads + oa;
            n->layer_grads[l].lora_b[p] = n->grads + ob;
            rv_lora_init(rank, in, out, seed, (net_id << 20) + (uint64_t)l * 64 + (uint64_t)p, n->params + oa,
                         n->params + ob);
        }
    }
    n->dec = (rv_step_decoder){base->vocab, base->hidden, base->n_layers, base->n_heads, base->n_kv_heads,
                               base->head_dim, base->ffn, base->norm_eps, base->inv_freq, base->embed,
                               n->layers, base->final_norm, with_head ? base->lm_head : NULL};
    return 0;
}

void rv_train_net_free(rv_train_net *n)
{
    free(n->params);
    free(n->grads);
    free(n->adam_m);
    free(n->adam_v);
    free(n->layers);
    free(n->layer_grads);
    memset(n, 0, sizeof *n);
}

/* ---------------------------------------------------------------- full-parameter nets */
/* Calls f for every tensor of a full net in layout order (name, element
 * count, offset into the flat array). */
typedef int (*tensor_fn)(void *ctx, const char *name, size_t rows, size_t cols, size_t off);

static int walk_full(const rv_train_base *b, tensor_fn f, void *ctx)
{
    const size_t V = (size_t)b->vocab, D = (size_t)b->hidden;
    size_t off = 0;
    int rc;
    char name[128];
    if ((rc = f(ctx, "model.embed_tokens.weight", V, D, off)) != 0)
        return rc;
    off += V * D;
    if (b->lm_head != b->embed) {
        if ((rc = f(ctx, "lm_head.weight", V, D, off)) != 0)
            return rc;
        off += V * D;
    }
    if ((rc = f(ctx, "model.norm.weight", D, 0, off)) != 0)
        return rc;
    off += D;
    for (int l = 0; l < b->n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = f(ctx, name, D, 0, off)) != 0)
            return rc;
        off += D;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((rc = f(ctx, name, D, 0, off)) != 0)
            return rc;
        off += D;
        for (int p = 0; p < RV_N_PROJ; p++) {
            int in, out;
            proj_shape(b, p, &in, &out);
            const char *block = p <= RV_PROJ_O ? "self_attn" : "mlp";
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, block, rv_proj_names[p]);
            if ((rc = f(ctx, name, (size_t)out, (size_t)in, off)) != 0)
                return rc;
            off += (size_t)out * in;
            if (b->proj_b[(size_t)l * RV_N_PROJ + p]) {
                snprintf(name, sizeof name, "model.layers.%d.%s.%s.bias", l, block, rv_proj_names[p]);
                if ((rc = f(ctx, name, (size_t)out, 0, off)) != 0)
                    return rc;
                off += (size_t)out;
            }
        }
    }
    return 0;
}

static int count_tensor(void *ctx, const char *name, size_t rows, size_t cols, size_t off)
{
    *(size_t *)ctx = off + rows * (cols ? cols : 1);
    return 0;
}

/* Copies base tensors into params and points the decoder and gradients at
 * the flat arrays, in walk order. */
typedef struct {
    rv_train_net *n;
} bind_ctx;

static int bind_tensor(void *ctx, const char *name, size_t rows, size_t cols, size_t off)
{
    bind_ctx *c = ctx;
    rv_train_net *n = c->n;
    const rv_train_base *b = n->base;
    const size_t count = rows * (cols ? cols : 1);
    float *p = n->params + off, *g = n->grads + off;
    const float *src = NULL;
    if (strcmp(name, "model.embed_tokens.weight") == 0) {
        src = b->embed;
        n->dec.embed = p;
        n->dec_grads.embed = g;
        if (b->lm_head == b->embed) {
            n->dec.lm_head = p;
            n->dec_grads.lm_head = g;
        }
    } else if (strcmp(name, "lm_head.weight") == 0) {
        src = b->lm_head;
        n->dec.lm_head = p;
        n->dec_grads.lm_head = g;
    } else if (strcmp(name, "model.norm.weight") == 0) {
        src = b->final_norm;
        n->dec.final_norm = p;
        n->dec_grads.final_norm = g;
    } else {
        int l, consumed = 0;
        char rest[96];
        if (sscanf(name, "model.layers.%d.%95s%n", &l, rest, &consumed) != 2)
            return rv_error_set("full net: unexpected tensor %s", name);
        rv_step_layer *sl = &n->layers[l];
        rv_step_layer_grads *gl = &n->layer_grads[l];
        if (strstr(rest, "input_layernorm")) {
            src = b->layer_norms[2 * l];
            sl->input_norm = p;
            gl->input_norm = g;
        } else if (strstr(rest, "post_attention_layernorm")) {
            src = b->layer_norms[2 * l + 1];
            sl->post_norm = p;
            gl->post_norm = g;
        } else {
            int pi = -1;
            for (int k = 0; k < RV_N_PROJ; k++)
                if (strstr(rest, rv_proj_names[k]))
                    pi = k;
            if (pi < 0)
                return rv_error_set("full net: unexpected tensor %s", name);
            rv_lora_linear *ll = &sl->proj[pi];
            if (strstr(rest, ".bias")) {
                src = b->proj_b[(size_t)l * RV_N_PROJ + pi];
                ll->bias = p;
                gl->bias[pi] = g;
            } else {
                src = b->proj_w[(size_t)l * RV_N_PROJ + pi];
                proj_shape(b, pi, &ll->in, &ll->out);
                ll->weight = p;
                gl->weight[pi] = g;
            }
        }
    }
    memcpy(p, src, count * sizeof *p);
    return 0;
}

size_t rv_train_base_n_floats(const rv_train_base *base)
{
    size_t total = 0;
    walk_full(base, count_tensor, &total);
    return total;
}

int rv_train_net_init_full(rv_train_net *n, const rv_train_base *base)
{
    memset(n, 0, sizeof *n);
    n->base = base;
    n->full = 1;
    size_t total = 0;
    walk_full(base, count_tensor, &total);
    n->n_params = total;
    n->params = calloc(total, sizeof *n->params);
    n->grads = calloc(total, sizeof *n->grads);
    n->adam_m = calloc(total, sizeof *n->adam_m);
    n->adam_v = calloc(total, sizeof *n->adam_v);
    n->layers = calloc((size_t)base->n_layers, sizeof *n->layers);
    n->layer_grads = calloc((size_t)base->n_layers, sizeof *n->layer_grads);
    if (!n->params || !n->grads || !n->adam_m || !n->adam_v || !n->layers || !n->layer_grads) {
        rv_train_net_free(n);
        return rv_error_set("full-parameter training: out of memory for 4 x %zu floats", total);
    }
    n->dec = (rv_step_decoder){base->vocab, base->hidden, base->n_layers, base->n_heads, base->n_kv_heads,
                               base->head_dim, base->ffn, base->norm_eps, base->inv_freq, NULL,
                               n->layers, NULL, NULL};
    bind_ctx c = {n};
    if (walk_full(base, bind_tensor, &c) != 0) {
        rv_train_net_free(n);
        return -1;
    }
    return 0;
}

typedef struct {
    const rv_train_net *n;
    int (*cb)(void *, const char *, size_t, size_t, const float *);
    void *ctx;
} each_ctx;

static int each_tensor(void *ctx, const char *name, size_t rows, size_t cols, size_t off)
{
    each_ctx *e = ctx;
    return e->cb(e->ctx, name, rows, cols, e->n->params + off);
}

int rv_train_net_each_tensor(const rv_train_net *n,
                             int (*callback)(void *ctx, const char *name, size_t rows, size_t cols, const float *data),
                             void *ctx)
{
    each_ctx e = {n, callback, ctx};
    return walk_full(n->base, each_tensor, &e);
}

/* ---------------------------------------------------------------- random base (--init) */
/* N(0, std^2) by Box-Muller from two 53-bit uniforms of (key, i). */
static void fill_normal(float *x, size_t count, double std, uint64_t seed, uint64_t stream)
{
    const uint64_t key = rv_mix64(seed ^ rv_mix64(stream));
    for (size_t i = 0; i < count; i++) {
        double u1 = ((double)(rv_mix64(key + 2 * i) >> 11) + 1.0) * (1.0 / 9007199254740993.0);   /* (0, 1] */
        double u2 = (double)(rv_mix64(key + 2 * i + 1) >> 11) * (1.0 / 9007199254740992.0);
        x[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

static float *filled(rv_train_base *b, size_t count, double value_or_std, int random, uint64_t seed,
                     uint64_t stream)
{
    float *f = own(b, count);
    if (!f)
        return NULL;
    if (random)
        fill_normal(f, count, value_or_std, seed, stream);
    else
        for (size_t i = 0; i < count; i++)
            f[i] = (float)value_or_std;
    return f;
}

int rv_train_base_init_random(rv_train_base *b, const rv_model_config *c, double std, uint64_t seed)
{
    const size_t V = c->vocab_size, D = c->hidden_size, L = c->n_layers;
    if (base_shape(b, c) < 0 || !(b->inv_freq = own(b, c->head_dim / 2)))
        goto oom;
    rv_rope_inv_freq(c, b->inv_freq);
    /* streams: 0 embed, 1 head, then 1000 + layer * 16 + projection */
    if (!(b->embed = filled(b, V * D, std, 1, seed, 0)) || !(b->final_norm = filled(b, D, 1.0, 0, 0, 0)))
        goto oom;
    b->lm_head = c->tie_word_embeddings ? b->embed : filled(b, V * D, std, 1, seed, 1);
    if (!b->lm_head)
        goto oom;
    const int has_bias[RV_N_PROJ] = {c->qkv_bias, c->qkv_bias, c->qkv_bias, c->o_bias,
                                     c->mlp_bias, c->mlp_bias, c->mlp_bias};
    for (size_t l = 0; l < L; l++) {
        if (!(b->layer_norms[2 * l] = filled(b, D, 1.0, 0, 0, 0)) ||
            !(b->layer_norms[2 * l + 1] = filled(b, D, 1.0, 0, 0, 0)))
            goto oom;
        for (int p = 0; p < RV_N_PROJ; p++) {
            int in, out;
            proj_shape(b, p, &in, &out);
            if (!(b->proj_w[l * RV_N_PROJ + p] = filled(b, (size_t)out * in, std, 1, seed, 1000 + l * 16 + p)))
                goto oom;
            if (has_bias[p] && !(b->proj_b[l * RV_N_PROJ + p] = filled(b, (size_t)out, 0.0, 0, 0, 0)))
                goto oom;
        }
    }
    return 0;
oom:
    rv_train_base_free(b);
    return rv_error_set("--init: out of memory for a %zu-layer model", (size_t)L);
}
