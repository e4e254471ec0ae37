/* bm25.c — BM25 parameters, the scoring formulas (operation for operation
 * as bm25s computes them), index construction and pair scoring (see bm25.h).
 * Search lives in bm25_search.c, the file format in bm25_io.c. */
#include "bm25.h"
#include "bm25_internal.h"
#include "buf.h"
#include "error.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ------------------------------------------------------------ parameters */

void rv_bm25_params_default(rv_bm25_params *p)
{
    p->variant = RV_BM25_LUCENE;
    p->k1 = 1.5;
    p->b = 0.75;
    p->delta = 0.5;
}

static const char *const variant_names[] = {"lucene", "robertson", "atire", "bm25l", "bm25+"};

int rv_bm25_variant_parse(const char *s, rv_bm25_variant *v)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, variant_names[i]) == 0) {
            *v = (rv_bm25_variant)i;
            return 0;
        }
    if (strcmp(s, "bm25plus") == 0) {
        *v = RV_BM25_BM25PLUS;
        return 0;
    }
    return rv_error_set("variant: expected lucene, robertson, atire, bm25l or bm25+, found \"%s\"", s);
}

const char *rv_bm25_variant_name(rv_bm25_variant v)
{
    return (unsigned)v < 5 ? variant_names[v] : "?";
}

int rv_bm25_params_check(const rv_bm25_params *p)
{
    if ((unsigned)p->variant >= 5)
        return rv_error_set("variant: unknown variant code %d", (int)p->variant);
    if (!isfinite(p->k1) || p->k1 < 0)
        return rv_error_set("k1: expected a finite number >= 0, found %g", p->k1);
    if (!isfinite(p->b) || p->b < 0 || p->b > 1)
        return rv_error_set("b: expected a number in [0, 1], found %g", p->b);
    if (!isfinite(p->delta) || p->delta < 0)
        return rv_error_set("delta: expected a finite number >= 0, found %g", p->delta);
    return 0;
}

/* ------------------------------------------------------------- formulas
 * Each expression mirrors bm25s/scoring.py operation for operation. There,
 * tf is a float32 array, dl a Python int, avgdl a numpy float64; numpy 2's
 * promotion makes (float32 array) op (Python float) a float32 operation and
 * (float32 array) op (numpy float64) a float64 one. */

float rv_bm25_idf(const rv_bm25_params *p, uint64_t df, uint64_t n)
{
    double N = (double)n, d = (double)df, v;
    switch (p->variant) {
    case RV_BM25_ROBERTSON: {
        double inner = ((double)(n - df) + 0.5) / (d + 0.5);
        v = log(inner < 1 ? 1 : inner);
        break;
    }
    case RV_BM25_ATIRE: v = log(N / d); break;
    case RV_BM25_BM25L: v = log((N + 1) / (d + 0.5)); break;
    case RV_BM25_BM25PLUS: v = log((N + 1) / d); break;
    default: v = log(1 + ((double)(n - df) + 0.5) / (d + 0.5)); break;
    }
    return (float)v;
}

/* The term-frequency component in float64; dl is the document length. */
static double tfc(const rv_bm25_params *p, uint32_t tf_count, double dl, double avgdl)
{
    const double k1 = p->k1, b = p->b, delta = p->delta;
    const float tf = (float)tf_count;
    switch (p->variant) {
    case RV_BM25_ATIRE: {
        float num = tf * (float)(k1 + 1);                    /* float32 * Python float */
        return (double)num / ((double)tf + k1 * (1 - b + b * dl / avgdl));
    }
    case RV_BM25_BM25L: {
        double c = (double)tf / (1 - b + b * dl / avgdl);
        return ((k1 + 1) * (c + delta)) / (k1 + c + delta);
    }
    case RV_BM25_BM25PLUS: {
        float num = (float)(k1 + 1) * tf;                    /* Python float * float32 */
        double den = k1 * (1 - b + b * dl / avgdl) + (double)tf;
        return ((double)num / den) + delta;
    }
    default: /* lucene and robertson share Robertson's tfc */
        return (double)tf / (k1 * ((1 - b) + b * dl / avgdl) + (double)tf);
    }
}

/* The score of a term absent from a document of average length (bm25l and
 * bm25+ add it back to every document at query time). bm25s computes it from
 * the float64 idf before rounding; tf is the Python int 0 and dl == avgdl. */
