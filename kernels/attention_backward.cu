/* attention_backward.cu — the backward of causal grouped-query attention
 * over a padded batch (cuda_ops.h rv_cuda_causal_attn_backward; the math
 * of rv_causal_attn_backward in lib/train_ops.c): query t of sequence b
 * sees keys s <= t with s < lengths[b]. With P = exp(scale q.k - lse)
 * recomputed from the forward's lse, D = dout . out per row,
 *   dS = P (dout . v - D) scale,  dq += dS k,  dk += dS^T q,  dv += P^T dout.
 * Kernels (no score matrix is stored, no atomics, so results are
 * bitwise reproducible):
 *   causal_bwd_D_kernel    one warp per (row, head): D into scratch [B, H, L]
 *   causal_bwd_dq_kernel   block = (16-row query tile, head, sequence), streams the
 *                          keys s <= last row through shared memory 32 at a time;
 *                          owns its dq rows
 *   causal_bwd_dkv_kernel  block = (16-key tile, kv head, sequence), loops over the
 *                          query heads of the group and the 32-row query tiles at or
 *                          after the first key; owns its dk/dv rows
 * Tile shapes and loaders: attn_tiles.cuh (fp32 CUDA-core code, head_dim <= 128).
 * bf16 q/k/v with head_dim a multiple of 16 up to 128: D comes from
 * causal_bwd_D_kernel, dq/dk/dv from the tensor-core kernels of
 * attention_tc.cu; every other case runs the fp32 kernels here, unchanged. */
#include "attention_tc.h"   /* rv_attn_tc_backward */
#include "attn_tiles.cuh"   /* ATT_*, att_tile_load, att_rows_*, att_smem_ready */

#include <math.h>

#define DKV_KR 4                          /* keys per warp in the dk/dv kernel */
#define DKV_KEYS (ATT_WARPS * DKV_KR)     /* keys per block */
#define DKV_QT 32                         /* query rows per tile: one per lane */
#define D_WARPS 4                         /* (row, head) pairs per block of the D kernel */

struct causal_dims {
    int B, L, H, Hkv, hd, rep;
    float scale;
};

/* ---------------------------------------------------------------- D = dout . out */
__global__ void __launch_bounds__(D_WARPS * 32)
    causal_bwd_D_kernel(causal_dims dm, const void *out, const void *dout, int qkv_t, float *Dbuf)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t pair = (size_t)blockIdx.x * D_WARPS + warp;   /* (b*L + t)*H + h */
    if (pair >= (size_t)dm.B * dm.L * dm.H)
        return;   /* no barrier or shuffle of other warps follows */
    const size_t h = pair % dm.H, bt = pair / dm.H, b = bt / dm.L, t = bt % dm.L;
    const size_t at = pair * dm.hd;
    float s = 0.0f;
    for (int d = lane; d < dm.hd; d += 32)
        s += rv_ld(dout, qkv_t, at + d) * rv_ld(out, qkv_t, at + d);
    s = rv_warp_sum(s);
    if (lane == 0)
        Dbuf[(b * dm.H + h) * dm.L + t] = s;
}

