/* train_ops.c — CPU forward/backward of the transformer training ops
 * (see train_ops.h for shapes and conventions). Matrix products go through
 * BLAS; loops over rows, heads and sequences are OpenMP-parallel where the
 * written outputs are disjoint between iterations. Reductions that decide
 * accuracy (norms, softmax sums, loss) accumulate in double. */
#include "train_ops.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "splitmix.h"
#include "train_ops_blas.h"

static int check_rows(size_t n, const char *op)
{
    if (n > (size_t)RV_TRAIN_MAX_DIM)
        return rv_error_set("%s: expected at most %d rows, found %zu", op, RV_TRAIN_MAX_DIM, n);
    return 0;
}

/* ---------------------------------------------------------------- linear + LoRA */
int rv_lora_linear_forward(const rv_lora_linear *l, size_t n, const float *x, const float *x_lora, float *xa,
                           float *y)
{
    if (check_rows(n, "lora_linear_forward") != 0)
        return -1;
    int N = (int)n, in = l->in, out = l->out, r = l->rank;
    if (r > 0 && (!xa || !x_lora || !l->lora_a || !l->lora_b))
        return rv_error_set("lora_linear_forward: rank %d needs lora_a, lora_b, x_lora and xa", r);
    rv_gemm(0, 1, N, out, in, 1.0f, x, in, l->weight, in, 0.0f, y, out);
    if (l->bias) {
        #pragma omp parallel for schedule(static) if ((size_t)N * out >= RV_PAR_MIN_WORK)
        for (int i = 0; i < N; i++)
            for (int o = 0; o < out; o++)
                y[(size_t)i * out + o] += l->bias[o];
    }
    if (r > 0) {
        rv_gemm(0, 1, N, r, in, 1.0f, x_lora, in, l->lora_a, in, 0.0f, xa, r);
        rv_gemm(0, 1, N, out, r, l->scale, xa, r, l->lora_b, r, 1.0f, y, out);
    }
    return 0;
}

int rv_lora_linear_backward(const rv_lora_linear *l, size_t n, const float *x_lora, const float *keep,
                            const float *xa, const float *dy, float *dx, float *d_lora_a, float *d_lora_b)
{
    if (check_rows(n, "lora_linear_backward") != 0)
        return -1;
    int N = (int)n, in = l->in, out = l->out, r = l->rank;
    if (dx)
        rv_gemm(0, 0, N, in, out, 1.0f, dy, out, l->weight, in, 1.0f, dx, in);
    if (r <= 0 || n == 0)
        return 0;
    if (d_lora_b)   /* dB[out, r] += scale dy^T xa */
        rv_gemm(1, 0, out, r, N, l->scale, dy, out, xa, r, 1.0f, d_lora_b, r);
    if (!d_lora_a && !dx)
        return 0;
    size_t g_count;
    if (rv_size_mul(n, (size_t)r, &g_count, "lora_linear_backward scratch") != 0)
        return -1;
    float *g = rv_malloc(g_count * sizeof *g);   /* g = scale dy B: the gradient at x_lora A^T */
    if (!g)
        return -1;
    rv_gemm(0, 0, N, r, out, l->scale, dy, out, l->lora_b, r, 0.0f, g, r);
    if (d_lora_a)
        rv_gemm(1, 0, r, in, N, 1.0f, g, r, x_lora, in, 1.0f, d_lora_a, in);
    int rc = 0;
    if (dx && !keep) {
        rv_gemm(0, 0, N, in, r, 1.0f, g, r, l->lora_a, in, 1.0f, dx, in);
    } else if (dx) {
        size_t t_count;
        float *t = NULL;
        if (rv_size_mul(n, (size_t)in, &t_count, "lora_linear_backward scratch") != 0 ||
            !(t = rv_malloc(t_count * sizeof *t))) {
            rc = -1;
        } else {
            rv_gemm(0, 0, N, in, r, 1.0f, g, r, l->lora_a, in, 0.0f, t, in);
            #pragma omp parallel for schedule(static) if (t_count >= RV_PAR_MIN_WORK)
            for (size_t i = 0; i < t_count; i++)
                dx[i] += keep[i] * t[i];
        }
        free(t);
    }
    free(g);
    return rc;
}


