/* encode_gpu.cu — rv-encode's device path (see encode_gpu.h): weight upload,
 * the decoder forward of lib/forward.c as a sequence of rv_cuda_* ops, and
 * rv_encode_sequences' batching around it. One small kernel of its own
 * gathers the pooled rows (the EOS of each sequence) out of the packed batch,
 * so only n_seqs × hidden floats come back to the host per batch. */
#include "cuda_common.cuh"   /* rv_cuda internals, RV_LAUNCH */

extern "C" {
#include "encode_gpu.h"
#include "forward.h"
#include "ops.h"   /* rv_weight_rows_f32, rv_rope_tables */
}

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *attn_norm, *ffn_norm;                          /* f32 [hidden] */
    void *q, *k, *v, *o, *gate, *up, *down;               /* storage type, out × in */
    float *q_bias, *k_bias, *v_bias, *o_bias, *gate_bias, *up_bias, *down_bias;   /* f32, NULL when absent */
} dev_layer;

struct rv_encode_gpu {
    rv_cuda *c;
    const rv_model *m;
    rv_wtype wt;               /* storage of matrices and of activations fed to them */
    void *embed;               /* [vocab, hidden] */
    float *final_norm;
    dev_layer *layers;
    size_t weight_bytes;
    /* RoPE tables, grown to the longest sequence seen */
    float *cos_tab, *sin_tab;
    size_t n_pos;
    /* activations, sized for cap_tok tokens and cap_seq sequences */
    size_t cap_tok, cap_seq;
    float *x, *tmp, *hid;      /* residual stream, the gathered final rows, final-norm rows */
    void *xn, *q, *k, *v, *att, *gate, *up;
    uint32_t *d_ids, *d_pos, *d_rows;
    int *d_seq_off;
    /* host staging */
    uint32_t *h_pos, *h_rows;
    int *h_seq_off;
    double flops;
};

/* ---------------------------------------------------------------- gather kernel */
/* dst[i] = src[rows[i]] for n rows of dim floats. */
__global__ void gather_rows_kernel(float *dst, const float *src, const uint32_t *rows, size_t n, size_t dim)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * dim; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = src[(size_t)rows[i / dim] * dim + i % dim];
}

static int gather_rows(rv_cuda *c, float *dst, const float *src, const uint32_t *rows, size_t n, size_t dim)
{
    unsigned grid = 1;
    size_t total = n * dim, cap = (size_t)1 << 24;
    if (rv_grid_1d(total < cap ? total : cap, 256, &grid, "gather rows") != 0)
        return -1;
    RV_LAUNCH(gather_rows_kernel, grid, 256, 0, c->stream, dst, src, rows, n, dim);
    RV_LAUNCH_CHECK("gather_rows_kernel");
    return 0;
}

/* ---------------------------------------------------------------- upload */

static void *dev_alloc(rv_encode_gpu *g, size_t bytes, const char *what)
{
    void *p = rv_cuda_alloc(g->c, bytes ? bytes : 1);
    if (!p)
        rv_error_prefix("device memory for %s (%.1f MiB)", what, (double)bytes / (1 << 20));
    return p;
}

/* A matrix widened to f32 on the host in slices of rows, narrowed to the
 * storage type when that is bf16, and copied up. */
