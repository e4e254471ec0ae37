/* test_search.c — the blocked search engine (lib/dense_search.c):
 *   - against a brute-force ranking on integer-valued vectors (every score
 *     exact in any summation order, ties everywhere), over random shapes,
 *     dtypes, thread counts and tilings down to single rows, plain and MaxP;
 *   - against NumPy's float64 scores of random unit vectors
 *     (tests/fixtures/search/rand_*, scripts/make-search-fixtures.py): our
 *     scores are their float32 rounding, duplicates tie in corpus order;
 *   - against exact scores where sgemm's rounding misorders rows (dyadic
 *     values, near-duplicates, tied copies that need the whole-corpus rescan);
 *   - byte-identical results for any thread count; edge cases and errors. */
#include "test.h"
#include "dense_search.h"
#include "emb_matrix.h"
#include "error.h"
#include "half.h"

#include <math.h>

/* ------------------------------------------------------------ collecting */

typedef struct {
    size_t nq;
    uint32_t k;
    rv_scored *hits;   /* nq × k */
    uint32_t *n;
    size_t next_q;     /* emit must come in query order */
    int order_ok;
    size_t fail_at;    /* emit fails at this query (SIZE_MAX: never) */
} collector;

static void collector_init(collector *c, size_t nq, uint32_t k)
{
    c->nq = nq;
    c->k = k;
    c->hits = calloc(nq * (size_t)k + 1, sizeof *c->hits);
    c->n = calloc(nq + 1, sizeof *c->n);
    c->next_q = 0;
    c->order_ok = 1;
    c->fail_at = SIZE_MAX;
}

static void collector_free(collector *c)
{
    free(c->hits);
    free(c->n);
}

static int collect(void *ctx, size_t q, const rv_scored *hits, uint32_t n)
{
    collector *c = ctx;
    if (q != c->next_q++)
        c->order_ok = 0;
    if (q == c->fail_at)
        return rv_error_set("stop at %zu", q);
    if (q < c->nq && n <= c->k && n > 0) {
        memcpy(c->hits + q * c->k, hits, n * sizeof *hits);
        c->n[q] = n;
    }
    return 0;
}

/* ------------------------------------------------- brute-force reference */

