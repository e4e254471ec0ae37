/* bm25.h — the BM25 engine: an inverted index whose postings carry the
 * precomputed BM25 contribution of each (term, document) pair (bm25s's
 * "eager" scoring), searched by accumulating those impacts per query and
 * keeping the top k; multi-threaded over queries (OpenMP).
 *
 * Scores are bit-for-bit those of bm25s 0.3 (numpy backend, float32): the
 * same idf and term-frequency formulas per variant, evaluated with the same
 * float64/float32 roundings, impacts stored as float32, and per-query sums
 * accumulated in float32 in query-token order (a query word that occurs twice
 * counts twice). Results are ordered by score descending, then by document
 * number ascending (bm25s leaves exact ties in no particular order).
 *
 * A search returns only documents that contain at least one query term.
 * (bm25s also returns non-matching documents, with score 0 — or, for bm25l
 * and bm25+, with the query's constant non-occurrence score — to fill k.)
 *
 * Postings are doc-id gaps in LEB128 varints plus one float32 impact each.
 * An index can be written to and read from a file (formats/bm25-index.md). */
#ifndef RV_BM25_H
#define RV_BM25_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "analyzer.h"

typedef enum {
    RV_BM25_LUCENE = 0,     /* idf ln(1 + (N - df + .5)/(df + .5)), tfc tf/(tf + k1(1 - b + b dl/avgdl)) */
    RV_BM25_ROBERTSON = 1,  /* idf ln(max(1, (N - df + .5)/(df + .5))), same tfc */
    RV_BM25_ATIRE = 2,      /* idf ln(N/df), tfc tf(k1 + 1)/(tf + k1(1 - b + b dl/avgdl)) */
    RV_BM25_BM25L = 3,      /* idf ln((N + 1)/(df + .5)), c = tf/(1 - b + b dl/avgdl), (k1 + 1)(c + δ)/(k1 + c + δ) */
    RV_BM25_BM25PLUS = 4,   /* idf ln((N + 1)/df), tfc (k1 + 1)tf/(k1(1 - b + b dl/avgdl) + tf) + δ */
} rv_bm25_variant;

typedef struct {
    rv_bm25_variant variant;
    double k1, b, delta;    /* delta only matters for bm25l and bm25+ */
} rv_bm25_params;

/* lucene, k1 1.5, b 0.75, delta 0.5 (bm25s's defaults). */
void rv_bm25_params_default(rv_bm25_params *p);
/* "lucene", "robertson", "atire", "bm25l", "bm25+" ("bm25plus" also accepted). */
int rv_bm25_variant_parse(const char *s, rv_bm25_variant *v);
const char *rv_bm25_variant_name(rv_bm25_variant v);
/* k1 >= 0, 0 <= b <= 1, delta >= 0, all finite; error set otherwise. */
int rv_bm25_params_check(const rv_bm25_params *p);

typedef struct rv_bm25_index rv_bm25_index;
typedef struct rv_bm25_builder rv_bm25_builder;

/* Starts an index. `stopwords` and `stemmer` as for rv_analyzer_new.
 * keep_forward keeps each document's term sequence (needed by
 * rv_bm25_search_docs and rv_bm25_score_pair, saved with the index).
 * threads <= 0 means the OpenMP default. */
rv_bm25_builder *rv_bm25_builder_new(const char *stopwords, const char *stemmer, const rv_bm25_params *p,
                                     int keep_forward, int threads);
/* Adds n documents (document numbers continue from the previous call). */
int rv_bm25_builder_add(rv_bm25_builder *b, size_t n, const char *const *texts, const size_t *lens);
/* Computes statistics and impacts; the builder is freed (also on failure). */
rv_bm25_index *rv_bm25_builder_finish(rv_bm25_builder *b);
void rv_bm25_builder_free(rv_bm25_builder *b);

void rv_bm25_index_free(rv_bm25_index *ix);

