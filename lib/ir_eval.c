/* ir_eval.c — the run x judgments join and the per-query and summary table
 * (see ir_eval.h). */
#include "ir_eval.h"
#include "buf.h"
#include "error.h"
#include "ir_text.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t run_q;     /* SIZE_MAX: not in the run (complete evaluation) */
    size_t qrels_q;
    const char *qid;
    size_t len;
} row;

static int cmp_row(const void *a, const void *b)
{
    const row *x = a, *y = b;
    return rv_str_cmp(x->qid, x->len, y->qid, y->len);
}

/* The judgments of a query's ranked documents, after dropping identical
 * ids and cutting at max_docs; returns how many, or -1 (out of memory). The
 * query's judgments go into a small index first, so every probe stays in
 * cache. */
static long judge_ranking(const rv_trec_run *run, const rv_qrels *qrels, const row *r,
                          const rv_eval_options *o, rv_id_index *ix, int32_t *rels)
{
    if (r->run_q == SIZE_MAX)
        return 0;
    size_t n_judged, n_docs, n = 0;
    const rv_judgment *judged = rv_qrels_judgments(qrels, r->qrels_q, &n_judged);
    if (rv_id_index_reset(ix, n_judged) < 0)
        return -1;
    for (size_t j = 0; j < n_judged; j++) {
        uint32_t h = (uint32_t)(judged[j].hash >> 32);
        size_t s = h & ix->mask;
        while (ix->slots[s].item)   /* judgments are distinct: no equality test */
            s = (s + 1) & ix->mask;
        rv_id_index_put(ix, s, h, j);
    }
    const rv_ranked_doc *docs = rv_trec_run_docs(run, r->run_q, &n_docs);
    for (size_t i = 0; i < n_docs; i++) {
        const rv_ranked_doc *d = &docs[i];
        if (o->ignore_identical_ids && d->len == r->len && rv_same_bytes(d->docid, r->qid, r->len))
            continue;
        if (o->max_docs && n >= o->max_docs)
            break;
        uint32_t h = (uint32_t)(d->hash >> 32);
        int32_t rel = RV_REL_UNJUDGED;
        for (size_t s = h & ix->mask; ix->slots[s].item; s = (s + 1) & ix->mask) {
            const rv_judgment *e = &judged[ix->slots[s].item - 1];
            if (ix->slots[s].hash == h && e->len == d->len && rv_same_bytes(e->docid, d->docid, d->len)) {
                rel = e->rel;
                break;
            }
        }
        rels[n++] = rel;
    }
    return (long)n;
}

int rv_evaluate(const rv_trec_run *run, const rv_qrels *qrels, const rv_measure_set *ms,
                const rv_eval_options *o, rv_eval_table *t)
{
    memset(t, 0, sizeof *t);
    size_t nq_run = rv_trec_run_n_queries(run), nq_qrels = rv_qrels_n_queries(qrels);
    size_t max_rows, bytes;
    if (rv_size_add(nq_run, nq_qrels, &max_rows, "queries") < 0)
        return -1;
    row *rows = rv_calloc(max_rows, sizeof *rows);
    unsigned char *seen = rv_calloc(nq_qrels, 1);
    int rc = -1;
    if (!rows || !seen)
        goto out;
    size_t n_rows = 0, longest = 0;
    for (size_t i = 0; i < nq_run; i++) {
        size_t len, n_docs;
        const char *qid = rv_trec_run_qid(run, i, &len);
        size_t qi = rv_qrels_find(qrels, qid, len);
        if (qi == SIZE_MAX) {
            t->n_run_only++;
            continue;
        }
        seen[qi] = 1;
        rows[n_rows++] = (row){i, qi, qid, len};
        rv_trec_run_docs(run, i, &n_docs);
        if (n_docs > longest)
            longest = n_docs;
    }
    for (size_t qi = 0; qi < nq_qrels; qi++) {
        if (seen[qi])
            continue;
        t->n_qrels_only++;
        if (o->complete) {
            size_t len;
            const char *qid = rv_qrels_qid(qrels, qi, &len);
            rows[n_rows++] = (row){SIZE_MAX, qi, qid, len};
        }
    }
    if (n_rows == 0) {
        rv_error_set("no query of the run has judgments (%zu run queries, %zu judged queries); "
                     "are the run and the qrels from the same collection?", nq_run, nq_qrels);
        goto out;
    }
    qsort(rows, n_rows, sizeof *rows, cmp_row);

    size_t nm = ms->n;
    if (rv_size_mul(n_rows, nm, &bytes, "result table") < 0 ||
        rv_size_mul(bytes, sizeof(double), &bytes, "result table") < 0)
        goto out;
    t->n_rows = n_rows;
    t->n_measures = nm;
    t->values = rv_malloc(bytes);
    t->summary = rv_calloc(nm, sizeof *t->summary);
    t->qids = rv_calloc(n_rows, sizeof *t->qids);
    t->qid_lens = rv_calloc(n_rows, sizeof *t->qid_lens);
    if (!t->values || !t->summary || !t->qids || !t->qid_lens)
        goto out;
    /* Queries are independent: spread them over threads, each with its own
     * working memory. */
    int failed = 0;
    long nr = (long)n_rows;
    #pragma omp parallel
    {
        int32_t *rels = rv_malloc((longest ? longest : 1) * sizeof *rels);
        rv_measure_work work = {0};
        rv_id_index ix = {0};
        #pragma omp for schedule(dynamic, 64)
        for (long r = 0; r < nr; r++) {
            long n_ret = rels ? judge_ranking(run, qrels, &rows[r], o, &ix, rels) : -1;
            size_t n_gains;
            const int32_t *gains = rv_qrels_gains(qrels, rows[r].qrels_q, &n_gains);
            if (n_ret < 0 || rv_measures_eval(ms, rels, (size_t)n_ret, gains, n_gains, o->relevance_level, &work,
                                              t->values + (size_t)r * nm) < 0) {
                #pragma omp atomic write
                failed = 1;
            }
            t->qids[r] = rows[r].qid;
            t->qid_lens[r] = rows[r].len;
        }
        free(rels);
        rv_id_index_free(&ix);
        rv_measure_work_free(&work);
    }
    if (failed) {
        rv_error_set("out of memory evaluating %zu queries", n_rows);
        goto out;
    }
    for (size_t j = 0; j < nm; j++) {
        double sum = 0.0;
        for (size_t r = 0; r < n_rows; r++)
            sum += t->values[r * nm + j];
        t->summary[j] = rv_measure_is_count(&ms->items[j]) ? sum : sum / (double)n_rows;
    }
    rc = 0;
out:
    if (rc < 0)
        rv_eval_table_free(t);
    free(rows);
    free(seen);
    return rc;
}

void rv_eval_table_free(rv_eval_table *t)
{
    free(t->qids);
    free(t->qid_lens);
    free(t->values);
    free(t->summary);
    memset(t, 0, sizeof *t);
}
