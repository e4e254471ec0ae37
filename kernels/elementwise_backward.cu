/* elementwise_backward.cu — the backward twins of elementwise.cu's
 * memory-bound ops (cuda_ops.h; math of lib/train_ops.c): RMSNorm (dx and
 * dw), SwiGLU, EOS pooling with L2 normalisation. (RoPE's backward is
 * rv_cuda_rope with direction -1.) Gradients are added into. fp32
 * arithmetic on any storage type; every reduction has a fixed order, so
 * results are deterministic (no atomics). */
#include "cuda_common.cuh"   /* rv_cuda, rv_ld/rv_st, rv_block_sum, RV_LAUNCH */

#include <math.h>

#define ROW_THREADS 256      /* one block per row for the row reductions */
#define ELEM_THREADS 256
#define MAX_ELEM_BLOCKS ((size_t)1 << 20)   /* grid-stride loops beyond this */
#define DW_COLS 32           /* rmsnorm dw: columns per block (one per lane) */
#define DW_WARPS 8           /* rmsnorm dw: warps splitting the rows */

#define GRID_STRIDE_LOOP(i, n)                                                                       \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- RMSNorm */
/* One block per row: dot = sum_d dy w x, then dx_d += r w_d dy_d - x_d r^3 dot / dim. */
__global__ void __launch_bounds__(ROW_THREADS)
    rmsnorm_bwd_dx_kernel(const void *x, int x_t, const void *w, int w_t, const float *rstd, const void *dy,
                          void *dx, int g_t, size_t dim)
{
    RV_DYN_SMEM(float, red);
    const size_t base = (size_t)blockIdx.x * dim;
    float dot = 0.0f;
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x)
        dot += rv_ld(dy, g_t, base + i) * rv_ld(w, w_t, i) * rv_ld(x, x_t, base + i);
    dot = rv_block_sum(dot, red);
    const float r = rstd[blockIdx.x], cc = dot * r * r * r / (float)dim;
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float g = rv_ld(dy, g_t, base + i) * rv_ld(w, w_t, i);
        rv_st(dx, g_t, base + i, rv_ld(dx, g_t, base + i) + (r * g - cc * rv_ld(x, x_t, base + i)));
    }
}

/* Block = DW_COLS columns; warp w sums rows w, w + DW_WARPS, ... of its lane's
 * column (coalesced across lanes), then warp 0 adds the DW_WARPS partials in
 * warp order. */
__global__ void __launch_bounds__(DW_COLS *DW_WARPS)
    rmsnorm_bwd_dw_kernel(const void *x, int x_t, const float *rstd, const void *dy, int g_t, float *dw,
                          size_t rows, size_t dim)
{
    RV_DYN_SMEM(float, part);   /* [DW_WARPS][DW_COLS] */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t col = (size_t)blockIdx.x * DW_COLS + lane;
    float s = 0.0f;
    if (col < dim)
        for (size_t r = warp; r < rows; r += DW_WARPS)
            s += rv_ld(dy, g_t, r * dim + col) * rv_ld(x, x_t, r * dim + col) * rstd[r];
    part[warp * DW_COLS + lane] = s;
    __syncthreads();
    if (warp == 0 && col < dim) {
        float total = 0.0f;
        for (int k = 0; k < DW_WARPS; k++)
            total += part[k * DW_COLS + lane];
        dw[col] += total;
    }
}

extern "C" int rv_cuda_rmsnorm_backward(rv_cuda *c, const void *x, rv_wtype x_t, const void *w, rv_wtype w_t,
                                        const float *rstd, const void *dy, void *dx, rv_wtype g_t, float *dw,
                                        size_t rows, size_t dim)
{
    RV_PROFILE(c, "rmsnorm_backward");
    if (!rv_wtype_valid(x_t) || !rv_wtype_valid(w_t) || !rv_wtype_valid(g_t))
        return rv_error_set("cuda rmsnorm_backward: unknown storage type");
    if (rows == 0 || dim == 0)
        return 0;
    if (rows > 0x7fffffffu)
        return rv_error_set("cuda rmsnorm_backward: %zu rows, more than a grid holds", rows);
    if (dx) {
        RV_LAUNCH(rmsnorm_bwd_dx_kernel, (unsigned)rows, ROW_THREADS, 32 * sizeof(float), c->stream, x, (int)x_t, w,
                  (int)w_t, rstd, dy, dx, (int)g_t, dim);
        RV_LAUNCH_CHECK("rmsnorm_bwd_dx_kernel");
    }
    if (dw) {
        unsigned grid = 1;
        if (rv_grid_1d(dim, DW_COLS, &grid, "rmsnorm_backward dw") != 0)
            return -1;
        RV_LAUNCH(rmsnorm_bwd_dw_kernel, grid, DW_COLS * DW_WARPS, DW_COLS * DW_WARPS * sizeof(float), c->stream, x,
                  (int)x_t, rstd, dy, (int)g_t, dw, rows, dim);
        RV_LAUNCH_CHECK("rmsnorm_bwd_dw_kernel");
    }
    return 0;
}

