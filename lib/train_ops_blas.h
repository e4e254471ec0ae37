/* train_ops_blas.h — internal helpers shared by the CPU training ops: a row-major
 * sgemm wrapper that tolerates empty dimensions, and the row-count check
 * that keeps sizes within what BLAS (int dimensions) accepts. Not part of
 * the public API. */
#ifndef RV_TRAIN_OPS_BLAS_H
#define RV_TRAIN_OPS_BLAS_H

#include <cblas.h>
#include <limits.h>
#include <stddef.h>

/* C[M,N] = alpha * op(A) op(B) + beta * C, all row-major; op = transpose when
 * ta/tb is set. lda/ldb/ldc are the row strides of the stored matrices. */
static inline void rv_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                           const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {                       /* empty product: only the beta scaling remains */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
}

/* Work (multiply-adds or elements) below which a loop runs on one thread:
 * an OpenMP fork/join costs microseconds, and far more on a loaded machine,
 * which dwarfs small ops (the tiny models of the tests, per-step scalars). */
#define RV_PAR_MIN_WORK ((size_t)1 << 18)

/* Largest element count a single op accepts per operand (BLAS strides and
 * dimensions are int; products of two dimensions are size_t). */
#define RV_TRAIN_MAX_DIM INT_MAX

#endif
