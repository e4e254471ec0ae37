/* test_eval_parse.c — rv-eval's inputs: qrels (TREC and BEIR, detected),
 * TREC runs and run streams into one ranking; trec_eval's order (score
 * descending, ties by document id descending in byte order), repeats,
 * grouping, and the errors that name file:line and field. */
#include "test.h"

#include "error.h"
#include "qrels.h"
#include "records.h"
#include "stream.h"
#include "trec_run.h"

#include <math.h>
#include <omp.h>

static rv_qrels *qrels_of(const char *text)
{
    return rv_qrels_parse(text, strlen(text), "q.txt");
}

static rv_trec_run *run_of(const char *text)
{
    return rv_trec_run_parse(text, strlen(text), "run.txt");
}

static int has(const char *msg, const char *part)
{
    return strstr(msg, part) != NULL;
}

/* The ranked document ids of query `qid`, joined by spaces. */
static void ranking(const rv_trec_run *r, const char *qid, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < rv_trec_run_n_queries(r); i++) {
        size_t len, n;
        const char *q = rv_trec_run_qid(r, i, &len);
        if (len != strlen(qid) || memcmp(q, qid, len) != 0)
            continue;
        const rv_ranked_doc *d = rv_trec_run_docs(r, i, &n);
        size_t at = 0;
        for (size_t k = 0; k < n && at + d[k].len + 2 < cap; k++)
            at += (size_t)snprintf(out + at, cap - at, "%s%.*s", k ? " " : "", (int)d[k].len, d[k].docid);
    }
}

static void test_qrels_trec(void)
{
    rv_qrels *q = qrels_of("q1 0 a 1\nq1 0 b 3\n\nq2\t0\tx\t0\nq1 0 c -1\nq1 0 d 2\nq1 0 b 1\n");
    REQUIRE(q, "%s", rv_error_get());
    CHECK(rv_qrels_get_format(q) == RV_QRELS_TREC, "format");
    CHECK(rv_qrels_n_queries(q) == 2 && rv_qrels_n_judgments(q) == 5, "%zu queries %zu judgments",
          rv_qrels_n_queries(q), rv_qrels_n_judgments(q));
    size_t line, n;
    CHECK(rv_qrels_n_duplicates(q, &line) == 1 && line == 7, "duplicate at line %zu", line);
    size_t q1 = rv_qrels_find(q, "q1", 2);
    REQUIRE(q1 != SIZE_MAX && rv_qrels_find(q, "q3", 2) == SIZE_MAX && rv_qrels_find(q, "q", 1) == SIZE_MAX,
            "find");
    const int32_t *g = rv_qrels_gains(q, q1, &n);
    /* b's last judgment (1) counts: gains 2, 1, 1 */
    CHECK(n == 3 && g[0] == 2 && g[1] == 1 && g[2] == 1, "gains n=%zu", n);
    const rv_judgment *j = rv_qrels_judgments(q, q1, &n);
    CHECK(n == 4, "q1 has %zu judgments", n);
    int seen_c = 0;
    for (size_t i = 0; i < n; i++)
        if (j[i].len == 1 && j[i].docid[0] == 'c')
            seen_c = j[i].rel == -1;
    CHECK(seen_c, "negative judgment kept as judged");
    g = rv_qrels_gains(q, rv_qrels_find(q, "q2", 2), &n);
    CHECK(n == 0, "q2 has no positive judgment");
    rv_qrels_free(q);
}

static void test_qrels_beir(void)
{
    const char *texts[] = {
        "query-id\tcorpus-id\tscore\r\nq1\td 1\t2\r\nq1\te\t1\r\n",   /* header, CRLF, id with a space */
        "q1\td 1\t2\nq1\te\t1\n",                                      /* no header */
    };
    for (size_t t = 0; t < 2; t++) {
        rv_qrels *q = qrels_of(texts[t]);
        REQUIRE(q, "text %zu: %s", t, rv_error_get());
        size_t n;
        CHECK(rv_qrels_get_format(q) == RV_QRELS_BEIR && rv_qrels_n_queries(q) == 1, "text %zu", t);
        const rv_judgment *j = rv_qrels_judgments(q, 0, &n);
        CHECK(n == 2 && j[0].len == 3 && memcmp(j[0].docid, "d 1", 3) == 0 && j[0].rel == 2, "text %zu", t);
        rv_qrels_free(q);
    }
    rv_qrels *q = qrels_of("q1 d1 1\nq1 d2 0\n");   /* three blank-separated columns */
    CHECK(q && rv_qrels_get_format(q) == RV_QRELS_BEIR && rv_qrels_n_judgments(q) == 2, "blank BEIR");
    rv_qrels_free(q);
}