void rv_lora_init(int rank, int in, int out, uint64_t seed, uint64_t stream, float *lora_a, float *lora_b)
{
    uint64_t key = rv_mix64(seed ^ rv_mix64(stream));
    double bound = 1.0 / sqrt((double)in);
    size_t na = (size_t)rank * in, nb = (size_t)out * rank;
    for (size_t i = 0; i < na; i++) {
        double u = (double)(rv_mix64(key + i) >> 11) * (1.0 / 9007199254740992.0);   /* 53 bits, [0, 1) */
        lora_a[i] = (float)((2.0 * u - 1.0) * bound);
    }
    memset(lora_b, 0, nb * sizeof *lora_b);
}

void rv_dropout_keep_mask(size_t n, float p, uint64_t seed, uint64_t stream, float *keep)
{
    float kept = p > 0.0f && p < 1.0f ? 1.0f / (1.0f - p) : (p >= 1.0f ? 0.0f : 1.0f);
    uint64_t key = rv_mix64(seed ^ rv_mix64(stream));
    #pragma omp parallel for schedule(static) if (n >= RV_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        /* 24 random bits -> u in [0, 1): exact in float, so u < p is exact */
        float u = (float)(rv_mix64(key + i) >> 40) * (1.0f / 16777216.0f);
        keep[i] = (p > 0.0f && u < p) ? 0.0f : kept;
    }
}

void rv_mul(size_t n, const float *a, const float *b, float *out)
{
    #pragma omp parallel for schedule(static) if (n >= RV_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

/* ---------------------------------------------------------------- RMSNorm */
void rv_rmsnorm_forward(size_t n, int dim, const float *x, const float *w, float eps, float *y, float *rstd)
{
    #pragma omp parallel for schedule(static) if (n * (size_t)dim >= RV_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        const float *xr = x + i * dim;
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)xr[d] * xr[d];
        float r = (float)(1.0 / sqrt(ss / dim + (double)eps));
        rstd[i] = r;
        for (int d = 0; d < dim; d++)
            y[i * dim + d] = xr[d] * r * w[d];
    }
}

void rv_rmsnorm_backward(size_t n, int dim, const float *x, const float *w, const float *rstd, const float *dy,
                         float *dx, float *dw)
{
    if (dx) {
        #pragma omp parallel for schedule(static) if (n * (size_t)dim >= RV_PAR_MIN_WORK)
        for (size_t i = 0; i < n; i++) {
            const float *xr = x + i * dim, *g = dy + i * dim;
            double r = rstd[i], dot = 0;
            for (int d = 0; d < dim; d++)
                dot += (double)g[d] * w[d] * xr[d];
            double c = dot * r * r * r / dim;   /* d r / d x_k = -x_k r^3 / dim */
            for (int d = 0; d < dim; d++)
                dx[i * dim + d] += (float)(r * g[d] * w[d] - c * xr[d]);
        }
    }
    if (dw) {
        #pragma omp parallel for schedule(static) if (n * (size_t)dim >= RV_PAR_MIN_WORK)
        for (int d = 0; d < dim; d++) {
            double s = 0;
            for (size_t i = 0; i < n; i++)
                s += (double)dy[i * dim + d] * x[i * dim + d] * rstd[i];
            dw[d] += (float)s;
        }
    }
}

/* ---------------------------------------------------------------- RoPE */
int rv_rope_table_init(rv_rope_table *t, int max_pos, int head_dim, const float *inv_freq)
{
    memset(t, 0, sizeof *t);
    if (max_pos <= 0 || head_dim <= 0 || head_dim % 2 != 0)
        return rv_error_set("rope: expected positive max_pos and an even head_dim, found %d and %d", max_pos,
                            head_dim);
    int half = head_dim / 2;
    size_t count;
    if (rv_size_mul((size_t)max_pos, (size_t)half, &count, "rope table") != 0)
        return -1;
    t->cos = rv_malloc(count * sizeof(float));
    t->sin = rv_malloc(count * sizeof(float));
    if (!t->cos || !t->sin) {
        rv_rope_table_free(t);
        return -1;
    }
    t->max_pos = max_pos;
    t->half = half;
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * (double)inv_freq[i];
            t->cos[(size_t)p * half + i] = (float)cos(a);
            t->sin[(size_t)p * half + i] = (float)sin(a);
        }
    return 0;
}

