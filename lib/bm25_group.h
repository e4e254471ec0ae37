/* bm25_group.h — building training groups of chunks (rv-bm25group):
 *
 * BM25 neighbourhoods: every seed chunk, taken in a pseudo-random order fixed
 * by the seed, forms one group with its best-scoring BM25 neighbours (the
 * chunk's own text is the query), subject to these rules:
 *   - no two members share a near-duplicate key (rv_text_fingerprint), so a
 *     chunk never meets its own copy;
 *   - with other_docs, no neighbour comes from the seed's document;
 *   - with max_reuse N, no chunk is used (as seed or neighbour) in more than
 *     N groups; a seed already used N times is skipped;
 *   - only chunks sharing at least one term with the seed are neighbours.
 *     When fewer than group_size - 1 remain, the seed is dropped, or, with
 *     fill_short, the group is completed with chunks drawn at random among
 *     those the rules allow (their real BM25 score is recorded, usually 0).
 * Seeds are processed one after another, so the result depends only on the
 * inputs and the seed, never on the number of threads.
 *
 * Interleaving (the paper's construction): the chunks of documents 1..n are
 * interleaved (d11 d21 .. dn1 d12 d22 ..), the documents taken n at a time
 * in input order, and the whole sequence is cut into consecutive groups of
 * group_size. A chunk that is a near-duplicate of a member of the group being
 * filled waits for the next group. The incomplete last group is dropped. */
#ifndef RV_BM25_GROUP_H
#define RV_BM25_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "bm25.h"

typedef struct {
    uint32_t group_size;    /* members per group, >= 2 */
    int other_docs;         /* neighbours only from other documents */
    uint32_t max_reuse;     /* 0: unlimited */
    int fill_short;         /* complete short groups with random chunks */
    uint64_t seed;          /* seed order and random fill */
    size_t n_seeds;         /* 0: every chunk is a seed */
    int threads;            /* <= 0: OpenMP default */
    /* Optional: called after each batch of seeds with the count done. */
    void (*progress)(void *ctx, uint64_t seeds_done);
    void *progress_ctx;
} rv_group_opts;

typedef struct {
    uint64_t groups;                /* groups emitted */
    uint64_t seeds;                 /* seeds considered */
    uint64_t seeds_reused_out;      /* seeds skipped: already used max_reuse times */
    uint64_t short_dropped;         /* seeds dropped: too few neighbours */
    uint64_t short_filled;          /* groups completed with random chunks */
    uint64_t filled_members;        /* members added by filling */
    uint64_t near_dup_skipped;      /* candidates skipped as near-duplicates */
    uint64_t same_doc_skipped;      /* candidates skipped by other_docs */
    uint64_t reuse_skipped;         /* candidates skipped by max_reuse */
    uint64_t deeper_searches;       /* candidate lists that had to be extended */
    uint64_t neighbours;            /* BM25 neighbours placed (fill excluded) */
    double neighbour_score_sum;
    uint64_t chunks_used;           /* chunks in at least one group */
    uint32_t max_uses;              /* most groups any chunk is in */
    uint64_t dropped_chunks;        /* interleave: chunks left over at the end */
} rv_group_stats;

/* Receives one group: member chunk numbers (member 0 is the seed in BM25
 * mode) and their BM25 scores for the seed's text as the query (0 for the
 * seed itself, as formats/group.md specifies). Returns 0, or -1 to stop with
 * an error (message set). */
typedef int (*rv_group_emit)(void *ctx, const uint32_t *members, const float *scores, uint32_t n);

/* BM25 groups over the chunks of `ix` (built with keep_forward; chunk i is
 * document i). fingerprint[i] is chunk i's near-duplicate key, doc_of[i] the
 * number of its document. */
int rv_bm25_groups(const rv_bm25_index *ix, const uint64_t *fingerprint, const uint32_t *doc_of,
                   const rv_group_opts *o, rv_group_emit emit, void *ctx, rv_group_stats *st);

/* Interleaved groups of n_chunks chunks; chunks with equal consecutive
 * doc_of values form one document. Scores passed to emit are 0. */
int rv_interleave_groups(size_t n_chunks, const uint32_t *doc_of, const uint64_t *fingerprint,
                         uint32_t group_size, uint32_t docs_per_group, rv_group_emit emit, void *ctx,
                         rv_group_stats *st);

/* The seed order: a permutation of 0..n-1 from `seed` (Fisher-Yates driven
 * by splitmix64). Exposed for tests. */
int rv_group_seed_order(size_t n, uint64_t seed, uint32_t *perm);

#endif
