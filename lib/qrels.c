/* qrels.c — TREC and BEIR relevance judgments, parsed in place and grouped
 * by query (see qrels.h). Parsing appends; then a counting sort groups the
 * judgments by query and a small per-query hash index merges repeats. */
#include "qrels.h"
#include "buf.h"
#include "error.h"
#include "ir_text.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *qid;
    size_t len;
    size_t first, n;              /* its judgments */
    size_t gain_first, n_gains;   /* its positive judgments, largest first */
} query;

struct rv_qrels {
    rv_input text;
    rv_qrels_format format;
    query *queries;
    size_t n_queries, cap_queries;
    rv_judgment *judgments;
    uint32_t *judgment_query;     /* while parsing: each judgment's query */
    size_t n_judgments, cap_judgments, cap_judgment_query;
    int32_t *gains;
    rv_id_index query_index;
    size_t last_query;
    size_t n_duplicates, first_duplicate_line;
};

static size_t find_query(const rv_qrels *q, const char *qid, size_t len, uint32_t h, size_t *slot)
{
    const rv_id_index *ix = &q->query_index;
    size_t i = h & ix->mask;
    for (; ix->slots[i].item; i = (i + 1) & ix->mask) {
        const query *e = &q->queries[ix->slots[i].item - 1];
        if (ix->slots[i].hash == h && e->len == len && rv_same_bytes(e->qid, qid, len))
            return ix->slots[i].item - 1;
    }
    if (slot)
        *slot = i;
    return SIZE_MAX;
}

static int add_judgment(rv_qrels *q, rv_str qid, rv_str docid, int32_t rel)
{
    size_t qi = q->last_query;
    if (!q->n_queries || q->queries[qi].len != qid.len ||
        !rv_same_bytes(q->queries[qi].qid, qid.p, qid.len)) {
        if (rv_id_index_reserve(&q->query_index, 1) < 0)
            return -1;
        uint32_t h = rv_key_hash32(rv_id_hash(qid.p, qid.len), 0);
        size_t slot;
        qi = find_query(q, qid.p, qid.len, h, &slot);
        if (qi == SIZE_MAX) {
            if (rv_array_grow((void **)&q->queries, &q->cap_queries, q->n_queries + 1, sizeof *q->queries,
                              "judgments") < 0)
                return -1;
            qi = q->n_queries++;
            q->queries[qi] = (query){qid.p, qid.len, 0, 0, 0, 0};
            rv_id_index_put(&q->query_index, slot, h, qi);
        }
        q->last_query = qi;
    }
    if (docid.len > UINT32_MAX)
        return rv_error_set("document id of %zu bytes is too long", docid.len);
    if (rv_array_grow((void **)&q->judgments, &q->cap_judgments, q->n_judgments + 1, sizeof *q->judgments,
                      "judgments") < 0 ||
        rv_array_grow((void **)&q->judgment_query, &q->cap_judgment_query, q->n_judgments + 1,
                      sizeof *q->judgment_query, "judgments") < 0)
        return -1;
    q->judgment_query[q->n_judgments] = (uint32_t)qi;
    q->judgments[q->n_judgments++] = (rv_judgment){docid.p, (uint32_t)docid.len, rel, 0};
    return 0;
}

static int blank_line(rv_str line)
{
    for (size_t i = 0; i < line.len; i++)
        if (line.p[i] != ' ' && line.p[i] != '\t')
            return 0;
    return 1;
}

