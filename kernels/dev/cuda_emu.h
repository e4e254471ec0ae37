/* cuda_emu.h — a small CPU emulator of exactly the CUDA features revela's
 * kernels use, so that the CUDA sources in kernels/ compile as plain C++ (-DRV_CUDA_EMULATE,
 * included by cuda_common.cuh) and their logic runs on machines with no
 * GPU. It is a test instrument, not a backend: slow, one block at a time.
 *
 *   threadIdx/blockIdx/blockDim/gridDim, __syncthreads   every thread of a block is a
 *        fiber on one OS thread (a user-space stack switch on x86-64, ucontext
 *        elsewhere); a barrier yields until all have arrived
 *   __shfl_sync, __shfl_xor_sync, __shfl_down_sync      full warps only, exchanged
 *        through per-warp slots at a warp barrier
 *   rv_emu::warp_exchange                               the same for up to 32 bytes a lane:
 *        what kernels/mma_bf16.cuh's tensor-core mma uses here
 *   rv_emu::launch, dynamic_smem                        grid loop; dynamic shared
 *        memory filled with NaN at each block start (exposes reads of unwritten tiles)
 *   cudaMalloc (NaN-filled), cudaMemcpyAsync, ..., cudaFuncSetAttribute (the 48 KiB
 *        dynamic shared-memory limit is enforced unless raised, as on a GPU), events
 *        (the host clock: launches run to their end before returning)
 *   cublasLt*                                           descriptors recorded; cublasLtMatmul
 *        is a naive column-major product in double that checks the layouts; the
 *        heuristic finds no algorithm for 16-bit operands aligned below 16 bytes
 *        (so callers' fallback paths run too)
 * A barrier or shuffle that not every thread reaches is reported as a
 * deadlock and aborts, where a GPU would hang or misbehave. Between
 * barriers threads run one after another, so a missing __syncthreads before
 * a tile is read or overwritten shows up as wrong results.
 * RV_EMU_NO_DEVICE=1 in the environment makes cudaGetDeviceCount report no
 * device (to test callers' SKIP paths); RV_EMU_DEVICES=N makes it report N
 * devices (default 1), all the same CPU, so multi-GPU code paths (one rank
 * per device) run too: cudaSetDevice and cudaGetDeviceProperties accept
 * 0..N-1. cudaSetDevice is remembered per host thread, as on a GPU.
 * RV_EMU_DEVICE_MEM=BYTES makes the device that small (default 8 GiB, not
 * enforced): cudaMalloc fails with cudaErrorMemoryAllocation beyond it, and
 * cudaMemGetInfo reports it less what is allocated (all devices share one
 * count), so callers' out-of-memory paths run too.
 *
 * Threads: several host threads may each drive their own context (a test
 * runs data-parallel ranks as threads). As with CUDA, the last error and the
 * current device are per host thread, and so is everything a launch uses
 * (the fiber scheduler, threadIdx/blockIdx/..., dynamic shared memory): a
 * kernel runs entirely on the host thread that launched it. The per-kernel
 * shared-memory limits (cudaFuncSetAttribute) are process-wide, as on a GPU,
 * behind a mutex. */
#ifndef RV_CUDA_EMU_H
#define RV_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include <malloc.h>   /* malloc_usable_size: the emulated device's bytes in use */

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

extern "C" {
#include "half.h"
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

/* Per host thread: each thread launching kernels runs its own grid loop.
 * The small, hot per-thread variables use the initial-exec TLS model: in
 * -fPIC code the default model calls __tls_get_addr at every access (it
 * cost ~15% of test_step_gpu_emu's CPU time; with this, ~5%); these few
 * dozen bytes fit the static TLS reserve glibc keeps for libraries loaded
 * with dlopen (librevela-cuda.so). */
#define RV_EMU_TLS thread_local __attribute__((tls_model("initial-exec")))
inline RV_EMU_TLS uint3 threadIdx, blockIdx;
inline RV_EMU_TLS dim3 blockDim, gridDim;

static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

/* ---------------------------------------------------------------- runtime API subset */
typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
} cudaError_t;
typedef enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 } cudaMemcpyKind;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef struct rv_emu_stream *cudaStream_t;
#define cudaStreamNonBlocking 0x01

struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t sharedMemPerBlockOptin;
};

namespace rv_emu {
inline RV_EMU_TLS cudaError_t last_error = cudaSuccess;   /* per host thread, as CUDA's */
inline RV_EMU_TLS int current_device = 0;                  /* cudaSetDevice, per host thread */
inline std::map<const void *, size_t> smem_limit;   /* per kernel, raised by cudaFuncSetAttribute */
inline std::mutex smem_mu;                           /* guards smem_limit (process-wide, as on a GPU) */
constexpr size_t default_smem = 48 * 1024, optin_smem = 227 * 1024;

/* The device count: RV_EMU_NO_DEVICE set (not "0") -> 0; else RV_EMU_DEVICES
 * (1..64; anything else -> 1). Read at each call, so a test can change it. */
inline int device_count()
{
    const char *no = getenv("RV_EMU_NO_DEVICE");
    if (no && *no && strcmp(no, "0") != 0)
        return 0;
    const char *s = getenv("RV_EMU_DEVICES");
    if (!s || !*s)
        return 1;
    char *end = NULL;
    long n = strtol(s, &end, 10);
    return (*end == '\0' && n >= 1 && n <= 64) ? (int)n : 1;
}

inline cudaError_t fail(cudaError_t e)
{
    last_error = e;
    return e;
}

inline std::atomic<size_t> allocated{0};   /* bytes held by cudaMalloc (malloc_usable_size) */

/* RV_EMU_DEVICE_MEM, or 0 when unset or not a positive number (8 GiB, not enforced). */
inline size_t device_mem_limit()
{
    const char *s = getenv("RV_EMU_DEVICE_MEM");
    if (!s || !*s)
        return 0;
    char *end = NULL;
    unsigned long long n = strtoull(s, &end, 10);
    return *end == '\0' ? (size_t)n : 0;
}
} // namespace rv_emu

static inline const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulator)";
    case cudaErrorMemoryAllocation: return "out of memory (emulator)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulator)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulator)";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulator, RV_EMU_NO_DEVICE)";
    }
    return "unknown error (emulator)";
}

static inline cudaError_t cudaGetLastError(void)
{
    cudaError_t e = rv_emu::last_error;
    rv_emu::last_error = cudaSuccess;
    return e;
}

static inline cudaError_t cudaGetDeviceCount(int *n)
{
    *n = rv_emu::device_count();
    return *n ? cudaSuccess : rv_emu::fail(cudaErrorNoDevice);
}

static inline cudaError_t cudaSetDevice(int d)
{
    if (d < 0 || d >= rv_emu::device_count())
        return rv_emu::fail(cudaErrorInvalidDevice);
    rv_emu::current_device = d;
    return cudaSuccess;
}

static inline cudaError_t cudaGetDevice(int *d)
{
    *d = rv_emu::current_device;
    return cudaSuccess;
}

static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    if (d < 0 || d >= rv_emu::device_count())
        return rv_emu::fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulator (kernels/dev/cuda_emu.h)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 1;
    p->sharedMemPerBlockOptin = rv_emu::optin_smem;
    return cudaSuccess;
}

static inline cudaError_t cudaMalloc(void **p, size_t n)
{
    const size_t limit = rv_emu::device_mem_limit();
    *p = NULL;
    if (limit && n > limit - (rv_emu::allocated.load() < limit ? rv_emu::allocated.load() : limit))
        return rv_emu::fail(cudaErrorMemoryAllocation);
    *p = malloc(n ? n : 1);
    if (!*p)
        return rv_emu::fail(cudaErrorMemoryAllocation);
    rv_emu::allocated += malloc_usable_size(*p);
    memset(*p, 0xff, n);   /* NaN in every float/bf16 lane: unwritten device memory is loud */
    return cudaSuccess;
}
static inline cudaError_t cudaFree(void *p)
{
    if (p)
        rv_emu::allocated -= malloc_usable_size(p);
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    const size_t limit = rv_emu::device_mem_limit(), total = limit ? limit : (size_t)8 << 30,
                 used = rv_emu::allocated.load();
    *total_bytes = total;
    *free_bytes = used < total ? total - used : 0;
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t)
{
    memmove(d, s, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t)
{
    memset(d, v, n);
    return cudaSuccess;
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    *s = (cudaStream_t)malloc(1);
    return *s ? cudaSuccess : rv_emu::fail(cudaErrorMemoryAllocation);
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    free((void *)s);
    return cudaSuccess;
}
/* Events: the host clock when recorded (the emulator runs every launch to
 * its end before returning, so that is when the stream reached it). */
struct rv_emu_event {
    double ms;
};
typedef rv_emu_event *cudaEvent_t;
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned)
{
    *e = new rv_emu_event{0.0};
    return cudaSuccess;
}
static inline cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
static inline cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    e->ms = t.tv_sec * 1e3 + t.tv_nsec / 1e6;
    return cudaSuccess;
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

