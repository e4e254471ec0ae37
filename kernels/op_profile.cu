/* op_profile.cu — device time per operation (cuda_ops.h: rv_cuda_profile_*;
 * the scopes are RV_PROFILE in cuda_common.cuh). While profiling is on,
 * every outermost scope records a CUDA event pair on the context's stream;
 * rv_cuda_profile_collect waits for them and adds each pair's elapsed time
 * to its name's total. Events come from a pool that is reused after each
 * collect, so a training run profiles every step at the cost of two
 * cudaEventRecord calls per operation (a few microseconds of host time,
 * hidden while the device is busy). Every matrix product is also timed on
 * its own, nested or not, and summed per shape and group (the outermost
 * scope's name). Off (the default), a scope is one pointer test. */
#include "cuda_common.cuh"

#include <stdlib.h>
#include <string.h>

#define PROF_MAX_NAMES 64
#define PROF_MAX_GEMMS 256

typedef struct {
    const char *name;              /* a named scope's; NULL: not counted (or a product's mark) */
    int gemm;                      /* a matrix product's mark: its shape is `shape` */
    rv_cuda_profile_gemm_row shape;
    cudaEvent_t start, stop;
} prof_mark;

struct rv_prof {
    prof_mark *marks;
    size_t n_marks, cap_marks;     /* recorded since the last collect; events made for cap_marks */
    int depth;                     /* open scopes: only the outermost records */
    const char *outer;             /* the outermost open scope's name (a product's group) */
    int failed;                    /* an event call failed: the totals are incomplete */
    rv_cuda_profile_row rows[PROF_MAX_NAMES];
    int n_rows;
    rv_cuda_profile_gemm_row gemms[PROF_MAX_GEMMS];
    int n_gemms;
};

extern "C" int rv_cuda_profile_start(rv_cuda *c)
{
    if (!c->prof && !(c->prof = (struct rv_prof *)calloc(1, sizeof *c->prof)))
        return rv_error_set("cuda profile: out of host memory");
    if (c->prof->depth != 0)
        return rv_error_set("cuda profile: started inside an operation");
    c->prof->n_marks = 0;
    c->prof->n_rows = 0;
    c->prof->n_gemms = 0;
    c->prof->failed = 0;
    return 0;
}

/* A slot to record into, its events made on first use. NULL when out of memory. */
static prof_mark *take_mark(struct rv_prof *p)
{
    if (p->n_marks == p->cap_marks) {
        size_t cap = p->cap_marks ? 2 * p->cap_marks : 1024;
        prof_mark *m = (prof_mark *)realloc(p->marks, cap * sizeof *m);
        if (!m)
            return NULL;
        p->marks = m;
        for (size_t i = p->cap_marks; i < cap; i++) {
            m[i].name = NULL;
            m[i].gemm = 0;
            if (cudaEventCreate(&m[i].start) != cudaSuccess || cudaEventCreate(&m[i].stop) != cudaSuccess) {
                p->cap_marks = i;   /* (a half-made pair at i leaks; profiling is failing anyway) */
                cudaGetLastError();
                return NULL;
            }
            p->cap_marks = i + 1;
        }
    }
    return &p->marks[p->n_marks++];
}

/* A mark with its start event recorded: its slot, or -1 (failed, noted). */
static int record_start(rv_cuda *c)
{
    struct rv_prof *p = c->prof;
    prof_mark *m = take_mark(p);
    if (!m || cudaEventRecord(m->start, c->stream) != cudaSuccess) {
        if (m)
            p->n_marks--;
        p->failed = 1;
        cudaGetLastError();
        return -1;
    }
    m->name = NULL;
    m->gemm = 0;
    return (int)(p->n_marks - 1);
}

int rv_prof_open(rv_cuda *c, const char *name)
{
    struct rv_prof *p = c->prof;
    if (p->depth++ > 0)
        return -2;   /* nested: the outer scope holds the time */
    p->outer = name;
    int slot = record_start(c);
    if (slot >= 0)
        p->marks[slot].name = name;
    return slot;
}

int rv_prof_gemm_open(rv_cuda *c, const rv_cuda_profile_gemm_row *shape)
{
    struct rv_prof *p = c->prof;
    int slot = record_start(c);
    if (slot >= 0) {
        p->marks[slot].gemm = 1;
        p->marks[slot].shape = *shape;
        p->marks[slot].shape.group = p->depth > 0 ? p->outer : "gemm";
    }
    return slot;
}

