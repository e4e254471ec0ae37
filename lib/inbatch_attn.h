/* inbatch_attn.h — the two Revela-specific ops of the training step, CPU
 * forward and backward (fp32, BLAS + OpenMP; shapes and the accumulate-into-
 * gradients convention as in train_ops.h):
 *
 *  1. The in-batch weights: S = q p^T between the query-view and passage-view
 *     embeddings of the B chunks of a group, W = softmax_row(S / tau) with the
 *     diagonal at -inf (W_ii = 0, rows sum to 1). Optionally emulating the
 *     reference's bf16 numerics (method §4.2).
 *  2. In-batch attention (method §4.4): for every chunk pair (i, j), head h
 *     and query row t of the pass-B queries of chunk i, a separate
 *     non-causal softmax over the real (unpadded) pass-A keys of chunk j,
 *        A = softmax_s(Q_i[t] . K_j[s] / sqrt(d)),   b = sum_s A_s V_j[s],
 *        n = sum_s A_s ||V_j[s]||,   b~ = b / (n + eps)   (V-norm; else b~ = b),
 *     and C_i[t] = sum_j W_ij b~_ij[t]. Grouped K/V heads are shared as in
 *     attention (the norm is taken per query head after the GQA repeat,
 *     which equals the kv head's norm).
 *     The B x B x H x L x L score tensor is never stored: the forward keeps
 *     only per-row statistics (log-sum-exp of the scaled scores and the
 *     V-norm denominator n + eps, [B, B, H, L] each) and the backward
 *     recomputes one L x L tile at a time. */
#ifndef RV_INBATCH_ATTN_H
#define RV_INBATCH_ATTN_H

#include <stddef.h>

#include "train_ops.h"

/* ---------------------------------------------------------------- weights W */
typedef enum {
    RV_SIM_FP32 = 0,   /* S and the softmax in double, stored as float */
    RV_SIM_BF16 = 1    /* S rounded to bf16; Z = bf16(float(S) / float(tau));
                          softmax in float; W rounded to bf16 */
} rv_sim_numerics;

/* s[B*B] = q p^T (q, p: [batch, dim], normally unit vectors), w[B*B] the
 * masked, tempered softmax. batch >= 2 (a row needs one off-diagonal entry);
 * tau > 0. In bf16 mode s holds the bf16-rounded similarities. */
int rv_inbatch_weights_forward(int batch, int dim, const float *q, const float *p, double tau,
                               rv_sim_numerics numerics, float *s, float *w);

/* From dw = dL/dW: ds[B*B] = dL/dS is written (overwritten):
 *   ds_ij = W_ij (dw_ij - sum_k W_ik dw_ik) / tau   (0 on the diagonal),
 * and dq += ds p, dp += ds^T q. In bf16 mode the roundings are treated as
 * identities (straight-through) and w is the rounded W. */
void rv_inbatch_weights_backward(int batch, int dim, const float *q, const float *p, const float *w, double tau,
                                 const float *dw, float *ds, float *dq, float *dp);

/* ---------------------------------------------------------------- in-batch attention */
typedef struct {
    rv_attn_shape shape;      /* batch, seq_len, n_heads, n_kv_heads, head_dim */
    int v_norm;               /* divide each pair's output by n + eps */
    float eps;                /* 1e-6 in the reference */
    int skip_zero_weights;    /* pairs with W_ij == 0 (the diagonal, underflowed
                                 entries) are skipped exactly: they add nothing
                                 to C or to dq/dk/dv, and dw_ij is left as it
                                 is (it reaches the loss only multiplied by
                                 W_ij = 0). Off: every pair, diagonal included,
                                 is computed and differentiated. */
} rv_inbatch_cfg;

/* q: pass-B queries after RoPE [B, L, H, d]; k, v: pass-A cache (post-RoPE K)
 * [B, L, Hkv, d]; lengths[B]: real tokens of each chunk (keys s >= lengths[j]
 * are masked; every query row, padded or not, is computed); w: [B, B].
 * out[B, L, H, d] = C (overwritten). lse and denom: [B, B, H, L], element
 * ((i*B + j)*H + h)*L + t; written for the backward (skipped pairs: 0 and 1). */
int rv_inbatch_attn_forward(const rv_inbatch_cfg *c, const int *lengths, const float *w, const float *q,
                            const float *k, const float *v, float *out, float *lse, float *denom);

/* Given dout = dL/dC: dq += dL/dq, dk += dL/dk, dv += dL/dv, dw += dL/dW
 * (dw_ij = sum_{h,t} dout_i[t,h] . b~_ij[t,h]). Any gradient output may be
 * NULL. The statistics must come from the forward with the same inputs. */
int rv_inbatch_attn_backward(const rv_inbatch_cfg *c, const int *lengths, const float *w, const float *q,
                             const float *k, const float *v, const float *lse, const float *denom,
                             const float *dout, float *dq, float *dk, float *dv, float *dw);

#endif
