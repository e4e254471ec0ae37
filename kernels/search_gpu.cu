/* search_gpu.cu — GPU candidate selection for exact inner-product search
 * (see search_gpu.h): fp32 GEMM of a query tile against a corpus block, then
 * a per-query radix select that merges the block's scores into the running
 * `cap` best of the blocks before it. The host rescores the final candidates
 * exactly (lib/dense_search.c), so nothing here has to be bit-exact; it only
 * has to honour the selector contract of dense_search.h: fp32 scores (no
 * TF32, no 16-bit operands) and the cap best rows by those scores.
 *
 * Why the candidates suffice (the margin argument, made in dense_search.c):
 * an fp32 dot product of length dim, summed in any order (cuBLAS tiles,
 * split-K, FMA), differs from the exact value by at most
 * dim·2^-24·Σ|q_i c_i| ≤ dim·2^-24·|q|·|c|; the host uses twice that,
 * eps = (dim+4)·2^-23·|q|·max|c|. Every row left out scored (on the GPU) at
 * most the worst candidate's GPU score w, so its exact score is at most
 * w + eps. When w + eps is below the k-th best exact candidate score, no row
 * left out can enter the top k or tie with it, and the exact ranking of the
 * candidates is the answer. When it is not (masses of near-ties), the host
 * rescans that query exactly against the whole corpus. Either way the hits,
 * their order (score, then corpus row) and the printed scores are those of
 * --device cpu.
 *
 * With MaxP (--doc-agg max) the GPU still ranks rows; the host asks for
 * more of them (several chunks per document), keeps each document's best,
 * and takes as the bound for anything left out the lowest GPU score it
 * returned (or, when cap documents were found, the worst kept document's
 * best row), rescanning when fewer than k documents came back.
 *
 * 16-bit corpora are uploaded as stored (half the bytes) and widened to f32
 * on the device before the GEMM: the widening is exact, so the bound holds.
 *
 * The selection (one thread block per query): items are the previous
 * candidates and the block's scores, each ranked by a 64-bit key
 * (order-preserving bits of the score, then the complement of the row), so
 * the order is total and equals the host's (higher score, then lower row;
 * NaN as -infinity). A most-significant-digit radix select over 8-bit digits
 * finds the cap-th key: per pass, a histogram (one per warp, shared-memory
 * atomics) of the next digit among items matching the prefix so far; it stops
 * as soon as the chosen bin holds exactly the items still needed (usually
 * after 3-4 passes; at most 8, where keys are unique). Once the previous
 * candidates are full, nothing below the worst of them can enter, so those
 * items are skipped without touching the histogram. */
#include "cuda_common.cuh"
#include "search_gpu.h"

extern "C" {
#include "buf.h"   /* rv_size_mul */
}

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPK_THREADS 256
#define TOPK_WARPS (TOPK_THREADS / 32)
#define DEFAULT_CORPUS_BLOCK 65536
#define DEFAULT_QUERY_TILE 1024
#define MEMORY_HEADROOM ((size_t)512 << 20)   /* left free for cuBLASLt and the runtime */

struct rv_search_gpu {
    rv_cuda *cu;
    const void *host_corpus;
    rv_wtype t;
    size_t rows, esize, cb, qt;
    uint32_t dim;
    int resident;
    void *d_corpus;        /* resident: rows × dim as stored; streamed: one block */
    float *d_block32;      /* 16-bit corpora: the block widened to f32 */
    float *d_queries;      /* qt × dim */
    float *d_scores;       /* qt × cb */
    rv_scored *d_cand[2];  /* qt × cap each: the running candidates, ping-pong */
    uint32_t cand_cap;
    char desc[400];
};

/* ---------------------------------------------------------------- the selection kernel */

/* Order-preserving bits of a score: higher score, higher key. NaN ranks as
 * -infinity and -0 as +0, as in lib/topk.h. */