template <class Kernel>
static inline cudaError_t cudaFuncSetAttribute(Kernel k, cudaFuncAttribute, int value)
{
    if (value < 0 || (size_t)value > rv_emu::optin_smem)
        return rv_emu::fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(rv_emu::smem_mu);
    rv_emu::smem_limit[(const void *)k] = (size_t)value;
    return cudaSuccess;
}

/* ---------------------------------------------------------------- fibers, barriers, shuffles */
/* Switching fibers. swapcontext saves and restores the signal mask with a
 * system call (rt_sigprocmask) at every switch; with a switch at every
 * barrier and shuffle of every thread, that was ~90% of the emulated tests'
 * time. On x86-64 the switch is instead a few instructions in user space
 * (rv_emu_ctx_switch below): push the callee-saved registers on the current
 * stack, store the stack pointer, load the other fiber's, pop, return. The
 * rest of the state a call must preserve is the same for every fiber of a
 * host thread (the MXCSR and x87 control words: nothing here changes them),
 * and the caller-saved registers are the compiler's business, since this is
 * an ordinary (opaque, external) call. Elsewhere, or with -DRV_EMU_UCONTEXT
 * (to test that path on x86-64), fibers switch with swapcontext as before.
 * (A hardware shadow stack, x86 CET SHSTK, would reject the return onto
 * another stack; glibc turns user shadow stacks on only on request, and a
 * build for such a process should define RV_EMU_UCONTEXT.)
 * Fibers are also started only once per host thread and reused by every
 * later block and launch (each loops: run the block, park), so starting a
 * block costs no getcontext/makecontext either. */
#if defined(__x86_64__) && !defined(RV_EMU_UCONTEXT)
#define RV_EMU_ASM_SWITCH 1
/* void rv_emu_ctx_switch(void **save_sp, void *to_sp): saves this fiber's
 * stack pointer (after pushing rbp, rbx, r12-r15) into *save_sp and resumes
 * the fiber whose stack pointer is to_sp. A hidden, global symbol in a COMDAT
 * group: every kernel object that includes this header emits it and the
 * linker keeps one copy. An external call the compiler cannot see into, so
 * it assumes memory may change across it. */
__asm__(".pushsection .text.rv_emu_ctx_switch,\"axG\",@progbits,rv_emu_ctx_switch,comdat\n"
        ".globl rv_emu_ctx_switch\n"
        ".hidden rv_emu_ctx_switch\n"
        ".type rv_emu_ctx_switch,@function\n"
        ".p2align 4\n"
        "rv_emu_ctx_switch:\n"
        "\tpushq %rbp\n"
        "\tpushq %rbx\n"
        "\tpushq %r12\n"
        "\tpushq %r13\n"
        "\tpushq %r14\n"
        "\tpushq %r15\n"
        "\tmovq %rsp, (%rdi)\n"
        "\tmovq %rsi, %rsp\n"
        "\tpopq %r15\n"
        "\tpopq %r14\n"
        "\tpopq %r13\n"
        "\tpopq %r12\n"
        "\tpopq %rbx\n"
        "\tpopq %rbp\n"
        "\tret\n"
        ".size rv_emu_ctx_switch, .-rv_emu_ctx_switch\n"
        ".popsection\n");
