/* revela_step_gpu.cu — rv_revela_step_ref (lib/revela_step_ref.c) on the
 * device, see revela_step_gpu.h. The structure mirrors the reference: per
 * pass and layer the same saved activations (norm inputs and rstd, the LoRA
 * intermediates x A^T, post-RoPE q/k, v, the attention output and its lse,
 * pass B's in-batch statistics), the same op order forward and backward, so
 * that in f32 the two agree up to summation order. No kernel of its own:
 * every op is a cuda_ops.h op, LoRA is two extra GEMMs forward and four
 * backward, copies are cudaMemcpyAsync on the context's stream. One pair
 * of small kernels of its own applies LoRA dropout: the keep mask of
 * rv_dropout_keep_mask (a counter-based hash of seed, stream and element)
 * is computed in place from the same hash, bit for bit, so no mask is
 * stored or uploaded; the backward recomputes it.
 *
 * Types. The residual stream, activation gradients, the LoRA master
 * weights, their gradient accumulators and AdamW's state are f32 in both
 * storage modes.
 * f32 storage: every product is a true fp32 GEMM. bf16 storage (the
 * frozen embedding, head and projection matrices stored as bf16, as the
 * PyTorch/DeepSpeed bf16 reference runs them): every projection product,
 * frozen and adapter, runs with bf16 operands and fp32 accumulation on the
 * tensor cores. The projection's input and output gradient are narrowed to
 * bf16 before their GEMMs; the adapters are read from bf16 copies of the
 * f32 masters (one packed array per net, refreshed by one conversion
 * whenever the masters change: rv_step_gpu_load_lora, the device AdamW);
 * xa = x A^T is written as bf16 straight from the GEMM and kept so for the
 * backward (it is only ever a bf16 operand: of xa B^T and of dB = scale
 * dy^T xa), which halves its memory; (scale dy B) is likewise written as
 * bf16 for its two products (dA, dx). Products into f32 (y, dx, dA, dB)
 * accumulate in fp32 with beta = 1, as in f32 storage (the backward's
 * first product into a scratch gradient writes it, beta = 0, so that it
 * needs no zeroing). The inputs of the q/k/v, o, gate/up and down
 * projections (the normed rows u, u2, the attention output (pass B: plus
 * the in-batch term, summed in f32 first) and the gated product) and the
 * gate/up products (SwiGLU's inputs, the largest tensors kept) are written
 * as bf16 by the kernels or GEMMs that make them and kept only so (all are
 * only ever bf16 operands: of the products, and the attention output of
 * the causal backward). Both attentions take the post-RoPE q, k, v
 * narrowed to bf16 (kept per layer for the backward; the f32 ones live
 * only during the layer's forward), and in the backward the attention
 * output's gradient narrowed too.
 *
 * Memory: frozen weights and LoRA parameters/gradients are allocated once
 * at open; activations for all four passes and the backward scratch are
 * allocated at the first step and kept while later steps fit (batch and
 * batch*seq_len no larger), so a training run does not call cudaMalloc per
 * micro-batch. With opts->recompute (activation recomputation, as the CPU
 * step's) each layer keeps only its input (pass A also its post-RoPE K/V,
 * which pass B's in-batch attention reads forward and backward); every
 * other activation goes to ONE set of the largest layer's sizes shared by
 * all layers of all four passes (the CPU step has one per pass), and each
 * layer's forward is re-run into it just before that layer's backward. The
 * ops, inputs and dropout keys are the same, so are the values: the losses
 * and gradients are those of the step without recompute, at the cost of a
 * second forward through every layer.
 *
 * Both nets' gradient accumulators are one allocation (the retriever's
 * below the LM's), so listed top layer first, LM then retriever, they form
 * one descending contiguous range and the gradient buckets
 * (grad_buckets.h) cover it with no gaps and the same plan on every rank,
 * whatever addresses the allocator hands out.
 *
 * Data parallelism (rv_step_gpu_set_comm): tensor readiness is reported from
 * the backward itself. A net's layer-l adapters are final after the last
 * backward pass through layer l that touches them: for the LM, pass A
 * (pass B's backward runs first and pass A's adds to the same
 * accumulators); for the retriever, the query pass (the passage pass's
 * backward runs first). Those passes walk the layers top-down, so on the
 * final micro-batch the LM's top layers' buckets are launched while its
 * lower layers, and then the whole retriever backward, still run. */
#include "cuda_common.cuh"   /* rv_cuda internals, RV_CUDA_CHECK */

extern "C" {
#include "grad_buckets.h"
#include "revela_step_gpu.h"
#include "splitmix.h"    /* rv_mix64: the dropout masks' hash, host side */
#include "train_ops.h"   /* rv_rope_table_init, rv_lm_targets, rv_attn_shape_check */
}

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32 RV_WT_F32

/* ---------------------------------------------------------------- device allocations */
typedef struct {
    void **ptr;
    size_t n, cap, bytes;
    int dry;                      /* count the bytes only (rv_step_gpu_activation_bytes) */
} dev_list;

/* bytes as "N.NN GiB", or "N.N MiB" below one GiB, into buf */
static const char *fmt_bytes(char buf[32], double bytes)
{
    if (bytes >= 1073741824.0)
        snprintf(buf, 32, "%.2f GiB", bytes / 1073741824.0);
    else
        snprintf(buf, 32, "%.1f MiB", bytes / 1048576.0);
    return buf;
}

/* A dry list's stand-in for device memory: never dereferenced, aligned like
 * an allocation so offsets computed from it stay plausible. */
#define DRY_PTR ((void *)(uintptr_t)256)

static void *dev_take(rv_cuda *c, dev_list *dl, size_t bytes, const char *what)
{
    if (dl->dry) {
        dl->n++;
        dl->bytes += bytes;
        return DRY_PTR;
    }
    if (dl->n == dl->cap) {
        size_t cap = dl->cap ? 2 * dl->cap : 64;
        void **p = (void **)realloc(dl->ptr, cap * sizeof *p);
        if (!p) {
            rv_error_set("revela step on cuda: out of host memory");
            return NULL;
        }
        dl->ptr = p;
        dl->cap = cap;
    }
    void *d = rv_cuda_alloc(c, bytes ? bytes : 4);
    if (!d) {
        rv_error_prefix("revela step on cuda: device memory for %s (%.1f MiB)", what, (double)bytes / (1 << 20));
        return NULL;
    }
    dl->ptr[dl->n++] = d;
    dl->bytes += bytes;
    return d;
}

static void dev_list_free(rv_cuda *c, dev_list *dl)
{
    const int dry = dl->dry;
    for (size_t i = 0; i < dl->n && !dry; i++)
        rv_cuda_free(c, dl->ptr[i]);
    free(dl->ptr);
    memset(dl, 0, sizeof *dl);
    dl->dry = dry;
}

/* ---------------------------------------------------------------- state */
typedef struct {
    int in, out, rank;
    float scale;
    const void *weight;           /* device, frozen, in the handle's storage type */
    const float *bias;            /* device f32, frozen (NULL when absent) */
    float *a, *b;                 /* device LoRA [rank, in], [out, rank] */
    void *a16, *b16;              /* bf16 storage: their bf16 copies (NULL with f32 storage) */
    float *ga, *gb;               /* device gradient accumulators, same shapes */
    size_t off_a, off_b;          /* their offsets in the net's packed arrays */
    size_t ti_a, ti_b;            /* their indices in the gradient-bucket plan (set_comm) */
} dproj;

typedef struct {
    const float *input_norm, *post_norm;
    dproj proj[RV_N_PROJ];
} dlayer;

typedef struct {
    const rv_step_decoder *host;
    const void *embed, *lm_head;  /* storage type */
    const float *final_norm;
    dlayer *layers;
    float *cos_tab, *sin_tab;     /* RoPE tables for rope_len positions */
    int rope_len;
    dev_list rope_mem;
    /* every adapter of the net packed in one device array (A then B per
     * projection, each padded to 16 bytes for cuBLASLt's operand alignment:
     * 4 floats, or with bf16 storage 8 elements, so that the bf16 copy at
     * the same element offsets is aligned too), gradients in a second of
     * the same layout, a host array for staging: one transfer per
     * optimiser step each way */
    size_t n_lora;
    float *lora, *grad, *stage;
    void *lora16;                 /* bf16 storage: lora narrowed to bf16, same layout (lora16_refresh) */
    float *m, *v;                 /* AdamW's moments, same layout (rv_step_gpu_optim_upload) */
} dnet;

typedef struct {
    float *x_in, *rstd1;
    void *u, *u2, *hmid;          /* the inputs of q/k/v, gate/up and down, stored in the frozen weights'
                                   * type: with bf16 storage they are only ever bf16 operands */
    void *gate, *up;              /* the gate/up products, in the frozen weights' type (SwiGLU's inputs) */
    void *xa[RV_N_PROJ];          /* x A^T [n, rank]: f32, or bf16 with bf16 storage */
    float *q, *k, *v, *lse, *ib_lse, *ib_den;
    void *attn, *o_in;            /* the causal attention's output and the O projection's input, in the
                                   * frozen weights' type (bf16: only their bf16 roundings are ever read);
                                   * o_in only in a pass with the in-batch term (else O's input is attn) */
    float *x_mid, *rstd2;
    void *qb, *kb, *vb;           /* bf16 storage: the post-RoPE q, k, v narrowed to bf16, the operands
                                   * of both attentions (tensor cores); NULL with f32 storage */
} dacts;

typedef struct {
    dnet *net;
    int B, L;
    size_t n;
    const int *d_len;             /* device lengths [B] */
    const uint32_t *d_ids;        /* device ids [n] */
    dacts *layers;
    float *x_final, *h, *rstd_f;
    float drop_p, drop_kept;      /* LoRA dropout: probability, the kept value 1/(1-p); p == 0: none */
    uint64_t drop_seed, drop_base;   /* mask stream = drop_base + layer * 8 + projection */
    int recompute;                /* layers share one activation set, refilled before their backward */
} dpass;

/* The dropout mask of one projection in one pass (p == 0: none) and the
 * scratch the masked input (and, backward, (scale dy B) A) go to. */
typedef struct {
    float p, kept;
    uint64_t key;
    float *xl, *tl;
    rv_wtype wt;                  /* (not dropout) the frozen weights' storage, and its scratch */
    void *xb, *yb, *glb;
} ddrop;

/* Pass B's link to pass A (rv_revela_step_ref's inbatch_link). */
typedef struct {
    const rv_inbatch_cfg *cfg;
    const float *w;
    const dpass *pass_a;
    float **dk_a, **dv_a;
    float *dw;
} dlink;