__device__ __forceinline__ uint32_t score_bits(float s)
{
    if (s != s)
        s = -INFINITY;
    if (s == 0.0f)
        s = 0.0f;
    uint32_t b;
    memcpy(&b, &s, sizeof b);
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

/* The total order of the search: score, then lower row first. */
__device__ __forceinline__ unsigned long long item_key(float s, uint32_t row)
{
    return ((unsigned long long)score_bits(s) << 32) | (unsigned long long)(uint32_t)~row;
}

/* Shared-memory counter increment. The emulator switches threads only at
 * barriers and shuffles, so a plain read-modify-write is atomic there. */
__device__ __forceinline__ unsigned smem_inc(unsigned *p)
{
#ifdef RV_CUDA_EMULATE
    unsigned old = *p;
    *p = old + 1;
    return old;
#else
    return atomicAdd(p, 1u);
#endif
}

/* Item j of a query: the previous candidates first, then the block's scores. */
__device__ __forceinline__ rv_scored topk_item(const rv_scored *pv, uint32_t n_prev, const float *row, uint32_t base,
                                               uint32_t j)
{
    if (j < n_prev)
        return pv[j];
    rv_scored it;
    it.score = row[j - n_prev];
    it.index = base + (j - n_prev);
    return it;
}

/* Block q: out[q] = the cap best of prev[q][0..n_prev) ∪ {(scores[q][j], base + j)},
 * in no particular order (the host sorts). Shared memory: TOPK_SMEM bytes. */
#define TOPK_SMEM ((TOPK_WARPS * 256 + 256) * sizeof(unsigned) + (2 + TOPK_WARPS) * sizeof(unsigned long long) + \
                   4 * sizeof(unsigned))
