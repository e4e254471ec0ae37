/* trec_run.c — TREC run files and run streams read into one ranked, in-memory
 * run (see trec_run.h).
 *
 * Loading is cache-friendly passes over flat arrays, spread over threads
 * (OpenMP) where the work splits: a text run is cut into pieces of whole
 * lines, each parsed by one thread into its place in the document array with
 * its own query numbering (only the query id is looked up, and runs repeat
 * it line after line); the pieces' queries are then renumbered in order of
 * first appearance. A counting sort groups the documents by query (skipped
 * when the input already lists each query's documents together), and each
 * query's repeats are merged through a small hash index that stays in cache
 * before its documents are sorted into trec_eval's order (skipped when the
 * input is already in that order). The result does not depend on the number
 * of threads. */
#include "trec_run.h"
#include "buf.h"
#include "error.h"
#include "ir_text.h"
#include "records.h"   /* rv_run_open, rv_run_next */
#include "stream.h"    /* rv_stream_reader_* */

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Blocks that never move, for the ids copied out of stream records. */
typedef struct block {
    struct block *next;
    size_t used, cap;
    char data[];
} block;

typedef struct {
    const char *qid;
    size_t len;
    size_t first, n;      /* its documents, once grouped */
} run_query;

/* Query ids numbered in order of first appearance. */
typedef struct {
    run_query *items;
    size_t n, cap;
    rv_id_index index;
    size_t last;          /* runs list a query's documents together: a cache */
} query_table;

struct rv_trec_run {
    rv_input text;        /* the input (ids of a text run point into it) */
    block *blocks;        /* ids of a stream run */
    int is_stream;
    query_table queries;
    rv_ranked_doc *docs;  /* query q's documents at [first, first + n) */
    size_t n_docs, cap_docs;
    size_t n_repeats;
    rv_run_repeat first_repeat;
};

static const char *copy_id(rv_trec_run *r, const char *s, size_t len)
{
    block *b = r->blocks;
    if (!b || b->cap - b->used < len) {
        size_t cap = len > (1u << 20) ? len : (1u << 20);
        b = rv_malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = r->blocks;
        b->used = 0;
        b->cap = cap;
        r->blocks = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, len);
    b->used += len;
    return p;
}

/* Number of query `qid` in t, adding it when new (with its id copied into
 * r's blocks when `copy`). */
static int intern_query(query_table *t, rv_str qid, rv_trec_run *r, int copy, size_t *out)
{
    if (t->n) {
        const run_query *last = &t->items[t->last];
        if (last->len == qid.len && rv_same_bytes(last->qid, qid.p, qid.len)) {
            *out = t->last;
            return 0;
        }
    }
    if (rv_id_index_reserve(&t->index, 1) < 0)
        return -1;
    uint32_t h = rv_key_hash32(rv_id_hash(qid.p, qid.len), 0);
    rv_id_index *ix = &t->index;
    size_t i = h & ix->mask;
    for (; ix->slots[i].item; i = (i + 1) & ix->mask) {
        const run_query *e = &t->items[ix->slots[i].item - 1];
        if (ix->slots[i].hash == h && e->len == qid.len && rv_same_bytes(e->qid, qid.p, qid.len)) {
            *out = t->last = ix->slots[i].item - 1;
            return 0;
        }
    }
    if (t->n >= UINT32_MAX)
        return rv_error_set("more than %u queries", UINT32_MAX);
    if (rv_array_grow((void **)&t->items, &t->cap, t->n + 1, sizeof *t->items, "the run") < 0)
        return -1;
    const char *id = qid.p;
    if (copy && !(id = copy_id(r, qid.p, qid.len)))
        return -1;
    size_t qi = t->n++;
    t->items[qi] = (run_query){id, qid.len, 0, 0};
    rv_id_index_put(ix, i, h, qi);
    *out = t->last = qi;
    return 0;
}