void rv_rope_table_free(rv_rope_table *t)
{
    free(t->cos);
    free(t->sin);
    t->cos = t->sin = NULL;
    t->max_pos = t->half = 0;
}

/* direction +1: rotate by +angle (forward); -1: by -angle (backward). */
static void rope_apply(const rv_rope_table *t, size_t n_rows, int seq_len, int n_heads, int head_dim, float *x,
                       float direction)
{
    int half = head_dim / 2;
    #pragma omp parallel for schedule(static) if (n_rows * (size_t)n_heads * head_dim >= RV_PAR_MIN_WORK)
    for (size_t r = 0; r < n_rows; r++) {
        size_t pos = r % (size_t)seq_len;
        const float *c = t->cos + pos * half, *s = t->sin + pos * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (r * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], sn = direction * s[i];
                v[i] = a * c[i] - b * sn;
                v[i + half] = b * c[i] + a * sn;
            }
        }
    }
}

void rv_rope_forward(const rv_rope_table *t, size_t n_rows, int seq_len, int n_heads, int head_dim, float *x)
{
    rope_apply(t, n_rows, seq_len, n_heads, head_dim, x, 1.0f);
}

void rv_rope_backward(const rv_rope_table *t, size_t n_rows, int seq_len, int n_heads, int head_dim, float *dx)
{
    rope_apply(t, n_rows, seq_len, n_heads, head_dim, dx, -1.0f);
}

/* ---------------------------------------------------------------- causal attention */
int rv_attn_shape_check(const rv_attn_shape *s, const int *lengths)
{
    if (s->batch <= 0 || s->seq_len <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0)
        return rv_error_set("attention: expected positive batch, seq_len, heads, kv heads and head_dim, found "
                            "%d, %d, %d, %d, %d", s->batch, s->seq_len, s->n_heads, s->n_kv_heads, s->head_dim);
    if (s->n_heads % s->n_kv_heads != 0)
        return rv_error_set("attention: n_heads (%d) is not a multiple of n_kv_heads (%d)", s->n_heads,
                            s->n_kv_heads);
    size_t rows, width;
    if (rv_size_mul((size_t)s->batch, (size_t)s->seq_len, &rows, "attention rows") != 0 ||
        rv_size_mul((size_t)s->n_heads, (size_t)s->head_dim, &width, "attention width") != 0)
        return -1;
    if (rows > (size_t)RV_TRAIN_MAX_DIM || width > (size_t)RV_TRAIN_MAX_DIM)
        return rv_error_set("attention: batch*seq_len (%zu) or heads*head_dim (%zu) exceeds %d", rows, width,
                            RV_TRAIN_MAX_DIM);
    for (int b = 0; b < s->batch; b++)
        if (lengths[b] < 1 || lengths[b] > s->seq_len)
            return rv_error_set("attention: lengths[%d]: expected 1..%d, found %d", b, s->seq_len, lengths[b]);
    return 0;
}

int rv_causal_attn_forward(const rv_attn_shape *s, const int *lengths, const float *q, const float *k,
                           const float *v, float *out, float *lse)
{
    if (rv_attn_shape_check(s, lengths) != 0)
        return -1;
    const int B = s->batch, L = s->seq_len, H = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim;
    const int rep = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const float scale = (float)(1.0 / sqrt((double)hd));
    int failed = 0;
    #pragma omp parallel if ((size_t)B * H * L * L * hd >= RV_PAR_MIN_WORK)
    {
        float *P = malloc((size_t)L * L * sizeof *P);
        if (!P) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                if (!P)
                    continue;
                int nk = lengths[b], g = h / rep;
                const float *Q = q + (size_t)b * L * ldq + (size_t)h * hd;
                const float *K = k + (size_t)b * L * ldk + (size_t)g * hd;
                const float *V = v + (size_t)b * L * ldk + (size_t)g * hd;
                rv_gemm(0, 1, L, nk, hd, scale, Q, ldq, K, ldk, 0.0f, P, nk);
                for (int t = 0; t < L; t++) {
                    float *row = P + (size_t)t * nk;
                    int lim = t + 1 < nk ? t + 1 : nk;   /* keys s <= t and s < len */
                    float m = -FLT_MAX;
                    for (int j = 0; j < lim; j++)
                        m = row[j] > m ? row[j] : m;
                    double sum = 0;
                    for (int j = 0; j < lim; j++)
                        sum += (row[j] = expf(row[j] - m));
                    float inv = (float)(1.0 / sum);
                    for (int j = 0; j < lim; j++)
                        row[j] *= inv;
                    for (int j = lim; j < nk; j++)
                        row[j] = 0.0f;
                    lse[((size_t)b * H + h) * L + t] = m + (float)log(sum);
                }
                rv_gemm(0, 0, L, hd, nk, 1.0f, P, nk, V, ldk, 0.0f, out + (size_t)b * L * ldq + (size_t)h * hd,
                        ldq);
            }
        free(P);
    }
    if (failed)
        return rv_error_set("causal_attn_forward: out of memory for a %dx%d score tile", L, L);
    return 0;
}

