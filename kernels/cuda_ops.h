/* cuda_ops.h — the CUDA backend's plain C interface: a device context (one
 * GPU, one stream, a cuBLASLt handle with a plan cache, a scratch buffer),
 * device memory helpers, and the GPU twins of the ops in lib/ops.h,
 * lib/train_ops.h, lib/inbatch_attn.h and lib/adamw.h. Every function
 * returns 0, or -1 with a message set by rv_error_set() (a failed
 * CUDA/cuBLAS call names the file, line, call and CUDA's error string);
 * nothing here exits or prints.
 *
 * Conventions:
 *  - Every tensor argument is a DEVICE pointer; small index arrays (lengths,
 *    sequence offsets, positions, token ids) are device int32/uint32 arrays.
 *    Shapes and layouts are those of the CPU twin named in each comment.
 *  - Storage type per tensor (rv_wtype from ops.h: f32, bf16, f16); all
 *    arithmetic is fp32 (bf16 storage, fp32 accumulation), so an f32 call
 *    computes what the CPU twin computes up to summation order.
 *  - Work is queued on the context's stream; results are complete after
 *    rv_cuda_sync() or a download. Launch errors are reported at once,
 *    faults during execution at the next sync.
 *  - Gradient outputs of backward ops are ADDED into (dx += ...), as in
 *    train_ops.h; a NULL gradient output is skipped.
 *  - Compiled with RV_CUDA_EMULATE, the same sources run on the CPU through
 *    kernels/dev/cuda_emu.h (used to test kernel logic without a GPU). */
#ifndef RV_CUDA_OPS_H
#define RV_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "inbatch_attn.h"   /* rv_inbatch_cfg, and rv_attn_shape via train_ops.h */
#include "adamw.h"          /* rv_adamw_hparams */
#include "ops.h"            /* rv_wtype */

typedef struct rv_cuda rv_cuda;

/* ---------------------------------------------------------------- context and memory */

/* Number of usable CUDA devices: 0 when there is no device or no driver
 * (never an error, so callers can print SKIP). *why, when not NULL, gets
 * CUDA's reason for 0 devices ("" otherwise). */
int rv_cuda_device_count(const char **why);

/* 0 when `device` is the index of a present device; else -1 with "no CUDA
 * device: <CUDA's reason>" or "CUDA device N does not exist (M devices:
 * 0..M-1)", the messages every tool prints. */
int rv_cuda_check_device(int device);

/* Opens device `device` (0-based): stream, cuBLASLt handle and a 32 MiB
 * matmul workspace. NULL with an error on failure. */
rv_cuda *rv_cuda_open(int device);
void rv_cuda_close(rv_cuda *c);

/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" or the emulator's name. */
const char *rv_cuda_device_name(const rv_cuda *c);

/* Waits for all queued work; reports any fault it met. */
int rv_cuda_sync(rv_cuda *c);

/* Device memory: NULL with an error on failure; free(NULL) is a no-op. */
void *rv_cuda_alloc(rv_cuda *c, size_t bytes);
void rv_cuda_free(rv_cuda *c, void *p);
int rv_cuda_upload(rv_cuda *c, void *dst, const void *src, size_t bytes);     /* host -> device, waits */
int rv_cuda_download(rv_cuda *c, void *dst, const void *src, size_t bytes);   /* device -> host, waits */
int rv_cuda_memset(rv_cuda *c, void *dst, int byte, size_t bytes);

/* dst[i] = src[i] converted between storage types (round to nearest even). */
int rv_cuda_convert(rv_cuda *c, void *dst, rv_wtype dst_t, const void *src, rv_wtype src_t, size_t n);

/* ---------------------------------------------------------------- matrix products (cuBLASLt) */

