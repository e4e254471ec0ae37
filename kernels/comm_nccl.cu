/* comm_nccl.cu — the NCCL communicator (comm_nccl.h; interface in
 * lib/comm.h). libnccl is opened with dlopen on first use, so the backend
 * library has no link-time dependency on it. */
#include "cuda_common.cuh"   /* rv_cuda, RV_CUDA_CHECK, RV_LAUNCH */

#include "comm_nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RV_CUDA_EMULATE

static const char emu_msg[] = "NCCL is not available in the CUDA emulator (multi-GPU training needs a real GPU build)";

/* parameters unnamed: the emulated build has nothing to do with them */
extern "C" int rv_comm_nccl_unique_id(void *, size_t) { return rv_error_set("%s", emu_msg); }
extern "C" rv_comm *rv_comm_nccl_open(rv_cuda *, int, int, const void *, size_t)
{
    rv_error_set("%s", emu_msg);
    return NULL;
}
extern "C" const char *rv_comm_nccl_version(void)
{
    rv_error_set("%s", emu_msg);
    return NULL;
}

#else

#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>

static_assert(RV_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "comm_nccl.h's id size differs from nccl.h's");
static_assert(sizeof(ncclUniqueId) == NCCL_UNIQUE_ID_BYTES, "ncclUniqueId is not its bytes");

/* ---------------------------------------------------------------- loading libnccl */

/* Every function used, typed by nccl.h's own declarations. */
static struct {
    void *lib;
    char version[32];
    decltype(&ncclGetVersion) GetVersion;
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRank) CommInitRank;
    decltype(&ncclCommDestroy) CommDestroy;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&ncclGetErrorString) GetErrorString;
    decltype(&ncclAllReduce) AllReduce;
    decltype(&ncclBroadcast) Broadcast;
} nccl;
static pthread_mutex_t nccl_mu = PTHREAD_MUTEX_INITIALIZER;

static int nccl_load(void)
{
    pthread_mutex_lock(&nccl_mu);
    if (nccl.lib) {
        pthread_mutex_unlock(&nccl_mu);
        return 0;
    }
    const char *env = getenv("RV_NCCL_LIB");
    const char *cands[] = {env && *env ? env : NULL, "libnccl.so.2", "libnccl.so", "/usr/local/cuda/lib/libnccl.so.2",
                           "/usr/local/cuda/lib64/libnccl.so.2"};
    char tried[1024] = "";
    size_t len = 0;
    void *lib = NULL;
    for (size_t i = 0; i < sizeof cands / sizeof *cands && !lib; i++) {
        if (!cands[i])
            continue;
        lib = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && len < sizeof tried)
            len += (size_t)snprintf(tried + len, sizeof tried - len, "%s%s", len ? "; " : "", dlerror());
        if (env && *env && i == 0 && !lib)
            break;   /* an explicit RV_NCCL_LIB that fails is not silently replaced */
    }
    if (!lib) {
        pthread_mutex_unlock(&nccl_mu);
        return rv_error_set("nccl: cannot load libnccl (set RV_NCCL_LIB=/path/libnccl.so.2): %s", tried);
    }
