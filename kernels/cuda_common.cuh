/* cuda_common.cuh — what every CUDA source in kernels/ shares (internal, C++):
 *   RV_CUDA_CHECK, RV_CUBLAS_CHECK, RV_LAUNCH_CHECK  failures -> rv_error_set, return -1
 *   RV_LAUNCH, RV_DYN_SMEM                         launch syntax and dynamic shared memory
 *                                                  that also compile for the CPU emulator
 *   rv_ld, rv_st                                   element load/store for f32, bf16, f16 storage
 *   rv_warp_sum, rv_warp_max, rv_shfl              warp-wide reductions and broadcast
 *   rv_block_sum, rv_block_max                     block-wide reductions
 *   struct rv_cuda                                 the context (stream, cuBLASLt, scratch)
 *   rv_cuda_scratch                                grow-on-demand device scratch
 *   RV_PROFILE                                     a timed scope (rv_cuda_profile_*)
 * With RV_CUDA_EMULATE defined, kernels/dev/cuda_emu.h stands in for the CUDA
 * runtime and cuBLASLt, so the same sources run (slowly) on a CPU. Kernels
 * use dynamic shared memory only: the emulator fills it with NaN at every
 * block start, which exposes reads of tiles nobody wrote. */
#ifndef RV_CUDA_COMMON_CUH
#define RV_CUDA_COMMON_CUH

#include <stddef.h>
#include <stdint.h>

#ifdef RV_CUDA_EMULATE
#include "dev/cuda_emu.h"
#else
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

extern "C" {
#include "error.h"   /* rv_error_set */
#include "half.h"    /* host-side bf16/f16 conversion for the emulator */
}
#include "cuda_ops.h"

/* ---------------------------------------------------------------- error checks */
#define RV_CUDA_CHECK(call)                                                                          \
    do {                                                                                             \
        cudaError_t rv_e_ = (call);                                                                  \
        if (rv_e_ != cudaSuccess)                                                                    \
            return rv_error_set("cuda: %s:%d: %s: %s", __FILE__, __LINE__, #call,                    \
                                cudaGetErrorString(rv_e_));                                          \
    } while (0)

#define RV_CUBLAS_CHECK(call)                                                                        \
    do {                                                                                             \
        cublasStatus_t rv_s_ = (call);                                                               \
        if (rv_s_ != CUBLAS_STATUS_SUCCESS)                                                          \
            return rv_error_set("cublasLt: %s:%d: %s: %s", __FILE__, __LINE__, #call,                \
                                cublasLtGetStatusString(rv_s_));                                     \
    } while (0)

/* After a launch: configuration errors (too many threads, too much shared
 * memory) surface here; faults inside the kernel surface at the next sync. */
#define RV_LAUNCH_CHECK(name)                                                                        \
    do {                                                                                             \
        cudaError_t rv_e_ = cudaGetLastError();                                                      \
        if (rv_e_ != cudaSuccess)                                                                    \
            return rv_error_set("cuda: %s:%d: launching %s: %s", __FILE__, __LINE__, name,           \
                                cudaGetErrorString(rv_e_));                                          \
    } while (0)

#ifdef RV_CUDA_EMULATE
#define RV_LAUNCH(kernel, grid, block, smem, stream, ...)                                           \
    ((void)(stream), rv_emu::launch(grid, block, smem, kernel, __VA_ARGS__))
#define RV_DYN_SMEM(type, name) type *name = (type *)rv_emu::dynamic_smem()
#else
#define RV_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#define RV_DYN_SMEM(type, name)                                                                      \
    extern __shared__ float4 rv_dyn_smem_[];                                                         \
    type *name = (type *)rv_dyn_smem_
#endif

/* ---------------------------------------------------------------- storage types */
__device__ __forceinline__ float rv_ld(const void *p, int t, size_t i)
{
#ifdef RV_CUDA_EMULATE
    if (t == RV_WT_BF16)
        return rv_bf16_to_f32(((const uint16_t *)p)[i]);
    if (t == RV_WT_F16)
        return rv_f16_to_f32(((const uint16_t *)p)[i]);
#else
    if (t == RV_WT_BF16)
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (t == RV_WT_F16)
        return __half2float(((const __half *)p)[i]);
#endif
    return ((const float *)p)[i];
}