static void *upload_weight(rv_encode_gpu *g, const rv_weight *w, const char *what)
{
    size_t es = rv_wtype_size(g->wt), bytes = w->rows * w->cols * es;
    char *d = (char *)dev_alloc(g, bytes, what);
    if (!d)
        return NULL;
    g->weight_bytes += bytes;
    if (w->type == g->wt) {   /* already in the stored form (a host copy; alignment does not matter) */
        if (rv_cuda_upload(g->c, d, w->data, bytes) != 0)
            return NULL;
        return d;
    }
    size_t slice = w->cols ? ((size_t)1 << 20) / w->cols + 1 : 1;
    float *f = (float *)malloc(slice * w->cols * sizeof(float));
    uint16_t *h = g->wt == RV_WT_BF16 ? (uint16_t *)malloc(slice * w->cols * sizeof(uint16_t)) : NULL;
    if (!f || (g->wt == RV_WT_BF16 && !h)) {
        free(f);
        free(h);
        rv_error_set("out of host memory widening %s", what);
        return NULL;
    }
    int rc = 0;
    for (size_t r = 0; r < w->rows && rc == 0; r += slice) {
        size_t n = w->rows - r < slice ? w->rows - r : slice, count = n * w->cols;
        rv_weight_rows_f32(w, r, n, f);
        const void *src = f;
        if (h) {
            for (size_t i = 0; i < count; i++)
                h[i] = rv_f32_to_bf16(f[i]);
            src = h;
        }
        rc = rv_cuda_upload(g->c, d + r * w->cols * es, src, count * es);
    }
    free(f);
    free(h);
    return rc == 0 ? d : NULL;
}

static float *upload_f32(rv_encode_gpu *g, const float *v, size_t n, const char *what)
{
    if (!v)
        return NULL;
    float *d = (float *)dev_alloc(g, n * sizeof(float), what);
    if (!d)
        return NULL;
    g->weight_bytes += n * sizeof(float);
    return rv_cuda_upload(g->c, d, v, n * sizeof(float)) == 0 ? d : NULL;
}

/* A bias is optional: NULL on the host is NULL on the device, not an error. */
#define UP_BIAS(dst, src, n, what)                                                                   \
    do {                                                                                             \
        if ((src) && !((dst) = upload_f32(g, (src), (n), (what))))                                    \
            goto fail;                                                                               \
    } while (0)
#define UP(dst, expr)                                                                                \
    do {                                                                                             \
        if (!((dst) = (expr)))                                                                       \
            goto fail;                                                                               \
    } while (0)

extern "C" rv_encode_gpu *rv_encode_gpu_open(const rv_model *m, int device, rv_wtype storage)
{
    if (storage != RV_WT_F32 && storage != RV_WT_BF16) {
        rv_error_set("encode on cuda: storage must be f32 or bf16, found %s", rv_wtype_name(storage));
        return NULL;
    }
    const rv_model_config *cfg = &m->cfg;
    if (cfg->head_dim % 2 || cfg->head_dim > 128) {
        rv_error_set("encode on cuda: head_dim %u is not supported by the attention kernel (even, <= 128)",
                     cfg->head_dim);
        return NULL;
    }
    if (rv_cuda_check_device(device) != 0)
        return NULL;
    rv_encode_gpu *g = (rv_encode_gpu *)calloc(1, sizeof *g);
    if (!g) {
        rv_error_set("out of host memory");
        return NULL;
    }
    g->m = m;
    g->wt = storage;
    if (!(g->c = rv_cuda_open(device))) {
        free(g);
        return NULL;
    }
    g->layers = (dev_layer *)calloc(cfg->n_layers ? cfg->n_layers : 1, sizeof *g->layers);
    if (!g->layers) {
        rv_error_set("out of host memory");
        goto fail;
    }
    {
        size_t d = cfg->hidden_size, qd = (size_t)cfg->n_heads * cfg->head_dim,
               kvd = (size_t)cfg->n_kv_heads * cfg->head_dim, ff = cfg->intermediate_size;
        UP(g->embed, upload_weight(g, &m->embed, "the embedding table"));
        UP(g->final_norm, upload_f32(g, m->final_norm, d, "the final norm"));
        for (uint32_t l = 0; l < cfg->n_layers; l++) {
            const rv_layer *L = &m->layers[l];
            dev_layer *D = &g->layers[l];
            UP(D->attn_norm, upload_f32(g, L->attn_norm, d, "a norm weight"));
            UP(D->ffn_norm, upload_f32(g, L->ffn_norm, d, "a norm weight"));
            UP(D->q, upload_weight(g, &L->q, "q_proj"));
            UP(D->k, upload_weight(g, &L->k, "k_proj"));
            UP(D->v, upload_weight(g, &L->v, "v_proj"));
            UP(D->o, upload_weight(g, &L->o, "o_proj"));
            UP(D->gate, upload_weight(g, &L->gate, "gate_proj"));
            UP(D->up, upload_weight(g, &L->up, "up_proj"));
            UP(D->down, upload_weight(g, &L->down, "down_proj"));
            UP_BIAS(D->q_bias, L->q_bias, qd, "a bias");
            UP_BIAS(D->k_bias, L->k_bias, kvd, "a bias");
            UP_BIAS(D->v_bias, L->v_bias, kvd, "a bias");
            UP_BIAS(D->o_bias, L->o_bias, d, "a bias");
            UP_BIAS(D->gate_bias, L->gate_bias, ff, "a bias");
            UP_BIAS(D->up_bias, L->up_bias, ff, "a bias");
            UP_BIAS(D->down_bias, L->down_bias, d, "a bias");
        }
    }
    if (rv_cuda_sync(g->c) != 0)
        goto fail;
    return g;
fail:
    rv_error_prefix("uploading the model to CUDA device %d (%.1f MiB of %s weights so far)", device,
                    (double)g->weight_bytes / (1 << 20), rv_wtype_name(storage));
    rv_encode_gpu_close(g);
    return NULL;
}