extern "C" __attribute__((visibility("hidden"))) void rv_emu_ctx_switch(void **save_sp, void *to_sp);
#else
#define RV_EMU_ASM_SWITCH 0
#endif

/* ASan must be told when the stack changes under it (it tracks the current
 * stack's bounds, e.g. to unpoison it on longjmp-like exits and to tell
 * stack from heap in reports), so every switch is bracketed by
 * __sanitizer_start_switch_fiber (before, with the destination's stack) and
 * __sanitizer_finish_switch_fiber (after, on the destination). */
#if defined(__SANITIZE_ADDRESS__)
#define RV_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RV_EMU_ASAN 1
#endif
#endif
#ifdef RV_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace rv_emu {
constexpr size_t stack_bytes = 256 * 1024;

/* One emulated CUDA thread. Heap-allocated, so its address (which a parked
 * fiber's frames may hold) stays put when the fiber table grows; a
 * ucontext_t also points into itself and must not move. */
struct fiber {
#if RV_EMU_ASM_SWITCH
    void *sp = nullptr;                  /* saved stack pointer while not running */
#else
    ucontext_t ctx;
#endif
    char *stack = nullptr;               /* stack_bytes, malloc'd (ASan sees it as a heap block) */
    void *asan_fake_stack = nullptr;     /* ASan's fake stack, saved while switched out */
    bool done = false, at_block_barrier = false;
    fiber() = default;
    fiber(const fiber &) = delete;
    fiber &operator=(const fiber &) = delete;
    ~fiber() { free(stack); }            /* a parked fiber holds nothing else that needs freeing */
};

/* The scheduler's state is per host thread (see the top comment): fibers
 * run on the thread that launched the kernel, so they see its copies. The
 * larger parts live in one heap object per thread, reached through one
 * initial-exec TLS pointer (fast to reach, small static TLS); an owner
 * object with a thread_local destructor frees it when the thread ends. */
struct thread_state {
#if RV_EMU_ASM_SWITCH
    void *scheduler_sp = nullptr;
#else
    ucontext_t scheduler;
#endif
    const void *scheduler_stack = nullptr;        /* the host thread's stack, as ASan reports it */
    size_t scheduler_stack_size = 0;
    void *scheduler_fake_stack = nullptr;
    std::vector<std::unique_ptr<fiber>> fibers;   /* grows to the largest block; reused */
    std::vector<unsigned> warp_count, warp_gen;
    std::vector<uint64_t> warp_slots;             /* [warp][2 generations][32 lanes] */
    std::vector<unsigned char> warp_xchg;         /* [warp][2 generations][32 lanes][exchange_bytes] */
    std::function<void()> block_body;
    unsigned char *smem = nullptr;                /* exactly the launch's bytes (ASan sees overruns) */
    unsigned long long launches = 0;              /* odd launches run the warps in reverse order */
};
inline RV_EMU_TLS thread_state *ts;               /* this thread's, made by its first launch */
struct thread_state_owner {
    bool armed = false;
    ~thread_state_owner()
    {
        delete ts;
        ts = nullptr;
    }
};
inline thread_local thread_state_owner ts_owner;
inline RV_EMU_TLS int n_threads, current;
inline RV_EMU_TLS unsigned long long events;      /* barrier arrivals and exits: progress */
inline RV_EMU_TLS unsigned bar_count, bar_gen;

/* Scheduler -> fiber f; returns when f switches back. */
inline void enter_fiber(fiber &f)
{
#ifdef RV_EMU_ASAN
    __sanitizer_start_switch_fiber(&ts->scheduler_fake_stack, f.stack, stack_bytes);
#endif
#if RV_EMU_ASM_SWITCH
    rv_emu_ctx_switch(&ts->scheduler_sp, f.sp);
#else
    swapcontext(&ts->scheduler, &f.ctx);
#endif
#ifdef RV_EMU_ASAN
    __sanitizer_finish_switch_fiber(ts->scheduler_fake_stack, nullptr, nullptr);
#endif
}