size_t rv_bm25_index_docs(const rv_bm25_index *ix);
size_t rv_bm25_index_terms(const rv_bm25_index *ix);
uint64_t rv_bm25_index_postings(const rv_bm25_index *ix);
double rv_bm25_index_avgdl(const rv_bm25_index *ix);
const rv_bm25_params *rv_bm25_index_params(const rv_bm25_index *ix);
const rv_analyzer *rv_bm25_index_analyzer(const rv_bm25_index *ix);
int rv_bm25_index_has_forward(const rv_bm25_index *ix);
/* Number of terms of document d after analysis (its BM25 length). */
uint32_t rv_bm25_index_doc_length(const rv_bm25_index *ix, uint32_t d);
/* Fingerprint of the texts the index was built from (see rv_bm25_fingerprint). */
uint64_t rv_bm25_index_corpus_hash(const rv_bm25_index *ix);
/* Document frequency of a term given as bytes (0 when absent). */
uint32_t rv_bm25_index_df(const rv_bm25_index *ix, const char *term, size_t len);

/* Writes / reads the index file format (formats/bm25-index.md). `name` is
 * used in messages. Load validates every size, offset, document number and
 * the trailing checksum before returning. */
int rv_bm25_index_save(const rv_bm25_index *ix, FILE *f, const char *name);
rv_bm25_index *rv_bm25_index_load(FILE *f, const char *name);

/* The corpus fingerprint: XXH3-64 over every text as (u64 length, bytes), in
 * order — what the builder records, so a loaded index can be checked against
 * the corpus it is used with. */
typedef struct rv_bm25_fingerprint rv_bm25_fingerprint;
rv_bm25_fingerprint *rv_bm25_fingerprint_new(void);
void rv_bm25_fingerprint_add(rv_bm25_fingerprint *f, const char *text, size_t len);
uint64_t rv_bm25_fingerprint_digest(const rv_bm25_fingerprint *f);
void rv_bm25_fingerprint_free(rv_bm25_fingerprint *f);

typedef struct {
    uint32_t doc;
    float score;
} rv_bm25_hit;

/* Analyzes each query text with the index's analyzer and finds its top k:
 * hits[i*k .. i*k + n_hits[i]) in rank order. Returns 0 or -1 (error set). */
int rv_bm25_search(const rv_bm25_index *ix, size_t n, const char *const *texts, const size_t *lens,
                   uint32_t k, int threads, rv_bm25_hit *hits, uint32_t *n_hits);

/* The same with documents of the index as queries (their stored term
 * sequences: needs keep_forward). A document finds itself like any other. */
int rv_bm25_search_docs(const rv_bm25_index *ix, size_t n, const uint32_t *docs, uint32_t k, int threads,
                        rv_bm25_hit *hits, uint32_t *n_hits);

/* The same, never returning documents with exclude[d] != 0 (they still count
 * in every statistic). rv-bm25group shows one chunk of each near-duplicate
 * class this way. */
int rv_bm25_search_docs_excluding(const rv_bm25_index *ix, size_t n, const uint32_t *docs, const uint8_t *exclude,
                                  uint32_t k, int threads, rv_bm25_hit *hits, uint32_t *n_hits);

/* Document d's term ids in text order (stored term sequences; NULL and
 * *n = 0 without them). */
const uint32_t *rv_bm25_index_doc_terms(const rv_bm25_index *ix, uint32_t d, size_t *n);

/* The score document `doc` gets for the query made of document `query`'s
 * text: exactly what rv_bm25_search_docs reports for it when it matches (needs
 * keep_forward). For bm25l/bm25+ an unmatched pair gets the query's constant. */
int rv_bm25_score_pair(const rv_bm25_index *ix, uint32_t query, uint32_t doc, float *score);

/* numpy's float32 sum (pairwise, 8-way unrolled): bm25s adds the bm25l/bm25+
 * non-occurrence constant of a query this way. Exposed for tests. */
float rv_bm25_sum_f32(const float *a, size_t n);

#endif