/* ---------------------------------------------------------------- dq */
__global__ void __launch_bounds__(ATT_THREADS)
    causal_bwd_dq_kernel(causal_dims dm, const int *lengths, const void *q, const void *k, const void *v,
                         const void *dout, int qkv_t, const float *lse, const float *Dbuf, void *dq, int grad_t)
{
    RV_DYN_SMEM(float, smem);
    const int hd = dm.hd, kp = hd + 1, L = dm.L;
    float *Qs = smem, *Gs = Qs + ATT_QT * hd, *Ks = Gs + ATT_QT * hd, *Vs = Ks + ATT_KT * kp;
    const int b = blockIdx.z, h = blockIdx.y, g = h / dm.rep, t0 = blockIdx.x * ATT_QT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t ldq = (size_t)dm.H * hd, ldk = (size_t)dm.Hkv * hd;
    const int nk = min(max(lengths[b], 0), L);
    const int q_valid = min(ATT_QT, L - t0);
    att_tile_load(Qs, hd, q, qkv_t, (size_t)b * L + t0, ldq, (size_t)h * hd, ATT_QT, q_valid, hd, NULL);
    att_tile_load(Gs, hd, dout, qkv_t, (size_t)b * L + t0, ldq, (size_t)h * hd, ATT_QT, q_valid, hd, NULL);
    const int key_end = min(min(t0 + ATT_QT, L), nk);   /* keys s <= last row of the tile, s < nk */

    float row_lse[ATT_R], row_D[ATT_R], dqa[ATT_R][ATT_NC];
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        int t = t0 + warp * ATT_R + r;
        size_t st = ((size_t)b * dm.H + h) * L + t;
        row_lse[r] = t < L ? lse[st] : 0.0f;
        row_D[r] = t < L ? Dbuf[st] : 0.0f;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            dqa[r][c] = 0.0f;
    }
    for (int k0 = 0; k0 < key_end; k0 += ATT_KT) {
        const int n_keys = min(ATT_KT, key_end - k0);
        __syncthreads();   /* the previous tile is no longer read (and Qs, Gs are loaded) */
        att_tile_load(Ks, kp, k, qkv_t, (size_t)b * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, NULL);
        att_tile_load(Vs, kp, v, qkv_t, (size_t)b * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, NULL);
        __syncthreads();
        float sc[ATT_R], gv[ATT_R], ds[ATT_R];
        att_rows_dot_key(sc, Qs, hd, warp, Ks + lane * kp, hd);
        att_rows_dot_key(gv, Gs, hd, warp, Vs + lane * kp, hd);
        const int key = k0 + lane;
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            const int t = t0 + warp * ATT_R + r;
            const bool valid = lane < n_keys && key <= t && t < L;
            float p = valid ? expf(sc[r] * dm.scale - row_lse[r]) : 0.0f;
            ds[r] = p * (gv[r] - row_D[r]) * dm.scale;
        }
        att_rows_accumulate(dqa, ds, Ks, kp, n_keys, lane, hd);
    }
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        int t = t0 + warp * ATT_R + r;
        if (t >= L)
            continue;
        size_t at = ((size_t)b * L + t) * ldq + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            if (c * 32 + lane < hd)
                rv_st(dq, grad_t, at + c * 32 + lane, rv_ld(dq, grad_t, at + c * 32 + lane) + dqa[r][c]);
    }
}

