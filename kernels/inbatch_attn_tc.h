/* inbatch_attn_tc.h — the tensor-core (bf16 mma.sync, fp32 accumulation)
 * kernels of the Revela in-batch attention, called by inbatch_attn.cu's
 * rv_cuda_inbatch_attn_forward/backward when att_tc_usable() (attn_tiles.cuh;
 * internal, C++).
 * Same math, layouts, saved statistics (lse, denom per (i, j, h, t)) and
 * semantics as the fp32 kernels there; see the header of inbatch_attn_tc.cu. */
#ifndef RV_INBATCH_ATTN_TC_H
#define RV_INBATCH_ATTN_TC_H

#include "cuda_common.cuh"

/* The checked shape and options of an in-batch attention call
 * (inbatch_attn.cu's inbatch_setup fills it); the fp32 kernels and these
 * both take it. */
struct inbatch_dims {
    int B, L, H, Hkv, hd, rep;
    float scale, eps;   /* scale = 1/sqrt(hd) */
    int v_norm, skip_zero;
};

/* The forward: out (type out_t) overwritten, lse and denom written for every
 * (i, j, h, t). q, k, v are bf16. */
int ibtc_forward(rv_cuda *c, const inbatch_dims *s, const int *lengths, const float *w, const void *q, const void *k,
                 const void *v, void *out, rv_wtype out_t, float *lse, float *denom);

/* The backward's dq and dk/dv kernels (gradients of type grad_t ADDED into;
 * NULL ones skipped). Always writes Dbuf, dnbuf and gbuf (= G.b/den, what
 * the caller's dw kernel sums) for every non-skipped (i, j, h, t): each
 * n_stats = B*B*H*L floats, as in inbatch_attn.cu. */
int ibtc_backward(rv_cuda *c, const inbatch_dims *s, const int *lengths, const float *w, const void *q, const void *k,
                  const void *v, const float *lse, const float *denom, const void *dout, void *dq, void *dk, void *dv,
                  rv_wtype grad_t, float *Dbuf, float *dnbuf, float *gbuf);

#endif
