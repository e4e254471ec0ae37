/* ce_head.cu — the LM head fused with token cross-entropy on the device
 * (cuda_ops.h rv_cuda_lm_head_ce; the math of rv_lm_head_ce in
 * lib/train_ops.c). Rows go in chunks so that only a chunk of rows times
 * the vocabulary is held:
 *   1. logits[nb, vocab] (f32 scratch) = x[chunk] head^T        cuBLASLt
 *   2. ce_row_kernel, one block per row: max, log-sum-exp, the row's loss
 *      (double, per row, in scratch), and the row's gradient
 *      (softmax - onehot) * grad_scale written in x's type (zeros for an
 *      ignored row)
 *   3. dx[chunk] += dlogits head, dhead += dlogits^T x[chunk]   cuBLASLt
 * and at the end ce_loss_sum_kernel adds the per-row losses in row order
 * (one block, double), so the loss does not depend on the chunking.
 * Rows are not compacted: ignored rows (padding) still cost their share of
 * the GEMMs, which keeps the targets on the device (no host round trip). */
#include "cuda_common.cuh"   /* rv_cuda, rv_ld/rv_st, rv_block_sum, rv_block_max, RV_LAUNCH, rv_cuda_scratch */

#include <math.h>

#define CE_THREADS 256
#define CE_LOGITS_BYTES ((size_t)256 << 20)   /* default chunk: logits + gradient block within 256 MiB */
#define CE_ALIGN 256                          /* scratch regions start 256-byte aligned (cuBLASLt) */

/* Row i of the chunk (row r0 + i overall). The logits row is only read;
 * the gradient goes to dlog (NULL: loss only). */
__global__ void __launch_bounds__(CE_THREADS)
    ce_row_kernel(const float *logits, int vocab, const int32_t *targets, size_t r0, float grad_scale,
                  double *row_loss, void *dlog, int dlog_t)
{
    RV_DYN_SMEM(float, red);
    const int i = blockIdx.x;
    const size_t base = (size_t)i * vocab;
    const int tgt = targets[r0 + i];
    if (tgt < 0) {   /* ignored row: no loss, zero gradient (block-uniform branch, no barrier inside) */
        if (threadIdx.x == 0)
            row_loss[r0 + i] = 0.0;
        if (dlog)
            for (int cc = threadIdx.x; cc < vocab; cc += blockDim.x)
                rv_st(dlog, dlog_t, base + cc, 0.0f);
        return;
    }
    const float *z = logits + base;
    float m = -INFINITY;
    for (int cc = threadIdx.x; cc < vocab; cc += blockDim.x)
        m = fmaxf(m, z[cc]);
    m = rv_block_max(m, red);
    float s = 0.0f;
    for (int cc = threadIdx.x; cc < vocab; cc += blockDim.x)
        s += expf(z[cc] - m);
    s = rv_block_sum(s, red);
    const float lse = m + logf(s);
    if (threadIdx.x == 0)   /* a target past the vocabulary poisons the loss rather than reading out of bounds */
        row_loss[r0 + i] = tgt < vocab ? (double)lse - (double)z[tgt] : (double)NAN;
    if (dlog)
        for (int cc = threadIdx.x; cc < vocab; cc += blockDim.x)
            rv_st(dlog, dlog_t, base + cc, (expf(z[cc] - lse) - (cc == tgt ? 1.0f : 0.0f)) * grad_scale);
}

/* One block: thread-strided double partials, then the partials in thread order. */
__global__ void __launch_bounds__(CE_THREADS) ce_loss_sum_kernel(const double *row_loss, size_t n, double *out)
{
    RV_DYN_SMEM(double, part);
    double s = 0.0;
    for (size_t r = threadIdx.x; r < n; r += blockDim.x)
        s += row_loss[r];
    part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (unsigned k = 0; k < blockDim.x; k++)
            total += part[k];
        *out = total;
    }
}

static size_t ce_round_up(size_t x) { return (x + CE_ALIGN - 1) / CE_ALIGN * CE_ALIGN; }

