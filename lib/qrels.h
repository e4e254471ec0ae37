/* qrels.h — relevance judgments for rv-eval: TREC qrels ("qid iter docid rel",
 * blank-separated) or BEIR qrels ("query-id<TAB>corpus-id<TAB>score" with an
 * optional header line), told apart by the first line. Judgments are integers;
 * negative values mean "in the pool but not judged" (trec_eval) and never
 * count as relevant or as gain. A (query, doc) pair judged twice keeps the
 * last value, as a Python dict built from the file would (trec_eval refuses
 * such files); the duplicates are counted for a warning.
 *
 * The loaded judgments are grouped by query: find a query by id (one hash
 * probe), then take its judgments as one array (ir_eval.c joins a ranking
 * against them through a small per-query index). */
#ifndef RV_QRELS_H
#define RV_QRELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { RV_QRELS_TREC, RV_QRELS_BEIR } rv_qrels_format;

typedef struct rv_qrels rv_qrels;

/* Parses judgments from text (copied). `name` prefixes messages
 * ("NAME:LINE: ..."). NULL on error, message set. */
rv_qrels *rv_qrels_parse(const char *text, size_t len, const char *name);
/* Reads all of f, then parses it. */
rv_qrels *rv_qrels_read(FILE *f, const char *name);
void rv_qrels_free(rv_qrels *q);

rv_qrels_format rv_qrels_get_format(const rv_qrels *q);
size_t rv_qrels_n_queries(const rv_qrels *q);
size_t rv_qrels_n_judgments(const rv_qrels *q);   /* distinct (query, doc) pairs */

/* Pairs judged more than once; with *line the first repeated line (0: none). */
size_t rv_qrels_n_duplicates(const rv_qrels *q, size_t *line);

/* Index of query `qid`, or SIZE_MAX when it has no judgments. */
size_t rv_qrels_find(const rv_qrels *q, const char *qid, size_t len);
/* Id of query i (not NUL-terminated). */
const char *rv_qrels_qid(const rv_qrels *q, size_t i, size_t *len);

/* One judged document of a query. */
typedef struct {
    const char *docid;    /* not NUL-terminated */
    uint32_t len;
    int32_t rel;
    uint64_t hash;        /* rv_id_hash(docid, len) */
} rv_judgment;

/* The judgments of query i (distinct documents, in input order); *n of them. */
const rv_judgment *rv_qrels_judgments(const rv_qrels *q, size_t i, size_t *n);

/* The positive judgments of query i, largest first (the ideal ranking's
 * gains); *n of them. */
const int32_t *rv_qrels_gains(const rv_qrels *q, size_t i, size_t *n);

#endif