struct rv_step_gpu {
    rv_cuda *c;
    rv_wtype wt;                  /* storage of the frozen matrices (embedding, head, projections) */
    dnet net[2];                  /* 0 retriever, 1 LM */
    dev_list weights;             /* frozen weights, LoRA and its gradients */
    struct {
        const float *host;
        const void *dev;
        rv_wtype t;
    } *wmap;                      /* host tensor -> its device copy (shared base uploaded once) */
    size_t n_wmap, cap_wmap;
    /* activations and scratch, sized for cap_B x cap_n, laid out for
     * recompute or not (cap_rc) */
    int cap_B, cap_rc;
    size_t cap_n;
    dev_list acts;
    dpass pass[4];                /* P, Q (retriever), A, B (LM) */
    float *xl, *tl;               /* dropout, f32 storage: masked adapter input, backward product [n, widest input] */
    void *xb, *yb;                /* bf16 storage: a projection's input / output gradient narrowed to bf16 */
    float *qf, *kf, *vf;          /* bf16 storage: every layer's f32 q, k, v before narrowing (shared) */
    void *dob;                    /* bf16 storage: the attention output's gradient narrowed to bf16 (the
                                   * attention backwards' operand) */
    void *glb;                    /* bf16 storage: (scale dy B) [n, widest rank] as bf16 (f32: glora) */
    float *x, *sq, *dx, *dk0, *dv0, *dhf, *du, *do_in, *dq, *glora, *dh, *dh_a;
    void *dgate, *dup;            /* in the frozen weights' type */
    float **dk_a, **dv_a;
    float *p_emb, *q_emb, *p_norm, *q_norm, *S, *W, *dW, *dS, *dq_emb, *dp_emb;
    uint32_t *ids[3];
    int *len[3];
    int32_t *targets;
    double *loss;                 /* [2]: pass B, pass A sums */
    /* data parallelism (rv_step_gpu_set_comm) */
    float *grad_all;              /* both nets' gradient accumulators: retriever, then LM */
    rv_comm *comm;                /* borrowed; NULL: none */
    rv_grad_buckets *buckets;     /* over every adapter tensor of both nets, backward order */
    size_t n_tensors, n_ready;
    unsigned char *ready;         /* [n_tensors]: reported ready in this optimiser step */
    int final_next;               /* mark_final: the next step is this rank's last micro-batch */
    int final_done;               /* a final step has run (or failed): take_grads comes next */
    float *host_sum;              /* device staging of rv_step_gpu_allreduce_host (NCCL) */
    size_t host_sum_n;
    double *ss;                   /* the optimiser's sum of squares (a device double) */
};

/* ---------------------------------------------------------------- dropout kernels */
__device__ __forceinline__ uint64_t mix64_dev(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* rv_dropout_keep_mask's element i: 24 random bits -> u in [0, 1), exact in float. */
__device__ __forceinline__ float keep_at(uint64_t key, size_t i, float p, float kept)
{
    float u = (float)(mix64_dev(key + i) >> 40) * (1.0f / 16777216.0f);
    return (p > 0.0f && u < p) ? 0.0f : kept;
}

/* y = x * keep (rv_mul with the mask), stored as y_t: f32, or (bf16
 * storage) bf16 for the adapter's bf16 operand, rounded once. */
__global__ void dropout_mul_kernel(void *y, int y_t, const void *x, int x_t, size_t n, uint64_t key, float p,
                                   float kept)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        rv_st(y, y_t, i, rv_ld(x, x_t, i) * keep_at(key, i, p, kept));
}

/* dx += keep * t (rv_lora_linear_backward's masked input gradient; t of type t_t). */
__global__ void dropout_add_kernel(float *dx, const void *t, int t_t, size_t n, uint64_t key, float p, float kept)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dx[i] += keep_at(key, i, p, kept) * rv_ld(t, t_t, i);
}

/* add: dst (f32) += keep * src (type src_t); else dst (type dst_t) = src
 * (type src_t) * keep. */
static int dropout_launch(rv_cuda *c, int add, void *dst, rv_wtype dst_t, const void *src, rv_wtype src_t, size_t n,
                          const ddrop *d)
{
    unsigned grid = 1;
    size_t cap = (size_t)1 << 20;
    if (rv_grid_1d(n < cap ? n : cap, 256, &grid, "dropout") != 0)
        return -1;
    if (add) {
        RV_LAUNCH(dropout_add_kernel, grid, 256, 0, c->stream, (float *)dst, src, (int)src_t, n, d->key, d->p,
                  d->kept);
        RV_LAUNCH_CHECK("dropout_add_kernel");
    } else {
        RV_LAUNCH(dropout_mul_kernel, grid, 256, 0, c->stream, dst, (int)dst_t, src, (int)src_t, n, d->key, d->p,
                  d->kept);
        RV_LAUNCH_CHECK("dropout_mul_kernel");
    }
    return 0;
}

/* ---------------------------------------------------------------- small helpers */
static int dcopy(rv_cuda *c, float *dst, const float *src, size_t count)
{
    RV_PROFILE(c, "copy");
    RV_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice, c->stream));
    return 0;
}

static int dzero(rv_cuda *c, void *p, size_t bytes) { return rv_cuda_memset(c, p, 0, bytes); }

/* The device copy of a frozen host tensor as type t (f32, or bf16 rounded
 * to nearest even), uploading it on first sight. */
static const void *upload_frozen(rv_step_gpu *g, const float *host, size_t count, rv_wtype t, const char *what)
{
    if (!host)
        return NULL;
    for (size_t i = 0; i < g->n_wmap; i++)
        if (g->wmap[i].host == host && g->wmap[i].t == t)
            return g->wmap[i].dev;
    if (g->n_wmap == g->cap_wmap) {
        size_t cap = g->cap_wmap ? 2 * g->cap_wmap : 64;
        void *p = realloc(g->wmap, cap * sizeof *g->wmap);
        if (!p) {
            rv_error_set("revela step on cuda: out of host memory");
            return NULL;
        }
        g->wmap = (decltype(g->wmap))p;
        g->cap_wmap = cap;
    }
    void *d = dev_take(g->c, &g->weights, count * rv_wtype_size(t), what);
    if (!d)
        return NULL;
    if (t == RV_WT_F32) {
        if (rv_cuda_upload(g->c, d, host, count * sizeof(float)) != 0)
            return NULL;
    } else {   /* narrowed on the host in slices */
        const size_t slice = (size_t)1 << 20;
        uint16_t *h = (uint16_t *)malloc((count < slice ? count : slice) * sizeof *h);
        if (!h) {
            rv_error_set("revela step on cuda: out of host memory");
            return NULL;
        }
        int rc = 0;
        for (size_t i = 0; i < count && rc == 0; i += slice) {
            size_t m = count - i < slice ? count - i : slice;
            for (size_t k = 0; k < m; k++)
                h[k] = rv_f32_to_bf16(host[i + k]);
            rc = rv_cuda_upload(g->c, (uint16_t *)d + i, h, m * sizeof *h);
        }
        free(h);
        if (rc != 0)
            return NULL;
    }
    g->wmap[g->n_wmap].host = host;
    g->wmap[g->n_wmap].dev = d;
    g->wmap[g->n_wmap].t = t;
    g->n_wmap++;
    return d;
}

/* The CPU step's checks (rv_step_decoder_check) plus the kernels' head_dim
 * limit. */
static int check_decoder(const rv_step_decoder *m, const char *who, int need_head)
{
    if (rv_step_decoder_check(m, who, need_head) != 0)
        return -1;
    if (m->head_dim > 128)
        return rv_error_set("%s: head_dim %d is not supported on cuda (the attention kernels take <= 128)", who,
                            m->head_dim);
    return 0;
}

/* An adapter tensor's length in the packed arrays: padded to 16 bytes of
 * the narrowest type it is stored in (4 floats; 8 elements with bf16
 * storage, whose bf16 copy shares the element offsets). f32 storage keeps
 * the 4-float layout it always had. */
static size_t lora_pad(rv_wtype wt, size_t n)
{
    const size_t u = wt == F32 ? 4 : 8;
    return (n + u - 1) / u * u;
}

static int upload_net(rv_step_gpu *g, dnet *d, const rv_step_decoder *m, int with_head)
{
    d->host = m;
    const size_t V = (size_t)m->vocab, D = (size_t)m->hidden;
    if (!(d->embed = upload_frozen(g, m->embed, V * D, g->wt, "the embedding")) ||
        !(d->final_norm = (const float *)upload_frozen(g, m->final_norm, D, F32, "the final norm")))
        return -1;
    if (with_head && !(d->lm_head = upload_frozen(g, m->lm_head, V * D, g->wt, "the LM head")))
        return -1;
    d->layers = (dlayer *)calloc((size_t)m->n_layers, sizeof *d->layers);
    if (!d->layers)
        return rv_error_set("revela step on cuda: out of host memory");
    for (int l = 0; l < m->n_layers; l++) {
        const rv_step_layer *hl = &m->layers[l];
        dlayer *dl = &d->layers[l];
        if (!(dl->input_norm = (const float *)upload_frozen(g, hl->input_norm, D, F32, "a norm")) ||
            !(dl->post_norm = (const float *)upload_frozen(g, hl->post_norm, D, F32, "a norm")))
            return -1;
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *hp = &hl->proj[p];
            dproj *dp = &dl->proj[p];
            dp->in = hp->in;
            dp->out = hp->out;
            dp->rank = hp->rank;
            dp->scale = hp->scale;
            if (!(dp->weight = upload_frozen(g, hp->weight, (size_t)hp->out * hp->in, g->wt, rv_proj_names[p])))
                return -1;
            if (hp->bias && !(dp->bias = (const float *)upload_frozen(g, hp->bias, (size_t)hp->out, F32, "a bias")))
                return -1;
        }
    }
    /* the packed adapters and gradients (offsets as lora_offset) */
    d->n_lora = 0;
    for (int l = 0; l < m->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++)
            if (d->layers[l].proj[p].rank > 0) {
                const dproj *dp = &d->layers[l].proj[p];
                d->n_lora += lora_pad(g->wt, (size_t)dp->rank * dp->in) + lora_pad(g->wt, (size_t)dp->out * dp->rank);
            }
    if (d->n_lora == 0)
        return 0;
    if (!(d->lora = (float *)dev_take(g->c, &g->weights, d->n_lora * sizeof(float), "the LoRA adapters")) ||
        dzero(g->c, d->lora, d->n_lora * sizeof(float)) != 0)
        return -1;
    if (g->wt != F32 && !(d->lora16 = dev_take(g->c, &g->weights, d->n_lora * rv_wtype_size(g->wt),
                                               "the LoRA adapters' bf16 copies")))
        return -1;
    if (!(d->stage = (float *)calloc(d->n_lora, sizeof(float))))
        return rv_error_set("revela step on cuda: out of host memory");
    size_t off = 0;
    for (int l = 0; l < m->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            dproj *dp = &d->layers[l].proj[p];
            if (dp->rank <= 0)
                continue;
            size_t na = (size_t)dp->rank * dp->in, nb = (size_t)dp->out * dp->rank;
            dp->off_a = off;
            dp->a = d->lora + off;
            off += lora_pad(g->wt, na);
            dp->off_b = off;
            dp->b = d->lora + off;
            off += lora_pad(g->wt, nb);
            if (d->lora16) {   /* the same element offsets in the bf16 copy (16-byte aligned) */
                dp->a16 = (char *)d->lora16 + dp->off_a * rv_wtype_size(g->wt);
                dp->b16 = (char *)d->lora16 + dp->off_b * rv_wtype_size(g->wt);
            }
        }
    return 0;
}

/* The gradient accumulators of both nets in one zeroed allocation, the
 * retriever's first (see the top comment), each net's in the layout of its
 * packed adapters. */
static int alloc_grads(rv_step_gpu *g)
{
    const size_t total = g->net[0].n_lora + g->net[1].n_lora;
    if (total == 0)
        return 0;
    if (!(g->grad_all = (float *)dev_take(g->c, &g->weights, total * sizeof(float), "the LoRA gradients")) ||
        dzero(g->c, g->grad_all, total * sizeof(float)) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        dnet *d = &g->net[i];
        if (d->n_lora == 0)
            continue;
        d->grad = g->grad_all + (i == 0 ? 0 : g->net[0].n_lora);
        for (int l = 0; l < d->host->n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++) {
                dproj *dp = &d->layers[l].proj[p];
                if (dp->rank > 0) {
                    dp->ga = d->grad + dp->off_a;
                    dp->gb = d->grad + dp->off_b;
                }
            }
    }
    return 0;
}