/* Fiber f (the running one) -> scheduler; returns when the scheduler enters f again. */
inline void leave_fiber(fiber &f)
{
#ifdef RV_EMU_ASAN
    __sanitizer_start_switch_fiber(&f.asan_fake_stack, ts->scheduler_stack, ts->scheduler_stack_size);
#endif
#if RV_EMU_ASM_SWITCH
    rv_emu_ctx_switch(&f.sp, ts->scheduler_sp);
#else
    swapcontext(&f.ctx, &ts->scheduler);
#endif
#ifdef RV_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.asan_fake_stack, &ts->scheduler_stack, &ts->scheduler_stack_size);
#endif
}

inline void yield() { leave_fiber(*ts->fibers[current]); }

/* Every fiber's whole life: run the current block's body as thread
 * `current`, report done, park; the scheduler resumes it for its next
 * block (of this or a later launch). It never returns. */
inline void fiber_main()
{
#ifdef RV_EMU_ASAN
    /* first entry: learn the scheduler's stack (where leave_fiber goes back to) */
    __sanitizer_finish_switch_fiber(nullptr, &ts->scheduler_stack, &ts->scheduler_stack_size);
#endif
    for (;;) {
        ts->block_body();
        ts->fibers[current]->done = true;
        events++;
        yield();
    }
}

/* A new fiber, ready for enter_fiber to start fiber_main on its own stack. */
inline fiber *new_fiber()
{
    std::unique_ptr<fiber> f(new fiber());
    f->stack = (char *)malloc(stack_bytes);
    if (!f->stack) {
        fprintf(stderr, "cuda_emu: out of memory for a %zu-byte fiber stack\n", stack_bytes);
        abort();
    }
#if RV_EMU_ASM_SWITCH
    /* The frame rv_emu_ctx_switch pops: six zero registers, then fiber_main
     * as the return address, then a zero return address for fiber_main
     * itself (ends backtraces), so fiber_main starts with the stack pointer
     * 8 off 16-byte alignment, as after a call. */
    uintptr_t top = ((uintptr_t)f->stack + stack_bytes) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;
    *--sp = (void *)&fiber_main;
    for (int i = 0; i < 6; i++)
        *--sp = nullptr;
    f->sp = sp;
#else
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = stack_bytes;
    f->ctx.uc_link = nullptr;   /* fiber_main never returns */
    makecontext(&f->ctx, (void (*)())fiber_main, 0);
#endif
    return f.release();
}

inline void *dynamic_smem() { return ts->smem; }

inline void syncthreads()
{
    unsigned gen = bar_gen;
    events++;
    if (++bar_count == (unsigned)n_threads) {
        bar_count = 0;
        bar_gen++;
        for (int t = 0; t < n_threads; t++)
            ts->fibers[t]->at_block_barrier = false;
        return;
    }
    ts->fibers[current]->at_block_barrier = true;
    while (bar_gen == gen)
        yield();
}

inline int linear_tid() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }

/* Warp w's lanes meet (a warp barrier): each returns once all 32 arrived.
 * Deposits made before it in the generation's slots (parity of warp_gen
 * before the call) are complete after it; the next meeting writes the other
 * parity's slots, so they stay readable until then. */
inline void warp_meet(int w)
{
    unsigned gen = ts->warp_gen[w];
    events++;
    if (++ts->warp_count[w] == 32) {
        ts->warp_count[w] = 0;
        ts->warp_gen[w]++;
    } else {
        while (ts->warp_gen[w] == gen)
            yield();
    }
}

template <class T>
inline T shuffle(unsigned mask, T v, int src_lane)
{
    if (mask != 0xffffffffu || n_threads % 32 != 0) {
        fprintf(stderr, "cuda_emu: shuffle with mask %#x in a block of %d threads: full warps only\n", mask, n_threads);
        abort();
    }
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
    int tid = linear_tid(), w = tid / 32, lane = tid % 32;
    unsigned par = ts->warp_gen[w] & 1u;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    ts->warp_slots[((size_t)w * 2 + par) * 32 + lane] = bits;
    warp_meet(w);
    T r;
    memcpy(&r, &ts->warp_slots[((size_t)w * 2 + par) * 32 + (src_lane & 31)], sizeof(T));
    (void)lane;
    return r;
}