extern "C" int rv_cuda_lm_head_ce(rv_cuda *c, size_t n, int dim, int vocab, const void *x, const void *head,
                                  rv_wtype xh_t, const int32_t *targets, float grad_scale, double *loss_sum,
                                  void *dx, void *dhead, rv_wtype g_t, size_t chunk_rows)
{
    RV_PROFILE(c, "lm_head_ce");
    if (dim <= 0 || vocab <= 0)
        return rv_error_set("cuda lm_head_ce: expected positive dim and vocab, found %d and %d", dim, vocab);
    if (!rv_wtype_valid(xh_t) || ((dx || dhead) && !(g_t == RV_WT_F32 || g_t == xh_t)))
        return rv_error_set("cuda lm_head_ce: expected x/head of f32, bf16 or f16 and gradients of f32 or their "
                            "type, found %s and %s", rv_wtype_name(xh_t), rv_wtype_name(g_t));
    if (n > 0x7fffffffu)
        return rv_error_set("cuda lm_head_ce: %zu rows exceed int indexing", n);
    const size_t es = rv_wtype_size(xh_t);
    const int want_grad = dx || dhead;
    if (chunk_rows == 0) {
        chunk_rows = CE_LOGITS_BYTES / ((size_t)vocab * (sizeof(float) + (want_grad ? es : 0)));
        if (chunk_rows == 0)
            chunk_rows = 1;
    }
    if (chunk_rows > n)
        chunk_rows = n ? n : 1;
    if (chunk_rows > 0x7fffffffu / (size_t)vocab)
        chunk_rows = 0x7fffffffu / (size_t)vocab;   /* keep each GEMM's sizes inside int */
    const size_t loss_bytes = ce_round_up((n ? n : 1) * sizeof(double));
    const size_t logit_bytes = ce_round_up(chunk_rows * (size_t)vocab * sizeof(float));
    const size_t grad_bytes = want_grad ? ce_round_up(chunk_rows * (size_t)vocab * es) : 0;
    char *scratch = (char *)rv_cuda_scratch(c, loss_bytes + logit_bytes + grad_bytes);
    if (!scratch)
        return -1;
    double *row_loss = (double *)scratch;
    float *logits = (float *)(scratch + loss_bytes);
    void *dlog = want_grad ? scratch + loss_bytes + logit_bytes : NULL;
    const size_t gs = rv_wtype_size(g_t);
    for (size_t r0 = 0; r0 < n; r0 += chunk_rows) {
        const int nb = (int)(n - r0 < chunk_rows ? n - r0 : chunk_rows);
        const char *xc = (const char *)x + r0 * (size_t)dim * es;
        if (rv_cuda_gemm(c, 0, 1, nb, vocab, dim, 1.0f, xc, dim, head, dim, xh_t, 0.0f, logits, vocab, RV_WT_F32) != 0)
            return -1;
        RV_LAUNCH(ce_row_kernel, (unsigned)nb, CE_THREADS, 32 * sizeof(float), c->stream, (const float *)logits,
                  vocab, targets, r0, grad_scale, row_loss, dlog, (int)xh_t);
        RV_LAUNCH_CHECK("ce_row_kernel");
        if (dx && rv_cuda_gemm(c, 0, 0, nb, dim, vocab, 1.0f, dlog, vocab, head, dim, xh_t, 1.0f,
                               (char *)dx + r0 * (size_t)dim * gs, dim, g_t) != 0)
            return -1;
        if (dhead && rv_cuda_gemm(c, 1, 0, vocab, dim, nb, 1.0f, dlog, vocab, xc, dim, xh_t, 1.0f, dhead, dim, g_t) != 0)
            return -1;
    }
    RV_LAUNCH(ce_loss_sum_kernel, 1, CE_THREADS, CE_THREADS * sizeof(double), c->stream, (const double *)row_loss, n,
              loss_sum);
    RV_LAUNCH_CHECK("ce_loss_sum_kernel");
    return 0;
}