extern "C" const char *rv_encode_gpu_device_name(const rv_encode_gpu *g) { return rv_cuda_device_name(g->c); }

extern "C" size_t rv_encode_gpu_weight_bytes(const rv_encode_gpu *g) { return g->weight_bytes; }

extern "C" rv_cuda *rv_encode_gpu_context(rv_encode_gpu *g) { return g->c; }

static void free_activations(rv_encode_gpu *g)
{
    void *dev[] = {g->x, g->tmp, g->hid, g->xn, g->q, g->k, g->v, g->att, g->gate, g->up,
                   g->d_ids, g->d_pos, g->d_rows, g->d_seq_off};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        rv_cuda_free(g->c, dev[i]);
    g->x = g->tmp = g->hid = NULL;
    g->xn = g->q = g->k = g->v = g->att = g->gate = g->up = NULL;
    g->d_ids = g->d_pos = g->d_rows = NULL;
    g->d_seq_off = NULL;
    free(g->h_pos);
    free(g->h_rows);
    free(g->h_seq_off);
    g->h_pos = g->h_rows = NULL;
    g->h_seq_off = NULL;
    g->cap_tok = g->cap_seq = 0;
}

extern "C" void rv_encode_gpu_close(rv_encode_gpu *g)
{
    if (!g)
        return;
    if (g->c) {
        free_activations(g);
        rv_cuda_free(g->c, g->cos_tab);
        rv_cuda_free(g->c, g->sin_tab);
        rv_cuda_free(g->c, g->embed);
        rv_cuda_free(g->c, g->final_norm);
        for (uint32_t l = 0; g->layers && l < g->m->cfg.n_layers; l++) {
            dev_layer *D = &g->layers[l];
            void *p[] = {D->attn_norm, D->ffn_norm, D->q, D->k, D->v, D->o, D->gate, D->up, D->down,
                         D->q_bias, D->k_bias, D->v_bias, D->o_bias, D->gate_bias, D->up_bias, D->down_bias};
            for (size_t i = 0; i < sizeof p / sizeof *p; i++)
                rv_cuda_free(g->c, p[i]);
        }
        rv_cuda_close(g->c);
    }
    free(g->layers);
    free(g);
}

/* ---------------------------------------------------------------- activations and RoPE */

static void *alloc_nz(rv_cuda *c, size_t bytes) { return rv_cuda_alloc(c, bytes ? bytes : 1); }