/* Every lane of the warp deposits n (<= exchange_bytes) bytes and gets all
 * 32 lanes' deposits in `all` (lane l's at all + l*n): one warp barrier,
 * like a shuffle. The warp-collective instructions (mma below) use it. */
constexpr size_t exchange_bytes = 32;
inline void warp_exchange(const void *mine, size_t n, void *all)
{
    if (n_threads % 32 != 0 || n > exchange_bytes) {
        fprintf(stderr, "cuda_emu: warp exchange of %zu bytes in a block of %d threads: full warps and <= %zu "
                "bytes only\n", n, n_threads, exchange_bytes);
        abort();
    }
    int tid = linear_tid(), w = tid / 32, lane = tid % 32;
    unsigned par = ts->warp_gen[w] & 1u;
    unsigned char *slots = ts->warp_xchg.data() + ((size_t)w * 2 + par) * 32 * exchange_bytes;
    memcpy(slots + (size_t)lane * exchange_bytes, mine, n);
    warp_meet(w);
    for (int l = 0; l < 32; l++)
        memcpy((unsigned char *)all + (size_t)l * n, slots + (size_t)l * exchange_bytes, n);
}

inline void run_block(int nthreads)
{
    n_threads = nthreads;
    while ((int)ts->fibers.size() < nthreads)
        ts->fibers.emplace_back(new_fiber());
    int n_warps = (nthreads + 31) / 32;
    ts->warp_count.assign(n_warps, 0);
    ts->warp_gen.assign(n_warps, 0);
    ts->warp_slots.assign((size_t)n_warps * 64, 0);
    ts->warp_xchg.assign((size_t)n_warps * 64 * exchange_bytes, 0);
    bar_count = 0;
    for (int t = 0; t < nthreads; t++) {
        ts->fibers[t]->done = false;
        ts->fibers[t]->at_block_barrier = false;
    }
    /* Warp at a time: one warp runs (its lanes meeting at shuffles) until
     * every lane waits at __syncthreads or has finished, then the next warp.
     * So a warp races as far ahead of the others as a GPU would allow, and
     * a missing block barrier shows up as a read of NaN-filled or stale
     * shared memory. The warp order alternates between launches. */
    int remaining = nthreads;
    bool reverse = (ts->launches & 1) != 0;
    while (remaining > 0) {
        unsigned long long before = events;
        for (int wi = 0; wi < n_warps; wi++) {
            int w = reverse ? n_warps - 1 - wi : wi, lo = w * 32, hi = min(nthreads, lo + 32);
            for (;;) {
                unsigned long long warp_before = events;
                bool runnable = false;
                for (int t = lo; t < hi; t++) {
                    fiber &f = *ts->fibers[t];
                    if (f.done || f.at_block_barrier)
                        continue;
                    runnable = true;
                    current = t;
                    threadIdx.x = (unsigned)t % blockDim.x;
                    threadIdx.y = ((unsigned)t / blockDim.x) % blockDim.y;
                    threadIdx.z = (unsigned)t / (blockDim.x * blockDim.y);
                    enter_fiber(f);
                    if (f.done)
                        remaining--;
                }
                if (!runnable || events == warp_before)
                    break;
            }
        }
        if (remaining > 0 && events == before) {
            fprintf(stderr, "cuda_emu: deadlock in block (%u,%u,%u): %d threads wait at a barrier or shuffle that "
                    "the others never reach\n", blockIdx.x, blockIdx.y, blockIdx.z, remaining);
            abort();
        }
    }
}

