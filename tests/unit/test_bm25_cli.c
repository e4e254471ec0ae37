/* test_bm25_cli.c — the rv-search --bm25 front end (cmd/common/search_bm25.c),
 * run in child processes with redirected standard streams: TREC and run
 * stream output against bm25s's rankings (tests/fixtures/bm25), the --index
 * cache and its consistency checks, chunk-stream corpora, usage and data
 * errors with their exit statuses.
 *
 * Invoked as `test_bm25_cli --run ARGS...` it is the front end itself
 * (rv-search --bm25 ARGS...), which tests/ref/bm25.sh uses when bin/rv-search
 * does not offer --bm25 yet. */
#include "test.h"
#include "test_bm25_fixture.h"
#include "cli.h"
#include "search_bm25.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[256];

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmp, name);
}

/* Runs the front end with argv (NULL-terminated, argv[0] included) in a
 * child: stdin from `in` (or /dev/null), stdout and stderr to files in tmp.
 * Returns the exit status (or 128 + signal). */
static int run_cli(const char *in, const char *const *argv)
{
    char out[300], err[300];
    tmp_path(out, sizeof out, "stdout");
    tmp_path(err, sizeof err, "stderr");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fi = open(in ? in : "/dev/null", O_RDONLY);
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fi < 0 || fo < 0 || fe < 0)
            _exit(99);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        int argc = 0;
        while (argv[argc])
            argc++;
        rv_cli_init("rv-search");
        exit(rv_search_bm25_main(argc, (char **)argv));
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *name, size_t *len)
{
    char path[300];
    tmp_path(path, sizeof path, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    rv_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rv_buf_append(&b, chunk, n);
    rv_buf_putc(&b, 0);
    fclose(f);
    if (len)
        *len = b.len - 1;
    return (char *)b.data;
}

static int stderr_has(const char *s)
{
    char *e = slurp("stderr", NULL);
    int r = e && strstr(e, s) != NULL;
    free(e);
    return r;
}

/* A parsed TREC run: per query, document ids and scores in file order. */
typedef struct {
    char (*qid)[64], (*doc)[64];
    float *score;
    size_t n;
    int well_formed;
} trec;

static void parse_trec(const char *text, const char *tag, trec *t)
{
    memset(t, 0, sizeof *t);
    t->well_formed = 1;
    size_t cap = 0;
    int last_rank = 0;
    char last_q[64] = "";
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        if (!e) {
            t->well_formed = 0;
            break;
        }
        char q[64], q0[8], d[64], tg[64], sc[64];
        int rank;
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(e - p), p);
        if (sscanf(line, "%63s %7s %63s %d %63s %63s", q, q0, d, &rank, sc, tg) != 6 || strcmp(q0, "Q0") ||
            strcmp(tg, tag))
            t->well_formed = 0;
        if (strcmp(q, last_q) != 0)
            last_rank = 0;
        if (rank != last_rank + 1)
            t->well_formed = 0;
        last_rank = rank;
        snprintf(last_q, sizeof last_q, "%s", q);
        if (t->n == cap) {
            cap = cap ? cap * 2 : 1024;
            t->qid = realloc(t->qid, cap * sizeof *t->qid);
            t->doc = realloc(t->doc, cap * sizeof *t->doc);
            t->score = realloc(t->score, cap * sizeof *t->score);
        }
        snprintf(t->qid[t->n], 64, "%s", q);
        snprintf(t->doc[t->n], 64, "%s", d);
        t->score[t->n++] = strtof(sc, NULL);
        p = e + 1;
    }
}

static void trec_free(trec *t)
{
    free(t->qid);
    free(t->doc);
    free(t->score);
}

/* Compares a TREC run with a fixture table, query by query. */
static size_t compare_trec(const trec *t, const char *fixture_name)
{
    fixture fx;
    if (load_fixture(fixture_name, &fx) < 0)
        return (size_t)-1;
    size_t bad = 0, at = 0;
    for (size_t i = 0; i < fx.nq; i++) {
        const fx_query *q = &fx.q[i];
        size_t s = at;
        while (at < t->n && strcmp(t->qid[at], q->qid) == 0)
            at++;
        size_t nh = at - s;
        rv_bm25_hit *h = calloc(nh + 1, sizeof *h);
        char **ids = calloc(nh + 1, sizeof *ids);
        for (size_t j = 0; j < nh; j++) {
            h[j].doc = (uint32_t)j;
            h[j].score = t->score[s + j];
            ids[j] = t->doc[s + j];
        }
        char err[512];
        if (compare_query(&fx, q, h, (uint32_t)nh, ids, err, sizeof err) < 0) {
            if (bad < 3)
                printf("  %s: %s\n", fixture_name, err);
            bad++;
        }
        free(h);
        free(ids);
    }
    if (at != t->n)
        bad++;
    fixture_free(&fx);
    return bad;
}

