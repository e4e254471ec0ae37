/* gpu_profile.h — --gpu-profile for the tools with a CUDA path (rv-train,
 * rv-encode): device time per operation and per matrix-product shape, from
 * the backend's profiler (kernels/cuda_ops.h: rv_cuda_profile_*), looked up
 * by name in the loaded librevela-cuda.so, so the tools link no CUDA. The
 * profile sums `units` (rv-train: the steps after the first; rv-encode: the
 * whole run) of `unit_ms` wall time in all. Every failure exits (rv_die). */
#ifndef RV_GPU_PROFILE_H
#define RV_GPU_PROFILE_H

#include "../../kernels/cuda_ops.h"

typedef struct {
    rv_cuda *ctx;   /* NULL: not profiling (every call below is then a no-op) */
    rv_cuda_profile_start_fn *start;
    rv_cuda_profile_collect_fn *collect;
    rv_cuda_profile_rows_fn *rows;
    rv_cuda_profile_gemm_rows_fn *gemm_rows;
    long units;     /* what the totals cover: steps, or 1 (a run) */
    double unit_ms; /* their wall time, ms */
} rv_gpu_profile;

/* Profiles context ctx (the backend's, from rv_step_gpu_context or
 * rv_encode_gpu_context); `opt` names the option in messages. */
void rv_gpu_profile_open(rv_gpu_profile *p, rv_cuda *ctx, const char *opt);
/* Clears the totals and starts timing what is queued from now on. */
void rv_gpu_profile_start(rv_gpu_profile *p);
/* Waits for what was queued and adds it to the totals, as one more unit of
 * wall_ms (0 units: the time is counted toward nothing, e.g. a warm-up). */
void rv_gpu_profile_collect(rv_gpu_profile *p, long units, double wall_ms);
/* DIR/gpu_profile.tsv (operations) and DIR/gpu_gemm_profile.tsv (products),
 * written atomically (formats: rv-train(1), FILES). */
void rv_gpu_profile_save(const rv_gpu_profile *p, const char *dir);
/* The largest operations and products on stderr, per unit ("step", "run"),
 * after a "TOOL: device time ..." line naming `where` (the files, or a
 * note). */
void rv_gpu_profile_print(const rv_gpu_profile *p, const char *unit, const char *where);

#endif
