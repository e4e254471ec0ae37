/* test_eval_fixtures.c — rv-eval's library against pytrec_eval: every
 * tests/fixtures/eval/NAME.expected.tsv (written by
 * scripts/make-eval-fixtures.py from pytrec_eval's per-query values) is
 * evaluated here from its qrels and run with its options and measures, and
 * every query's every value, and the summary row, must agree to 1e-9
 * (relative for large counts). One PASS/FAIL line per expected table. */
#include "test.h"

#include "buf.h"
#include "error.h"
#include "ir_eval.h"
#include "ir_measures.h"
#include "ir_text.h"
#include "qrels.h"
#include "trec_run.h"

#include <dirent.h>
#include <math.h>

static char fixture_dir[4096];

typedef struct {
    char qrels[256], run[256], measures[1024];
    rv_eval_options opt;
} table_meta;

static int read_file(const char *path, rv_buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int rc = rv_read_whole(f, path, b);
    fclose(f);
    return rc;
}

static void copy_field(char *dst, size_t cap, rv_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static void check_table(const char *file)
{
    char path[4600];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, file);
    rv_buf text = {0};
    REQUIRE(read_file(path, &text) == 0, "cannot read %s: %s", path, rv_error_get());

    table_meta meta = {.opt = {0, 0, 0, 1}};
    rv_text_lines it;
    rv_str line, cols[64];
    rv_text_lines_init(&it, (const char *)text.data, text.len);
    size_t n_cols = 0;
    /* header block and column names */
    while (rv_text_lines_next(&it, &line)) {
        if (line.len > 2 && line.p[0] == '#') {
            char buf[1024];
            rv_str body = {line.p + 2, line.len - 2};
            copy_field(buf, sizeof buf, body);
            char *colon = strstr(buf, ": ");
            if (!colon)
                continue;
            *colon = '\0';
            const char *v = colon + 2;
            if (strcmp(buf, "qrels") == 0)
                snprintf(meta.qrels, sizeof meta.qrels, "%s", v);
            else if (strcmp(buf, "run") == 0)
                snprintf(meta.run, sizeof meta.run, "%s", v);
            else if (strcmp(buf, "measures") == 0)
                snprintf(meta.measures, sizeof meta.measures, "%s", v);
            else if (strcmp(buf, "options") == 0) {
                int level = 1, complete = 0, identical = 0;
                CHECK(sscanf(v, "level=%d complete=%d identical=%d", &level, &complete, &identical) == 3,
                      "bad options line: %s", v);
                meta.opt.relevance_level = level;
                meta.opt.complete = complete;
                meta.opt.ignore_identical_ids = identical;
            }
            continue;
        }
        n_cols = rv_split_tab(line, cols, 64);
        break;
    }
    REQUIRE(n_cols > 1 && n_cols <= 64, "%s: no header line", file);

    rv_measure_set ms = {0};
    char specs[1024];
    snprintf(specs, sizeof specs, "%s", meta.measures);
    for (char *tok = strtok(specs, " "); tok; tok = strtok(NULL, " "))
        CHECK(rv_measures_add(&ms, tok) == 0, "measure %s: %s", tok, rv_error_get());
    CHECK(ms.n == n_cols - 1, "%zu measures from the spec, %zu columns", ms.n, n_cols - 1);
    for (size_t j = 0; j < ms.n && j + 1 < n_cols; j++)
        CHECK(strlen(ms.items[j].name) == cols[j + 1].len &&
                  memcmp(ms.items[j].name, cols[j + 1].p, cols[j + 1].len) == 0,
              "column %zu: rv-eval names it %s, the table %.*s", j + 1, ms.items[j].name, (int)cols[j + 1].len,
              cols[j + 1].p);

    snprintf(path, sizeof path, "%s/%s", fixture_dir, meta.qrels);
    FILE *f = fopen(path, "rb");
    rv_qrels *qrels = f ? rv_qrels_read(f, path) : NULL;
    if (f)
        fclose(f);
    snprintf(path, sizeof path, "%s/%s", fixture_dir, meta.run);
    f = fopen(path, "rb");
    rv_trec_run *run = f ? rv_trec_run_read(f, path) : NULL;
    if (f)
        fclose(f);
    rv_eval_table t = {0};
    int ok = qrels && run && rv_evaluate(run, qrels, &ms, &meta.opt, &t) == 0;
    CHECK(ok, "%s: %s", file, rv_error_get());

    size_t row = 0, compared = 0;
    double worst = 0;
    while (ok && rv_text_lines_next(&it, &line)) {
        rv_str v[64];
        size_t n = rv_split_tab(line, v, 64);
        CHECK(n == n_cols, "%s:%zu: %zu fields", file, it.lineno, n);
        if (n != n_cols)
            break;
        int is_all = v[0].len == 3 && memcmp(v[0].p, "all", 3) == 0;
        const double *got = is_all ? t.summary : row < t.n_rows ? t.values + row * ms.n : NULL;
        if (!is_all) {
            CHECK(row < t.n_rows && t.qid_lens[row] == v[0].len && memcmp(t.qids[row], v[0].p, v[0].len) == 0,
                  "%s:%zu: row %zu is query %.*s, rv-eval has %.*s", file, it.lineno, row, (int)v[0].len, v[0].p,
                  row < t.n_rows ? (int)t.qid_lens[row] : 0, row < t.n_rows ? t.qids[row] : "");
            row++;
        }
        if (!got)
            break;
        for (size_t j = 0; j + 1 < n && j < ms.n; j++) {
            double want;
            CHECK(rv_parse_f64(v[j + 1], &want) == 0, "%s:%zu: bad number", file, it.lineno);
            double d = fabs(got[j] - want), tol = 1e-9 * (fabs(want) > 1 ? fabs(want) : 1);
            if (d > worst)
                worst = d;
            CHECK(d <= tol, "%s:%zu: %s of %.*s: rv-eval %.17g, pytrec_eval %.17g", file, it.lineno,
                  ms.items[j].name, (int)v[0].len, v[0].p, got[j], want);
            compared++;
        }
    }
    CHECK(!ok || row == t.n_rows, "%s: %zu rows in the table, rv-eval evaluated %zu queries", file, row, t.n_rows);
    CHECK(!ok || compared > 0, "%s: nothing compared", file);
    if (test_failed_now == 0)
        printf("  %s: %zu values agree (largest difference %.3g)\n", file, compared, worst);
    rv_eval_table_free(&t);
    rv_trec_run_free(run);
    rv_qrels_free(qrels);
    rv_measures_free(&ms);
    rv_buf_free(&text);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    test_suite = "eval_fixtures";
    const char *root = getenv("RV_ROOT");
    snprintf(fixture_dir, sizeof fixture_dir, "%s/tests/fixtures/eval", root ? root : ".");
    DIR *d = opendir(fixture_dir);
    if (!d) {
        printf("FAIL eval_fixtures/open: cannot open %s\n", fixture_dir);
        return 1;
    }
    char *names[256];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;) {
        size_t len = strlen(e->d_name);
        if (len > 13 && strcmp(e->d_name + len - 13, ".expected.tsv") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    if (n == 0) {
        printf("FAIL eval_fixtures/none: no *.expected.tsv in %s\n", fixture_dir);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        test_failed_now = 0;
        fflush(stdout);
        check_table(names[i]);
        test_count++;
        if (test_failed_now)
            test_failures++;
        printf("%s %s/%s\n", test_failed_now ? "FAIL" : "PASS", test_suite, names[i]);
        free(names[i]);
    }
    TEST_EXIT();
}
