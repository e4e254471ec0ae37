/* train_ops.h — CPU forward and backward (fp32, BLAS + OpenMP) of the
 * transformer ops a training step is built from: linear layers with a LoRA
 * adapter (and LoRA dropout masks), RMSNorm, RoPE, causal GQA attention with
 * key padding, SwiGLU, the LM head fused with token-mean cross-entropy, EOS
 * pooling with L2 normalisation, and embedding lookup. The Revela-specific
 * ops (in-batch attention, the similarity softmax) are in inbatch_attn.h.
 *
 * Conventions shared by every op:
 *  - Row-major float arrays with explicit shapes. A batch of `batch`
 *    sequences of padded length `seq_len` is stored as batch*seq_len rows.
 *    Per-head tensors use the layout a projection produces:
 *    [batch, seq_len, heads, head_dim], element (b, t, h, d) at
 *    ((b*seq_len + t)*heads + h)*head_dim + d.
 *  - Sequence b has lengths[b] real tokens, 1 <= lengths[b] <= seq_len,
 *    followed by padding. Masks come from lengths, never from token ids
 *    (pad id == EOS id in the LLaMA tokenizers).
 *  - Forward functions overwrite their outputs. Backward functions ADD into
 *    every gradient output (dx += ...), so residual branches and inputs used
 *    twice sum naturally; callers zero the buffers first. A NULL gradient
 *    output is skipped. The one exception is rv_rope_backward (in place).
 *  - Functions that allocate scratch memory or validate inputs return 0, or
 *    -1 with a message set by rv_error_set(); the others return void.
 *  - Base weights, norms, embeddings and the LM head get gradients only
 *    through the full-parameter ops (rv_linear_weight_grad,
 *    rv_embed_backward, RMSNorm's dw, the CE's dhead): rv-train
 *    --objective lm --full.
 */
#ifndef RV_TRAIN_OPS_H
#define RV_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- linear + LoRA
 * y = x W^T + bias + scale * ((x ⊙ keep) A^T) B^T, the PEFT LoRA layer:
 * W [out, in] and bias [out] frozen; A [rank, in] and B [out, rank] trained;
 * scale = lora_alpha / rank; keep is LoRA dropout on the branch input. */
typedef struct {
    int in, out;
    const float *weight;   /* [out, in] */
    const float *bias;     /* [out] or NULL */
    int rank;              /* 0: no adapter (lora_a, lora_b unused) */
    const float *lora_a;   /* [rank, in] */
    const float *lora_b;   /* [out, rank] */
    float scale;           /* lora_alpha / rank */
} rv_lora_linear;

/* y[n, out] = x W^T + bias + scale * xa B^T with xa[n, rank] = x_lora A^T
 * written for the backward. x_lora is the adapter input: x itself without
 * dropout, or x ⊙ keep (see rv_dropout_keep_mask). xa may be NULL when
 * rank == 0. Fails on sizes BLAS cannot take or a missing adapter buffer. */
int rv_lora_linear_forward(const rv_lora_linear *l, size_t n, const float *x, const float *x_lora,
                           float *xa, float *y);

/* Given dy[n, out]: dx += dy W + keep ⊙ ((scale dy B) A); d_lora_a +=
 * (scale dy B)^T x_lora; d_lora_b += scale dy^T xa. keep is the dropout mask
 * that made x_lora, or NULL for none. */
int rv_lora_linear_backward(const rv_lora_linear *l, size_t n, const float *x_lora, const float *keep,
                            const float *xa, const float *dy, float *dx, float *d_lora_a, float *d_lora_b);

/* PEFT's initialisation of a new adapter: A [rank, in] from
 * kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), drawn from
 * a counter-based hash of (seed, stream, index) like the dropout masks;
 * B [out, rank] = 0, so the adapted layer starts equal to the base layer. */
void rv_lora_init(int rank, int in, int out, uint64_t seed, uint64_t stream, float *lora_a, float *lora_b);

/* keep[i] = 0 with probability p, else 1/(1-p) (inverted dropout, as
 * torch.nn.Dropout), drawn from a counter-based hash of (seed, stream, i):
 * the same arguments give the same mask on every machine and thread count. */
void rv_dropout_keep_mask(size_t n, float p, uint64_t seed, uint64_t stream, float *keep);

/* out[i] = a[i] * b[i]. */
void rv_mul(size_t n, const float *a, const float *b, float *out);

/* ---------------------------------------------------------------- RMSNorm
 * y = x / sqrt(mean(x^2) + eps) * w over rows of `dim`; rstd[n] saved. */
void rv_rmsnorm_forward(size_t n, int dim, const float *x, const float *w, float eps, float *y, float *rstd);
void rv_rmsnorm_backward(size_t n, int dim, const float *x, const float *w, const float *rstd, const float *dy,
                         float *dx, float *dw);

/* ---------------------------------------------------------------- RoPE
 * Rotary embedding in the rotate_half convention of transformers: element i
 * pairs with i + head_dim/2, angle = position * inv_freq[i]. inv_freq
 * (head_dim/2 values) already carries any scaling rule (llama3, linear): see
 * rv_rope_inv_freq in model_config.h. rv_rope_table_init computes the
 * angles in double; a table may instead be filled by rv_rope_tables()
 * (ops.h, float32 angles as transformers computes them): the layout is the
 * same, [max_pos, head_dim/2], and the ops only read max_pos, half, cos, sin. */
