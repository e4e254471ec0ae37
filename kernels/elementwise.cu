/* elementwise.cu — the memory-bound ops of cuda_ops.h: RMSNorm, RoPE,
 * SwiGLU, residual add, embedding lookup, row L2 normalisation and EOS
 * pooling. fp32 arithmetic on any storage type; row reductions are one
 * block per row (a fixed summation order, so results are deterministic). */
#include "cuda_common.cuh"   /* rv_cuda, rv_ld/rv_st, rv_block_sum, RV_LAUNCH */

#include <math.h>

#define ROW_THREADS 256      /* one block per row for the row reductions */
#define ELEM_THREADS 256
#define MAX_ELEM_BLOCKS ((size_t)1 << 20)   /* grid-stride loops beyond this */

static int elem_grid(size_t n, unsigned *grid, const char *what)
{
    return rv_grid_1d(n < MAX_ELEM_BLOCKS * ELEM_THREADS ? n : MAX_ELEM_BLOCKS * ELEM_THREADS, ELEM_THREADS, grid,
                      what);
}

static int row_grid(size_t rows, unsigned *grid, const char *what)
{
    if (rows > 0x7fffffffu)
        return rv_error_set("cuda: %s: %zu rows, more than a grid holds", what, rows);
    *grid = (unsigned)rows;
    return 0;
}

#define GRID_STRIDE_LOOP(i, n)                                                                       \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- RMSNorm */
__global__ void __launch_bounds__(ROW_THREADS) rmsnorm_kernel(void *y, int y_t, const void *x, int x_t,
                                                              const void *w, int w_t, size_t dim, float eps,
                                                              float *rstd)
{
    RV_DYN_SMEM(float, red);
    size_t base = (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = rv_ld(x, x_t, base + i);
        ss += v * v;
    }
    ss = rv_block_sum(ss, red);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    if (rstd && threadIdx.x == 0)
        rstd[blockIdx.x] = inv;
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x)
        rv_st(y, y_t, base + i, rv_ld(w, w_t, i) * (rv_ld(x, x_t, base + i) * inv));
}

extern "C" int rv_cuda_rmsnorm(rv_cuda *c, void *y, rv_wtype y_t, const void *x, rv_wtype x_t, const void *w,
                               rv_wtype w_t, size_t rows, size_t dim, float eps, float *rstd)
{
    RV_PROFILE(c, "rmsnorm");
    if (rows == 0 || dim == 0)
        return 0;
    unsigned grid = 1;
    if (row_grid(rows, &grid, "rmsnorm") != 0)
        return -1;
    RV_LAUNCH(rmsnorm_kernel, grid, ROW_THREADS, 32 * sizeof(float), c->stream, y, (int)y_t, x, (int)x_t, w,
              (int)w_t, dim, eps, rstd);
    RV_LAUNCH_CHECK("rmsnorm_kernel");
    return 0;
}

/* ---------------------------------------------------------------- RoPE */
/* y may be x (each element pair is read and written by one thread) */
__global__ void rope_kernel(void *y, int y_t, const void *x, int x_t, size_t n_tok, size_t stride, size_t n_heads,
                            size_t head_dim, const uint32_t *pos, size_t seq_len, const float *cos_tab,
                            const float *sin_tab, size_t max_pos, float direction)
{
    size_t half = head_dim / 2, total = n_tok * n_heads * half;
    GRID_STRIDE_LOOP(idx, total)
    {
        size_t i = idx % half, rest = idx / half, h = rest % n_heads, t = rest / n_heads;
        size_t p = pos ? (size_t)pos[t] : t % seq_len;
        size_t a_at = t * stride + h * head_dim + i, b_at = a_at + half;
        if (p >= max_pos) {   /* a position past the table: poison rather than read out of bounds */
            rv_st(y, y_t, a_at, NAN);
            rv_st(y, y_t, b_at, NAN);
            continue;
        }
        float cs = cos_tab[p * half + i], sn = direction * sin_tab[p * half + i];
        float a = rv_ld(x, x_t, a_at), b = rv_ld(x, x_t, b_at);
        rv_st(y, y_t, a_at, a * cs - b * sn);
        rv_st(y, y_t, b_at, b * cs + a * sn);
    }
}

