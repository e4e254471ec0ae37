/* attention.cu — causal grouped-query self-attention on the device
 * (cuda_ops.h: rv_cuda_attention_causal for packed sequences, as
 * rv_op_attention_causal; rv_cuda_causal_attn_forward for a padded batch
 * with key lengths and saved log-sum-exp, as rv_causal_attn_forward).
 * One block per (query tile of 16 rows, head, sequence); keys stream
 * through shared memory 32 at a time with an online softmax, so no score
 * matrix is stored. Tile shapes and loaders: attn_tiles.cuh.
 * bf16 q/k/v with head_dim a multiple of 16 up to 128 go to the tensor-core
 * kernel of attention_tc.cu instead (launch_causal); these fp32 CUDA-core
 * kernels serve every other case, unchanged. */
#include "attention_tc.h"   /* rv_attn_tc_forward */
#include "attn_tiles.cuh"   /* ATT_*, att_tile_load, att_smem_ready */

#include <math.h>

#define MAX_GRID_Z 65535

/* Sequence s (of this launch, seq0 + blockIdx.z overall): with seq_off,
 * rows seq_off[s] .. seq_off[s+1]-1 and every earlier row of the sequence
 * as keys; without, rows s*seq_len .. +seq_len-1 with keys < lengths[s]. */
__global__ void __launch_bounds__(ATT_THREADS)
    causal_attn_kernel(void *out, int out_t, size_t out_stride, const void *q, size_t q_stride, const void *k,
                       const void *v, size_t kv_stride, int qkv_t, const int *seq_off, const int *lengths, int seq_len,
                       int seq0, int n_heads, int rep, int hd, float scale, float *lse)
{
    RV_DYN_SMEM(float, smem);
    float *Qs = smem, *Ks = Qs + ATT_QT * hd, *Vs = Ks + ATT_KT * (hd + 1);
    const int s = seq0 + (int)blockIdx.z, h = blockIdx.y, g = h / rep, kp = hd + 1;
    const att_seq sq = att_seq_rows(seq_off, lengths, seq_len, s);
    const int base = sq.base, n_rows = sq.n_rows, nk = sq.nk;
    const int t0 = blockIdx.x * ATT_QT;
    if (t0 >= n_rows)
        return;   /* the whole block leaves together, before any barrier */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    att_tile_load(Qs, hd, q, qkv_t, (size_t)base + t0, q_stride, (size_t)h * hd, ATT_QT, min(ATT_QT, n_rows - t0),
                  hd, NULL);
    const int key_end = min(min(t0 + ATT_QT, n_rows), nk);   /* keys s <= last row and s < nk */

    float m[ATT_R], l[ATT_R], acc[ATT_R][ATT_NC];
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            acc[r][c] = 0.0f;
    }
    for (int k0 = 0; k0 < key_end; k0 += ATT_KT) {
        const int n_keys = min(ATT_KT, key_end - k0);
        __syncthreads();   /* the previous tile is no longer read (and Qs is loaded) */
        att_tile_load(Ks, kp, k, qkv_t, (size_t)base + k0, kv_stride, (size_t)g * hd, ATT_KT, n_keys, hd, NULL);
        att_tile_load(Vs, kp, v, qkv_t, (size_t)base + k0, kv_stride, (size_t)g * hd, ATT_KT, n_keys, hd, NULL);
        __syncthreads();
        float sc[ATT_R];
        att_rows_dot_key(sc, Qs, hd, warp, Ks + lane * kp, hd);
        const int key = k0 + lane;
        float p[ATT_R];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            const int t = t0 + warp * ATT_R + r;
            bool valid = lane < n_keys && key <= t;
            float x = valid ? sc[r] * scale : -INFINITY;
            float mn = fmaxf(m[r], rv_warp_max(x));
            p[r] = valid ? expf(x - mn) : 0.0f;
            float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - mn);
            l[r] = l[r] * corr + rv_warp_sum(p[r]);
            m[r] = mn;
#pragma unroll
            for (int c = 0; c < ATT_NC; c++)
                acc[r][c] *= corr;
        }
        att_rows_accumulate(acc, p, Vs, kp, n_keys, lane, hd);
    }
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        const int t = t0 + warp * ATT_R + r;
        if (t >= n_rows)
            continue;
        float inv = 1.0f / l[r];
        size_t o = (size_t)(base + t) * out_stride + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            if (c * 32 + lane < hd)
                rv_st(out, out_t, o + c * 32 + lane, acc[r][c] * inv);
        if (lse && lane == 0)
            lse[((size_t)s * n_heads + h) * seq_len + t] = m[r] + logf(l[r]);
    }
}

static size_t causal_smem_bytes(int hd) { return sizeof(float) * ((size_t)ATT_QT * hd + 2 * (size_t)ATT_KT * (hd + 1)); }

static int check_heads(size_t n_heads, size_t n_kv_heads, size_t head_dim, const char *what)
{
    if (n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 || n_heads > MAX_GRID_Z)
        return rv_error_set("cuda %s: expected n_heads a multiple of n_kv_heads (both >= 1, n_heads <= %d), found "
                            "%zu and %zu", what, MAX_GRID_Z, n_heads, n_kv_heads);
    if (head_dim == 0 || head_dim > ATT_MAX_HD)
        return rv_error_set("cuda %s: expected head_dim 1..%d, found %zu", what, ATT_MAX_HD, head_dim);
    return 0;
}

