/* attention_tc.h — the tensor-core (bf16 mma.sync, fp32 accumulation)
 * causal grouped-query attention of kernels/attention_tc.cu, for the
 * dispatch in attention.cu and attention_backward.cu (internal, C++).
 * Those entry points call these when att_tc_usable(qkv_t, head_dim)
 * (attn_tiles.cuh);
 * otherwise their fp32 CUDA-core kernels run. Arguments are checked by the
 * callers (head counts, strides, int indexing, storage types). */
#ifndef RV_ATTENTION_TC_H
#define RV_ATTENTION_TC_H

#include "cuda_common.cuh"   /* rv_cuda, rv_wtype, rv_attn_shape */

/* The forward of attention.cu's launch_causal: packed sequences (seq_off,
 * n_seqs + 1 offsets; lengths NULL, seq_len 0) or a padded batch (lengths,
 * rows s*seq_len.., keys < lengths[s]); max_rows the longest sequence;
 * lse (padded only, may be NULL) [n_seqs, n_heads, seq_len]. */
int rv_attn_tc_forward(rv_cuda *c, void *out, rv_wtype out_t, size_t out_stride, const void *q, size_t q_stride,
                       const void *k, const void *v, size_t kv_stride, const int *seq_off, const int *lengths,
                       int seq_len, size_t n_seqs, size_t max_rows, size_t n_heads, size_t n_kv_heads,
                       size_t head_dim, float *lse);

/* dq, dk, dv (any may be NULL; typed grad_t, added into) of
 * rv_cuda_causal_attn_backward, given D = rowsum(dout * out) in Dbuf
 * [batch, n_heads, seq_len] (attention_backward.cu computes it). */
int rv_attn_tc_backward(rv_cuda *c, const rv_attn_shape *s, const int *lengths, const void *q, const void *k,
                        const void *v, const void *dout, const float *lse, const float *Dbuf, void *dq, void *dk,
                        void *dv, rv_wtype grad_t);

#endif
