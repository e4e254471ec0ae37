/* matmul.cu — row-major matrix products through cuBLASLt (cuda_ops.h:
 * rv_cuda_gemm, rv_cuda_linear). cuBLASLt is column-major, so the row-major
 * C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T: the
 * stored row-major B is, read column-major, exactly op(B)^T's operand, with
 * no copy. Descriptors, layouts and the heuristic's algorithm are built
 * once per (shape, strides, types, pointer alignment) and cached: building
 * them costs far more than a small product (llm.c rebuilt them per call).
 * When the heuristic has no algorithm for a shape (odd pointer alignment or
 * strides), a plain tiled fp32-accumulating kernel computes it instead. */
#include "cuda_common.cuh"   /* rv_cuda, RV_CUBLAS_CHECK, RV_LAUNCH */

#include <stdlib.h>
#include <string.h>

#define GEMM_CACHE_SIZE 128   /* a Revela step uses ~30-60 distinct products (tests/gpu/test_step_gpu) */
#define GEMM_TUNE_MAX 8        /* RV_GEMM_TUNE=1: candidates timed per plan */
#define GEMM_TUNE_RUNS 3       /* timed runs per candidate (after one warm-up) */

typedef struct {
    int used, fallback;   /* fallback: no cuBLASLt algorithm, use gemm_fallback_kernel */
    int ta, tb, M, N, K, lda, ldb, ldc, ab_t, c_t;
    unsigned align_a, align_b, align_c;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;   /* column-major operands A' = B, B' = A, C' = C */
    cublasLtMatmulAlgo_t algo;           /* the one the products run */
    int n_cand, tuned;                   /* RV_GEMM_TUNE: the heuristic's candidates, timed at the first call */
    cublasLtMatmulAlgo_t cand[GEMM_TUNE_MAX];
} gemm_plan;

struct rv_gemm_cache {
    gemm_plan plans[GEMM_CACHE_SIZE];
    int next;   /* round-robin victim once full */
    rv_cuda_gemm_stats stats;
};

static void plan_release(gemm_plan *p)
{
    if (p->op)
        cublasLtMatmulDescDestroy(p->op);
    if (p->la)
        cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb)
        cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc)
        cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
}

void rv_gemm_cache_free(struct rv_gemm_cache *g)
{
    if (!g)
        return;
    for (int i = 0; i < GEMM_CACHE_SIZE; i++)
        if (g->plans[i].used)
            plan_release(&g->plans[i]);
    free(g);
}

static cudaDataType_t lt_type(int t)
{
    return t == RV_WT_BF16 ? CUDA_R_16BF : t == RV_WT_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* Largest power of two (<= 16) dividing the address: what cuBLASLt's
 * heuristic must assume about the buffer. 16 bytes is all its kernels ask
 * for (vector loads); beyond it, a different alignment would only make
 * another plan of the same product (the cache holds GEMM_CACHE_SIZE). */
static unsigned pointer_alignment(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    unsigned al = 16;
    while (al > 1 && (a % al) != 0)
        al >>= 1;
    return al;
}

static int gemm_tune_wanted(void);

static int plan_build(rv_cuda *c, gemm_plan *p)
{
    RV_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    RV_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    RV_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    /* A' = row-major B read column-major: N x K (tb = 0) or K x N (tb = 1), ld = ldb. */
    RV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, lt_type(p->ab_t), p->tb ? p->K : p->N, p->tb ? p->N : p->K,
                                               p->ldb));
    /* B' = row-major A read column-major: K x M (ta = 0) or M x K (ta = 1), ld = lda. */
    RV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, lt_type(p->ab_t), p->ta ? p->M : p->K, p->ta ? p->K : p->M,
                                               p->lda));
    /* C' = row-major C read column-major: N x M, ld = ldc. */
    RV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, lt_type(p->c_t), p->N, p->M, p->ldc));

    cublasLtMatmulPreference_t pref;
    RV_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = c->workspace_bytes;
    uint32_t al_a = p->align_b, al_b = p->align_a, al_c = p->align_c;   /* swapped like the operands */
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                             sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                  sizeof al_a);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                  sizeof al_b);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                                  sizeof al_c);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                                  sizeof al_c);
    cublasLtMatmulHeuristicResult_t result[GEMM_TUNE_MAX];
    int found = 0, want = gemm_tune_wanted() ? GEMM_TUNE_MAX : 1;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, want, result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found < 1)) {
        p->fallback = 1;   /* no algorithm for this alignment/stride: the plain kernel takes it */
        return 0;
    }
    RV_CUBLAS_CHECK(st);
    p->algo = result[0].algo;   /* the heuristic's first choice */
    for (int i = 0; i < found && i < GEMM_TUNE_MAX; i++)
        if (result[i].state == CUBLAS_STATUS_SUCCESS)
            p->cand[p->n_cand++] = result[i].algo;
    p->tuned = p->n_cand < 2;   /* nothing to choose from */
    return 0;
}