/* Runs kernel(args...) over the grid, one block at a time. */
template <class... P, class... A>
inline void launch(dim3 grid, dim3 block, size_t smem_bytes, void (*kernel)(P...), A... a)
{
    static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
    size_t nthreads = (size_t)block.x * block.y * block.z;
    size_t limit = default_smem;
    {
        std::lock_guard<std::mutex> lock(smem_mu);
        auto it = smem_limit.find((const void *)kernel);
        if (it != smem_limit.end())
            limit = it->second;
    }
    if (nthreads == 0 || nthreads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
        grid.z > 65535) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem_bytes > limit) {
        fail(cudaErrorInvalidValue);   /* what a GPU says for too much dynamic shared memory */
        return;
    }
    if (!ts) {
        ts = new thread_state();
        ts_owner.armed = true;   /* first use: registers the owner's destructor for this thread */
    }
    std::tuple<P...> args((P)a...);
    ts->block_body = [&]() { std::apply(kernel, args); };
    blockDim = block;
    gridDim = grid;
    ts->smem = (unsigned char *)malloc(smem_bytes ? smem_bytes : 1);
    if (!ts->smem) {
        fail(cudaErrorMemoryAllocation);
        return;
    }
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx.x = x;
                blockIdx.y = y;
                blockIdx.z = z;
                memset(ts->smem, 0xff, smem_bytes);
                run_block((int)nthreads);
            }
    free(ts->smem);
    ts->smem = nullptr;
    ts->block_body = nullptr;
    ts->launches++;
}
} // namespace rv_emu

static inline void __syncthreads() { rv_emu::syncthreads(); }
template <class T>
static inline T __shfl_sync(unsigned mask, T v, int src)
{
    return rv_emu::shuffle(mask, v, src);
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    return rv_emu::shuffle(mask, v, (rv_emu::linear_tid() % 32) ^ lane_mask);
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta)
{
    int lane = rv_emu::linear_tid() % 32;
    return rv_emu::shuffle(mask, v, lane + (int)delta < 32 ? lane + (int)delta : lane);
}

/* ---------------------------------------------------------------- cuBLASLt subset */
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4 } cublasLtMatmulDescAttributes_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