/* Row-major C[M,N] = alpha * op(A) op(B) + beta * C, op = transpose when
 * ta/tb is set (A stored M×K or K×M, B stored K×N or N×K); lda/ldb/ldc are
 * the row strides of the stored matrices (as train_ops_blas.h rv_gemm). A
 * and B share a type (f32, bf16 or f16); C is f32 or A's type. fp32
 * accumulation; f32 inputs use true fp32 (no TF32). Plans (descriptors and
 * the heuristic's choice) are cached per shape, type and pointer alignment. */
int rv_cuda_gemm(rv_cuda *c, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                 const void *B, int ldb, rv_wtype ab_t, float beta, void *C, int ldc, rv_wtype c_t);

/* rv_cuda_gemm out of place: C = alpha * op(A) op(B) + beta * Cin, Cin of
 * C's type and row stride (not read when beta is 0; it may be C). E.g. the
 * residual stream's next copy written from the previous one in the product,
 * without a copy pass. */
int rv_cuda_gemm_c(rv_cuda *c, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                   const void *B, int ldb, rv_wtype ab_t, float beta, const void *Cin, void *C, int ldc, rv_wtype c_t);

/* What the plan cache of rv_cuda_gemm/rv_cuda_linear has seen since the
 * context opened: products run (calls), cuBLASLt plans built (each costs a
 * heuristic query, far more than a small product), plans evicted because
 * the cache was full (a loop over more shapes than it holds rebuilds them
 * at every pass), and products that had no cuBLASLt algorithm and ran the
 * slow fallback kernel (misaligned 16-bit operands, odd strides). A training
 * step at steady state should build nothing and fall back never. With
 * RV_GEMM_TUNE=1 (matmul.cu): plans whose cuBLASLt candidates were timed,
 * those where a candidate other than the heuristic's first won, and
 * tunings that failed (the first choice then stays). */
typedef struct {
    unsigned long long calls, plans_built, evictions, fallback_calls;
    unsigned long long plans_tuned, tune_changed, tune_failed;
} rv_cuda_gemm_stats;
void rv_cuda_gemm_get_stats(const rv_cuda *c, rv_cuda_gemm_stats *s);

/* y[m, out] = x[m, in] w^T (+ bias[out], f32, when not NULL): rv_op_linear
 * with x and w of one type (convert first when they differ). */
int rv_cuda_linear(rv_cuda *c, void *y, rv_wtype y_t, const void *x, size_t m, const void *w, size_t out,
                   size_t in, rv_wtype xw_t, const float *bias);

/* y = res + x w^T (+ bias): rv_cuda_linear adding onto res [m, out] (y's
 * type; it may be y; NULL: none), e.g. a residual stream's next copy made
 * from its previous one by the product itself, with no add or copy pass. */
int rv_cuda_linear_res(rv_cuda *c, void *y, rv_wtype y_t, const void *res, const void *x, size_t m, const void *w,
                       size_t out, size_t in, rv_wtype xw_t, const float *bias);

/* ---------------------------------------------------------------- element-wise and row ops */

/* rv_op_rmsnorm / rv_rmsnorm_forward: y = x / sqrt(mean(x^2) + eps) * w over
 * rows of dim; y may be x; rstd[rows] (f32) written when not NULL. */
int rv_cuda_rmsnorm(rv_cuda *c, void *y, rv_wtype y_t, const void *x, rv_wtype x_t, const void *w, rv_wtype w_t,
                    size_t rows, size_t dim, float eps, float *rstd);

/* Rotary embedding in place (rotate_half layout) on n_tok rows of `stride`
 * elements, heads packed at h*head_dim. Token t has position pos[t] (device
 * uint32, rv_op_rope) or, when pos is NULL, t % seq_len (rv_rope_forward).
 * cos/sin: device f32 tables [max_pos, head_dim/2]. direction +1 rotates by
 * +angle (forward), -1 by -angle (rv_rope_backward). Positions must be
 * < max_pos (checked on the host for seq_len; pos is the caller's duty). */