static void query_table_free(query_table *t)
{
    free(t->items);
    rv_id_index_free(&t->index);
    memset(t, 0, sizeof *t);
}

static rv_ranked_doc make_doc(const char *docid, size_t len, size_t query, double score)
{
    return (rv_ranked_doc){docid, (uint32_t)len, (uint32_t)query, 0, score};
}

/* ---------------------------------------------------------------- text run */

/* A piece of a text run: whole lines, parsed by one thread into
 * docs[first_line...] (a line holds at most one document) with the piece's
 * own query numbers. */
typedef struct {
    const char *begin, *end;
    size_t first_line;     /* lines before the piece */
    size_t n_lines, n_docs;
    query_table queries;
    size_t *renumber;      /* piece query -> run query */
    char *error;           /* the piece's first error (malloc'd) */
    int failed;
} piece;

static void parse_piece(rv_trec_run *r, piece *pc, const char *name)
{
    rv_text_lines it;
    rv_text_lines_init(&it, pc->begin, (size_t)(pc->end - pc->begin));
    rv_str line, f[7];
    rv_ranked_doc *out = r->docs + pc->first_line;
    while (rv_text_lines_next(&it, &line)) {
        size_t n = rv_split_blank(line, f, 7), lineno = pc->first_line + it.lineno, qi;
        double score;
        if (n == 0)
            continue;
        if (n != 6)
            rv_error_set("%s:%zu: expected 6 fields (qid Q0 docid rank score tag), found %zu", name, lineno, n);
        else if (rv_parse_f64(f[4], &score) < 0)
            rv_error_set("%s:%zu: field 5 (score): expected a number, found \"%.*s\"", name, lineno,
                         (int)(f[4].len > 40 ? 40 : f[4].len), f[4].p);
        else if (f[2].len > UINT32_MAX)
            rv_error_set("%s:%zu: field 3 (docid): %zu bytes is too long", name, lineno, f[2].len);
        else if (intern_query(&pc->queries, f[0], r, 0, &qi) < 0)
            rv_error_prefix("%s:%zu", name, lineno);
        else {
            out[pc->n_docs++] = make_doc(f[2].p, f[2].len, qi, score);
            continue;
        }
        pc->failed = 1;
        pc->error = strdup(rv_error_get());   /* the message lives in this thread */
        return;
    }
}

/* Cuts [text, text + len) into at most `max` pieces of about equal size that
 * end at line ends, none smaller than 64 KiB; returns how many. */
static size_t cut_pieces(const char *text, size_t len, piece *pieces, size_t max)
{
    size_t want = len / (64u << 10);
    if (want > max)
        want = max;
    if (want < 1)
        want = 1;
    const char *at = text, *end = text + len;
    size_t n = 0;
    for (size_t i = 0; i < want && at < end; i++) {
        const char *stop = i + 1 == want ? end : text + len / want * (i + 1);
        if (stop < at)
            stop = at;
        const char *nl = stop < end ? memchr(stop, '\n', (size_t)(end - stop)) : NULL;
        stop = nl ? nl + 1 : end;
        memset(&pieces[n], 0, sizeof pieces[n]);
        pieces[n].begin = at;
        pieces[n].end = stop;
        n++;
        at = stop;
    }
    return n;
}

static size_t count_lines(const char *p, const char *end)
{
    size_t n = 0;
    for (const char *q = p; q < end && (q = memchr(q, '\n', (size_t)(end - q))); q++)
        n++;
    return n + (end > p && end[-1] != '\n');   /* a last line without a newline */
}

