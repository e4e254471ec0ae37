/* bm25_search.c — top-k search over a BM25 index (see bm25.h).
 *
 * Two exact strategies give identical results:
 *
 * Exhaustive (term at a time): every query token in query order adds its
 * posting list's impacts to a float32 accumulator per document. This is the
 * very sum bm25s computes, so scores agree to the bit. Used for short queries
 * and whenever the index has no stored term sequences.
 *
 * Pruned (queries of 8 tokens or more when the term sequences are stored,
 * i.e. chunks as queries): unique terms are visited from the highest possible
 * contribution (multiplicity x largest impact) down, summing partial scores
 * (in any order: they only feed bounds). As soon as k documents are touched,
 * the k best by partial score are scored exactly; the k-th of those exact
 * scores is a lower bound theta of the final k-th score. Once the most the
 * unvisited terms can still add falls below theta, no untouched document can
 * enter the top k (phase 1 ends). Further terms then only refine the touched
 * documents, dropping those that can no longer reach theta, while that is
 * cheaper than scoring the rest exactly (phase 2). The survivors are scored
 * exactly from their stored term sequence, adding impacts in query order in
 * float32 — the same bits as the exhaustive sum (phase 3). Bounds carry a
 * relative margin 16 times the worst float32 rounding, so pruning never drops
 * a document that belongs in the top k; tests compare both strategies. */
#include "bm25.h"
#include "bm25_internal.h"
#include "buf.h"
#include "error.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NEG_ZERO_BITS 0x80000000u

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static int is_plus(const rv_bm25_index *ix)
{
    return ix->params.variant == RV_BM25_BM25L || ix->params.variant == RV_BM25_BM25PLUS;
}

int rv_bm25_index_prepare(rv_bm25_index *ix)
{
    free(ix->max_impact);
    ix->max_impact = rv_calloc(ix->n_terms ? ix->n_terms : 1, sizeof *ix->max_impact);
    if (!ix->max_impact)
        return -1;
    for (size_t t = 0; t < ix->n_terms; t++) {
        float m = 0;
        for (uint64_t j = ix->post_off[t]; j < ix->post_off[t + 1]; j++)
            if (ix->impacts[j] > m)
                m = ix->impacts[j];
        ix->max_impact[t] = m;
    }
    return 0;
}

/* ---------------------------------------------------------------- searcher */

/* Per-thread state. acc holds -0.0 for documents no query term has touched:
 * adding impacts (never -0.0) to it gives exactly the float32 sum bm25s
 * computes from 0, and the sign bit tells matched from unmatched. */
typedef struct {
    float *acc;             /* n_docs accumulators, -0.0 between queries */
    uint32_t *touched;      /* pruned: documents touched by the current query */
    size_t n_touched;
    uint32_t *qslot;        /* pruned: n_terms; 1 + unique-term index, 0 = not in the query */
    uint64_t *qbits;        /* pruned: one bit per term, set for the query's terms */
    uint32_t *uterm, *mult, *order, *tfq;
    float *uimp;            /* impact of unique term j in the document being scored */
    double *ub, *rest;
    rv_bm25_hit *heap;
    uint32_t *qterms;
    float *qnonocc;
    size_t q_cap;
    rv_analysis *an;
    const uint8_t *exclude; /* documents never returned (NULL: none) */
} searcher;

static int searcher_init(searcher *s, const rv_bm25_index *ix, uint32_t k, int need_analysis)
{
    memset(s, 0, sizeof *s);
    s->heap = rv_malloc((k ? k : 1) * sizeof *s->heap);
    s->acc = rv_malloc(ix->n_docs * sizeof *s->acc);
    if (!s->heap || !s->acc)
        return -1;
    for (size_t d = 0; d < ix->n_docs; d++)
        s->acc[d] = -0.0f;
    if (ix->fwd_off) {
        /* one spare slot: phase 1 appends branch-free, writing before counting */
        s->touched = rv_malloc((ix->n_docs + 1) * sizeof *s->touched);
        s->qslot = rv_calloc(ix->n_terms ? ix->n_terms : 1, sizeof *s->qslot);
        s->qbits = rv_calloc(ix->n_terms / 64 + 1, sizeof *s->qbits);
        if (!s->touched || !s->qslot || !s->qbits)
            return -1;
    }
    if (need_analysis && !(s->an = rv_analysis_new(ix->an)))
        return -1;
    return 0;
}