#define LOAD(name)                                                                                   \
    do {                                                                                             \
        *(void **)&nccl.name = dlsym(lib, "nccl" #name);                                             \
        if (!nccl.name) {                                                                            \
            dlclose(lib);                                                                            \
            pthread_mutex_unlock(&nccl_mu);                                                          \
            return rv_error_set("nccl: the loaded libnccl lacks nccl" #name);                        \
        }                                                                                            \
    } while (0)
    LOAD(GetVersion);
    LOAD(GetUniqueId);
    LOAD(CommInitRank);
    LOAD(CommDestroy);
    LOAD(CommAbort);
    LOAD(CommGetAsyncError);
    LOAD(GetErrorString);
    LOAD(AllReduce);
    LOAD(Broadcast);
#undef LOAD
    int v = 0;
    if (nccl.GetVersion(&v) != ncclSuccess || v < 20900) {
        dlclose(lib);
        pthread_mutex_unlock(&nccl_mu);
        return rv_error_set("nccl: libnccl version code %d; 2.9 or newer is needed", v);
    }
    /* codes since 2.9: major * 10000 + minor * 100 + patch */
    snprintf(nccl.version, sizeof nccl.version, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    nccl.lib = lib;
    pthread_mutex_unlock(&nccl_mu);
    return 0;
}

#define RV_NCCL_CHECK(call)                                                                          \
    do {                                                                                             \
        ncclResult_t rv_r_ = (call);                                                                 \
        if (rv_r_ != ncclSuccess)                                                                    \
            return rv_error_set("nccl: %s:%d: %s: %s", __FILE__, __LINE__, #call,                    \
                                nccl.GetErrorString(rv_r_));                                         \
    } while (0)

extern "C" const char *rv_comm_nccl_version(void) { return nccl_load() < 0 ? NULL : nccl.version; }

extern "C" int rv_comm_nccl_unique_id(void *id, size_t bytes)
{
    if (bytes != NCCL_UNIQUE_ID_BYTES)
        return rv_error_set("nccl: unique id of %zu bytes, expected %d", bytes, NCCL_UNIQUE_ID_BYTES);
    if (nccl_load() < 0)
        return -1;
    ncclUniqueId u;
    RV_NCCL_CHECK(nccl.GetUniqueId(&u));
    memcpy(id, &u, sizeof u);
    return 0;
}

/* ---------------------------------------------------------------- the communicator */

typedef struct {
    long ticket;
    cudaEvent_t done;
} inflight;

typedef struct {
    rv_comm comm;
    rv_cuda *ctx;
    ncclComm_t nc;
    int rank, world;
    cudaStream_t stream;   /* the collectives' own stream */
    cudaEvent_t queued;    /* "ctx's stream reached here", recorded before each collective */
    inflight *fly;         /* started, not yet waited */
    size_t n_fly, cap_fly;
    cudaEvent_t *spare;    /* events to reuse */
    size_t n_spare, cap_spare;
    long next_ticket;
    float *barrier_buf;    /* one device float */
} nccl_comm;

static int nc_rank(const rv_comm *c) { return ((const nccl_comm *)c->impl)->rank; }
static int nc_world(const rv_comm *c) { return ((const nccl_comm *)c->impl)->world; }

/* NCCL reports failures of queued work (a peer died, a network error)
 * asynchronously: checked at every wait. */
static int check_async(nccl_comm *n)
{
    ncclResult_t async = ncclSuccess;
    RV_NCCL_CHECK(nccl.CommGetAsyncError(n->nc, &async));
    if (async != ncclSuccess)
        return rv_error_set("nccl: rank %d: asynchronous error: %s", n->rank, nccl.GetErrorString(async));
    return 0;
}

static int is_device_pointer(const void *p, int *dev)
{
    cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess) {
        cudaGetLastError();   /* older runtimes: plain host memory is an error here */
        *dev = 0;
        return 0;
    }
    *dev = a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
    return 0;
}

/* Orders the next operation on n->stream after everything queued so far on ctx's stream. */
static int after_ctx(nccl_comm *n)
{
    RV_CUDA_CHECK(cudaEventRecord(n->queued, n->ctx->stream));
    RV_CUDA_CHECK(cudaStreamWaitEvent(n->stream, n->queued, 0));
    return 0;
}

static long nc_start(rv_comm *c, float *buf, size_t count)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    int dev = 0;
    is_device_pointer(buf, &dev);
    if (count && !dev)
        return rv_error_set("nccl: all-reduce of %zu floats at %p: not device memory", count, (void *)buf);
    if (n->n_fly == n->cap_fly) {
        size_t cap = n->cap_fly ? 2 * n->cap_fly : 64;
        inflight *f = (inflight *)realloc(n->fly, cap * sizeof *f);
        if (!f)
            return rv_error_set("nccl: out of memory");
        n->fly = f;
        n->cap_fly = cap;
    }
    cudaEvent_t ev;
    if (n->n_spare)
        ev = n->spare[--n->n_spare];
    else
        RV_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    int rc = after_ctx(n);
    if (rc == 0) {
        ncclResult_t r = nccl.AllReduce(buf, buf, count, ncclFloat32, ncclSum, n->nc, n->stream);
        if (r != ncclSuccess)
            rc = rv_error_set("nccl: rank %d: all-reduce of %zu floats: %s", n->rank, count, nccl.GetErrorString(r));
    }
    if (rc == 0) {
        cudaError_t e = cudaEventRecord(ev, n->stream);
        if (e != cudaSuccess)
            rc = rv_error_set("cuda: rank %d: recording an all-reduce: %s", n->rank, cudaGetErrorString(e));
    }
    if (rc < 0) {
        cudaEventDestroy(ev);
        return -1;
    }
    long t = n->next_ticket++;
    n->fly[n->n_fly++] = inflight{t, ev};
    return t;
}