/* RV_GEMM_TUNE=1 (read when a plan is built): instead of the heuristic's
 * first algorithm, time its first GEMM_TUNE_MAX candidates on the first
 * call's own operands and keep the fastest. Costs one product per candidate
 * and run, once per plan (the first step); off by default until the GPU
 * benchmark (bench/train-gpu.sh's tuned run) shows it pays. */
static int gemm_tune_wanted(void)
{
    const char *v = getenv("RV_GEMM_TUNE");
    return v && strcmp(v, "1") == 0;
}

/* Times p's candidates on these operands, writing into a buffer of its own
 * (C and the inputs are left as they are), and keeps the fastest in p->algo.
 * Anything failing leaves the heuristic's first choice: tuning is only ever
 * an improvement. */
static void plan_tune(rv_cuda *c, gemm_plan *p, const float *alpha, const void *A, const void *B, const float *beta,
                      const void *Cin)
{
    p->tuned = 1;
    size_t bytes = (size_t)p->M * (size_t)p->ldc * (p->c_t == RV_WT_F32 ? 4 : 2);
    void *d = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess) {
        cudaGetLastError();
        c->gemm->stats.tune_failed++;
        goto done;
    }
    {
        float best = 0.0f;
        int best_i = -1;
        for (int i = 0; i < p->n_cand; i++) {
            int ok = 1;
            for (int r = 0; r <= GEMM_TUNE_RUNS && ok; r++) {   /* r = 0: warm-up */
                if (r == 1 && cudaEventRecord(e0, c->stream) != cudaSuccess)
                    ok = 0;
                ok = ok && cublasLtMatmul(c->lt, p->op, alpha, B, p->la, A, p->lb, beta, Cin, p->lc, d, p->lc,
                                          &p->cand[i], c->workspace, c->workspace_bytes,
                                          c->stream) == CUBLAS_STATUS_SUCCESS;
            }
            float ms = 0.0f;
            ok = ok && cudaEventRecord(e1, c->stream) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess &&
                 cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess;
            if (!ok) {
                cudaGetLastError();
                continue;
            }
            if (best_i < 0 || ms < best)
                best = ms, best_i = i;
        }
        if (best_i < 0) {
            c->gemm->stats.tune_failed++;
            goto done;
        }
        p->algo = p->cand[best_i];
        c->gemm->stats.plans_tuned++;
        if (best_i > 0)
            c->gemm->stats.tune_changed++;
    }
done:
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    if (d) {
        cudaStreamSynchronize(c->stream);   /* the candidates' products are done with d */
        cudaFree(d);
    }
    cudaGetLastError();
}

static gemm_plan *plan_get(rv_cuda *c, const gemm_plan *key)
{
    if (!c->gemm) {
        c->gemm = (struct rv_gemm_cache *)calloc(1, sizeof *c->gemm);
        if (!c->gemm) {
            rv_error_set("cuda gemm: out of host memory for the plan cache");
            return NULL;
        }
    }
    struct rv_gemm_cache *g = c->gemm;
    for (int i = 0; i < GEMM_CACHE_SIZE; i++) {
        gemm_plan *p = &g->plans[i];
        if (p->used && p->ta == key->ta && p->tb == key->tb && p->M == key->M && p->N == key->N &&
            p->K == key->K && p->lda == key->lda && p->ldb == key->ldb && p->ldc == key->ldc &&
            p->ab_t == key->ab_t && p->c_t == key->c_t && p->align_a == key->align_a &&
            p->align_b == key->align_b && p->align_c == key->align_c)
            return p;
    }
    int slot = -1;
    for (int i = 0; i < GEMM_CACHE_SIZE && slot < 0; i++)
        if (!g->plans[i].used)
            slot = i;
    if (slot < 0) {
        slot = g->next;
        g->next = (g->next + 1) % GEMM_CACHE_SIZE;
        plan_release(&g->plans[slot]);
        g->stats.evictions++;
    }
    g->stats.plans_built++;
    gemm_plan *p = &g->plans[slot];
    *p = *key;
    p->op = NULL;
    p->la = p->lb = p->lc = NULL;
    if (plan_build(c, p) != 0) {
        plan_release(p);
        return NULL;
    }
    p->used = 1;
    return p;
}

/* Row-major C = alpha op(A) op(B) + beta C, 16 x 16 output tiles through
 * shared memory, fp32 accumulation, any types and strides. Only for the
 * shapes cuBLASLt has no algorithm for. */