static int parse_lines(rv_qrels *q, const char *name)
{
    static const char *const trec_names[] = {"qid", "iter", "docid", "rel"};
    static const char *const beir_names[] = {"query-id", "corpus-id", "score"};
    rv_text_lines it;
    rv_text_lines_init(&it, q->text.data, q->text.len);
    rv_str line, f[5];
    int have_format = 0, tabs = 0;
    size_t want = 0;
    while (rv_text_lines_next(&it, &line)) {
        if (blank_line(line))
            continue;
        int first = !have_format;
        if (!have_format) {
            /* BEIR files are tab-separated with three columns; TREC qrels
             * have four blank-separated columns. */
            if (rv_split_tab(line, f, 5) == 3) {
                q->format = RV_QRELS_BEIR;
                tabs = 1;
                want = 3;
            } else {
                size_t n = rv_split_blank(line, f, 5);
                if (n != 3 && n != 4)
                    return rv_error_set("%s:%zu: expected TREC qrels (qid iter docid rel) or BEIR qrels "
                                        "(query-id<TAB>corpus-id<TAB>score), found %zu fields",
                                        name, it.lineno, n);
                q->format = n == 4 ? RV_QRELS_TREC : RV_QRELS_BEIR;
                want = n;
            }
            have_format = 1;
        }
        size_t n = tabs ? rv_split_tab(line, f, 5) : rv_split_blank(line, f, 5);
        const char *const *names = want == 4 ? trec_names : beir_names;
        if (n != want)
            return rv_error_set("%s:%zu: expected %zu %sfields (%s), found %zu", name, it.lineno, want,
                                tabs ? "tab-separated " : "",
                                want == 4 ? "qid iter docid rel" : "query-id corpus-id score", n);
        rv_str qid = f[0], docid = f[want - 2], relf = f[want - 1];
        int32_t rel;
        if (rv_parse_i32(relf, &rel) < 0) {
            if (first && want == 3)
                continue;   /* the BEIR header line ("query-id corpus-id score") */
            return rv_error_set("%s:%zu: field %zu (%s): expected an integer judgment, found \"%.*s\"", name,
                                it.lineno, want, names[want - 1], (int)(relf.len > 40 ? 40 : relf.len), relf.p);
        }
        if (qid.len == 0)
            return rv_error_set("%s:%zu: field 1 (%s): expected an id, found an empty field", name,
                                it.lineno, names[0]);
        if (docid.len == 0)
            return rv_error_set("%s:%zu: field %zu (%s): expected an id, found an empty field", name,
                                it.lineno, want - 1, names[want - 2]);
        if (add_judgment(q, qid, docid, rel) < 0)
            return rv_error_prefix("%s:%zu", name, it.lineno);
    }
    if (q->n_judgments == 0)
        return rv_error_set("%s: no judgments found", name);
    return 0;
}

/* Groups judgments by query (stable), then merges repeats per query: the
 * last judgment of a pair counts, as in a dict built from the file. */
static int group_and_merge(rv_qrels *q)
{
    rv_judgment *sorted = rv_malloc(q->n_judgments * sizeof *sorted);
    if (!sorted)
        return -1;
    for (size_t j = 0; j < q->n_judgments; j++)
        q->queries[q->judgment_query[j]].n++;
    size_t at = 0;
    for (size_t i = 0; i < q->n_queries; i++) {
        q->queries[i].first = at;
        at += q->queries[i].n;
        q->queries[i].n = 0;
    }
    for (size_t j = 0; j < q->n_judgments; j++) {
        query *qq = &q->queries[q->judgment_query[j]];
        sorted[qq->first + qq->n++] = q->judgments[j];
    }
    free(q->judgments);
    free(q->judgment_query);
    q->judgments = sorted;
    q->judgment_query = NULL;
    q->cap_judgments = q->n_judgments;

    rv_id_index ix = {0};
    const char *first_dup_at = NULL;
    size_t out = 0;
    for (size_t i = 0; i < q->n_queries; i++) {
        query *qq = &q->queries[i];
        size_t begin = qq->first, end = qq->first + qq->n, first_out = out;
        if (rv_id_index_reset(&ix, qq->n) < 0) {
            rv_id_index_free(&ix);
            return -1;
        }
        for (size_t j = begin; j < end; j++) {
            rv_judgment d = q->judgments[j];
            d.hash = rv_id_hash(d.docid, d.len);
            uint32_t h = (uint32_t)(d.hash >> 32);
            size_t s = h & ix.mask;
            for (; ix.slots[s].item; s = (s + 1) & ix.mask) {
                const rv_judgment *e = &q->judgments[first_out + ix.slots[s].item - 1];
                if (ix.slots[s].hash == h && e->len == d.len && rv_same_bytes(e->docid, d.docid, d.len))
                    break;
            }
            if (ix.slots[s].item) {
                q->judgments[first_out + ix.slots[s].item - 1].rel = d.rel;
                if (!q->n_duplicates++ || d.docid < first_dup_at)
                    first_dup_at = d.docid;
                continue;
            }
            rv_id_index_put(&ix, s, h, out - first_out);
            q->judgments[out++] = d;
        }
        qq->first = first_out;
        qq->n = out - first_out;
    }
    q->n_judgments = out;
    rv_id_index_free(&ix);
    if (q->n_duplicates) {
        const char *text = q->text.data;
        size_t line = 1;
        for (const char *p = text; (p = memchr(p, '\n', (size_t)(first_dup_at - p))); p++)
            line++;
        q->first_duplicate_line = line;
    }
    return 0;
}

