/* test_search_load.c — loading embeddings for search (lib/emb_matrix.c):
 * emb streams of each dtype appended as shards (mixed dtypes widen to f32),
 * .npy files with id lists, dimension and id checks with their messages,
 * non-finite values, and the chunk -> document grouping of MaxP. */
#include "test.h"
#include "emb_matrix.h"
#include "error.h"
#include "half.h"
#include "records.h"
#include "stream.h"

#include <math.h>

/* Writes an emb stream of n vectors (ids "<prefix><i>") to a temporary file
 * and returns it rewound. */
static FILE *emb_stream(const char *prefix, uint32_t n, uint32_t dim, rv_dtype t, const float *values)
{
    FILE *f = tmpfile();
    if (!f)
        return NULL;
    char meta[128];
    snprintf(meta, sizeof meta, "{\"producer\":\"test\",\"dim\":%u,\"dtype\":\"%s\"}", dim, rv_dtype_name(t));
    rv_stream_writer *w = rv_stream_writer_open(f, "tmp", "emb", RV_EMB_VERSION, meta, 1);
    rv_buf rec = {0};
    for (uint32_t i = 0; w && i < n; i++) {
        char id[64];
        int len = snprintf(id, sizeof id, "%s%u", prefix, i);
        if (rv_emb_encode(&rec, id, (size_t)len, values + (size_t)i * dim, dim, t) < 0 ||
            rv_stream_write(w, rec.data, rec.len) < 0)
            break;
    }
    if (w) {
        rv_stream_writer_finish(w);
        rv_stream_writer_free(w);
    }
    rv_buf_free(&rec);
    rewind(f);
    return f;
}

static int id_is(const rv_emb_matrix *m, size_t row, const char *want)
{
    rv_str id = rv_emb_matrix_id(m, row);
    return id.len == strlen(want) && memcmp(id.p, want, id.len) == 0;
}

static float value_at(const rv_emb_matrix *m, size_t row, uint32_t i)
{
    float v;
    rv_dense_matrix view = rv_emb_matrix_view(m);
    float tmp[64];
    rv_dense_rows_f32(&view, row, 1, tmp);
    v = tmp[i];
    return v;
}

static void test_shards_and_widening(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
    rv_emb_matrix m;
    rv_emb_matrix_init(&m);
    FILE *f1 = emb_stream("a", 2, 3, RV_DTYPE_F16, a), *f2 = emb_stream("b", 2, 3, RV_DTYPE_BF16, b);
    REQUIRE(f1 && f2, "tmpfile");
    CHECK(rv_emb_matrix_add_stream(&m, f1, "one.emb") == 0, "%s", rv_error_get());
    CHECK(m.dtype == RV_DTYPE_F16 && m.rows == 2 && m.dim == 3, "f16 kept as f16");
    CHECK(rv_emb_matrix_add_stream(&m, f2, "two.emb") == 0, "%s", rv_error_get());
    CHECK(m.dtype == RV_DTYPE_F32 && m.rows == 4, "mixed dtypes widen to f32");
    CHECK(value_at(&m, 0, 0) == 1 && value_at(&m, 1, 2) == 6, "f16 values survive widening");
    CHECK(value_at(&m, 2, 0) == rv_bf16_to_f32(rv_f32_to_bf16(0.1f)), "bf16 value rounded once: %.9g",
          value_at(&m, 2, 0));
    CHECK(id_is(&m, 0, "a0") && id_is(&m, 3, "b1"), "ids in file order");
    CHECK(rv_emb_matrix_check_ids(&m, "corpus", 1) == 0, "%s", rv_error_get());
    fclose(f1);
    fclose(f2);

    /* a dimension that differs from the first shard's is an error naming both */
    float c[4] = {1, 2, 3, 4};
    FILE *f3 = emb_stream("c", 1, 4, RV_DTYPE_F32, c);
    CHECK(rv_emb_matrix_add_stream(&m, f3, "three.emb") < 0 &&
              strcmp(rv_error_get(), "three.emb: dimension 4 does not match dimension 3 of one.emb") == 0,
          "message: %s", rv_error_get());
    fclose(f3);
    /* an empty stream (dimension 0) adds nothing and checks nothing */
    FILE *f4 = emb_stream("e", 0, 0, RV_DTYPE_F32, c);
    CHECK(rv_emb_matrix_add_stream(&m, f4, "empty.emb") == 0 && m.rows == 4, "%s", rv_error_get());
    fclose(f4);
    rv_emb_matrix_free(&m);
}