static int parse_text(rv_trec_run *r, const char *name)
{
    enum { MAX_PIECES = 256 };
    piece pieces[MAX_PIECES];
    int threads = omp_get_max_threads();
    size_t n = cut_pieces(r->text.data, r->text.len, pieces, threads < MAX_PIECES ? (size_t)threads : MAX_PIECES);
    long np = (long)n;
    #pragma omp parallel for schedule(static, 1)
    for (long i = 0; i < np; i++)
        pieces[i].n_lines = count_lines(pieces[i].begin, pieces[i].end);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        pieces[i].first_line = total;
        total += pieces[i].n_lines;
    }
    if (rv_array_grow((void **)&r->docs, &r->cap_docs, total ? total : 1, sizeof *r->docs, "the run") < 0)
        return -1;
    #pragma omp parallel for schedule(static, 1)
    for (long i = 0; i < np; i++)
        parse_piece(r, &pieces[i], name);

    /* The first error in the file; else renumber the pieces' queries in
     * order of first appearance, and close the gaps blank lines left. */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (pieces[i].failed)
            rc = pieces[i].error ? rv_error_set("%s", pieces[i].error) : rv_error_set("out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        piece *pc = &pieces[i];
        pc->renumber = rv_malloc((pc->queries.n ? pc->queries.n : 1) * sizeof *pc->renumber);
        if (!pc->renumber)
            rc = -1;
        for (size_t q = 0; rc == 0 && q < pc->queries.n; q++) {
            const run_query *pq = &pc->queries.items[q];
            rc = intern_query(&r->queries, (rv_str){pq->qid, pq->len}, r, 0, &pc->renumber[q]);
        }
    }
    if (rc == 0) {
        #pragma omp parallel for schedule(static, 1)
        for (long i = 0; i < np; i++) {
            rv_ranked_doc *d = r->docs + pieces[i].first_line;
            for (size_t k = 0; k < pieces[i].n_docs; k++)
                d[k].query = (uint32_t)pieces[i].renumber[d[k].query];
        }
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            if (at != pieces[i].first_line && pieces[i].n_docs)
                memmove(r->docs + at, r->docs + pieces[i].first_line, pieces[i].n_docs * sizeof *r->docs);
            at += pieces[i].n_docs;
        }
        r->n_docs = at;
    }
    for (size_t i = 0; i < n; i++) {
        query_table_free(&pieces[i].queries);
        free(pieces[i].renumber);
        free(pieces[i].error);
    }
    return rc;
}

/* -------------------------------------------------------------- run stream */

