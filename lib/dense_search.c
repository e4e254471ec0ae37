/* dense_search.c — blocked exact inner-product top-k search (see
 * dense_search.h). */
#include "dense_search.h"

#include "buf.h"      /* rv_malloc, rv_size_mul */
#include "error.h"
#include "half.h"     /* rv_f16_to_f32, rv_bf16_to_f32 */

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

enum {
    DEFAULT_QUERY_BATCH = 4096,
    DEFAULT_QUERY_TILE = 1024,
    DEFAULT_CORPUS_BLOCK = 1024,
    SCAN_STRIDE = 16,       /* scores tested at once against the heap threshold */
    EXACT_LANES = 8,        /* partial sums of the exact score (a fixed pattern) */
};
#define DEFAULT_HEAP_BUDGET ((size_t)256 << 20)

void rv_dense_rows_f32(const rv_dense_matrix *m, size_t r0, size_t n, float *out)
{
    size_t count = n * m->dim, first = r0 * m->dim;
    if (m->dtype == RV_DTYPE_F32) {
        memcpy(out, (const float *)m->data + first, count * sizeof *out);
    } else if (m->dtype == RV_DTYPE_F16) {
        const uint16_t *src = (const uint16_t *)m->data + first;
        for (size_t i = 0; i < count; i++)
            out[i] = rv_f16_to_f32(src[i]);
    } else {
        const uint16_t *src = (const uint16_t *)m->data + first;
        for (size_t i = 0; i < count; i++)
            out[i] = rv_bf16_to_f32(src[i]);
    }
}

/* ----------------------------------------------------------- exact scores */

/* Products of two floats are exact in double; the sum runs over 8 lanes
 * (element i into lane i % 8) combined in a fixed tree, so the result is the
 * same on every machine and for every position of the vector. A short last
 * group is padded with zeros (adding +0 changes no sum), which keeps the lanes
 * in registers. */
static inline void lanes_add(double acc[EXACT_LANES], const float *q, const float *c)
{
#pragma omp simd
    for (int l = 0; l < EXACT_LANES; l++)   /* independent lanes: vector registers, same sums */
        acc[l] += (double)q[l] * (double)c[l];
}

