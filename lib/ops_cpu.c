/* ops_cpu.c — the CPU backend of ops.h: fp32 throughout, OpenBLAS sgemm for
 * the matrix products (threaded by BLAS), OpenMP across (sequence, head)
 * pairs in attention. The element-wise ops are memory-bound and cheap next
 * to the matrix products, so they run on the calling thread: an OpenMP
 * region per op would leave its spinning workers competing with BLAS's own
 * threads for the cores. */
#include "ops.h"
#include "error.h"
#include "half.h"

#include "gemm.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

const char *rv_wtype_name(rv_wtype t)
{
    return t == RV_WT_BF16 ? "bf16" : t == RV_WT_F16 ? "f16" : "f32";
}

size_t rv_wtype_size(rv_wtype t) { return t == RV_WT_F32 ? 4 : 2; }

static inline uint16_t load_u16(const unsigned char *p)
{
    uint16_t u;
    memcpy(&u, p, 2);   /* little-endian hosts only (as is the whole library) */
    return u;
}

static int direct_f32(const rv_weight *w)
{
    return w->type == RV_WT_F32 && ((uintptr_t)w->data % sizeof(float)) == 0;
}

void rv_weight_rows_f32(const rv_weight *w, size_t r0, size_t n, float *dst)
{
    size_t cols = w->cols, count = n * cols;
    const unsigned char *src = (const unsigned char *)w->data + r0 * cols * rv_wtype_size(w->type);
    switch (w->type) {
    case RV_WT_F32:
        memcpy(dst, src, count * sizeof(float));
        break;
    case RV_WT_BF16:
        for (size_t i = 0; i < count; i++)
            dst[i] = rv_bits_f32((uint32_t)load_u16(src + 2 * i) << 16);
        break;
    case RV_WT_F16:
        for (size_t i = 0; i < count; i++)
            dst[i] = rv_f16_to_f32(load_u16(src + 2 * i));
        break;
    }
}

size_t rv_op_linear_scratch(const rv_weight *w)
{
    return direct_f32(w) ? 0 : w->rows * w->cols;
}

/* Widens the whole matrix, rows split across threads. */
static void widen_all(const rv_weight *w, float *dst)
{
    long long rows = (long long)w->rows, step = 64;
#pragma omp parallel for schedule(static)
    for (long long r = 0; r < rows; r += step) {
        size_t n = (size_t)(r + step <= rows ? step : rows - r);
        rv_weight_rows_f32(w, (size_t)r, n, dst + (size_t)r * w->cols);
    }
}

void rv_op_linear(float *y, const float *x, size_t m, const rv_weight *w, const float *bias, float *scratch)
{
    if (m == 0)
        return;
    const float *wf = direct_f32(w) ? (const float *)w->data : scratch;
    if (wf == scratch)
        widen_all(w, scratch);
    size_t n = w->rows, k = w->cols;
    float beta = 0.0f;
    if (bias) {
        for (long long i = 0; i < (long long)m; i++)
            memcpy(y + (size_t)i * n, bias, n * sizeof(float));
        beta = 1.0f;
    }
    rv_gemm(0, 1, (int)m, (int)n, (int)k, 1.0f, x, (int)k, wf, (int)k, beta, y, (int)n);
}

void rv_op_matmul_nt(float *c, const float *a, const float *b, size_t m, size_t n, size_t k, float alpha, float beta)
{
    if (m == 0 || n == 0)
        return;
    rv_gemm(0, 1, (int)m, (int)n, (int)k, alpha, a, (int)k, b, (int)k, beta, c, (int)n);
}

void rv_op_rmsnorm(float *y, const float *x, const float *w, size_t rows, size_t dim, float eps)
{
    for (long long r = 0; r < (long long)rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double ss = 0.0;
        for (size_t i = 0; i < dim; i++)
            ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
#pragma omp simd
        for (size_t i = 0; i < dim; i++)
            yr[i] = w[i] * (xr[i] * inv);
    }
}

void rv_rope_tables(const float *inv_freq, size_t half, size_t n_pos, float *cos_tab, float *sin_tab)
{
    for (size_t p = 0; p < n_pos; p++)
        for (size_t i = 0; i < half; i++) {
            float angle = (float)p * inv_freq[i];
            cos_tab[p * half + i] = (float)cos((double)angle);
            sin_tab[p * half + i] = (float)sin((double)angle);
        }
}