static void searcher_free(searcher *s)
{
    free(s->acc);
    free(s->touched);
    free(s->qslot);
    free(s->qbits);
    free(s->uterm);
    free(s->mult);
    free(s->order);
    free(s->tfq);
    free(s->uimp);
    free(s->ub);
    free(s->rest);
    free(s->heap);
    free(s->qterms);
    free(s->qnonocc);
    rv_analysis_free(s->an);
}

static int searcher_reserve(searcher *s, size_t n)
{
    if (n < s->q_cap)
        return 0;
    size_t cap = s->q_cap ? s->q_cap : 256;
    while (cap < n + 1)
        cap *= 2;
#define GROW(p)                                                  \
    do {                                                         \
        void *np_ = realloc((p), cap * sizeof *(p));              \
        if (!np_)                                                \
            return rv_error_set("out of memory");                \
        (p) = np_;                                               \
    } while (0)
    GROW(s->qterms);
    GROW(s->qnonocc);
    GROW(s->uterm);
    GROW(s->mult);
    GROW(s->order);
    GROW(s->tfq);
    GROW(s->uimp);
    GROW(s->ub);
    GROW(s->rest);
#undef GROW
    s->q_cap = cap;
    return 0;
}

/* ------------------------------------------------------------------- top k */

/* a ranks before b: higher score, then lower document number. */
static inline int hit_before(float sa, uint32_t da, float sb, uint32_t db)
{
    return sa > sb || (sa == sb && da < db);
}

/* Min-heap on rank: the root is the worst hit kept. */
static void heap_sift_down(rv_bm25_hit *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hit_before(h[m].score, h[m].doc, h[l].score, h[l].doc))
            m = l;
        if (r < n && hit_before(h[m].score, h[m].doc, h[r].score, h[r].doc))
            m = r;
        if (m == i)
            return;
        rv_bm25_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_push(rv_bm25_hit *h, uint32_t *n, uint32_t k, uint32_t doc, float score)
{
    if (*n < k) {
        uint32_t i = (*n)++;
        h[i].doc = doc;
        h[i].score = score;
        while (i > 0) {
            uint32_t p = (i - 1) / 2;
            if (!hit_before(h[p].score, h[p].doc, h[i].score, h[i].doc))
                break;
            rv_bm25_hit t = h[i];
            h[i] = h[p];
            h[p] = t;
            i = p;
        }
    } else if (hit_before(score, doc, h[0].score, h[0].doc)) {
        h[0].doc = doc;
        h[0].score = score;
        heap_sift_down(h, *n, 0);
    }
}

static int cmp_hits(const void *a, const void *b)
{
    const rv_bm25_hit *x = a, *y = b;
    if (hit_before(x->score, x->doc, y->score, y->doc))
        return -1;
    if (hit_before(y->score, y->doc, x->score, x->doc))
        return 1;
    return 0;
}

/* --------------------------------------------------------------- postings */

/* Walks term t's postings: for each, BODY sees doc `d_` and impact `w_[i_]`. */
#define FOR_POSTINGS(ix, t, BODY)                                          \
    do {                                                                   \
        const unsigned char *p_ = (ix)->gaps + (ix)->gap_off[t];           \
        const float *w_ = (ix)->impacts + (ix)->post_off[t];               \
        uint32_t n_ = (ix)->df[t], d_ = 0;                                 \
        for (uint32_t i_ = 0; i_ < n_; i_++) {                             \
            uint32_t g_ = *p_++;                                           \
            if (g_ >= 0x80) {                                              \
                uint32_t byte_;                                            \
                unsigned shift_ = 7;                                       \
                g_ &= 0x7f;                                                \
                do {                                                       \
                    byte_ = *p_++;                                         \
                    g_ |= (byte_ & 0x7f) << shift_;                        \
                    shift_ += 7;                                           \
                } while (byte_ & 0x80);                                    \
            }                                                              \
            d_ += g_;                                                      \
            (void)w_;                                                      \
            BODY                                                           \
        }                                                                  \
    } while (0)

static float query_base(const rv_bm25_index *ix, searcher *s, const uint32_t *q, size_t nq)
{
    if (!is_plus(ix))
        return 0;
    for (size_t i = 0; i < nq; i++)
        s->qnonocc[i] = ix->nonocc[q[i]];
    return rv_bm25_sum_f32(s->qnonocc, nq);
}

/* ------------------------------------------------------------- exhaustive */