#define FB_TILE 16
#define FB_PITCH (FB_TILE + 1)

__global__ void __launch_bounds__(FB_TILE *FB_TILE)
    gemm_fallback_kernel(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, const void *B,
                         int ldb, int ab_t, float beta, const void *Cin, void *C, int ldc, int c_t)
{
    RV_DYN_SMEM(float, smem);
    float *As = smem, *Bs = smem + FB_TILE * FB_PITCH;
    const int tx = threadIdx.x % FB_TILE, ty = threadIdx.x / FB_TILE;
    const int row = blockIdx.y * FB_TILE + ty, col = blockIdx.x * FB_TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += FB_TILE) {
        int ka = k0 + tx, kb = k0 + ty;   /* As[ty][tx] = op(A)[row][ka]; Bs[ty][tx] = op(B)[kb][col] */
        As[ty * FB_PITCH + tx] =
            row < M && ka < K ? rv_ld(A, ab_t, ta ? (size_t)ka * lda + row : (size_t)row * lda + ka) : 0.0f;
        Bs[ty * FB_PITCH + tx] =
            kb < K && col < N ? rv_ld(B, ab_t, tb ? (size_t)col * ldb + kb : (size_t)kb * ldb + col) : 0.0f;
        __syncthreads();
        for (int kk = 0; kk < FB_TILE; kk++)
            acc += As[ty * FB_PITCH + kk] * Bs[kk * FB_PITCH + tx];
        __syncthreads();
    }
    if (row < M && col < N) {
        size_t at = (size_t)row * ldc + col;
        float v = alpha * acc;
        if (beta != 0.0f)   /* BLAS rule: C is not read when beta is 0 */
            v += beta * rv_ld(Cin, c_t, at);
        rv_st(C, c_t, at, v);
    }
}

static int gemm_fallback(rv_cuda *c, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                         const void *B, int ldb, rv_wtype ab_t, float beta, const void *Cin, void *C, int ldc,
                         rv_wtype c_t)
{
    unsigned gy = (unsigned)((M + FB_TILE - 1) / FB_TILE), gx = (unsigned)((N + FB_TILE - 1) / FB_TILE);
    if (gy > 65535)
        return rv_error_set("cuda gemm: %d rows exceed the fallback kernel's grid", M);
    RV_LAUNCH(gemm_fallback_kernel, dim3(gx, gy), FB_TILE * FB_TILE, 2 * FB_TILE * FB_PITCH * sizeof(float),
              c->stream, ta, tb, M, N, K, alpha, A, lda, B, ldb, (int)ab_t, beta, Cin, C, ldc, (int)c_t);
    RV_LAUNCH_CHECK("gemm_fallback_kernel");
    return 0;
}

/* C = beta * Cin for an empty inner dimension (cuBLAS does not take K = 0). */
__global__ void scale_rows_kernel(const void *Cin, void *C, int c_t, int M, int N, int ldc, float beta)
{
    size_t total = (size_t)M * N;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t at = (i / N) * (size_t)ldc + i % N;
        rv_st(C, c_t, at, beta == 0.0f ? 0.0f : beta * rv_ld(Cin, c_t, at));
    }
}

extern "C" int rv_cuda_gemm(rv_cuda *c, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                            const void *B, int ldb, rv_wtype ab_t, float beta, void *C, int ldc, rv_wtype c_t)
{
    return rv_cuda_gemm_c(c, ta, tb, M, N, K, alpha, A, lda, B, ldb, ab_t, beta, C, C, ldc, c_t);
}