static inline float lanes_sum(const double acc[EXACT_LANES])
{
    return (float)(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
}

static float exact_f32(const float *q, const float *c, uint32_t dim)
{
    double acc[EXACT_LANES] = {0};
    uint32_t i = 0;
    for (; i + EXACT_LANES <= dim; i += EXACT_LANES)
        lanes_add(acc, q + i, c + i);
    if (i < dim) {
        float qt[EXACT_LANES] = {0}, ct[EXACT_LANES] = {0};
        memcpy(qt, q + i, (dim - i) * sizeof *qt);
        memcpy(ct, c + i, (dim - i) * sizeof *ct);
        lanes_add(acc, qt, ct);
    }
    return lanes_sum(acc);
}

static float exact_16(const float *q, const uint16_t *c, uint32_t dim, int bf16)
{
    double acc[EXACT_LANES] = {0};
    float v[EXACT_LANES];
    uint32_t i = 0;
    for (; i + EXACT_LANES <= dim; i += EXACT_LANES) {
        for (int l = 0; l < EXACT_LANES; l++)
            v[l] = bf16 ? rv_bf16_to_f32(c[i + l]) : rv_f16_to_f32(c[i + l]);
        lanes_add(acc, q + i, v);
    }
    if (i < dim) {
        float qt[EXACT_LANES] = {0}, ct[EXACT_LANES] = {0};
        memcpy(qt, q + i, (dim - i) * sizeof *qt);
        for (uint32_t l = 0; i + l < dim; l++)
            ct[l] = bf16 ? rv_bf16_to_f32(c[i + l]) : rv_f16_to_f32(c[i + l]);
        lanes_add(acc, qt, ct);
    }
    return lanes_sum(acc);
}

float rv_dense_exact_score(const float *q, const rv_dense_matrix *m, size_t r)
{
    size_t first = r * m->dim;
    if (m->dtype == RV_DTYPE_F32)
        return exact_f32(q, (const float *)m->data + first, m->dim);
    return exact_16(q, (const uint16_t *)m->data + first, m->dim, m->dtype == RV_DTYPE_BF16);
}

static double sq_norm(const float *v, uint32_t dim)
{
    double s = 0;
    for (uint32_t i = 0; i < dim; i++)
        s += (double)v[i] * (double)v[i];
    return s;
}

/* ------------------------------------------------------------ score scans */

/* Feeds one query's scores for corpus rows base..base+n-1 to its heap. The
 * test against the threshold lets almost every score of a large corpus pass
 * by without touching the heap; it is written as !(s < thr) so that NaN
 * (ranked as -infinity by the heap) still reaches the exact comparison. */
static void scan_plain(rv_topk *h, const float *row, size_t n, uint32_t base)
{
    size_t j = 0;
    for (; j < n && h->n < h->cap; j++)
        rv_topk_push(h, row[j], base + (uint32_t)j);
    float thr = rv_topk_threshold(h);
    for (; j + SCAN_STRIDE <= n; j += SCAN_STRIDE) {
        int any = 0;
        for (int u = 0; u < SCAN_STRIDE; u++)
            any |= !(row[j + u] < thr);
        if (!any)
            continue;
        for (int u = 0; u < SCAN_STRIDE; u++)
            if (!(row[j + u] < thr)) {
                rv_topk_push(h, row[j + u], base + (uint32_t)(j + u));
                thr = rv_topk_threshold(h);
            }
    }
    for (; j < n; j++)
        if (!(row[j] < thr)) {
            rv_topk_push(h, row[j], base + (uint32_t)j);
            thr = rv_topk_threshold(h);
        }
}

/* The same for MaxP: a score below the threshold can neither enter nor
 * improve a kept group (every kept group scores at least the threshold). */
static void scan_keyed(rv_topk_keyed *h, const float *row, size_t n, uint32_t base, const uint32_t *group)
{
    size_t j = 0;
    for (; j < n && h->n < h->cap; j++)
        rv_topk_keyed_push(h, row[j], base + (uint32_t)j, group[base + j]);
    float thr = rv_topk_keyed_threshold(h);
    for (; j + SCAN_STRIDE <= n; j += SCAN_STRIDE) {
        int any = 0;
        for (int u = 0; u < SCAN_STRIDE; u++)
            any |= !(row[j + u] < thr);
        if (!any)
            continue;
        for (int u = 0; u < SCAN_STRIDE; u++)
            if (!(row[j + u] < thr)) {
                rv_topk_keyed_push(h, row[j + u], base + (uint32_t)(j + u), group[base + j + u]);
                thr = rv_topk_keyed_threshold(h);
            }
    }
    for (; j < n; j++)
        if (!(row[j] < thr)) {
            rv_topk_keyed_push(h, row[j], base + (uint32_t)j, group[base + j]);
            thr = rv_topk_keyed_threshold(h);
        }
}

/* ------------------------------------------------------------ the search */

typedef struct {
    float *block;          /* widened corpus block (f16/bf16 corpora only) */
    float *tile;           /* query_tile × corpus_block scores */
    rv_scored *cand;       /* candidates being rescored (heap capacity) */
    /* the whole-corpus rescan of one query: a k-entry selection */
    rv_scored *full_items;
    rv_keyed *full_keyed;
    rv_keyed_slot *full_table;
    uint64_t rescored, full_rescans;
} thread_buffers;

typedef struct {
    const rv_dense_matrix *corpus;
    const uint32_t *group;
    /* sizes */
    size_t nq, nc, qb, qt, cb, n_blocks;
    uint32_t dim;
    size_t targets;            /* rows, or groups with MaxP */
    uint32_t k_out;            /* hits per query: min(k, targets) */
    uint32_t cap;              /* candidates per query: min(k + margin, targets) */
    int threads;
    int keyed;
    /* storage */
    float *queries;            /* qb × dim, the current batch widened */
    thread_buffers *tb;
    rv_topk *plain;            /* threads × qb heaps */
    rv_scored *plain_items;
    rv_topk_keyed *keyed_heaps;
    rv_keyed *keyed_items;
    rv_keyed_slot *keyed_table;
    size_t table_size;
    rv_scored *out;            /* qb × k_out final hits */
    uint32_t *n_out;           /* qb */
    double *block_norm2;       /* per block: largest squared row norm */
    double max_norm2;          /* over the corpus */
    uint32_t *group_start;     /* MaxP: rows of group g are group_rows[group_start[g] .. group_start[g+1]) */
    uint32_t *group_rows;
    /* selector path (rv_dense_search_select) */
    int select;
    float *sel_floor;          /* qb: the lowest selector score among the rows it returned */
    unsigned char *sel_nan;    /* qb: 1 when a returned score was NaN (no floor then) */
} search_state;

static void state_free(search_state *s)
{
    if (s->tb)
        for (int t = 0; t < s->threads; t++) {
            free(s->tb[t].block);
            free(s->tb[t].tile);
            free(s->tb[t].cand);
            free(s->tb[t].full_items);
            free(s->tb[t].full_keyed);
            free(s->tb[t].full_table);
        }
    free(s->tb);
    free(s->queries);
    free(s->plain);
    free(s->plain_items);
    free(s->keyed_heaps);
    free(s->keyed_items);
    free(s->keyed_table);
    free(s->out);
    free(s->n_out);
    free(s->block_norm2);
    free(s->group_start);
    free(s->group_rows);
    free(s->sel_floor);
    free(s->sel_nan);
}

/* Allocates an array of n_items elements of `size` bytes, the size checked
 * for overflow. */
static void *alloc_array(size_t n_items, size_t size, const char *what)
{
    size_t bytes;
    if (rv_size_mul(n_items, size, &bytes, what) < 0)
        return NULL;
    return rv_malloc(bytes ? bytes : 1);
}

/* The same for a rows × cols matrix of floats. */
static float *alloc_floats(size_t rows, size_t cols, const char *what)
{
    size_t n;
    if (rv_size_mul(rows, cols, &n, what) < 0)
        return NULL;
    return alloc_array(n, sizeof(float), what);
}

/* MaxP: the rows of each group in ascending order (a counting sort). */
static int build_groups(search_state *s, uint32_t n_groups)
{
    if (!(s->group_start = rv_calloc((size_t)n_groups + 1, sizeof *s->group_start)) ||
        !(s->group_rows = alloc_array(s->nc, sizeof *s->group_rows, "group rows")))
        return -1;
    for (size_t r = 0; r < s->nc; r++)
        s->group_start[s->group[r] + 1]++;
    for (uint32_t g = 0; g < n_groups; g++)
        s->group_start[g + 1] += s->group_start[g];
    uint32_t *fill = alloc_array(n_groups, sizeof *fill, "group rows");
    if (!fill)
        return -1;
    memcpy(fill, s->group_start, (size_t)n_groups * sizeof *fill);
    for (size_t r = 0; r < s->nc; r++)
        s->group_rows[fill[s->group[r]]++] = (uint32_t)r;
    free(fill);
    return 0;
}

static int state_alloc(search_state *s)
{
    size_t heaps, entries, hits;
    if (rv_size_mul((size_t)s->threads, s->qb, &heaps, "heaps") < 0 ||
        rv_size_mul(heaps, s->cap, &entries, "heap entries") < 0 ||
        rv_size_mul(s->qb, s->k_out, &hits, "hits") < 0 ||
        !(s->queries = alloc_floats(s->qb, s->dim, "query batch")) ||
        !(s->tb = rv_calloc((size_t)s->threads, sizeof *s->tb)) ||
        !(s->out = alloc_array(hits, sizeof *s->out, "hits")) ||
        !(s->n_out = alloc_array(s->qb, sizeof *s->n_out, "hits")) ||
        !(s->block_norm2 = alloc_array(s->n_blocks, sizeof *s->block_norm2, "norms")))
        return -1;
    size_t table = rv_topk_keyed_table_size(s->k_out);
    for (int t = 0; t < s->threads; t++) {
        thread_buffers *b = &s->tb[t];
        if (!(b->tile = alloc_floats(s->qt, s->cb, "score tile")) ||
            !(b->cand = alloc_array(s->cap, sizeof *b->cand, "candidates")))
            return -1;
        if (s->corpus->dtype != RV_DTYPE_F32 && !(b->block = alloc_floats(s->cb, s->dim, "corpus block")))
            return -1;
        if (!s->keyed && !(b->full_items = alloc_array(s->k_out, sizeof *b->full_items, "rescan")))
            return -1;
        if (s->keyed && (!(b->full_keyed = alloc_array(s->k_out, sizeof *b->full_keyed, "rescan")) ||
                         !(b->full_table = alloc_array(table, sizeof *b->full_table, "rescan"))))
            return -1;
    }
    if (!s->keyed) {
        if (!(s->plain = alloc_array(heaps, sizeof *s->plain, "heaps")) ||
            !(s->plain_items = alloc_array(entries, sizeof *s->plain_items, "heap entries")))
            return -1;
        for (size_t h = 0; h < heaps; h++)
            rv_topk_init(&s->plain[h], s->plain_items + h * s->cap, s->cap);
    } else {
        size_t slots;
        s->table_size = rv_topk_keyed_table_size(s->cap);
        if (rv_size_mul(heaps, s->table_size, &slots, "heap tables") < 0 ||
            !(s->keyed_heaps = alloc_array(heaps, sizeof *s->keyed_heaps, "heaps")) ||
            !(s->keyed_items = alloc_array(entries, sizeof *s->keyed_items, "heap entries")) ||
            !(s->keyed_table = alloc_array(slots, sizeof *s->keyed_table, "heap tables")))
            return -1;
        for (size_t h = 0; h < heaps; h++)
            rv_topk_keyed_init(&s->keyed_heaps[h], s->keyed_items + h * s->cap,
                               s->keyed_table + h * s->table_size, s->cap);
    }
    return 0;
}

/* One block of corpus rows against every query of the batch (the first
 * batch also measures the block's largest row norm). */
static void search_block(search_state *s, size_t b, size_t qn, int first_batch, int tid)
{
    size_t c0 = b * s->cb, cn = s->nc - c0 < s->cb ? s->nc - c0 : s->cb;
    const float *block;
    if (s->corpus->dtype == RV_DTYPE_F32) {
        block = (const float *)s->corpus->data + c0 * s->dim;
    } else {
        rv_dense_rows_f32(s->corpus, c0, cn, s->tb[tid].block);
        block = s->tb[tid].block;
    }
    if (first_batch) {
        double m = 0;
        for (size_t r = 0; r < cn; r++) {
            double n2 = sq_norm(block + r * s->dim, s->dim);
            m = n2 > m ? n2 : m;
        }
        s->block_norm2[b] = m;
    }
    float *tile = s->tb[tid].tile;
    for (size_t t0 = 0; t0 < qn; t0 += s->qt) {
        size_t tn = qn - t0 < s->qt ? qn - t0 : s->qt;
        if (s->dim > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tn, (int)cn, (int)s->dim, 1.0f,
                        s->queries + t0 * s->dim, (int)s->dim, block, (int)s->dim, 0.0f, tile, (int)cn);
        else
            memset(tile, 0, tn * cn * sizeof *tile);
        for (size_t i = 0; i < tn; i++) {
            size_t h = (size_t)tid * s->qb + t0 + i;
            if (s->keyed)
                scan_keyed(&s->keyed_heaps[h], tile + i * cn, cn, (uint32_t)c0, s->group);
            else
                scan_plain(&s->plain[h], tile + i * cn, cn, (uint32_t)c0);
        }
    }
}

/* The bound on |sgemm score - exact score| for query q (see the header):
 * sgemm's rounding error for any summation order is at most
 * dim·2^-24·Σ|q_i c_i| (plus the exact score's own float rounding), and
 * Σ|q_i c_i| ≤ |q|·|c|. Doubled for headroom; the last term covers
 * flushed subnormals. */
static double score_error_bound(const search_state *s, const float *q)
{
    return ((double)s->dim + 4) * 0x1p-23 * sqrt(sq_norm(q, s->dim)) * sqrt(s->max_norm2) + s->dim * 0x1p-100;
}

static int cmp_scored(const void *pa, const void *pb)
{
    const rv_scored *a = pa, *b = pb;
    if (rv_scored_before(a->score, a->index, b->score, b->index))
        return -1;
    return rv_scored_before(b->score, b->index, a->score, a->index);
}

/* The exact best row of group g: its highest score, first row reaching it. */
static rv_scored rescore_group(const search_state *s, const float *q, uint32_t g)
{
    rv_scored best = {-INFINITY, UINT32_MAX};
    for (uint32_t j = s->group_start[g]; j < s->group_start[g + 1]; j++) {
        uint32_t r = s->group_rows[j];
        float v = rv_dense_exact_score(q, s->corpus, r);
        v = v != v ? -INFINITY : v;
        if (best.index == UINT32_MAX || v > best.score)
            best = (rv_scored){v, r};
    }
    return best;
}

/* Every row of the corpus, scored exactly: the answer when the candidates
 * cannot be shown to hold it. Writes up to k_out hits best first. */
static uint32_t full_rescan(search_state *s, const float *q, thread_buffers *b, rv_scored *out)
{
    uint32_t n;
    if (!s->keyed) {
        rv_topk h;
        rv_topk_init(&h, b->full_items, s->k_out);
        for (size_t r = 0; r < s->nc; r++)
            rv_topk_push(&h, rv_dense_exact_score(q, s->corpus, r), (uint32_t)r);
        n = rv_topk_sort(&h);
        memcpy(out, h.items, n * sizeof *out);
    } else {
        rv_topk_keyed h;
        rv_topk_keyed_init(&h, b->full_keyed, b->full_table, s->k_out);
        for (size_t r = 0; r < s->nc; r++)
            rv_topk_keyed_push(&h, rv_dense_exact_score(q, s->corpus, r), (uint32_t)r, s->group[r]);
        n = rv_topk_keyed_sort(&h);
        for (uint32_t j = 0; j < n; j++)
            out[j] = (rv_scored){h.items[j].score, h.items[j].key};
    }
    b->rescored += s->nc;
    b->full_rescans++;
    return n;
}

/* Query i of the batch: folds every thread's heap into thread 0's (pushing
 * is exact in any order, see topk.h), rescores the candidates exactly,
 * checks that nothing outside them could reach the top k, and writes the
 * final hits. */
static void finish_query(search_state *s, size_t i, int tid)
{
    thread_buffers *b = &s->tb[tid];
    const float *q = s->queries + i * s->dim;
    rv_scored *cand = b->cand, *out = s->out + i * s->k_out;
    uint32_t n, cap;
    float worst;   /* the lowest sgemm score among the candidates */
    if (!s->keyed) {
        rv_topk *dst = &s->plain[i];
        for (int t = 1; t < s->threads; t++) {
            const rv_topk *src = &s->plain[(size_t)t * s->qb + i];
            for (uint32_t j = 0; j < src->n; j++)
                rv_topk_push(dst, src->items[j].score, src->items[j].index);
        }
        n = dst->n;
        cap = dst->cap;
        worst = n ? dst->items[0].score : 0;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t r = dst->items[j].index;
            float v = rv_dense_exact_score(q, s->corpus, r);
            cand[j] = (rv_scored){v != v ? -INFINITY : v, r};
        }
    } else {
        rv_topk_keyed *dst = &s->keyed_heaps[i];
        for (int t = 1; t < s->threads; t++) {
            const rv_topk_keyed *src = &s->keyed_heaps[(size_t)t * s->qb + i];
            for (uint32_t j = 0; j < src->n; j++)
                rv_topk_keyed_push(dst, src->items[j].score, src->items[j].index, src->items[j].key);
        }
        n = dst->n;
        cap = dst->cap;
        worst = n ? dst->items[0].score : 0;
        for (uint32_t j = 0; j < n; j++) {
            cand[j] = rescore_group(s, q, dst->items[j].key);
            b->rescored += s->group_start[dst->items[j].key + 1] - s->group_start[dst->items[j].key];
        }
    }
    if (!s->keyed)
        b->rescored += n;
    qsort(cand, n, sizeof *cand, cmp_scored);
    uint32_t kk = n < s->k_out ? n : s->k_out;
    /* Complete when every row (group) is a candidate, or when anything left
     * out scores below the k-th candidate even after the error bound. */
    double eps = score_error_bound(s, q);
    int complete;
    if (!s->select) {
        complete = n < cap || n == s->targets || kk == 0 || eps == 0 || (double)worst + eps < (double)cand[kk - 1].score;
    } else {
        /* The selector saw every row but returned only its best ones: a row
         * it left out scored at most sel_floor; a key (group) evicted from
         * the full heap at most the heap's worst (≥ sel_floor, since every
         * pushed score is). With fewer than k candidates the rest of the
         * top k is unknown. */
        if (n < cap)
            worst = s->sel_floor[i];
        complete = n == s->targets || kk == 0 ||
                   (!s->sel_nan[i] && kk == s->k_out && (double)worst + eps < (double)cand[kk - 1].score);
    }
    if (complete) {
        for (uint32_t j = 0; j < kk; j++)
            out[j] = (rv_scored){cand[j].score, s->keyed ? s->group[cand[j].index] : cand[j].index};
        s->n_out[i] = kk;
    } else {
        s->n_out[i] = full_rescan(s, q, b, out);
    }
}