__device__ __forceinline__ void rv_st(void *p, int t, size_t i, float v)
{
#ifdef RV_CUDA_EMULATE
    if (t == RV_WT_BF16)
        ((uint16_t *)p)[i] = rv_f32_to_bf16(v);
    else if (t == RV_WT_F16)
        ((uint16_t *)p)[i] = rv_f32_to_f16(v);
#else
    if (t == RV_WT_BF16)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else if (t == RV_WT_F16)
        ((__half *)p)[i] = __float2half_rn(v);
#endif
    else
        ((float *)p)[i] = v;
}

static inline int rv_wtype_valid(rv_wtype t) { return t == RV_WT_F32 || t == RV_WT_BF16 || t == RV_WT_F16; }

/* ---------------------------------------------------------------- warp helpers
 * Every lane of the warp must call these (full mask). The xor butterfly
 * leaves the bitwise-same result in every lane. */
__device__ __forceinline__ float rv_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float rv_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float rv_shfl(float v, int lane) { return __shfl_sync(0xffffffffu, v, lane); }

/* Sum over the block (blockDim.x a multiple of 32, every thread calls it);
 * red: >= 32 floats of shared memory. Every thread gets the same value. */
__device__ __forceinline__ float rv_block_sum(float v, float *red)
{
    v = rv_warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    __syncthreads();   /* red may still be read from an earlier call */
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < n_warps; i++)
        total += red[i];
    return total;
}

/* Maximum over the block, as rv_block_sum. */
__device__ __forceinline__ float rv_block_max(float v, float *red)
{
    v = rv_warp_max(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    __syncthreads();   /* red may still be read from an earlier call */
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int i = 0; i < n_warps; i++)
        m = fmaxf(m, red[i]);
    return m;
}

/* ---------------------------------------------------------------- context */
struct rv_gemm_cache;

struct rv_cuda {
    int device;
    char name[300];
    size_t smem_optin;              /* largest dynamic shared memory a block may opt into */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;                /* cuBLASLt workspace */
    size_t workspace_bytes;
    struct rv_gemm_cache *gemm;     /* plans, see matmul.cu */
    void *scratch;                  /* rv_cuda_scratch */
    size_t scratch_bytes;
    struct rv_prof *prof;           /* op_profile.cu; NULL: not profiling */
};

/* A device buffer of at least `bytes`, valid until the next call (grows,
 * never shrinks; the old contents are not kept). NULL with an error. */
void *rv_cuda_scratch(rv_cuda *c, size_t bytes);

/* matmul.cu: releases the plan cache. */
void rv_gemm_cache_free(struct rv_gemm_cache *g);

/* ---------------------------------------------------------------- profiling scopes
 * RV_PROFILE(c, "name") at the top of an operation (or around a part of
 * one) times everything it queues while rv_cuda_profile_start is in force;
 * scopes nested in a timed one add nothing (the outer name holds the time),
 * so a caller can name a group of operations ("lora") around library
 * calls that have their own scopes. op_profile.cu. */
int rv_prof_open(rv_cuda *c, const char *name);   /* slot, or < 0: nested or failed */
void rv_prof_close(rv_cuda *c, int slot);
/* A matrix product of this shape (its group is filled in), timed on its own
 * even inside a named scope: slot, or < 0 when it failed. */
int rv_prof_gemm_open(rv_cuda *c, const rv_cuda_profile_gemm_row *shape);
void rv_prof_gemm_close(rv_cuda *c, int slot);
void rv_prof_free(rv_cuda *c);
struct rv_prof_scope {
    rv_cuda *c;
    int slot;
    rv_prof_scope(rv_cuda *cc, const char *name) : c(cc), slot(cc->prof ? rv_prof_open(cc, name) : -1) {}
    ~rv_prof_scope()
    {
        if (c->prof)
            rv_prof_close(c, slot);
    }
    rv_prof_scope(const rv_prof_scope &) = delete;
    rv_prof_scope &operator=(const rv_prof_scope &) = delete;
};
#define RV_PROFILE(c, name) rv_prof_scope rv_prof_scope_here_((c), (name))

/* Grid size for n items of `per` each, checked against CUDA's x limit. */
static inline int rv_grid_1d(size_t n, size_t per, unsigned *grid, const char *what)
{
    size_t g = (n + per - 1) / per;
    if (g > 0x7fffffffu)
        return rv_error_set("cuda: %s: %zu elements need %zu blocks, more than a grid holds", what, n, g);
    *grid = (unsigned)(g ? g : 1);
    return 0;
}

#endif