extern "C" int rv_cuda_gemm_c(rv_cuda *c, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                              const void *B, int ldb, rv_wtype ab_t, float beta, const void *Cin, void *C, int ldc,
                              rv_wtype c_t)
{
    RV_PROFILE(c, "gemm");
    if (!rv_wtype_valid(ab_t) || !(c_t == RV_WT_F32 || c_t == ab_t))
        return rv_error_set("cuda gemm: expected C of type f32 or %s, found %s", rv_wtype_name(ab_t),
                            rv_wtype_name(c_t));
    if (M < 0 || N < 0 || K < 0)
        return rv_error_set("cuda gemm: negative size %dx%dx%d", M, N, K);
    if (M == 0 || N == 0)
        return 0;
    if (ldc < N || lda < (ta ? M : K) || ldb < (tb ? K : N))
        return rv_error_set("cuda gemm: row strides %d/%d/%d too small for a %dx%dx%d product (ta %d, tb %d)", lda,
                            ldb, ldc, M, N, K, ta, tb);
    if (K == 0) {
        unsigned grid = 1;
        if (rv_grid_1d((size_t)M * N < ((size_t)1 << 24) ? (size_t)M * N : ((size_t)1 << 24), 256, &grid,
                       "gemm scale") != 0)
            return -1;
        RV_LAUNCH(scale_rows_kernel, grid, 256, 0, c->stream, Cin, C, (int)c_t, M, N, ldc, beta);
        RV_LAUNCH_CHECK("scale_rows_kernel");
        return 0;
    }
    gemm_plan key;
    memset(&key, 0, sizeof key);
    key.ta = ta ? 1 : 0;
    key.tb = tb ? 1 : 0;
    key.M = M;
    key.N = N;
    key.K = K;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.ab_t = (int)ab_t;
    key.c_t = (int)c_t;
    key.align_a = pointer_alignment(A);
    key.align_b = pointer_alignment(B);
    key.align_c = pointer_alignment(C);   /* (the plan promises it for the input C too) */
    if (pointer_alignment(Cin) < key.align_c)
        key.align_c = pointer_alignment(Cin);
    gemm_plan *p = plan_get(c, &key);
    if (!p)
        return -1;
    c->gemm->stats.calls++;
    if (p->fallback)
        c->gemm->stats.fallback_calls++;
    if (!p->fallback && !p->tuned)
        plan_tune(c, p, &alpha, A, B, &beta, Cin);
    int slot = -1, rc = 0;
    if (c->prof) {
        rv_cuda_profile_gemm_row shape = {NULL, key.ta, key.tb, M, N, K, ab_t, c_t, beta != 0.0f, p->fallback, 0, 0.0};
        slot = rv_prof_gemm_open(c, &shape);
    }
    if (p->fallback) {
        rc = gemm_fallback(c, ta ? 1 : 0, tb ? 1 : 0, M, N, K, alpha, A, lda, B, ldb, ab_t, beta, Cin, C, ldc, c_t);
    } else {
        cublasStatus_t st = cublasLtMatmul(c->lt, p->op, &alpha, B, p->la, A, p->lb, &beta, Cin, p->lc, C, p->lc,
                                           &p->algo, c->workspace, c->workspace_bytes, c->stream);
        if (st != CUBLAS_STATUS_SUCCESS)
            rc = rv_error_set("cublasLt: cublasLtMatmul of a %dx%dx%d product: %s", M, N, K,
                              cublasLtGetStatusString(st));
    }
    if (c->prof)
        rv_prof_gemm_close(c, slot);
    return rc;
}

/* ---------------------------------------------------------------- linear */
/* y = bias rows (+ res, when not NULL; res may be y) */
__global__ void bias_rows_kernel(void *y, int y_t, const void *res, size_t m, size_t out, const float *bias)
{
    size_t total = m * out;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        rv_st(y, y_t, i, (res ? rv_ld(res, y_t, i) : 0.0f) + bias[i % out]);
}

extern "C" int rv_cuda_linear(rv_cuda *c, void *y, rv_wtype y_t, const void *x, size_t m, const void *w, size_t out,
                              size_t in, rv_wtype xw_t, const float *bias)
{
    return rv_cuda_linear_res(c, y, y_t, NULL, x, m, w, out, in, xw_t, bias);
}

extern "C" int rv_cuda_linear_res(rv_cuda *c, void *y, rv_wtype y_t, const void *res, const void *x, size_t m,
                                  const void *w, size_t out, size_t in, rv_wtype xw_t, const float *bias)
{
    RV_PROFILE(c, "linear");
    if (m > 0x7fffffffu || out > 0x7fffffffu || in > 0x7fffffffu)
        return rv_error_set("cuda linear: %zux%zux%zu exceeds cuBLASLt's int sizes", m, out, in);
    if (m == 0 || out == 0)
        return 0;
    if (bias) {   /* y = res + bias first, then the product adds into it */
        unsigned grid = 1;
        if (rv_grid_1d(m * out < ((size_t)1 << 24) ? m * out : ((size_t)1 << 24), 256, &grid, "linear bias") != 0)
            return -1;
        RV_LAUNCH(bias_rows_kernel, grid, 256, 0, c->stream, y, (int)y_t, res, m, out, bias);
        RV_LAUNCH_CHECK("bias_rows_kernel");
        res = y;
    }
    return rv_cuda_gemm_c(c, 0, 1, (int)m, (int)out, (int)in, 1.0f, x, (int)in, w, (int)in, xw_t, res ? 1.0f : 0.0f,
                          res ? res : y, y, (int)out, y_t);
}

extern "C" void rv_cuda_gemm_get_stats(const rv_cuda *c, rv_cuda_gemm_stats *s)
{
    if (c->gemm)
        *s = c->gemm->stats;
    else
        memset(s, 0, sizeof *s);
}