int rv_causal_attn_backward(const rv_attn_shape *s, const int *lengths, const float *q, const float *k,
                            const float *v, const float *out, const float *lse, const float *dout, float *dq,
                            float *dk, float *dv)
{
    if (rv_attn_shape_check(s, lengths) != 0)
        return -1;
    const int B = s->batch, L = s->seq_len, H = s->n_heads, Hkv = s->n_kv_heads, hd = s->head_dim;
    const int rep = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const float scale = (float)(1.0 / sqrt((double)hd));
    int failed = 0;
    /* One task per (sequence, kv head): it owns dk/dv of that kv head and dq
     * of the query heads that read it, so no two tasks write the same value. */
    #pragma omp parallel if ((size_t)B * H * L * L * hd >= RV_PAR_MIN_WORK)
    {
        float *P = malloc((size_t)L * L * sizeof *P), *dP = malloc((size_t)L * L * sizeof *dP);
        if (!P || !dP) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < Hkv; g++) {
                if (!P || !dP)
                    continue;
                int nk = lengths[b];
                const float *K = k + (size_t)b * L * ldk + (size_t)g * hd;
                const float *V = v + (size_t)b * L * ldk + (size_t)g * hd;
                for (int h = g * rep; h < (g + 1) * rep; h++) {
                    size_t qoff = (size_t)b * L * ldq + (size_t)h * hd;
                    const float *Q = q + qoff, *O = out + qoff, *dO = dout + qoff;
                    rv_gemm(0, 1, L, nk, hd, scale, Q, ldq, K, ldk, 0.0f, P, nk);
                    rv_gemm(0, 1, L, nk, hd, 1.0f, dO, ldq, V, ldk, 0.0f, dP, nk);
                    for (int t = 0; t < L; t++) {
                        float *p = P + (size_t)t * nk, *dp = dP + (size_t)t * nk;
                        int lim = t + 1 < nk ? t + 1 : nk;
                        float l = lse[((size_t)b * H + h) * L + t];
                        double D = 0;   /* sum_s P dP = dO . O */
                        for (int d = 0; d < hd; d++)
                            D += (double)dO[(size_t)t * ldq + d] * O[(size_t)t * ldq + d];
                        for (int j = 0; j < lim; j++) {
                            p[j] = expf(p[j] - l);
                            dp[j] = p[j] * (dp[j] - (float)D) * scale;
                        }
                        for (int j = lim; j < nk; j++)
                            p[j] = dp[j] = 0.0f;
                    }
                    if (dq)
                        rv_gemm(0, 0, L, hd, nk, 1.0f, dP, nk, K, ldk, 1.0f, dq + qoff, ldq);
                    if (dk)
                        rv_gemm(1, 0, nk, hd, L, 1.0f, dP, nk, Q, ldq, 1.0f, dk + (size_t)b * L * ldk + (size_t)g * hd,
                                ldk);
                    if (dv)
                        rv_gemm(1, 0, nk, hd, L, 1.0f, P, nk, dO, ldq, 1.0f, dv + (size_t)b * L * ldk + (size_t)g * hd,
                                ldk);
                }
            }
        free(P);
        free(dP);
    }
    if (failed)
        return rv_error_set("causal_attn_backward: out of memory for %dx%d score tiles", L, L);
    return 0;
}