static uint32_t run_exhaustive(const rv_bm25_index *ix, searcher *s, const uint32_t *q, size_t nq, uint32_t k,
                               rv_bm25_hit *out)
{
    float *acc = s->acc;
    uint64_t work = 0;
    for (size_t i = 0; i < nq; i++) {
        FOR_POSTINGS(ix, q[i], { acc[d_] += w_[i_]; });
        work += ix->df[q[i]];
    }
    float base = query_base(ix, s, q, nq);
    int plus = is_plus(ix);
    uint32_t n = 0;
    rv_bm25_hit *h = s->heap;
    if (work >= ix->n_docs / 8) {
        /* Dense: scan every document in order (ties then keep the lower
         * number, so a full heap only takes strictly higher scores). */
        const uint8_t *ex = s->exclude;
        for (uint32_t d = 0; d < ix->n_docs; d++) {
            float a = acc[d];
            if (f32_bits(a) == NEG_ZERO_BITS)
                continue;
            acc[d] = -0.0f;
            if (ex && ex[d])
                continue;
            float f = plus ? a + base : a;
            if (n < k)
                heap_push(h, &n, k, d, f);
            else if (f > h[0].score) {
                h[0].doc = d;
                h[0].score = f;
                heap_sift_down(h, n, 0);
            }
        }
    } else {
        /* Sparse: revisit the postings; each matched document is taken once
         * (its accumulator is reset when taken). */
        for (size_t i = 0; i < nq; i++)
            FOR_POSTINGS(ix, q[i], {
                float a = acc[d_];
                if (f32_bits(a) != NEG_ZERO_BITS) {
                    acc[d_] = -0.0f;
                    if (!s->exclude || !s->exclude[d_])
                        heap_push(h, &n, k, d_, plus ? a + base : a);
                }
            });
    }
    qsort(h, n, sizeof *h, cmp_hits);
    memcpy(out, h, n * sizeof *h);
    return n;
}

/* ------------------------------------------------------------------ pruned */

/* Exact score of document d for the current query (its unique terms are in
 * s->qslot / s->uterm): impacts added in query-token order, in float32. */
static float exact_score(const rv_bm25_index *ix, searcher *s, const uint32_t *q, size_t nq, size_t nu,
                         uint32_t d, float base)
{
    const uint32_t *dt = ix->fwd + ix->fwd_off[d];
    size_t nd = (size_t)(ix->fwd_off[d + 1] - ix->fwd_off[d]);
    for (size_t j = 0; j < nu; j++)
        s->tfq[j] = 0;
    for (size_t i = 0; i < nd; i++) {
        uint32_t t = dt[i];
        if (s->qbits[t >> 6] & (1ull << (t & 63)))
            s->tfq[s->qslot[t] - 1]++;
    }
    for (size_t j = 0; j < nu; j++)
        if (s->tfq[j])
            s->uimp[j] = rv_bm25_impact(&ix->params, ix->idf[s->uterm[j]], ix->nonocc[s->uterm[j]], s->tfq[j],
                                        ix->doc_len[d], ix->avgdl);
    float acc = 0.f;
    for (size_t i = 0; i < nq; i++) {
        uint32_t j = s->qslot[q[i]] - 1;
        if (s->tfq[j])
            acc += s->uimp[j];
    }
    return is_plus(ix) ? acc + base : acc;
}

/* Sorts unique-term indices by bound, descending (ties by index). Insertion
 * sort: queries have at most a few hundred unique terms, and qsort would need
 * the keys in a global. */
