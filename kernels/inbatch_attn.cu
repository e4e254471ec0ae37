/* inbatch_attn.cu — the Revela in-batch attention on the device, forward
 * and backward (cuda_ops.h; the math and layouts are lib/inbatch_attn.h's):
 * for query chunk i, head h and query row t, every key chunk j gets its own
 * non-causal softmax over the real keys of j, A = softmax(Q_i[t] K_j^T /
 * sqrt(d)); b = A V_j; with V-norm b~ = b / (sum_s A_s ||V_j[s]|| + eps);
 * C_i[t] = sum_j W_ij b~_ij[t].
 *
 * Kernels (the B x B x H x L x L scores are never stored):
 *   inbatch_fwd_kernel     block = (query tile, head, chunk i), loops over j with an
 *                          online softmax over 32-key tiles; keeps lse and the V-norm
 *                          denominator per (i, j, h, t)
 *   inbatch_bwd_dq_kernel  same blocks: pass 1 recomputes b_ij and n_ij, pass 2 the
 *                          probabilities; owns dq rows; writes per-row D, dn and
 *                          G.b/den to scratch for the other two
 *   inbatch_bwd_dkv_kernel block = (key tile, kv head, chunk j): loops over (i, h in the
 *                          kv group, 32-row query tiles); owns dk/dv rows
 *   inbatch_dw_kernel      dw_ij += sum over (h, t) in a fixed order
 * No atomics, so results are bitwise reproducible. Backward notation (per
 * pair, head, row): P = exp(s - lse), G = dout, gb = G.b, f = W/den, dn =
 * -W gb/den^2 (V-norm) else 0, dA_s = f G.V_s + dn ||V_s||, D = sum_s P dA_s
 * = f gb + dn n, dS = P (dA - D) / sqrt(d); dq += dS K, dk += dS^T Q,
 * dv += (P f)^T G + (P^T dn) V / ||V||, dw += gb / den.
 *
 * Dispatch: with q, k, v (and dout) in bf16 and head_dim a multiple of 16
 * up to 128, the forward and the backward's dq and dk/dv kernels are the
 * tensor-core ones of inbatch_attn_tc.cu (same statistics and scratch; dw
 * stays inbatch_dw_kernel). Every other call runs the fp32 kernels below. */
#include "attn_tiles.cuh"   /* ATT_*, att_tile_load, att_smem_ready, att_rows_dot_key, att_rows_accumulate */
#include "inbatch_attn_tc.h"   /* inbatch_dims, ibtc_forward, ibtc_backward */

#include <math.h>

#define DKV_KR 4                          /* keys per warp in the dk/dv kernel */
#define DKV_KEYS (ATT_WARPS * DKV_KR)     /* keys per block */
#define DKV_QT 32                         /* query rows per tile: one per lane */