/* Picks the batch and tile sizes: the batch's heaps must fit the budget,
 * and a batch is a whole number of tiles when it holds more than one. */
static void choose_sizes(search_state *s, const rv_dense_params *p)
{
    s->cb = p->corpus_block ? p->corpus_block : DEFAULT_CORPUS_BLOCK;
    s->qt = p->query_tile ? p->query_tile : DEFAULT_QUERY_TILE;
    size_t per_query = s->keyed ? (size_t)s->cap * sizeof(rv_keyed) +
                                      rv_topk_keyed_table_size(s->cap) * sizeof(rv_keyed_slot) + sizeof(rv_topk_keyed)
                                : (size_t)s->cap * sizeof(rv_scored) + sizeof(rv_topk);
    size_t budget = p->heap_budget ? p->heap_budget : DEFAULT_HEAP_BUDGET;
    size_t qb = p->query_batch ? p->query_batch : DEFAULT_QUERY_BATCH;
    size_t fit = budget / per_query / (size_t)s->threads;
    if (qb > fit)
        qb = fit ? fit : 1;
    if (qb > s->nq)
        qb = s->nq;
    if (qb > s->qt)
        qb -= qb % s->qt;
    else
        s->qt = qb;
    s->qb = qb;
}

/* The largest squared row norm of the corpus (the selector path, which
 * does not pass the blocks through search_block). */