static int cmp_gain_desc(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x < y) - (x > y);
}

/* Collects each query's positive judgments, largest first. */
static int build_gains(rv_qrels *q)
{
    q->gains = rv_malloc(q->n_judgments * sizeof *q->gains);
    if (!q->gains)
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < q->n_queries; i++) {
        query *qq = &q->queries[i];
        qq->gain_first = at;
        for (size_t j = qq->first; j < qq->first + qq->n; j++)
            if (q->judgments[j].rel > 0)
                q->gains[at++] = q->judgments[j].rel;
        qq->n_gains = at - qq->gain_first;
        qsort(q->gains + qq->gain_first, qq->n_gains, sizeof *q->gains, cmp_gain_desc);
    }
    return 0;
}

static rv_qrels *finish(rv_qrels *q, const char *name)
{
    if (parse_lines(q, name) < 0 || group_and_merge(q) < 0 || build_gains(q) < 0) {
        rv_qrels_free(q);
        return NULL;
    }
    return q;
}

rv_qrels *rv_qrels_parse(const char *text, size_t len, const char *name)
{
    rv_qrels *q = rv_calloc(1, sizeof *q);
    if (!q)
        return NULL;
    if (rv_input_copy(&q->text, text, len) < 0) {
        rv_qrels_free(q);
        return NULL;
    }
    return finish(q, name);
}

rv_qrels *rv_qrels_read(FILE *f, const char *name)
{
    rv_qrels *q = rv_calloc(1, sizeof *q);
    if (!q)
        return NULL;
    if (rv_input_load(&q->text, f, name) < 0) {
        rv_qrels_free(q);
        return NULL;
    }
    return finish(q, name);
}

void rv_qrels_free(rv_qrels *q)
{
    if (!q)
        return;
    rv_input_free(&q->text);
    free(q->queries);
    free(q->judgments);
    free(q->judgment_query);
    free(q->gains);
    rv_id_index_free(&q->query_index);
    free(q);
}

rv_qrels_format rv_qrels_get_format(const rv_qrels *q) { return q->format; }
size_t rv_qrels_n_queries(const rv_qrels *q) { return q->n_queries; }
size_t rv_qrels_n_judgments(const rv_qrels *q) { return q->n_judgments; }

size_t rv_qrels_n_duplicates(const rv_qrels *q, size_t *line)
{
    if (line)
        *line = q->first_duplicate_line;
    return q->n_duplicates;
}

size_t rv_qrels_find(const rv_qrels *q, const char *qid, size_t len)
{
    if (!q->query_index.slots)
        return SIZE_MAX;
    return find_query(q, qid, len, rv_key_hash32(rv_id_hash(qid, len), 0), NULL);
}

const char *rv_qrels_qid(const rv_qrels *q, size_t i, size_t *len)
{
    *len = q->queries[i].len;
    return q->queries[i].qid;
}

const rv_judgment *rv_qrels_judgments(const rv_qrels *q, size_t i, size_t *n)
{
    *n = q->queries[i].n;
    return q->judgments + q->queries[i].first;
}

const int32_t *rv_qrels_gains(const rv_qrels *q, size_t i, size_t *n)
{
    *n = q->queries[i].n_gains;
    return q->gains + q->queries[i].gain_first;
}