/* ---------------------------------------------------------------- forward */
__global__ void __launch_bounds__(ATT_THREADS)
    inbatch_fwd_kernel(inbatch_dims dm, const float *w, const int *lengths, const void *q, const void *k,
                       const void *v, int qkv_t, void *out, int out_t, float *lse, float *denom)
{
    RV_DYN_SMEM(float, smem);
    const int hd = dm.hd, kp = hd + 1, B = dm.B, L = dm.L, H = dm.H;
    float *Qs = smem, *Ks = Qs + ATT_QT * hd, *Vs = Ks + ATT_KT * kp, *vn = Vs + ATT_KT * kp;
    const int i = blockIdx.z, h = blockIdx.y, g = h / dm.rep, t0 = blockIdx.x * ATT_QT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t ldq = (size_t)H * hd, ldk = (size_t)dm.Hkv * hd;
    att_tile_load(Qs, hd, q, qkv_t, (size_t)i * L + t0, ldq, (size_t)h * hd, ATT_QT, min(ATT_QT, L - t0), hd, NULL);

    float o[ATT_R][ATT_NC];
#pragma unroll
    for (int r = 0; r < ATT_R; r++)
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            o[r][c] = 0.0f;

    for (int j = 0; j < B; j++) {
        const float wij = w[i * B + j];
        const size_t st = (((size_t)i * B + j) * H + h) * L;
        if (dm.skip_zero && wij == 0.0f) {
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                int t = t0 + warp * ATT_R + r;
                if (lane == 0 && t < L) {
                    lse[st + t] = 0.0f;
                    denom[st + t] = 1.0f;
                }
            }
            continue;
        }
        const int nk = min(max(lengths[j], 0), L);
        float m[ATT_R], l[ATT_R], nl[ATT_R], acc[ATT_R][ATT_NC];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            m[r] = -INFINITY;
            l[r] = nl[r] = 0.0f;
#pragma unroll
            for (int c = 0; c < ATT_NC; c++)
                acc[r][c] = 0.0f;
        }
        for (int k0 = 0; k0 < nk; k0 += ATT_KT) {
            const int n_keys = min(ATT_KT, nk - k0);
            __syncthreads();   /* the previous tile is no longer read (and Qs is loaded) */
            att_tile_load(Ks, kp, k, qkv_t, (size_t)j * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, NULL);
            att_tile_load(Vs, kp, v, qkv_t, (size_t)j * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, vn);
            __syncthreads();
            float sc[ATT_R], p[ATT_R];
            att_rows_dot_key(sc, Qs, hd, warp, Ks + lane * kp, hd);
            const bool valid = lane < n_keys;
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                float x = valid ? sc[r] * dm.scale : -INFINITY;
                float mn = fmaxf(m[r], rv_warp_max(x));
                p[r] = valid ? expf(x - mn) : 0.0f;
                float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - mn);
                l[r] = l[r] * corr + rv_warp_sum(p[r]);
                nl[r] = nl[r] * corr + p[r] * vn[lane];   /* lane-partial sum of p ||V|| */
                m[r] = mn;
#pragma unroll
                for (int c = 0; c < ATT_NC; c++)
                    acc[r][c] *= corr;
            }
            att_rows_accumulate(acc, p, Vs, kp, n_keys, lane, hd);
        }
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            float n = rv_warp_sum(nl[r]) / l[r];
            float den = dm.v_norm ? n + dm.eps : 1.0f;
            float f = wij / (den * l[r]);
#pragma unroll
            for (int c = 0; c < ATT_NC; c++)
                o[r][c] += f * acc[r][c];
            int t = t0 + warp * ATT_R + r;
            if (lane == 0 && t < L) {
                lse[st + t] = m[r] + logf(l[r]);
                denom[st + t] = den;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        int t = t0 + warp * ATT_R + r;
        if (t >= L)
            continue;
        size_t at = ((size_t)i * L + t) * ldq + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            if (c * 32 + lane < hd)
                rv_st(out, out_t, at + c * 32 + lane, o[r][c]);
    }
}

/* ---------------------------------------------------------------- backward: dq, per-row statistics */
__global__ void __launch_bounds__(ATT_THREADS)
    inbatch_bwd_dq_kernel(inbatch_dims dm, const float *w, const int *lengths, const void *q, const void *k,
                          const void *v, const void *dout, int qkv_t, const float *lse, const float *denom, void *dq,
                          int grad_t, float *Dbuf, float *dnbuf, float *gbuf)
{
    RV_DYN_SMEM(float, smem);
    const int hd = dm.hd, kp = hd + 1, B = dm.B, L = dm.L, H = dm.H;
    float *Qs = smem, *Gs = Qs + ATT_QT * hd, *Ks = Gs + ATT_QT * hd, *Vs = Ks + ATT_KT * kp, *vn = Vs + ATT_KT * kp;
    const int i = blockIdx.z, h = blockIdx.y, g = h / dm.rep, t0 = blockIdx.x * ATT_QT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t ldq = (size_t)H * hd, ldk = (size_t)dm.Hkv * hd;
    const int q_valid = min(ATT_QT, L - t0);
    att_tile_load(Qs, hd, q, qkv_t, (size_t)i * L + t0, ldq, (size_t)h * hd, ATT_QT, q_valid, hd, NULL);
    att_tile_load(Gs, hd, dout, qkv_t, (size_t)i * L + t0, ldq, (size_t)h * hd, ATT_QT, q_valid, hd, NULL);

    float dqa[ATT_R][ATT_NC];
#pragma unroll
    for (int r = 0; r < ATT_R; r++)
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            dqa[r][c] = 0.0f;

    for (int j = 0; j < B; j++) {
        const float wij = w[i * B + j];
        if (dm.skip_zero && wij == 0.0f)
            continue;
        const size_t st = (((size_t)i * B + j) * H + h) * L;
        const int nk = min(max(lengths[j], 0), L);
        float row_lse[ATT_R], row_den[ATT_R];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            int t = t0 + warp * ATT_R + r;
            row_lse[r] = t < L ? lse[st + t] : 0.0f;
            row_den[r] = t < L ? denom[st + t] : 1.0f;
        }
        /* pass 1: b = P V and n = P ||V|| */
        float acc[ATT_R][ATT_NC], nl[ATT_R];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            nl[r] = 0.0f;
#pragma unroll
            for (int c = 0; c < ATT_NC; c++)
                acc[r][c] = 0.0f;
        }
        for (int k0 = 0; k0 < nk; k0 += ATT_KT) {
            const int n_keys = min(ATT_KT, nk - k0);
            __syncthreads();
            att_tile_load(Ks, kp, k, qkv_t, (size_t)j * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, NULL);
            att_tile_load(Vs, kp, v, qkv_t, (size_t)j * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, vn);
            __syncthreads();
            float sc[ATT_R], p[ATT_R];
            att_rows_dot_key(sc, Qs, hd, warp, Ks + lane * kp, hd);
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                p[r] = lane < n_keys ? expf(sc[r] * dm.scale - row_lse[r]) : 0.0f;
                nl[r] += p[r] * vn[lane];
            }
            att_rows_accumulate(acc, p, Vs, kp, n_keys, lane, hd);
        }
        float f[ATT_R], dn[ATT_R], D[ATT_R];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            float gb = 0.0f;
