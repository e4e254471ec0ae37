/* train_ops_blas.h — internal helpers shared by the CPU training ops:
 * rv_gemm (gemm.h), the size below which a loop stays on one thread, and the
 * row-count check that keeps sizes within what BLAS (int dimensions)
 * accepts. Not part of the public API. */
#ifndef RV_TRAIN_OPS_BLAS_H
#define RV_TRAIN_OPS_BLAS_H

#include "gemm.h"
#include <limits.h>
#include <stddef.h>

/* Work (multiply-adds or elements) below which a loop runs on one thread:
 * an OpenMP fork/join costs microseconds, and far more on a loaded machine,
 * which dwarfs small ops (the tiny models of the tests, per-step scalars). */
#define RV_PAR_MIN_WORK ((size_t)1 << 18)

/* Largest element count a single op accepts per operand (BLAS strides and
 * dimensions are int; products of two dimensions are size_t). */
#define RV_TRAIN_MAX_DIM INT_MAX

#endif
