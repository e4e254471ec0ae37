/* trec_run.h — a ranked run in memory, as trec_eval sees it, read from either
 * a TREC run file ("qid Q0 docid rank score tag", blank-separated) or a revela
 * run stream (formats/run.md; told apart by the zstd magic 28 b5 2f fd at the
 * start of the input).
 *
 * Each query's documents are ranked by score, highest first, ties broken by
 * document id in descending byte order (trec_eval's comp_sim_docno); the rank
 * column of a TREC file is ignored. A document listed twice for one query
 * (trec_eval and pytrec_eval refuse such runs) keeps its highest score; the
 * repeats are counted so the caller can warn. Scores must be numbers (NaN is
 * refused: it has no place in a ranking). */
#ifndef RV_TREC_RUN_H
#define RV_TREC_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *docid;    /* not NUL-terminated */
    uint32_t len;
    uint32_t query;       /* index of its query in the run */
    uint64_t hash;        /* rv_id_hash(docid, len), reused for joins */
    double score;
} rv_ranked_doc;

typedef struct rv_trec_run rv_trec_run;

/* Parses a run held in memory (copied), TREC text or run stream. `name`
 * prefixes messages ("NAME:LINE: ..." for text, "NAME: record N: ..." for
 * streams). NULL on error, message set. */
rv_trec_run *rv_trec_run_parse(const void *data, size_t len, const char *name);
/* Reads all of f, then parses it. */
rv_trec_run *rv_trec_run_read(FILE *f, const char *name);
void rv_trec_run_free(rv_trec_run *r);

int rv_trec_run_is_stream(const rv_trec_run *r);
size_t rv_trec_run_n_queries(const rv_trec_run *r);
size_t rv_trec_run_n_docs(const rv_trec_run *r);   /* after merging repeats */

/* Id of query i (in order of first appearance). */
const char *rv_trec_run_qid(const rv_trec_run *r, size_t i, size_t *len);
/* The ranked documents of query i; *n of them. */
const rv_ranked_doc *rv_trec_run_docs(const rv_trec_run *r, size_t i, size_t *n);

/* Repeated (query, document) pairs: their count, and the first repeat: its
 * line in a text run (0 for a stream, whose records have no lines) and ids. */
typedef struct {
    size_t line;
    const char *qid, *docid;
    size_t qid_len, docid_len;
} rv_run_repeat;
size_t rv_trec_run_n_repeats(const rv_trec_run *r, rv_run_repeat *first);

#endif