void rv_prof_gemm_close(rv_cuda *c, int slot)
{
    struct rv_prof *p = c->prof;
    if (slot >= 0 && cudaEventRecord(p->marks[slot].stop, c->stream) != cudaSuccess) {
        p->failed = 1;
        p->marks[slot].gemm = 0;   /* not counted */
        cudaGetLastError();
    }
}

void rv_prof_close(rv_cuda *c, int slot)
{
    struct rv_prof *p = c->prof;
    p->depth--;
    if (slot >= 0 && cudaEventRecord(p->marks[slot].stop, c->stream) != cudaSuccess) {
        p->failed = 1;
        p->marks[slot].name = NULL;   /* not counted */
        cudaGetLastError();
    }
}

static rv_cuda_profile_row *row_of(struct rv_prof *p, const char *name)
{
    for (int i = 0; i < p->n_rows; i++)
        if (strcmp(p->rows[i].name, name) == 0)
            return &p->rows[i];
    if (p->n_rows == PROF_MAX_NAMES)
        return NULL;
    rv_cuda_profile_row *r = &p->rows[p->n_rows++];
    r->name = name;
    r->calls = 0;
    r->ms = 0.0;
    return r;
}

static int same_shape(const rv_cuda_profile_gemm_row *a, const rv_cuda_profile_gemm_row *b)
{
    return a->ta == b->ta && a->tb == b->tb && a->M == b->M && a->N == b->N && a->K == b->K && a->ab_t == b->ab_t &&
           a->c_t == b->c_t && a->accumulate == b->accumulate && a->fallback == b->fallback &&
           strcmp(a->group, b->group) == 0;
}

static rv_cuda_profile_gemm_row *gemm_row_of(struct rv_prof *p, const rv_cuda_profile_gemm_row *shape)
{
    for (int i = 0; i < p->n_gemms; i++)
        if (same_shape(&p->gemms[i], shape))
            return &p->gemms[i];
    if (p->n_gemms == PROF_MAX_GEMMS)
        return NULL;
    rv_cuda_profile_gemm_row *r = &p->gemms[p->n_gemms++];
    *r = *shape;
    r->calls = 0;
    r->ms = 0.0;
    return r;
}

extern "C" int rv_cuda_profile_collect(rv_cuda *c)
{
    struct rv_prof *p = c->prof;
    if (!p)
        return 0;
    RV_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    for (size_t i = 0; i < p->n_marks; i++) {
        const prof_mark *m = &p->marks[i];
        float ms = 0.0f;
        if (!m->name && !m->gemm)
            continue;
        if (cudaEventElapsedTime(&ms, m->start, m->stop) != cudaSuccess) {
            cudaGetLastError();
            p->failed = 1;
            continue;
        }
        if (m->gemm) {
            rv_cuda_profile_gemm_row *g = gemm_row_of(p, &m->shape);
            if (!g) {
                p->failed = 1;
                continue;
            }
            g->calls++;
            g->ms += ms;
            continue;
        }
        rv_cuda_profile_row *r = row_of(p, m->name);
        if (!r) {
            p->failed = 1;
            continue;
        }
        r->calls++;
        r->ms += ms;
    }
    p->n_marks = 0;
    return p->failed ? rv_error_set("cuda profile: some operations could not be timed (events failed)") : 0;
}

/* Largest time first: both row types (C++: one comparator per type) */
template <class Row> static int by_time(const void *a, const void *b)
{
    double x = ((const Row *)a)->ms, y = ((const Row *)b)->ms;
    return x > y ? -1 : x < y;
}

/* Sorts the n totals and copies up to max of them out; returns how many. */
template <class Row> static int largest_first(Row *totals, int n, Row *out, int max)
{
    qsort(totals, (size_t)n, sizeof *totals, by_time<Row>);
    int k = n < max ? n : max;
    memcpy(out, totals, (size_t)k * sizeof *out);
    return k;
}

extern "C" int rv_cuda_profile_rows(rv_cuda *c, rv_cuda_profile_row *rows, int max_rows)
{
    return c->prof ? largest_first(c->prof->rows, c->prof->n_rows, rows, max_rows) : 0;
}

extern "C" int rv_cuda_profile_gemm_rows(rv_cuda *c, rv_cuda_profile_gemm_row *rows, int max_rows)
{
    return c->prof ? largest_first(c->prof->gemms, c->prof->n_gemms, rows, max_rows) : 0;
}

void rv_prof_free(rv_cuda *c)
{
    struct rv_prof *p = c->prof;
    if (!p)
        return;
    for (size_t i = 0; i < p->cap_marks; i++) {
        cudaEventDestroy(p->marks[i].start);
        cudaEventDestroy(p->marks[i].stop);
    }
    free(p->marks);
    free(p);
    c->prof = NULL;
}