extern "C" int rv_cuda_rope_to(rv_cuda *c, void *y, rv_wtype y_t, const void *x, rv_wtype x_t, size_t n_tok,
                               size_t stride, size_t n_heads, size_t head_dim, const uint32_t *pos, size_t seq_len,
                               const float *cos_tab, const float *sin_tab, size_t max_pos, int direction)
{
    RV_PROFILE(c, "rope");
    if (!rv_wtype_valid(y_t) || !rv_wtype_valid(x_t))
        return rv_error_set("cuda rope: unknown storage type");
    if (head_dim == 0 || head_dim % 2 != 0)
        return rv_error_set("cuda rope: expected an even head_dim, found %zu", head_dim);
    if (n_heads * head_dim > stride)
        return rv_error_set("cuda rope: %zu heads of %zu exceed the row stride %zu", n_heads, head_dim, stride);
    if (!pos && (seq_len == 0 || seq_len > max_pos))
        return rv_error_set("cuda rope: expected 1 <= seq_len <= %zu table positions, found %zu", max_pos, seq_len);
    if (direction != 1 && direction != -1)
        return rv_error_set("cuda rope: expected direction +1 or -1, found %d", direction);
    size_t total = n_tok * n_heads * (head_dim / 2);
    if (total == 0)
        return 0;
    unsigned grid = 1;
    if (elem_grid(total, &grid, "rope") != 0)
        return -1;
    RV_LAUNCH(rope_kernel, grid, ELEM_THREADS, 0, c->stream, y, (int)y_t, x, (int)x_t, n_tok, stride, n_heads,
              head_dim, pos, seq_len, cos_tab, sin_tab, max_pos, (float)direction);
    RV_LAUNCH_CHECK("rope_kernel");
    return 0;
}

extern "C" int rv_cuda_rope(rv_cuda *c, void *x, rv_wtype x_t, size_t n_tok, size_t stride, size_t n_heads,
                            size_t head_dim, const uint32_t *pos, size_t seq_len, const float *cos_tab,
                            const float *sin_tab, size_t max_pos, int direction)
{
    return rv_cuda_rope_to(c, x, x_t, x, x_t, n_tok, stride, n_heads, head_dim, pos, seq_len, cos_tab, sin_tab,
                           max_pos, direction);
}

/* ---------------------------------------------------------------- SwiGLU, add */
__global__ void swiglu_kernel(void *h, int h_t, const void *gate, int gate_t, const void *up, int up_t, size_t n)
{
    GRID_STRIDE_LOOP(i, n)
    {
        float g = rv_ld(gate, gate_t, i);
        rv_st(h, h_t, i, g / (1.0f + expf(-g)) * rv_ld(up, up_t, i));
    }
}

extern "C" int rv_cuda_swiglu(rv_cuda *c, void *h, rv_wtype h_t, const void *gate, rv_wtype gate_t, const void *up,
                              rv_wtype up_t, size_t n)
{
    RV_PROFILE(c, "swiglu");
    if (n == 0)
        return 0;
    unsigned grid = 1;
    if (elem_grid(n, &grid, "swiglu") != 0)
        return -1;
    RV_LAUNCH(swiglu_kernel, grid, ELEM_THREADS, 0, c->stream, h, (int)h_t, gate, (int)gate_t, up, (int)up_t, n);
    RV_LAUNCH_CHECK("swiglu_kernel");
    return 0;
}

__global__ void add_kernel(void *y, int y_t, const void *x, int x_t, size_t n)
{
    GRID_STRIDE_LOOP(i, n)
    rv_st(y, y_t, i, rv_ld(y, y_t, i) + rv_ld(x, x_t, i));
}

extern "C" int rv_cuda_add(rv_cuda *c, void *y, rv_wtype y_t, const void *x, rv_wtype x_t, size_t n)
{
    RV_PROFILE(c, "add");
    if (n == 0)
        return 0;
    unsigned grid = 1;
    if (elem_grid(n, &grid, "add") != 0)
        return -1;
    RV_LAUNCH(add_kernel, grid, ELEM_THREADS, 0, c->stream, y, (int)y_t, x, (int)x_t, n);
    RV_LAUNCH_CHECK("add_kernel");
    return 0;
}