static int cmp_scored(const void *pa, const void *pb)
{
    const rv_scored *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* Exact integer scores, every row (or every group's best row), fully sorted. */
static uint32_t reference(const int *q, const int *c, size_t nc, uint32_t dim, const uint32_t *group,
                          uint32_t n_groups, rv_scored *out)
{
    size_t n = 0;
    if (!group) {
        for (size_t r = 0; r < nc; r++) {
            long s = 0;
            for (uint32_t i = 0; i < dim; i++)
                s += (long)q[i] * c[r * dim + i];
            out[n++] = (rv_scored){(float)s, (uint32_t)r};
        }
    } else {
        /* per group: best score, first row reaching it; reported as (score, group) */
        rv_scored *best = malloc((n_groups + 1) * sizeof *best);
        uint32_t *best_row = malloc((n_groups + 1) * sizeof *best_row);
        for (uint32_t g = 0; g < n_groups; g++)
            best_row[g] = UINT32_MAX;
        for (size_t r = 0; r < nc; r++) {
            long s = 0;
            for (uint32_t i = 0; i < dim; i++)
                s += (long)q[i] * c[r * dim + i];
            uint32_t g = group[r];
            if (best_row[g] == UINT32_MAX || (float)s > best[g].score) {
                best[g].score = (float)s;
                best_row[g] = (uint32_t)r;
            }
        }
        /* order by (score desc, best row asc), then report the group */
        for (uint32_t g = 0; g < n_groups; g++)
            if (best_row[g] != UINT32_MAX)
                out[n++] = (rv_scored){best[g].score, best_row[g]};
        qsort(out, n, sizeof *out, cmp_scored);
        for (size_t i = 0; i < n; i++)
            out[i].index = group[out[i].index];
        free(best);
        free(best_row);
        return (uint32_t)n;
    }
    qsort(out, n, sizeof *out, cmp_scored);
    return (uint32_t)n;
}

/* Stores integer values in the given dtype (all exact: |v| ≤ 3). */
static void *store_ints(const int *v, size_t n, rv_dtype t)
{
    if (t == RV_DTYPE_F32) {
        float *f = malloc((n + 1) * sizeof *f);
        for (size_t i = 0; i < n; i++)
            f[i] = (float)v[i];
        return f;
    }
    uint16_t *h = malloc((n + 1) * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = t == RV_DTYPE_F16 ? rv_f32_to_f16((float)v[i]) : rv_f32_to_bf16((float)v[i]);
    return h;
}

static void test_random_integer_cases(void)
{
    for (int trial = 0; trial < 400; trial++) {
        size_t nq = test_rand() % 24, nc = test_rand() % 700;
        uint32_t dim = (uint32_t)(test_rand() % 40);
        int range = 1 + (int)(test_rand() % 3);   /* values in -range..range */
        int *q = malloc((nq * dim + 1) * sizeof *q), *c = malloc((nc * dim + 1) * sizeof *c);
        for (size_t i = 0; i < nq * dim; i++)
            q[i] = (int)(test_rand() % (2 * range + 1)) - range;
        for (size_t i = 0; i < nc * dim; i++)
            c[i] = (int)(test_rand() % (2 * range + 1)) - range;
        for (size_t r = 1; r < nc; r += 1 + test_rand() % 10)   /* duplicates of earlier rows */
            memcpy(c + r * dim, c + (test_rand() % r) * dim, dim * sizeof *c);
        rv_dense_params p = {0};
        uint32_t ks[] = {1, 3, 10, (uint32_t)nc, (uint32_t)nc + 5, 100000};
        p.k = ks[test_rand() % 6];
        if (p.k == 0)
            p.k = 1;
        p.threads = 1 + (int)(test_rand() % 3);
        if (trial % 2) {   /* tiny tilings reach every edge; defaults otherwise */
            p.query_tile = 1 + test_rand() % 9;
            p.corpus_block = 1 + test_rand() % 37;
            p.query_batch = 1 + test_rand() % 20;
            if (trial % 4 == 1)
                p.heap_budget = 1;   /* forces one query per batch */
        }
        uint32_t *group = NULL, n_groups = 0;
        if (trial % 3 == 0 && nc) {   /* MaxP with scattered groups */
            n_groups = 1 + (uint32_t)(test_rand() % nc);
            group = malloc(nc * sizeof *group);
            for (size_t r = 0; r < nc; r++)
                group[r] = (uint32_t)(test_rand() % n_groups);
            p.group_of_row = group;
            p.n_groups = n_groups;
        }
        if (trial % 5 == 0)
            p.margin = 1;   /* masses of ties then force whole-corpus rescans */
        rv_dtype t = (rv_dtype)(test_rand() % 3);
        void *qs = store_ints(q, nq * dim, RV_DTYPE_F32), *cs = store_ints(c, nc * dim, t);
        rv_dense_matrix qm = {qs, RV_DTYPE_F32, nq, dim}, cm = {cs, t, nc, dim};
        uint32_t cap = p.k;
        collector col;
        collector_init(&col, nq, cap > nc ? (uint32_t)nc + 1 : cap);
        int rc = rv_dense_search(&qm, &cm, &p, collect, NULL, &col, NULL);
        CHECK(rc == 0, "trial %d: %s", trial, rv_error_get());
        CHECK(col.order_ok && col.next_q == nq, "trial %d: emit order", trial);
        rv_scored *ref = malloc((nc + 1) * sizeof *ref);
        for (size_t qi = 0; qi < nq && rc == 0; qi++) {
            uint32_t nr = reference(q + qi * dim, c, nc, dim, group, n_groups, ref);
            uint32_t want = nr < p.k ? nr : p.k;
            CHECK(col.n[qi] == want, "trial %d q %zu: %u hits, expected %u", trial, qi, col.n[qi], want);
            for (uint32_t i = 0; i < want && i < col.n[qi]; i++) {
                rv_scored g = col.hits[qi * col.k + i];
                if (g.score != ref[i].score || g.index != ref[i].index) {
                    CHECK(0, "trial %d (nq %zu nc %zu dim %u k %u threads %d tile %zu block %zu %s%s) q %zu rank %u: "
                             "(%g, %u), expected (%g, %u)",
                          trial, nq, nc, dim, p.k, p.threads, p.query_tile, p.corpus_block, rv_dtype_name(t),
                          group ? " maxp" : "", qi, i, g.score, g.index, ref[i].score, ref[i].index);
                    break;
                }
            }
        }
        free(ref);
        collector_free(&col);
        free(qs);
        free(cs);
        free(q);
        free(c);
        free(group);
        if (test_failed_now)
            return;
    }
}

/* ------------------------------------------------ NumPy float64 reference */

static char path_buf[4096];
static const char *fixture(const char *name)
{
    const char *root = getenv("RV_ROOT");
    snprintf(path_buf, sizeof path_buf, "%s/tests/fixtures/search/%s", root ? root : ".", name);
    return path_buf;
}

static int load_npy(rv_emb_matrix *m, const char *name)
{
    FILE *f = fopen(fixture(name), "rb");
    if (!f)
        return rv_error_set("cannot open %s", path_buf);
    int rc = rv_emb_matrix_add_npy(m, f, name, NULL, NULL);
    fclose(f);
    return rc;
}

typedef struct {
    uint32_t row;
    double score;
} ref_hit;

enum { RAND_NQ = 16, RAND_K = 50 };

static int load_expected(const char *name, ref_hit ref[RAND_NQ][RAND_K])
{
    FILE *f = fopen(fixture(name), "r");
    if (!f)
        return -1;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned q, r, row;
        double s;
        if (line[0] == '#')
            continue;
        if (sscanf(line, "%u %u %u %lf", &q, &r, &row, &s) == 4 && q < RAND_NQ && r < RAND_K) {
            ref[q][r].row = row;
            ref[q][r].score = s;
            n++;
        }
    }
    fclose(f);
    return n == RAND_NQ * RAND_K ? 0 : -1;
}

static int cmp_ref(const void *pa, const void *pb)
{
    const ref_hit *a = pa, *b = pb;
    float fa = (float)a->score, fb = (float)b->score;
    if (fa != fb)
        return fa > fb ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

/* Our scores are the float32 rounding of the exact inner product, so they
 * equal NumPy's float64 scores rounded to float32, and our ranking is NumPy's
 * re-sorted by those float32 values (ties, duplicates included, by row). */
static void compare_with_numpy(const char *corpus_name, const char *expected_name, int threads, size_t tile,
                               size_t block, collector *first)
{
    static ref_hit ref[RAND_NQ][RAND_K];
    rv_emb_matrix qm, cm;
    rv_emb_matrix_init(&qm);
    rv_emb_matrix_init(&cm);
    REQUIRE(load_npy(&qm, "rand_queries.npy") == 0 && load_npy(&cm, corpus_name) == 0, "%s", rv_error_get());
    REQUIRE(load_expected(expected_name, ref) == 0, "cannot read %s", path_buf);
    REQUIRE(qm.rows == RAND_NQ, "queries");
    rv_dense_params p = {.k = RAND_K, .threads = threads, .query_tile = tile, .corpus_block = block};
    collector col;
    collector_init(&col, qm.rows, RAND_K);
    rv_dense_matrix qv = rv_emb_matrix_view(&qm), cv = rv_emb_matrix_view(&cm);
    rv_dense_stats st;
    CHECK(rv_dense_search(&qv, &cv, &p, collect, NULL, &col, &st) == 0, "%s", rv_error_get());
    CHECK(st.full_rescans == 0, "random data needs no whole-corpus rescans, had %llu",
          (unsigned long long)st.full_rescans);
    int dup_pairs = 0;
    for (size_t q = 0; q < RAND_NQ; q++) {
        qsort(ref[q], RAND_K, sizeof ref[q][0], cmp_ref);
        CHECK(col.n[q] == RAND_K, "q %zu: %u hits", q, col.n[q]);
        for (uint32_t r = 0; r < RAND_K; r++) {
            rv_scored g = col.hits[q * RAND_K + r];
            CHECK(g.index == ref[q][r].row && g.score == (float)ref[q][r].score,
                  "%s threads %d q %zu rank %u: (row %u, %.9g), NumPy (row %u, %.9g)", corpus_name, threads, q, r,
                  g.index, g.score, ref[q][r].row, (float)ref[q][r].score);
            if (r > 0) {   /* rows 390..399 duplicate rows 10..19: they must tie */
                rv_scored prev = col.hits[q * RAND_K + r - 1];
                if (g.index >= 390 && prev.index == g.index - 380)
                    dup_pairs += prev.score == g.score;
            }
        }
    }
    CHECK(dup_pairs > 0, "duplicated rows appear as adjacent tied hits");
    if (first) {
        if (!first->hits) {
            *first = col;   /* keep for the determinism comparison */
            col.hits = NULL;
            col.n = NULL;
        } else {
            CHECK(memcmp(first->hits, col.hits, RAND_NQ * RAND_K * sizeof *col.hits) == 0,
                  "threads %d: results differ bitwise from threads 1", threads);
        }
    }
    collector_free(&col);
    rv_emb_matrix_free(&qm);
    rv_emb_matrix_free(&cm);
}

static void test_numpy_reference(void)
{
    collector first = {0};
    for (int threads = 1; threads <= 4; threads++)
        compare_with_numpy("rand_corpus.npy", "rand_expected.txt", threads, 0, 0, &first);
    collector_free(&first);
    compare_with_numpy("rand_corpus.npy", "rand_expected.txt", 3, 5, 7, NULL);
    compare_with_numpy("rand_corpus_f2.npy", "rand_expected_f2.txt", 2, 0, 64, NULL);
    compare_with_numpy("rand_corpus_f2.npy", "rand_expected_f2.txt", 1, 3, 1000, NULL);
}

/* ------------------------------------------------- sgemm rounding errors */

/* Values k·2^-12 (|k| < 2^11): every product and every sum is exact in
 * double, while float32 sgemm rounds the sums, so its scores misorder rows
 * whose exact scores are close. The result must still be the exact ranking
 * of the float32-rounded exact scores. */
static void test_dyadic_vs_exact(void)
{
    for (int trial = 0; trial < 12; trial++) {
        size_t nq = 1 + test_rand() % 12, nc = 500 + test_rand() % 2500;
        uint32_t dim = 64 + (uint32_t)(test_rand() % 300);
        float *q = malloc(nq * dim * sizeof *q), *c = malloc(nc * dim * sizeof *c);
        for (size_t i = 0; i < nq * dim; i++)
            q[i] = (float)((int)(test_rand() % 4095) - 2047) * 0x1p-12f;
        for (size_t i = 0; i < nc * dim; i++)
            c[i] = (float)((int)(test_rand() % 4095) - 2047) * 0x1p-12f;
        /* near-duplicates: copies with one element nudged by one step */
        for (size_t r = 1; r < nc; r += 3) {
            memcpy(c + r * dim, c + (r - 1) * dim, dim * sizeof *c);
            c[r * dim + test_rand() % dim] += (test_rand() % 2 ? 1 : -1) * 0x1p-12f;
        }
        uint32_t *group = NULL, n_groups = 0;
        if (trial % 3 == 2) {
            n_groups = (uint32_t)(nc / 3);
            group = malloc(nc * sizeof *group);
            for (size_t r = 0; r < nc; r++)
                group[r] = (uint32_t)(test_rand() % n_groups);
        }
        rv_dense_params p = {.k = trial % 2 ? 100 : 10, .threads = 1 + trial % 2, .group_of_row = group,
                             .n_groups = n_groups, .margin = trial % 4 == 3 ? 1 : 0};
        rv_dense_matrix qm = {q, RV_DTYPE_F32, nq, dim}, cm = {c, RV_DTYPE_F32, nc, dim};
        collector col;
        collector_init(&col, nq, p.k);
        rv_dense_stats st;
        CHECK(rv_dense_search(&qm, &cm, &p, collect, NULL, &col, &st) == 0, "%s", rv_error_get());
        rv_scored *ref = malloc(nc * sizeof *ref);
        for (size_t qi = 0; qi < nq; qi++) {
            uint32_t n = 0;
            if (!group) {
                for (size_t r = 0; r < nc; r++) {
                    double sum = 0;   /* exact: sequential order is as good as any */
                    for (uint32_t i = 0; i < dim; i++)
                        sum += (double)q[qi * dim + i] * c[r * dim + i];
                    ref[n++] = (rv_scored){(float)sum, (uint32_t)r};
                }
                qsort(ref, n, sizeof *ref, cmp_scored);
            } else {
                for (uint32_t g = 0; g < n_groups; g++)
                    ref[g] = (rv_scored){-INFINITY, UINT32_MAX};
                for (size_t r = 0; r < nc; r++) {
                    double sum = 0;
                    for (uint32_t i = 0; i < dim; i++)
                        sum += (double)q[qi * dim + i] * c[r * dim + i];
                    rv_scored *b = &ref[group[r]];
                    if (b->index == UINT32_MAX || (float)sum > b->score)
                        *b = (rv_scored){(float)sum, (uint32_t)r};
                }
                for (uint32_t g = 0; g < n_groups; g++)
                    if (ref[g].index != UINT32_MAX)
                        ref[n++] = ref[g];
                qsort(ref, n, sizeof *ref, cmp_scored);
                for (uint32_t j = 0; j < n; j++)
                    ref[j].index = group[ref[j].index];
            }
            uint32_t want = n < p.k ? n : p.k;
            CHECK(col.n[qi] == want, "trial %d q %zu: %u hits, expected %u", trial, qi, col.n[qi], want);
            for (uint32_t j = 0; j < want; j++) {
                rv_scored g = col.hits[qi * p.k + j];
                if (g.score != ref[j].score || g.index != ref[j].index) {
                    CHECK(0, "trial %d q %zu rank %u: (%.9g, %u), exact (%.9g, %u)", trial, qi, j, g.score, g.index,
                          ref[j].score, ref[j].index);
                    break;
                }
            }
        }
        free(ref);
        collector_free(&col);
        free(q);
        free(c);
        free(group);
        if (test_failed_now)
            return;
    }
}

/* Many identical copies of the best row: sgemm gives them slightly
 * different scores (its summation order depends on the position in a tile),
 * the exact scores tie, so the answer is the copies in row order. With a
 * margin of 1 the candidates cannot prove that, and the whole-corpus rescan
 * must find the lowest rows. */
static void test_tied_copies_need_rescan(void)
{
    enum { NC = 3000, NQ = 37, DIM = 96, COPIES = 64 };
    float *c = malloc((size_t)NC * DIM * sizeof *c), *q = malloc((size_t)NQ * DIM * sizeof *q);
    for (size_t i = 0; i < (size_t)NC * DIM; i++)
        c[i] = (float)(test_rand() % 2000001) * 1e-6f - 1.0f;
    for (size_t i = 0; i < (size_t)NQ * DIM; i++)
        q[i] = (float)(test_rand() % 2000001) * 1e-6f - 1.0f;
    /* copies in the middle of early blocks and at the start of later ones
     * (where OpenBLAS's kernels round differently) */
    uint32_t rows[COPIES];
    for (int j = 0; j < COPIES; j++) {
        rows[j] = j < 48 ? (uint32_t)(50 + j * 43) : (uint32_t)(2048 + 256 * ((j - 48) / 8) + (j - 48) % 8);
        memcpy(c + (size_t)rows[j] * DIM, c + 50 * DIM, DIM * sizeof *c);
    }
    memcpy(q + 5 * DIM, c + 50 * DIM, DIM * sizeof *q);   /* query 5 is the copied row */
    for (uint32_t k = 1; k <= 10; k += 9) {
        rv_dense_params p = {.k = k, .threads = 2, .margin = 1, .corpus_block = 256, .query_tile = 16};
        rv_dense_matrix qm = {q, RV_DTYPE_F32, NQ, DIM}, cm = {c, RV_DTYPE_F32, NC, DIM};
        collector col;
        collector_init(&col, NQ, k);
        rv_dense_stats st;
        CHECK(rv_dense_search(&qm, &cm, &p, collect, NULL, &col, &st) == 0, "%s", rv_error_get());
        CHECK(st.full_rescans >= 1, "k %u: a whole-corpus rescan expected", k);
        for (uint32_t j = 0; j < k; j++)
            CHECK(col.hits[5 * k + j].index == rows[j] && col.hits[5 * k + j].score == col.hits[5 * k].score,
                  "k %u rank %u: row %u (%.9g), expected copy row %u", k, j, col.hits[5 * k + j].index,
                  col.hits[5 * k + j].score, rows[j]);
        collector_free(&col);
    }
    free(c);
    free(q);
}

/* ------------------------------------------------------------- edges */

static void test_edges(void)
{
    float q[4] = {1, 0, 0, 0}, c[12] = {0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    rv_dense_matrix qm = {q, RV_DTYPE_F32, 1, 4}, cm = {c, RV_DTYPE_F32, 3, 4};
    rv_dense_params p = {.k = 5};
    collector col;
    collector_init(&col, 1, 5);
    CHECK(rv_dense_search(&qm, &cm, &p, collect, NULL, &col, NULL) == 0, "%s", rv_error_get());
    CHECK(col.n[0] == 3 && col.hits[0].index == 1 && col.hits[1].index == 2 && col.hits[2].index == 0,
          "k > corpus ranks it all, ties in corpus order: %u: %u %u %u", col.n[0], col.hits[0].index,
          col.hits[1].index, col.hits[2].index);
    collector_free(&col);

    rv_dense_matrix empty = {c, RV_DTYPE_F32, 0, 4};
    collector_init(&col, 1, 5);
    CHECK(rv_dense_search(&qm, &empty, &p, collect, NULL, &col, NULL) == 0 && col.next_q == 1 && col.n[0] == 0,
          "empty corpus: every query gets no hits");
    collector_free(&col);
    collector_init(&col, 1, 5);
    rv_dense_matrix noq = {q, RV_DTYPE_F32, 0, 4};
    CHECK(rv_dense_search(&noq, &cm, &p, collect, NULL, &col, NULL) == 0 && col.next_q == 0, "no queries: no calls");
    collector_free(&col);

    rv_dense_matrix zq = {q, RV_DTYPE_F32, 1, 0}, zc = {c, RV_DTYPE_F32, 3, 0};
    collector_init(&col, 1, 5);
    CHECK(rv_dense_search(&zq, &zc, &p, collect, NULL, &col, NULL) == 0 && col.n[0] == 3 && col.hits[0].score == 0 &&
              col.hits[2].index == 2,
          "dimension 0: every score 0, corpus order");
    collector_free(&col);

    rv_dense_matrix q3 = {q, RV_DTYPE_F32, 1, 3};
    collector_init(&col, 1, 5);
    CHECK(rv_dense_search(&q3, &cm, &p, collect, NULL, &col, NULL) < 0 &&
              strstr(rv_error_get(), "query dimension 3 does not match corpus dimension 4"),
          "dimension mismatch: %s", rv_error_get());
    p.k = 0;
    CHECK(rv_dense_search(&qm, &cm, &p, collect, NULL, &col, NULL) < 0, "k 0 refused");
    p.k = 2;
    uint32_t bad_group[3] = {0, 1, 7};
    p.group_of_row = bad_group;
    p.n_groups = 2;
    CHECK(rv_dense_search(&qm, &cm, &p, collect, NULL, &col, NULL) < 0 && strstr(rv_error_get(), "group 7 out of range"),
          "group out of range: %s", rv_error_get());
    collector_free(&col);

    /* an emit failure stops the search and is reported */
    float qq[8] = {1, 0, 0, 0, 0, 1, 0, 0};
    rv_dense_matrix q2 = {qq, RV_DTYPE_F32, 2, 4};
    rv_dense_params p2 = {.k = 1};
    collector_init(&col, 2, 1);
    col.fail_at = 0;
    CHECK(rv_dense_search(&q2, &cm, &p2, collect, NULL, &col, NULL) < 0 && strstr(rv_error_get(), "stop at 0") &&
              col.next_q == 1,
          "emit failure: %s", rv_error_get());
    collector_free(&col);
}

static void on_progress(void *ctx, double done)
{
    double *last = ctx;
    if (done < *last)
        *last = -1e9;   /* must not go backwards */
    else
        *last = done;
}

static int ignore(void *ctx, size_t q, const rv_scored *h, uint32_t n)
{
    (void)ctx; (void)q; (void)h; (void)n;
    return 0;
}

static void test_progress(void)
{
    enum { NQ = 10, NC = 300, DIM = 4 };
    static float q[NQ * DIM], c[NC * DIM];
    for (int i = 0; i < NQ * DIM; i++)
        q[i] = (float)(i % 5);
    for (int i = 0; i < NC * DIM; i++)
        c[i] = (float)(i % 7);
    rv_dense_matrix qm = {q, RV_DTYPE_F32, NQ, DIM}, cm = {c, RV_DTYPE_F32, NC, DIM};
    rv_dense_params p = {.k = 3, .threads = 1, .corpus_block = 16, .query_batch = 4};
    double last = 0;
    CHECK(rv_dense_search(&qm, &cm, &p, ignore, on_progress, &last, NULL) == 0, "%s", rv_error_get());
    CHECK(last == NQ, "progress ends at %d queries, got %g", NQ, last);
}

int main(void)
{
    test_suite = "search";
    RUN_TEST(test_random_integer_cases);
    RUN_TEST(test_numpy_reference);
    RUN_TEST(test_dyadic_vs_exact);
    RUN_TEST(test_tied_copies_need_rescan);
    RUN_TEST(test_edges);
    RUN_TEST(test_progress);
    TEST_EXIT();
}