static void test_adi_trec(void)
{
    char corpus[4200], queries[4200];
    fixture_path(corpus, sizeof corpus, "adi-corpus.jsonl");
    fixture_path(queries, sizeof queries, "adi-queries.jsonl");
    const char *argv[] = {"rv-search", "--bm25", "--corpus", corpus, "-k", "10", "--threads", "2", queries, NULL};
    int rc = run_cli(NULL, argv);
    REQUIRE(rc == 0, "exit %d", rc);
    CHECK(stderr_has("indexed 82 documents") && stderr_has("bm25 variant lucene, k1 1.5, b 0.75"),
          "parameters and timing on stderr");
    char *out = slurp("stdout", NULL);
    trec t;
    parse_trec(out, "rv-bm25", &t);
    CHECK(t.well_formed && t.n > 300, "TREC lines: %zu", t.n);
    CHECK(compare_trec(&t, "search-adi-lucene.tsv") == 0, "differs from bm25s");
    trec_free(&t);
    free(out);
}

static void test_cranfield_stream_and_index(void)
{
    char corpus[4200], queries[4200], idx[300], run[300];
    fixture_path(corpus, sizeof corpus, "cranfield.rvs");
    fixture_path(queries, sizeof queries, "cranfield-queries.jsonl");
    tmp_path(idx, sizeof idx, "cranfield.idx");
    tmp_path(run, sizeof run, "run.rvs");
    /* first run: builds and saves the index, writes a run stream */
    const char *a1[] = {"rv-search", "--bm25", "-c", corpus, "-k", "10", "--index", idx, "--stream",
                        "-o", run, "--tag", "cran", NULL};
    int rc = run_cli(queries, a1);
    REQUIRE(rc == 0, "exit %d", rc);
    CHECK(access(idx, F_OK) == 0 && stderr_has("indexed 1400 documents"), "index saved");
    /* second run: loads the index, TREC to stdout */
    const char *a2[] = {"rv-search", "--bm25", "-c", corpus, "-k", "10", "--index", idx, "--tag", "cran", NULL};
    rc = run_cli(queries, a2);
    REQUIRE(rc == 0, "exit %d", rc);
    CHECK(stderr_has("loaded the index"), "index reused");
    char *out = slurp("stdout", NULL);
    trec t;
    parse_trec(out, "cran", &t);
    CHECK(t.well_formed && t.n == 2250, "TREC lines: %zu", t.n);
    CHECK(compare_trec(&t, "search-cranfield-lucene.tsv") == 0, "differs from bm25s");
    /* the stream holds the same hits */
    FILE *f = fopen(run, "rb");
    rv_stream_reader *r = f ? rv_stream_reader_open(f, run) : NULL;
    REQUIRE(r && rv_stream_reader_expect(r, "run", RV_RUN_VERSION) == 0, "run stream: %s", rv_error_get());
    size_t ml;
    const char *meta = rv_stream_reader_meta(r, &ml);
    CHECK(strstr(meta, "\"mode\":\"bm25\"") && strstr(meta, "\"variant\":\"lucene\"") &&
              strstr(meta, "\"stemmer\":\"english\"") && strstr(meta, "\"stopwords\":\"en\""),
          "metadata: %s", meta);
    const unsigned char *rec;
    size_t len, at = 0, mismatch = 0;
    while (rv_stream_read(r, &rec, &len) == 1) {
        rv_rec_cursor c;
        rv_str qid;
        uint32_t n;
        REQUIRE(rv_run_open(&c, rec, len, &qid, &n) == 0, "run record");
        for (uint32_t j = 0; j < n; j++, at++) {
            rv_run_hit h;
            REQUIRE(rv_run_next(&c, &h) == 0, "hit");
            mismatch += at >= t.n || strncmp(t.qid[at], qid.p, qid.len) != 0 ||
                        strncmp(t.doc[at], h.docid.p, h.docid.len) != 0 || (float)h.score != t.score[at];
        }
    }
    CHECK(at == t.n && mismatch == 0, "stream and TREC runs differ (%zu of %zu)", mismatch, at);
    rv_stream_reader_close(r);
    fclose(f);
    trec_free(&t);
    free(out);
    /* the index does not fit other options or another corpus */
    const char *a3[] = {"rv-search", "--bm25", "-c", corpus, "--k1", "1.2", "--index", idx, NULL};
    rc = run_cli(queries, a3);
    CHECK(rc == 1 && stderr_has("not the options given"), "other k1: exit %d", rc);
    const char *a4[] = {"rv-search", "--bm25", "-c", corpus, "--stem", "none", "--index", idx, NULL};
    rc = run_cli(queries, a4);
    CHECK(rc == 1 && stderr_has("--stem english"), "other stemmer: exit %d", rc);
    char adi[4200];
    fixture_path(adi, sizeof adi, "adi-corpus.jsonl");
    const char *a5[] = {"rv-search", "--bm25", "-c", adi, "--index", idx, NULL};
    rc = run_cli(queries, a5);
    CHECK(rc == 1 && stderr_has("different corpus"), "other corpus: exit %d", rc);
    /* a damaged index file is refused */
    FILE *g = fopen(idx, "r+b");
    REQUIRE(g, "open index");
    fseek(g, 200, SEEK_SET);
    int ch = fgetc(g);
    fseek(g, 200, SEEK_SET);
    fputc(ch ^ 1, g);
    fclose(g);
    rc = run_cli(queries, a2);
    CHECK(rc == 1, "damaged index: exit %d", rc);
    unlink(idx);
    unlink(run);
}