static void test_not_finite(void)
{
    float v[6] = {1, 2, 3, 4, NAN, 6};
    rv_emb_matrix m;
    rv_emb_matrix_init(&m);
    FILE *f = emb_stream("x", 2, 3, RV_DTYPE_F32, v);
    CHECK(rv_emb_matrix_add_stream(&m, f, "nan.emb") < 0 &&
              strstr(rv_error_get(), "nan.emb: row 1 (id \"x1\"): vector[1]: expected a finite number, found NaN"),
          "message: %s", rv_error_get());
    fclose(f);
    rv_emb_matrix_free(&m);
    v[4] = INFINITY;
    rv_emb_matrix_init(&m);
    f = emb_stream("y", 2, 3, RV_DTYPE_BF16, v);
    CHECK(rv_emb_matrix_add_stream(&m, f, "inf.emb") < 0 && strstr(rv_error_get(), "found infinity"), "message: %s",
          rv_error_get());
    fclose(f);
    rv_emb_matrix_free(&m);
    v[4] = 70000.0f;   /* finite in f32, infinity once stored as f16 */
    rv_emb_matrix_init(&m);
    f = emb_stream("z", 2, 3, RV_DTYPE_F16, v);
    CHECK(rv_emb_matrix_add_stream(&m, f, "big.emb") < 0 && strstr(rv_error_get(), "found infinity"), "message: %s",
          rv_error_get());
    fclose(f);
    rv_emb_matrix_free(&m);
}

static void test_wrong_stream(void)
{
    FILE *f = tmpfile();
    REQUIRE(f, "tmpfile");
    rv_stream_writer *w = rv_stream_writer_open(f, "tmp", "doc", RV_DOC_VERSION, "{}", 1);
    rv_stream_writer_finish(w);
    rv_stream_writer_free(w);
    rewind(f);
    rv_emb_matrix m;
    rv_emb_matrix_init(&m);
    CHECK(rv_emb_matrix_add_stream(&m, f, "docs.rvs") < 0 && strstr(rv_error_get(), "docs.rvs") &&
              strstr(rv_error_get(), "doc stream"),
          "message: %s", rv_error_get());
    fclose(f);
    rv_emb_matrix_free(&m);
}

static char path_buf[4096];
static FILE *fixture(const char *name)
{
    const char *root = getenv("RV_ROOT");
    snprintf(path_buf, sizeof path_buf, "%s/tests/fixtures/search/%s", root ? root : ".", name);
    return fopen(path_buf, "rb");
}