/* ---------------------------------------------------------------- embedding */
__global__ void embedding_kernel(void *y, int y_t, const void *table, int table_t, size_t vocab, size_t dim,
                                 const uint32_t *ids, size_t n)
{
    GRID_STRIDE_LOOP(idx, n * dim)
    {
        size_t t = idx / dim, i = idx % dim, id = ids[t];
        rv_st(y, y_t, idx, id < vocab ? rv_ld(table, table_t, id * dim + i) : NAN);
    }
}

extern "C" int rv_cuda_embedding(rv_cuda *c, void *y, rv_wtype y_t, const void *table, rv_wtype table_t,
                                 size_t vocab, size_t dim, const uint32_t *ids, size_t n)
{
    RV_PROFILE(c, "embedding");
    if (n == 0 || dim == 0)
        return 0;
    unsigned grid = 1;
    if (elem_grid(n * dim, &grid, "embedding") != 0)
        return -1;
    RV_LAUNCH(embedding_kernel, grid, ELEM_THREADS, 0, c->stream, y, (int)y_t, table, (int)table_t, vocab, dim, ids,
              n);
    RV_LAUNCH_CHECK("embedding_kernel");
    return 0;
}

/* ---------------------------------------------------------------- L2 normalisation, EOS pooling */
__global__ void __launch_bounds__(ROW_THREADS) l2_normalize_kernel(void *x, int x_t, size_t dim)
{
    RV_DYN_SMEM(float, red);
    size_t base = (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = rv_ld(x, x_t, base + i);
        ss += v * v;
    }
    ss = rv_block_sum(ss, red);
    if (!(ss > 0.0f))
        return;   /* zero rows stay zero (no barrier follows) */
    float inv = 1.0f / sqrtf(ss);
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x)
        rv_st(x, x_t, base + i, rv_ld(x, x_t, base + i) * inv);
}

extern "C" int rv_cuda_l2_normalize(rv_cuda *c, void *x, rv_wtype x_t, size_t rows, size_t dim)
{
    RV_PROFILE(c, "l2_normalize");
    if (rows == 0 || dim == 0)
        return 0;
    unsigned grid = 1;
    if (row_grid(rows, &grid, "l2_normalize") != 0)
        return -1;
    RV_LAUNCH(l2_normalize_kernel, grid, ROW_THREADS, 32 * sizeof(float), c->stream, x, (int)x_t, dim);
    RV_LAUNCH_CHECK("l2_normalize_kernel");
    return 0;
}

#define POOL_NORM_EPS 1e-12f   /* F.normalize's eps, as rv_eos_pool_l2_forward */

__global__ void __launch_bounds__(ROW_THREADS) eos_pool_l2_kernel(float *e, float *norm, const void *h, int h_t,
                                                                  int seq_len, int dim, const int *lengths)
{
    RV_DYN_SMEM(float, red);
    int b = blockIdx.x, len = lengths[b];
    bool valid = len >= 1 && len <= seq_len;
    size_t base = ((size_t)b * seq_len + (valid ? len - 1 : 0)) * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = rv_ld(h, h_t, base + i);
        ss += v * v;
    }
    ss = rv_block_sum(ss, red);
    float nrm = sqrtf(ss), den = nrm > POOL_NORM_EPS ? nrm : POOL_NORM_EPS;
    if (norm && threadIdx.x == 0)
        norm[b] = valid ? nrm : NAN;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        e[(size_t)b * dim + i] = valid ? rv_ld(h, h_t, base + i) / den : NAN;
}

extern "C" int rv_cuda_eos_pool_l2(rv_cuda *c, float *e, float *norm, const void *h, rv_wtype h_t, int batch,
                                   int seq_len, int dim, const int *lengths)
{
    RV_PROFILE(c, "eos_pool");
    if (batch <= 0 || dim <= 0)
        return 0;
    if (seq_len <= 0)
        return rv_error_set("cuda eos_pool: expected seq_len > 0, found %d", seq_len);
    RV_LAUNCH(eos_pool_l2_kernel, (unsigned)batch, ROW_THREADS, 32 * sizeof(float), c->stream, e, norm, h, (int)h_t,
              seq_len, dim, lengths);
    RV_LAUNCH_CHECK("eos_pool_l2_kernel");
    return 0;
}
