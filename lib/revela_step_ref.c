/* revela_step_ref.c — the Revela step on the CPU from the training ops
 * (see revela_step_ref.h). Each decoder pass stores its activations per
 * layer (inputs of every norm, projection and attention, the LoRA
 * intermediates x A^T, the attention statistics); the backward walks the
 * layers in reverse. Pass B's backward produces the gradients of pass A's
 * post-RoPE K/V, which seed pass A's backward at the same layer. */
#include "revela_step_ref.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"

const char *const rv_proj_names[RV_N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};

/* ---------------------------------------------------------------- allocation */
typedef struct {
    void **ptr;
    size_t n, cap, bytes;
    int failed;
} alloc_list;

/* Bytes held by all lists of the step running on this thread, and their
 * peak: the activation figure rv-train reports. */
static _Thread_local size_t live_bytes, peak_bytes;

/* Zeroed floats owned by the list; NULL (and al->failed) on failure. */
static float *take(alloc_list *al, size_t count)
{
    if (al->n == al->cap) {
        size_t cap = al->cap ? 2 * al->cap : 64;
        void **p = realloc(al->ptr, cap * sizeof *p);
        if (!p) {
            al->failed = 1;
            return NULL;
        }
        al->ptr = p;
        al->cap = cap;
    }
    float *f = calloc(count ? count : 1, sizeof *f);
    if (!f) {
        al->failed = 1;
        return NULL;
    }
    al->ptr[al->n++] = f;
    al->bytes += count * sizeof *f;
    live_bytes += count * sizeof *f;
    peak_bytes = live_bytes > peak_bytes ? live_bytes : peak_bytes;
    return f;
}

static void alloc_list_free(alloc_list *al)
{
    for (size_t i = 0; i < al->n; i++)
        free(al->ptr[i]);
    live_bytes -= al->bytes;
    free(al->ptr);
    memset(al, 0, sizeof *al);
}

/* ---------------------------------------------------------------- activations */
typedef struct {
    float *x_in, *u, *rstd1, *xa[RV_N_PROJ];
    float *keep[RV_N_PROJ], *x_lora[RV_N_PROJ];   /* LoRA dropout mask and masked input (NULL: none) */
    float *q, *k, *v, *attn, *lse;   /* q, k post-RoPE; attn = self-attention output */
    float *ib_lse, *ib_den;          /* in-batch statistics (pass B) */
    float *o_in;                     /* attn + in-batch C: the o_proj input */
    float *x_mid, *u2, *rstd2, *gate, *up, *hmid;
} layer_acts;

typedef struct {
    const rv_step_decoder *m;
    int B, L;
    size_t n;                        /* B * L rows */
    const int *lengths;
    const int32_t *ids;              /* [n] input token ids (for the embedding gradient) */
    int recompute;                   /* layers share one activation set, refilled before their backward */
    float dropout;                   /* LoRA dropout probability */
    uint64_t dropout_seed, dropout_base;   /* mask stream = dropout_base + layer * 8 + projection */
    layer_acts *layers;
    float *x_final, *h, *rstd_f;     /* last residual, final-normed output, its rstd */
    alloc_list mem;
} pass_acts;

/* In-batch attention of pass B: W and the pass-A K/V it reads; in the
 * backward, where pass-A K/V gradients and dL/dW go. */
typedef struct {
    const rv_inbatch_cfg *cfg;
    const float *w;
    const pass_acts *pass_a;
    float **dk_a, **dv_a;            /* [n_layers] */
    float *dw;
} inbatch_link;