__global__ void __launch_bounds__(TOPK_THREADS)
    topk_merge_kernel(const float *scores, uint32_t cn, uint32_t base, const rv_scored *prev, uint32_t n_prev,
                      rv_scored *out, uint32_t cap)
{
    RV_DYN_SMEM(unsigned, sm);
    unsigned *hist = sm;                                   /* [warp][256] */
    unsigned *total = sm + TOPK_WARPS * 256;               /* [256] */
    unsigned long long *ctl = (unsigned long long *)(total + 256);   /* prefix, lo, then per-warp minima */
    unsigned long long *red = ctl + 2;
    unsigned *ctl32 = (unsigned *)(red + TOPK_WARPS);      /* need, done, out count */
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const size_t q = blockIdx.x;
    const float *row = scores + q * (size_t)cn;
    const rv_scored *pv = prev + q * (size_t)cap;
    rv_scored *ov = out + q * (size_t)cap;
    const uint32_t n_items = n_prev + cn;

    if (n_items <= cap) {   /* everything fits: keep it all */
        for (uint32_t j = (uint32_t)tid; j < n_items; j += TOPK_THREADS)
            ov[j] = topk_item(pv, n_prev, row, base, j);
        return;
    }

    /* lo: with cap previous candidates, the cap best all rank at or above
     * the worst of them, so any item below it is out. */
    unsigned long long lo = 0;
    if (n_prev >= cap) {
        unsigned long long m = ~0ull;
        for (uint32_t j = (uint32_t)tid; j < n_prev; j += TOPK_THREADS) {
            unsigned long long k = item_key(pv[j].score, pv[j].index);
            m = k < m ? k : m;
        }
        for (int o = 16; o > 0; o >>= 1) {
            unsigned long long x = __shfl_xor_sync(0xffffffffu, m, o);
            m = x < m ? x : m;
        }
        if (lane == 0)
            red[warp] = m;
        __syncthreads();
        if (tid == 0) {
            unsigned long long w = red[0];
            for (int i = 1; i < TOPK_WARPS; i++)
                w = red[i] < w ? red[i] : w;
            ctl[1] = w;
        }
        __syncthreads();
        lo = ctl[1];
    }

    if (tid == 0) {
        ctl[0] = 0;      /* the digits chosen so far */
        ctl32[0] = cap;  /* items still to take among those matching them */
        ctl32[1] = 0;
    }
    int d = 0;
    for (; d < 8; d++) {
        for (int i = tid; i < TOPK_WARPS * 256; i += TOPK_THREADS)
            hist[i] = 0;
        __syncthreads();
        const unsigned long long prefix = ctl[0];
        const int shift = 56 - 8 * d;
        unsigned *wh = hist + warp * 256;
        for (uint32_t j = (uint32_t)tid; j < n_items; j += TOPK_THREADS) {
            rv_scored it = topk_item(pv, n_prev, row, base, j);
            unsigned long long k = item_key(it.score, it.index);
            if (k >= lo && (d == 0 || (k >> (shift + 8)) == prefix))
                smem_inc(&wh[(k >> shift) & 255u]);
        }
        __syncthreads();
        for (int b = tid; b < 256; b += TOPK_THREADS) {
            unsigned s = 0;
            for (int w = 0; w < TOPK_WARPS; w++)
                s += hist[w * 256 + b];
            total[b] = s;
        }
        __syncthreads();
        if (tid == 0) {
            unsigned need = ctl32[0], cum = 0;
            int b = 255;
            for (; b > 0; b--) {   /* from the best bin down; the bins hold at least `need` in all */
                if (cum + total[b] >= need)
                    break;
                cum += total[b];
            }
            ctl[0] = (prefix << 8) | (unsigned long long)b;
            ctl32[0] = need - cum;
            ctl32[1] = total[b] == need - cum;   /* the whole bin is taken: done */
        }
        __syncthreads();
        if (ctl32[1])
            break;
    }
    /* Keys are unique (rows differ), so the last digit always ends the loop;
     * d == 8 cannot happen, but stay in range if it did. */
    const int digits = d < 8 ? d + 1 : 8;
    const unsigned long long chosen = ctl[0];
    const int shift = 64 - 8 * digits;
    if (tid == 0)
        ctl32[2] = 0;
    __syncthreads();
    for (uint32_t j = (uint32_t)tid; j < n_items; j += TOPK_THREADS) {
        rv_scored it = topk_item(pv, n_prev, row, base, j);
        unsigned long long k = item_key(it.score, it.index);
        if (k >= lo && (k >> shift) >= chosen) {
            unsigned pos = smem_inc(&ctl32[2]);
            if (pos < cap)
                ov[pos] = it;
        }
    }
}

/* ---------------------------------------------------------------- host side */

static int device_free_memory(size_t *bytes)
{
    size_t total = 0;   /* (the emulator's pretend device: 8 GiB, or RV_EMU_DEVICE_MEM) */
    RV_CUDA_CHECK(cudaMemGetInfo(bytes, &total));
    return 0;
}

extern "C" void rv_search_gpu_close(rv_search_gpu *g)
{
    if (!g)
        return;
    if (g->cu) {
        rv_cuda_free(g->cu, g->d_corpus);
        rv_cuda_free(g->cu, g->d_block32);
        rv_cuda_free(g->cu, g->d_queries);
        rv_cuda_free(g->cu, g->d_scores);
        rv_cuda_free(g->cu, g->d_cand[0]);
        rv_cuda_free(g->cu, g->d_cand[1]);
        rv_cuda_close(g->cu);
    }
    free(g);
}

extern "C" const char *rv_search_gpu_describe(const rv_search_gpu *g) { return g->desc; }