static void sort_by_bound(uint32_t *order, size_t n, const double *ub)
{
    for (size_t i = 1; i < n; i++) {
        uint32_t v = order[i];
        size_t j = i;
        while (j > 0 && (ub[order[j - 1]] < ub[v] || (ub[order[j - 1]] == ub[v] && order[j - 1] > v))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
}

/* Scores the top k of touched documents by partial score exactly, giving a
 * lower bound of the final k-th score. Returns the bound, or -INFINITY. */
static double estimate_threshold(const rv_bm25_index *ix, searcher *s, const uint32_t *q, size_t nq, size_t nu,
                                 uint32_t k, float base)
{
    /* top k partial sums among touched documents (min-heap in heap[]) */
    rv_bm25_hit *h = s->heap;
    uint32_t n = 0;
    for (size_t i = 0; i < s->n_touched; i++) {
        uint32_t d = s->touched[i];
        if (s->exclude && s->exclude[d])
            continue;
        float p = s->acc[d];
        if (n < k)
            heap_push(h, &n, k, d, p);
        else if (p > h[0].score) {
            h[0].doc = d;
            h[0].score = p;
            heap_sift_down(h, n, 0);
        }
    }
    if (n < k)
        return -INFINITY;
    float worst = INFINITY;
    for (uint32_t i = 0; i < n; i++) {
        float e = exact_score(ix, s, q, nq, nu, h[i].doc, base);
        if (e < worst)
            worst = e;
    }
    return worst;
}

/* The most a document whose impacts for this query sum to `sum` (a real
 * number) can score in float32: a float32 sum of nq terms is within
 * nq * 2^-24 of the real sum, plus one rounding for the bm25l/bm25+ base.
 * The margins kept are 16 times wider. */
typedef struct {
    double margin, base;
} bound_ctx;

static bound_ctx bounds_for(size_t nq, float base)
{
    bound_ctx b = {1.0 + ((double)nq + 16.0) * 0x1p-20, (double)base};
    return b;
}

static inline double upper_bound(const bound_ctx *b, double sum)
{
    return (sum * b->margin + b->base) * (1.0 + 0x1p-20);
}

/* The smallest sum whose upper bound reaches theta (a little lower, never
 * higher, than the exact inverse): upper_bound(sum) >= theta implies
 * sum >= cut_for(theta), so testing sum < cut loses nothing. */
static inline float cut_for(const bound_ctx *b, double theta)
{
    double c = (theta / (1.0 + 0x1p-20) - b->base) / b->margin;
    return (float)(c - fabs(c) * 0x1p-20);
}

/* Relative costs that decide how far the walk goes before exact scoring:
 * scoring one candidate from its term sequence costs about as much as
 * visiting this many postings. */
#define EXACT_COST_POSTINGS 200
/* Re-estimate theta during phase 1 only while so few documents are touched. */
#define ESTIMATE_MAX_TOUCHED 8192

/* Keeps the touched documents whose partial sum plus rem can still reach
 * theta (resetting the accumulators of the others); returns how many are
 * kept. With `top` set, also collects the k best kept partial sums into the
 * heap (for a new theta estimate in the same pass). */
static size_t compact_touched(searcher *s, double rem, const bound_ctx *bc, double theta, uint32_t k,
                              uint32_t *top)
{
    float cut = theta == -INFINITY ? -INFINITY : cut_for(bc, theta) - (float)rem;
    size_t w = 0;
    uint32_t n = 0;
    rv_bm25_hit *h = s->heap;
    for (size_t i = 0; i < s->n_touched; i++) {
        uint32_t d = s->touched[i];
        float a = s->acc[d];
        if (a < cut || (s->exclude && s->exclude[d])) {
            s->acc[d] = -0.0f;
            continue;
        }
        s->touched[w++] = d;
        if (!top)
            continue;
        if (n < k)
            heap_push(h, &n, k, d, a);
        else if (a > h[0].score) {
            h[0].doc = d;
            h[0].score = a;
            heap_sift_down(h, n, 0);
        }
    }
    s->n_touched = w;
    if (top)
        *top = n;
    return w;
}

/* theta from the exact scores of the k documents in the heap (-INFINITY
 * when fewer than k). */
static double theta_from_heap(const rv_bm25_index *ix, searcher *s, const uint32_t *q, size_t nq, size_t nu,
                              uint32_t n, uint32_t k, float base)
{
    if (n < k)
        return -INFINITY;
    float worst = INFINITY;
    for (uint32_t i = 0; i < n; i++) {
        float e = exact_score(ix, s, q, nq, nu, s->heap[i].doc, base);
        if (e < worst)
            worst = e;
    }
    return worst;
}

static uint32_t run_pruned(const rv_bm25_index *ix, searcher *s, const uint32_t *q, size_t nq, uint32_t k,
                           rv_bm25_hit *out)
{
    /* unique terms with multiplicities and bounds */
    size_t nu = 0;
    for (size_t i = 0; i < nq; i++) {
        uint32_t t = q[i];
        if (!s->qslot[t]) {
            s->qslot[t] = (uint32_t)++nu;
            s->uterm[nu - 1] = t;
            s->mult[nu - 1] = 1;
            s->qbits[t >> 6] |= 1ull << (t & 63);
        } else {
            s->mult[s->qslot[t] - 1]++;
        }
    }
    for (size_t j = 0; j < nu; j++) {
        s->ub[j] = (double)s->mult[j] * (double)ix->max_impact[s->uterm[j]];
        s->order[j] = (uint32_t)j;
    }
    sort_by_bound(s->order, nu, s->ub);
    /* rest[p]: the most the terms from sorted position p on can still add */
    double r = 0;
    s->rest[nu] = 0;
    for (size_t p = nu; p-- > 0;) {
        r += s->ub[s->order[p]];
        s->rest[p] = r;
    }
    float base = query_base(ix, s, q, nq);
    const bound_ctx bc = bounds_for(nq, base);
    float *acc = s->acc;
    double theta = -INFINITY;
    uint64_t since = 0;
    s->n_touched = 0;
    size_t p = 0;
    /* Phase 1: every document the high-bound terms touch. Partial sums go to
     * the float32 accumulators (-0.0 = untouched), in bound order: they only
     * serve bounds, whose margin covers their rounding. */
    for (; p < nu; p++) {
        if (upper_bound(&bc, s->rest[p]) < theta)
            break;
        uint32_t t = s->uterm[s->order[p]];
        float w = (float)s->mult[s->order[p]];
        uint32_t *touched = s->touched;
        size_t nt = s->n_touched;
        FOR_POSTINGS(ix, t, {
            float a = acc[d_];
            touched[nt] = d_; /* branch-free append of first touches */
            nt += f32_bits(a) == NEG_ZERO_BITS;
            acc[d_] = a + w * w_[i_];
        });
        s->n_touched = nt;
        /* A first bound as soon as k documents are touched; better ones after
         * every 4 x (documents touched) postings while that set is small (an
         * estimate scans it). */
        since += ix->df[t];
        if (nt >= k && (theta == -INFINITY || (since >= 4 * (uint64_t)nt && nt <= ESTIMATE_MAX_TOUCHED))) {
            double th = estimate_threshold(ix, s, q, nq, nu, k, base);
            if (th > theta)
                theta = th;
            since = 0;
        }
    }
    /* Phase 2: no untouched document can reach theta any more. Refine the
     * touched ones with further terms while that is cheaper than scoring them
     * all exactly. */
    if (p < nu) {
        uint32_t ntop;
        size_t alive = compact_touched(s, s->rest[p], &bc, theta, k, &ntop);
        double th = theta_from_heap(ix, s, q, nq, nu, ntop, k, base);
        if (th > theta)
            theta = th;
        double compacted_at = s->rest[p];
        while (p < nu && alive * (uint64_t)EXACT_COST_POSTINGS > ix->df[s->uterm[s->order[p]]]) {
            uint32_t t = s->uterm[s->order[p]];
            float w = (float)s->mult[s->order[p]];
            FOR_POSTINGS(ix, t, {
                float a = acc[d_];
                float b = a + w * w_[i_];
                acc[d_] = f32_bits(a) == NEG_ZERO_BITS ? a : b;
            });
            p++;
            /* Compact again once the remainder has shrunk noticeably. */
            if (compacted_at - s->rest[p] > 0.125 * theta) {
                alive = compact_touched(s, s->rest[p], &bc, theta, k, NULL);
                compacted_at = s->rest[p];
            }
        }
    }
    double rem = s->rest[p];
    /* Phase 3: exact scores for the documents that could still reach theta
     * (or the heap's worst, once full); every accumulator goes back to -0.0. */
    uint32_t n = 0;
    rv_bm25_hit *h = s->heap;
    float cut = theta == -INFINITY ? -INFINITY : cut_for(&bc, theta) - (float)rem;
    for (size_t i = 0; i < s->n_touched; i++) {
        uint32_t d = s->touched[i];
        float a = acc[d];
        acc[d] = -0.0f;
        if (a < cut || (s->exclude && s->exclude[d]))
            continue;
        heap_push(h, &n, k, d, exact_score(ix, s, q, nq, nu, d, base));
        if (n == k && h[0].score > theta) {
            theta = h[0].score;
            cut = cut_for(&bc, theta) - (float)rem;
        }
    }
    for (size_t j = 0; j < nu; j++) {
        uint32_t t = s->uterm[j];
        s->qslot[t] = 0;
        s->qbits[t >> 6] = 0;
    }
    qsort(h, n, sizeof *h, cmp_hits);
    memcpy(out, h, n * sizeof *h);
    return n;
}

/* Queries this long (tokens) go through the pruned walk when possible. */
#define PRUNE_MIN_TOKENS 8

static uint32_t run_query(const rv_bm25_index *ix, searcher *s, const uint32_t *q, size_t nq, uint32_t k,
                          rv_bm25_hit *out)
{
    if (nq == 0 || k == 0)
        return 0;
    if (ix->fwd_off && ix->max_impact && nq >= PRUNE_MIN_TOKENS && (uint64_t)k * 4 < ix->n_docs)
        return run_pruned(ix, s, q, nq, k, out);
    return run_exhaustive(ix, s, q, nq, k, out);
}

/* ------------------------------------------------------------------ driver */

/* Maps analyzed terms to ids (unknown terms dropped, order kept). */
static int query_terms(const rv_bm25_index *ix, searcher *s, const char *text, size_t len, size_t *nq)
{
    if (rv_analyze(s->an, text, len) < 0)
        return -1;
    size_t n = rv_analysis_count(s->an), m = 0;
    if (searcher_reserve(s, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t tl;
        uint64_t h;
        const char *t = rv_analysis_term(s->an, i, &tl, &h);
        uint32_t id = rv_strtab_find(&ix->vocab, t, tl, h);
        if (id != RV_STRTAB_NONE)
            s->qterms[m++] = id;
    }
    *nq = m;
    return 0;
}

static int thread_count(int threads)
{
    return threads > 0 ? threads : omp_get_max_threads();
}

static int search_common(const rv_bm25_index *ix, size_t n, const char *const *texts, const size_t *lens,
                         const uint32_t *docs, const uint8_t *exclude, uint32_t k, int threads, rv_bm25_hit *hits,
                         uint32_t *n_hits)
{
    if (docs && !ix->fwd_off)
        return rv_error_set("index: searching with documents as queries needs the stored term sequences");
    for (size_t i = 0; docs && i < n; i++)
        if (docs[i] >= ix->n_docs)
            return rv_error_set("query document %u: the index has %zu documents", docs[i], ix->n_docs);
    int nt = thread_count(threads);
    if ((size_t)nt > n)
        nt = n ? (int)n : 1;
    int failed = 0;
    char err[512] = "";
#pragma omp parallel num_threads(nt)
    {
        searcher s;
        int ok = searcher_init(&s, ix, k, texts != NULL) == 0;
        s.exclude = exclude;
        if (!ok) {
#pragma omp critical(rv_bm25_err)
            {
                failed = 1;
                snprintf(err, sizeof err, "%s", rv_error_get());
            }
        }
#pragma omp for schedule(dynamic, 8)
        for (size_t i = 0; i < n; i++) {
            n_hits[i] = 0;
            if (!ok)
                continue;
            const uint32_t *q;
            size_t nq;
            if (docs) {
                uint32_t d = docs[i];
                q = ix->fwd + ix->fwd_off[d];
                nq = (size_t)(ix->fwd_off[d + 1] - ix->fwd_off[d]);
                if (searcher_reserve(&s, nq) < 0)
                    ok = 0;
            } else {
                if (query_terms(ix, &s, texts[i], lens[i], &nq) < 0)
                    ok = 0;
                q = s.qterms;
            }
            if (!ok) {
#pragma omp critical(rv_bm25_err)
                {
                    failed = 1;
                    snprintf(err, sizeof err, "query %zu: %s", i, rv_error_get());
                }
                continue;
            }
            n_hits[i] = run_query(ix, &s, q, nq, k, hits + i * (size_t)k);
        }
        searcher_free(&s);
    }
    if (failed)
        return rv_error_set("%s", err);
    return 0;
}

int rv_bm25_search(const rv_bm25_index *ix, size_t n, const char *const *texts, const size_t *lens,
                   uint32_t k, int threads, rv_bm25_hit *hits, uint32_t *n_hits)
{
    return search_common(ix, n, texts, lens, NULL, NULL, k, threads, hits, n_hits);
}

int rv_bm25_search_docs(const rv_bm25_index *ix, size_t n, const uint32_t *docs, uint32_t k, int threads,
                        rv_bm25_hit *hits, uint32_t *n_hits)
{
    return search_common(ix, n, NULL, NULL, docs, NULL, k, threads, hits, n_hits);
}

int rv_bm25_search_docs_excluding(const rv_bm25_index *ix, size_t n, const uint32_t *docs, const uint8_t *exclude,
                                  uint32_t k, int threads, rv_bm25_hit *hits, uint32_t *n_hits)
{
    return search_common(ix, n, NULL, NULL, docs, exclude, k, threads, hits, n_hits);
}

const uint32_t *rv_bm25_index_doc_terms(const rv_bm25_index *ix, uint32_t d, size_t *n)
{
    if (!ix->fwd_off || d >= ix->n_docs) {
        *n = 0;
        return NULL;
    }
    *n = (size_t)(ix->fwd_off[d + 1] - ix->fwd_off[d]);
    return ix->fwd + ix->fwd_off[d];
}