int rv_cuda_rope(rv_cuda *c, void *x, rv_wtype x_t, size_t n_tok, size_t stride, size_t n_heads, size_t head_dim,
                 const uint32_t *pos, size_t seq_len, const float *cos_tab, const float *sin_tab, size_t max_pos,
                 int direction);

/* rv_cuda_rope out of place: y (the same layout, type y_t; e.g. bf16 from
 * f32 x, narrowing as it rotates) = the rotated x; only the heads' columns
 * of y are written. y may be x. */
int rv_cuda_rope_to(rv_cuda *c, void *y, rv_wtype y_t, const void *x, rv_wtype x_t, size_t n_tok, size_t stride,
                    size_t n_heads, size_t head_dim, const uint32_t *pos, size_t seq_len, const float *cos_tab,
                    const float *sin_tab, size_t max_pos, int direction);

/* h = silu(gate) * up (rv_op_swiglu); h may be gate. */
int rv_cuda_swiglu(rv_cuda *c, void *h, rv_wtype h_t, const void *gate, rv_wtype gate_t, const void *up,
                   rv_wtype up_t, size_t n);

/* y += x (rv_op_add). */
int rv_cuda_add(rv_cuda *c, void *y, rv_wtype y_t, const void *x, rv_wtype x_t, size_t n);

/* y[t] = table[ids[t]] for n tokens (rv_op_embedding); table [vocab, dim].
 * An id >= vocab yields a row of NaN rather than a read out of bounds
 * (callers validate ids on the host, as rv_embed_lookup does). */
int rv_cuda_embedding(rv_cuda *c, void *y, rv_wtype y_t, const void *table, rv_wtype table_t, size_t vocab,
                      size_t dim, const uint32_t *ids, size_t n);

/* Scales each row to unit L2 norm in place; zero rows stay zero
 * (rv_op_l2_normalize). */
int rv_cuda_l2_normalize(rv_cuda *c, void *x, rv_wtype x_t, size_t rows, size_t dim);

/* EOS pooling + L2 norm (rv_eos_pool_l2_forward): e[b] = h[b*seq_len +
 * lengths[b]-1] / max(||.||, 1e-12); e f32 [batch, dim]; norm[batch] (f32,
 * unclamped) when not NULL. lengths: device int32, 1..seq_len (checked by
 * the caller). */
int rv_cuda_eos_pool_l2(rv_cuda *c, float *e, float *norm, const void *h, rv_wtype h_t, int batch, int seq_len,
                        int dim, const int *lengths);

/* ---------------------------------------------------------------- element-wise and row ops: backward
 * (kernels/elementwise_backward.cu). Gradients are added into, as train_ops.h. */

/* rv_rmsnorm_backward: x [rows, dim] (x_t), w [dim] (w_t), rstd [rows] (f32,
 * from rv_cuda_rmsnorm), dy [rows, dim] (g_t); dx [rows, dim] (g_t) +=
 * r w dy - x r^3 (dy.w.x)/dim; dw [dim] (f32) += sum over rows of dy x r.
 * dw is reduced over rows in a fixed order (deterministic, no atomics). */
int rv_cuda_rmsnorm_backward(rv_cuda *c, const void *x, rv_wtype x_t, const void *w, rv_wtype w_t,
                             const float *rstd, const void *dy, void *dx, rv_wtype g_t, float *dw, size_t rows,
                             size_t dim);

/* rv_swiglu_backward: gate, up [n] (in_t), dout [n] (dout_t); dgate +=
 * dout up silu'(gate), dup += dout silu(gate) (both g_t, e.g. bf16 when
 * they are only GEMM operands next). accumulate 0: = instead of +=, and
 * the old contents are never read (no zeroed buffer needed). rv_cuda_rope
 * with direction -1 is rv_rope_backward. */
int rv_cuda_swiglu_backward(rv_cuda *c, const void *gate, const void *up, rv_wtype in_t, const void *dout,
                            rv_wtype dout_t, void *dgate, void *dup, rv_wtype g_t, size_t n, int accumulate);