#pragma unroll
            for (int c = 0; c < ATT_NC; c++)
                if (c * 32 + lane < hd)
                    gb += Gs[(warp * ATT_R + r) * hd + c * 32 + lane] * acc[r][c];
            gb = rv_warp_sum(gb);
            float n = rv_warp_sum(nl[r]), den = row_den[r];
            f[r] = wij / den;
            dn[r] = dm.v_norm ? -wij * gb / (den * den) : 0.0f;
            D[r] = f[r] * gb + dn[r] * n;
            int t = t0 + warp * ATT_R + r;
            if (lane == 0 && t < L) {
                gbuf[st + t] = gb / den;
                Dbuf[st + t] = D[r];
                dnbuf[st + t] = dn[r];
            }
        }
        if (wij == 0.0f)
            continue;   /* nothing reaches q, k or v through a zero weight */
        /* pass 2: dS and dq */
        for (int k0 = 0; k0 < nk; k0 += ATT_KT) {
            const int n_keys = min(ATT_KT, nk - k0);
            __syncthreads();
            att_tile_load(Ks, kp, k, qkv_t, (size_t)j * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, NULL);
            att_tile_load(Vs, kp, v, qkv_t, (size_t)j * L + k0, ldk, (size_t)g * hd, ATT_KT, n_keys, hd, vn);
            __syncthreads();
            float sc[ATT_R], gv[ATT_R], ds[ATT_R];
            att_rows_dot_key(sc, Qs, hd, warp, Ks + lane * kp, hd);
            att_rows_dot_key(gv, Gs, hd, warp, Vs + lane * kp, hd);
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                float p = lane < n_keys ? expf(sc[r] * dm.scale - row_lse[r]) : 0.0f;
                float da = f[r] * gv[r] + dn[r] * vn[lane];
                ds[r] = p * (da - D[r]) * dm.scale;
            }
            att_rows_accumulate(dqa, ds, Ks, kp, n_keys, lane, hd);
        }
    }
    if (!dq)
        return;
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        int t = t0 + warp * ATT_R + r;
        if (t >= L)
            continue;
        size_t at = ((size_t)i * L + t) * ldq + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            if (c * 32 + lane < hd)
                rv_st(dq, grad_t, at + c * 32 + lane, rv_ld(dq, grad_t, at + c * 32 + lane) + dqa[r][c]);
    }
}

