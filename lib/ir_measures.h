/* ir_measures.h — trec_eval's retrieval measures for one query, computed
 * exactly as trec_eval 9.x (and so pytrec_eval, BEIR and mteb) computes them,
 * and the parsing of their trec_eval names ("ndcg_cut.5,10", "map", "P.10").
 *
 * Input per query: the judgments of the ranked documents in rank order
 * (RV_REL_UNJUDGED for a document absent from the qrels; negative judgments
 * stay negative) and the query's positive judgments, largest first.
 * Definitions (level = relevance level, 1 by default; rel_i = judgment of the
 * document at 0-based rank i; R = judged documents with rel >= level):
 *   ndcg_cut_k  DCG@k / IDCG@k, DCG@k = sum_{i<k, rel_i>0} rel_i / log2(i+2),
 *               IDCG@k the same over the positive judgments sorted down
 *               (all judged documents, retrieved or not); 0 when IDCG is 0
 *   ndcg        the same without a cutoff
 *   P_k         (relevant in the top k) / k, even when fewer were retrieved
 *   recall_k    (relevant in the top k) / R; 0 when R = 0
 *   map         sum over relevant retrieved of (precision at its rank) / R
 *   map_cut_k   the same over the top k
 *   Rprec       (relevant in the top R) / R; 0 when R = 0 or nothing retrieved
 *   recip_rank  1 / rank of the first relevant document; 0 if none
 *   num_ret, num_rel (= R), num_rel_ret, num_q (= 1): counts
 * Sums run in rank order as trec_eval's do, so values agree to the last bit
 * or nearly (the same divisions in the same order). */
#ifndef RV_IR_MEASURES_H
#define RV_IR_MEASURES_H

#include <stddef.h>
#include <stdint.h>

#define RV_REL_UNJUDGED (-1)   /* trec_eval's RELVALUE_NONPOOL */

typedef enum {
    RV_M_NDCG_CUT,
    RV_M_NDCG,
    RV_M_MAP,
    RV_M_MAP_CUT,
    RV_M_P,
    RV_M_RECALL,
    RV_M_RPREC,
    RV_M_RECIP_RANK,
    RV_M_NUM_Q,
    RV_M_NUM_RET,
    RV_M_NUM_REL,
    RV_M_NUM_REL_RET,
} rv_measure_kind;

/* One output value: a measure, with its cutoff for the _cut families. */
typedef struct {
    rv_measure_kind kind;
    uint64_t cutoff;       /* 0 for measures without one */
    char name[40];         /* trec_eval's name: "ndcg_cut_10", "P_5", "map" */
} rv_measure;

typedef struct {
    rv_measure *items;
    size_t n, cap;
} rv_measure_set;

/* Adds the values named by a trec_eval measure spec: "map", "ndcg_cut.10",
 * "P.5,10,100" (cutoffs sorted up, as trec_eval prints them), or a cutoff
 * family without cutoffs ("P", "recall", "ndcg_cut", "map_cut": trec_eval's
 * defaults 5,10,15,20,30,100,200,500,1000). A value already in the set is not
 * added twice. Returns 0, or -1 with a message for an unknown name or bad
 * cutoffs. */
int rv_measures_add(rv_measure_set *s, const char *spec);
void rv_measures_free(rv_measure_set *s);

/* A space-separated list of the measure names understood, for messages. */
const char *rv_measures_known(void);

/* Counts are summed over queries in trec_eval's summary (num_ret, num_rel,
 * num_rel_ret) or counted (num_q); every other value is averaged. */
int rv_measure_is_count(const rv_measure *m);

/* Working memory for rv_measures_eval (prefix sums, log2 table). */
typedef struct {
    double *log2_at;       /* log2(i + 2) */
    double *dcg, *idcg, *ap;
    size_t *rel_ret;
    size_t cap;
} rv_measure_work;
void rv_measure_work_free(rv_measure_work *w);

/* Computes every value of `s` for one query into out[0..s->n). `rels` holds
 * the judgments of the n_ret ranked documents; `gains` the n_gains positive
 * judgments of the query, largest first; level >= 1. Returns 0 or -1 (out of
 * memory, message set). */
int rv_measures_eval(const rv_measure_set *s, const int32_t *rels, size_t n_ret, const int32_t *gains,
                     size_t n_gains, int32_t level, rv_measure_work *w, double *out);

#endif
