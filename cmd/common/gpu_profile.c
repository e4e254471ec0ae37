/* gpu_profile.c — see gpu_profile.h. */
#include "gpu_profile.h"

#include "atomic_file.h"
#include "cli.h"
#include "cuda_loader.h"

#include <stdio.h>

enum { OP_ROWS_MAX = 64, GEMM_ROWS_MAX = 256 };

void rv_gpu_profile_open(rv_gpu_profile *p, rv_cuda *ctx, const char *opt)
{
    if (!ctx || !(p->start = (rv_cuda_profile_start_fn *)rv_cuda_backend_sym("rv_cuda_profile_start")) ||
        !(p->collect = (rv_cuda_profile_collect_fn *)rv_cuda_backend_sym("rv_cuda_profile_collect")) ||
        !(p->rows = (rv_cuda_profile_rows_fn *)rv_cuda_backend_sym("rv_cuda_profile_rows")) ||
        !(p->gemm_rows = (rv_cuda_profile_gemm_rows_fn *)rv_cuda_backend_sym("rv_cuda_profile_gemm_rows")))
        rv_die("%s: %s", opt, ctx ? rv_error_get() : "no device context");
    p->ctx = ctx;
    p->units = 0;
    p->unit_ms = 0.0;
}

void rv_gpu_profile_start(rv_gpu_profile *p)
{
    if (p->ctx && p->start(p->ctx) < 0)
        rv_die("--gpu-profile: %s", rv_error_get());
    p->units = 0;
    p->unit_ms = 0.0;
}

void rv_gpu_profile_collect(rv_gpu_profile *p, long units, double wall_ms)
{
    if (!p->ctx)
        return;
    if (p->collect(p->ctx) < 0)
        rv_die("--gpu-profile: %s", rv_error_get());
    p->units += units;
    p->unit_ms += wall_ms;
}

/* A matrix product's rate: 2·M·N·K per call, in TFLOP/s */
static double gemm_tflops(const rv_cuda_profile_gemm_row *r)
{
    return r->ms > 0 ? 2.0 * r->M * (double)r->N * r->K * (double)r->calls / (r->ms * 1e9) : 0.0;
}

static FILE *open_file(rv_atomic_file *f, char *path, size_t cap, const char *dir, const char *name)
{
    snprintf(path, cap, "%s/%s", dir, name);
    if (rv_atomic_open(f, path) < 0)
        rv_die("%s: %s", path, rv_error_get());
    return f->f;
}

static void commit_file(rv_atomic_file *f, const char *path)
{
    if (rv_atomic_commit(f) < 0)
        rv_die("%s: %s", path, rv_error_get());
}

void rv_gpu_profile_save(const rv_gpu_profile *p, const char *dir)
{
    if (!p->ctx || p->units == 0)
        return;
    static rv_cuda_profile_row rows[OP_ROWS_MAX];
    static rv_cuda_profile_gemm_row g[GEMM_ROWS_MAX];
    const double per = 1.0 / (double)p->units, wall = p->unit_ms * per;
    char path[4096];
    rv_atomic_file f;
    /* operations: op, calls, device ms and share of the wall time, per unit; then the wall time */
    int n = p->rows(p->ctx, rows, OP_ROWS_MAX);
    FILE *o = open_file(&f, path, sizeof path, dir, "gpu_profile.tsv");
    fprintf(o, "op\tcalls_per_step\tms_per_step\tshare_of_step\n");
    for (int i = 0; i < n; i++)
        fprintf(o, "%s\t%.1f\t%.3f\t%.4f\n", rows[i].name, rows[i].calls * per, rows[i].ms * per,
                rows[i].ms * per / wall);
    fprintf(o, "step\t1\t%.3f\t1\n", wall);
    commit_file(&f, path);
    /* products: one line per shape and group, largest device time first */
    n = p->gemm_rows(p->ctx, g, GEMM_ROWS_MAX);
    o = open_file(&f, path, sizeof path, dir, "gpu_gemm_profile.tsv");
    fprintf(o, "group\tm\tn\tk\tta\ttb\tab_type\tc_type\taccumulate\tfallback\tcalls_per_step\tms_per_step\ttflops\n");
    for (int i = 0; i < n; i++)
        fprintf(o, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%.1f\t%.3f\t%.1f\n", g[i].group, g[i].M, g[i].N, g[i].K,
                g[i].ta, g[i].tb, rv_wtype_name(g[i].ab_t), rv_wtype_name(g[i].c_t), g[i].accumulate, g[i].fallback,
                g[i].calls * per, g[i].ms * per, gemm_tflops(&g[i]));
    commit_file(&f, path);
}

void rv_gpu_profile_print(const rv_gpu_profile *p, const char *unit, const char *where)
{
    if (!p->ctx)
        return;
    const char *tool = rv_cli_tool();
    if (p->units == 0) {
        fprintf(stderr, "%s: --gpu-profile: nothing profiled (no %s after the first)\n", tool, unit);
        return;
    }
    static rv_cuda_profile_row rows[OP_ROWS_MAX];
    static rv_cuda_profile_gemm_row g[GEMM_ROWS_MAX];
    const double per = 1.0 / (double)p->units, wall = p->unit_ms * per;
    double sum = 0;
    int n = p->rows(p->ctx, rows, OP_ROWS_MAX);
    fprintf(stderr, "%s: device time per %s over %ld %s%s (%s):\n", tool, unit, p->units, unit,
            p->units == 1 ? "" : "s", where);
    for (int i = 0; i < n; i++) {
        sum += rows[i].ms * per;
        if (i < 12)
            fprintf(stderr, "  %-26s %8.3f ms %5.1f%%  (%.0f calls)\n", rows[i].name, rows[i].ms * per,
                    100 * rows[i].ms * per / wall, rows[i].calls * per);
    }
    fprintf(stderr, "  %-26s %8.3f ms %5.1f%%  (the %s's wall time less the operations timed)\n", "untimed",
            wall - sum, 100 * (wall - sum) / wall, unit);
    int ng = p->gemm_rows(p->ctx, g, GEMM_ROWS_MAX);
    if (ng > 0)
        fprintf(stderr, "%s: the largest matrix products:\n", tool);
    for (int i = 0; i < ng && i < 8; i++)
        fprintf(stderr, "  %-12s %6d x %6d x %6d %s %8.3f ms %7.1f TFLOP/s  (%.0f calls)\n", g[i].group, g[i].M,
                g[i].N, g[i].K, g[i].fallback ? "fallback" : "cublasLt", g[i].ms * per, gemm_tflops(&g[i]),
                g[i].calls * per);
}