/* Launches in slices of at most MAX_GRID_Z sequences (the grid's z limit). */
static int launch_causal(rv_cuda *c, void *out, rv_wtype out_t, size_t out_stride, const void *q, size_t q_stride,
                         const void *k, const void *v, size_t kv_stride, rv_wtype qkv_t, const int *seq_off,
                         const int *lengths, int seq_len, size_t n_seqs, size_t max_rows, size_t n_heads,
                         size_t n_kv_heads, size_t hd, float *lse)
{
    if (!rv_wtype_valid(qkv_t) || !rv_wtype_valid(out_t))
        return rv_error_set("cuda attention: unknown storage type");
    if (att_tc_usable(qkv_t, hd))
        return rv_attn_tc_forward(c, out, out_t, out_stride, q, q_stride, k, v, kv_stride, seq_off, lengths, seq_len,
                                  n_seqs, max_rows, n_heads, n_kv_heads, hd, lse);
    size_t smem = causal_smem_bytes((int)hd);
    if (att_smem_ready(c, causal_attn_kernel, smem, "causal_attn_kernel") != 0)
        return -1;
    size_t tiles = (max_rows + ATT_QT - 1) / ATT_QT;
    if (tiles > 0x7fffffffu)
        return rv_error_set("cuda attention: %zu rows are too many", max_rows);
    float scale = 1.0f / sqrtf((float)hd);
    for (size_t s0 = 0; s0 < n_seqs; s0 += MAX_GRID_Z) {
        unsigned nz = (unsigned)(n_seqs - s0 < MAX_GRID_Z ? n_seqs - s0 : MAX_GRID_Z);
        dim3 grid((unsigned)tiles, (unsigned)n_heads, nz);
        RV_LAUNCH(causal_attn_kernel, grid, ATT_THREADS, smem, c->stream, out, (int)out_t, out_stride, q, q_stride, k,
                  v, kv_stride, (int)qkv_t, seq_off, lengths, seq_len, (int)s0, (int)n_heads,
                  (int)(n_heads / n_kv_heads), (int)hd, scale, lse);
        RV_LAUNCH_CHECK("causal_attn_kernel");
    }
    return 0;
}

extern "C" int rv_cuda_attention_causal(rv_cuda *c, void *out, rv_wtype out_t, size_t out_stride, const void *q,
                                        size_t q_stride, const void *k, const void *v, size_t kv_stride,
                                        rv_wtype qkv_t, size_t n_seqs, const int *seq_off, size_t max_len,
                                        size_t n_heads, size_t n_kv_heads, size_t head_dim)
{
    RV_PROFILE(c, "causal_attention");
    if (check_heads(n_heads, n_kv_heads, head_dim, "attention") != 0)
        return -1;
    if (n_heads * head_dim > q_stride || n_heads * head_dim > out_stride || n_kv_heads * head_dim > kv_stride)
        return rv_error_set("cuda attention: row strides %zu/%zu/%zu are narrower than the heads", q_stride,
                            out_stride, kv_stride);
    if (n_seqs == 0 || max_len == 0)
        return 0;
    if (max_len > 0x7fffffffu || n_seqs > 0x7fffffffu)
        return rv_error_set("cuda attention: %zu sequences of up to %zu rows exceed int indexing", n_seqs, max_len);
    return launch_causal(c, out, out_t, out_stride, q, q_stride, k, v, kv_stride, qkv_t, seq_off, NULL, 0, n_seqs,
                         max_len, n_heads, n_kv_heads, head_dim, NULL);
}

extern "C" int rv_cuda_causal_attn_forward(rv_cuda *c, const rv_attn_shape *s, const int *lengths, const void *q,
                                           const void *k, const void *v, rv_wtype qkv_t, void *out, rv_wtype out_t,
                                           float *lse)
{
    RV_PROFILE(c, "causal_attention");
    if (s->batch <= 0 || s->seq_len <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0)
        return rv_error_set("cuda causal_attn: expected positive batch, seq_len, heads, kv heads and head_dim, "
                            "found %d, %d, %d, %d, %d", s->batch, s->seq_len, s->n_heads, s->n_kv_heads, s->head_dim);
    if (check_heads((size_t)s->n_heads, (size_t)s->n_kv_heads, (size_t)s->head_dim, "causal_attn") != 0)
        return -1;
    if ((size_t)s->batch * (size_t)s->seq_len > 0x7fffffffu)
        return rv_error_set("cuda causal_attn: %d x %d rows exceed int indexing", s->batch, s->seq_len);
    size_t ldq = (size_t)s->n_heads * s->head_dim, ldk = (size_t)s->n_kv_heads * s->head_dim;
    return launch_causal(c, out, out_t, ldq, q, ldq, k, v, ldk, qkv_t, NULL, lengths, s->seq_len, (size_t)s->batch,
                         (size_t)s->seq_len, (size_t)s->n_heads, (size_t)s->n_kv_heads, (size_t)s->head_dim, lse);
}