static int open_gpu(rv_search_gpu *g, int device, const rv_search_gpu_params *p)
{
    if (rv_cuda_check_device(device) != 0)
        return -1;
    if (!(g->cu = rv_cuda_open(device)))
        return -1;
    g->cb = p && p->corpus_block ? p->corpus_block : DEFAULT_CORPUS_BLOCK;
    if (g->cb > g->rows)
        g->cb = g->rows ? g->rows : 1;
    g->qt = p && p->query_tile ? p->query_tile : DEFAULT_QUERY_TILE;
    if (g->cb > 0x7fffffffu || g->qt > 0x7fffffffu || g->dim > 0x7fffffffu)
        return rv_error_set("cuda search: block %zu, query tile %zu or dim %u exceeds 2^31", g->cb, g->qt, g->dim);
    size_t stored, block_stored, block32, qbytes, sbytes, free_mem;
    if (rv_size_mul(g->rows, (size_t)g->dim * g->esize, &stored, "cuda search corpus") < 0 ||
        rv_size_mul(g->cb, (size_t)g->dim * g->esize, &block_stored, "cuda search block") < 0 ||
        rv_size_mul(g->cb, (size_t)g->dim * sizeof(float), &block32, "cuda search block") < 0 ||
        rv_size_mul(g->qt, (size_t)g->dim * sizeof(float), &qbytes, "cuda search queries") < 0 ||
        rv_size_mul(g->qt, g->cb * sizeof(float), &sbytes, "cuda search scores") < 0 ||
        device_free_memory(&free_mem) < 0)
        return -1;
    /* Work buffers, with candidates for the largest cap allowed. */
    size_t work = (g->t != RV_WT_F32 ? block32 : 0) + qbytes + sbytes +
                  2 * g->qt * (size_t)RV_SEARCH_GPU_MAX_CAP * sizeof(rv_scored);
    int resident = p ? p->resident : -1;
    if (resident < 0)
        resident = stored <= free_mem && free_mem - stored >= work + block_stored + MEMORY_HEADROOM;
    g->resident = resident != 0;
    if (!(g->d_corpus = rv_cuda_alloc(g->cu, g->resident ? stored : block_stored)) ||
        (g->t != RV_WT_F32 && !(g->d_block32 = (float *)rv_cuda_alloc(g->cu, block32))) ||
        !(g->d_queries = (float *)rv_cuda_alloc(g->cu, qbytes)) ||
        !(g->d_scores = (float *)rv_cuda_alloc(g->cu, sbytes)))
        return -1;
    if (g->resident && stored && rv_cuda_upload(g->cu, g->d_corpus, g->host_corpus, stored) < 0)
        return -1;
    snprintf(g->desc, sizeof g->desc, "%s; corpus %s (%s, blocks of %zu rows, %zu queries per tile)",
             rv_cuda_device_name(g->cu), g->resident ? "resident" : "streamed per query tile", rv_wtype_name(g->t),
             g->cb, g->qt);
    return 0;
}

extern "C" rv_search_gpu *rv_search_gpu_open(int device, const void *corpus, rv_wtype dtype, size_t rows,
                                             uint32_t dim, const rv_search_gpu_params *p)
{
    if (!rv_wtype_valid(dtype)) {
        rv_error_set("cuda search: unknown corpus storage type %d", (int)dtype);
        return NULL;
    }
    if (rows >= UINT32_MAX) {
        rv_error_set("cuda search: expected fewer than 2^32-1 corpus rows, found %zu", rows);
        return NULL;
    }
    rv_search_gpu *g = (rv_search_gpu *)calloc(1, sizeof *g);
    if (!g) {
        rv_error_set("cuda search: out of host memory");
        return NULL;
    }
    g->host_corpus = corpus;
    g->t = dtype;
    g->rows = rows;
    g->dim = dim;
    g->esize = dtype == RV_WT_F32 ? sizeof(float) : sizeof(uint16_t);
    if (open_gpu(g, device, p) < 0) {
        rv_error_prefix("cuda search");
        rv_search_gpu_close(g);
        return NULL;
    }
    return g;
}

