/* gemm.c — rv_gemm: OpenBLAS sgemm on our OpenMP threads (see gemm.h). */
#include "gemm.h"

#include <cblas.h>
#include <omp.h>
#include <stddef.h>

/* Multiply-adds below which a product runs on one thread: a fork/join costs
 * microseconds (tens with passive waiting), a 2^20 product about 50 µs. */
#define GEMM_PAR_MIN_WORK ((double)(1 << 20))
/* Smallest block of C rows or columns one thread takes. */
#define GEMM_MIN_BLOCK 16

void rv_gemm_single_thread_blas(void)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

static void gemm_one(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
}

void rv_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {   /* empty product: only the beta scaling remains */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (omp_in_parallel()) {
        gemm_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    rv_gemm_single_thread_blas();
    int split_m = M >= N, dim = split_m ? M : N;
    int threads = omp_get_max_threads();
    if ((double)M * N * K < GEMM_PAR_MIN_WORK)
        threads = 1;
    if (threads > dim / GEMM_MIN_BLOCK)
        threads = dim / GEMM_MIN_BLOCK;
    if (threads <= 1) {
        gemm_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Blocks of a multiple of 16 rows/columns (whole SIMD panels), the last
     * one taking the remainder. */
    int block = (dim + threads - 1) / threads;
    block = (block + GEMM_MIN_BLOCK - 1) / GEMM_MIN_BLOCK * GEMM_MIN_BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int i0 = 0; i0 < dim; i0 += block) {
        int n = dim - i0 < block ? dim - i0 : block;
        if (split_m) /* rows i0.. of C: rows of op(A) */
            gemm_one(ta, tb, n, N, K, alpha, ta ? A + i0 : A + (size_t)i0 * lda, lda, B, ldb, beta,
                     C + (size_t)i0 * ldc, ldc);
        else         /* columns i0.. of C: columns of op(B) */
            gemm_one(ta, tb, M, n, K, alpha, A, lda, tb ? B + (size_t)i0 * ldb : B + i0, ldb, beta, C + i0, ldc);
    }
}