int rv_step_decoder_check(const rv_step_decoder *m, const char *who, int need_head)
{
    if (m->vocab <= 0 || m->hidden <= 0 || m->n_layers <= 0 || m->n_heads <= 0 || m->n_kv_heads <= 0 ||
        m->head_dim <= 0 || m->head_dim % 2 != 0 || m->ffn <= 0 || m->n_heads % m->n_kv_heads != 0)
        return rv_error_set("%s: expected positive sizes, an even head_dim and heads a multiple of kv heads, found "
                            "vocab %d hidden %d layers %d heads %d/%d head_dim %d ffn %d", who, m->vocab, m->hidden,
                            m->n_layers, m->n_heads, m->n_kv_heads, m->head_dim, m->ffn);
    if (m->hidden > (1 << 20) || m->ffn > (1 << 22) || m->n_heads * m->head_dim > (1 << 20))
        return rv_error_set("%s: hidden %d / ffn %d / heads*head_dim %d out of range", who, m->hidden, m->ffn,
                            m->n_heads * m->head_dim);
    if (need_head && !m->lm_head)
        return rv_error_set("%s: the LM needs an lm_head (the embedding when tied)", who);
    const int D = m->hidden, QW = m->n_heads * m->head_dim, KW = m->n_kv_heads * m->head_dim, F = m->ffn;
    const int want_in[RV_N_PROJ] = {D, D, D, QW, D, D, F}, want_out[RV_N_PROJ] = {QW, KW, KW, D, F, F, D};
    for (int l = 0; l < m->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *pl = &m->layers[l].proj[p];
            if (pl->in != want_in[p] || pl->out != want_out[p] || pl->rank < 0 || !pl->weight ||
                (pl->rank > 0 && (!pl->lora_a || !pl->lora_b)))
                return rv_error_set("%s: layers.%d.%s: expected %dx%d with weights, found %dx%d rank %d", who, l,
                                    rv_proj_names[p], want_out[p], want_in[p], pl->out, pl->in, pl->rank);
        }
    return 0;
}

/* Dropout of pass `pass` (0 P, 1 Q, 2 A, 3 B) of micro-batch opts->dropout_micro. */
static void set_dropout(pass_acts *a, const rv_step_dropout *d, int pass)
{
    if (!d || !(d->p > 0))
        return;
    a->dropout = d->p;
    a->dropout_seed = d->seed;
    a->dropout_base = ((d->micro << 2) | (uint64_t)pass) << 24;
}

/* Every activation buffer of one layer (the backward's inputs). */
static void alloc_layer(alloc_list *al, layer_acts *la, const rv_step_decoder *m, const int *rank, size_t n, int B,
                        int L, int in_batch, float dropout)
{
    const size_t D = (size_t)m->hidden, QW = (size_t)m->n_heads * m->head_dim;
    const size_t KW = (size_t)m->n_kv_heads * m->head_dim, F = (size_t)m->ffn;
    la->x_in = take(al, n * D);
    la->u = take(al, n * D);
    la->rstd1 = take(al, n);
    for (int p = 0; p < RV_N_PROJ; p++) {
        la->xa[p] = take(al, n * (size_t)(rank[p] > 0 ? rank[p] : 1));
        if (dropout > 0 && rank[p] > 0) {
            la->keep[p] = take(al, n * (size_t)m->layers[0].proj[p].in);
            la->x_lora[p] = take(al, n * (size_t)m->layers[0].proj[p].in);
        }
    }
    la->q = take(al, n * QW);
    la->k = take(al, n * KW);
    la->v = take(al, n * KW);
    la->attn = take(al, n * QW);
    la->lse = take(al, (size_t)B * m->n_heads * L);
    if (in_batch) {
        la->ib_lse = take(al, (size_t)B * B * m->n_heads * L);
        la->ib_den = take(al, (size_t)B * B * m->n_heads * L);
    }
    la->o_in = take(al, n * QW);
    la->x_mid = take(al, n * D);
    la->u2 = take(al, n * D);
    la->rstd2 = take(al, n);
    la->gate = take(al, n * F);
    la->up = take(al, n * F);
    la->hmid = take(al, n * F);
}

/* recompute: keep only each layer's input (and, with keep_kv, its K and V,
 * which pass B reads from pass A), every other buffer shared by all layers
 * and refilled by re-running the layer's forward before its backward. */
static int alloc_pass(pass_acts *a, const rv_step_decoder *m, int B, int L, const int *lengths, int in_batch,
                      const rv_step_dropout *o, int pass, int recompute, int keep_kv)
{
    memset(a, 0, sizeof *a);
    set_dropout(a, o, pass);
    a->m = m;
    a->B = B;
    a->L = L;
    a->n = (size_t)B * L;
    a->lengths = lengths;
    a->recompute = recompute;
    const size_t n = a->n, D = (size_t)m->hidden, KW = (size_t)m->n_kv_heads * m->head_dim;
    a->layers = calloc((size_t)m->n_layers, sizeof *a->layers);
    if (!a->layers)
        return rv_error_set("revela step: out of memory for activations");
    alloc_list *al = &a->mem;
    if (recompute) {
        layer_acts shared = {0};
        int rank[RV_N_PROJ] = {0};   /* the largest of each projection's ranks (layers may differ) */
        for (int l = 0; l < m->n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++)
                rank[p] = m->layers[l].proj[p].rank > rank[p] ? m->layers[l].proj[p].rank : rank[p];
        alloc_layer(al, &shared, m, rank, n, B, L, in_batch, a->dropout);
        for (int l = 0; l < m->n_layers; l++) {
            layer_acts *la = &a->layers[l];
            *la = shared;
            la->x_in = take(al, n * D);
            if (keep_kv) {
                la->k = take(al, n * KW);
                la->v = take(al, n * KW);
            }
        }
    } else {
        for (int l = 0; l < m->n_layers; l++) {
            int rank[RV_N_PROJ];
            for (int p = 0; p < RV_N_PROJ; p++)
                rank[p] = m->layers[l].proj[p].rank;
            alloc_layer(al, &a->layers[l], m, rank, n, B, L, in_batch, a->dropout);
        }
    }
    a->x_final = take(al, n * D);
    a->h = take(al, n * D);
    a->rstd_f = take(al, n);
    if (al->failed)
        return rv_error_set("revela step: out of memory for activations");
    return 0;
}