static int nc_wait(rv_comm *c, long ticket)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    size_t i = 0;
    while (i < n->n_fly && n->fly[i].ticket != ticket)
        i++;
    if (i == n->n_fly)
        return rv_error_set("nccl: rank %d: wait on ticket %ld, which is not in flight", n->rank, ticket);
    cudaEvent_t ev = n->fly[i].done;
    n->fly[i] = n->fly[--n->n_fly];
    cudaError_t e = cudaStreamWaitEvent(n->ctx->stream, ev, 0);
    if (n->n_spare == n->cap_spare) {
        size_t cap = n->cap_spare ? 2 * n->cap_spare : 64;
        cudaEvent_t *s = (cudaEvent_t *)realloc(n->spare, cap * sizeof *s);
        if (s) {
            n->spare = s;
            n->cap_spare = cap;
        }
    }
    if (n->n_spare < n->cap_spare)
        n->spare[n->n_spare++] = ev;   /* reusable: a later record replaces the wait's target only after it was queued */
    else
        cudaEventDestroy(ev);
    if (e != cudaSuccess)
        return rv_error_set("cuda: rank %d: waiting for an all-reduce: %s", n->rank, cudaGetErrorString(e));
    return check_async(n);
}

static int nc_broadcast(rv_comm *c, void *buf, size_t bytes, int root)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (root < 0 || root >= n->world)
        return rv_error_set("nccl: broadcast root %d outside a world of %d", root, n->world);
    if (!bytes)
        return 0;
    int dev = 0;
    is_device_pointer(buf, &dev);
    if (dev) {
        if (after_ctx(n) < 0)
            return -1;
        RV_NCCL_CHECK(nccl.Broadcast(buf, buf, bytes, ncclChar, root, n->nc, n->stream));
        RV_CUDA_CHECK(cudaEventRecord(n->queued, n->stream));
        RV_CUDA_CHECK(cudaStreamWaitEvent(n->ctx->stream, n->queued, 0));
        return check_async(n);
    }
    /* host bytes: staged through device memory, blocking */
    void *d = NULL;
    RV_CUDA_CHECK(cudaMalloc(&d, bytes));
    int rc = after_ctx(n);
    cudaError_t e = cudaSuccess;
    if (rc == 0 && (e = cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, n->stream)) != cudaSuccess)
        rc = rv_error_set("cuda: rank %d: staging %zu broadcast bytes: %s", n->rank, bytes, cudaGetErrorString(e));
    if (rc == 0) {
        ncclResult_t r = nccl.Broadcast(d, d, bytes, ncclChar, root, n->nc, n->stream);
        if (r != ncclSuccess)
            rc = rv_error_set("nccl: rank %d: broadcast of %zu bytes from rank %d: %s", n->rank, bytes, root,
                              nccl.GetErrorString(r));
    }
    if (rc == 0 && ((e = cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, n->stream)) != cudaSuccess ||
                    (e = cudaStreamSynchronize(n->stream)) != cudaSuccess))
        rc = rv_error_set("cuda: rank %d: broadcast of %zu host bytes: %s", n->rank, bytes, cudaGetErrorString(e));
    if (rc == 0)
        rc = check_async(n);
    cudaFree(d);
    return rc;
}

