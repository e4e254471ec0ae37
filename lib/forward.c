/* forward.c — the LLaMA-family forward pass over packed sequences (see
 * forward.h). Buffers: x (residual stream), xn (normed), q/k/v, att, and
 * gate/up for the MLP, all T rows; weights widened per matrix into wbuf. */
#include "forward.h"
#include "buf.h"
#include "error.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

struct rv_forward {
    const rv_model *m;
    size_t cap_tokens;
    float *x, *xn, *q, *k, *v, *att, *gate, *up, *sel;
    uint32_t *pos;
    float *wbuf;
    size_t wbuf_len;
    float *cos_tab, *sin_tab;
    size_t n_pos;
    double flops;
};

static size_t max_linear_scratch(const rv_model *m)
{
    size_t mx = rv_op_linear_scratch(&m->lm_head);
    for (uint32_t l = 0; l < m->cfg.n_layers; l++) {
        const rv_layer *L = &m->layers[l];
        const rv_weight *ws[7] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down};
        for (int i = 0; i < 7; i++) {
            size_t s = rv_op_linear_scratch(ws[i]);
            if (s > mx)
                mx = s;
        }
    }
    return mx;
}

rv_forward *rv_forward_new(const rv_model *m)
{
    rv_forward *f = rv_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->m = m;
    return f;
}

static void free_tokens(rv_forward *f)
{
    free(f->x); free(f->xn); free(f->q); free(f->k); free(f->v);
    free(f->att); free(f->gate); free(f->up); free(f->sel); free(f->pos);
    f->x = f->xn = f->q = f->k = f->v = f->att = f->gate = f->up = f->sel = NULL;
    f->pos = NULL;
    f->cap_tokens = 0;
}

void rv_forward_free(rv_forward *f)
{
    if (!f)
        return;
    free_tokens(f);
    free(f->wbuf);
    free(f->cos_tab);
    free(f->sin_tab);
    free(f);
}

static float *alloc_rows(size_t rows, size_t width)
{
    size_t n;
    if (rv_size_mul(rows, width, &n, "activations") < 0 || rv_size_mul(n, sizeof(float), &n, "activations") < 0)
        return NULL;
    return rv_malloc(n);
}

static int reserve_tokens(rv_forward *f, size_t t)
{
    if (t <= f->cap_tokens)
        return 0;
    free_tokens(f);
    const rv_model_config *c = &f->m->cfg;
    size_t cap = t < 64 ? 64 : t;
    size_t d = c->hidden_size, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    f->x = alloc_rows(cap, d);
    f->xn = alloc_rows(cap, d > qd ? d : qd);
    f->q = alloc_rows(cap, qd);
    f->k = alloc_rows(cap, kvd);
    f->v = alloc_rows(cap, kvd);
    f->att = alloc_rows(cap, qd);
    f->gate = alloc_rows(cap, c->intermediate_size);
    f->up = alloc_rows(cap, c->intermediate_size);
    f->sel = alloc_rows(cap, d);
    f->pos = rv_calloc(cap, sizeof *f->pos);
    if (!f->x || !f->xn || !f->q || !f->k || !f->v || !f->att || !f->gate || !f->up || !f->sel || !f->pos) {
        free_tokens(f);
        return -1;
    }
    f->cap_tokens = cap;
    return 0;
}

static int reserve_rope(rv_forward *f, size_t n_pos)
{
    if (n_pos <= f->n_pos)
        return 0;
    size_t half = f->m->cfg.head_dim / 2, cap = n_pos < 512 ? 512 : n_pos;
    free(f->cos_tab);
    free(f->sin_tab);
    f->cos_tab = alloc_rows(cap, half);
    f->sin_tab = alloc_rows(cap, half);
    f->n_pos = 0;
    if (!f->cos_tab || !f->sin_tab)
        return -1;
    rv_rope_tables(f->m->inv_freq, half, cap, f->cos_tab, f->sin_tab);
    f->n_pos = cap;
    return 0;
}

static void linear(rv_forward *f, float *y, const float *x, size_t m, const rv_weight *w, const float *bias)
{
    rv_op_linear(y, x, m, w, bias, f->wbuf);
    f->flops += 2.0 * (double)m * (double)w->rows * (double)w->cols;
}