/* Buffers for batches of up to `tok` tokens and `seq` sequences; the hidden
 * output (out_rows: seq for EOS pooling, tok for mean) fits in tok rows. */
static int reserve(rv_encode_gpu *g, size_t tok, size_t seq, size_t out_rows)
{
    if (out_rows > tok)
        return rv_error_set("encode on cuda: %zu output rows from a %zu-token batch", out_rows, tok);
    if (tok <= g->cap_tok && seq <= g->cap_seq)
        return 0;
    free_activations(g);
    const rv_model_config *c = &g->m->cfg;
    size_t d = c->hidden_size, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim,
           ff = c->intermediate_size, es = rv_wtype_size(g->wt);
    size_t hid_rows = tok;
    double total = (double)tok * ((2.0 * d) * 4 + (d + qd * 2 + kvd * 2 + ff * 2) * es + 12) +
                   (double)hid_rows * d * 4 + (double)seq * 8;
#define A(n) alloc_nz(g->c, (n))
    if (!(g->x = (float *)A(tok * d * 4)) || !(g->tmp = (float *)A(tok * d * 4)) ||
        !(g->hid = (float *)A(hid_rows * d * 4)) || !(g->xn = A(tok * d * es)) || !(g->q = A(tok * qd * es)) ||
        !(g->k = A(tok * kvd * es)) || !(g->v = A(tok * kvd * es)) || !(g->att = A(tok * qd * es)) ||
        !(g->gate = A(tok * ff * es)) || !(g->up = A(tok * ff * es)) || !(g->d_ids = (uint32_t *)A(tok * 4)) ||
        !(g->d_pos = (uint32_t *)A(tok * 4)) || !(g->d_rows = (uint32_t *)A(seq * 4)) ||
        !(g->d_seq_off = (int *)A((seq + 1) * 4))) {
#undef A
        rv_error_prefix("activations for %zu-token batches (%.1f MiB of device memory in all; lower --batch-tokens)",
                        tok, total / (1 << 20));
        free_activations(g);
        return -1;
    }
    g->h_pos = (uint32_t *)malloc(tok * sizeof *g->h_pos);
    g->h_rows = (uint32_t *)malloc(seq * sizeof *g->h_rows);
    g->h_seq_off = (int *)malloc((seq + 1) * sizeof *g->h_seq_off);
    if (!g->h_pos || !g->h_rows || !g->h_seq_off) {
        free_activations(g);
        return rv_error_set("out of host memory for a %zu-token batch", tok);
    }
    g->cap_tok = tok;
    g->cap_seq = seq;
    return 0;
}

static int reserve_rope(rv_encode_gpu *g, size_t n_pos)
{
    if (n_pos <= g->n_pos)
        return 0;
    size_t half = g->m->cfg.head_dim / 2, cap = n_pos < 512 ? 512 : n_pos;
    float *cs = (float *)malloc(2 * cap * half * sizeof(float));
    if (!cs)
        return rv_error_set("out of host memory for RoPE tables");
    rv_rope_tables(g->m->inv_freq, half, cap, cs, cs + cap * half);
    rv_cuda_free(g->c, g->cos_tab);
    rv_cuda_free(g->c, g->sin_tab);
    g->cos_tab = g->sin_tab = NULL;
    g->n_pos = 0;
    int rc = -1;
    if ((g->cos_tab = (float *)dev_alloc(g, cap * half * 4, "RoPE tables")) &&
        (g->sin_tab = (float *)dev_alloc(g, cap * half * 4, "RoPE tables")) &&
        rv_cuda_upload(g->c, g->cos_tab, cs, cap * half * 4) == 0 &&
        rv_cuda_upload(g->c, g->sin_tab, cs + cap * half, cap * half * 4) == 0) {
        g->n_pos = cap;
        rc = 0;
    }
    free(cs);
    return rc;
}

/* ---------------------------------------------------------------- forward */