static void write_stream(const char *path, const char *kind, int n, const char *const *fields)
{
    FILE *f = fopen(path, "wb");
    rv_stream_writer *w = rv_stream_writer_open(f, path, kind, 1, "{}", 1);
    rv_buf b = {0};
    for (int i = 0; i < n; i++) {
        if (strcmp(kind, "chunk") == 0) {
            uint32_t ids[2] = {7, (uint32_t)i};
            rv_chunk_encode(&b, fields[2 * i], strlen(fields[2 * i]), (uint32_t)i, fields[2 * i + 1],
                            strlen(fields[2 * i + 1]), ids, 2);
        } else {
            rv_doc d = {{fields[2 * i], strlen(fields[2 * i])}, {"", 0}, {fields[2 * i + 1], strlen(fields[2 * i + 1])}};
            rv_doc_encode(&b, &d);
        }
        rv_stream_write(w, b.data, b.len);
    }
    rv_stream_writer_finish(w);
    rv_stream_writer_free(w);
    rv_buf_free(&b);
    fclose(f);
}

static void test_chunk_corpus(void)
{
    char chunks[300], qs[300];
    tmp_path(chunks, sizeof chunks, "chunks.rvs");
    tmp_path(qs, sizeof qs, "queries.rvs");
    const char *c[] = {"d1", "supersonic wing flutter", "d1", "boundary layer", "d2", "wing flutter tests"};
    write_stream(chunks, "chunk", 3, c);
    const char *q[] = {"q1", "flutter of wings", "q 2", "nothing matches"};
    write_stream(qs, "doc", 1, q);
    const char *a[] = {"rv-search", "--bm25", "-c", chunks, qs, NULL};
    int rc = run_cli(NULL, a);
    REQUIRE(rc == 0, "exit %d", rc);
    char *out = slurp("stdout", NULL);
    trec t;
    parse_trec(out, "rv-bm25", &t);
    CHECK(t.well_formed && t.n == 2 && strcmp(t.doc[0], "d1#0") == 0 && strcmp(t.doc[1], "d2#2") == 0 &&
              t.score[0] == t.score[1],
          "chunk ids DOCID#CHUNK, equal scores in corpus order: %s", out);
    free(out);
    trec_free(&t);
    /* a query id with a blank cannot go into a TREC run (but a stream is fine) */
    write_stream(qs, "doc", 2, q);
    const char *q2[] = {"q1", "flutter", "q 2", "wing"};
    write_stream(qs, "doc", 2, q2);
    rc = run_cli(NULL, a);
    CHECK(rc == 1 && stderr_has("\"q 2\"") && stderr_has("--stream"), "blank in a query id: exit %d", rc);
    const char *s[] = {"rv-search", "--bm25", "-c", chunks, "--stream", "-o", "-", qs, NULL};
    rc = run_cli(NULL, s);
    CHECK(rc == 0, "stream with such an id: exit %d", rc);
    unlink(chunks);
    unlink(qs);
}