typedef struct {
    int max_pos, half;     /* positions 0..max_pos-1; half = head_dim/2 */
    float *cos, *sin;      /* [max_pos, half] */
} rv_rope_table;

int rv_rope_table_init(rv_rope_table *t, int max_pos, int head_dim, const float *inv_freq);
void rv_rope_table_free(rv_rope_table *t);

/* Rotates x[n_rows, n_heads, head_dim] in place; row r has position
 * r % seq_len (sequences stored back to back). seq_len <= t->max_pos. */
void rv_rope_forward(const rv_rope_table *t, size_t n_rows, int seq_len, int n_heads, int head_dim, float *x);
/* The transpose (rotation by -angle), applied in place to a gradient. */
void rv_rope_backward(const rv_rope_table *t, size_t n_rows, int seq_len, int n_heads, int head_dim, float *dx);

/* ---------------------------------------------------------------- attention */
typedef struct {
    int batch, seq_len, n_heads, n_kv_heads, head_dim;   /* n_heads % n_kv_heads == 0 */
} rv_attn_shape;

/* Causal self-attention with grouped K/V heads (query head h reads kv head
 * h / (n_heads/n_kv_heads)) and key padding: query t of sequence b sees keys
 * s <= t with s < lengths[b]; padded query rows see all real keys s <= t.
 * q, out: [batch, seq_len, n_heads, head_dim]; k, v: [.., n_kv_heads, ..];
 * lse[batch, n_heads, seq_len] (log-sum-exp of each row's scaled scores)
 * saved for the backward, which recomputes the probabilities. */
int rv_causal_attn_forward(const rv_attn_shape *s, const int *lengths, const float *q, const float *k,
                           const float *v, float *out, float *lse);
int rv_causal_attn_backward(const rv_attn_shape *s, const int *lengths, const float *q, const float *k,
                            const float *v, const float *out, const float *lse, const float *dout, float *dq,
                            float *dk, float *dv);

/* Checks shape fields and lengths; names the first bad value. */
int rv_attn_shape_check(const rv_attn_shape *s, const int *lengths);

/* ---------------------------------------------------------------- SwiGLU
 * out = silu(gate) * up, silu(g) = g * sigmoid(g). */
void rv_swiglu_forward(size_t n, const float *gate, const float *up, float *out);
void rv_swiglu_backward(size_t n, const float *gate, const float *up, const float *dout, float *dgate, float *dup);

/* ---------------------------------------------------------------- LM head + cross-entropy
 * Next-token targets of a padded batch: targets[b*seq_len + t] =
 * ids[b*seq_len + t + 1] when t + 1 < lengths[b], else -100 (ignored).
 * Returns the number of valid targets. This is transformers' shifted labels
 * with pad positions set to -100, taken from lengths. */
size_t rv_lm_targets(int batch, int seq_len, const int32_t *ids, const int *lengths, int32_t *targets);

/* Fused LM head and cross-entropy over rows x[n, dim] (final-normed hidden
 * states) with head[vocab, dim]: *loss_sum = sum over rows with
 * targets[r] >= 0 of logsumexp(x_r head^T) - (x_r head^T)[targets[r]].
 * When dx is not NULL, dx_r += grad_scale * (softmax_r - onehot_r) head
 * (grad_scale = 1/n_targets for the token mean). Valid rows are processed in
 * blocks, so at most a block of rows times the vocabulary is held at once
 * (per thread); no full logits tensor. Targets >= vocab are an error.
 * When dhead is not NULL (full-parameter training), dhead[vocab, dim] +=
 * grad_scale * (softmax - onehot)^T x as well; the blocks then run on one
 * thread in order (BLAS still threads each product). */
int rv_lm_head_ce(size_t n, int dim, int vocab, const float *x, const float *head, const int32_t *targets,
                  float grad_scale, double *loss_sum, float *dx, float *dhead);

/* ---------------------------------------------------------------- EOS pooling
 * e[b] = h[b, lengths[b]-1] / max(||h[b, lengths[b]-1]||, 1e-12) for
 * h[batch*seq_len, dim]; norm[b] (the unclamped L2 norm) saved. */
void rv_eos_pool_l2_forward(int batch, int seq_len, int dim, const int *lengths, const float *h, float *e,
                            float *norm);
/* dh rows lengths[b]-1 += (de - e (e·de)) / ||h|| (or de / 1e-12 when clamped). */
void rv_eos_pool_l2_backward(int batch, int seq_len, int dim, const int *lengths, const float *e,
                             const float *norm, const float *de, float *dh);

/* ---------------------------------------------------------------- embeddings
 * out[r] = table[ids[r]]; ids outside [0, vocab) are an error naming the row. */
int rv_embed_lookup(size_t n, int dim, int vocab, const float *table, const int32_t *ids, float *out);
/* dtable[ids[r]] += dout[r] (ids already checked by the lookup). */
void rv_embed_backward(size_t n, int dim, const int32_t *ids, const float *dout, float *dtable);

/* ---------------------------------------------------------------- full-parameter linear
 * The frozen-weight gradients of y = x W^T + bias, for full-parameter
 * training: dweight[out, in] += dy^T x, dbias[out] += column sums of dy
 * (either may be NULL). */
int rv_linear_weight_grad(size_t n, int in, int out, const float *x, const float *dy, float *dweight, float *dbias);

#endif