static void free_pass(pass_acts *a)
{
    alloc_list_free(&a->mem);
    free(a->layers);
    a->layers = NULL;
}

/* ---------------------------------------------------------------- forward */
/* The adapter input of projection p: x itself, or x ⊙ keep under dropout. */
static const float *lora_in(const pass_acts *a, const layer_acts *la, int l, int p, const float *x)
{
    if (!la->keep[p])
        return x;
    const size_t count = a->n * (size_t)a->m->layers[l].proj[p].in;
    rv_dropout_keep_mask(count, a->dropout, a->dropout_seed, a->dropout_base + (uint64_t)l * 8 + (uint64_t)p,
                         la->keep[p]);
    rv_mul(count, x, la->keep[p], la->x_lora[p]);
    return la->x_lora[p];
}

static int proj_forward(const pass_acts *a, const layer_acts *la, int l, int p, const float *x, float *y)
{
    return rv_lora_linear_forward(&a->m->layers[l].proj[p], a->n, x, lora_in(a, la, l, p, x), la->xa[p], y);
}

static int layer_forward(pass_acts *a, int l, const rv_rope_table *rope, float *x, float *scratch_d,
                         float *scratch_q, const inbatch_link *ib)
{
    const rv_step_decoder *m = a->m;
    const rv_step_layer *w = &m->layers[l];
    layer_acts *la = &a->layers[l];
    const size_t n = a->n, D = (size_t)m->hidden, QW = (size_t)m->n_heads * m->head_dim;
    rv_attn_shape shape = {a->B, a->L, m->n_heads, m->n_kv_heads, m->head_dim};

    if (la->x_in != x)
        memcpy(la->x_in, x, n * D * sizeof *x);
    rv_rmsnorm_forward(n, m->hidden, x, w->input_norm, m->norm_eps, la->u, la->rstd1);
    if (proj_forward(a, la, l, RV_PROJ_Q, la->u, la->q) != 0 || proj_forward(a, la, l, RV_PROJ_K, la->u, la->k) != 0 ||
        proj_forward(a, la, l, RV_PROJ_V, la->u, la->v) != 0)
        return -1;
    rv_rope_forward(rope, n, a->L, m->n_heads, m->head_dim, la->q);
    rv_rope_forward(rope, n, a->L, m->n_kv_heads, m->head_dim, la->k);
    if (rv_causal_attn_forward(&shape, a->lengths, la->q, la->k, la->v, la->attn, la->lse) != 0)
        return -1;
    memcpy(la->o_in, la->attn, n * QW * sizeof *x);
    if (ib) {   /* O = S_self + sum_j W_ij b~_ij, before o_proj */
        const layer_acts *pa = &ib->pass_a->layers[l];
        if (rv_inbatch_attn_forward(ib->cfg, a->lengths, ib->w, la->q, pa->k, pa->v, scratch_q, la->ib_lse,
                                    la->ib_den) != 0)
            return -1;
        for (size_t i = 0; i < n * QW; i++)
            la->o_in[i] += scratch_q[i];
    }
    if (proj_forward(a, la, l, RV_PROJ_O, la->o_in, scratch_d) != 0)
        return -1;
    for (size_t i = 0; i < n * D; i++)
        x[i] += scratch_d[i];
    memcpy(la->x_mid, x, n * D * sizeof *x);
    rv_rmsnorm_forward(n, m->hidden, x, w->post_norm, m->norm_eps, la->u2, la->rstd2);
    if (proj_forward(a, la, l, RV_PROJ_GATE, la->u2, la->gate) != 0 ||
        proj_forward(a, la, l, RV_PROJ_UP, la->u2, la->up) != 0)
        return -1;
    rv_swiglu_forward(n * (size_t)m->ffn, la->gate, la->up, la->hmid);
    if (proj_forward(a, la, l, RV_PROJ_DOWN, la->hmid, scratch_d) != 0)
        return -1;
    for (size_t i = 0; i < n * D; i++)
        x[i] += scratch_d[i];
    return 0;
}