/* ---------------------------------------------------------------- SwiGLU */
/* acc 0: the outputs are written, never read (a step's first write needs no zeroed buffer) */
__global__ void swiglu_bwd_kernel(const void *gate, const void *up, int in_t, const void *dout, int dout_t,
                                  void *dgate, void *dup, int g_t, size_t n, int acc)
{
    GRID_STRIDE_LOOP(i, n)
    {
        float g = rv_ld(gate, in_t, i), sig = 1.0f / (1.0f + expf(-g)), d = rv_ld(dout, dout_t, i);
        if (dup)
            rv_st(dup, g_t, i, (acc ? rv_ld(dup, g_t, i) : 0.0f) + d * g * sig);
        if (dgate)
            rv_st(dgate, g_t, i,
                  (acc ? rv_ld(dgate, g_t, i) : 0.0f) + d * rv_ld(up, in_t, i) * sig * (1.0f + g * (1.0f - sig)));
    }
}

extern "C" int rv_cuda_swiglu_backward(rv_cuda *c, const void *gate, const void *up, rv_wtype in_t,
                                       const void *dout, rv_wtype dout_t, void *dgate, void *dup, rv_wtype g_t,
                                       size_t n, int accumulate)
{
    RV_PROFILE(c, "swiglu_backward");
    if (!rv_wtype_valid(in_t) || !rv_wtype_valid(dout_t) || !rv_wtype_valid(g_t))
        return rv_error_set("cuda swiglu_backward: unknown storage type");
    if (n == 0 || (!dgate && !dup))
        return 0;
    unsigned grid = 1;
    size_t cap = n < MAX_ELEM_BLOCKS * ELEM_THREADS ? n : MAX_ELEM_BLOCKS * ELEM_THREADS;
    if (rv_grid_1d(cap, ELEM_THREADS, &grid, "swiglu_backward") != 0)
        return -1;
    RV_LAUNCH(swiglu_bwd_kernel, grid, ELEM_THREADS, 0, c->stream, gate, up, (int)in_t, dout, (int)dout_t, dgate, dup,
              (int)g_t, n, accumulate ? 1 : 0);
    RV_LAUNCH_CHECK("swiglu_bwd_kernel");
    return 0;
}

/* ---------------------------------------------------------------- EOS pooling + L2 */
#define POOL_NORM_EPS 1e-12f   /* F.normalize's eps, as rv_eos_pool_l2_backward */

__global__ void __launch_bounds__(ROW_THREADS)
    eos_pool_l2_bwd_kernel(const float *e, const float *norm, const float *de, void *dh, int dh_t, int seq_len,
                           int dim, const int *lengths)
{
    RV_DYN_SMEM(float, red);
    const int b = blockIdx.x, len = lengths[b];
    if (len < 1 || len > seq_len)
        return;   /* the whole block leaves before any barrier */
    const size_t row = ((size_t)b * seq_len + len - 1) * dim, eb = (size_t)b * dim;
    const float nrm = norm[b];
    float dot = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        dot += e[eb + i] * de[eb + i];
    dot = rv_block_sum(dot, red);
    const bool clamped = !(nrm > POOL_NORM_EPS);   /* e = h / eps is linear in h */
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float g = clamped ? de[eb + i] / POOL_NORM_EPS : (de[eb + i] - e[eb + i] * dot) / nrm;
        rv_st(dh, dh_t, row + i, rv_ld(dh, dh_t, row + i) + g);
    }
}

extern "C" int rv_cuda_eos_pool_l2_backward(rv_cuda *c, const float *e, const float *norm, const float *de, void *dh,
                                            rv_wtype dh_t, int batch, int seq_len, int dim, const int *lengths)
{
    RV_PROFILE(c, "eos_pool_backward");
    if (!rv_wtype_valid(dh_t))
        return rv_error_set("cuda eos_pool_backward: unknown storage type");
    if (batch <= 0 || dim <= 0)
        return 0;
    if (seq_len <= 0)
        return rv_error_set("cuda eos_pool_backward: expected seq_len > 0, found %d", seq_len);
    RV_LAUNCH(eos_pool_l2_bwd_kernel, (unsigned)batch, ROW_THREADS, 32 * sizeof(float), c->stream, e, norm, de, dh,
              (int)dh_t, seq_len, dim, lengths);
    RV_LAUNCH_CHECK("eos_pool_l2_bwd_kernel");
    return 0;
}