/* ---------------------------------------------------------------- dk, dv */
__global__ void __launch_bounds__(ATT_THREADS)
    causal_bwd_dkv_kernel(causal_dims dm, const int *lengths, const void *q, const void *k, const void *v,
                          const void *dout, int qkv_t, const float *lse, const float *Dbuf, void *dk, void *dv,
                          int grad_t)
{
    RV_DYN_SMEM(float, smem);
    const int hd = dm.hd, qp = hd + 1, L = dm.L;
    float *Ko = smem, *Vo = Ko + DKV_KEYS * hd, *Qs = Vo + DKV_KEYS * hd, *Gs = Qs + DKV_QT * qp;
    float *s_lse = Gs + DKV_QT * qp, *s_D = s_lse + DKV_QT;
    const int b = blockIdx.z, g = blockIdx.y, s0 = blockIdx.x * DKV_KEYS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t ldq = (size_t)dm.H * hd, ldk = (size_t)dm.Hkv * hd;
    const int nk = min(max(lengths[b], 0), L);
    if (s0 >= nk)
        return;   /* no real key in this tile: the whole block leaves before any barrier */
    const int k_valid = min(DKV_KEYS, nk - s0);
    att_tile_load(Ko, hd, k, qkv_t, (size_t)b * L + s0, ldk, (size_t)g * hd, DKV_KEYS, k_valid, hd, NULL);
    att_tile_load(Vo, hd, v, qkv_t, (size_t)b * L + s0, ldk, (size_t)g * hd, DKV_KEYS, k_valid, hd, NULL);

    float dka[DKV_KR][ATT_NC], dva[DKV_KR][ATT_NC];
#pragma unroll
    for (int kr = 0; kr < DKV_KR; kr++)
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            dka[kr][c] = dva[kr][c] = 0.0f;
    const int t_first = (s0 / DKV_QT) * DKV_QT;   /* rows t < s0 see none of these keys */
    for (int h = g * dm.rep; h < (g + 1) * dm.rep; h++) {
        const size_t st = ((size_t)b * dm.H + h) * L;
        for (int t0 = t_first; t0 < L; t0 += DKV_QT) {
            const int q_valid = min(DKV_QT, L - t0);
            __syncthreads();   /* the previous query tile is no longer read (and Ko/Vo are loaded) */
            att_tile_load(Qs, qp, q, qkv_t, (size_t)b * L + t0, ldq, (size_t)h * hd, DKV_QT, q_valid, hd, NULL);
            att_tile_load(Gs, qp, dout, qkv_t, (size_t)b * L + t0, ldq, (size_t)h * hd, DKV_QT, q_valid, hd, NULL);
            if (threadIdx.x < DKV_QT) {
                int tt = threadIdx.x;
                bool ok = tt < q_valid;
                s_lse[tt] = ok ? lse[st + t0 + tt] : 0.0f;
                s_D[tt] = ok ? Dbuf[st + t0 + tt] : 0.0f;
            }
            __syncthreads();
            const int t = t0 + lane;   /* lane = query row */
#pragma unroll
            for (int kr = 0; kr < DKV_KR; kr++) {
                const int key = warp * DKV_KR + kr;
                if (key >= k_valid)
                    continue;   /* warp-uniform */
                float sc = 0.0f, gv = 0.0f;
                for (int d = 0; d < hd; d++) {
                    sc += Qs[lane * qp + d] * Ko[key * hd + d];
                    gv += Gs[lane * qp + d] * Vo[key * hd + d];
                }
                const bool valid = lane < q_valid && s0 + key <= t;
                float p = valid ? expf(sc * dm.scale - s_lse[lane]) : 0.0f;
                float ds = p * (gv - s_D[lane]) * dm.scale;
                for (int tt = 0; tt < q_valid; tt++) {
                    float dst = rv_shfl(ds, tt), pt = rv_shfl(p, tt);
#pragma unroll
                    for (int c = 0; c < ATT_NC; c++)
                        if (c * 32 + lane < hd) {
                            dka[kr][c] += dst * Qs[tt * qp + c * 32 + lane];
                            dva[kr][c] += pt * Gs[tt * qp + c * 32 + lane];
                        }
                }
            }
        }
    }
#pragma unroll
    for (int kr = 0; kr < DKV_KR; kr++) {
        const int key = warp * DKV_KR + kr;
        if (key >= k_valid)
            continue;
        size_t at = ((size_t)b * L + s0 + key) * ldk + (size_t)g * hd;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++) {
            int d = c * 32 + lane;
            if (d >= hd)
                continue;
            if (dk)
                rv_st(dk, grad_t, at + d, rv_ld(dk, grad_t, at + d) + dka[kr][c]);
            if (dv)
                rv_st(dv, grad_t, at + d, rv_ld(dv, grad_t, at + d) + dva[kr][c]);
        }
    }
}

