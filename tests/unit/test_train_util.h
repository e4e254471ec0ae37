/* test_train_util.h — helpers for the training-op tests: random fills, a
 * finite-difference gradient checker, error measures and fixture loading
 * from the safetensors files in tests/fixtures/train. Include after test.h. */
#ifndef RV_TEST_TRAIN_UTIL_H
#define RV_TEST_TRAIN_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "error.h"
#include "safetensors.h"

/* Uniform in [-1, 1). */
static inline float rnd_sym(void) { return (float)((test_rand() >> 40) * (2.0 / 16777216.0) - 1.0); }

static inline float *rnd_alloc(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = scale * rnd_sym();
    return p;
}

static inline float *zeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* sum_i a[i] * b[i] in double: the scalar loss of a finite-difference check. */
static inline double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static inline double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* max_i |a - b| / max_i |b|: the error relative to the tensor's scale (an
 * element-wise relative error is meaningless for entries near zero). */
static inline double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs((double)a[i] - b[i]) > m ? fabs((double)a[i] - b[i]) : m;
    return m;
}

static inline double max_rel_err(const float *a, const float *b, size_t n)
{
    double m = max_abs(b, n), e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        e = d > e ? d : e;
    }
    return m > 0 ? e / m : e;
}

typedef double (*fd_loss_fn)(void *ctx);

/* Compares analytic[i] = dL/dx[i] with a fourth-order central difference
 * (f(x±h), f(x±2h)) at up to `probes` coordinates (all when n <= probes,
 * else random ones). Returns max |fd - analytic| / max |analytic| (or the
 * absolute error when the gradient is all zero). x is restored. */
static inline double fd_check(fd_loss_fn f, void *ctx, float *x, size_t n, const float *analytic, size_t probes,
                              float h)
{
    double amax = max_abs(analytic, n), err = 0;
    size_t count = n <= probes ? n : probes;
    for (size_t k = 0; k < count; k++) {
        size_t i = n <= probes ? k : (size_t)(test_rand() % n);
        float x0 = x[i];
        x[i] = x0 + h;
        double f1 = f(ctx);
        x[i] = x0 - h;
        double f2 = f(ctx);
        x[i] = x0 + 2 * h;
        double f3 = f(ctx);
        x[i] = x0 - 2 * h;
        double f4 = f(ctx);
        x[i] = x0;
        double fd = (8.0 * (f1 - f2) - (f3 - f4)) / (12.0 * h);
        double d = fabs(fd - analytic[i]);
        err = d > err ? d : err;
    }
    return amax > 0 ? err / amax : err;
}

/* Prints a measured error on its own line (visible when the test binary is
 * run directly; tests/run.sh shows only PASS/FAIL unless a test fails). */
#define REPORT_ERR(label, value) printf("  %-44s %.3e\n", label, (double)(value))

/* ------------------------------------------------------------- fixtures */
static inline rv_safetensors *open_train_fixture(const char *name)
{
    const char *root = getenv("RV_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/train/%s", root ? root : ".", name);
    return rv_safetensors_open(path);
}

/* The tensor as floats (malloc'ed), or NULL with a message when it is
 * missing or has a different element count than expected (0: any). */
static inline float *fixture_f32(const rv_safetensors *st, const char *name, size_t expect)
{
    const rv_st_tensor *t = rv_safetensors_find(st, name);
    if (!t) {
        printf("  fixture tensor %s missing\n", name);
        return NULL;
    }
    if (expect && t->n_elements != expect) {
        printf("  fixture tensor %s: expected %zu elements, found %llu\n", name, expect,
               (unsigned long long)t->n_elements);
        return NULL;
    }
    float *p = malloc((t->n_elements ? t->n_elements : 1) * sizeof *p);
    if (!p || rv_st_tensor_to_f32(t, p) != 0) {
        free(p);
        printf("  fixture tensor %s: cannot convert to f32\n", name);
        return NULL;
    }
    return p;
}

/* I32 tensor as ints (malloc'ed). */
static inline int *fixture_i32(const rv_safetensors *st, const char *name, size_t expect)
{
    const rv_st_tensor *t = rv_safetensors_find(st, name);
    if (!t || t->dtype != RV_ST_I32 || (expect && t->n_elements != expect)) {
        printf("  fixture tensor %s missing or not I32[%zu]\n", name, expect);
        return NULL;
    }
    int *p = malloc((t->n_elements ? t->n_elements : 1) * sizeof *p);
    if (!p)
        return NULL;
    for (size_t i = 0; i < t->n_elements; i++)
        p[i] = (int)(int32_t)rv_load_u32(t->data + 4 * i);
    return p;
}

#endif