/* Embedding, every layer, final norm: a->h holds the final-normed output. */
static int pass_forward(pass_acts *a, const int32_t *ids, const rv_rope_table *rope, const inbatch_link *ib)
{
    const rv_step_decoder *m = a->m;
    const size_t n = a->n, D = (size_t)m->hidden, QW = (size_t)m->n_heads * m->head_dim;
    alloc_list tmp = {0};
    float *x = take(&tmp, n * D), *sd = take(&tmp, n * D), *sq = take(&tmp, n * QW);
    int rc = -1;
    if (tmp.failed) {
        rv_error_set("revela step: out of memory for a forward pass");
        goto done;
    }
    a->ids = ids;
    if (rv_embed_lookup(n, m->hidden, m->vocab, m->embed, ids, x) != 0)
        goto done;
    for (int l = 0; l < m->n_layers; l++)
        if (layer_forward(a, l, rope, x, sd, sq, ib) != 0)
            goto done;
    memcpy(a->x_final, x, n * D * sizeof *x);
    rv_rmsnorm_forward(n, m->hidden, x, m->final_norm, m->norm_eps, a->h, a->rstd_f);
    rc = 0;
done:
    alloc_list_free(&tmp);
    return rc;
}

/* ---------------------------------------------------------------- backward */
/* x: the projection's input; under dropout the saved masked input and mask are used. */
static int lora_back(const layer_acts *la, const rv_lora_linear *p, size_t n, const float *x, const float *xa,
                     const float *dy, float *dx, rv_step_layer_grads *g, int which)
{
    if ((g->weight[which] || g->bias[which]) &&   /* full-parameter training: the base weight's own gradient */
        rv_linear_weight_grad(n, p->in, p->out, x, dy, g->weight[which], p->bias ? g->bias[which] : NULL) != 0)
        return -1;
    return rv_lora_linear_backward(p, n, la->keep[which] ? la->x_lora[which] : x, la->keep[which], xa, dy, dx,
                                   g->lora_a[which], g->lora_b[which]);
}

/* dx: gradient w.r.t. the layer output on entry, w.r.t. its input on exit.
 * dk, dv: gradient buffers of this layer's post-RoPE K and V; they may
 * already hold contributions (pass A: those from pass B's in-batch
 * attention). */