static void test_usage_errors(void)
{
    char corpus[4200];
    fixture_path(corpus, sizeof corpus, "adi-corpus.jsonl");
    const char *cases[][8] = {
        {"rv-search", "--bm25", NULL},
        {"rv-search", "--bm25", "-c", corpus, "--variant", "okapi", NULL},
        {"rv-search", "--bm25", "-c", corpus, "--b", "2", NULL},
        {"rv-search", "--bm25", "-c", corpus, "-k", "0", NULL},
        {"rv-search", "--bm25", "-c", corpus, "--bogus", NULL},
        {"rv-search", "--bm25", "-c", corpus, "--stem", "porter", NULL},
        {"rv-search", "--bm25", "-c", corpus, "a", "b", NULL},
        {"rv-search", "--bm25", "-c", corpus, "--k1", "x", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_cli(NULL, cases[i]);
        CHECK(rc == 2 && stderr_has("Try 'rv-search --help'"), "case %zu: exit %d", i, rc);
    }
    const char *help[] = {"rv-search", "--bm25", "--help", NULL};
    int rc = run_cli(NULL, help);
    char *out = slurp("stdout", NULL);
    CHECK(rc == 0 && out && strstr(out, "Usage: rv-search --bm25 --corpus DOCS"), "--help: exit %d", rc);
    free(out);
}

static void test_data_errors(void)
{
    char bad[300], adi[4200];
    tmp_path(bad, sizeof bad, "bad.jsonl");
    fixture_path(adi, sizeof adi, "adi-corpus.jsonl");
    FILE *f = fopen(bad, "w");
    fputs("{\"_id\": \"1\", \"text\": \"ok\"}\n{\"_id\": \"2\", \"text\": 5}\n", f);
    fclose(f);
    const char *a1[] = {"rv-search", "--bm25", "-c", bad, adi, NULL};
    int rc = run_cli(NULL, a1);
    CHECK(rc == 1 && stderr_has("bad.jsonl:2: text: expected a string"), "bad corpus: exit %d", rc);
    const char *a2[] = {"rv-search", "--bm25", "-c", "/nonexistent/corpus.jsonl", adi, NULL};
    rc = run_cli(NULL, a2);
    CHECK(rc == 1 && stderr_has("/nonexistent/corpus.jsonl"), "missing corpus: exit %d", rc);
    f = fopen(bad, "w");
    fclose(f);
    const char *a3[] = {"rv-search", "--bm25", "-c", bad, adi, NULL};
    rc = run_cli(NULL, a3);
    CHECK(rc == 1 && stderr_has("empty input"), "empty corpus: exit %d", rc);
    char sw[300];
    tmp_path(sw, sizeof sw, "nostop");
    const char *a4[] = {"rv-search", "--bm25", "-c", adi, "--stopwords", sw, adi, NULL};
    rc = run_cli(NULL, a4);
    CHECK(rc == 1 && stderr_has("nostop"), "missing stopword file: exit %d", rc);
    unlink(bad);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--run") == 0) {
        rv_cli_init("rv-search");
        return rv_search_bm25_main(argc - 1, argv + 1);
    }
    test_suite = "bm25_cli";
    const char *root = getenv("RV_ROOT");
    snprintf(fixture_dir, sizeof fixture_dir, "%s/tests/fixtures/bm25", root ? root : ".");
    snprintf(tmp, sizeof tmp, "/tmp/rv-test-bm25-cli-%d", (int)getpid());
    if (mkdir(tmp, 0700) != 0) {
        printf("FAIL bm25_cli/tmpdir\n");
        return 1;
    }
    RUN_TEST(test_adi_trec);
    RUN_TEST(test_cranfield_stream_and_index);
    RUN_TEST(test_chunk_corpus);
    RUN_TEST(test_usage_errors);
    RUN_TEST(test_data_errors);
    char p[300];
    const char *names[] = {"stdout", "stderr", NULL};
    for (int i = 0; names[i]; i++) {
        tmp_path(p, sizeof p, names[i]);
        unlink(p);
    }
    rmdir(tmp);
    TEST_EXIT();
}
