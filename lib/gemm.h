/* gemm.h — the one row-major sgemm the CPU ops call. OpenBLAS is kept
 * single-threaded and large products are split into row or column blocks
 * across our OpenMP threads, so a single thread pool serves BLAS and the
 * element-wise ops: with OpenBLAS's own pthread pool next to OpenMP's, each
 * pool's idle threads spun (sched_yield) while the other worked, which cost
 * about half the step time of a small model on 2 cores (perf, rv-train). */
#ifndef RV_GEMM_H
#define RV_GEMM_H

/* C[M,N] = alpha * op(A) op(B) + beta * C, all row-major; op = transpose when
 * ta/tb is set (A stored M×K or K×M, B stored K×N or N×K). lda/ldb/ldc are
 * the row strides of the stored matrices. Empty M or N does nothing; K = 0
 * leaves beta * C. Inside an OpenMP parallel region it runs on the calling
 * thread only. The result does not depend on the thread count: each block
 * of C is one BLAS call over the full K. */
void rv_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);

/* Makes OpenBLAS run on the calling thread (rv_gemm does it on first use
 * outside a parallel region; tools call it once at start). */
void rv_gemm_single_thread_blas(void);

#endif