static int layer_backward(pass_acts *a, int l, const rv_rope_table *rope, float *dx, float *dk, float *dv,
                          rv_step_layer_grads *g, const inbatch_link *ib, alloc_list *tmp)
{
    const rv_step_decoder *m = a->m;
    const rv_step_layer *w = &m->layers[l];
    const layer_acts *la = &a->layers[l];
    const size_t n = a->n, D = (size_t)m->hidden, QW = (size_t)m->n_heads * m->head_dim, F = (size_t)m->ffn;
    const rv_lora_linear *P = w->proj;
    rv_attn_shape shape = {a->B, a->L, m->n_heads, m->n_kv_heads, m->head_dim};

    alloc_list_free(tmp);
    float *dh = take(tmp, n * F), *dgate = take(tmp, n * F), *dup = take(tmp, n * F);
    float *du = take(tmp, n * D), *do_in = take(tmp, n * QW), *dq = take(tmp, n * QW);
    if (tmp->failed)
        return rv_error_set("revela step: out of memory for a backward pass");
    /* MLP: x_out = x_mid + down(silu(gate(u2)) * up(u2)), u2 = norm(x_mid) */
    if (lora_back(la, &P[RV_PROJ_DOWN], n, la->hmid, la->xa[RV_PROJ_DOWN], dx, dh, g, RV_PROJ_DOWN) != 0)
        return -1;
    rv_swiglu_backward(n * F, la->gate, la->up, dh, dgate, dup);
    if (lora_back(la, &P[RV_PROJ_GATE], n, la->u2, la->xa[RV_PROJ_GATE], dgate, du, g, RV_PROJ_GATE) != 0 ||
        lora_back(la, &P[RV_PROJ_UP], n, la->u2, la->xa[RV_PROJ_UP], dup, du, g, RV_PROJ_UP) != 0)
        return -1;
    rv_rmsnorm_backward(n, m->hidden, la->x_mid, w->post_norm, la->rstd2, du, dx, g->post_norm);
    /* attention: x_mid = x_in + o_proj(S_self + C) */
    if (lora_back(la, &P[RV_PROJ_O], n, la->o_in, la->xa[RV_PROJ_O], dx, do_in, g, RV_PROJ_O) != 0)
        return -1;
    if (ib) {
        const layer_acts *pa = &ib->pass_a->layers[l];
        if (rv_inbatch_attn_backward(ib->cfg, a->lengths, ib->w, la->q, pa->k, pa->v, la->ib_lse, la->ib_den, do_in,
                                     dq, ib->dk_a[l], ib->dv_a[l], ib->dw) != 0)
            return -1;
    }
    if (rv_causal_attn_backward(&shape, a->lengths, la->q, la->k, la->v, la->attn, la->lse, do_in, dq, dk, dv) != 0)
        return -1;
    rv_rope_backward(rope, n, a->L, m->n_heads, m->head_dim, dq);
    rv_rope_backward(rope, n, a->L, m->n_kv_heads, m->head_dim, dk);
    memset(du, 0, n * D * sizeof *du);
    if (lora_back(la, &P[RV_PROJ_Q], n, la->u, la->xa[RV_PROJ_Q], dq, du, g, RV_PROJ_Q) != 0 ||
        lora_back(la, &P[RV_PROJ_K], n, la->u, la->xa[RV_PROJ_K], dk, du, g, RV_PROJ_K) != 0 ||
        lora_back(la, &P[RV_PROJ_V], n, la->u, la->xa[RV_PROJ_V], dv, du, g, RV_PROJ_V) != 0)
        return -1;
    rv_rmsnorm_backward(n, m->hidden, la->x_in, w->input_norm, la->rstd1, du, dx, g->input_norm);
    return 0;
}

/* dh: gradient w.r.t. the final-normed output (NULL: none, as in pass A).
 * dk_seed/dv_seed: per-layer K/V gradient buffers to start from (pass A),
 * or NULL to start from zero. */
static int pass_backward(pass_acts *a, const rv_rope_table *rope, const float *dh, float **dk_seed, float **dv_seed,
                         rv_step_layer_grads *grads, const rv_step_decoder_grads *dg, const inbatch_link *ib)
{
    const rv_step_decoder *m = a->m;
    const size_t n = a->n, D = (size_t)m->hidden, KW = (size_t)m->n_kv_heads * m->head_dim;
    const size_t QW = (size_t)m->n_heads * m->head_dim;
    alloc_list keep = {0}, tmp = {0};
    float *dx = take(&keep, n * D), *dk0 = take(&keep, n * KW), *dv0 = take(&keep, n * KW);
    float *rx = NULL, *rd = NULL, *rq = NULL;   /* recompute: the layer's input and forward scratch */
    if (a->recompute) {
        rx = take(&keep, n * D);
        rd = take(&keep, n * D);
        rq = take(&keep, n * QW);
    }
    int rc = -1;
    if (keep.failed) {
        rv_error_set("revela step: out of memory for a backward pass");
        goto done;
    }
    if (dh)
        rv_rmsnorm_backward(n, m->hidden, a->x_final, m->final_norm, a->rstd_f, dh, dx, dg ? dg->final_norm : NULL);
    for (int l = m->n_layers - 1; l >= 0; l--) {
        float *dk = dk0, *dv = dv0;
        if (dk_seed) {
            dk = dk_seed[l];
            dv = dv_seed[l];
        } else {
            memset(dk0, 0, n * KW * sizeof *dk0);
            memset(dv0, 0, n * KW * sizeof *dv0);
        }
        if (a->recompute) {   /* the same forward again: identical values, into the shared buffers */
            memcpy(rx, a->layers[l].x_in, n * D * sizeof *rx);
            if (layer_forward(a, l, rope, rx, rd, rq, ib) != 0)
                goto done;
        }
        if (layer_backward(a, l, rope, dx, dk, dv, &grads[l], ib, &tmp) != 0)
            goto done;
    }
    if (dg && dg->embed)
        rv_embed_backward(n, m->hidden, a->ids, dx, dg->embed);
    rc = 0;
done:
    alloc_list_free(&tmp);
    alloc_list_free(&keep);
    return rc;
}