/* ---------------------------------------------------------------- open / close */
extern "C" void rv_step_gpu_close(rv_step_gpu *g)
{
    if (!g)
        return;
    rv_grad_buckets_free(g->buckets);   /* the comm is borrowed: not closed */
    free(g->ready);
    if (g->c) {
        rv_cuda_free(g->c, g->host_sum);
        dev_list_free(g->c, &g->acts);
        dev_list_free(g->c, &g->weights);
        for (int i = 0; i < 2; i++)
            dev_list_free(g->c, &g->net[i].rope_mem);
        rv_cuda_close(g->c);
    }
    for (int i = 0; i < 2; i++) {
        free(g->net[i].layers);
        free(g->net[i].stage);
    }
    for (int i = 0; i < 4; i++)
        free(g->pass[i].layers);
    free(g->dk_a);
    free(g->dv_a);
    free(g->wmap);
    free(g);
}

extern "C" rv_step_gpu *rv_step_gpu_open(const rv_step_decoder *retriever, const rv_step_decoder *lm, int device,
                                         rv_wtype storage)
{
    if (storage != RV_WT_F32 && storage != RV_WT_BF16) {
        rv_error_set("revela step on cuda: weight storage must be f32 or bf16, found %s", rv_wtype_name(storage));
        return NULL;
    }
    if (check_decoder(retriever, "retriever", 0) != 0 || check_decoder(lm, "lm", 1) != 0) {
        rv_error_prefix("revela step on cuda");
        return NULL;
    }
    if (rv_cuda_check_device(device) != 0)
        return NULL;
    rv_step_gpu *g = (rv_step_gpu *)calloc(1, sizeof *g);
    if (!g) {
        rv_error_set("out of host memory");
        return NULL;
    }
    g->wt = storage;
    if (!(g->c = rv_cuda_open(device)) || upload_net(g, &g->net[0], retriever, 0) != 0 ||
        upload_net(g, &g->net[1], lm, 1) != 0 || alloc_grads(g) != 0 || rv_step_gpu_load_lora(g) != 0) {
        rv_step_gpu_close(g);
        return NULL;
    }
    return g;
}

extern "C" const char *rv_step_gpu_device_name(const rv_step_gpu *g) { return rv_cuda_device_name(g->c); }

extern "C" rv_cuda *rv_step_gpu_context(rv_step_gpu *g) { return g->c; }

static int ensure_acts(rv_step_gpu *g, int B, size_t n, int recompute);

/* ensure_acts on a step with no device and dry lists: the same allocations,
 * counted. Only the decoders' shapes and ranks are read. */
extern "C" int rv_step_gpu_activation_bytes(const rv_step_decoder *retriever, const rv_step_decoder *lm,
                                            rv_wtype storage, int B, size_t n, int recompute, size_t *bytes)
{
    if (storage != RV_WT_F32 && storage != RV_WT_BF16)
        return rv_error_set("revela step on cuda: weight storage must be f32 or bf16, found %s",
                            rv_wtype_name(storage));
    if (B < 1 || n < 1)
        return rv_error_set("revela step on cuda: expected a group of at least one chunk and row, found %d and %zu",
                            B, n);
    rv_step_gpu *g = (rv_step_gpu *)calloc(1, sizeof *g);
    if (!g)
        return rv_error_set("out of host memory");
    g->wt = storage;
    g->acts.dry = 1;
    g->net[0].host = retriever;
    g->net[1].host = lm;
    int rc = ensure_acts(g, B, n, recompute);
    *bytes = g->acts.bytes;
    free(g->acts.ptr);
    rv_step_gpu_close(g);   /* (no context: only the host arrays) */
    return rc;
}

/* ensure_acts failed (on the device: out of memory, as a rule): the message
 * gains what a step of this size needs, with and without recompute, so the
 * user sees the way out rather than only the failed allocation. Returns -1. */
static int acts_failed(rv_step_gpu *g, int B, int L, int recompute)
{
    char why[512];
    snprintf(why, sizeof why, "%s", rv_error_get());
    size_t plain = 0, rc = 0;
    const size_t n = (size_t)B * L;
    if (rv_step_gpu_activation_bytes(g->net[0].host, g->net[1].host, g->wt, B, n, 0, &plain) != 0 ||
        rv_step_gpu_activation_bytes(g->net[0].host, g->net[1].host, g->wt, B, n, 1, &rc) != 0)
        return rv_error_set("%s", why);
    char a[32], b[32];
    return rv_error_set("%s; a group of %d chunks x %d tokens needs %s of activations on the device "
                        "(%s with --recompute%s) besides the weights and adapters: %s (make plan-memory "
                        "plans other sizes)",
                        why, B, L, fmt_bytes(a, (double)plain), fmt_bytes(b, (double)rc), recompute ? ", as now" : "",
                        recompute ? "use smaller groups (rv-bm25group -g) or a shorter --max-len"
                                  : "try --recompute, smaller groups (rv-bm25group -g) or a shorter --max-len");
}

/* Every adapter tensor of d between the staging array (the device's packed
 * layout) and host memory laid out like the tool's flat parameter array
 * `params`, which the decoders' adapters point into: a tensor at the offset
 * of its lora_a / lora_b from params in `host` (host == NULL: the adapters
 * themselves). to_stage: stage <- host (pads zeroed); else host <- stage. */
static void stage_adapters(dnet *d, const float *params, float *host, int to_stage)
{
    const rv_step_decoder *m = d->host;
    if (to_stage)
        memset(d->stage, 0, d->n_lora * sizeof(float));
    for (int l = 0; l < m->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            const rv_lora_linear *hp = &m->layers[l].proj[p];
            const dproj *dp = &d->layers[l].proj[p];
            if (dp->rank <= 0)
                continue;
            /* (the adapters are the tool's parameter arrays, which the decoders view as const) */
            float *ha = host ? host + (hp->lora_a - params) : (float *)hp->lora_a;
            float *hb = host ? host + (hp->lora_b - params) : (float *)hp->lora_b;
            float *sa = d->stage + (dp->a - d->lora), *sb = d->stage + (dp->b - d->lora);
            const size_t na = (size_t)dp->rank * dp->in * sizeof(float), nb = (size_t)dp->out * dp->rank * sizeof(float);
            memcpy(to_stage ? sa : ha, to_stage ? ha : sa, na);
            memcpy(to_stage ? sb : hb, to_stage ? hb : sb, nb);
        }
}

/* bf16 storage: net d's bf16 adapter copies from its f32 masters, one
 * conversion over the packed array (pads included: zeros stay zeros). Run
 * after every write of d->lora, so the products never read stale copies. */
static int lora16_refresh(rv_step_gpu *g, dnet *d)
{
    if (!d->lora16 || d->n_lora == 0)
        return 0;
    return rv_cuda_convert(g->c, d->lora16, g->wt, d->lora, F32, d->n_lora);
}

extern "C" int rv_step_gpu_load_lora(rv_step_gpu *g)
{
    for (int i = 0; i < 2; i++) {   /* gathered into the staging array, then one upload per net */
        dnet *d = &g->net[i];
        if (d->n_lora == 0)
            continue;
        stage_adapters(d, NULL, NULL, 1);
        if (rv_cuda_upload(g->c, d->lora, d->stage, d->n_lora * sizeof(float)) != 0 || lora16_refresh(g, d) != 0)
            return -1;
    }
    return 0;
}

/* The all-reduce of this optimiser step's gradients, completed: every
 * tensor not yet reported ready is reported now (in plan order; a rank with
 * no final micro-batch this step reports them all here, and so still issues
 * every collective, in the same order as the others), then every bucket is
 * waited for. Resets the step's readiness whatever happens. */
static int finish_allreduce(rv_step_gpu *g)
{
    int rc = 0;
    for (size_t i = 0; i < g->n_tensors && rc == 0; i++)
        if (!g->ready[i]) {
            g->ready[i] = 1;
            g->n_ready++;
            rc = rv_grad_buckets_ready(g->buckets, i);
        }
    /* finish even after a failed launch: it waits for what was launched
     * and resets the plan for the next step */
    if (rv_grad_buckets_finish(g->buckets) != 0 && rc == 0)
        rc = -1;
    memset(g->ready, 0, g->n_tensors ? g->n_tensors : 1);
    g->n_ready = 0;
    g->final_done = 0;
    g->final_next = 0;
    return rc == 0 ? 0 : rv_error_prefix("revela step on cuda: gradient all-reduce (%s)", g->comm->name);
}