struct rv_emu_lt_handle {
    int unused;
};
struct rv_emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta, tb;
};
struct rv_emu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct rv_emu_lt_pref {
    uint64_t workspace;
    uint32_t align[4];   /* A, B, C, D */
};
typedef rv_emu_lt_handle *cublasLtHandle_t;
typedef rv_emu_lt_desc *cublasLtMatmulDesc_t;
typedef rv_emu_lt_layout *cublasLtMatrixLayout_t;
typedef rv_emu_lt_pref *cublasLtMatmulPreference_t;
typedef struct {
    uint64_t data[8];   /* the emulator keeps the alignments the plan was chosen for */
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

static inline const char *cublasLtGetStatusString(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "success" : s == CUBLAS_STATUS_INVALID_VALUE ? "invalid value (emulator)"
                                                  : s == CUBLAS_STATUS_NOT_SUPPORTED ? "not supported (emulator)"
                                                                                     : "error (emulator)";
}

static inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
    *h = new rv_emu_lt_handle();
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c, cudaDataType_t s)
{
    *d = new rv_emu_lt_desc{c, s, CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                            const void *v, size_t n)
{
    if (n != sizeof(cublasOperation_t))
        return CUBLAS_STATUS_INVALID_VALUE;
    cublasOperation_t op;
    memcpy(&op, v, n);
    if (a == CUBLASLT_MATMUL_DESC_TRANSA)
        d->ta = op;
    else if (a == CUBLASLT_MATMUL_DESC_TRANSB)
        d->tb = op;
    else
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows,
                                                        uint64_t cols, int64_t ld)
{
    if (ld < (int64_t)rows || ld < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    *l = new rv_emu_lt_layout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
    *p = new rv_emu_lt_pref{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                                  cublasLtMatmulPreferenceAttributes_t a, const void *v,
                                                                  size_t n)
{
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && n == sizeof(uint64_t)) {
        memcpy(&p->workspace, v, n);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES &&
        n == sizeof(uint32_t)) {
        memcpy(&p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], v, n);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

namespace rv_emu {
inline bool lt_pair_ok(cudaDataType_t ab, cudaDataType_t c)
{
    return (ab == CUDA_R_32F && c == CUDA_R_32F) || (ab == CUDA_R_16BF && (c == CUDA_R_16BF || c == CUDA_R_32F)) ||
           (ab == CUDA_R_16F && (c == CUDA_R_16F || c == CUDA_R_32F));
}
inline double lt_load(const void *p, cudaDataType_t t, size_t i)
{
    if (t == CUDA_R_16BF)
        return rv_bf16_to_f32(((const uint16_t *)p)[i]);
    if (t == CUDA_R_16F)
        return rv_f16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}
inline void lt_store(void *p, cudaDataType_t t, size_t i, double v)
{
    if (t == CUDA_R_16BF)
        ((uint16_t *)p)[i] = rv_f32_to_bf16((float)v);
    else if (t == CUDA_R_16F)
        ((uint16_t *)p)[i] = rv_f32_to_f16((float)v);
    else
        ((float *)p)[i] = (float)v;
}
} // namespace rv_emu

static inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d,
                                                            cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                                            cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                                            cublasLtMatmulPreference_t p, int requested,
                                                            cublasLtMatmulHeuristicResult_t *results, int *found)
{
    *found = 0;
    if (requested < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (d->compute != CUBLAS_COMPUTE_32F || A->type != B->type || C->type != D->type ||
        !rv_emu::lt_pair_ok(A->type, C->type))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (A->type != CUDA_R_32F)   /* like a tensor-core library: 16-bit operands want 16-byte alignment */
        for (int i = 0; i < 4; i++)
            if (p->align[i] < 16)
                return CUBLAS_STATUS_SUCCESS;   /* no algorithm found */
    /* up to 3 candidates (they compute alike), so callers that time them have a choice to make */
    const int n = requested < 3 ? requested : 3;
    for (int r = 0; r < n; r++) {
        memset(&results[r], 0, sizeof results[r]);
        for (int i = 0; i < 4; i++)
            results[r].algo.data[i] = p->align[i];
        results[r].algo.data[4] = (uint64_t)r;
        results[r].state = CUBLAS_STATUS_SUCCESS;
    }
    *found = n;
    return CUBLAS_STATUS_SUCCESS;
}

/* D = alpha op(A) op(B) + beta C, column-major, as cuBLASLt defines it. */
static inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha,
                                            const void *a, cublasLtMatrixLayout_t A, const void *b,
                                            cublasLtMatrixLayout_t B, const void *beta, const void *c,
                                            cublasLtMatrixLayout_t C, void *dd, cublasLtMatrixLayout_t D,
                                            const cublasLtMatmulAlgo_t *algo, void *, size_t, cudaStream_t)
{
    uint64_t m = d->ta == CUBLAS_OP_N ? A->rows : A->cols, k = d->ta == CUBLAS_OP_N ? A->cols : A->rows;
    uint64_t kb = d->tb == CUBLAS_OP_N ? B->rows : B->cols, n = d->tb == CUBLAS_OP_N ? B->cols : B->rows;
    if (k != kb || C->rows != m || C->cols != n || D->rows != m || D->cols != n || A->type != B->type ||
        C->type != D->type || !rv_emu::lt_pair_ok(A->type, C->type))
        return CUBLAS_STATUS_INVALID_VALUE;
    const void *ptrs[4] = {a, b, c, dd};
    for (int i = 0; i < 4; i++)   /* the plan's alignment promise must hold for these pointers */
        if ((uintptr_t)ptrs[i] % (algo->data[i] ? algo->data[i] : 1) != 0)
            return CUBLAS_STATUS_INVALID_VALUE;
    float al, be;
    memcpy(&al, alpha, sizeof al);
    memcpy(&be, beta, sizeof be);
    std::vector<double> out((size_t)m * n);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double s = 0;
            for (uint64_t p = 0; p < k; p++) {
                size_t ia = d->ta == CUBLAS_OP_N ? i + p * A->ld : p + i * A->ld;
                size_t ib = d->tb == CUBLAS_OP_N ? p + j * B->ld : j + p * B->ld;
                s += rv_emu::lt_load(a, A->type, ia) * rv_emu::lt_load(b, B->type, ib);
            }
            double v = al * s;
            if (be != 0.0f)   /* BLAS rule: C is not read when beta is 0 */
                v += be * rv_emu::lt_load(c, C->type, i + j * C->ld);
            out[i + j * m] = v;
        }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++)
            rv_emu::lt_store(dd, D->type, i + j * D->ld, out[i + j * m]);
    return CUBLAS_STATUS_SUCCESS;
}

#endif
