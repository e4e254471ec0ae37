/* test_eval_measures.c — the measures on rankings small enough to work out
 * from the definitions by hand (each expected value below is written as the
 * formula it comes from), measure names, and the evaluation options checked
 * as properties: --max-docs equals a truncated run, --ignore-identical-ids
 * equals a run without those lines, --complete adds judged queries missing
 * from the run as zeros. */
#include "test.h"

#include "error.h"
#include "ir_eval.h"
#include "ir_measures.h"
#include "qrels.h"
#include "trec_run.h"

#include <math.h>

static int close_to(double a, double b)
{
    return fabs(a - b) <= 1e-12;
}

static void add_all(rv_measure_set *ms, const char *const *specs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rv_measures_add(ms, specs[i]) < 0)
            printf("  cannot add %s: %s\n", specs[i], rv_error_get());
}

static double value_of(const rv_measure_set *ms, const double *v, const char *name)
{
    for (size_t j = 0; j < ms->n; j++)
        if (strcmp(ms->items[j].name, name) == 0)
            return v[j];
    printf("  no measure %s\n", name);
    return NAN;
}

static void test_measure_names(void)
{
    rv_measure_set ms = {0};
    REQUIRE(rv_measures_add(&ms, "P.10,5,10") == 0, "%s", rv_error_get());
    CHECK(ms.n == 2 && strcmp(ms.items[0].name, "P_5") == 0 && strcmp(ms.items[1].name, "P_10") == 0,
          "P.10,5,10 gives %zu values", ms.n);
    REQUIRE(rv_measures_add(&ms, "P.5") == 0 && ms.n == 2, "a value already there is not added twice");
    REQUIRE(rv_measures_add(&ms, "ndcg_cut") == 0, "%s", rv_error_get());
    const char *defaults[] = {"ndcg_cut_5", "ndcg_cut_10", "ndcg_cut_15", "ndcg_cut_20", "ndcg_cut_30",
                              "ndcg_cut_100", "ndcg_cut_200", "ndcg_cut_500", "ndcg_cut_1000"};
    CHECK(ms.n == 11, "trec_eval's nine default cutoffs, got %zu values", ms.n - 2);
    for (size_t i = 0; i < 9 && i + 2 < ms.n; i++)
        CHECK(strcmp(ms.items[i + 2].name, defaults[i]) == 0, "%s", ms.items[i + 2].name);
    const char *plain[] = {"ndcg", "map", "Rprec", "recip_rank", "num_q", "num_ret", "num_rel", "num_rel_ret"};
    for (size_t i = 0; i < 8; i++) {
        CHECK(rv_measures_add(&ms, plain[i]) == 0 && strcmp(ms.items[ms.n - 1].name, plain[i]) == 0, "%s", plain[i]);
        CHECK(rv_measure_is_count(&ms.items[ms.n - 1]) == (strncmp(plain[i], "num_", 4) == 0), "%s count", plain[i]);
    }
    rv_measures_free(&ms);

    struct { const char *spec, *msg; } bad[] = {
        {"ndcg_cut.", "positive integers"}, {"P.0", "positive integers"},  {"P.5,,6", "positive integers"},
        {"P.a", "positive integers"},       {"P.5x", "positive integers"}, {"map.5", "takes no parameters"},
        {"ndcg.1=3", "takes no parameters"}, {"foo", "unknown measure \"foo\""}, {"NDCG", "unknown measure"},
        {"P.99999999999999999999999", "too large"}, {"", "unknown measure"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rv_measure_set s = {0};
        CHECK(rv_measures_add(&s, bad[i].spec) < 0 && strstr(rv_error_get(), bad[i].msg), "\"%s\": %s", bad[i].spec,
              rv_error_get());
        rv_measures_free(&s);
    }
}

static const char *const every[] = {"ndcg_cut.1,2,5,10", "ndcg", "map", "map_cut.2,5,10", "P.1,5,10",
                                    "recall.1,5,10", "Rprec", "recip_rank", "num_q", "num_ret",
                                    "num_rel", "num_rel_ret"};

static void test_worked_example(void)
{
    /* judgments of the ranked documents, and of the query (4 positive: 3, 2, 1, 1;
     * the 1 at rank 4 is retrieved, the other 1 is not) */
    const int32_t rels[] = {2, RV_REL_UNJUDGED, 0, 1, 3};
    const int32_t gains[] = {3, 2, 1, 1};
    rv_measure_set ms = {0};
    add_all(&ms, every, sizeof every / sizeof *every);
    rv_measure_work w = {0};
    double v[64];
    REQUIRE(ms.n < 64 && rv_measures_eval(&ms, rels, 5, gains, 4, 1, &w, v) == 0, "eval");
    double dcg5 = 2 / log2(2) + 1 / log2(5) + 3 / log2(6);
    double idcg5 = 3 / log2(2) + 2 / log2(3) + 1 / log2(4) + 1 / log2(5);
    double idcg_all = idcg5;   /* only 4 positive judgments */
    struct { const char *name; double want; } cases[] = {
        {"ndcg_cut_1", (2 / log2(2)) / (3 / log2(2))},
        {"ndcg_cut_2", (2 / log2(2)) / (3 / log2(2) + 2 / log2(3))},
        {"ndcg_cut_5", dcg5 / idcg5},
        {"ndcg_cut_10", dcg5 / idcg5},
        {"ndcg", dcg5 / idcg_all},
        {"map", (1.0 / 1 + 2.0 / 4 + 3.0 / 5) / 4},
        {"map_cut_2", (1.0 / 1) / 4},
        {"map_cut_5", (1.0 / 1 + 2.0 / 4 + 3.0 / 5) / 4},
        {"P_1", 1.0},
        {"P_5", 3.0 / 5},
        {"P_10", 3.0 / 10},   /* divides by 10 though 5 were retrieved */
        {"recall_1", 1.0 / 4},
        {"recall_5", 3.0 / 4},
        {"Rprec", 2.0 / 4},   /* 2 relevant in the top R = 4 */
        {"recip_rank", 1.0},
        {"num_q", 1},
        {"num_ret", 5},
        {"num_rel", 4},
        {"num_rel_ret", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double got = value_of(&ms, v, cases[i].name);
        CHECK(close_to(got, cases[i].want), "%s = %.17g, want %.17g", cases[i].name, got, cases[i].want);
    }

    /* relevance level 2: relevant = judged 2 or more (ranks 1 and 5; R = 2),
     * while every positive judgment still counts as gain */
    REQUIRE(rv_measures_eval(&ms, rels, 5, gains, 4, 2, &w, v) == 0, "eval");
    struct { const char *name; double want; } level2[] = {
        {"ndcg_cut_5", dcg5 / idcg5}, {"map", (1.0 / 1 + 2.0 / 5) / 2}, {"P_5", 2.0 / 5},
        {"recall_5", 1.0},            {"Rprec", 1.0 / 2},              {"num_rel", 2},
        {"num_rel_ret", 2},
    };
    for (size_t i = 0; i < sizeof level2 / sizeof *level2; i++) {
        double got = value_of(&ms, v, level2[i].name);
        CHECK(close_to(got, level2[i].want), "level 2: %s = %.17g, want %.17g", level2[i].name, got, level2[i].want);
    }

    /* nothing relevant first: recip_rank 1/3 */
    const int32_t late[] = {0, -2, 1};
    REQUIRE(rv_measures_eval(&ms, late, 3, gains + 2, 2, 1, &w, v) == 0, "eval");
    CHECK(close_to(value_of(&ms, v, "recip_rank"), 1.0 / 3), "recip_rank");
    CHECK(close_to(value_of(&ms, v, "Rprec"), 0.0), "Rprec: none relevant in the top 2");
    CHECK(close_to(value_of(&ms, v, "ndcg_cut_2"), 0.0), "ndcg_cut_2");
    rv_measure_work_free(&w);
    rv_measures_free(&ms);
}

static void test_degenerate_queries(void)
{
    rv_measure_set ms = {0};
    add_all(&ms, every, sizeof every / sizeof *every);
    rv_measure_work w = {0};
    double v[64];
    const int32_t gains[] = {2, 1};
    /* empty ranking: every value 0 but num_rel (= R) and num_q */
    REQUIRE(rv_measures_eval(&ms, NULL, 0, gains, 2, 1, &w, v) == 0, "eval");
    for (size_t j = 0; j < ms.n; j++) {
        double want = strcmp(ms.items[j].name, "num_rel") == 0 ? 2 : strcmp(ms.items[j].name, "num_q") == 0 ? 1 : 0;
        CHECK(v[j] == want, "empty ranking: %s = %g", ms.items[j].name, v[j]);
    }
    /* judged but nothing relevant: all 0 (no division by zero) */
    const int32_t rels[] = {0, -1, 0};
    REQUIRE(rv_measures_eval(&ms, rels, 3, NULL, 0, 1, &w, v) == 0, "eval");
    for (size_t j = 0; j < ms.n; j++) {
        double want = strcmp(ms.items[j].name, "num_ret") == 0 ? 3 : strcmp(ms.items[j].name, "num_q") == 0 ? 1 : 0;
        CHECK(v[j] == want, "no relevant: %s = %g", ms.items[j].name, v[j]);
    }
    /* a long ranking grows the work arrays */
    int32_t *many = calloc(5000, sizeof *many);
    REQUIRE(many, "calloc");
    many[4999] = 1;
    REQUIRE(rv_measures_eval(&ms, many, 5000, gains + 1, 1, 1, &w, v) == 0, "eval");
    CHECK(close_to(value_of(&ms, v, "ndcg"), 1 / log2(5001)), "ndcg of a relevant document at rank 5000");
    CHECK(close_to(value_of(&ms, v, "recip_rank"), 1.0 / 5000), "recip_rank at 5000");
    free(many);
    rv_measure_work_free(&w);
    rv_measures_free(&ms);
}

/* --- rv_evaluate: options as properties ------------------------------- */

static const char *const qrels_text = "a 0 d1 1\na 0 d2 2\na 0 d9 1\nb 0 d3 1\nb 0 b 1\nc 0 d1 3\n";

static int tables_equal(const rv_eval_table *x, const rv_eval_table *y)
{
    if (x->n_rows != y->n_rows || x->n_measures != y->n_measures)
        return 0;
    for (size_t r = 0; r < x->n_rows; r++)
        if (x->qid_lens[r] != y->qid_lens[r] || memcmp(x->qids[r], y->qids[r], x->qid_lens[r]) != 0)
            return 0;
    return memcmp(x->values, y->values, x->n_rows * x->n_measures * sizeof(double)) == 0 &&
           memcmp(x->summary, y->summary, x->n_measures * sizeof(double)) == 0;
}

/* A table with the qrels and run its query ids point into. */
typedef struct {
    rv_qrels *q;
    rv_trec_run *r;
    rv_eval_table t;
} evaluation;

static int evaluate_text(const char *run_text, const rv_eval_options *o, const rv_measure_set *ms, evaluation *e)
{
    memset(e, 0, sizeof *e);
    e->q = rv_qrels_parse(qrels_text, strlen(qrels_text), "q");
    e->r = rv_trec_run_parse(run_text, strlen(run_text), "r");
    return e->q && e->r ? rv_evaluate(e->r, e->q, ms, o, &e->t) : -1;
}

static void evaluation_free(evaluation *e)
{
    rv_eval_table_free(&e->t);
    rv_trec_run_free(e->r);
    rv_qrels_free(e->q);
}

/* Lines "QID Q0 DOC RANK SCORE t" with descending scores, so that the file
 * order is the ranking; `skip` drops lines whose doc equals the query,
 * `keep` keeps at most that many per query. */
static void make_run(char *out, size_t cap, size_t keep, int skip_identical)
{
    const char *qids[] = {"b", "a", "x"};
    size_t at = 0;
    for (size_t qi = 0; qi < 3; qi++) {
        size_t kept = 0;
        for (int k = 0; k < 12; k++) {
            char doc[16];
            if (k == 2)
                snprintf(doc, sizeof doc, "%s", qids[qi]);   /* the query's own id */
            else
                snprintf(doc, sizeof doc, "d%d", (k * 7 + (int)qi) % 11);
            if (skip_identical && strcmp(doc, qids[qi]) == 0)
                continue;
            if (kept == keep)
                break;
            kept++;
            at += (size_t)snprintf(out + at, cap - at, "%s Q0 %s %d %d t\n", qids[qi], doc, k + 1, 100 - k);
        }
    }
}

static void test_evaluate_options(void)
{
    rv_measure_set ms = {0};
    add_all(&ms, every, sizeof every / sizeof *every);
    char full[4096], cut[4096], noid[4096], cut_noid[4096];
    make_run(full, sizeof full, 99, 0);
    make_run(cut, sizeof cut, 4, 0);
    make_run(noid, sizeof noid, 99, 1);
    make_run(cut_noid, sizeof cut_noid, 4, 1);
    evaluation e1, e2;
    rv_eval_table *t1 = &e1.t, *t2 = &e2.t;
    rv_eval_options o = {0, 0, 0, 1};

    o.max_docs = 4;
    REQUIRE(evaluate_text(full, &o, &ms, &e1) == 0, "%s", rv_error_get());
    o.max_docs = 0;
    REQUIRE(evaluate_text(cut, &o, &ms, &e2) == 0, "%s", rv_error_get());
    CHECK(tables_equal(t1, t2), "--max-docs 4 differs from a run cut at 4");
    CHECK(t1->n_rows == 2 && t1->n_run_only == 1 && t1->n_qrels_only == 1, "rows %zu, run only %zu, qrels only %zu",
          t1->n_rows, t1->n_run_only, t1->n_qrels_only);
    CHECK(t1->qid_lens[0] == 1 && t1->qids[0][0] == 'a' && t1->qids[1][0] == 'b', "rows in byte order of id");
    evaluation_free(&e1);
    evaluation_free(&e2);

    o.ignore_identical_ids = 1;
    REQUIRE(evaluate_text(full, &o, &ms, &e1) == 0, "%s", rv_error_get());
    o.ignore_identical_ids = 0;
    REQUIRE(evaluate_text(noid, &o, &ms, &e2) == 0, "%s", rv_error_get());
    CHECK(tables_equal(t1, t2), "--ignore-identical-ids differs from a run without those lines");
    evaluation_free(&e1);
    evaluation_free(&e2);
    /* identical ids are dropped before the cut */
    o.ignore_identical_ids = 1;
    o.max_docs = 4;
    REQUIRE(evaluate_text(full, &o, &ms, &e1) == 0, "%s", rv_error_get());
    o.ignore_identical_ids = 0;
    o.max_docs = 0;
    REQUIRE(evaluate_text(cut_noid, &o, &ms, &e2) == 0, "%s", rv_error_get());
    CHECK(tables_equal(t1, t2), "dropping and cutting: drop first");
    evaluation_free(&e1);
    evaluation_free(&e2);

    /* --complete: c (judged, not in the run) joins as zeros, but its num_rel */
    REQUIRE(evaluate_text(full, &o, &ms, &e1) == 0, "%s", rv_error_get());
    o.complete = 1;
    REQUIRE(evaluate_text(full, &o, &ms, &e2) == 0, "%s", rv_error_get());
    REQUIRE(t2->n_rows == 3 && t2->qids[2][0] == 'c', "complete: %zu rows", t2->n_rows);
    for (size_t j = 0; j < ms.n; j++) {
        const char *name = ms.items[j].name;
        double c = t2->values[2 * ms.n + j];
        double want_c = strcmp(name, "num_rel") == 0 ? 1 : strcmp(name, "num_q") == 0 ? 1 : 0;
        CHECK(c == want_c, "c: %s = %g", name, c);
        double want_all = rv_measure_is_count(&ms.items[j])
                              ? t1->summary[j] + want_c
                              : (t1->values[j] + t1->values[ms.n + j] + want_c) / 3;
        CHECK(close_to(t2->summary[j], want_all), "complete summary %s = %.17g, want %.17g", name, t2->summary[j],
              want_all);
        double want_plain = rv_measure_is_count(&ms.items[j]) ? t1->values[j] + t1->values[ms.n + j]
                                                             : (t1->values[j] + t1->values[ms.n + j]) / 2;
        CHECK(close_to(t1->summary[j], want_plain), "summary %s", name);
    }
    evaluation_free(&e1);
    evaluation_free(&e2);

    /* no query in common */
    o.complete = 0;
    CHECK(evaluate_text("zz Q0 d1 1 1 t\n", &o, &ms, &e1) < 0 && strstr(rv_error_get(), "no query of the run"),
          "no overlap: %s", rv_error_get());
    evaluation_free(&e1);
    rv_measures_free(&ms);
}

int main(void)
{
    test_suite = "eval_measures";
    RUN_TEST(test_measure_names);
    RUN_TEST(test_worked_example);
    RUN_TEST(test_degenerate_queries);
    RUN_TEST(test_evaluate_options);
    TEST_EXIT();
}
