/* adamw.cu — the optimizer side of a training step on the device
 * (cuda_ops.h; twins of lib/adamw.c): AdamW on fp32 master weights with
 * the same scalars and the same float element expression as
 * rv_adamw_update (torch.optim.AdamW's), the sum of squares for global
 * gradient-norm clipping (double, fixed order), and the scaling it
 * applies. All memory-bound, one pass each. */
#include "cuda_common.cuh"   /* rv_cuda, RV_LAUNCH, rv_grid_1d */

#include <math.h>

#define ELEM_THREADS 256
#define MAX_ELEM_BLOCKS ((size_t)1 << 20)   /* grid-stride loops beyond this */
#define SS_THREADS 256
#define SS_BLOCKS 256                       /* partials of the sum of squares */

#define GRID_STRIDE_LOOP(i, n)                                                                       \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static int adam_grid(size_t n, unsigned *grid, const char *what)
{
    return rv_grid_1d(n < MAX_ELEM_BLOCKS * ELEM_THREADS ? n : MAX_ELEM_BLOCKS * ELEM_THREADS, ELEM_THREADS, grid,
                      what);
}

struct adamw_scalars {
    float one_minus_b1, b2, one_minus_b2, eps, decay, step_size, bc2_sqrt;
};

__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n, adamw_scalars s)
{
    GRID_STRIDE_LOOP(i, n)
    {
        float g = grad[i];
        float mi = m[i] + s.one_minus_b1 * (g - m[i]);   /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        float vi = s.b2 * v[i] + s.one_minus_b2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * s.decay - s.step_size * (mi / (sqrtf(vi) / s.bc2_sqrt + s.eps));
    }
}

extern "C" int rv_cuda_adamw_update(rv_cuda *c, size_t n, float *param, const float *grad, float *m, float *v, long t,
                                    const rv_adamw_hparams *h)
{
    RV_PROFILE(c, "adamw");
    if (t < 1)
        return rv_error_set("cuda adamw: expected a step count >= 1, found %ld", t);
    if (n == 0)
        return 0;
    /* formed in double and rounded once, exactly as lib/adamw.c */
    adamw_scalars s;
    s.one_minus_b1 = (float)(1.0 - h->beta1);
    s.b2 = (float)h->beta2;
    s.one_minus_b2 = (float)(1.0 - h->beta2);
    s.eps = (float)h->eps;
    s.decay = (float)(1.0 - h->lr * h->weight_decay);
    s.step_size = (float)(h->lr / (1.0 - pow(h->beta1, (double)t)));
    s.bc2_sqrt = (float)sqrt(1.0 - pow(h->beta2, (double)t));
    unsigned grid = 1;
    if (adam_grid(n, &grid, "adamw") != 0)
        return -1;
    RV_LAUNCH(adamw_kernel, grid, ELEM_THREADS, 0, c->stream, param, grad, m, v, n, s);
    RV_LAUNCH_CHECK("adamw_kernel");
    return 0;
}

/* Stage 1: block b sums elements b*SS_THREADS + k*stride (thread-strided, in
 * double), then its threads' partials in thread order into part[b]. */
__global__ void __launch_bounds__(SS_THREADS) sum_squares_kernel(const float *x, size_t n, double *part)
{
    RV_DYN_SMEM(double, red);
    double s = 0.0;
    GRID_STRIDE_LOOP(i, n)
    s += (double)x[i] * x[i];
    red[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (unsigned k = 0; k < blockDim.x; k++)
            total += red[k];
        part[blockIdx.x] = total;
    }
}

/* Stage 2: one thread adds the block partials in block order. */
__global__ void sum_partials_kernel(const double *part, int n_part, double *out)
{
    if (threadIdx.x != 0 || blockIdx.x != 0)
        return;
    double total = 0.0;
    for (int b = 0; b < n_part; b++)
        total += part[b];
    *out += total;
}

extern "C" int rv_cuda_sum_squares(rv_cuda *c, size_t n, const float *x, double *out)
{
    RV_PROFILE(c, "grad_norm");
    if (n == 0)
        return 0;
    size_t want = (n + SS_THREADS - 1) / SS_THREADS;
    unsigned blocks = (unsigned)(want < SS_BLOCKS ? want : SS_BLOCKS);
    double *part = (double *)rv_cuda_scratch(c, SS_BLOCKS * sizeof(double));
    if (!part)
        return -1;
    RV_LAUNCH(sum_squares_kernel, blocks, SS_THREADS, SS_THREADS * sizeof(double), c->stream, x, n, part);
    RV_LAUNCH_CHECK("sum_squares_kernel");
    RV_LAUNCH(sum_partials_kernel, 1, 32, 0, c->stream, (const double *)part, (int)blocks, out);
    RV_LAUNCH_CHECK("sum_partials_kernel");
    return 0;
}

__global__ void scale_kernel(float *x, size_t n, float factor)
{
    GRID_STRIDE_LOOP(i, n)
    x[i] *= factor;
}

extern "C" int rv_cuda_scale(rv_cuda *c, size_t n, float *x, float factor)
{
    RV_PROFILE(c, "grad_scale");
    if (n == 0)
        return 0;
    unsigned grid = 1;
    if (adam_grid(n, &grid, "scale") != 0)
        return -1;
    RV_LAUNCH(scale_kernel, grid, ELEM_THREADS, 0, c->stream, x, n, factor);
    RV_LAUNCH_CHECK("scale_kernel");
    return 0;
}
