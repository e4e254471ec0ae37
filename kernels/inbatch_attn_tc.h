/* inbatch_attn_tc.h — the tensor-core (bf16 mma.sync, fp32 accumulation)
 * kernels of the Revela in-batch attention, called by inbatch_attn.cu's
 * rv_cuda_inbatch_attn_forward/backward when ibtc_applies() (internal, C++).
 * Same math, layouts, saved statistics (lse, denom per (i, j, h, t)) and
 * semantics as the fp32 kernels there; see the header of inbatch_attn_tc.cu. */
#ifndef RV_INBATCH_ATTN_TC_H
#define RV_INBATCH_ATTN_TC_H

#include "cuda_common.cuh"

/* The checked shape and options (inbatch_attn.cu's inbatch_setup fills them). */
struct ibtc_shape {
    int B, L, H, Hkv, hd, rep;
    float scale, eps;   /* scale = 1/sqrt(hd) */
    int v_norm, skip_zero;
};

/* Whether the tensor-core kernels take this call: q, k, v (and dout) in bf16
 * and head_dim a multiple of 16 up to 128. */
static inline bool ibtc_applies(rv_wtype qkv_t, int head_dim)
{
    return qkv_t == RV_WT_BF16 && head_dim % 16 == 0 && head_dim >= 16 && head_dim <= 128;
}

/* The forward: out (type out_t) overwritten, lse and denom written for every
 * (i, j, h, t). q, k, v are bf16. */
int ibtc_forward(rv_cuda *c, const ibtc_shape *s, const int *lengths, const float *w, const void *q, const void *k,
                 const void *v, void *out, rv_wtype out_t, float *lse, float *denom);

/* The backward's dq and dk/dv kernels (gradients of type grad_t ADDED into;
 * NULL ones skipped). Always writes Dbuf, dnbuf and gbuf (= G.b/den, what
 * the caller's dw kernel sums) for every non-skipped (i, j, h, t): each
 * n_stats = B*B*H*L floats, as in inbatch_attn.cu. */
int ibtc_backward(rv_cuda *c, const ibtc_shape *s, const int *lengths, const float *w, const void *q, const void *k,
                  const void *v, const float *lse, const float *denom, const void *dout, void *dq, void *dk, void *dv,
                  rv_wtype grad_t, float *Dbuf, float *dnbuf, float *gbuf);

#endif