/* ---------------------------------------------------------------- SwiGLU */
void rv_swiglu_forward(size_t n, const float *gate, const float *up, float *out)
{
    #pragma omp parallel for schedule(static) if (n >= RV_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void rv_swiglu_backward(size_t n, const float *gate, const float *up, const float *dout, float *dgate, float *dup)
{
    #pragma omp parallel for schedule(static) if (n >= RV_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], sig = 1.0f / (1.0f + expf(-g)), silu = g * sig;
        if (dup)
            dup[i] += dout[i] * silu;
        if (dgate)
            dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    }
}

/* ---------------------------------------------------------------- LM head + CE */
size_t rv_lm_targets(int batch, int seq_len, const int32_t *ids, const int *lengths, int32_t *targets)
{
    size_t valid = 0;
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < seq_len; t++) {
            size_t r = (size_t)b * seq_len + t;
            if (t + 1 < lengths[b]) {
                targets[r] = ids[r + 1];
                valid++;
            } else {
                targets[r] = -100;
            }
        }
    return valid;
}

enum { CE_BLOCK = 32 };   /* rows per logits block: CE_BLOCK * vocab floats per thread */

int rv_lm_head_ce(size_t n, int dim, int vocab, const float *x, const float *head, const int32_t *targets,
                  float grad_scale, double *loss_sum, float *dx, float *dhead)
{
    *loss_sum = 0;
    if (dim <= 0 || vocab <= 0)
        return rv_error_set("lm_head_ce: expected positive dim and vocab, found %d and %d", dim, vocab);
    size_t n_valid = 0;
    for (size_t r = 0; r < n; r++) {
        if (targets[r] >= vocab)
            return rv_error_set("lm_head_ce: targets[%zu]: expected -100 or 0..%d, found %d", r, vocab - 1,
                                (int)targets[r]);
        n_valid += targets[r] >= 0;
    }
    if (n_valid == 0)
        return 0;
    size_t *rows = rv_malloc(n_valid * sizeof *rows);
    if (!rows)
        return -1;
    n_valid = 0;
    for (size_t r = 0; r < n; r++)
        if (targets[r] >= 0)
            rows[n_valid++] = r;
    size_t n_blocks = (n_valid + CE_BLOCK - 1) / CE_BLOCK;
    /* per-block sums added in block order: the loss does not depend on the
     * thread count or schedule */
    double *block_loss = calloc(n_blocks ? n_blocks : 1, sizeof *block_loss);
    if (!block_loss) {
        free(rows);
        return rv_error_set("lm_head_ce: out of memory");
    }
    int failed = 0;
    /* dhead is summed over blocks: one thread then, in block order, so the
     * result does not depend on the schedule (BLAS threads the products) */
    #pragma omp parallel if (!dhead && n_valid * (size_t)vocab * dim >= RV_PAR_MIN_WORK)
    {
        float *logits = malloc((size_t)CE_BLOCK * vocab * sizeof *logits);
        float *xb = malloc((size_t)CE_BLOCK * dim * sizeof *xb);
        float *dxb = malloc((size_t)CE_BLOCK * dim * sizeof *dxb);
        if (!logits || !xb || !dxb) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(dynamic)
        for (size_t blk = 0; blk < n_blocks; blk++) {
            if (!logits || !xb || !dxb)
                continue;
            size_t first = blk * CE_BLOCK;
            int nb = (int)(n_valid - first < CE_BLOCK ? n_valid - first : CE_BLOCK);
            for (int i = 0; i < nb; i++)
                memcpy(xb + (size_t)i * dim, x + rows[first + i] * dim, (size_t)dim * sizeof *xb);
            rv_gemm(0, 1, nb, vocab, dim, 1.0f, xb, dim, head, dim, 0.0f, logits, vocab);
            for (int i = 0; i < nb; i++) {
                float *z = logits + (size_t)i * vocab;
                int tgt = targets[rows[first + i]];
                float m = -FLT_MAX;
                for (int c = 0; c < vocab; c++)
                    m = z[c] > m ? z[c] : m;
                double sum = 0;
                for (int c = 0; c < vocab; c++)
                    sum += exp((double)z[c] - m);
                double lse = m + log(sum);
                block_loss[blk] += lse - z[tgt];
                if (dx || dhead) {   /* the logits row becomes its gradient */
                    for (int c = 0; c < vocab; c++)
                        z[c] = (float)(exp((double)z[c] - lse) * grad_scale);
                    z[tgt] -= grad_scale;
                }
            }
            if (dhead)   /* dhead[vocab, dim] += dlogits^T xb */
                rv_gemm(1, 0, vocab, dim, nb, 1.0f, logits, vocab, xb, dim, 1.0f, dhead, dim);
            if (dx) {
                rv_gemm(0, 0, nb, dim, vocab, 1.0f, logits, vocab, head, dim, 0.0f, dxb, dim);
                for (int i = 0; i < nb; i++) {
                    float *d = dx + rows[first + i] * dim;
                    for (int c = 0; c < dim; c++)
                        d[c] += dxb[(size_t)i * dim + c];
                }
            }
        }
        free(logits);
        free(xb);
        free(dxb);
    }
    free(rows);
    double loss = 0;
    for (size_t blk = 0; blk < n_blocks; blk++)
        loss += block_loss[blk];
    free(block_loss);
    if (failed)
        return rv_error_set("lm_head_ce: out of memory for a %dx%d logits block", CE_BLOCK, vocab);
    *loss_sum = loss;
    return 0;
}