/* rv_eos_pool_l2_backward: e, norm from rv_cuda_eos_pool_l2 (f32), de
 * [batch, dim] (f32); dh [batch*seq_len, dim] (dh_t) rows b*seq_len +
 * lengths[b]-1 += (de - e (e.de)) / ||h|| (de / 1e-12 when the norm was
 * clamped). lengths: device int32, 1..seq_len (a bad length is skipped). */
int rv_cuda_eos_pool_l2_backward(rv_cuda *c, const float *e, const float *norm, const float *de, void *dh,
                                 rv_wtype dh_t, int batch, int seq_len, int dim, const int *lengths);

/* ---------------------------------------------------------------- causal attention
 * Both attentions (causal here, in-batch below) pick their kernels by the
 * operands' type: bf16 q, k, v (and out, dout) with head_dim a multiple of
 * 16 run on tensor cores (attention_tc.cu, inbatch_attn_tc.cu: bf16 mma with
 * fp32 statistics and sums, the probabilities rounded to bf16 for their
 * products, as FlashAttention does); everything else runs fp32 CUDA-core
 * kernels that match the CPU twins up to summation order. */

/* rv_op_attention_causal over packed sequences: sequence s is rows
 * seq_off[s] <= t < seq_off[s+1] (device int32, n_seqs+1 entries, rows
 * counted from 0); max_len is the longest sequence (host value, sizes the
 * grid). Strides in elements. head_dim even and <= 128. */
int rv_cuda_attention_causal(rv_cuda *c, void *out, rv_wtype out_t, size_t out_stride, const void *q,
                             size_t q_stride, const void *k, const void *v, size_t kv_stride, rv_wtype qkv_t,
                             size_t n_seqs, const int *seq_off, size_t max_len, size_t n_heads, size_t n_kv_heads,
                             size_t head_dim);

/* rv_causal_attn_forward: padded batch [batch, seq_len, heads, head_dim],
 * query t of sequence b sees keys s <= t with s < lengths[b] (device int32);
 * lse[batch, n_heads, seq_len] (f32) written when not NULL. */
int rv_cuda_causal_attn_forward(rv_cuda *c, const rv_attn_shape *s, const int *lengths, const void *q,
                                const void *k, const void *v, rv_wtype qkv_t, void *out, rv_wtype out_t,
                                float *lse);

/* rv_causal_attn_backward on the device (kernels/attention_backward.cu):
 * q, k, v, out, dout in the padded layout of rv_cuda_causal_attn_forward
 * (type qkv_t; out is the forward's output, converted to qkv_t if it was
 * stored otherwise), lse from that forward; adds into dq [batch, seq_len,
 * n_heads, head_dim] and dk, dv [.., n_kv_heads, ..] (type grad_t); any may
 * be NULL. Deterministic (no atomics): a row kernel computes D = dout.out
 * per (row, head) into the context's scratch, one kernel owns the dq rows
 * of a (query tile, head, sequence), another the dk/dv rows of a (key tile,
 * kv head, sequence) and loops over the query heads of its group.
 * head_dim <= 128. */
int rv_cuda_causal_attn_backward(rv_cuda *c, const rv_attn_shape *s, const int *lengths, const void *q,
                                 const void *k, const void *v, const void *out, const float *lse, const void *dout,
                                 rv_wtype qkv_t, void *dq, void *dk, void *dv, rv_wtype grad_t);

/* ---------------------------------------------------------------- LM head + cross-entropy (kernels/ce_head.cu) */