static int parse_stream(rv_trec_run *r, const char *name)
{
    FILE *f = fmemopen((void *)r->text.data, r->text.len, "rb");   /* only read */
    if (!f)
        return rv_error_set("%s: cannot open the stream in memory", name);
    rv_stream_reader *sr = rv_stream_reader_open(f, name);
    int rc = -1;
    if (!sr)
        goto out;
    if (rv_stream_reader_expect(sr, "run", RV_RUN_VERSION) < 0)
        goto out;
    const unsigned char *rec;
    size_t len;
    int got;
    while ((got = rv_stream_read(sr, &rec, &len)) == 1) {
        size_t where = (size_t)rv_stream_reader_count(sr) - 1, qi;
        rv_rec_cursor c;
        rv_str qid;
        uint32_t n;
        /* a query with no documents is still a query of the run */
        if (rv_run_open(&c, rec, len, &qid, &n) < 0 || intern_query(&r->queries, qid, r, 1, &qi) < 0)
            goto bad_record;
        for (uint32_t k = 0; k < n; k++) {
            rv_run_hit h;
            if (rv_run_next(&c, &h) < 0)
                goto bad_record;
            if (h.score != h.score) {
                rv_error_set("hits[%u].score: expected a number, found NaN", k);
                goto bad_record;
            }
            if (h.docid.len > UINT32_MAX) {
                rv_error_set("hits[%u].docid: %zu bytes is too long", k, h.docid.len);
                goto bad_record;
            }
            const char *id = copy_id(r, h.docid.p, h.docid.len);
            if (!id ||
                rv_array_grow((void **)&r->docs, &r->cap_docs, r->n_docs + 1, sizeof *r->docs, "the run") < 0)
                goto bad_record;
            r->docs[r->n_docs++] = make_doc(id, h.docid.len, qi, h.score);
        }
        if (rv_rec_end(&c) < 0)
            goto bad_record;
        continue;
    bad_record:
        rv_error_prefix("%s: record %zu", name, where);
        goto out;
    }
    if (got == 0)
        rc = 0;
out:
    if (sr)
        rv_stream_reader_close(sr);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------ ranking */

static int cmp_rank(const void *a, const void *b)
{
    const rv_ranked_doc *x = a, *y = b;
    if (x->score > y->score)
        return -1;
    if (x->score < y->score)
        return 1;
    return rv_str_cmp(y->docid, y->len, x->docid, x->len);
}

/* Groups documents by query, keeping input order within a query. */
static int group(rv_trec_run *r)
{
    run_query *qs = r->queries.items;
    int grouped = 1;
    for (size_t i = 0; i < r->n_docs; i++) {
        if (i && r->docs[i].query < r->docs[i - 1].query)
            grouped = 0;
        qs[r->docs[i].query].n++;
    }
    size_t at = 0;
    for (size_t q = 0; q < r->queries.n; q++) {
        qs[q].first = at;
        at += qs[q].n;
    }
    if (grouped)   /* queries are numbered in order of first appearance */
        return 0;
    rv_ranked_doc *sorted = rv_malloc((r->n_docs ? r->n_docs : 1) * sizeof *sorted);
    if (!sorted)
        return -1;
    for (size_t q = 0; q < r->queries.n; q++)
        qs[q].n = 0;
    for (size_t i = 0; i < r->n_docs; i++) {
        run_query *q = &qs[r->docs[i].query];
        sorted[q->first + q->n++] = r->docs[i];
    }
    free(r->docs);
    r->docs = sorted;
    r->cap_docs = r->n_docs;
    return 0;
}

/* Merges the repeats among one query's documents, in place (the highest
 * score stays, in the first one's place), and ranks them. Returns the number
 * of repeats (-1 when out of memory); *first gets the first repeat in input
 * order, when there is one. */
static long merge_query(rv_trec_run *r, run_query *rq, rv_id_index *ix, rv_ranked_doc *first)
{
    if (rv_id_index_reset(ix, rq->n) < 0)
        return -1;
    rv_ranked_doc *docs = r->docs + rq->first;
    size_t out = 0;
    long repeats = 0;
    for (size_t i = 0; i < rq->n; i++) {
        rv_ranked_doc d = docs[i];
        d.hash = rv_id_hash(d.docid, d.len);
        uint32_t h = (uint32_t)(d.hash >> 32);
        size_t s = h & ix->mask;
        for (; ix->slots[s].item; s = (s + 1) & ix->mask) {
            const rv_ranked_doc *e = &docs[ix->slots[s].item - 1];
            if (ix->slots[s].hash == h && e->len == d.len && rv_same_bytes(e->docid, d.docid, d.len))
                break;
        }
        if (ix->slots[s].item) {
            rv_ranked_doc *e = &docs[ix->slots[s].item - 1];
            if (d.score > e->score)
                e->score = d.score;
            if (!repeats++)
                *first = d;
            continue;
        }
        rv_id_index_put(ix, s, h, out);
        docs[out++] = d;
    }
    rq->n = out;
    size_t k = 1;
    while (k < out && cmp_rank(&docs[k - 1], &docs[k]) < 0)
        k++;
    if (k < out)
        qsort(docs, out, sizeof *docs, cmp_rank);
    return repeats;
}

/* Does repeat a (of query qa) come before repeat b (of query qb) in the
 * input? In a text run the ids point into the text, so the lower address is
 * the earlier line; a stream's records have no lines: the earlier query. */
static int earlier(const rv_trec_run *r, const rv_ranked_doc *a, long qa, const rv_ranked_doc *b, long qb)
{
    if (qb < 0)
        return 1;
    return r->is_stream ? qa < qb : a->docid < b->docid;
}

/* Merges repeats and ranks every query, over threads, and finds the first
 * repeat for the warning. */
static int merge_and_rank(rv_trec_run *r)
{
    long nq = (long)r->queries.n, first_query = -1;
    int failed = 0;
    size_t repeats = 0;
    rv_ranked_doc first = {0};
    #pragma omp parallel reduction(+ : repeats)
    {
        rv_id_index ix = {0};
        rv_ranked_doc mine = {0};
        long my_query = -1;
        #pragma omp for schedule(dynamic, 64)
        for (long q = 0; q < nq; q++) {
            rv_ranked_doc rep = {0};
            long n = merge_query(r, &r->queries.items[q], &ix, &rep);
            if (n < 0) {
                #pragma omp atomic write
                failed = 1;
            } else if (n > 0) {
                repeats += (size_t)n;
                if (earlier(r, &rep, q, &mine, my_query)) {
                    mine = rep;
                    my_query = q;
                }
            }
        }
        #pragma omp critical(rv_trec_run_first_repeat)
        if (my_query >= 0 && earlier(r, &mine, my_query, &first, first_query)) {
            first = mine;
            first_query = my_query;
        }
        rv_id_index_free(&ix);
    }
    if (failed)
        return rv_error_set("out of memory merging repeated documents");
    r->n_repeats = repeats;
    if (first_query >= 0) {
        const run_query *rq = &r->queries.items[first_query];
        size_t line = 0;
        if (!r->is_stream)
            line = count_lines(r->text.data, first.docid);   /* lines before + its own */
        r->first_repeat = (rv_run_repeat){line, rq->qid, first.docid, rq->len, first.len};
    }
    size_t n_docs = 0;
    for (size_t q = 0; q < r->queries.n; q++)
        n_docs += r->queries.items[q].n;
    r->n_docs = n_docs;
    return 0;
}

/* Parses r->text (a stream when it starts with the zstd magic) and ranks. */
static rv_trec_run *load(rv_trec_run *r, const char *name)
{
    static const unsigned char zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    r->is_stream = r->text.len >= 4 && memcmp(r->text.data, zstd_magic, 4) == 0;
    if ((r->is_stream ? parse_stream(r, name) : parse_text(r, name)) < 0 || group(r) < 0 ||
        merge_and_rank(r) < 0) {
        rv_trec_run_free(r);
        return NULL;
    }
    rv_id_index_free(&r->queries.index);
    return r;
}

rv_trec_run *rv_trec_run_read(FILE *f, const char *name)
{
    rv_trec_run *r = rv_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (rv_input_load(&r->text, f, name) < 0) {
        rv_trec_run_free(r);
        return NULL;
    }
    return load(r, name);
}

rv_trec_run *rv_trec_run_parse(const void *data, size_t len, const char *name)
{
    rv_trec_run *r = rv_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (rv_input_copy(&r->text, data, len) < 0) {
        rv_trec_run_free(r);
        return NULL;
    }
    return load(r, name);
}

void rv_trec_run_free(rv_trec_run *r)
{
    if (!r)
        return;
    rv_input_free(&r->text);
    for (block *b = r->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    query_table_free(&r->queries);
    free(r->docs);
    free(r);
}

int rv_trec_run_is_stream(const rv_trec_run *r) { return r->is_stream; }
size_t rv_trec_run_n_queries(const rv_trec_run *r) { return r->queries.n; }
size_t rv_trec_run_n_docs(const rv_trec_run *r) { return r->n_docs; }

const char *rv_trec_run_qid(const rv_trec_run *r, size_t i, size_t *len)
{
    *len = r->queries.items[i].len;
    return r->queries.items[i].qid;
}

const rv_ranked_doc *rv_trec_run_docs(const rv_trec_run *r, size_t i, size_t *n)
{
    *n = r->queries.items[i].n;
    return r->docs + r->queries.items[i].first;
}

size_t rv_trec_run_n_repeats(const rv_trec_run *r, rv_run_repeat *first)
{
    if (first)
        *first = r->first_repeat;
    return r->n_repeats;
}
