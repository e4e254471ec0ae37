/* dense_search.h — exact maximum-inner-product top-k search of every query
 * against every corpus vector, on the CPU (no I/O: matrices in, ranked hits
 * out through a callback).
 *
 * Scores. The score of (query, row) is the inner product accumulated in
 * double precision in a fixed order and rounded to float32: in practice the
 * correctly rounded exact value. It does not depend on BLAS, the tiling, the
 * thread count or where a vector sits in its file, so identical vectors get
 * identical scores and tie, and the output bytes are the same everywhere.
 *
 * Method. Queries are taken in batches; inside a batch the corpus is cut
 * into fixed blocks of rows that OpenMP threads take in turn. Each thread
 * widens its block to float32 when stored as f16/bf16, multiplies it with the
 * batch's queries in tiles (cblas_sgemm, single-threaded inside our parallel
 * loop) and feeds every score row into its own bounded heap per query, which
 * keeps k + margin candidates. sgemm's float32 sums differ from the exact
 * score by at most eps = (dim + 4)·2^-23·|q|·max|c| (the summation error bound
 * for any order). After the per-thread heaps are merged, the candidates are
 * rescored exactly and re-ranked; when the margin cannot prove that no row
 * outside the candidates could reach the top k (the (k+margin)-th sgemm score
 * + eps is not below the k-th exact score, as with masses of tied scores),
 * that query is rescored exactly against the whole corpus. Memory beyond the
 * two matrices: the batch's heaps (threads × batch × (k + margin) entries), one
 * score tile and one widened block per thread.
 *
 * Order. Score descending, then corpus row ascending. With MaxP aggregation
 * (group_of_row set), a group's score is the maximum over its rows and groups
 * are ordered by that score, then by the first row reaching it. */
#ifndef RV_DENSE_SEARCH_H
#define RV_DENSE_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "records.h"
#include "topk.h"

/* A row-major matrix: f32 values are floats, f16/bf16 values uint16_t bit
 * patterns, each in host byte order. */
typedef struct {
    const void *data;
    rv_dtype dtype;
    size_t rows;
    uint32_t dim;
} rv_dense_matrix;

typedef struct {
    uint32_t k;                     /* hits per query (fewer when the corpus is smaller) */
    int threads;                    /* ≤ 0: the OpenMP default */
    const uint32_t *group_of_row;   /* NULL: rank rows; else MaxP over groups 0..n_groups-1 */
    uint32_t n_groups;
    /* Tuning (0 = default); tests set small values to exercise the edges. */
    size_t query_batch;             /* queries per batch (default 4096, fewer when heaps are large) */
    size_t query_tile;              /* queries per sgemm call (default 1024) */
    size_t corpus_block;            /* corpus rows per block (default 1024) */
    size_t heap_budget;             /* bytes for the per-thread heaps of a batch (default 256 MiB) */
    uint32_t margin;                /* extra candidates per query (default 32 + k/4) */
    uint32_t select_rows;           /* rv_dense_search_select with MaxP: rows asked of the selector per
                                       query (0 or less than k + margin: k + margin) */
} rv_dense_params;

typedef struct {
    uint64_t rescored;              /* candidates rescored exactly */
    uint64_t full_rescans;          /* queries rescored against the whole corpus */
} rv_dense_stats;

/* Receives query q's hits, best first: index is the corpus row, or the
 * group with MaxP (hits may be NULL when n is 0). Called in query order from
 * the calling thread. Returns 0, or -1 (with an error set) to stop. */
typedef int (*rv_dense_emit_fn)(void *ctx, size_t q, const rv_scored *hits, uint32_t n);

/* Optional: work done so far, in queries (fractional inside a batch).
 * Called from the calling thread only. */
typedef void (*rv_dense_progress_fn)(void *ctx, double queries_done);

/* Searches every query; stats (optional) receives counts. Fails (-1, error
 * set) on mismatched dimensions, a corpus of 2^32 rows or more, an
 * out-of-range group, allocation failure or an emit failure. */
int rv_dense_search(const rv_dense_matrix *queries, const rv_dense_matrix *corpus, const rv_dense_params *p,
                    rv_dense_emit_fn emit, rv_dense_progress_fn progress, void *ctx, rv_dense_stats *stats);

/* An outside scorer of one batch of queries (the GPU backend of rv-search):
 * given the batch widened to float32 (qn × dim, row-major), writes for query
 * i its `cap` best corpus rows by its own float32 scores (all rows when the
 * corpus has fewer) to cand[i*cap ...], in any order, each with the score it
 * computed, and their number to n[i]. Returns 0, or -1 with an error set.
 * Its scores must carry no more error than sgemm's: float32 sums of the
 * float32 products q_i·c_i in any order (fp32 GEMM; no TF32, no 16-bit
 * operands), so the error bound in the header comment holds for them. */
typedef int (*rv_dense_select_fn)(void *ctx, const float *queries, size_t qn, uint32_t dim, uint32_t cap,
                                  rv_scored *cand, uint32_t *n);

/* rv_dense_search with the candidates of each batch taken from `select`
 * instead of the CPU's blocked sgemm; rescoring, ordering and output are the
 * same code, so the hits are identical to rv_dense_search's. The selector
 * is asked for cap = k + margin rows per query (with MaxP, select_rows when
 * larger: a document may fill several of them), never more than the corpus.
 * Completeness: a row the selector left out scored at most the lowest score
 * it returned, w; when w + eps (the bound above) is not below the k-th exact
 * candidate score, or fewer than k rows (documents) are candidates, the
 * query is rescored exactly against the whole corpus. */
int rv_dense_search_select(const rv_dense_matrix *queries, const rv_dense_matrix *corpus, const rv_dense_params *p,
                           rv_dense_select_fn select, void *select_ctx, rv_dense_emit_fn emit,
                           rv_dense_progress_fn progress, void *ctx, rv_dense_stats *stats);

/* The score defined above, of a float32 query against row r of m. */
float rv_dense_exact_score(const float *q, const rv_dense_matrix *m, size_t r);

/* Widens rows [r0, r0+n) of m to float32 (n * dim values). */
void rv_dense_rows_f32(const rv_dense_matrix *m, size_t r0, size_t n, float *out);

#endif
