/* ops.h — the operations the model runtime is written against, each a plain
 * function on float32 arrays with explicit shapes (row-major). ops_cpu.c is
 * the CPU backend (fp32, BLAS for the matrix products, OpenMP across rows and
 * heads); a CUDA backend implements the same signatures, and backward ops
 * will sit beside the forward ones. Weights may be stored as f32, bf16 or f16
 * (rv_weight); they are widened to f32 per matrix into caller scratch.
 *
 * Layout conventions: a "row" is one token. Activations of T tokens with
 * width W are T×W, row stride given where rows may be strided. Linear weights
 * are out×in (PyTorch nn.Linear order): y = x Wᵀ + b. */
#ifndef RV_OPS_H
#define RV_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { RV_WT_F32, RV_WT_BF16, RV_WT_F16 } rv_wtype;

/* A matrix of rows × cols elements, row-major, possibly unaligned (bf16/f16)
 * and possibly inside a read-only mapping. */
typedef struct {
    const void *data;
    rv_wtype type;
    size_t rows, cols;
} rv_weight;

const char *rv_wtype_name(rv_wtype t);
size_t rv_wtype_size(rv_wtype t);

/* Widens rows [r0, r0+n) of w into dst (n × cols floats). */
void rv_weight_rows_f32(const rv_weight *w, size_t r0, size_t n, float *dst);

/* Scratch floats rv_op_linear needs for w (0 for aligned f32). */
size_t rv_op_linear_scratch(const rv_weight *w);

/* y[m×out] = x[m×in] · wᵀ (+ bias[out] when not NULL). `scratch` holds at
 * least rv_op_linear_scratch(w) floats. y and x must not overlap. */
void rv_op_linear(float *y, const float *x, size_t m, const rv_weight *w, const float *bias, float *scratch);

/* c[m×n] = alpha · a[m×k] · bᵀ (b is n×k) + beta · c. */
void rv_op_matmul_nt(float *c, const float *a, const float *b, size_t m, size_t n, size_t k, float alpha,
                     float beta);

/* y[i] = x[i] / sqrt(mean(x[i]²) + eps) · w, for `rows` rows of `dim`. y may be x. */
void rv_op_rmsnorm(float *y, const float *x, const float *w, size_t rows, size_t dim, float eps);

/* Rotary embedding in the Hugging Face (rotate_half) layout: for each token
 * t and head h, the pair (x[i], x[i+hd/2]) is rotated by pos[t]·inv_freq[i].
 * x has n_tok rows of stride `stride`, heads packed at h·head_dim. The
 * cos/sin tables are [max_pos × head_dim/2]. */
void rv_op_rope(float *x, size_t n_tok, size_t stride, size_t n_heads, size_t head_dim, const uint32_t *pos,
                const float *cos_tab, const float *sin_tab);

/* cos/sin tables for positions [0, n_pos) from head_dim/2 inverse
 * frequencies: angle = (float)pos · inv_freq (float32, as transformers). */
void rv_rope_tables(const float *inv_freq, size_t half, size_t n_pos, float *cos_tab, float *sin_tab);

/* Causal self-attention over packed sequences (sequence s is rows
 * seq_off[s] ≤ t < seq_off[s+1]; a token sees only earlier tokens of its
 * own sequence, so no padding is ever computed). Grouped-query: query head h
 * reads key/value head h / (n_heads / n_kv_heads). q and out have rows of
 * n_heads·head_dim at stride q_stride/out_stride; k and v rows of
 * n_kv_heads·head_dim at stride kv_stride. Softmax in fp32 with scale
 * 1/sqrt(head_dim). Returns 0, or -1 when scratch cannot be allocated. */
int rv_op_attention_causal(float *out, size_t out_stride, const float *q, size_t q_stride, const float *k,
                           const float *v, size_t kv_stride, size_t n_seqs, const size_t *seq_off,
                           size_t n_heads, size_t n_kv_heads, size_t head_dim);

/* h[i] = silu(gate[i]) · up[i] for n elements; h may be gate. */
void rv_op_swiglu(float *h, const float *gate, const float *up, size_t n);

/* y[i] += x[i]. */
void rv_op_add(float *y, const float *x, size_t n);

/* y[t] = table[ids[t]] (widened) for n tokens; ids must be < table->rows. */
void rv_op_embedding(float *y, const rv_weight *table, const uint32_t *ids, size_t n);

/* Scales each of `rows` rows of dim to unit L2 norm (zero rows stay zero). */
void rv_op_l2_normalize(float *x, size_t rows, size_t dim);

/* Sets BLAS and OpenMP threads (0: leave the defaults). */
void rv_ops_set_threads(int n);

#endif