static int nc_barrier(rv_comm *c)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (after_ctx(n) < 0)
        return -1;
    RV_NCCL_CHECK(nccl.AllReduce(n->barrier_buf, n->barrier_buf, 1, ncclFloat32, ncclSum, n->nc, n->stream));
    RV_CUDA_CHECK(cudaStreamSynchronize(n->stream));
    return check_async(n);
}

__global__ void divide_kernel(float *x, size_t count, float d)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        x[i] = x[i] / d;
}

static int nc_divide(rv_comm *c, float *buf, size_t count, float d)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (!count)
        return 0;
    unsigned grid;
    if (rv_grid_1d(count < ((size_t)1 << 28) ? count : ((size_t)1 << 28), 256, &grid, "divide") < 0)
        return -1;
    RV_LAUNCH(divide_kernel, grid, 256, 0, n->ctx->stream, buf, count, d);
    RV_LAUNCH_CHECK("divide_kernel");
    return 0;
}

static void nc_close(rv_comm *c)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (!n)
        return;
    cudaSetDevice(n->ctx->device);
    if (n->stream)
        cudaStreamSynchronize(n->stream);
    if (n->nc)
        nccl.CommDestroy(n->nc);
    for (size_t i = 0; i < n->n_fly; i++)
        cudaEventDestroy(n->fly[i].done);
    for (size_t i = 0; i < n->n_spare; i++)
        cudaEventDestroy(n->spare[i]);
    free(n->fly);
    free(n->spare);
    if (n->queued)
        cudaEventDestroy(n->queued);
    if (n->stream)
        cudaStreamDestroy(n->stream);
    cudaFree(n->barrier_buf);
    free(n);
}

static int nc_setup(nccl_comm *n, int rank, int world, const void *id)
{
    RV_CUDA_CHECK(cudaSetDevice(n->ctx->device));
    RV_CUDA_CHECK(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    RV_CUDA_CHECK(cudaEventCreateWithFlags(&n->queued, cudaEventDisableTiming));
    RV_CUDA_CHECK(cudaMalloc((void **)&n->barrier_buf, sizeof(float)));
    RV_CUDA_CHECK(cudaMemset(n->barrier_buf, 0, sizeof(float)));
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    RV_NCCL_CHECK(nccl.CommInitRank(&n->nc, world, u, rank));   /* blocks until every rank joined */
    return 0;
}

extern "C" rv_comm *rv_comm_nccl_open(rv_cuda *ctx, int rank, int world, const void *id, size_t id_bytes)
{
    if (!ctx || !id) {
        rv_error_set("nccl: open without a CUDA context or unique id");
        return NULL;
    }
    if (id_bytes != NCCL_UNIQUE_ID_BYTES) {
        rv_error_set("nccl: unique id of %zu bytes, expected %d", id_bytes, NCCL_UNIQUE_ID_BYTES);
        return NULL;
    }
    if (world < 1 || rank < 0 || rank >= world) {
        rv_error_set("nccl: rank %d of world %d", rank, world);
        return NULL;
    }
    if (nccl_load() < 0)
        return NULL;
    nccl_comm *n = (nccl_comm *)calloc(1, sizeof *n);
    if (!n) {
        rv_error_set("nccl: out of memory");
        return NULL;
    }
    n->ctx = ctx;
    n->rank = rank;
    n->world = world;
    n->comm = rv_comm{"nccl", 1, nc_rank, nc_world, nc_start, nc_wait, nc_broadcast, nc_barrier, nc_divide, nc_close, n};
    if (nc_setup(n, rank, world, id) < 0) {
        rv_error_prefix("rank %d of %d", rank, world);
        nc_close(&n->comm);
        return NULL;
    }
    return &n->comm;
}

#endif
