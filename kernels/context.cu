/* context.cu — the CUDA device context of cuda_ops.h: device discovery,
 * stream and cuBLASLt handle, the matmul workspace, device memory helpers,
 * the grow-on-demand scratch buffer and storage-type conversion. */
#include "cuda_common.cuh"   /* rv_cuda, RV_CUDA_CHECK, rv_ld/rv_st */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RV_CUDA_WORKSPACE_BYTES ((size_t)32 << 20)   /* what cuBLASLt wants on Hopper */

extern "C" int rv_cuda_device_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (why)
        *why = e == cudaSuccess ? (n > 0 ? "" : "no CUDA device") : cudaGetErrorString(e);
    if (e != cudaSuccess) {
        cudaGetLastError();   /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

extern "C" int rv_cuda_check_device(int device)
{
    const char *why = "";
    int n = rv_cuda_device_count(&why);
    if (n == 0)
        return rv_error_set("no CUDA device: %s", why);
    if (device < 0 || device >= n)
        return rv_error_set("CUDA device %d does not exist (%d device%s: 0..%d)", device, n, n == 1 ? "" : "s",
                            n - 1);
    return 0;
}

extern "C" const char *rv_cuda_device_name(const rv_cuda *c) { return c->name; }

static int open_context(rv_cuda *c, int device)
{
    RV_CUDA_CHECK(cudaSetDevice(device));
    cudaDeviceProp prop;
    RV_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    snprintf(c->name, sizeof c->name, "%s (sm_%d%d, %d SMs)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount);
    c->smem_optin = prop.sharedMemPerBlockOptin;
    RV_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    RV_CUBLAS_CHECK(cublasLtCreate(&c->lt));
    c->workspace_bytes = RV_CUDA_WORKSPACE_BYTES;
    RV_CUDA_CHECK(cudaMalloc(&c->workspace, c->workspace_bytes));
    return 0;
}

extern "C" rv_cuda *rv_cuda_open(int device)
{
    rv_cuda *c = (rv_cuda *)calloc(1, sizeof *c);
    if (!c) {
        rv_error_set("cuda: out of host memory for a context");
        return NULL;
    }
    c->device = device;
    if (open_context(c, device) != 0) {
        rv_error_prefix("opening CUDA device %d", device);
        rv_cuda_close(c);
        cudaGetLastError();   /* not sticky: the thread's next launch must not report this failure */
        return NULL;
    }
    return c;
}

extern "C" void rv_cuda_close(rv_cuda *c)
{
    if (!c)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    rv_prof_free(c);
    rv_gemm_cache_free(c->gemm);
    if (c->lt)
        cublasLtDestroy(c->lt);
    cudaFree(c->workspace);
    cudaFree(c->scratch);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" int rv_cuda_sync(rv_cuda *c)
{
    RV_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    RV_CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" void *rv_cuda_alloc(rv_cuda *c, size_t bytes)
{
    (void)c;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        rv_error_set("cuda: allocating %zu bytes of device memory: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void rv_cuda_free(rv_cuda *c, void *p)
{
    (void)c;
    if (p)
        cudaFree(p);
}

extern "C" int rv_cuda_upload(rv_cuda *c, void *dst, const void *src, size_t bytes)
{
    RV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    RV_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return 0;
}

extern "C" int rv_cuda_download(rv_cuda *c, void *dst, const void *src, size_t bytes)
{
    RV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    RV_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return 0;
}

extern "C" int rv_cuda_memset(rv_cuda *c, void *dst, int byte, size_t bytes)
{
    RV_PROFILE(c, "memset");
    RV_CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, c->stream));
    return 0;
}

void *rv_cuda_scratch(rv_cuda *c, size_t bytes)
{
    if (bytes <= c->scratch_bytes)
        return c->scratch;
    if (c->scratch) {
        /* The old buffer may still be read by queued kernels. */
        cudaError_t e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess) {
            rv_error_set("cuda: waiting before growing scratch: %s", cudaGetErrorString(e));
            return NULL;
        }
        cudaFree(c->scratch);
        c->scratch = NULL;
        c->scratch_bytes = 0;
    }
    size_t want = bytes + bytes / 4;   /* headroom so slowly growing shapes do not reallocate every call */
    c->scratch = rv_cuda_alloc(c, want);
    if (!c->scratch)
        return NULL;
    c->scratch_bytes = want;
    return c->scratch;
}

/* ---------------------------------------------------------------- conversion */
__global__ void convert_kernel(void *dst, int dst_t, const void *src, int src_t, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        rv_st(dst, dst_t, i, rv_ld(src, src_t, i));
}

extern "C" int rv_cuda_convert(rv_cuda *c, void *dst, rv_wtype dst_t, const void *src, rv_wtype src_t, size_t n)
{
    RV_PROFILE(c, "convert");
    if (!rv_wtype_valid(dst_t) || !rv_wtype_valid(src_t))
        return rv_error_set("cuda convert: unknown storage type %d or %d", (int)dst_t, (int)src_t);
    if (n == 0)
        return 0;
    unsigned grid = 1;
    if (rv_grid_1d(n < ((size_t)1 << 26) ? n : ((size_t)1 << 26), 256, &grid, "convert") != 0)
        return -1;
    RV_LAUNCH(convert_kernel, grid, 256, 0, c->stream, dst, (int)dst_t, src, (int)src_t, n);
    RV_LAUNCH_CHECK("convert_kernel");
    return 0;
}