/* ---------------------------------------------------------------- EOS pooling */
#define POOL_NORM_EPS 1e-12   /* F.normalize's eps */

void rv_eos_pool_l2_forward(int batch, int seq_len, int dim, const int *lengths, const float *h, float *e,
                            float *norm)
{
    for (int b = 0; b < batch; b++) {
        const float *row = h + ((size_t)b * seq_len + lengths[b] - 1) * dim;
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)row[d] * row[d];
        double nrm = sqrt(ss), den = nrm > POOL_NORM_EPS ? nrm : POOL_NORM_EPS;
        norm[b] = (float)nrm;
        for (int d = 0; d < dim; d++)
            e[(size_t)b * dim + d] = (float)(row[d] / den);
    }
}

void rv_eos_pool_l2_backward(int batch, int seq_len, int dim, const int *lengths, const float *e,
                             const float *norm, const float *de, float *dh)
{
    for (int b = 0; b < batch; b++) {
        const float *eb = e + (size_t)b * dim, *g = de + (size_t)b * dim;
        float *d = dh + ((size_t)b * seq_len + lengths[b] - 1) * dim;
        double nrm = norm[b];
        if (nrm <= POOL_NORM_EPS) {   /* clamped: e = h / eps is linear in h */
            for (int c = 0; c < dim; c++)
                d[c] += (float)(g[c] / POOL_NORM_EPS);
            continue;
        }
        double dot = 0;
        for (int c = 0; c < dim; c++)
            dot += (double)eb[c] * g[c];
        for (int c = 0; c < dim; c++)
            d[c] += (float)((g[c] - eb[c] * dot) / nrm);
    }
}

/* ---------------------------------------------------------------- embeddings */
void rv_embed_backward(size_t n, int dim, const int32_t *ids, const float *dout, float *dtable)
{
    for (size_t r = 0; r < n; r++) {   /* serial: rows with the same id add in row order */
        float *d = dtable + (size_t)ids[r] * dim;
        const float *g = dout + r * dim;
        for (int c = 0; c < dim; c++)
            d[c] += g[c];
    }
}

int rv_linear_weight_grad(size_t n, int in, int out, const float *x, const float *dy, float *dweight, float *dbias)
{
    if (n > (size_t)INT_MAX || in <= 0 || out <= 0)
        return rv_error_set("linear_weight_grad: expected 0 < rows <= %d and positive sizes, found %zu rows %dx%d",
                            INT_MAX, n, out, in);
    if (dweight && n > 0)
        rv_gemm(1, 0, out, in, (int)n, 1.0f, dy, out, x, in, 1.0f, dweight, in);
    if (dbias)
        for (size_t r = 0; r < n; r++)
            for (int o = 0; o < out; o++)
                dbias[o] += dy[r * out + o];
    return 0;
}

int rv_embed_lookup(size_t n, int dim, int vocab, const float *table, const int32_t *ids, float *out)
{
    for (size_t r = 0; r < n; r++) {
        if (ids[r] < 0 || ids[r] >= vocab)
            return rv_error_set("embed_lookup: ids[%zu]: expected 0..%d, found %d", r, vocab - 1, (int)ids[r]);
        memcpy(out + r * dim, table + (size_t)ids[r] * dim, (size_t)dim * sizeof *out);
    }
    return 0;
}
