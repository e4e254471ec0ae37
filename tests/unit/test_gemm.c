/* test_gemm.c — rv_gemm (lib/gemm.c) against a plain triple loop in double,
 * on fresh random inputs, for every transpose combination, padded strides,
 * shapes that split by rows and by columns (and remainders that are not a
 * multiple of the 16-wide blocks), alpha/beta, and 1, 2 and 3 threads.
 * (Bits may differ between thread counts: OpenBLAS picks its edge kernels by
 * block shape.) Also the empty cases and the call from inside a parallel
 * region. */
#include "gemm.h"
#include "test.h"

#include <math.h>
#include <omp.h>

static float frand(void) { return (float)((double)(test_rand() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static float *rand_buf(size_t n)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

/* op(X)[i][j] for X stored row-major with row stride ld, transposed when t. */
static double at(const float *X, int ld, int t, int i, int j) { return t ? X[(size_t)j * ld + i] : X[(size_t)i * ld + j]; }

struct shape { int M, N, K; };

/* C (from C0 by rv_gemm) against the double-precision loop. */
static void check_result(struct shape s, int ta, int tb, float alpha, float beta, const float *A, int lda,
                         const float *B, int ldb, const float *C0, const float *C, int ldc, int threads)
{
    double err = 0, ref_norm = 0;
    int pad_ok = 1;
    for (int i = 0; i < s.M; i++) {
        for (int j = 0; j < s.N; j++) {
            double r = 0;
            for (int k = 0; k < s.K; k++)
                r += at(A, lda, ta, i, k) * at(B, ldb, tb, k, j);
            r = alpha * r + beta * (double)C0[(size_t)i * ldc + j];
            double d = C[(size_t)i * ldc + j] - r;
            err += d * d;
            ref_norm += r * r;
        }
        for (int j = s.N; j < ldc; j++)   /* the padding of C is never written */
            pad_ok &= C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
    }
    double rel = sqrt(err / (ref_norm > 0 ? ref_norm : 1));
    CHECK(rel < 1e-5 && !isnan(rel), "M=%d N=%d K=%d ta=%d tb=%d: relative error %.3g with %d threads", s.M, s.N,
          s.K, ta, tb, rel, threads);
    CHECK(pad_ok, "M=%d N=%d K=%d ta=%d tb=%d: wrote into C's row padding", s.M, s.N, s.K, ta, tb);
}

static void check_shape(struct shape s, int ta, int tb, float alpha, float beta)
{
    int pad = 3;   /* strides wider than the rows: catches a block offset that ignores them */
    int lda = (ta ? s.M : s.K) + pad, ldb = (tb ? s.K : s.N) + pad, ldc = s.N + pad;
    size_t a_rows = ta ? s.K : s.M, b_rows = tb ? s.N : s.K;
    float *A = rand_buf(a_rows * lda), *B = rand_buf(b_rows * ldb), *C0 = rand_buf((size_t)s.M * ldc);
    float *C = malloc((size_t)s.M * ldc * sizeof *C);
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads++) {
        memcpy(C, C0, (size_t)s.M * ldc * sizeof *C);
        omp_set_num_threads(threads);
        rv_gemm(ta, tb, s.M, s.N, s.K, alpha, A, lda, B, ldb, beta, C, ldc);
        omp_set_num_threads(saved);
        check_result(s, ta, tb, alpha, beta, A, lda, B, ldb, C0, C, ldc, threads);
    }
    free(A); free(B); free(C0); free(C);
}

static void test_gemm_matches_loop(void)
{
    /* Above the 2^20 multiply-add split threshold: M >= N splits rows, M < N
     * columns; 1000 and 333 leave remainders; 5x7x3 stays on one thread. */
    struct shape shapes[] = {{1000, 64, 40}, {50, 1000, 40}, {333, 333, 20}, {257, 129, 64}, {5, 7, 3}, {40, 2000, 17}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int t = 0; t < 4; t++)
            check_shape(shapes[i], t & 1, t >> 1, i % 2 ? 0.5f : 1.0f, i % 3 ? 0.0f : 1.0f);
}

static void test_gemm_empty(void)
{
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {7}, B[1] = {8};
    rv_gemm(0, 0, 0, 3, 4, 1.0f, A, 4, B, 3, 0.0f, C, 3);   /* M = 0: nothing */
    rv_gemm(0, 0, 2, 0, 4, 1.0f, A, 4, B, 1, 0.0f, C, 3);   /* N = 0: nothing */
    CHECK(C[0] == 1 && C[5] == 6, "an empty M or N wrote into C");
    rv_gemm(0, 0, 2, 3, 0, 1.0f, A, 1, B, 3, 0.5f, C, 3);   /* K = 0: C = beta C */
    CHECK(C[0] == 0.5f && C[5] == 3.0f, "K = 0 should scale C by beta (got %g, %g)", C[0], C[5]);
    rv_gemm(0, 0, 2, 3, 0, 1.0f, A, 1, B, 3, 0.0f, C, 3);   /* beta 0 clears, even over NaN */
    CHECK(C[0] == 0 && C[5] == 0, "K = 0, beta 0 should clear C");
}

static void test_gemm_inside_parallel_region(void)
{
    /* Each thread multiplies its own pair: rv_gemm must stay on the calling
     * thread (no nested split) and give what a call outside gives. */
    enum { M = 300, N = 200, K = 30, T = 3 };
    float *A = rand_buf((size_t)T * M * K), *B = rand_buf((size_t)K * N);
    float *C = calloc((size_t)T * M * N, sizeof *C), *R = calloc((size_t)T * M * N, sizeof *R);
    for (int t = 0; t < T; t++)
        rv_gemm(0, 0, M, N, K, 1.0f, A + (size_t)t * M * K, K, B, N, 0.0f, R + (size_t)t * M * N, N);
#pragma omp parallel for num_threads(T)
    for (int t = 0; t < T; t++)
        rv_gemm(0, 0, M, N, K, 1.0f, A + (size_t)t * M * K, K, B, N, 0.0f, C + (size_t)t * M * N, N);
    double err = 0, ref_norm = 0;
    for (size_t i = 0; i < (size_t)T * M * N; i++) {
        err += ((double)C[i] - R[i]) * ((double)C[i] - R[i]);
        ref_norm += (double)R[i] * R[i];
    }
    CHECK(sqrt(err / ref_norm) < 1e-6, "results inside a parallel region differ: relative %.3g",
          sqrt(err / ref_norm));
    free(A); free(B); free(C); free(R);
}

int main(void)
{
    test_suite = "gemm";
    RUN_TEST(test_gemm_matches_loop);
    RUN_TEST(test_gemm_empty);
    RUN_TEST(test_gemm_inside_parallel_region);
    TEST_EXIT();
}