static double corpus_max_norm2(const rv_dense_matrix *m, int threads)
{
    double best = 0;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(max : best) reduction(| : failed)
    {
        float *row = m->dtype == RV_DTYPE_F32 ? NULL : malloc((m->dim ? m->dim : 1) * sizeof *row);
        if (m->dtype != RV_DTYPE_F32 && !row)
            failed = 1;
#pragma omp for schedule(static)
        for (size_t r = 0; r < m->rows; r++) {
            if (failed)
                continue;
            const float *v = (const float *)m->data + r * m->dim;
            if (row) {
                rv_dense_rows_f32(m, r, 1, row);
                v = row;
            }
            double n2 = sq_norm(v, m->dim);
            best = n2 > best ? n2 : best;
        }
        free(row);
    }
    if (failed) {
        rv_error_set("dense search: out of memory for a corpus row");
        return -1;
    }
    return best;
}

static int dense_search(const rv_dense_matrix *queries, const rv_dense_matrix *corpus, const rv_dense_params *p,
                        rv_dense_select_fn select, void *select_ctx, rv_dense_emit_fn emit,
                        rv_dense_progress_fn progress, void *ctx, rv_dense_stats *stats)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (queries->rows && corpus->rows && queries->dim != corpus->dim)
        return rv_error_set("query dimension %u does not match corpus dimension %u", queries->dim, corpus->dim);
    if (corpus->rows >= UINT32_MAX)
        return rv_error_set("corpus: expected fewer than 2^32-1 vectors, found %zu", corpus->rows);
    if (p->k == 0)
        return rv_error_set("k: expected at least 1, found 0");
    const uint32_t *group = p->group_of_row;
    if (group)
        for (size_t r = 0; r < corpus->rows; r++)
            if (group[r] >= p->n_groups)
                return rv_error_set("corpus row %zu: group %u out of range (%u groups)", r, group[r], p->n_groups);

    search_state s = {0};
    s.corpus = corpus;
    s.group = group;
    s.nq = queries->rows;
    s.nc = corpus->rows;
    s.dim = queries->dim;
    s.keyed = group != NULL;
    size_t targets = group ? p->n_groups : s.nc;
    s.targets = targets;
    uint64_t margin = p->margin ? p->margin : 32 + p->k / 4;
    s.k_out = targets < p->k ? (uint32_t)targets : p->k;
    s.cap = targets < p->k + margin ? (uint32_t)targets : (uint32_t)(p->k + margin);
    if (s.nq == 0)
        return 0;
    if (s.k_out == 0) {   /* empty corpus: every query gets no hits */
        for (size_t q = 0; q < s.nq; q++)
            if (emit(ctx, q, NULL, 0) < 0)
                return -1;
        return 0;
    }
    s.threads = p->threads > 0 ? p->threads : omp_get_max_threads();
    choose_sizes(&s, p);
    s.n_blocks = (s.nc + s.cb - 1) / s.cb;
    if ((size_t)s.threads > s.n_blocks)
        s.threads = (int)s.n_blocks;
    if (s.qt > INT32_MAX || s.cb > INT32_MAX || s.dim > INT32_MAX)
        return rv_error_set("search tiles: expected sizes below 2^31 (dim %u, block %zu, tile %zu)", s.dim, s.cb,
                            s.qt);
    if (state_alloc(&s) < 0 || (s.keyed && build_groups(&s, p->n_groups) < 0)) {
        state_free(&s);
        return rv_error_prefix("dense search");
    }

    /* Our threads each run single-threaded sgemm calls: measured faster than
     * one multi-threaded sgemm per tile (bench/search.sh) and it keeps BLAS's
     * threads from competing with ours. */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    int rc = 0;
    rv_scored *sel = NULL;      /* selector path: qb × sel_rows candidate rows and their counts */
    uint32_t *sel_n = NULL;
    uint32_t sel_rows = s.cap;  /* rows asked of the selector (more than cap groups with MaxP) */
    if (select) {
        if (s.keyed && p->select_rows > sel_rows)
            sel_rows = p->select_rows;
        if (sel_rows > s.nc)
            sel_rows = (uint32_t)s.nc;
        double m2 = corpus_max_norm2(corpus, s.threads);
        size_t entries;
        s.select = 1;
        if (m2 < 0 || rv_size_mul(s.qb, sel_rows, &entries, "candidates") < 0 ||
            !(sel = alloc_array(entries, sizeof *sel, "candidates")) ||
            !(sel_n = alloc_array(s.qb, sizeof *sel_n, "candidates")) ||
            !(s.sel_floor = alloc_array(s.qb, sizeof *s.sel_floor, "candidates")) ||
            !(s.sel_nan = alloc_array(s.qb, sizeof *s.sel_nan, "candidates")))
            rc = -1;
        s.max_norm2 = m2;
    }
    for (size_t q0 = 0; q0 < s.nq && rc == 0; q0 += s.qb) {
        size_t qn = s.nq - q0 < s.qb ? s.nq - q0 : s.qb;
        int first_batch = q0 == 0;
        rv_dense_rows_f32(queries, q0, qn, s.queries);
        for (size_t h = 0; h < (size_t)s.threads * s.qb; h++) {
            if (s.keyed)
                rv_topk_keyed_clear(&s.keyed_heaps[h]);
            else
                rv_topk_clear(&s.plain[h]);
        }
        if (select) {
            /* The selector's candidates go to thread 0's heaps (the others
             * stay empty), where finish_query finds them as if sgemm had
             * produced them: same rescoring, same completeness test. */
            if ((rc = select(select_ctx, s.queries, qn, s.dim, sel_rows, sel, sel_n)) < 0)
                break;
            for (size_t i = 0; i < qn; i++) {
                uint32_t nr = sel_n[i] < sel_rows ? sel_n[i] : sel_rows;
                const rv_scored *c = sel + i * sel_rows;
                float floor = INFINITY;
                int nan = 0;
                for (uint32_t j = 0; j < nr; j++) {
                    if (c[j].index >= s.nc) {
                        rc = rv_error_set("dense search: the selector returned row %u of a corpus of %zu",
                                          c[j].index, s.nc);
                        break;
                    }
                    nan |= c[j].score != c[j].score;
                    floor = c[j].score < floor ? c[j].score : floor;
                    if (s.keyed)
                        rv_topk_keyed_push(&s.keyed_heaps[i], c[j].score, c[j].index, s.group[c[j].index]);
                    else
                        rv_topk_push(&s.plain[i], c[j].score, c[j].index);
                }
                s.sel_floor[i] = floor;
                s.sel_nan[i] = (unsigned char)nan;
            }
            if (rc < 0)
                break;
#pragma omp parallel for num_threads(s.threads) schedule(dynamic, 16)
            for (size_t i = 0; i < qn; i++)
                finish_query(&s, i, omp_get_thread_num());
            if (progress)
                progress(ctx, (double)(q0 + qn));
            for (size_t i = 0; i < qn && rc == 0; i++)
                rc = emit(ctx, q0 + i, s.out + i * s.k_out, s.n_out[i]);
            continue;
        }
        size_t blocks_done = 0;
#pragma omp parallel num_threads(s.threads)
        {
            int tid = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
            for (size_t b = 0; b < s.n_blocks; b++) {
                search_block(&s, b, qn, first_batch, tid);
                size_t done;
#pragma omp atomic capture
                done = ++blocks_done;
                if (tid == 0 && progress)
                    progress(ctx, (double)q0 + (double)qn * (double)done / (double)s.n_blocks);
            }
            if (first_batch) {
#pragma omp single
                {
                    double m = 0;
                    for (size_t b = 0; b < s.n_blocks; b++)
                        m = s.block_norm2[b] > m ? s.block_norm2[b] : m;
                    s.max_norm2 = m;
                }
            }
#pragma omp for schedule(dynamic, 16)
            for (size_t i = 0; i < qn; i++)
                finish_query(&s, i, tid);
        }
        for (size_t i = 0; i < qn && rc == 0; i++)
            rc = emit(ctx, q0 + i, s.out + i * s.k_out, s.n_out[i]);
    }
    openblas_set_num_threads(blas_threads);
    free(sel);
    free(sel_n);
    if (stats)
        for (int t = 0; t < s.threads; t++) {
            stats->rescored += s.tb[t].rescored;
            stats->full_rescans += s.tb[t].full_rescans;
        }
    state_free(&s);
    return rc;
}

int rv_dense_search(const rv_dense_matrix *queries, const rv_dense_matrix *corpus, const rv_dense_params *p,
                    rv_dense_emit_fn emit, rv_dense_progress_fn progress, void *ctx, rv_dense_stats *stats)
{
    return dense_search(queries, corpus, p, NULL, NULL, emit, progress, ctx, stats);
}

int rv_dense_search_select(const rv_dense_matrix *queries, const rv_dense_matrix *corpus, const rv_dense_params *p,
                           rv_dense_select_fn select, void *select_ctx, rv_dense_emit_fn emit,
                           rv_dense_progress_fn progress, void *ctx, rv_dense_stats *stats)
{
    if (!select)
        return rv_error_set("dense search: no candidate selector");
    return dense_search(queries, corpus, p, select, select_ctx, emit, progress, ctx, stats);
}
