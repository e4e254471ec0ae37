/* ir_eval.h — evaluating a run against judgments, as trec_eval does: join
 * each run query with its judgments, compute the measures per query
 * (ir_measures.h) and the summary over queries.
 *
 * Queries evaluated: those in both the run and the judgments (run queries
 * without judgments are skipped, as trec_eval and pytrec_eval skip them);
 * with `complete`, also the judged queries missing from the run, evaluated
 * as an empty ranking (trec_eval -c). Rows come in byte order of query id.
 * Summary: the mean over evaluated queries, except num_ret, num_rel and
 * num_rel_ret (sums) and num_q (the number of queries). */
#ifndef RV_IR_EVAL_H
#define RV_IR_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "ir_measures.h"
#include "qrels.h"
#include "trec_run.h"

typedef struct {
    int complete;               /* trec_eval -c */
    int ignore_identical_ids;   /* drop documents whose id is the query id (BEIR/mteb) */
    uint64_t max_docs;          /* evaluate the top max_docs per query (trec_eval -M); 0 = all */
    int32_t relevance_level;    /* >= 1; trec_eval -l, default 1 */
} rv_eval_options;

typedef struct {
    size_t n_rows, n_measures;
    const char **qids;          /* row query ids (into the run or qrels; not NUL-terminated) */
    size_t *qid_lens;
    double *values;             /* n_rows x n_measures, row-major */
    double *summary;            /* n_measures */
    size_t n_run_only;          /* run queries without judgments (skipped) */
    size_t n_qrels_only;        /* judged queries missing from the run */
} rv_eval_table;

/* Fills t (which the caller frees with rv_eval_table_free). Fails when no
 * query is left to evaluate, or on allocation failure. */
int rv_evaluate(const rv_trec_run *run, const rv_qrels *qrels, const rv_measure_set *ms,
                const rv_eval_options *o, rv_eval_table *t);
void rv_eval_table_free(rv_eval_table *t);

#endif