float rv_bm25_nonoccurrence(const rv_bm25_params *p, uint64_t df, uint64_t n, double avgdl)
{
    const double k1 = p->k1, b = p->b, delta = p->delta, N = (double)n, d = (double)df;
    double idf, t;
    if (p->variant == RV_BM25_BM25L) {
        idf = log((N + 1) / (d + 0.5));
        double c = 0.0 / (1 - b + b * avgdl / avgdl);
        t = ((k1 + 1) * (c + delta)) / (k1 + c + delta);
    } else if (p->variant == RV_BM25_BM25PLUS) {
        idf = log((N + 1) / d);
        double den = k1 * (1 - b + b * avgdl / avgdl) + 0;
        t = (0.0 / den) + delta;
    } else {
        return 0;
    }
    return (float)(idf * t);
}

float rv_bm25_impact(const rv_bm25_params *p, float idf, float nonocc, uint32_t tf, uint32_t dl, double avgdl)
{
    double s = (double)idf * tfc(p, tf, (double)dl, avgdl);
    if (p->variant == RV_BM25_BM25L || p->variant == RV_BM25_BM25PLUS)
        s -= (double)nonocc;
    return (float)s;
}

/* numpy's pairwise float32 summation (loops_utils.h.src), identity 0. */
static float pairwise_sum(const float *a, size_t n)
{
    if (n < 8) {
        float res = 0.f;
        for (size_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        float r[8], res;
        size_t i;
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

float rv_bm25_sum_f32(const float *a, size_t n)
{
    return 0.f + pairwise_sum(a, n);
}

/* --------------------------------------------------------------- varints */

static size_t varint_len(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *varint_put(unsigned char *p, uint32_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* ---------------------------------------------------------------- builder */

typedef struct {
    rv_analysis *an;
    rv_buf bytes;           /* term bytes of this thread's documents */
    uint64_t *hash;
    uint32_t *len;
    size_t n, cap;
    uint32_t *doc_terms;    /* per document of the batch: number of terms */
    int failed;
    char err[512];
} thread_out;

struct rv_bm25_builder {
    rv_analyzer *an;
    rv_bm25_params params;
    int keep_forward, threads;
    rv_strtab vocab;
    uint32_t *terms;        /* every document's term ids back to back */
    size_t n_terms_total, terms_cap;
    uint64_t *doc_off;      /* n_docs + 1 */
    size_t n_docs, docs_cap;
    XXH3_state_t *fp;
    thread_out *tout;
    int n_tout;
};

static int thread_count(int threads)
{
    return threads > 0 ? threads : omp_get_max_threads();
}

rv_bm25_builder *rv_bm25_builder_new(const char *stopwords, const char *stemmer, const rv_bm25_params *p,
                                     int keep_forward, int threads)
{
    if (rv_bm25_params_check(p) < 0)
        return NULL;
    rv_bm25_builder *b = rv_calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->params = *p;
    b->keep_forward = keep_forward;
    b->threads = thread_count(threads);
    b->an = rv_analyzer_new(stopwords, stemmer);
    b->fp = XXH3_createState();
    b->doc_off = rv_malloc(1025 * sizeof *b->doc_off);
    b->docs_cap = 1024;
    b->n_tout = b->threads;
    b->tout = rv_calloc((size_t)b->n_tout, sizeof *b->tout);
    if (!b->an || !b->fp || !b->doc_off || !b->tout) {
        if (!b->fp)
            rv_error_set("out of memory");
        rv_bm25_builder_free(b);
        return NULL;
    }
    XXH3_64bits_reset(b->fp);
    b->doc_off[0] = 0;
    for (int i = 0; i < b->n_tout; i++) {
        b->tout[i].an = rv_analysis_new(b->an);
        if (!b->tout[i].an) {
            rv_bm25_builder_free(b);
            return NULL;
        }
    }
    return b;
}

void rv_bm25_builder_free(rv_bm25_builder *b)
{
    if (!b)
        return;
    for (int i = 0; b->tout && i < b->n_tout; i++) {
        rv_analysis_free(b->tout[i].an);
        rv_buf_free(&b->tout[i].bytes);
        free(b->tout[i].hash);
        free(b->tout[i].len);
        free(b->tout[i].doc_terms);
    }
    free(b->tout);
    rv_analyzer_free(b->an);
    rv_strtab_free(&b->vocab);
    free(b->terms);
    free(b->doc_off);
    if (b->fp)
        XXH3_freeState(b->fp);
    free(b);
}

/* Analyzes documents [lo, hi) of a batch into the thread's buffers. */
static int analyze_range(thread_out *o, const char *const *texts, const size_t *lens, size_t lo, size_t hi)
{
    o->n = 0;
    o->bytes.len = 0;
    free(o->doc_terms);
    o->doc_terms = rv_malloc((hi - lo) * sizeof *o->doc_terms);
    if (!o->doc_terms)
        return -1;
    for (size_t d = lo; d < hi; d++) {
        if (rv_analyze(o->an, texts[d], lens[d]) < 0)
            return -1;
        size_t nt = rv_analysis_count(o->an);
        if (nt > UINT32_MAX)
            return rv_error_set("document %zu: more than %u terms", d, UINT32_MAX);
        o->doc_terms[d - lo] = (uint32_t)nt;
        if (o->n + nt > o->cap) {
            size_t cap = o->cap ? o->cap : 4096;
            while (cap < o->n + nt)
                cap *= 2;
            uint64_t *h = realloc(o->hash, cap * sizeof *h);
            if (!h)
                return rv_error_set("out of memory");
            o->hash = h;
            uint32_t *l = realloc(o->len, cap * sizeof *l);
            if (!l)
                return rv_error_set("out of memory");
            o->len = l;
            o->cap = cap;
        }
        for (size_t i = 0; i < nt; i++) {
            size_t n;
            uint64_t hh;
            const char *s = rv_analysis_term(o->an, i, &n, &hh);
            if (n > UINT32_MAX)
                return rv_error_set("document %zu: a term of %zu bytes", d, n);
            if (rv_buf_append(&o->bytes, s, n) < 0)
                return -1;
            o->hash[o->n] = hh;
            o->len[o->n] = (uint32_t)n;
            o->n++;
        }
    }
    return 0;
}

static int grow_terms(rv_bm25_builder *b, size_t extra)
{
    size_t need;
    if (rv_size_add(b->n_terms_total, extra, &need, "index terms") < 0)
        return -1;
    if (need <= b->terms_cap)
        return 0;
    size_t cap = b->terms_cap ? b->terms_cap : 65536;
    while (cap < need)
        cap = cap > SIZE_MAX / 8 ? need : cap * 2;
    size_t bytes;
    if (rv_size_mul(cap, sizeof *b->terms, &bytes, "index terms") < 0)
        return -1;
    uint32_t *t = realloc(b->terms, bytes);
    if (!t)
        return rv_error_set("out of memory: %zu term ids", cap);
    b->terms = t;
    b->terms_cap = cap;
    return 0;
}

#define BUILD_BATCH 8192

int rv_bm25_builder_add(rv_bm25_builder *b, size_t n, const char *const *texts, const size_t *lens)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t l = (uint64_t)lens[i];
        unsigned char le[8];
        for (int j = 0; j < 8; j++)
            le[j] = (unsigned char)(l >> (8 * j));
        XXH3_64bits_update(b->fp, le, 8);
        XXH3_64bits_update(b->fp, texts[i], lens[i]);
    }
    for (size_t start = 0; start < n; start += BUILD_BATCH) {
        size_t cnt = n - start < BUILD_BATCH ? n - start : BUILD_BATCH;
        if (b->n_docs + cnt >= UINT32_MAX)
            return rv_error_set("index: more than %u documents", UINT32_MAX - 1);
        int nt = b->n_tout;
        const char *const *tx = texts + start;
        const size_t *ln = lens + start;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
        for (int t = 0; t < nt; t++) {
            thread_out *o = &b->tout[t];
            size_t lo = cnt * (size_t)t / (size_t)nt, hi = cnt * (size_t)(t + 1) / (size_t)nt;
            o->failed = analyze_range(o, tx, ln, lo, hi) < 0;
            if (o->failed)
                snprintf(o->err, sizeof o->err, "%s", rv_error_get());
        }
        for (int t = 0; t < nt; t++)
            if (b->tout[t].failed)
                return rv_error_set("%s", b->tout[t].err);
        /* Intern in document order, so term ids never depend on threads. */
        if (b->n_docs + cnt > b->docs_cap) {
            size_t cap = b->docs_cap;
            while (cap < b->n_docs + cnt)
                cap *= 2;
            uint64_t *o = realloc(b->doc_off, (cap + 1) * sizeof *o);
            if (!o)
                return rv_error_set("out of memory");
            b->doc_off = o;
            b->docs_cap = cap;
        }
        for (int t = 0; t < nt; t++) {
            thread_out *o = &b->tout[t];
            size_t lo = cnt * (size_t)t / (size_t)nt, hi = cnt * (size_t)(t + 1) / (size_t)nt;
            if (grow_terms(b, o->n) < 0)
                return -1;
            size_t k = 0;
            uint64_t boff = 0;
            for (size_t d = lo; d < hi; d++) {
                for (uint32_t i = 0; i < o->doc_terms[d - lo]; i++, k++) {
                    uint32_t id;
                    if (rv_strtab_intern(&b->vocab, (const char *)o->bytes.data + boff, o->len[k], o->hash[k],
                                         &id, NULL) < 0)
                        return -1;
                    boff += o->len[k];
                    b->terms[b->n_terms_total++] = id;
                }
                b->doc_off[++b->n_docs] = b->n_terms_total;
            }
        }
    }
    return 0;
}

static void index_free_arrays(rv_bm25_index *ix)
{
    free(ix->df);
    free(ix->idf);
    free(ix->nonocc);
    free(ix->doc_len);
    free(ix->post_off);
    free(ix->gap_off);
    free(ix->gaps);
    free(ix->impacts);
    free(ix->fwd);
    free(ix->fwd_off);
    free(ix->max_impact);
}

void rv_bm25_index_free(rv_bm25_index *ix)
{
    if (!ix)
        return;
    index_free_arrays(ix);
    rv_strtab_free(&ix->vocab);
    rv_analyzer_free(ix->an);
    free(ix);
}

/* df, idf and the non-occurrence scores from the document lengths. */
int rv_bm25_index_stats(rv_bm25_index *ix)
{
    size_t nt = ix->n_terms ? ix->n_terms : 1;
    ix->idf = rv_malloc(nt * sizeof *ix->idf);
    ix->nonocc = rv_calloc(nt, sizeof *ix->nonocc);
    if (!ix->idf || !ix->nonocc)
        return -1;
    uint64_t total = 0;
    for (size_t d = 0; d < ix->n_docs; d++)
        total += ix->doc_len[d];
    ix->total_len = total;
    /* numpy's mean of an int array: the exact sum (below 2^53) over n. */
    ix->avgdl = ix->n_docs ? (double)total / (double)ix->n_docs : 0;
    for (size_t t = 0; t < ix->n_terms; t++) {
        ix->idf[t] = rv_bm25_idf(&ix->params, ix->df[t], ix->n_docs);
        ix->nonocc[t] = rv_bm25_nonoccurrence(&ix->params, ix->df[t], ix->n_docs, ix->avgdl);
    }
    return 0;
}

rv_bm25_index *rv_bm25_builder_finish(rv_bm25_builder *b)
{
    rv_bm25_index *ix = rv_calloc(1, sizeof *ix);
    uint32_t *last = NULL, *seen = NULL, *slot = NULL, *tf = NULL, *uniq = NULL;
    uint64_t *cursor = NULL, *gcursor = NULL;
    if (!ix)
        goto fail;
    ix->params = b->params;
    ix->n_docs = b->n_docs;
    ix->n_terms = rv_strtab_count(&b->vocab);
    ix->corpus_hash = XXH3_64bits_digest(b->fp);
    if (ix->n_docs == 0) {
        rv_error_set("index: the corpus has no documents");
        goto fail;
    }
    size_t nt = ix->n_terms ? ix->n_terms : 1;
    ix->df = rv_calloc(nt, sizeof *ix->df);
    ix->doc_len = rv_malloc(ix->n_docs * sizeof *ix->doc_len);
    ix->post_off = rv_calloc(nt + 1, sizeof *ix->post_off);
    ix->gap_off = rv_calloc(nt + 1, sizeof *ix->gap_off);
    last = rv_calloc(nt, sizeof *last);
    seen = rv_calloc(nt, sizeof *seen);
    slot = rv_malloc(nt * sizeof *slot);
    if (!ix->df || !ix->doc_len || !ix->post_off || !ix->gap_off || !last || !seen || !slot)
        goto fail;
    size_t max_len = 0;
    /* Pass 1: lengths, df, and the varint bytes each posting list needs. */
    for (size_t d = 0; d < ix->n_docs; d++) {
        uint64_t s = b->doc_off[d], e = b->doc_off[d + 1];
        if (e - s > UINT32_MAX) {
            rv_error_set("document %zu: more than %u terms", d, UINT32_MAX);
            goto fail;
        }
        ix->doc_len[d] = (uint32_t)(e - s);
        if (e - s > max_len)
            max_len = (size_t)(e - s);
        for (uint64_t i = s; i < e; i++) {
            uint32_t t = b->terms[i];
            if (last[t] != d + 1) {
                uint32_t gap = last[t] ? (uint32_t)d - (last[t] - 1) : (uint32_t)d;
                ix->gap_off[t + 1] += varint_len(gap);
                last[t] = (uint32_t)d + 1;
                ix->df[t]++;
            }
        }
    }
    for (size_t t = 0; t < ix->n_terms; t++) {
        ix->post_off[t + 1] = ix->post_off[t] + ix->df[t];
        ix->gap_off[t + 1] += ix->gap_off[t];
    }
    ix->n_postings = ix->post_off[ix->n_terms];
    ix->gap_bytes = ix->gap_off[ix->n_terms];
    if (rv_bm25_index_stats(ix) < 0)
        goto fail;
    size_t np = ix->n_postings ? (size_t)ix->n_postings : 1;
    ix->impacts = rv_malloc(np * sizeof *ix->impacts);
    ix->gaps = rv_malloc(ix->gap_bytes ? (size_t)ix->gap_bytes : 1);
    cursor = rv_malloc(nt * sizeof *cursor);
    gcursor = rv_malloc(nt * sizeof *gcursor);
    tf = rv_malloc((max_len ? max_len : 1) * sizeof *tf);
    uniq = rv_malloc((max_len ? max_len : 1) * sizeof *uniq);
    if (!ix->impacts || !ix->gaps || !cursor || !gcursor || !tf || !uniq)
        goto fail;
    memcpy(cursor, ix->post_off, ix->n_terms * sizeof *cursor);
    memcpy(gcursor, ix->gap_off, ix->n_terms * sizeof *gcursor);
    memset(last, 0, nt * sizeof *last);
    /* Pass 2: each document's distinct terms with their frequencies, then one
     * posting (gap, impact) per distinct term, in document order. */
    for (size_t d = 0; d < ix->n_docs; d++) {
        uint64_t s = b->doc_off[d], e = b->doc_off[d + 1];
        size_t nu = 0;
        for (uint64_t i = s; i < e; i++) {
            uint32_t t = b->terms[i];
            if (seen[t] != d + 1) {
                seen[t] = (uint32_t)d + 1;
                slot[t] = (uint32_t)nu;
                uniq[nu] = t;
                tf[nu++] = 1;
            } else {
                tf[slot[t]]++;
            }
        }
        for (size_t j = 0; j < nu; j++) {
            uint32_t t = uniq[j];
            uint32_t gap = last[t] ? (uint32_t)d - (last[t] - 1) : (uint32_t)d;
            last[t] = (uint32_t)d + 1;
            varint_put(ix->gaps + gcursor[t], gap);
            gcursor[t] += varint_len(gap);
            ix->impacts[cursor[t]++] =
                rv_bm25_impact(&ix->params, ix->idf[t], ix->nonocc[t], tf[j], ix->doc_len[d], ix->avgdl);
        }
    }
    if (rv_bm25_index_prepare(ix) < 0)
        goto fail;
    if (b->keep_forward) {
        ix->fwd = b->terms;
        ix->fwd_off = b->doc_off;
        b->terms = NULL;
        b->doc_off = NULL;
    }
    ix->vocab = b->vocab;
    memset(&b->vocab, 0, sizeof b->vocab);
    ix->an = b->an;
    b->an = NULL;
    free(last);
    free(seen);
    free(slot);
    free(tf);
    free(uniq);
    free(cursor);
    free(gcursor);
    rv_bm25_builder_free(b);
    return ix;
fail:
    free(last);
    free(seen);
    free(slot);
    free(tf);
    free(uniq);
    free(cursor);
    free(gcursor);
    rv_bm25_index_free(ix);
    rv_bm25_builder_free(b);
    return NULL;
}

/* -------------------------------------------------------------- accessors */

size_t rv_bm25_index_docs(const rv_bm25_index *ix) { return ix->n_docs; }
size_t rv_bm25_index_terms(const rv_bm25_index *ix) { return ix->n_terms; }
uint64_t rv_bm25_index_postings(const rv_bm25_index *ix) { return ix->n_postings; }
double rv_bm25_index_avgdl(const rv_bm25_index *ix) { return ix->avgdl; }
const rv_bm25_params *rv_bm25_index_params(const rv_bm25_index *ix) { return &ix->params; }
const rv_analyzer *rv_bm25_index_analyzer(const rv_bm25_index *ix) { return ix->an; }
int rv_bm25_index_has_forward(const rv_bm25_index *ix) { return ix->fwd_off != NULL; }
uint32_t rv_bm25_index_doc_length(const rv_bm25_index *ix, uint32_t d) { return ix->doc_len[d]; }
uint64_t rv_bm25_index_corpus_hash(const rv_bm25_index *ix) { return ix->corpus_hash; }

uint32_t rv_bm25_index_df(const rv_bm25_index *ix, const char *term, size_t len)
{
    uint32_t t = rv_strtab_find(&ix->vocab, term, len, rv_strtab_hash(term, len));
    return t == RV_STRTAB_NONE ? 0 : ix->df[t];
}

struct rv_bm25_fingerprint {
    XXH3_state_t *st;
};

rv_bm25_fingerprint *rv_bm25_fingerprint_new(void)
{
    rv_bm25_fingerprint *f = rv_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->st = XXH3_createState();
    if (!f->st) {
        free(f);
        rv_error_set("out of memory");
        return NULL;
    }
    XXH3_64bits_reset(f->st);
    return f;
}

void rv_bm25_fingerprint_add(rv_bm25_fingerprint *f, const char *text, size_t len)
{
    unsigned char le[8];
    for (int j = 0; j < 8; j++)
        le[j] = (unsigned char)((uint64_t)len >> (8 * j));
    XXH3_64bits_update(f->st, le, 8);
    XXH3_64bits_update(f->st, text, len);
}

uint64_t rv_bm25_fingerprint_digest(const rv_bm25_fingerprint *f) { return XXH3_64bits_digest(f->st); }

void rv_bm25_fingerprint_free(rv_bm25_fingerprint *f)
{
    if (!f)
        return;
    XXH3_freeState(f->st);
    free(f);
}

int rv_bm25_score_pair(const rv_bm25_index *ix, uint32_t query, uint32_t doc, float *score)
{
    if (!ix->fwd_off)
        return rv_error_set("index: scoring a document pair needs the stored term sequences");
    if (query >= ix->n_docs || doc >= ix->n_docs)
        return rv_error_set("document pair (%u, %u): the index has %zu documents", query, doc, ix->n_docs);
    const uint32_t *q = ix->fwd + ix->fwd_off[query], *dt = ix->fwd + ix->fwd_off[doc];
    size_t nq = (size_t)(ix->fwd_off[query + 1] - ix->fwd_off[query]);
    size_t nd = (size_t)(ix->fwd_off[doc + 1] - ix->fwd_off[doc]);
    int plus = ix->params.variant == RV_BM25_BM25L || ix->params.variant == RV_BM25_BM25PLUS;
    float *non = NULL;
    if (plus && !(non = rv_malloc((nq ? nq : 1) * sizeof *non)))
        return -1;
    float acc = 0.f;
    for (size_t i = 0; i < nq; i++) {
        uint32_t t = q[i], tf = 0;
        for (size_t j = 0; j < nd; j++)
            tf += dt[j] == t;
        if (tf)
            acc += rv_bm25_impact(&ix->params, ix->idf[t], ix->nonocc[t], tf, ix->doc_len[doc], ix->avgdl);
        if (non)
            non[i] = ix->nonocc[t];
    }
    if (non) {
        acc += rv_bm25_sum_f32(non, nq);
        free(non);
    }
    *score = acc;
    return 0;
}