void rv_op_rope(float *x, size_t n_tok, size_t stride, size_t n_heads, size_t head_dim, const uint32_t *pos,
                const float *cos_tab, const float *sin_tab)
{
    size_t half = head_dim / 2;
    for (long long t = 0; t < (long long)n_tok; t++) {
        const float *c = cos_tab + (size_t)pos[t] * half, *s = sin_tab + (size_t)pos[t] * half;
        for (size_t h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * stride + h * head_dim;
#pragma omp simd
            for (size_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/* x86-64 builds get an AVX2+FMA clone of the attention kernel picked at run
 * time (the default clone is plain SSE2). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RV_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define RV_VECTOR_CLONES
#endif

/* One query head of one sequence. K is first transposed into kt (head_dim ×
 * len) so that a score row is head_dim contiguous axpys over the keys; the
 * output is an axpy over head_dim per key. */
RV_VECTOR_CLONES
static void attend_head(float *out, size_t out_stride, const float *q, size_t q_stride, const float *kh,
                        const float *vh, size_t kv_stride, size_t len, size_t hd, float scale, float *kt,
                        float *scores)
{
    for (size_t j = 0; j < len; j++)
        for (size_t i = 0; i < hd; i++)
            kt[i * len + j] = kh[j * kv_stride + i];
    for (size_t t = 0; t < len; t++) {
        const float *qt = q + t * q_stride;
        size_t n = t + 1;
        for (size_t j = 0; j < n; j++)
            scores[j] = 0.0f;
        for (size_t i = 0; i < hd; i++) {
            float qi = qt[i] * scale;
            const float *kr = kt + i * len;
#pragma omp simd
            for (size_t j = 0; j < n; j++)
                scores[j] += qi * kr[j];
        }
        float mx = -INFINITY;
        for (size_t j = 0; j < n; j++)
            mx = scores[j] > mx ? scores[j] : mx;
        float sum = 0.0f;
        for (size_t j = 0; j < n; j++) {
            float e = expf(scores[j] - mx);
            scores[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        float *o = out + t * out_stride;
        for (size_t i = 0; i < hd; i++)
            o[i] = 0.0f;
        for (size_t j = 0; j < n; j++) {
            float pj = scores[j] * inv;
            const float *vj = vh + j * kv_stride;
#pragma omp simd
            for (size_t i = 0; i < hd; i++)
                o[i] += pj * vj[i];
        }
    }
}

int rv_op_attention_causal(float *out, size_t out_stride, const float *q, size_t q_stride, const float *k,
                           const float *v, size_t kv_stride, size_t n_seqs, const size_t *seq_off,
                           size_t n_heads, size_t n_kv_heads, size_t head_dim)
{
    size_t max_len = 0;
    for (size_t s = 0; s < n_seqs; s++)
        if (seq_off[s + 1] - seq_off[s] > max_len)
            max_len = seq_off[s + 1] - seq_off[s];
    if (max_len == 0)
        return 0;
    size_t group = n_heads / n_kv_heads;
    float scale = 1.0f / sqrtf((float)head_dim);
    long long n_tasks = (long long)(n_seqs * n_heads);
    int failed = 0;
#pragma omp parallel
    {
        float *scratch = malloc((max_len * (head_dim + 1)) * sizeof(float));
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (long long task = 0; task < n_tasks; task++) {
            if (!scratch)
                continue;
            size_t s = (size_t)task / n_heads, h = (size_t)task % n_heads, kvh = h / group;
            size_t base = seq_off[s], len = seq_off[s + 1] - base;
            attend_head(out + base * out_stride + h * head_dim, out_stride, q + base * q_stride + h * head_dim,
                        q_stride, k + base * kv_stride + kvh * head_dim, v + base * kv_stride + kvh * head_dim,
                        kv_stride, len, head_dim, scale, scratch, scratch + max_len * head_dim);
        }
        free(scratch);
    }
    if (failed)
        return rv_error_set("attention: out of memory for %zu floats per thread", max_len * (head_dim + 1));
    return 0;
}

void rv_op_swiglu(float *h, const float *gate, const float *up, size_t n)
{
    for (long long i = 0; i < (long long)n; i++) {
        float g = gate[i];
        h[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void rv_op_add(float *y, const float *x, size_t n)
{
    for (long long i = 0; i < (long long)n; i++)
        y[i] += x[i];
}

void rv_op_embedding(float *y, const rv_weight *table, const uint32_t *ids, size_t n)
{
    for (long long t = 0; t < (long long)n; t++)
        rv_weight_rows_f32(table, ids[t], 1, y + (size_t)t * table->cols);
}

void rv_op_l2_normalize(float *x, size_t rows, size_t dim)
{
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * dim;
        double ss = 0.0;
        for (size_t i = 0; i < dim; i++)
            ss += (double)xr[i] * xr[i];
        if (ss > 0) {
            float inv = (float)(1.0 / sqrt(ss));
            for (size_t i = 0; i < dim; i++)
                xr[i] *= inv;
        }
    }
}

void rv_ops_set_threads(int n)
{
    if (n <= 0)
        return;
    omp_set_num_threads(n);
    rv_gemm_single_thread_blas();   /* BLAS work is split over OpenMP's threads (gemm.h) */
}