/* rv_lm_head_ce on the device: x [n, dim] and head [vocab, dim] of one type
 * xh_t; targets [n] device int32 (-100 or any negative: ignored). Rows are
 * taken in chunks of chunk_rows (0: as many as fit a 256 MiB logits block):
 * per chunk one GEMM into a scratch f32 logits block, one row kernel (max,
 * log-sum-exp, the row's loss, and the row's gradient (softmax - onehot) *
 * grad_scale written over it in xh_t; ignored rows get zeros), and when
 * asked the two backward GEMMs: dx [n, dim] (type g_t: f32 or xh_t) +=
 * dlogits head, dhead [vocab, dim] (type g_t) += dlogits^T x. The full
 * [n, vocab] logits are never held. *loss_sum (a DEVICE double) is written
 * (not added): the sum over valid rows of lse - logit[target], reduced in a
 * fixed order. A target >= vocab makes that row's loss NaN (callers check
 * targets on the host, as rv_lm_head_ce does). Uses the context's scratch. */
int rv_cuda_lm_head_ce(rv_cuda *c, size_t n, int dim, int vocab, const void *x, const void *head, rv_wtype xh_t,
                       const int32_t *targets, float grad_scale, double *loss_sum, void *dx, void *dhead,
                       rv_wtype g_t, size_t chunk_rows);

/* ---------------------------------------------------------------- optimizer (kernels/adamw.cu) */

/* rv_adamw_update on n fp32 master weights: param, m, v f32, updated in
 * place; grad f32. The scalars (bias corrections, step size, decay) are
 * formed on the host in double exactly as lib/adamw.c does, and the element
 * update is the same float expression. t >= 1. */
int rv_cuda_adamw_update(rv_cuda *c, size_t n, float *param, const float *grad, float *m, float *v, long t,
                         const rv_adamw_hparams *h);

/* rv_sum_squares: *out (a DEVICE double) += sum of x[i]^2 over n floats,
 * in double, in a fixed order (call once per tensor, sqrt on the host after
 * the download for the global norm). */
int rv_cuda_sum_squares(rv_cuda *c, size_t n, const float *x, double *out);

/* rv_scale: x[i] *= factor. */
int rv_cuda_scale(rv_cuda *c, size_t n, float *x, float factor);

/* ---------------------------------------------------------------- in-batch weights W (kernels/inbatch_weights.cu) */

/* rv_inbatch_weights_forward on the device: q, p [batch, dim] f32; s and w
 * [batch, batch] f32 written; W = softmax_row(S / tau), diagonal -inf (W_ii
 * = 0). numerics as the CPU twin (RV_SIM_BF16 rounds S, S/tau and W to
 * bf16). batch >= 2, tau > 0. One block per row; fp32 dot products. */
int rv_cuda_inbatch_weights_forward(rv_cuda *c, int batch, int dim, const float *q, const float *p, double tau,
                                    rv_sim_numerics numerics, float *s, float *w);

/* rv_inbatch_weights_backward: ds [batch, batch] (f32) overwritten, dq += ds
 * p and dp += ds^T q (f32, either may be NULL). */
int rv_cuda_inbatch_weights_backward(rv_cuda *c, int batch, int dim, const float *q, const float *p, const float *w,
                                     double tau, const float *dw, float *ds, float *dq, float *dp);

/* ---------------------------------------------------------------- in-batch attention (Revela) */

/* rv_inbatch_attn_forward on the device: q [B, L, H, d], k and v [B, L, Hkv,
 * d] (type qkv_t), w [B, B] f32, lengths [B] device int32 (1..L, checked by
 * the caller); out [B, L, H, d] (type out_t) overwritten; lse and denom
 * [B, B, H, L] f32 written for the backward (skipped pairs: 0 and 1). One
 * fused kernel per (query chunk, head, query tile) loops over the key
 * chunks; no score tensor is stored. head_dim <= 128. */
int rv_cuda_inbatch_attn_forward(rv_cuda *c, const rv_inbatch_cfg *cfg, const int *lengths, const float *w,
                                 const void *q, const void *k, const void *v, rv_wtype qkv_t, void *out,
                                 rv_wtype out_t, float *lse, float *denom);