/* ---------------------------------------------------------------- backward: dk, dv */
__global__ void __launch_bounds__(ATT_THREADS)
    inbatch_bwd_dkv_kernel(inbatch_dims dm, const float *w, const int *lengths, const void *q, const void *k,
                           const void *v, const void *dout, int qkv_t, const float *lse, const float *denom,
                           const float *Dbuf, const float *dnbuf, void *dk, void *dv, int grad_t)
{
    RV_DYN_SMEM(float, smem);
    const int hd = dm.hd, qp = hd + 1, B = dm.B, L = dm.L, H = dm.H;
    float *Ko = smem, *Vo = Ko + DKV_KEYS * hd, *vno = Vo + DKV_KEYS * hd, *Qs = vno + DKV_KEYS;
    float *Gs = Qs + DKV_QT * qp, *s_lse = Gs + DKV_QT * qp, *s_D = s_lse + DKV_QT, *s_dn = s_D + DKV_QT,
          *s_f = s_dn + DKV_QT;
    const int j = blockIdx.z, g = blockIdx.y, s0 = blockIdx.x * DKV_KEYS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t ldq = (size_t)H * hd, ldk = (size_t)dm.Hkv * hd;
    const int nk = min(max(lengths[j], 0), L);
    if (s0 >= nk)
        return;   /* no real key in this tile: the whole block leaves before any barrier */
    const int k_valid = min(DKV_KEYS, nk - s0);
    att_tile_load(Ko, hd, k, qkv_t, (size_t)j * L + s0, ldk, (size_t)g * hd, DKV_KEYS, k_valid, hd, NULL);
    att_tile_load(Vo, hd, v, qkv_t, (size_t)j * L + s0, ldk, (size_t)g * hd, DKV_KEYS, k_valid, hd, vno);

    float dka[DKV_KR][ATT_NC], dva[DKV_KR][ATT_NC], rr[DKV_KR];
#pragma unroll
    for (int kr = 0; kr < DKV_KR; kr++) {
        rr[kr] = 0.0f;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            dka[kr][c] = dva[kr][c] = 0.0f;
    }
    for (int i = 0; i < B; i++) {
        const float wij = w[i * B + j];
        if (wij == 0.0f)
            continue;   /* skipped or zero-weight pair: no gradient reaches k or v */
        for (int h = g * dm.rep; h < (g + 1) * dm.rep; h++) {
            const size_t st = (((size_t)i * B + j) * H + h) * L;
            for (int t0 = 0; t0 < L; t0 += DKV_QT) {
                const int q_valid = min(DKV_QT, L - t0);
                __syncthreads();   /* the previous query tile is no longer read (and Ko/Vo are loaded) */
                att_tile_load(Qs, qp, q, qkv_t, (size_t)i * L + t0, ldq, (size_t)h * hd, DKV_QT, q_valid, hd, NULL);
                att_tile_load(Gs, qp, dout, qkv_t, (size_t)i * L + t0, ldq, (size_t)h * hd, DKV_QT, q_valid, hd,
                              NULL);
                if (threadIdx.x < DKV_QT) {
                    int tt = threadIdx.x;
                    bool ok = tt < q_valid;
                    s_lse[tt] = ok ? lse[st + t0 + tt] : 0.0f;
                    s_D[tt] = ok ? Dbuf[st + t0 + tt] : 0.0f;
                    s_dn[tt] = ok ? dnbuf[st + t0 + tt] : 0.0f;
                    s_f[tt] = ok ? wij / denom[st + t0 + tt] : 0.0f;
                }
                __syncthreads();
                const bool row_ok = lane < q_valid;   /* lane = query row t0 + lane */
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
                    float p = row_ok ? expf(sc * dm.scale - s_lse[lane]) : 0.0f;
                    float da = s_f[lane] * gv + s_dn[lane] * vno[key];
                    float ds = p * (da - s_D[lane]) * dm.scale, pf = p * s_f[lane];
                    rr[kr] += p * s_dn[lane];
                    for (int tt = 0; tt < q_valid; tt++) {
                        float dst = rv_shfl(ds, tt), pft = rv_shfl(pf, tt);
#pragma unroll
                        for (int c = 0; c < ATT_NC; c++)
                            if (c * 32 + lane < hd) {
                                dka[kr][c] += dst * Qs[tt * qp + c * 32 + lane];
                                dva[kr][c] += pft * Gs[tt * qp + c * 32 + lane];
                            }
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
        float r = rv_warp_sum(rr[kr]);
        float fac = dm.v_norm && vno[key] != 0.0f ? r / vno[key] : 0.0f;   /* d||V|| / dV = V / ||V|| */
        size_t at = ((size_t)j * L + s0 + key) * ldk + (size_t)g * hd;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++) {
            int d = c * 32 + lane;
            if (d >= hd)
                continue;
            if (dk)
                rv_st(dk, grad_t, at + d, rv_ld(dk, grad_t, at + d) + dka[kr][c]);
            if (dv)
                rv_st(dv, grad_t, at + d, rv_ld(dv, grad_t, at + d) + dva[kr][c] + fac * Vo[key * hd + d]);
        }
    }
}

/* ---------------------------------------------------------------- backward: dw */
__global__ void __launch_bounds__(256) inbatch_dw_kernel(const float *w, const float *gbuf, float *dw, int H, int L,
                                                         int skip_zero)
{
    RV_DYN_SMEM(float, red);
    const int pair = blockIdx.x;
    if (skip_zero && w[pair] == 0.0f)
        return;   /* skipped pair: dw left as it is (the whole block leaves) */
    const size_t n = (size_t)H * L, base = (size_t)pair * n;
    double part = 0.0;
    for (size_t e = threadIdx.x; e < n; e += blockDim.x)
        part += gbuf[base + e];
    float total = rv_block_sum((float)part, red);
    if (threadIdx.x == 0)
        dw[pair] += total;
}

/* ---------------------------------------------------------------- host side */
static int inbatch_setup(const rv_inbatch_cfg *cfg, rv_wtype a, rv_wtype b, inbatch_dims *dm, const char *what)
{
    const rv_attn_shape *s = &cfg->shape;
    if (s->batch <= 0 || s->seq_len <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0)
        return rv_error_set("cuda %s: expected positive batch, seq_len, heads, kv heads and head_dim, found %d, %d, "
                            "%d, %d, %d", what, s->batch, s->seq_len, s->n_heads, s->n_kv_heads, s->head_dim);
    if (s->n_heads % s->n_kv_heads != 0)
        return rv_error_set("cuda %s: n_heads (%d) is not a multiple of n_kv_heads (%d)", what, s->n_heads,
                            s->n_kv_heads);
    if (s->head_dim > ATT_MAX_HD)
        return rv_error_set("cuda %s: expected head_dim <= %d, found %d", what, ATT_MAX_HD, s->head_dim);
    if (s->batch > 65535 || s->n_heads > 65535)
        return rv_error_set("cuda %s: expected batch and n_heads <= 65535, found %d and %d", what, s->batch,
                            s->n_heads);
    if ((double)s->batch * s->batch * s->n_heads * s->seq_len > 2e9)
        return rv_error_set("cuda %s: %d x %d x %d x %d statistics are too many", what, s->batch, s->batch,
                            s->n_heads, s->seq_len);
    if (cfg->v_norm && !(cfg->eps >= 0))
        return rv_error_set("cuda %s: expected a V-norm eps >= 0, found %g", what, (double)cfg->eps);
    if (!rv_wtype_valid(a) || !rv_wtype_valid(b))
        return rv_error_set("cuda %s: unknown storage type", what);
    dm->B = s->batch;
    dm->L = s->seq_len;
    dm->H = s->n_heads;
    dm->Hkv = s->n_kv_heads;
    dm->hd = s->head_dim;
    dm->rep = s->n_heads / s->n_kv_heads;
    dm->scale = (float)(1.0 / sqrt((double)s->head_dim));
    dm->eps = cfg->eps;
    dm->v_norm = cfg->v_norm ? 1 : 0;
    dm->skip_zero = cfg->skip_zero_weights ? 1 : 0;
    return 0;
}

extern "C" int rv_cuda_inbatch_attn_forward(rv_cuda *c, const rv_inbatch_cfg *cfg, const int *lengths,
                                            const float *w, const void *q, const void *k, const void *v,
                                            rv_wtype qkv_t, void *out, rv_wtype out_t, float *lse, float *denom)
{
    RV_PROFILE(c, "inbatch_attention");
    inbatch_dims dm;
    if (inbatch_setup(cfg, qkv_t, out_t, &dm, "inbatch_attn_forward") != 0)
        return -1;
    if (att_tc_usable(qkv_t, (size_t)dm.hd))
        return ibtc_forward(c, &dm, lengths, w, q, k, v, out, out_t, lse, denom);
    size_t smem = sizeof(float) * ((size_t)ATT_QT * dm.hd + 2 * (size_t)ATT_KT * (dm.hd + 1) + ATT_KT);
    if (att_smem_ready(c, inbatch_fwd_kernel, smem, "inbatch_fwd_kernel") != 0)
        return -1;
    dim3 grid((unsigned)((dm.L + ATT_QT - 1) / ATT_QT), (unsigned)dm.H, (unsigned)dm.B);
    RV_LAUNCH(inbatch_fwd_kernel, grid, ATT_THREADS, smem, c->stream, dm, w, lengths, q, k, v, (int)qkv_t, out,
              (int)out_t, lse, denom);
    RV_LAUNCH_CHECK("inbatch_fwd_kernel");
    return 0;
}

extern "C" int rv_cuda_inbatch_attn_backward(rv_cuda *c, const rv_inbatch_cfg *cfg, const int *lengths,
                                             const float *w, const void *q, const void *k, const void *v,
                                             rv_wtype qkv_t, const float *lse, const float *denom, const void *dout,
                                             void *dq, void *dk, void *dv, rv_wtype grad_t, float *dw)
{
    RV_PROFILE(c, "inbatch_attention_backward");
    inbatch_dims dm;
    if (inbatch_setup(cfg, qkv_t, grad_t, &dm, "inbatch_attn_backward") != 0)
        return -1;
    if (!dq && !dk && !dv && !dw)
        return 0;
    size_t n_stats = (size_t)dm.B * dm.B * dm.H * dm.L;
    float *scratch = (float *)rv_cuda_scratch(c, 3 * n_stats * sizeof(float));
    if (!scratch)
        return -1;
    float *Dbuf = scratch, *dnbuf = Dbuf + n_stats, *gbuf = dnbuf + n_stats;

    if (att_tc_usable(qkv_t, (size_t)dm.hd)) {
        if (ibtc_backward(c, &dm, lengths, w, q, k, v, lse, denom, dout, dq, dk, dv, grad_t, Dbuf, dnbuf, gbuf) != 0)
            return -1;
    } else {
        size_t smem_dq = sizeof(float) * (2 * (size_t)ATT_QT * dm.hd + 2 * (size_t)ATT_KT * (dm.hd + 1) + ATT_KT);
        if (att_smem_ready(c, inbatch_bwd_dq_kernel, smem_dq, "inbatch_bwd_dq_kernel") != 0)
            return -1;
        dim3 grid_dq((unsigned)((dm.L + ATT_QT - 1) / ATT_QT), (unsigned)dm.H, (unsigned)dm.B);
        RV_LAUNCH(inbatch_bwd_dq_kernel, grid_dq, ATT_THREADS, smem_dq, c->stream, dm, w, lengths, q, k, v, dout,
                  (int)qkv_t, lse, denom, dq, (int)grad_t, Dbuf, dnbuf, gbuf);
        RV_LAUNCH_CHECK("inbatch_bwd_dq_kernel");

        if (dk || dv) {
            size_t smem_kv = sizeof(float) * (2 * (size_t)DKV_KEYS * dm.hd + DKV_KEYS +
                                              2 * (size_t)DKV_QT * (dm.hd + 1) + 4 * DKV_QT);
            if (att_smem_ready(c, inbatch_bwd_dkv_kernel, smem_kv, "inbatch_bwd_dkv_kernel") != 0)
                return -1;
            dim3 grid_kv((unsigned)((dm.L + DKV_KEYS - 1) / DKV_KEYS), (unsigned)dm.Hkv, (unsigned)dm.B);
            RV_LAUNCH(inbatch_bwd_dkv_kernel, grid_kv, ATT_THREADS, smem_kv, c->stream, dm, w, lengths, q, k, v, dout,
                      (int)qkv_t, lse, denom, Dbuf, dnbuf, dk, dv, (int)grad_t);
            RV_LAUNCH_CHECK("inbatch_bwd_dkv_kernel");
        }
    }
    if (dw) {
        RV_LAUNCH(inbatch_dw_kernel, (unsigned)(dm.B * dm.B), 256, 32 * sizeof(float), c->stream, w, gbuf, dw, dm.H,
                  dm.L, dm.skip_zero);
        RV_LAUNCH_CHECK("inbatch_dw_kernel");
    }
    return 0;
}