/* ---------------------------------------------------------------- the step */
static int check_grads(const rv_step_decoder *m, const rv_step_layer_grads *g, const char *who)
{
    if (!g)
        return rv_error_set("%s: no gradient buffers", who);
    for (int l = 0; l < m->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++)
            if (m->layers[l].proj[p].rank > 0 && (!g[l].lora_a[p] || !g[l].lora_b[p]))
                return rv_error_set("%s: layers.%d.%s: missing LoRA gradient buffer", who, l, rv_proj_names[p]);
    return 0;
}

int rv_revela_step_ref(const rv_step_decoder *retriever, const rv_step_decoder *lm, const rv_step_batch *batch,
                       const rv_step_opts *opts, rv_step_layer_grads *retriever_grads, rv_step_layer_grads *lm_grads,
                       rv_step_result *result)
{
    return rv_revela_step_ref_dropout(retriever, lm, batch, opts, NULL, retriever_grads, lm_grads, result);
}

int rv_revela_step_ref_dropout(const rv_step_decoder *retriever, const rv_step_decoder *lm,
                               const rv_step_batch *batch, const rv_step_opts *opts, const rv_step_dropout *dropout,
                               rv_step_layer_grads *retriever_grads, rv_step_layer_grads *lm_grads,
                               rv_step_result *result)
{
    if (dropout && !(dropout->p >= 0 && dropout->p < 1))
        return rv_error_set("revela step: LoRA dropout must be in [0, 1), found %g", (double)dropout->p);
    const int B = batch->batch, L = batch->seq_len;
    if (rv_step_decoder_check(retriever, "retriever", 0) != 0 || rv_step_decoder_check(lm, "lm", 1) != 0 ||
        check_grads(retriever, retriever_grads, "retriever") != 0 || check_grads(lm, lm_grads, "lm") != 0)
        return -1;
    if (B < 2 || L < 1 || (size_t)B * L > (size_t)INT_MAX)
        return rv_error_set("revela step: expected batch >= 2 and 1 <= batch*seq_len <= %d, found %d x %d",
                            INT_MAX, B, L);
    rv_attn_shape lm_shape = {B, L, lm->n_heads, lm->n_kv_heads, lm->head_dim};
    rv_attn_shape r_shape = {B, L, retriever->n_heads, retriever->n_kv_heads, retriever->head_dim};
    if (rv_attn_shape_check(&r_shape, batch->p_len) != 0 || rv_attn_shape_check(&r_shape, batch->q_len) != 0 ||
        rv_attn_shape_check(&lm_shape, batch->x_len) != 0)
        return rv_error_prefix("revela step");

    const size_t n = (size_t)B * L, BB = (size_t)B * B, DR = (size_t)retriever->hidden, DL = (size_t)lm->hidden;
    peak_bytes = live_bytes;
    pass_acts pp = {0}, pq = {0}, pa = {0}, pb = {0};
    rv_rope_table rope_r = {0}, rope_l = {0};
    alloc_list mem = {0};
    int rc = -1;
    size_t n_targets = 0;
    inbatch_link ib = {0};
    double loss_sum = 0;
    rv_inbatch_cfg ib_cfg = {lm_shape, opts->v_norm, opts->v_norm_eps, opts->skip_zero_weights};
    float *p_emb = take(&mem, (size_t)B * DR), *q_emb = take(&mem, (size_t)B * DR);
    float *p_norm = take(&mem, (size_t)B), *q_norm = take(&mem, (size_t)B);
    float *S = take(&mem, BB), *W = take(&mem, BB), *dW = take(&mem, BB), *dS = take(&mem, BB);
    float *dq_emb = take(&mem, (size_t)B * DR), *dp_emb = take(&mem, (size_t)B * DR);
    float *dh = take(&mem, n * (DL > DR ? DL : DR));
    int32_t *targets = malloc(n * sizeof *targets);
    float **dk_a = calloc((size_t)lm->n_layers, sizeof *dk_a), **dv_a = calloc((size_t)lm->n_layers, sizeof *dv_a);
    if (!dk_a || !dv_a || !targets)
        mem.failed = 1;
    for (int l = 0; dk_a && dv_a && l < lm->n_layers; l++) {
        dk_a[l] = take(&mem, n * (size_t)lm->n_kv_heads * lm->head_dim);
        dv_a[l] = take(&mem, n * (size_t)lm->n_kv_heads * lm->head_dim);
    }
    if (mem.failed) {
        rv_error_set("revela step: out of memory");
        goto done;
    }
    if (rv_rope_table_init(&rope_r, L, retriever->head_dim, retriever->inv_freq) != 0 ||
        rv_rope_table_init(&rope_l, L, lm->head_dim, lm->inv_freq) != 0)
        goto done;

    /* 1. retriever on both views, EOS pooling, L2 norm */
    const int rc_on = opts->recompute;
    if (alloc_pass(&pp, retriever, B, L, batch->p_len, 0, dropout, 0, rc_on, 0) != 0 ||
        alloc_pass(&pq, retriever, B, L, batch->q_len, 0, dropout, 1, rc_on, 0) != 0)
        goto done;
    if (pass_forward(&pp, batch->p_ids, &rope_r, NULL) != 0 || pass_forward(&pq, batch->q_ids, &rope_r, NULL) != 0)
        goto done;
    rv_eos_pool_l2_forward(B, L, retriever->hidden, batch->p_len, pp.h, p_emb, p_norm);
    rv_eos_pool_l2_forward(B, L, retriever->hidden, batch->q_len, pq.h, q_emb, q_norm);
    /* 2. S = q p^T, W = softmax(S / tau) off the diagonal */
    if (rv_inbatch_weights_forward(B, retriever->hidden, q_emb, p_emb, opts->tau, opts->similarity, S, W) != 0)
        goto done;
    /* 3. LM pass A (K/V cache), 4. pass B with in-batch attention */
    ib = (inbatch_link){&ib_cfg, W, &pa, dk_a, dv_a, dW};
    if (alloc_pass(&pa, lm, B, L, batch->x_len, 0, dropout, 2, rc_on, 1) != 0 ||
        alloc_pass(&pb, lm, B, L, batch->x_len, 1, dropout, 3, rc_on, 0) != 0)
        goto done;
    if (pass_forward(&pa, batch->x_ids, &rope_l, NULL) != 0 || pass_forward(&pb, batch->x_ids, &rope_l, &ib) != 0)
        goto done;
    /* 5. token-mean next-token cross-entropy of pass B */
    n_targets = rv_lm_targets(B, L, batch->x_ids, batch->x_len, targets);
    if (n_targets == 0) {
        rv_error_set("revela step: no target tokens (every chunk has length 1)");
        goto done;
    }
    /* pass A's own loss: the LM without in-batch attention. The reference
     * computes it and ignores it unless dual_loss, which adds it (and its
     * gradient, seeded into pass A's backward with the K/V gradients). */
    double plain_sum = 0;
    float *dh_a = NULL;
    if (opts->dual_loss && !(dh_a = take(&mem, n * DL))) {
        rv_error_set("revela step: out of memory");
        goto done;
    }
    if (rv_lm_head_ce(n, lm->hidden, lm->vocab, pa.h, lm->lm_head, targets,
                      dh_a ? (float)(1.0 / (double)n_targets) : 0.0f, &plain_sum, dh_a, NULL) != 0)
        goto done;
    memset(dh, 0, n * DL * sizeof *dh);
    if (rv_lm_head_ce(n, lm->hidden, lm->vocab, pb.h, lm->lm_head, targets, (float)(1.0 / (double)n_targets),
                      &loss_sum, dh, NULL) != 0)
        goto done;
    /* 6. backward through pass B (yields pass-A K/V gradients and dL/dW), 7. pass A */
    if (pass_backward(&pb, &rope_l, dh, NULL, NULL, lm_grads, NULL, &ib) != 0)
        goto done;
    free_pass(&pb);
    if (pass_backward(&pa, &rope_l, opts->dual_loss ? dh_a : NULL, dk_a, dv_a, lm_grads, NULL, NULL) != 0)
        goto done;
    free_pass(&pa);
    /* 8. W -> S -> embeddings, 9. retriever passes */
    rv_inbatch_weights_backward(B, retriever->hidden, q_emb, p_emb, W, opts->tau, dW, dS, dq_emb, dp_emb);
    memset(dh, 0, n * DR * sizeof *dh);
    rv_eos_pool_l2_backward(B, L, retriever->hidden, batch->p_len, p_emb, p_norm, dp_emb, dh);
    if (pass_backward(&pp, &rope_r, dh, NULL, NULL, retriever_grads, NULL, NULL) != 0)
        goto done;
    memset(dh, 0, n * DR * sizeof *dh);
    rv_eos_pool_l2_backward(B, L, retriever->hidden, batch->q_len, q_emb, q_norm, dq_emb, dh);
    if (pass_backward(&pq, &rope_r, dh, NULL, NULL, retriever_grads, NULL, NULL) != 0)
        goto done;

    result->loss_plain = plain_sum / (double)n_targets;
    result->loss = loss_sum / (double)n_targets + (opts->dual_loss ? result->loss_plain : 0.0);
    result->activation_bytes = peak_bytes;
    result->n_targets = n_targets;
    if (result->s)
        memcpy(result->s, S, BB * sizeof *S);
    if (result->w)
        memcpy(result->w, W, BB * sizeof *W);
    if (result->dw)
        memcpy(result->dw, dW, BB * sizeof *dW);
    if (result->ds)
        memcpy(result->ds, dS, BB * sizeof *dS);
    if (result->q_emb)
        memcpy(result->q_emb, q_emb, (size_t)B * DR * sizeof *q_emb);
    if (result->p_emb)
        memcpy(result->p_emb, p_emb, (size_t)B * DR * sizeof *p_emb);
    rc = 0;
done:
    free_pass(&pp);
    free_pass(&pq);
    free_pass(&pa);
    free_pass(&pb);
    rv_rope_table_free(&rope_r);
    rv_rope_table_free(&rope_l);
    alloc_list_free(&mem);
    free(targets);
    free(dk_a);
    free(dv_a);
    return rc;
}