static void test_npy_with_ids(void)
{
    rv_emb_matrix m;
    rv_emb_matrix_init(&m);
    FILE *f = fixture("npy_v1_f4.npy");
    REQUIRE(f, "open %s", path_buf);
    char ids[] = "first\nsecond\nthird\n";
    FILE *idf = fmemopen(ids, strlen(ids), "r");
    CHECK(rv_emb_matrix_add_npy(&m, f, "x.npy", idf, "x.ids") == 0, "%s", rv_error_get());
    CHECK(m.rows == 3 && m.dim == 4 && id_is(&m, 2, "third") && value_at(&m, 2, 3) == 2.75f, "rows and ids");
    fclose(f);
    fclose(idf);

    /* row-number ids; an f16 file after f32 rows is widened */
    f = fixture("npy_v3_f2.npy");
    CHECK(rv_emb_matrix_add_npy(&m, f, "y.npy", NULL, NULL) == 0, "%s", rv_error_get());
    CHECK(m.rows == 6 && id_is(&m, 3, "0") && id_is(&m, 5, "2") && value_at(&m, 4, 0) == 1.0f,
          "row-number ids for the second file");
    fclose(f);
    rv_emb_matrix_free(&m);

    const char *cases[][2] = {
        {"a\nb\n", "x.ids: expected 3 ids (one per row of x.npy), found 2 lines"},
        {"a\nb\nc\nd\n", "x.ids:4: expected 3 ids (one per row of x.npy), found more lines"},
        {"a\n\nc\n", "x.ids:2: expected an id, found an empty line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rv_emb_matrix_init(&m);
        f = fixture("npy_v1_f4.npy");
        idf = fmemopen((void *)cases[i][0], strlen(cases[i][0]), "r");
        CHECK(rv_emb_matrix_add_npy(&m, f, "x.npy", idf, "x.ids") < 0 && strcmp(rv_error_get(), cases[i][1]) == 0,
              "ids \"%s\": message %s", cases[i][0], rv_error_get());
        fclose(f);
        fclose(idf);
        rv_emb_matrix_free(&m);
    }
}

static void test_id_checks(void)
{
    float v[8] = {0};
    rv_emb_matrix m;
    rv_emb_matrix_init(&m);
    FILE *f = emb_stream("d", 2, 4, RV_DTYPE_F32, v), *g = emb_stream("d", 1, 4, RV_DTYPE_F32, v);
    CHECK(rv_emb_matrix_add_stream(&m, f, "a") == 0 && rv_emb_matrix_add_stream(&m, g, "b") == 0, "%s",
          rv_error_get());
    CHECK(rv_emb_matrix_check_ids(&m, "corpus", 0) < 0 &&
              strcmp(rv_error_get(), "corpus: id \"d0\" appears at rows 0 and 2; ids must be unique") == 0,
          "duplicate: %s", rv_error_get());
    fclose(f);
    fclose(g);
    rv_emb_matrix_free(&m);

    rv_emb_matrix_init(&m);
    char ids[] = "ok\nhas space\nthird\n";
    f = fixture("npy_v1_f4.npy");
    FILE *idf = fmemopen(ids, strlen(ids), "r");
    CHECK(rv_emb_matrix_add_npy(&m, f, "x.npy", idf, "x.ids") == 0, "%s", rv_error_get());
    CHECK(rv_emb_matrix_check_ids(&m, "queries", 0) == 0, "whitespace is fine outside TREC: %s", rv_error_get());
    CHECK(rv_emb_matrix_check_ids(&m, "queries", 1) < 0 && strstr(rv_error_get(), "queries: row 1: id \"has space\""),
          "whitespace in TREC: %s", rv_error_get());
    fclose(f);
    fclose(idf);
    rv_emb_matrix_free(&m);
}

static void test_doc_ids_and_groups(void)
{
    const char *cases[][3] = {
        {"D1#0", "#", "D1"},   {"a#b#12", "#", "a#b"}, {"solo", "#", "solo"},  {"#3", "#", ""},
        {"x::y::2", "::", "x::y"}, {"a", "long-sep", "a"}, {"a#", "#", "a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rv_str id = {cases[i][0], strlen(cases[i][0])};
        rv_str d = rv_doc_id_of(id, cases[i][1]);
        CHECK(d.len == strlen(cases[i][2]) && memcmp(d.p, cases[i][2], d.len) == 0, "doc id of %s with %s: %.*s",
              cases[i][0], cases[i][1], (int)d.len, d.p);
    }
    rv_emb_matrix m;
    rv_emb_matrix_init(&m);
    char ids[] = "B#0\nA#0\nB#1\nC\nA#1\n";
    FILE *f = fixture("npy_v1_f4.npy");   /* 3 rows: use it twice for 6 rows */
    FILE *idf = fmemopen(ids, 12, "r");   /* "B#0\nA#0\nB#1\n" */
    REQUIRE(rv_emb_matrix_add_npy(&m, f, "x.npy", idf, "x.ids") == 0, "%s", rv_error_get());
    fclose(f);
    fclose(idf);
    f = fixture("npy_v1_f4.npy");
    char ids2[] = "C\nA#1\nB#7\n";
    idf = fmemopen(ids2, strlen(ids2), "r");
    REQUIRE(rv_emb_matrix_add_npy(&m, f, "y.npy", idf, "y.ids") == 0, "%s", rv_error_get());
    fclose(f);
    fclose(idf);
    uint32_t *group, n_groups;
    size_t *first;
    REQUIRE(rv_emb_matrix_groups(&m, "#", &group, &n_groups, &first) == 0, "%s", rv_error_get());
    uint32_t want[6] = {0, 1, 0, 2, 1, 0};
    CHECK(n_groups == 3, "3 documents, got %u", n_groups);
    for (int r = 0; r < 6; r++)
        CHECK(group[r] == want[r], "row %d: group %u, expected %u", r, group[r], want[r]);
    CHECK(first[0] == 0 && first[1] == 1 && first[2] == 3, "first rows %zu %zu %zu", first[0], first[1], first[2]);
    free(group);
    free(first);
    rv_emb_matrix_free(&m);
}

int main(void)
{
    test_suite = "search_load";
    RUN_TEST(test_shards_and_widening);
    RUN_TEST(test_not_finite);
    RUN_TEST(test_wrong_stream);
    RUN_TEST(test_npy_with_ids);
    RUN_TEST(test_id_checks);
    RUN_TEST(test_doc_ids_and_groups);
    TEST_EXIT();
}