/* rv_inbatch_attn_backward on the device: given dout (type qkv_t), adds into
 * dq, dk, dv (type grad_t) and dw [B, B] (f32); any of them may be NULL.
 * Deterministic (no atomics): one kernel owns the dq rows of a (chunk, head,
 * query tile), a second the dk/dv rows of a (chunk, kv head, key tile), and
 * dw is reduced in a fixed order. Uses the context's scratch memory. */
int rv_cuda_inbatch_attn_backward(rv_cuda *c, const rv_inbatch_cfg *cfg, const int *lengths, const float *w,
                                  const void *q, const void *k, const void *v, rv_wtype qkv_t, const float *lse,
                                  const float *denom, const void *dout, void *dq, void *dk, void *dv,
                                  rv_wtype grad_t, float *dw);

/* ---------------------------------------------------------------- profiling */

/* Device time per operation (kernels/op_profile.cu): after
 * rv_cuda_profile_start every operation of this interface (and the named
 * groups of the training step: "frozen_gemm", "lora", ...) records CUDA
 * events around what it queues; rv_cuda_profile_collect waits for the
 * stream and adds the elapsed times to per-name totals (call it once per
 * step or so: it reuses the events); rv_cuda_profile_rows copies up to
 * max_rows totals, largest first, and returns how many. Times are
 * stream-ordered device time between an operation's first and last launch
 * (host gaps inside one operation count; gaps between operations do not).
 * start again clears the totals. */
typedef struct {
    const char *name;
    unsigned long long calls;
    double ms;
} rv_cuda_profile_row;
typedef int rv_cuda_profile_start_fn(rv_cuda *c);
typedef int rv_cuda_profile_collect_fn(rv_cuda *c);
typedef int rv_cuda_profile_rows_fn(rv_cuda *c, rv_cuda_profile_row *rows, int max_rows);
rv_cuda_profile_start_fn rv_cuda_profile_start;   /* (the types: for tools that look them up by name) */
rv_cuda_profile_collect_fn rv_cuda_profile_collect;
rv_cuda_profile_rows_fn rv_cuda_profile_rows;

/* The same profile by matrix product: every cuBLASLt product (rv_cuda_gemm*
 * and what calls it) is also timed on its own and summed per shape (C[M, N]
 * of inner size K, the transposes, types, whether it adds into C) and group
 * (the outermost named operation it ran in: "frozen_gemm", "lora", ...;
 * "gemm" when called alone). Its rows, largest time first, show which
 * shapes run far from the card's peak: 2·M·N·K·calls / ms. */
typedef struct {
    const char *group;
    int ta, tb, M, N, K;
    rv_wtype ab_t, c_t;
    int accumulate;   /* beta != 0 */
    int fallback;     /* cuBLASLt had no algorithm: our plain kernel ran it (slow) */
    unsigned long long calls;
    double ms;
} rv_cuda_profile_gemm_row;
typedef int rv_cuda_profile_gemm_rows_fn(rv_cuda *c, rv_cuda_profile_gemm_row *rows, int max_rows);
rv_cuda_profile_gemm_rows_fn rv_cuda_profile_gemm_rows;

/* ---------------------------------------------------------------- self-test */

/* kernels/mma_probe.cu: d[v*256 + row*16 + col] = (A B)(row, col) for A and
 * B [16, 16] (row-major f32, used rounded to bf16) through the tensor-core
 * product of kernels/mma_bf16.cuh (two 16x8 products), for v = 0..3 the
 * pairings of its rv_frag_* loaders (A row-major or transposed, B by
 * columns or rows), v = 4 with A from two accumulators
 * (rv_frag_a_from_acc), v = 5, 6 with the ldmatrix loaders (rv_ldm_a with
 * rv_ldm_b_cols2, rv_ldm_b_rows2); test_gpu_ops compares each with a naive
 * product. */
int rv_cuda_mma_probe(rv_cuda *c, const float *a, const float *b, float *d);

#ifdef __cplusplus
}
#endif

#endif
