/* inbatch_weights.cu — the Revela in-batch weights on the device
 * (cuda_ops.h; twins of rv_inbatch_weights_forward/backward in
 * lib/inbatch_attn.c): S = q p^T, W = softmax_row(S / tau) with the
 * diagonal at -inf, and its backward. B is the group size (16 in the
 * reference), so these are tiny: the dot products run in double as the CPU
 * twin's do (with tau = 1e-4 an fp32 S would move the logits S/tau by
 * ~1e-3 and W by as much relatively), and each row's softmax is one thread
 * in column order, mirroring the CPU loop (bf16 mode: float softmax and
 * the same roundings). */
#include "cuda_common.cuh"   /* rv_cuda, RV_LAUNCH, rv_warp_sum */

#include <float.h>
#include <math.h>

#define W_THREADS 256
#define W_WARPS (W_THREADS / 32)

__device__ __forceinline__ float w_round_bf16(float x)
{
#ifdef RV_CUDA_EMULATE
    return rv_bf16_to_f32(rv_f32_to_bf16(x));
#else
    return __bfloat162float(__float2bfloat16_rn(x));
#endif
}

__device__ __forceinline__ double w_warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block i: row i of S (a warp per column j, lanes along dim), then thread 0
 * forms the row's softmax over j != i. */
__global__ void __launch_bounds__(W_THREADS)
    weights_fwd_kernel(int B, int dim, const float *q, const float *p, double tau, int bf16, float *s, float *w)
{
    RV_DYN_SMEM(double, z);   /* [B] */
    const int i = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int j = warp; j < B; j += W_WARPS) {
        double acc = 0.0;
        for (int d = lane; d < dim; d += 32)
            acc += (double)q[(size_t)i * dim + d] * p[(size_t)j * dim + d];
        acc = w_warp_sum(acc);
        if (lane == 0) {
            if (bf16) {
                float sb = w_round_bf16((float)acc);
                s[i * B + j] = sb;
                z[j] = w_round_bf16(sb / (float)tau);
            } else {
                s[i * B + j] = (float)acc;
                z[j] = acc / tau;
            }
        }
    }
    __syncthreads();
    if (threadIdx.x != 0)
        return;
    double m = -DBL_MAX;
    for (int j = 0; j < B; j++)
        if (j != i && z[j] > m)
            m = z[j];
    float *wr = w + (size_t)i * B;
    if (bf16) {   /* float softmax, as torch runs it on a bf16 tensor */
        float sum = 0.0f;
        for (int j = 0; j < B; j++)
            sum += (wr[j] = j == i ? 0.0f : expf((float)(z[j] - m)));
        for (int j = 0; j < B; j++)
            wr[j] = w_round_bf16(wr[j] / sum);
    } else {
        double sum = 0.0;
        for (int j = 0; j < B; j++)
            if (j != i)
                sum += exp(z[j] - m);
        for (int j = 0; j < B; j++)
            wr[j] = j == i ? 0.0f : (float)(exp(z[j] - m) / sum);
    }
}

extern "C" int rv_cuda_inbatch_weights_forward(rv_cuda *c, int batch, int dim, const float *q, const float *p,
                                               double tau, rv_sim_numerics numerics, float *s, float *w)
{
    RV_PROFILE(c, "inbatch_weights");
    if (batch < 2 || dim <= 0)
        return rv_error_set("cuda inbatch_weights: expected batch >= 2 and dim > 0, found %d and %d", batch, dim);
    if (!(tau > 0))
        return rv_error_set("cuda inbatch_weights: expected a temperature > 0, found %g", tau);
    if ((size_t)batch * sizeof(double) > c->smem_optin || batch > 65535)
        return rv_error_set("cuda inbatch_weights: batch %d is too large for one row per block", batch);
    size_t smem = (size_t)batch * sizeof(double);
    if (smem > 48 * 1024)
        RV_CUDA_CHECK(cudaFuncSetAttribute(weights_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    RV_LAUNCH(weights_fwd_kernel, (unsigned)batch, W_THREADS, smem, c->stream, batch, dim, q, p, tau,
              numerics == RV_SIM_BF16 ? 1 : 0, s, w);
    RV_LAUNCH_CHECK("weights_fwd_kernel");
    return 0;
}

/* Block i: mean = sum_k W_ik dW_ik (double, in k order, thread 0), then
 * ds_ij = W_ij (dW_ij - mean) / tau, 0 on the diagonal. */
__global__ void __launch_bounds__(W_THREADS)
    weights_ds_kernel(int B, const float *w, const float *dw, double tau, float *ds)
{
    RV_DYN_SMEM(double, mean);
    const int i = blockIdx.x;
    if (threadIdx.x == 0) {
        double acc = 0.0;
        for (int k = 0; k < B; k++)
            acc += (double)w[i * B + k] * dw[i * B + k];
        mean[0] = acc;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < B; j += blockDim.x)
        ds[i * B + j] = j == i ? 0.0f : (float)(w[i * B + j] * (dw[i * B + j] - mean[0]) / tau);
}

/* Block (r, dim tile): thread d adds dq[r, d] += sum_j ds_rj p[j, d] and
 * dp[r, d] += sum_i ds_ir q[i, d], each sum in index order. */
__global__ void __launch_bounds__(W_THREADS)
    weights_dqdp_kernel(int B, int dim, const float *q, const float *p, const float *ds, float *dq, float *dp)
{
    const int r = blockIdx.x, d = blockIdx.y * blockDim.x + threadIdx.x;
    if (d >= dim)
        return;
    if (dq) {
        float acc = 0.0f;
        for (int j = 0; j < B; j++)
            acc += ds[r * B + j] * p[(size_t)j * dim + d];
        dq[(size_t)r * dim + d] += acc;
    }
    if (dp) {
        float acc = 0.0f;
        for (int i = 0; i < B; i++)
            acc += ds[i * B + r] * q[(size_t)i * dim + d];
        dp[(size_t)r * dim + d] += acc;
    }
}

extern "C" int rv_cuda_inbatch_weights_backward(rv_cuda *c, int batch, int dim, const float *q, const float *p,
                                                const float *w, double tau, const float *dw, float *ds, float *dq,
                                                float *dp)
{
    RV_PROFILE(c, "inbatch_weights_backward");
    if (batch < 2 || dim <= 0 || batch > 65535)
        return rv_error_set("cuda inbatch_weights_backward: expected 2 <= batch <= 65535 and dim > 0, found %d and %d",
                            batch, dim);
    if (!(tau > 0))
        return rv_error_set("cuda inbatch_weights_backward: expected a temperature > 0, found %g", tau);
    RV_LAUNCH(weights_ds_kernel, (unsigned)batch, W_THREADS, sizeof(double), c->stream, batch, w, dw, tau, ds);
    RV_LAUNCH_CHECK("weights_ds_kernel");
    if (dq || dp) {
        dim3 grid((unsigned)batch, (unsigned)((dim + W_THREADS - 1) / W_THREADS));
        RV_LAUNCH(weights_dqdp_kernel, grid, W_THREADS, 0, c->stream, batch, dim, q, p, (const float *)ds, dq, dp);
        RV_LAUNCH_CHECK("weights_dqdp_kernel");
    }
    return 0;
}