static void test_qrels_errors(void)
{
    struct { const char *text, *msg; } cases[] = {
        {"q1 0 a 1\nq1 0 b\n", "q.txt:2: expected 4 fields (qid iter docid rel), found 3"},
        {"q1 0 a 1\nq1 0 b x\n", "q.txt:2: field 4 (rel): expected an integer judgment, found \"x\""},
        {"q1 0 a 1.5\n", "q.txt:1: field 4 (rel)"},
        {"q1\ta\t1\nquery-id\tcorpus-id\tscore\n", "q.txt:2: field 3 (score)"},
        {"q1\ta\t1\nq1 b 1\n", "q.txt:2: expected 3 tab-separated fields"},
        {"q1\t\t1\n", "q.txt:1: field 2 (corpus-id): expected an id"},
        {"q1 0 a 1 extra\n", "q.txt:1: expected TREC qrels"},
        {"\n  \n", "q.txt: no judgments found"},
        {"q1 0 a 99999999999\n", "q.txt:1: field 4 (rel)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rv_qrels *q = qrels_of(cases[i].text);
        CHECK(!q && has(rv_error_get(), cases[i].msg), "case %zu: got \"%s\"", i, q ? "(accepted)" : rv_error_get());
        rv_qrels_free(q);
    }
}

static void test_run_ranking_order(void)
{
    /* ties by document id, descending byte order: "d\xc3\xa9" > "d2" > "d10" > "d1" > "D" */
    rv_trec_run *r = run_of("q1 Q0 d1 1 1.0 t\n"
                            "q1 Q0 D 2 1 t\n"
                            "q1 Q0 d10 3 1.00 t\n"
                            "q1 Q0 top 9 2.5 t\n"
                            "q1 Q0 d\xc3\xa9 4 1e0 t\n"
                            "q1 Q0 d2 5 +1 t\n"
                            "q1 Q0 low 6 -inf t\n"
                            "q1 Q0 neg 7 -3 t\n");
    REQUIRE(r, "%s", rv_error_get());
    char got[256];
    ranking(r, "q1", got, sizeof got);
    CHECK(strcmp(got, "top d\xc3\xa9 d2 d10 d1 D neg low") == 0, "ranking: %s", got);
    CHECK(!rv_trec_run_is_stream(r) && rv_trec_run_n_docs(r) == 8, "docs");
    rv_trec_run_free(r);
}

static void test_run_grouping_and_repeats(void)
{
    rv_trec_run *r = run_of("b Q0 x 1 1 t\n"
                            "a Q0 y 1 5 t\n"
                            "\n"
                            "b Q0 z 2 3 t\n"
                            "a Q0 y 2 7 t\n"     /* repeat, higher: 7 counts */
                            "b Q0 x 3 0.5 t\n"   /* repeat, lower: 1 stays */
                            "a Q0 w 3 6 t\n");
    REQUIRE(r, "%s", rv_error_get());
    CHECK(rv_trec_run_n_queries(r) == 2, "queries");
    size_t len, n;
    CHECK(memcmp(rv_trec_run_qid(r, 0, &len), "b", 1) == 0 && len == 1, "first query is b");
    char got[128];
    ranking(r, "a", got, sizeof got);
    CHECK(strcmp(got, "y w") == 0, "a: %s", got);
    ranking(r, "b", got, sizeof got);
    CHECK(strcmp(got, "z x") == 0, "b: %s", got);
    const rv_ranked_doc *d = rv_trec_run_docs(r, 1, &n);
    CHECK(n == 2 && d[0].score == 7 && d[0].query == 1, "a's y keeps 7");
    rv_run_repeat rep;
    CHECK(rv_trec_run_n_repeats(r, &rep) == 2 && rep.line == 5 && rep.docid_len == 1 && rep.docid[0] == 'y' &&
              rep.qid[0] == 'a',
          "first repeat: line %zu", rep.line);
    CHECK(rv_trec_run_n_docs(r) == 4, "%zu docs after merging", rv_trec_run_n_docs(r));
    rv_trec_run_free(r);

    r = run_of("");
    CHECK(r && rv_trec_run_n_queries(r) == 0, "empty run");
    rv_trec_run_free(r);
}

static void test_run_errors(void)
{
    struct { const char *text, *msg; } cases[] = {
        {"q Q0 d 1 1 t\nq Q0 e 2 1\n", "run.txt:2: expected 6 fields (qid Q0 docid rank score tag), found 5"},
        {"q Q0 d 1 1 t x\n", "run.txt:1: expected 6 fields"},
        {"q Q0 d 1 high t\n", "run.txt:1: field 5 (score): expected a number, found \"high\""},
        {"q Q0 d 1 nan t\n", "run.txt:1: field 5 (score)"},
        {"\n\nq Q0 d 1 1.2.3 t\n", "run.txt:3: field 5 (score)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rv_trec_run *r = run_of(cases[i].text);
        CHECK(!r && has(rv_error_get(), cases[i].msg), "case %zu: got \"%s\"", i, r ? "(accepted)" : rv_error_get());
        rv_trec_run_free(r);
    }
}

/* A run stream in memory: records {qid, hits}. */
typedef struct { const char *qid; int n; const char *docs[4]; double scores[4]; } rec;

static char *stream_of(const rec *recs, size_t n_recs, size_t *len)
{
    char *mem = NULL;
    FILE *f = open_memstream(&mem, len);
    if (!f)
        return NULL;
    rv_stream_writer *w = rv_stream_writer_open(f, "mem", "run", RV_RUN_VERSION, NULL, 1);
    rv_buf b = {0};
    for (size_t i = 0; w && i < n_recs; i++) {
        rv_run_begin(&b, recs[i].qid, strlen(recs[i].qid), (uint32_t)recs[i].n);
        for (int k = 0; k < recs[i].n; k++)
            rv_run_add(&b, recs[i].docs[k], strlen(recs[i].docs[k]), recs[i].scores[k]);
        rv_stream_write(w, b.data, b.len);
    }
    if (w) {
        rv_stream_writer_finish(w);
        rv_stream_writer_free(w);
    }
    rv_buf_free(&b);
    fclose(f);
    return mem;
}

static void test_run_stream_equals_text(void)
{
    rec recs[] = {
        {"q1", 3, {"d1", "d10", "d2"}, {1.0, 1.0, 0.5}},
        {"q2", 0, {0}, {0}},                              /* a query with no documents */
        {"q1", 2, {"d3", "d1"}, {4.0, 0.25}},             /* more of q1; d1 repeats, lower */
    };
    size_t len;
    char *mem = stream_of(recs, 3, &len);
    REQUIRE(mem, "cannot build the stream");
    rv_trec_run *s = rv_trec_run_parse(mem, len, "mem.rvs");
    REQUIRE(s, "%s", rv_error_get());
    rv_trec_run *t = run_of("q1 Q0 d1 1 1.0 t\nq1 Q0 d10 2 1.0 t\nq1 Q0 d2 3 0.5 t\nq1 Q0 d3 4 4 t\n"
                            "q1 Q0 d1 5 0.25 t\n");
    REQUIRE(t, "%s", rv_error_get());
    char a[128], b[128];
    ranking(s, "q1", a, sizeof a);
    ranking(t, "q1", b, sizeof b);
    CHECK(strcmp(a, b) == 0 && strcmp(a, "d3 d10 d1 d2") == 0, "stream %s, text %s", a, b);
    size_t n, qlen;
    CHECK(rv_trec_run_is_stream(s) && rv_trec_run_n_queries(s) == 2, "stream has q1 and q2");
    rv_trec_run_qid(s, 1, &qlen);
    rv_trec_run_docs(s, 1, &n);
    CHECK(qlen == 2 && n == 0, "q2 has no documents");
    rv_run_repeat rep;
    CHECK(rv_trec_run_n_repeats(s, &rep) == 1 && rep.line == 0 && rep.docid_len == 2, "stream repeat");
    rv_trec_run_free(s);
    rv_trec_run_free(t);

    /* truncated: the stream reader's error comes through */
    s = rv_trec_run_parse(mem, len - 9, "cut.rvs");
    CHECK(!s && has(rv_error_get(), "cut.rvs"), "truncated stream: %s", s ? "(accepted)" : rv_error_get());
    rv_trec_run_free(s);
    free(mem);

    rec bad[] = {{"q1", 1, {"d1"}, {NAN}}};
    mem = stream_of(bad, 1, &len);
    REQUIRE(mem, "cannot build the stream");
    s = rv_trec_run_parse(mem, len, "nan.rvs");
    CHECK(!s && has(rv_error_get(), "nan.rvs: record 0") && has(rv_error_get(), "NaN"), "NaN score: %s",
          s ? "(accepted)" : rv_error_get());
    rv_trec_run_free(s);
    free(mem);
}

/* A 2 MB run with queries spread over the file, repeats, blank lines and
 * CRLF, parsed by 1 and by 8 threads (pieces of the text): same result. */
static char *big_run(size_t *len)
{
    size_t cap = 3u << 20, at = 0;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    for (int i = 0; at + 200 < cap - (1u << 20); i++) {
        int q = (int)(test_rand() % 300);
        if (test_rand() % 50 == 0)
            t[at++] = '\n';
        at += (size_t)snprintf(t + at, cap - at, "q%d Q0 d%d %d %d.%d tag%s\n", q, (int)(test_rand() % 400), i,
                               (int)(test_rand() % 20), (int)(test_rand() % 10), test_rand() % 9 ? "" : "\r");
    }
    at += (size_t)snprintf(t + at, cap - at, "q7 Q0 last 1 0.5 tag");   /* no final newline */
    *len = at;
    return t;
}

static void test_run_threads_agree(void)
{
    size_t len = 0;
    char *text = big_run(&len);
    REQUIRE(text, "malloc");
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    rv_trec_run *one = rv_trec_run_parse(text, len, "big.run");
    omp_set_num_threads(8);
    rv_trec_run *many = rv_trec_run_parse(text, len, "big.run");
    REQUIRE(one && many, "%s", rv_error_get());
    CHECK(rv_trec_run_n_queries(one) == rv_trec_run_n_queries(many) &&
              rv_trec_run_n_docs(one) == rv_trec_run_n_docs(many) && rv_trec_run_n_docs(one) > 1000,
          "%zu/%zu queries, %zu/%zu docs", rv_trec_run_n_queries(one), rv_trec_run_n_queries(many),
          rv_trec_run_n_docs(one), rv_trec_run_n_docs(many));
    for (size_t q = 0; q < rv_trec_run_n_queries(one) && q < rv_trec_run_n_queries(many); q++) {
        size_t l1, l2, n1, n2;
        const char *a = rv_trec_run_qid(one, q, &l1), *b = rv_trec_run_qid(many, q, &l2);
        const rv_ranked_doc *d1 = rv_trec_run_docs(one, q, &n1), *d2 = rv_trec_run_docs(many, q, &n2);
        REQUIRE(l1 == l2 && memcmp(a, b, l1) == 0 && n1 == n2, "query %zu differs", q);
        for (size_t k = 0; k < n1; k++)
            REQUIRE(d1[k].len == d2[k].len && memcmp(d1[k].docid, d2[k].docid, d1[k].len) == 0 &&
                        d1[k].score == d2[k].score && d1[k].hash == d2[k].hash,
                    "query %zu rank %zu differs", q, k);
    }
    rv_run_repeat r1, r2;
    CHECK(rv_trec_run_n_repeats(one, &r1) == rv_trec_run_n_repeats(many, &r2) && r1.line == r2.line &&
              r1.line > 0,
          "repeats: first at line %zu and %zu", r1.line, r2.line);
    /* the first repeat is the earliest line whose (query, doc) came before */
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    CHECK(r1.line <= n_lines + 1, "line %zu of %zu", r1.line, n_lines + 1);
    rv_trec_run_free(one);
    rv_trec_run_free(many);

    /* two bad lines far apart: the first is reported, whatever the threads */
    size_t bad1 = len / 3, bad2 = 2 * len / 3;
    while (text[bad1] != '\n')
        bad1++;
    while (text[bad2] != '\n')
        bad2++;
    char *score1 = memchr(text + bad1 + 1, '.', 100), *score2 = memchr(text + bad2 + 1, '.', 100);
    REQUIRE(score1 && score2, "no score found");
    *score1 = 'x';
    *score2 = 'x';
    size_t want_line = 1;
    for (char *p = text; p < score1; p++)
        want_line += *p == '\n';
    char want[64];
    snprintf(want, sizeof want, "big.run:%zu: field 5 (score)", want_line);
    for (int threads = 1; threads <= 8; threads *= 8) {
        omp_set_num_threads(threads);
        rv_trec_run *r = rv_trec_run_parse(text, len, "big.run");
        CHECK(!r && strstr(rv_error_get(), want), "%d threads: got \"%s\", want \"%s\"", threads,
              r ? "(accepted)" : rv_error_get(), want);
        rv_trec_run_free(r);
    }
    omp_set_num_threads(saved);
    free(text);
}

int main(void)
{
    test_suite = "eval_parse";
    RUN_TEST(test_qrels_trec);
    RUN_TEST(test_qrels_beir);
    RUN_TEST(test_qrels_errors);
    RUN_TEST(test_run_ranking_order);
    RUN_TEST(test_run_grouping_and_repeats);
    RUN_TEST(test_run_errors);
    RUN_TEST(test_run_stream_equals_text);
    RUN_TEST(test_run_threads_agree);
    TEST_EXIT();
}
