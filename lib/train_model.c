/* train_model.c — rv_model -> fp32 step decoder and LoRA adapter sets (see
 * train_model.h). */
#include "train_model.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
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

int rv_train_base_init(rv_train_base *b, const rv_model *m)
{
    memset(b, 0, sizeof *b);
    const rv_model_config *c = &m->cfg;
    b->vocab = (int)c->vocab_size;
    b->hidden = (int)c->hidden_size;
    b->n_layers = (int)c->n_layers;
    b->n_heads = (int)c->n_heads;
    b->n_kv_heads = (int)c->n_kv_heads;
    b->head_dim = (int)c->head_dim;
    b->ffn = (int)c->intermediate_size;
    b->norm_eps = (float)c->rms_norm_eps;
    const size_t D = c->hidden_size, L = c->n_layers;
    b->layer_norms = calloc(L * 2, sizeof *b->layer_norms);
    b->proj_w = calloc(L * RV_N_PROJ, sizeof *b->proj_w);
    b->proj_b = calloc(L * RV_N_PROJ, sizeof *b->proj_b);
    if (!b->layer_norms || !b->proj_w || !b->proj_b)
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