/* The candidate buffers for `cap` (kept when already large enough). */
static int ensure_candidates(rv_search_gpu *g, uint32_t cap)
{
    if (cap <= g->cand_cap)
        return 0;
    for (int i = 0; i < 2; i++) {
        rv_cuda_free(g->cu, g->d_cand[i]);
        g->d_cand[i] = NULL;
    }
    g->cand_cap = 0;
    size_t bytes;
    if (rv_size_mul(g->qt, (size_t)cap * sizeof(rv_scored), &bytes, "cuda search candidates") < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (!(g->d_cand[i] = (rv_scored *)rv_cuda_alloc(g->cu, bytes)))
            return -1;
    g->cand_cap = cap;
    return 0;
}

/* One query tile (tn queries already on the device) against the whole
 * corpus; returns which candidate buffer holds the result and its count. */
static int search_tile(rv_search_gpu *g, size_t tn, uint32_t cap, int *result, uint32_t *count)
{
    int cur = 0;
    uint32_t n_prev = 0;
    for (size_t c0 = 0; c0 < g->rows; c0 += g->cb) {
        size_t cn = g->rows - c0 < g->cb ? g->rows - c0 : g->cb;
        size_t first = c0 * g->dim * g->esize;
        const void *stored = (const char *)g->d_corpus + (g->resident ? first : 0);
        if (!g->resident &&
            rv_cuda_upload(g->cu, g->d_corpus, (const char *)g->host_corpus + first, cn * g->dim * g->esize) < 0)
            return -1;
        const float *block = (const float *)stored;
        if (g->t != RV_WT_F32) {
            if (rv_cuda_convert(g->cu, g->d_block32, RV_WT_F32, stored, g->t, cn * g->dim) < 0)
                return -1;
            block = g->d_block32;
        }
        if (g->dim == 0) {
            if (rv_cuda_memset(g->cu, g->d_scores, 0, tn * cn * sizeof(float)) < 0)
                return -1;
        } else if (rv_cuda_gemm(g->cu, 0, 1, (int)tn, (int)cn, (int)g->dim, 1.0f, g->d_queries, (int)g->dim, block,
                                (int)g->dim, RV_WT_F32, 0.0f, g->d_scores, (int)cn, RV_WT_F32) < 0) {
            return -1;
        }
        RV_LAUNCH(topk_merge_kernel, dim3((unsigned)tn), dim3(TOPK_THREADS), TOPK_SMEM, g->cu->stream,
                  (const float *)g->d_scores, (uint32_t)cn, (uint32_t)c0, (const rv_scored *)g->d_cand[cur], n_prev,
                  g->d_cand[cur ^ 1], cap);
        RV_LAUNCH_CHECK("topk_merge_kernel");
        cur ^= 1;
        n_prev = n_prev + cn < cap ? (uint32_t)(n_prev + cn) : cap;
    }
    *result = cur;
    *count = n_prev;
    return 0;
}

extern "C" int rv_search_gpu_select(void *ctx, const float *queries, size_t qn, uint32_t dim, uint32_t cap,
                                    rv_scored *cand, uint32_t *n)
{
    rv_search_gpu *g = (rv_search_gpu *)ctx;
    if (dim != g->dim)
        return rv_error_set("cuda search: query dimension %u does not match corpus dimension %u", dim, g->dim);
    if (cap == 0 || cap > RV_SEARCH_GPU_MAX_CAP)
        return rv_error_set("cuda search: %u candidates per query requested, the GPU selection takes 1 to %u",
                            cap, RV_SEARCH_GPU_MAX_CAP);
    if (ensure_candidates(g, cap) < 0)
        return rv_error_prefix("cuda search");
    for (size_t t0 = 0; t0 < qn; t0 += g->qt) {
        size_t tn = qn - t0 < g->qt ? qn - t0 : g->qt;
        int result = 0;
        uint32_t count = 0;
        if (rv_cuda_upload(g->cu, g->d_queries, queries + t0 * dim, tn * dim * sizeof(float)) < 0 ||
            search_tile(g, tn, cap, &result, &count) < 0 ||
            (count && rv_cuda_download(g->cu, cand + t0 * cap, g->d_cand[result], tn * cap * sizeof(rv_scored)) < 0))
            return rv_error_prefix("cuda search");
        for (size_t i = 0; i < tn; i++)
            n[t0 + i] = count;
    }
    return 0;
}
