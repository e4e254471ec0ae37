/* bm25_internal.h — the in-memory layout of a BM25 index, shared by bm25.c
 * (build, search) and bm25_io.c (file format). Not for use outside lib/. */
#ifndef RV_BM25_INTERNAL_H
#define RV_BM25_INTERNAL_H

#include "analyzer.h"
#include "bm25.h"
#include "bm25_strtab.h"

struct rv_bm25_index {
    rv_bm25_params params;
    rv_analyzer *an;
    rv_strtab vocab;            /* term bytes -> term id */
    size_t n_docs, n_terms;
    uint64_t n_postings, gap_bytes, total_len, corpus_hash;
    double avgdl;
    uint32_t *df;               /* n_terms */
    float *idf;                 /* n_terms, float32 as bm25s stores it */
    float *nonocc;              /* n_terms; zeros unless bm25l / bm25+ */
    uint32_t *doc_len;          /* n_docs */
    uint64_t *post_off;         /* n_terms + 1: term t's impacts are impacts[post_off[t] ..] */
    uint64_t *gap_off;          /* n_terms + 1: its doc-id gaps start at gaps[gap_off[t]] */
    unsigned char *gaps;        /* LEB128 gaps: first = doc id, then differences (>= 1) */
    float *impacts;
    float *max_impact;          /* n_terms: largest impact of each term (search bounds) */
    uint32_t *fwd;              /* optional: every document's term ids in text order */
    uint64_t *fwd_off;          /* n_docs + 1, or NULL */
};

float rv_bm25_idf(const rv_bm25_params *p, uint64_t df, uint64_t n);
float rv_bm25_nonoccurrence(const rv_bm25_params *p, uint64_t df, uint64_t n, double avgdl);
float rv_bm25_impact(const rv_bm25_params *p, float idf, float nonocc, uint32_t tf, uint32_t dl, double avgdl);
/* Fills total_len, avgdl, idf and nonocc from n_docs, doc_len and df. */
int rv_bm25_index_stats(rv_bm25_index *ix);
/* Derives what search needs beyond the stored arrays (max_impact). */
int rv_bm25_index_prepare(rv_bm25_index *ix);

#endif