/* ---------------------------------------------------------------- plain LM step */
int rv_lm_step(const rv_step_decoder *lm, const rv_step_batch *batch, const rv_step_dropout *dropout, int recompute,
               rv_step_layer_grads *lm_grads, const rv_step_decoder_grads *dec_grads, rv_step_result *result)
{
    if (dropout && !(dropout->p >= 0 && dropout->p < 1))
        return rv_error_set("lm step: LoRA dropout must be in [0, 1), found %g", (double)dropout->p);
    if (rv_step_decoder_check(lm, "lm", 1) != 0 || check_grads(lm, lm_grads, "lm") != 0)
        return -1;
    const int B = batch->batch, L = batch->seq_len;
    if (B < 1 || L < 1 || (size_t)B * L > (size_t)INT_MAX)
        return rv_error_set("lm step: expected 1 <= batch*seq_len <= %d, found %d x %d", INT_MAX, B, L);
    rv_attn_shape shape = {B, L, lm->n_heads, lm->n_kv_heads, lm->head_dim};
    if (rv_attn_shape_check(&shape, batch->x_len) != 0)
        return rv_error_prefix("lm step");
    const size_t n = (size_t)B * L;
    peak_bytes = live_bytes;
    pass_acts pa = {0};
    rv_rope_table rope = {0};
    alloc_list mem = {0};
    int rc = -1;
    float *dh = take(&mem, n * (size_t)lm->hidden);
    int32_t *targets = malloc(n * sizeof *targets);
    if (mem.failed || !targets) {
        rv_error_set("lm step: out of memory");
        goto done;
    }
    if (rv_rope_table_init(&rope, L, lm->head_dim, lm->inv_freq) != 0 ||
        alloc_pass(&pa, lm, B, L, batch->x_len, 0, dropout, 2, recompute, 0) != 0 ||
        pass_forward(&pa, batch->x_ids, &rope, NULL) != 0)
        goto done;
    size_t n_targets = rv_lm_targets(B, L, batch->x_ids, batch->x_len, targets);
    if (n_targets == 0) {
        rv_error_set("lm step: no target tokens (every sequence has length 1)");
        goto done;
    }
    double loss_sum = 0;
    if (rv_lm_head_ce(n, lm->hidden, lm->vocab, pa.h, lm->lm_head, targets, (float)(1.0 / (double)n_targets),
                      &loss_sum, dh, dec_grads ? dec_grads->lm_head : NULL) != 0 ||
        pass_backward(&pa, &rope, dh, NULL, NULL, lm_grads, dec_grads, NULL) != 0)
        goto done;
    result->loss = result->loss_plain = loss_sum / (double)n_targets;
    result->n_targets = n_targets;
    result->activation_bytes = peak_bytes;
    rc = 0;
done:
    free_pass(&pa);
    rv_rope_table_free(&rope);
    alloc_list_free(&mem);
    free(targets);
    return rc;
}