extern "C" int rv_step_gpu_take_grads(rv_step_gpu *g, rv_step_layer_grads *retriever_grads,
                                      rv_step_layer_grads *lm_grads)
{
    rv_step_layer_grads *gr[2] = {retriever_grads, lm_grads};
    for (int i = 0; i < 2; i++) {   /* checked before any collective, so a bad call issues none */
        dnet *d = &g->net[i];
        const rv_step_decoder *m = d->host;
        if (!gr[i])
            return rv_error_set("revela step on cuda: no gradient buffers");
        if (d->n_lora == 0)
            continue;
        for (int l = 0; l < m->n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++)
                if (d->layers[l].proj[p].rank > 0 && (!gr[i][l].lora_a[p] || !gr[i][l].lora_b[p]))
                    return rv_error_set("revela step on cuda: layers.%d.%s: missing LoRA gradient buffer", l,
                                        rv_proj_names[p]);
    }
    if (g->buckets && finish_allreduce(g) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {   /* one download per net into the staging array, then scattered */
        dnet *d = &g->net[i];
        const rv_step_decoder *m = d->host;
        if (d->n_lora == 0)
            continue;
        if (rv_cuda_download(g->c, d->stage, d->grad, d->n_lora * sizeof(float)) != 0 ||
            dzero(g->c, d->grad, d->n_lora * sizeof(float)) != 0)
            return -1;
        for (int l = 0; l < m->n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++) {
                const dproj *dp = &d->layers[l].proj[p];
                if (dp->rank <= 0)
                    continue;
                const float *ga = d->stage + (dp->ga - d->grad), *gb = d->stage + (dp->gb - d->grad);
                float *ha = gr[i][l].lora_a[p], *hb = gr[i][l].lora_b[p];
                for (size_t k = 0, na = (size_t)dp->rank * dp->in; k < na; k++)
                    ha[k] += ga[k];
                for (size_t k = 0, nb = (size_t)dp->out * dp->rank; k < nb; k++)
                    hb[k] += gb[k];
            }
    }
    return 0;
}

/* ---------------------------------------------------------------- activations */
#define TAKE(dst, count)                                                                               \
    do {                                                                                               \
        if (!((dst) = (float *)dev_take(g->c, al, (count) * sizeof(float), "activations")))           \
            return -1;                                                                                 \
    } while (0)
/* count elements of the frozen weights' type (f32 or bf16) */
#define TAKE_W(dst, count)                                                                             \
    do {                                                                                               \
        if (!((dst) = dev_take(g->c, al, (count) * rv_wtype_size(g->wt), "activations")))             \
            return -1;                                                                                 \
    } while (0)
/* count elements of the frozen weights' 16-bit type (only with bf16 storage) */
#define TAKE16(dst, count)                                                                             \
    do {                                                                                               \
        if (g->wt != F32 && !((dst) = dev_take(g->c, al, (count) * rv_wtype_size(g->wt), "bf16 activations"))) \
            return -1;                                                                                 \
    } while (0)

/* The sizes of one layer's activation set: a net's own, or (recompute) the
 * largest over both nets, so that one set serves every layer of every pass. */
typedef struct {
    size_t D, QW, KW, F, H, ib_H;  /* ib_H: heads of the in-batch statistics (0: none) */
    int rank[RV_N_PROJ];
} act_dims;

static act_dims dims_of(const rv_step_decoder *m, int l, int in_batch)
{
    act_dims d;
    d.D = (size_t)m->hidden;
    d.QW = (size_t)m->n_heads * m->head_dim;
    d.KW = (size_t)m->n_kv_heads * m->head_dim;
    d.F = (size_t)m->ffn;
    d.H = (size_t)m->n_heads;
    d.ib_H = in_batch ? d.H : 0;
    for (int p = 0; p < RV_N_PROJ; p++)
        d.rank[p] = m->layers[l].proj[p].rank;
    return d;
}

static void dims_max(act_dims *a, const act_dims *b)
{
    a->D = b->D > a->D ? b->D : a->D;
    a->QW = b->QW > a->QW ? b->QW : a->QW;
    a->KW = b->KW > a->KW ? b->KW : a->KW;
    a->F = b->F > a->F ? b->F : a->F;
    a->H = b->H > a->H ? b->H : a->H;
    a->ib_H = b->ib_H > a->ib_H ? b->ib_H : a->ib_H;
    for (int p = 0; p < RV_N_PROJ; p++)
        a->rank[p] = b->rank[p] > a->rank[p] ? b->rank[p] : a->rank[p];
}

/* Every buffer of one layer's activation set for B chunks of n rows (the
 * input only with_in: a shared set's layers keep their own). */
static int alloc_layer(rv_step_gpu *g, dacts *la, const act_dims *d, int B, size_t n, int with_in)
{
    dev_list *al = &g->acts;
    if (with_in)
        TAKE(la->x_in, n * d->D);
    TAKE_W(la->u, n * d->D);
    TAKE(la->rstd1, n);
    for (int p = 0; p < RV_N_PROJ; p++)   /* xa in the adapter products' operand type (proj_forward) */
        TAKE_W(la->xa[p], n * (size_t)(d->rank[p] > 0 ? d->rank[p] : 1));
    if (g->wt == F32) {
        TAKE(la->q, n * d->QW);
        TAKE(la->k, n * d->KW);
        TAKE(la->v, n * d->KW);
    } else {   /* bf16: only the narrowed copies outlive the layer's forward */
        la->q = g->qf;
        la->k = g->kf;
        la->v = g->vf;
    }
    TAKE16(la->qb, n * d->QW);
    TAKE16(la->kb, n * d->KW);
    TAKE16(la->vb, n * d->KW);
    TAKE_W(la->attn, n * d->QW);
    TAKE(la->lse, n * d->H);
    la->o_in = NULL;
    if (d->ib_H) {
        TAKE(la->ib_lse, (size_t)B * n * d->ib_H);
        TAKE(la->ib_den, (size_t)B * n * d->ib_H);
        TAKE_W(la->o_in, n * d->QW);
    }
    TAKE(la->x_mid, n * d->D);
    TAKE_W(la->u2, n * d->D);
    TAKE(la->rstd2, n);
    TAKE_W(la->gate, n * d->F);
    TAKE_W(la->up, n * d->F);
    TAKE_W(la->hmid, n * d->F);
    return 0;
}

/* shared == NULL: a set of its own per layer. Otherwise (recompute) every
 * layer points into *shared, except its input and, with keep_kv (pass A,
 * whose K/V pass B's in-batch attention reads at every layer, forward and
 * backward), its post-RoPE K and V. */
static int alloc_pass(rv_step_gpu *g, dpass *a, dnet *net, int B, size_t n, int in_batch, const dacts *shared,
                      int keep_kv)
{
    const rv_step_decoder *m = net->host;
    const size_t D = (size_t)m->hidden, KW = (size_t)m->n_kv_heads * m->head_dim;
    a->net = net;
    free(a->layers);
    a->layers = (dacts *)calloc((size_t)m->n_layers, sizeof *a->layers);
    if (!a->layers)
        return rv_error_set("revela step on cuda: out of host memory");
    dev_list *al = &g->acts;
    for (int l = 0; l < m->n_layers; l++) {
        dacts *la = &a->layers[l];
        if (!shared) {
            act_dims d = dims_of(m, l, in_batch);
            if (alloc_layer(g, la, &d, B, n, 1) != 0)
                return -1;
            continue;
        }
        *la = *shared;
        TAKE(la->x_in, n * D);
        if (keep_kv && g->wt == F32) {
            TAKE(la->k, n * KW);
            TAKE(la->v, n * KW);
        }
        if (keep_kv) {
            TAKE16(la->kb, n * KW);
            TAKE16(la->vb, n * KW);
        }
    }
    TAKE(a->x_final, n * D);
    TAKE(a->h, n * D);
    TAKE(a->rstd_f, n);
    return 0;
}

/* Every activation and scratch buffer for B chunks of n rows in all (kept
 * while later steps fit and ask for the same layout). recompute: one
 * activation set of the largest sizes serves every layer of all four
 * passes (only one layer's forward or backward runs at a time, and pass
 * B's in-batch attention reads pass A's K/V, which are kept per layer), so
 * per layer only the inputs (and pass A's K/V) stay. */
static int ensure_acts(rv_step_gpu *g, int B, size_t n, int recompute)
{
    if (g->acts.n && g->cap_rc == recompute && B <= g->cap_B && n <= g->cap_n &&
        (size_t)B * n <= (size_t)g->cap_B * g->cap_n)
        return 0;
    dev_list_free(g->c, &g->acts);
    g->cap_B = 0;
    g->cap_n = 0;
    const rv_step_decoder *r = g->net[0].host, *lm = g->net[1].host;
    if (!g->acts.dry) {   /* refuse before allocating anything when the set cannot fit (acts_failed says more) */
        size_t need = 0, free_b = 0, total_b = 0;
        if (rv_step_gpu_activation_bytes(r, lm, g->wt, B, n, recompute, &need) != 0)
            return -1;
        RV_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        char f[32], t[32];
        if (need > free_b)
            return rv_error_set("revela step on cuda: %s of the device's %s are free", fmt_bytes(f, (double)free_b),
                                fmt_bytes(t, (double)total_b));
    }
    size_t Dm = 0, QWm = 0, KWm = 0, Fm = 0, Rm = 1;
    for (int i = 0; i < 2; i++) {
        const rv_step_decoder *m = g->net[i].host;
        size_t D = (size_t)m->hidden, QW = (size_t)m->n_heads * m->head_dim;
        size_t KW = (size_t)m->n_kv_heads * m->head_dim, F = (size_t)m->ffn;
        Dm = D > Dm ? D : Dm;
        QWm = QW > QWm ? QW : QWm;
        KWm = KW > KWm ? KW : KWm;
        Fm = F > Fm ? F : Fm;
        for (int l = 0; l < m->n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++)
                Rm = (size_t)m->layers[l].proj[p].rank > Rm ? (size_t)m->layers[l].proj[p].rank : Rm;
    }
    dev_list *al = &g->acts;
    g->qf = g->kf = g->vf = NULL;
    if (g->wt != F32) {   /* the f32 q, k, v of whichever layer runs its forward (alloc_layer) */
        TAKE(g->qf, n * QWm);
        TAKE(g->kf, n * KWm);
        TAKE(g->vf, n * KWm);
    }
    dacts shared, *sh = NULL;
    if (recompute) {
        act_dims d = dims_of(r, 0, 0);
        for (int i = 0; i < 2; i++)
            for (int l = 0; l < g->net[i].host->n_layers; l++) {
                act_dims e = dims_of(g->net[i].host, l, i == 1);   /* the LM's: pass B's in-batch statistics */
                dims_max(&d, &e);
            }
        memset(&shared, 0, sizeof shared);
        if (alloc_layer(g, &shared, &d, B, n, 0) != 0)
            return -1;
        sh = &shared;
    }
    if (alloc_pass(g, &g->pass[0], &g->net[0], B, n, 0, sh, 0) != 0 ||
        alloc_pass(g, &g->pass[1], &g->net[0], B, n, 0, sh, 0) != 0 ||
        alloc_pass(g, &g->pass[2], &g->net[1], B, n, 0, sh, 1) != 0 ||
        alloc_pass(g, &g->pass[3], &g->net[1], B, n, 1, sh, 0) != 0)
        return -1;
    const size_t DR = (size_t)r->hidden, DL = (size_t)lm->hidden, KWL = (size_t)lm->n_kv_heads * lm->head_dim;
    size_t In = Dm > QWm ? Dm : QWm;
    In = Fm > In ? Fm : In;
    /* xl, tl and glora serve f32 storage only: with bf16 the masked adapter
     * input and the backward's masked product go to xb, (scale dy B) to
     * glb, all bf16 */
    g->xl = g->tl = g->glora = NULL;
    if (g->wt == F32) {
        TAKE(g->xl, n * In);
        TAKE(g->tl, n * In);
    }
    g->xb = g->yb = g->glb = NULL;
    TAKE16(g->xb, n * In);
    TAKE16(g->yb, n * In);
    TAKE16(g->glb, n * Rm);
    g->x = NULL;
    if (recompute)   /* the recomputed layer's output (each layer's real one is the next one's saved input) */
        TAKE(g->x, n * Dm);
    TAKE(g->sq, n * QWm);
    TAKE(g->dx, n * Dm);
    TAKE(g->dk0, n * KWm);
    TAKE(g->dv0, n * KWm);
    TAKE(g->dhf, n * Fm);
    TAKE_W(g->dgate, n * Fm);   /* SwiGLU's gradients: only operands of the gate/up backward products */
    TAKE_W(g->dup, n * Fm);
    TAKE(g->du, n * Dm);
    TAKE(g->do_in, n * QWm);
    TAKE(g->dq, n * QWm);
    g->dob = NULL;
    TAKE16(g->dob, n * QWm);
    if (g->wt == F32)
        TAKE(g->glora, n * Rm);
    TAKE(g->dh, n * Dm);
    TAKE(g->dh_a, n * DL);
    free(g->dk_a);
    free(g->dv_a);
    g->dk_a = (float **)calloc((size_t)lm->n_layers, sizeof(float *));
    g->dv_a = (float **)calloc((size_t)lm->n_layers, sizeof(float *));
    if (!g->dk_a || !g->dv_a)
        return rv_error_set("revela step on cuda: out of host memory");
    for (int l = 0; l < lm->n_layers; l++) {
        TAKE(g->dk_a[l], n * KWL);
        TAKE(g->dv_a[l], n * KWL);
    }
    const size_t BB = (size_t)B * B;
    TAKE(g->p_emb, (size_t)B * DR);
    TAKE(g->q_emb, (size_t)B * DR);
    TAKE(g->p_norm, (size_t)B);
    TAKE(g->q_norm, (size_t)B);
    TAKE(g->S, BB);
    TAKE(g->W, BB);
    TAKE(g->dW, BB);
    TAKE(g->dS, BB);
    TAKE(g->dq_emb, (size_t)B * DR);
    TAKE(g->dp_emb, (size_t)B * DR);
#undef TAKE
#undef TAKE16
#undef TAKE_W
    for (int v = 0; v < 3; v++)
        if (!(g->ids[v] = (uint32_t *)dev_take(g->c, al, n * sizeof(uint32_t), "token ids")) ||
            !(g->len[v] = (int *)dev_take(g->c, al, (size_t)B * sizeof(int), "lengths")))
            return -1;
    if (!(g->targets = (int32_t *)dev_take(g->c, al, n * sizeof(int32_t), "targets")) ||
        !(g->loss = (double *)dev_take(g->c, al, 2 * sizeof(double), "the loss")))
        return -1;
    g->cap_B = B;
    g->cap_n = n;
    g->cap_rc = recompute;
    return 0;
}

static int ensure_rope(rv_step_gpu *g, dnet *d, int L)
{
    if (d->rope_len == L)
        return 0;
    dev_list_free(g->c, &d->rope_mem);
    d->rope_len = 0;
    rv_rope_table t;
    memset(&t, 0, sizeof t);
    if (rv_rope_table_init(&t, L, d->host->head_dim, d->host->inv_freq) != 0)
        return -1;
    size_t bytes = (size_t)L * t.half * sizeof(float);
    int rc = -1;
    if ((d->cos_tab = (float *)dev_take(g->c, &d->rope_mem, bytes, "RoPE tables")) &&
        (d->sin_tab = (float *)dev_take(g->c, &d->rope_mem, bytes, "RoPE tables")) &&
        rv_cuda_upload(g->c, d->cos_tab, t.cos, bytes) == 0 && rv_cuda_upload(g->c, d->sin_tab, t.sin, bytes) == 0) {
        d->rope_len = L;
        rc = 0;
    }
    rv_rope_table_free(&t);
    return rc;
}

/* ---------------------------------------------------------------- projections */
/* y = x W^T + bias + scale (x A^T) B^T, or with res y = res + that (the
 * residual projections o and down: the frozen product reads the stream's
 * previous copy res (f32) and writes its next, rv_cuda_linear_res, so there
 * is no scratch output, add or copy pass); xa = x A^T kept for the backward
 * (rv_lora_linear_forward). With bf16 storage (d->wt) every product takes
 * bf16 operands with fp32 accumulation: x narrowed into d->xb for the
 * frozen product and reused for the adapter's (under dropout overwritten,
 * once the frozen product has read it, by x * keep rounded to bf16), the
 * adapters' bf16 copies, and xa written as bf16 (see the top comment). */
static int proj_forward(rv_cuda *c, const dproj *p, size_t n, const void *x, rv_wtype xt, void *xa, void *y,
                        rv_wtype yt, const float *res, const ddrop *d)
{
    const int N = (int)n, in = p->in, out = p->out, r = p->rank;
    const void *xw = x;   /* x in the weights' type */
    {
        RV_PROFILE(c, "frozen_gemm");
        if (xt != d->wt) {
            if (rv_cuda_convert(c, d->xb, d->wt, x, xt, n * (size_t)in) != 0)
                return -1;
            xw = d->xb;
        }
        if (rv_cuda_linear_res(c, y, yt, res, xw, n, p->weight, (size_t)out, (size_t)in, d->wt, p->bias) != 0)
            return -1;
    }
    if (r <= 0)
        return 0;
    RV_PROFILE(c, "lora");
    /* the adapter's input: x (in the weights' type), or x * keep under dropout */
    const rv_wtype t = d->wt;
    if (d->p > 0) {
        void *xs = t == F32 ? (void *)d->xl : d->xb;   /* (bf16: xb, once the frozen product has read it) */
        if (dropout_launch(c, 0, xs, t, x, xt, n * (size_t)in, d) != 0)
            return -1;
        xw = xs;
    }
    const void *A = t == F32 ? (const void *)p->a : p->a16, *Bm = t == F32 ? (const void *)p->b : p->b16;
    return rv_cuda_gemm(c, 0, 1, N, r, in, 1.0f, xw, in, A, in, t, 0.0f, xa, r, t) != 0 ||
                   rv_cuda_gemm(c, 0, 1, N, out, r, p->scale, xa, r, Bm, r, t, 1.0f, y, out, yt) != 0
               ? -1
               : 0;
}

/* rv_lora_linear_backward: dx += dy W + keep * ((scale dy B) A), dA +=
 * (scale dy B)^T x_lora, dB += scale dy^T xa; gl is [n, rank] scratch. x is
 * the projection's input; under dropout x_lora = x * keep is recomputed
 * from the mask's hash (the same values the forward used). With bf16
 * storage the operands are bf16 as in proj_forward: dy (unless it is bf16
 * already) narrowed into d->yb (for the frozen product and dB, gl), x_lora
 * narrowed again into d->xb (the same bf16 values the forward's xa was made
 * from), xa as saved, and
 * gl = scale dy B written as bf16 into d->glb for dA and dx; dA, dB and dx
 * accumulate in f32 (beta = 1), except that dx_fresh makes the first
 * product write dx (beta = 0: dx need not be zeroed; its old contents are
 * never read). */
static int proj_backward(rv_cuda *c, const dproj *p, size_t n, const void *x, rv_wtype xt, const void *xa,
                         const void *dy, rv_wtype dyt, float *dx, int dx_fresh, float *gl, const ddrop *d)
{
    const int N = (int)n, in = p->in, out = p->out, r = p->rank;
    const rv_wtype t = d->wt;
    const void *dyw = dy;   /* dy in the weights' type */
    {
        RV_PROFILE(c, "frozen_gemm");
        if (dyt != t) {
            if (rv_cuda_convert(c, d->yb, t, dy, dyt, n * (size_t)out) != 0)
                return -1;
            dyw = d->yb;
        }
        if (rv_cuda_gemm(c, 0, 0, N, in, out, 1.0f, dyw, out, p->weight, in, t, dx_fresh ? 0.0f : 1.0f, dx, in,
                         F32) != 0)
            return -1;
    }
    if (r <= 0)
        return 0;
    RV_PROFILE(c, "lora");
    const void *xw = x;   /* the adapter's input in the weights' type (x * keep under dropout) */
    void *xs = t == F32 ? (void *)d->xl : d->xb;
    if (d->p > 0 || xt != t) {
        if ((d->p > 0 ? dropout_launch(c, 0, xs, t, x, xt, n * (size_t)in, d)
                      : rv_cuda_convert(c, xs, t, x, xt, n * (size_t)in)) != 0)
            return -1;
        xw = xs;
    }
    const void *A = t == F32 ? (const void *)p->a : p->a16, *Bm = t == F32 ? (const void *)p->b : p->b16;
    void *glw = t == F32 ? (void *)gl : d->glb;   /* scale dy B, [n, rank] */
    if (rv_cuda_gemm(c, 1, 0, out, r, N, p->scale, dyw, out, xa, r, t, 1.0f, p->gb, r, F32) != 0 ||
        rv_cuda_gemm(c, 0, 0, N, r, out, p->scale, dyw, out, Bm, r, t, 0.0f, glw, r, t) != 0 ||
        rv_cuda_gemm(c, 1, 0, r, in, N, 1.0f, glw, r, xw, in, t, 1.0f, p->ga, in, F32) != 0)
        return -1;
    if (d->p > 0) {   /* (gl A) into scratch, then masked into dx: f32, or with bf16 storage bf16
                       * in xb, which the masked input no longer needs (half the traffic, for a
                       * bf16 rounding of the adapter's term that the f32 add then keeps) */
        void *tl = t == F32 ? (void *)d->tl : d->xb;
        return rv_cuda_gemm(c, 0, 0, N, in, r, 1.0f, glw, r, A, in, t, 0.0f, tl, in, t) != 0 ||
                       dropout_launch(c, 1, dx, F32, tl, t, n * (size_t)in, d) != 0
                   ? -1
                   : 0;
    }
    return rv_cuda_gemm(c, 0, 0, N, in, r, 1.0f, glw, r, A, in, t, 1.0f, dx, in, F32);
}

/* The mask of pass a, layer l, projection p (revela_step_ref.c's lora_in). */
static ddrop drop_of(const rv_step_gpu *g, const dpass *a, int l, int p)
{
    ddrop d;
    d.p = a->drop_p;
    d.kept = a->drop_kept;
    d.key = a->drop_p > 0 ? rv_mix64(a->drop_seed ^ rv_mix64(a->drop_base + (uint64_t)l * 8 + (uint64_t)p)) : 0;
    d.xl = g->xl;
    d.tl = g->tl;
    d.wt = g->wt;
    d.xb = g->xb;
    d.yb = g->yb;
    d.glb = g->glb;
    return d;
}

/* ---------------------------------------------------------------- forward */
/* Projection `which` of layer la (weights P, dropout masks dr) on input x. */
#define FWD(which, x, xt, y, yt)                                                                                \
    proj_forward(c, &P[RV_PROJ_##which], n, x, xt, la->xa[RV_PROJ_##which], y, yt, NULL, &dr[RV_PROJ_##which])
/* The residual stream: next = prev + projection `which` of input in (f32) */
#define FWD_RESIDUAL(which, in, prev, next)                                                                     \
    proj_forward(c, &P[RV_PROJ_##which], n, in, g->wt, la->xa[RV_PROJ_##which], next, F32, prev,                \
                 &dr[RV_PROJ_##which])
/* The backward of projection `which`; when this pass is the net's last
 * through the layer on the final micro-batch (fin), its adapter gradients
 * are now final and are reported to the gradient buckets at once. */
#define BACK(which, x, xt, dy, dyt, dxo, fresh)                                                                  \
    (proj_backward(c, &P[RV_PROJ_##which], n, x, xt, la->xa[RV_PROJ_##which], dy, dyt, dxo, fresh, g->glora,   \
                   &dr[RV_PROJ_##which]) != 0 ||                                                                 \
             (fin && proj_final(g, &P[RV_PROJ_##which]) != 0)                                                    \
         ? -1                                                                                                    \
         : 0)

/* Reports projection p's two adapter gradients ready (B first: the backward
 * finishes dB before dA). On the device the collective is ordered after the
 * GEMMs just queued on the step's stream (comm_nccl.h). */
static int proj_final(rv_step_gpu *g, const dproj *p)
{
    if (p->rank <= 0)
        return 0;
    const size_t ti[2] = {p->ti_b, p->ti_a};
    for (int k = 0; k < 2; k++) {
        if (g->ready[ti[k]])
            return rv_error_set("revela step on cuda: adapter gradient %zu reported final twice", ti[k]);
        g->ready[ti[k]] = 1;
        g->n_ready++;
        if (rv_grad_buckets_ready(g->buckets, ti[k]) != 0)
            return rv_error_prefix("revela step on cuda: gradient all-reduce (%s)", g->comm->name);
    }
    return 0;
}

/* The operands of both attentions: the post-RoPE q, k, v in the frozen
 * weights' storage type: f32 as they are, or (bf16) their narrowed copies,
 * which run the attention kernels on tensor cores (cuda_ops.h). */
#define ATT_Q(la) (g->wt == F32 ? (const void *)(la)->q : (const void *)(la)->qb)
#define ATT_K(la) (g->wt == F32 ? (const void *)(la)->k : (const void *)(la)->kb)
#define ATT_V(la) (g->wt == F32 ? (const void *)(la)->v : (const void *)(la)->vb)
/* The O projection's input: the attention output, plus the in-batch term in pass B */
#define O_IN(la, ib) ((ib) ? (la)->o_in : (la)->attn)

/* The attentions' operands from the projections' f32 q, k, v: q and k
 * rotated (RoPE), in place with f32 storage; with bf16 storage rotated
 * straight into their bf16 copies qb, kb (rounded once, to nearest even),
 * and v narrowed into vb. */
static int rope_qkv(rv_step_gpu *g, const dpass *a, dacts *la)
{
    rv_cuda *c = g->c;
    const rv_step_decoder *m = a->net->host;
    const dnet *net = a->net;
    const size_t n = a->n, hd = (size_t)m->head_dim, QW = (size_t)m->n_heads * hd, KW = (size_t)m->n_kv_heads * hd;
    const rv_wtype t = g->wt;
    void *qo = t == F32 ? (void *)la->q : la->qb, *ko = t == F32 ? (void *)la->k : la->kb;
    return rv_cuda_rope_to(c, qo, t, la->q, F32, n, QW, (size_t)m->n_heads, hd, NULL, (size_t)a->L, net->cos_tab,
                           net->sin_tab, (size_t)net->rope_len, 1) != 0 ||
                   rv_cuda_rope_to(c, ko, t, la->k, F32, n, KW, (size_t)m->n_kv_heads, hd, NULL, (size_t)a->L,
                                   net->cos_tab, net->sin_tab, (size_t)net->rope_len, 1) != 0 ||
                   (t != F32 && rv_cuda_convert(c, la->vb, t, la->v, F32, n * KW) != 0)
               ? -1
               : 0;
}

/* Both attentions of a layer, forward: la->attn (the causal output) and,
 * with the in-batch link, la->o_in = attn + sum_j W_ij b~_ij (S_self + C),
 * each in the storage type. With bf16 storage without the link the kernel
 * rounds its output straight into attn (as rv_cuda_convert would); with the
 * link the f32 sum is formed in the shared scratch qf (free once q is
 * narrowed) and rounded once into each. */
static int attention_forward(rv_step_gpu *g, const dpass *a, int l, dacts *la, const dlink *ib,
                             const rv_attn_shape *shape, size_t nq)
{
    rv_cuda *c = g->c;
    const rv_wtype t = g->wt;
    const int via_f32 = t != F32 && ib;
    if (rv_cuda_causal_attn_forward(c, shape, a->d_len, ATT_Q(la), ATT_K(la), ATT_V(la), t,
                                    via_f32 ? (void *)g->qf : la->attn, via_f32 ? F32 : t, la->lse) != 0)
        return -1;
    if (!ib)
        return 0;
    const dacts *pa = &ib->pass_a->layers[l];
    if (rv_cuda_inbatch_attn_forward(c, ib->cfg, a->d_len, ib->w, ATT_Q(la), ATT_K(pa), ATT_V(pa), t, g->sq, F32,
                                     la->ib_lse, la->ib_den) != 0)
        return -1;
    if (t == F32)
        return dcopy(c, (float *)la->o_in, (const float *)la->attn, nq) != 0 ||
                       rv_cuda_add(c, la->o_in, F32, g->sq, F32, nq) != 0
                   ? -1
                   : 0;
    return rv_cuda_convert(c, la->attn, t, g->qf, F32, nq) != 0 || rv_cuda_add(c, g->qf, F32, g->sq, F32, nq) != 0 ||
                   rv_cuda_convert(c, la->o_in, t, g->qf, F32, nq) != 0
               ? -1
               : 0;
}

/* Layer l on its saved input la->x_in (the previous layer's output, or the
 * embedding), its output written to out: the next layer's x_in, the pass's
 * x_final, or (the recompute before the backward) a scratch. */
static int layer_forward(rv_step_gpu *g, dpass *a, int l, float *out, const dlink *ib)
{
    rv_cuda *c = g->c;
    const rv_step_decoder *m = a->net->host;
    const dlayer *w = &a->net->layers[l];
    dacts *la = &a->layers[l];
    const size_t n = a->n, D = (size_t)m->hidden, QW = (size_t)m->n_heads * m->head_dim;
    rv_attn_shape shape = {a->B, a->L, m->n_heads, m->n_kv_heads, m->head_dim};
    const dproj *P = w->proj;
    ddrop dr[RV_N_PROJ];
    for (int p = 0; p < RV_N_PROJ; p++)
        dr[p] = drop_of(g, a, l, p);

    if (rv_cuda_rmsnorm(c, la->u, g->wt, la->x_in, F32, w->input_norm, F32, n, D, m->norm_eps, la->rstd1) != 0 ||
        FWD(Q, la->u, g->wt, la->q, F32) != 0 || FWD(K, la->u, g->wt, la->k, F32) != 0 ||
        FWD(V, la->u, g->wt, la->v, F32) != 0 || rope_qkv(g, a, la) != 0 ||
        attention_forward(g, a, l, la, ib, &shape, n * QW) != 0)
        return -1;
    const size_t F = (size_t)m->ffn;
    if (FWD_RESIDUAL(O, O_IN(la, ib), la->x_in, la->x_mid) != 0 ||
        rv_cuda_rmsnorm(c, la->u2, g->wt, la->x_mid, F32, w->post_norm, F32, n, D, m->norm_eps, la->rstd2) != 0 ||
        FWD(GATE, la->u2, g->wt, la->gate, g->wt) != 0 || FWD(UP, la->u2, g->wt, la->up, g->wt) != 0 ||
        rv_cuda_swiglu(c, la->hmid, g->wt, la->gate, g->wt, la->up, g->wt, n * F) != 0 ||
        FWD_RESIDUAL(DOWN, la->hmid, la->x_mid, out) != 0)
        return -1;
    return 0;
}

static int pass_forward(rv_step_gpu *g, dpass *a, const dlink *ib)
{
    const rv_step_decoder *m = a->net->host;
    const size_t n = a->n, D = (size_t)m->hidden;
    if (rv_cuda_embedding(g->c, a->layers[0].x_in, F32, a->net->embed, g->wt, (size_t)m->vocab, D, a->d_ids, n) != 0)
        return -1;
    for (int l = 0; l < m->n_layers; l++)
        if (layer_forward(g, a, l, l + 1 < m->n_layers ? a->layers[l + 1].x_in : a->x_final, ib) != 0)
            return -1;
    if (rv_cuda_rmsnorm(g->c, a->h, F32, a->x_final, F32, a->net->final_norm, F32, n, D, m->norm_eps, a->rstd_f) != 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- backward */
/* dx: gradient at the layer output on entry, at its input on exit; dk, dv:
 * this layer's post-RoPE K/V gradients (pass A: already holding pass B's
 * in-batch contributions). */
static int layer_backward(rv_step_gpu *g, dpass *a, int l, float *dx, float *dk, float *dv, const dlink *ib, int fin)
{
    rv_cuda *c = g->c;
    const rv_step_decoder *m = a->net->host;
    const dlayer *w = &a->net->layers[l];
    const dacts *la = &a->layers[l];
    const dnet *net = a->net;
    const size_t n = a->n, D = (size_t)m->hidden, QW = (size_t)m->n_heads * m->head_dim, F = (size_t)m->ffn;
    const size_t KW = (size_t)m->n_kv_heads * m->head_dim, hd = (size_t)m->head_dim;
    const dproj *P = w->proj;
    rv_attn_shape shape = {a->B, a->L, m->n_heads, m->n_kv_heads, m->head_dim};
    ddrop dr[RV_N_PROJ];
    for (int p = 0; p < RV_N_PROJ; p++)
        dr[p] = drop_of(g, a, l, p);

    /* The scratch gradients dhf, dgate, dup, du and do_in are each written
     * first by a product or kernel that does not read them (fresh: beta 0),
     * so only dq, which both attentions' backwards add into, is zeroed. */
    if (dzero(c, g->dq, n * QW * 4) != 0)
        return -1;
    /* MLP: x_out = x_mid + down(silu(gate(u2)) * up(u2)), u2 = norm(x_mid) */
    if (BACK(DOWN, la->hmid, g->wt, dx, F32, g->dhf, 1) != 0 ||
        rv_cuda_swiglu_backward(c, la->gate, la->up, g->wt, g->dhf, F32, g->dgate, g->dup, g->wt, n * F, 0) != 0 ||
        BACK(GATE, la->u2, g->wt, g->dgate, g->wt, g->du, 1) != 0 ||
        BACK(UP, la->u2, g->wt, g->dup, g->wt, g->du, 0) != 0 ||
        rv_cuda_rmsnorm_backward(c, la->x_mid, F32, w->post_norm, F32, la->rstd2, g->du, dx, F32, NULL, n, D) != 0)
        return -1;
    /* attention: x_mid = x_in + o_proj(S_self + C) */
    if (BACK(O, O_IN(la, ib), g->wt, dx, F32, g->do_in, 1) != 0)
        return -1;
    /* the attention output's gradient in the operands' type (the output is stored in it) */
    const void *att_dout = g->do_in;
    if (g->wt != F32) {
        if (rv_cuda_convert(c, g->dob, g->wt, g->do_in, F32, n * QW) != 0)
            return -1;
        att_dout = g->dob;
    }
    if (ib) {
        const dacts *pa = &ib->pass_a->layers[l];
        if (rv_cuda_inbatch_attn_backward(c, ib->cfg, a->d_len, ib->w, ATT_Q(la), ATT_K(pa), ATT_V(pa), g->wt,
                                          la->ib_lse, la->ib_den, att_dout, g->dq, ib->dk_a[l], ib->dv_a[l], F32,
                                          ib->dw) != 0)
            return -1;
    }
    /* RoPE's backward on dq, dk; with bf16 storage each rotated straight
     * into yb as the bf16 output gradient its projection's backward takes
     * (proj_backward leaves yb alone when dy is bf16 already) */
    void *dqo = g->wt == F32 ? (void *)g->dq : g->yb, *dko = g->wt == F32 ? (void *)dk : g->yb;
    if (rv_cuda_causal_attn_backward(c, &shape, a->d_len, ATT_Q(la), ATT_K(la), ATT_V(la), la->attn, la->lse,
                                     att_dout, g->wt, g->dq, dk, dv, F32) != 0 ||
        rv_cuda_rope_to(c, dqo, g->wt, g->dq, F32, n, QW, (size_t)m->n_heads, hd, NULL, (size_t)a->L, net->cos_tab,
                        net->sin_tab, (size_t)net->rope_len, -1) != 0 ||
        BACK(Q, la->u, g->wt, dqo, g->wt, g->du, 1) != 0 ||
        rv_cuda_rope_to(c, dko, g->wt, dk, F32, n, KW, (size_t)m->n_kv_heads, hd, NULL, (size_t)a->L, net->cos_tab,
                        net->sin_tab, (size_t)net->rope_len, -1) != 0 ||
        BACK(K, la->u, g->wt, dko, g->wt, g->du, 0) != 0 || BACK(V, la->u, g->wt, dv, F32, g->du, 0) != 0 ||
        rv_cuda_rmsnorm_backward(c, la->x_in, F32, w->input_norm, F32, la->rstd1, g->du, dx, F32, NULL, n, D) != 0)
        return -1;
    return 0;
}

#undef FWD
#undef FWD_RESIDUAL
#undef BACK
#undef ATT_Q
#undef ATT_K
#undef ATT_V
#undef O_IN

/* dh: gradient at the final-normed output (NULL: none, pass A without the
 * dual loss); dk_seed/dv_seed: pass A's per-layer K/V gradients; fin: this
 * is the net's last backward pass of the final micro-batch (each layer's
 * adapter gradients are reported ready as they are finished). */
static int pass_backward(rv_step_gpu *g, dpass *a, const float *dh, float **dk_seed, float **dv_seed,
                         const dlink *ib, int fin)
{
    rv_cuda *c = g->c;
    const rv_step_decoder *m = a->net->host;
    const size_t n = a->n, D = (size_t)m->hidden, KW = (size_t)m->n_kv_heads * m->head_dim;
    if (dzero(c, g->dx, n * D * 4) != 0)
        return -1;
    if (dh && rv_cuda_rmsnorm_backward(c, a->x_final, F32, a->net->final_norm, F32, a->rstd_f, dh, g->dx, F32, NULL,
                                       n, D) != 0)
        return -1;
    for (int l = m->n_layers - 1; l >= 0; l--) {
        float *dk = g->dk0, *dv = g->dv0;
        if (dk_seed) {
            dk = dk_seed[l];
            dv = dv_seed[l];
        } else if (dzero(c, dk, n * KW * 4) != 0 || dzero(c, dv, n * KW * 4) != 0) {
            return -1;
        }
        /* recompute: the same forward again from the saved input, into the
         * shared set (its output, already the next layer's saved input, to
         * the scratch g->x); the same ops on the same data with the same
         * dropout keys give the same values */
        if (a->recompute && layer_forward(g, a, l, g->x, ib) != 0)
            return -1;
        if (layer_backward(g, a, l, g->dx, dk, dv, ib, fin) != 0)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the step */
static int upload_view(rv_step_gpu *g, int v, const int32_t *ids, const int *len, size_t n, int B, int vocab,
                       uint32_t *tmp, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab)
            return rv_error_set("revela step on cuda: %s token %zu: id %d outside the vocabulary (%d)", what, i,
                                (int)ids[i], vocab);
        tmp[i] = (uint32_t)ids[i];
    }
    return rv_cuda_upload(g->c, g->ids[v], tmp, n * sizeof *tmp) != 0 ||
                   rv_cuda_upload(g->c, g->len[v], len, (size_t)B * sizeof *len) != 0
               ? -1
               : 0;
}

static int download_opt(rv_cuda *c, float *dst, const float *src, size_t count)
{
    return dst ? rv_cuda_download(c, dst, src, count * sizeof(float)) : 0;
}

extern "C" int rv_step_gpu_step(rv_step_gpu *g, const rv_step_batch *batch, const rv_step_opts *opts,
                                const rv_step_dropout *dropout, rv_step_result *result)
{
    if (dropout && !(dropout->p >= 0 && dropout->p < 1))
        return rv_error_set("revela step on cuda: LoRA dropout must be in [0, 1), found %g", (double)dropout->p);
    if (g->final_done)   /* its tensors are (being) all-reduced: adding to them now would be lost or wrong */
        return rv_error_set("revela step on cuda: a micro-batch after the final one of the optimiser step "
                            "(rv_step_gpu_take_grads must come first)");
    /* fin: report each adapter gradient to the buckets as the backward
     * finishes it. Consumed here whatever happens: after a failure
     * take_grads still completes the collectives. */
    const int fin = g->buckets && g->final_next;
    g->final_next = 0;
    g->final_done = fin;
    rv_cuda *c = g->c;
    const rv_step_decoder *r = g->net[0].host, *lm = g->net[1].host;
    const int B = batch->batch, L = batch->seq_len;
    if (B < 2 || L < 1 || (size_t)B * L > (size_t)0x7fffffff)
        return rv_error_set("revela step on cuda: expected batch >= 2 and 1 <= batch*seq_len < 2^31, found %d x %d",
                            B, L);
    rv_attn_shape lm_shape = {B, L, lm->n_heads, lm->n_kv_heads, lm->head_dim};
    rv_attn_shape r_shape = {B, L, r->n_heads, r->n_kv_heads, r->head_dim};
    if (rv_attn_shape_check(&r_shape, batch->p_len) != 0 || rv_attn_shape_check(&r_shape, batch->q_len) != 0 ||
        rv_attn_shape_check(&lm_shape, batch->x_len) != 0)
        return rv_error_prefix("revela step on cuda");
    const size_t n = (size_t)B * L, BB = (size_t)B * B, DR = (size_t)r->hidden, DL = (size_t)lm->hidden;
    if (ensure_acts(g, B, n, opts->recompute != 0) != 0)
        return acts_failed(g, B, L, opts->recompute != 0);
    if (ensure_rope(g, &g->net[0], L) != 0 || ensure_rope(g, &g->net[1], L) != 0)
        return -1;

    uint32_t *tmp = (uint32_t *)malloc(n * sizeof *tmp);
    int32_t *targets = (int32_t *)malloc(n * sizeof *targets);
    int rc = -1;
    if (!tmp || !targets) {
        rv_error_set("revela step on cuda: out of host memory");
        goto done;
    }
    if (upload_view(g, 0, batch->p_ids, batch->p_len, n, B, r->vocab, tmp, "passage view") != 0 ||
        upload_view(g, 1, batch->q_ids, batch->q_len, n, B, r->vocab, tmp, "query view") != 0 ||
        upload_view(g, 2, batch->x_ids, batch->x_len, n, B, lm->vocab, tmp, "LM view") != 0)
        goto done;
    {
        size_t n_targets = rv_lm_targets(B, L, batch->x_ids, batch->x_len, targets);
        if (n_targets == 0) {
            rv_error_set("revela step on cuda: no target tokens (every chunk has length 1)");
            goto done;
        }
        if (rv_cuda_upload(c, g->targets, targets, n * sizeof *targets) != 0)
            goto done;
        dpass *pp = &g->pass[0], *pq = &g->pass[1], *pa = &g->pass[2], *pb = &g->pass[3];
        for (int i = 0; i < 4; i++) {   /* pass i = revela_step_ref.c's dropout pass number (P, Q, A, B) */
            dpass *a = &g->pass[i];
            a->B = B;
            a->L = L;
            a->n = n;
            a->drop_p = dropout && dropout->p > 0 ? dropout->p : 0.0f;
            a->drop_kept = a->drop_p > 0 ? 1.0f / (1.0f - a->drop_p) : 1.0f;
            a->drop_seed = a->drop_p > 0 ? dropout->seed : 0;
            a->drop_base = a->drop_p > 0 ? ((dropout->micro << 2) | (uint64_t)i) << 24 : 0;
            a->recompute = opts->recompute != 0;
        }
        pp->d_ids = g->ids[0];
        pp->d_len = g->len[0];
        pq->d_ids = g->ids[1];
        pq->d_len = g->len[1];
        pa->d_ids = pb->d_ids = g->ids[2];
        pa->d_len = pb->d_len = g->len[2];
        rv_inbatch_cfg ib_cfg;
        memset(&ib_cfg, 0, sizeof ib_cfg);
        ib_cfg.shape = lm_shape;
        ib_cfg.v_norm = opts->v_norm;
        ib_cfg.eps = opts->v_norm_eps;
        ib_cfg.skip_zero_weights = opts->skip_zero_weights;
        dlink ib = {&ib_cfg, g->W, pa, g->dk_a, g->dv_a, g->dW};

        /* 1. retriever on both views, EOS pooling + L2; 2. S, W */
        if (pass_forward(g, pp, NULL) != 0 || pass_forward(g, pq, NULL) != 0 ||
            rv_cuda_eos_pool_l2(c, g->p_emb, g->p_norm, pp->h, F32, B, L, (int)DR, pp->d_len) != 0 ||
            rv_cuda_eos_pool_l2(c, g->q_emb, g->q_norm, pq->h, F32, B, L, (int)DR, pq->d_len) != 0 ||
            rv_cuda_inbatch_weights_forward(c, B, (int)DR, g->q_emb, g->p_emb, opts->tau, opts->similarity, g->S,
                                            g->W) != 0)
            goto done;
        /* 3. LM pass A (keeps K/V), 4. pass B with in-batch attention */
        if (pass_forward(g, pa, NULL) != 0 || pass_forward(g, pb, &ib) != 0)
            goto done;
        /* 5. token-mean CE of pass B (and of pass A: reported, or added under dual_loss) */
        const float inv_t = (float)(1.0 / (double)n_targets);
        /* with bf16 storage the final-normed rows are narrowed to the head's type first */
        const void *ha = pa->h, *hb = pb->h;
        if (g->wt != F32) {
            if (rv_cuda_convert(c, g->xb, g->wt, pa->h, F32, n * DL) != 0 ||
                rv_cuda_convert(c, g->yb, g->wt, pb->h, F32, n * DL) != 0)
                goto done;
            ha = g->xb;
            hb = g->yb;
        }
        if (dzero(c, g->dh_a, n * DL * 4) != 0 || dzero(c, g->dh, n * DL * 4) != 0 ||
            rv_cuda_lm_head_ce(c, n, (int)DL, lm->vocab, ha, g->net[1].lm_head, g->wt, g->targets,
                               opts->dual_loss ? inv_t : 0.0f, g->loss + 1, opts->dual_loss ? g->dh_a : NULL, NULL,
                               F32, 0) != 0 ||
            rv_cuda_lm_head_ce(c, n, (int)DL, lm->vocab, hb, g->net[1].lm_head, g->wt, g->targets, inv_t, g->loss,
                               g->dh, NULL, F32, 0) != 0)
            goto done;
        /* 6. pass B backward (pass-A K/V gradients, dL/dW), 7. pass A */
        for (int l = 0; l < lm->n_layers; l++)
            if (dzero(c, g->dk_a[l], n * (size_t)lm->n_kv_heads * lm->head_dim * 4) != 0 ||
                dzero(c, g->dv_a[l], n * (size_t)lm->n_kv_heads * lm->head_dim * 4) != 0)
                goto done;
        /* pass A is the LM's last backward pass: its layers' adapters become final there */
        if (dzero(c, g->dW, BB * 4) != 0 || pass_backward(g, pb, g->dh, NULL, NULL, &ib, 0) != 0 ||
            pass_backward(g, pa, opts->dual_loss ? g->dh_a : NULL, g->dk_a, g->dv_a, NULL, fin) != 0)
            goto done;
        /* 8. W -> S -> embeddings, 9. retriever passes (the query pass, last, finalises the adapters) */
        if (dzero(c, g->dq_emb, (size_t)B * DR * 4) != 0 || dzero(c, g->dp_emb, (size_t)B * DR * 4) != 0 ||
            rv_cuda_inbatch_weights_backward(c, B, (int)DR, g->q_emb, g->p_emb, g->W, opts->tau, g->dW, g->dS,
                                             g->dq_emb, g->dp_emb) != 0 ||
            dzero(c, g->dh, n * DR * 4) != 0 ||
            rv_cuda_eos_pool_l2_backward(c, g->p_emb, g->p_norm, g->dp_emb, g->dh, F32, B, L, (int)DR,
                                         pp->d_len) != 0 ||
            pass_backward(g, pp, g->dh, NULL, NULL, NULL, 0) != 0 || dzero(c, g->dh, n * DR * 4) != 0 ||
            rv_cuda_eos_pool_l2_backward(c, g->q_emb, g->q_norm, g->dq_emb, g->dh, F32, B, L, (int)DR,
                                         pq->d_len) != 0 ||
            pass_backward(g, pq, g->dh, NULL, NULL, NULL, fin) != 0)
            goto done;
        double sums[2];
        if (rv_cuda_download(c, sums, g->loss, sizeof sums) != 0)   /* waits for the step */
            goto done;
        result->loss_plain = sums[1] / (double)n_targets;
        result->loss = sums[0] / (double)n_targets + (opts->dual_loss ? result->loss_plain : 0.0);
        result->activation_bytes = g->acts.bytes;
        result->n_targets = n_targets;
        if (download_opt(c, result->s, g->S, BB) != 0 || download_opt(c, result->w, g->W, BB) != 0 ||
            download_opt(c, result->dw, g->dW, BB) != 0 || download_opt(c, result->ds, g->dS, BB) != 0 ||
            download_opt(c, result->q_emb, g->q_emb, (size_t)B * DR) != 0 ||
            download_opt(c, result->p_emb, g->p_emb, (size_t)B * DR) != 0)
            goto done;
    }
    rc = 0;
done:
    free(tmp);
    free(targets);
    return rc;
}

/* ---------------------------------------------------------------- data parallelism */
/* The plan: every adapter tensor of both nets in the order the backward of
 * the final micro-batch finishes them — the LM's layers top-down (pass A),
 * then the retriever's top-down (the query pass). Within a layer the
 * backward finishes DOWN, GATE, UP, O, Q, K, V, but the tensors are listed
 * by descending address (DOWN B, DOWN A, UP B, ..., Q A): a layer is
 * reported complete within a few GEMMs either way, and this keeps the list
 * one descending run of memory, so buckets are whole ranges of the flat
 * array. Sizes include each tensor's padding (lora_pad: zeros, summed to
 * zeros), so consecutive tensors are exactly adjacent. */
static int plan_buckets(rv_step_gpu *g, rv_comm *comm, size_t bucket_bytes)
{
    size_t count = 0;
    for (int i = 0; i < 2; i++)
        for (int l = 0; l < g->net[i].host->n_layers; l++)
            for (int p = 0; p < RV_N_PROJ; p++)
                count += g->net[i].layers[l].proj[p].rank > 0 ? 2 : 0;
    rv_grad_tensor *t = (rv_grad_tensor *)calloc(count ? count : 1, sizeof *t);
    unsigned char *ready = (unsigned char *)calloc(count ? count : 1, 1);
    if (!t || !ready) {
        free(t);
        free(ready);
        return rv_error_set("revela step on cuda: out of host memory");
    }
    size_t k = 0;
    for (int i = 1; i >= 0; i--) {   /* LM, then retriever */
        dnet *d = &g->net[i];
        for (int l = d->host->n_layers - 1; l >= 0; l--)
            for (int p = RV_N_PROJ - 1; p >= 0; p--) {
                dproj *dp = &d->layers[l].proj[p];
                if (dp->rank <= 0)
                    continue;
                dp->ti_b = k;
                t[k++] = (rv_grad_tensor){dp->gb, lora_pad(g->wt, (size_t)dp->out * dp->rank)};
                dp->ti_a = k;
                t[k++] = (rv_grad_tensor){dp->ga, lora_pad(g->wt, (size_t)dp->rank * dp->in)};
            }
    }
    rv_grad_buckets *b = rv_grad_buckets_new(t, count, bucket_bytes, comm);
    free(t);
    /* the pure sum: rv-train scales by 1/grad_accum itself (grad_buckets.h) */
    if (!b || rv_grad_buckets_set_divisor(b, 1.0f) != 0) {
        rv_grad_buckets_free(b);
        free(ready);
        return rv_error_prefix("revela step on cuda: planning the gradient all-reduce");
    }
    g->buckets = b;
    g->ready = ready;
    g->n_tensors = count;
    g->n_ready = 0;
    g->comm = comm;
    return 0;
}

extern "C" int rv_step_gpu_set_comm_buckets(rv_step_gpu *g, rv_comm *comm, size_t bucket_bytes)
{
    if (g->final_done || g->n_ready)
        return rv_error_set("revela step on cuda: changing the communicator while the gradient all-reduce of a "
                            "final micro-batch is in flight (call rv_step_gpu_take_grads first)");
#ifndef RV_CUDA_EMULATE
    /* the accumulators are device memory: a host communicator can only be
     * the identity, which touches no memory */
    if (comm && !comm->device_memory && rv_comm_world_size(comm) > 1)
        return rv_error_set("revela step on cuda: the %s communicator works on host memory; the device step needs "
                            "one on device memory (NCCL) when the world is larger than 1",
                            comm->name);
#endif
    rv_grad_buckets_free(g->buckets);
    free(g->ready);
    g->buckets = NULL;
    g->ready = NULL;
    g->n_tensors = g->n_ready = 0;
    g->comm = NULL;
    g->final_next = g->final_done = 0;
    return comm ? plan_buckets(g, comm, bucket_bytes) : 0;
}

extern "C" int rv_step_gpu_set_comm(rv_step_gpu *g, rv_comm *comm) { return rv_step_gpu_set_comm_buckets(g, comm, 0); }

extern "C" int rv_step_gpu_mark_final(rv_step_gpu *g)
{
    if (g->final_done)
        return rv_error_set("revela step on cuda: mark_final after the final micro-batch (rv_step_gpu_take_grads "
                            "must come first)");
    g->final_next = g->buckets != NULL;   /* without a communicator there is nothing to overlap */
    return 0;
}

extern "C" int rv_step_gpu_allreduce_host(rv_step_gpu *g, float *buf, size_t n)
{
    if (!g->comm || n == 0)
        return 0;
    /* Collectives are matched by issue order: between a final micro-batch
     * (whose buckets are already issued) and take_grads, a rank with no
     * micro-batch this step would issue this sum before the buckets, the
     * others after them. */
    if (g->final_done || g->n_ready)
        return rv_error_set("revela step on cuda: allreduce_host between the final micro-batch and take_grads (the "
                            "gradient all-reduce is in flight; sum host values after take_grads)");
    if (!g->comm->device_memory)
        return rv_comm_allreduce_sum(g->comm, buf, n) == 0
                   ? 0
                   : rv_error_prefix("revela step on cuda: summing %zu host values (%s)", n, g->comm->name);
    if (n > g->host_sum_n) {
        rv_cuda_free(g->c, g->host_sum);
        g->host_sum_n = 0;
        if (!(g->host_sum = (float *)rv_cuda_alloc(g->c, n * sizeof(float))))
            return rv_error_prefix("revela step on cuda: staging %zu host values", n);
        g->host_sum_n = n;
    }
    /* upload and download are ordered on the step's stream, as the
     * collective is (the download waits for it) */
    if (rv_cuda_upload(g->c, g->host_sum, buf, n * sizeof(float)) != 0 ||
        rv_comm_allreduce_sum(g->comm, g->host_sum, n) != 0 ||
        rv_cuda_download(g->c, buf, g->host_sum, n * sizeof(float)) != 0)
        return rv_error_prefix("revela step on cuda: summing %zu host values (%s)", n, g->comm->name);
    return 0;
}

/* ---------------------------------------------------------------- the optimiser on the device */

/* One net's moments (or, with m == v == NULL, nothing) between the tool's
 * host arrays, laid out like its flat parameter array `params` (a tensor at
 * the offset of the decoder's lora_a / lora_b pointer from params), and the
 * packed device arrays, through the staging array. Pads stay zero. */
static int moments_transfer(rv_step_gpu *g, dnet *d, const float *params, float *m_host, float *v_host, int up)
{
    float *host[2] = {m_host, v_host}, *dev[2] = {d->m, d->v};
    for (int k = 0; k < 2; k++) {
        if (up && !host[k]) {   /* fresh moments */
            if (dzero(g->c, dev[k], d->n_lora * sizeof(float)) != 0)
                return -1;
            continue;
        }
        if (!up && rv_cuda_download(g->c, d->stage, dev[k], d->n_lora * sizeof(float)) != 0)
            return -1;
        stage_adapters(d, params, host[k], up);
        if (up && rv_cuda_upload(g->c, dev[k], d->stage, d->n_lora * sizeof(float)) != 0)
            return -1;
    }
    return 0;
}

/* Every adapter tensor of a net must lie inside the tool's parameter array
 * (its offsets are taken from it). */
static int check_params_base(const dnet *d, const float *params, const char *who)
{
    const rv_step_decoder *m = d->host;
    for (int l = 0; l < m->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++)
            if (d->layers[l].proj[p].rank > 0 &&
                (!params || m->layers[l].proj[p].lora_a < params || m->layers[l].proj[p].lora_b < params))
                return rv_error_set("revela step on cuda: optimiser state: the %s's layers.%d.%s adapter is not in "
                                    "its parameter array",
                                    who, l, rv_proj_names[p]);
    return 0;
}

extern "C" int rv_step_gpu_optim_upload(rv_step_gpu *g, const float *r_params, const float *r_m, const float *r_v,
                                        const float *l_params, const float *l_m, const float *l_v)
{
    const float *base[2] = {r_params, l_params}, *mh[2] = {r_m, l_m}, *vh[2] = {r_v, l_v};
    static const char *who[2] = {"retriever", "LM"};
    for (int i = 0; i < 2; i++)
        if (g->net[i].n_lora && check_params_base(&g->net[i], base[i], who[i]) != 0)
            return -1;
    if (!g->ss && !(g->ss = (double *)dev_take(g->c, &g->weights, sizeof(double), "the gradient norm")))
        return -1;
    for (int i = 0; i < 2; i++) {
        dnet *d = &g->net[i];
        if (d->n_lora == 0)
            continue;
        if (!d->m && (!(d->m = (float *)dev_take(g->c, &g->weights, d->n_lora * sizeof(float), "AdamW's moments")) ||
                      !(d->v = (float *)dev_take(g->c, &g->weights, d->n_lora * sizeof(float), "AdamW's moments"))))
            return -1;
        /* moments_transfer only reads the host arrays when up */
        if (moments_transfer(g, d, base[i], (float *)mh[i], (float *)vh[i], 1) != 0)
            return -1;
    }
    return rv_step_gpu_load_lora(g);
}

extern "C" int rv_step_gpu_optim_step(rv_step_gpu *g, const rv_step_gpu_optim *o, double *grad_norm)
{
    if (!g->ss)
        return rv_error_set("revela step on cuda: optim_step before optim_upload");
    if (o->t < 1 || !(o->grad_scale > 0))
        return rv_error_set("revela step on cuda: optim_step: bad step %ld or gradient scale %g", o->t,
                            (double)o->grad_scale);
    if (g->buckets && finish_allreduce(g) != 0)   /* the sum over the ranks, as take_grads */
        return -1;
    /* the host path's operations (cmd/rv-train.c host_update): mean, norm of
     * the retriever's (and unless frozen the LM's) gradients, clip, AdamW */
    if (dzero(g->c, g->ss, sizeof(double)) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        dnet *d = &g->net[i];
        if (d->n_lora == 0)
            continue;
        if (rv_cuda_scale(g->c, d->n_lora, d->grad, o->grad_scale) != 0 ||
            ((i == 0 || o->norm_lm) && rv_cuda_sum_squares(g->c, d->n_lora, d->grad, g->ss) != 0))
            return -1;
    }
    double ss = 0;
    if (rv_cuda_download(g->c, &ss, g->ss, sizeof ss) != 0)
        return -1;
    const double norm = sqrt(ss), clip = rv_clip_factor(norm, o->clip_norm);
    const int update[2] = {o->update_retriever, o->update_lm};
    for (int i = 0; i < 2; i++) {
        dnet *d = &g->net[i];
        if (d->n_lora == 0)
            continue;
        if ((clip != 1.0 && rv_cuda_scale(g->c, d->n_lora, d->grad, (float)clip) != 0) ||
            (update[i] && (rv_cuda_adamw_update(g->c, d->n_lora, d->lora, d->grad, d->m, d->v, o->t, &o->adam) != 0 ||
                           lora16_refresh(g, d) != 0)) ||
            dzero(g->c, d->grad, d->n_lora * sizeof(float)) != 0)
            return -1;
    }
    *grad_norm = norm;
    return 0;
}

extern "C" int rv_step_gpu_optim_download(rv_step_gpu *g, const float *r_params, float *r_m, float *r_v,
                                          const float *l_params, float *l_m, float *l_v)
{
    const float *base[2] = {r_params, l_params};
    float *mh[2] = {r_m, l_m}, *vh[2] = {r_v, l_v};
    static const char *who[2] = {"retriever", "LM"};
    if (!g->ss)
        return rv_error_set("revela step on cuda: optim_download before optim_upload");
    for (int i = 0; i < 2; i++) {
        dnet *d = &g->net[i];
        if (d->n_lora == 0)
            continue;
        if (check_params_base(d, base[i], who[i]) != 0 || !mh[i] || !vh[i])
            return rv_error_set("revela step on cuda: optim_download: no arrays for the %s's moments", who[i]);
        if (moments_transfer(g, d, base[i], mh[i], vh[i], 0) != 0 ||
            rv_cuda_download(g->c, d->stage, d->lora, d->n_lora * sizeof(float)) != 0)
            return -1;
        stage_adapters(d, NULL, NULL, 0);   /* the adapters into the decoders' host tensors */
    }
    return 0;
}