int rv_forward_run(rv_forward *f, const uint32_t *ids, const size_t *seq_off, size_t n_seqs, const size_t *rows,
                   size_t n_rows, float *hidden, float *logits)
{
    const rv_model *m = f->m;
    const rv_model_config *c = &m->cfg;
    size_t T = n_seqs ? seq_off[n_seqs] - seq_off[0] : 0, max_len = 0;
    f->flops = 0;
    if (n_seqs && seq_off[0] != 0)
        return rv_error_set("forward: seq_off[0] must be 0");
    for (size_t s = 0; s < n_seqs; s++) {
        if (seq_off[s + 1] < seq_off[s])
            return rv_error_set("forward: sequence offsets decrease at %zu", s);
        if (seq_off[s + 1] - seq_off[s] > max_len)
            max_len = seq_off[s + 1] - seq_off[s];
    }
    if (!rows)
        n_rows = T;
    for (size_t i = 0; rows && i < n_rows; i++)
        if (rows[i] >= T)
            return rv_error_set("forward: output row %zu is outside the %zu-token batch", rows[i], T);
    if (T == 0)
        return 0;
    for (size_t t = 0; t < T; t++)
        if (ids[t] >= c->vocab_size)
            return rv_error_set("forward: token id %u at position %zu is outside the vocabulary (%u)", ids[t], t,
                                c->vocab_size);
    if (!f->wbuf) {
        f->wbuf_len = max_linear_scratch(m);
        f->wbuf = rv_malloc((f->wbuf_len ? f->wbuf_len : 1) * sizeof(float));
        if (!f->wbuf)
            return -1;
    }
    if (reserve_tokens(f, T) < 0 || reserve_rope(f, max_len) < 0)
        return -1;
    for (size_t s = 0; s < n_seqs; s++)
        for (size_t t = seq_off[s]; t < seq_off[s + 1]; t++)
            f->pos[t] = (uint32_t)(t - seq_off[s]);

    size_t d = c->hidden_size, hd = c->head_dim, qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd,
           ff = c->intermediate_size;
    float eps = (float)c->rms_norm_eps;
    rv_op_embedding(f->x, &m->embed, ids, T);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const rv_layer *L = &m->layers[l];
        rv_op_rmsnorm(f->xn, f->x, L->attn_norm, T, d, eps);
        linear(f, f->q, f->xn, T, &L->q, L->q_bias);
        linear(f, f->k, f->xn, T, &L->k, L->k_bias);
        linear(f, f->v, f->xn, T, &L->v, L->v_bias);
        rv_op_rope(f->q, T, qd, c->n_heads, hd, f->pos, f->cos_tab, f->sin_tab);
        rv_op_rope(f->k, T, kvd, c->n_kv_heads, hd, f->pos, f->cos_tab, f->sin_tab);
        if (rv_op_attention_causal(f->att, qd, f->q, qd, f->k, f->v, kvd, n_seqs, seq_off, c->n_heads,
                                   c->n_kv_heads, hd) < 0)
            return -1;
        for (size_t s = 0; s < n_seqs; s++) {
            double len = (double)(seq_off[s + 1] - seq_off[s]);
            f->flops += 2.0 * len * (len + 1) * (double)qd;   /* QKᵀ and PV over the causal half */
        }
        linear(f, f->xn, f->att, T, &L->o, L->o_bias);
        rv_op_add(f->x, f->xn, T * d);
        rv_op_rmsnorm(f->xn, f->x, L->ffn_norm, T, d, eps);
        linear(f, f->gate, f->xn, T, &L->gate, L->gate_bias);
        linear(f, f->up, f->xn, T, &L->up, L->up_bias);
        rv_op_swiglu(f->gate, f->gate, f->up, T * ff);
        linear(f, f->xn, f->gate, T, &L->down, L->down_bias);
        rv_op_add(f->x, f->xn, T * d);
    }
    /* final norm on the requested rows only */
    const float *src = f->x;
    if (rows) {
        for (size_t i = 0; i < n_rows; i++)
            memcpy(f->sel + i * d, f->x + rows[i] * d, d * sizeof(float));
        src = f->sel;
    }
    float *normed = hidden ? hidden : f->xn;
    rv_op_rmsnorm(normed, src, m->final_norm, n_rows, d, eps);
    if (logits)
        linear(f, logits, normed, n_rows, &m->lm_head, NULL);
    return 0;
}

double rv_forward_last_flops(const rv_forward *f) { return f->flops; }