/* ---------------------------------------------------------------- host side */
extern "C" int rv_cuda_causal_attn_backward(rv_cuda *c, const rv_attn_shape *s, const int *lengths, const void *q,
                                            const void *k, const void *v, const void *out, const float *lse,
                                            const void *dout, rv_wtype qkv_t, void *dq, void *dk, void *dv,
                                            rv_wtype grad_t)
{
    RV_PROFILE(c, "causal_attention_backward");
    if (s->batch <= 0 || s->seq_len <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0)
        return rv_error_set("cuda causal_attn_backward: expected positive batch, seq_len, heads, kv heads and "
                            "head_dim, found %d, %d, %d, %d, %d", s->batch, s->seq_len, s->n_heads, s->n_kv_heads,
                            s->head_dim);
    if (s->n_heads % s->n_kv_heads != 0)
        return rv_error_set("cuda causal_attn_backward: n_heads (%d) is not a multiple of n_kv_heads (%d)",
                            s->n_heads, s->n_kv_heads);
    if (s->head_dim > ATT_MAX_HD)
        return rv_error_set("cuda causal_attn_backward: expected head_dim <= %d, found %d", ATT_MAX_HD, s->head_dim);
    if (s->batch > 65535 || s->n_heads > 65535)
        return rv_error_set("cuda causal_attn_backward: expected batch and n_heads <= 65535, found %d and %d",
                            s->batch, s->n_heads);
    if ((double)s->batch * s->seq_len * s->n_heads * s->head_dim > 2e9)
        return rv_error_set("cuda causal_attn_backward: %d x %d x %d x %d values exceed int indexing", s->batch,
                            s->seq_len, s->n_heads, s->head_dim);
    if (!rv_wtype_valid(qkv_t) || !rv_wtype_valid(grad_t))
        return rv_error_set("cuda causal_attn_backward: unknown storage type");
    if (!dq && !dk && !dv)
        return 0;
    causal_dims dm = {s->batch, s->seq_len, s->n_heads, s->n_kv_heads, s->head_dim, s->n_heads / s->n_kv_heads,
                      (float)(1.0 / sqrt((double)s->head_dim))};
    size_t n_rows = (size_t)dm.B * dm.H * dm.L;
    float *Dbuf = (float *)rv_cuda_scratch(c, n_rows * sizeof(float));
    if (!Dbuf)
        return -1;
    RV_LAUNCH(causal_bwd_D_kernel, (unsigned)((n_rows + D_WARPS - 1) / D_WARPS), D_WARPS * 32, 0, c->stream, dm, out,
              dout, (int)qkv_t, Dbuf);
    RV_LAUNCH_CHECK("causal_bwd_D_kernel");
    if (att_tc_usable(qkv_t, (size_t)dm.hd))
        return rv_attn_tc_backward(c, s, lengths, q, k, v, dout, lse, Dbuf, dq, dk, dv, grad_t);
    if (dq) {
        size_t smem = sizeof(float) * (2 * (size_t)ATT_QT * dm.hd + 2 * (size_t)ATT_KT * (dm.hd + 1));
        if (att_smem_ready(c, causal_bwd_dq_kernel, smem, "causal_bwd_dq_kernel") != 0)
            return -1;
        dim3 grid((unsigned)((dm.L + ATT_QT - 1) / ATT_QT), (unsigned)dm.H, (unsigned)dm.B);
        RV_LAUNCH(causal_bwd_dq_kernel, grid, ATT_THREADS, smem, c->stream, dm, lengths, q, k, v, dout, (int)qkv_t,
                  lse, Dbuf, dq, (int)grad_t);
        RV_LAUNCH_CHECK("causal_bwd_dq_kernel");
    }
    if (dk || dv) {
        size_t smem = sizeof(float) * (2 * (size_t)DKV_KEYS * dm.hd + 2 * (size_t)DKV_QT * (dm.hd + 1) + 2 * DKV_QT);
        if (att_smem_ready(c, causal_bwd_dkv_kernel, smem, "causal_bwd_dkv_kernel") != 0)
            return -1;
        dim3 grid((unsigned)((dm.L + DKV_KEYS - 1) / DKV_KEYS), (unsigned)dm.Hkv, (unsigned)dm.B);
        RV_LAUNCH(causal_bwd_dkv_kernel, grid, ATT_THREADS, smem, c->stream, dm, lengths, q, k, v, dout, (int)qkv_t,
                  lse, Dbuf, dk, dv, (int)grad_t);
        RV_LAUNCH_CHECK("causal_bwd_dkv_kernel");
    }
    return 0;
}