/* y = res + x W^T (+ bias), res NULL: none; the residual stream's o and
 * down (res = y = x) add straight into it, with no scratch or add pass. */
static int linear_res(rv_encode_gpu *g, void *y, rv_wtype y_t, const void *res, const void *x, size_t m,
                      const void *w, const rv_weight *hw, const float *bias)
{
    g->flops += 2.0 * (double)m * (double)hw->rows * (double)hw->cols;
    return rv_cuda_linear_res(g->c, y, y_t, res, x, m, w, hw->rows, hw->cols, g->wt, bias);
}

static int linear(rv_encode_gpu *g, void *y, rv_wtype y_t, const void *x, size_t m, const void *w,
                  const rv_weight *hw, const float *bias)
{
    return linear_res(g, y, y_t, NULL, x, m, w, hw, bias);
}

/* rv_forward_run's contract (forward.h) with the hidden output on the host:
 * n_seqs packed sequences, final-norm rows for `rows` (n_rows of them) or
 * every token when rows is NULL, into hidden (host, f32). */
static int forward(rv_encode_gpu *g, const uint32_t *ids, const size_t *seq_off, size_t n_seqs, const size_t *rows,
                   size_t n_rows, float *hidden)
{
    const rv_model *m = g->m;
    const rv_model_config *c = &m->cfg;
    rv_cuda *cu = g->c;
    size_t T = seq_off[n_seqs], max_len = 0;
    for (size_t s = 0; s < n_seqs; s++)
        if (seq_off[s + 1] - seq_off[s] > max_len)
            max_len = seq_off[s + 1] - seq_off[s];
    if (!rows)
        n_rows = T;
    if (T == 0)
        return 0;
    if (T > 0x7fffffffu)
        return rv_error_set("encode on cuda: a %zu-token batch exceeds int indexing", T);
    for (size_t t = 0; t < T; t++)
        if (ids[t] >= c->vocab_size)
            return rv_error_set("forward: token id %u at position %zu is outside the vocabulary (%u)", ids[t], t,
                                c->vocab_size);
    if (reserve(g, T, n_seqs, n_rows) < 0 || reserve_rope(g, max_len) < 0)
        return -1;
    for (size_t s = 0; s < n_seqs; s++) {
        g->h_seq_off[s] = (int)seq_off[s];
        for (size_t t = seq_off[s]; t < seq_off[s + 1]; t++)
            g->h_pos[t] = (uint32_t)(t - seq_off[s]);
    }
    g->h_seq_off[n_seqs] = (int)T;
    if (rv_cuda_upload(cu, g->d_ids, ids, T * 4) < 0 || rv_cuda_upload(cu, g->d_pos, g->h_pos, T * 4) < 0 ||
        rv_cuda_upload(cu, g->d_seq_off, g->h_seq_off, (n_seqs + 1) * 4) < 0)
        return -1;

    size_t d = c->hidden_size, hd = c->head_dim, qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd,
           ff = c->intermediate_size;
    float eps = (float)c->rms_norm_eps;
    rv_wtype A = g->wt;
    if (rv_cuda_embedding(cu, g->x, RV_WT_F32, g->embed, A, c->vocab_size, d, g->d_ids, T) < 0)
        return -1;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const dev_layer *D = &g->layers[l];
        const rv_layer *L = &m->layers[l];
        if (rv_cuda_rmsnorm(cu, g->xn, A, g->x, RV_WT_F32, D->attn_norm, RV_WT_F32, T, d, eps, NULL) < 0 ||
            linear(g, g->q, A, g->xn, T, D->q, &L->q, D->q_bias) < 0 ||
            linear(g, g->k, A, g->xn, T, D->k, &L->k, D->k_bias) < 0 ||
            linear(g, g->v, A, g->xn, T, D->v, &L->v, D->v_bias) < 0 ||
            rv_cuda_rope(cu, g->q, A, T, qd, c->n_heads, hd, g->d_pos, 0, g->cos_tab, g->sin_tab, g->n_pos, 1) < 0 ||
            rv_cuda_rope(cu, g->k, A, T, kvd, c->n_kv_heads, hd, g->d_pos, 0, g->cos_tab, g->sin_tab, g->n_pos, 1) <
                0 ||
            rv_cuda_attention_causal(cu, g->att, A, qd, g->q, qd, g->k, g->v, kvd, A, n_seqs, g->d_seq_off, max_len,
                                     c->n_heads, c->n_kv_heads, hd) < 0)
            return -1;
        for (size_t s = 0; s < n_seqs; s++) {
            double len = (double)(seq_off[s + 1] - seq_off[s]);
            g->flops += 2.0 * len * (len + 1) * (double)qd;   /* as forward.c counts attention */
        }
        if (linear_res(g, g->x, RV_WT_F32, g->x, g->att, T, D->o, &L->o, D->o_bias) < 0 ||
            rv_cuda_rmsnorm(cu, g->xn, A, g->x, RV_WT_F32, D->ffn_norm, RV_WT_F32, T, d, eps, NULL) < 0 ||
            linear(g, g->gate, A, g->xn, T, D->gate, &L->gate, D->gate_bias) < 0 ||
            linear(g, g->up, A, g->xn, T, D->up, &L->up, D->up_bias) < 0 ||
            rv_cuda_swiglu(cu, g->gate, A, g->gate, A, g->up, A, T * ff) < 0 ||
            linear_res(g, g->x, RV_WT_F32, g->x, g->gate, T, D->down, &L->down, D->down_bias) < 0)
            return -1;
    }
    /* final norm on the requested rows only, as forward.c does */
    const float *src = g->x;
    if (rows) {
        for (size_t i = 0; i < n_rows; i++)
            g->h_rows[i] = (uint32_t)rows[i];
        if (rv_cuda_upload(cu, g->d_rows, g->h_rows, n_rows * 4) < 0 ||
            gather_rows(cu, g->tmp, g->x, g->d_rows, n_rows, d) < 0)
            return -1;
        src = g->tmp;
    }
    if (rv_cuda_rmsnorm(cu, g->hid, RV_WT_F32, src, RV_WT_F32, g->final_norm, RV_WT_F32,
                        n_rows, d, eps, NULL) < 0 ||
        rv_cuda_download(cu, hidden, g->hid, n_rows * d * sizeof(float)) < 0)
        return -1;
    return rv_cuda_sync(cu);
}

/* ---------------------------------------------------------------- batching (forward_encode.c's) */

/* rv_encode_forward_fn over forward() (the batch's FLOPs counted here). */
static int forward_batch(void *self, const uint32_t *ids, const size_t *seq_off, size_t n_seqs, const size_t *rows,
                         size_t n_rows, float *hidden, double *flops)
{
    rv_encode_gpu *g = (rv_encode_gpu *)self;
    g->flops = 0;
    if (forward(g, ids, seq_off, n_seqs, rows, n_rows, hidden) < 0)
        return -1;
    if (flops)
        *flops += g->flops;
    return 0;
}

static int reserve_batch(void *self, size_t tokens, size_t seqs, size_t hidden_rows)
{
    return reserve((rv_encode_gpu *)self, tokens, seqs, hidden_rows);
}

/* The CPU path's batching, pooling and normalisation (forward_encode.c)
 * around the device forward pass. */
extern "C" int rv_encode_gpu_sequences(rv_encode_gpu *g, const uint32_t *ids, const size_t *off, size_t n,
                                       const rv_encode_params *p, float *out, void (*progress)(void *, size_t),
                                       void *ctx, double *flops)
{
    return rv_encode_sequences_with(forward_batch, reserve_batch, g, g->m->cfg.hidden_size, ids, off, n, p, out,
                                    progress, ctx, flops);
}
