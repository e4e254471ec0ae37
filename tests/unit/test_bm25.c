/* test_bm25.c — the BM25 engine (lib/analyzer.c, lib/bm25*.c) against bm25s
 * (tests/fixtures/bm25, written by scripts/make-bm25-fixtures.py):
 *   - analysis of tricky and random Unicode strings, three configurations;
 *   - numpy's float32 sum (the bm25l/bm25+ query constant), bit for bit;
 *   - top-10 of every Cranfield query for every variant and two parameter
 *     sets, Medline and ADI: scores equal (to the bit, checked to 1e-5
 *     relative) and documents equal up to exact score ties;
 *   - top-10 of sampled chunks over 14,714 chunks of Cranfield and Medline
 *     (documents as queries), through both search strategies;
 *   - the pruned and the exhaustive strategies agree exactly; thread counts
 *     do not change results; index files round-trip and reject damage. */
#include "test.h"
#include "test_bm25_fixture.h"
#include "analyzer.h"
#include "error.h"

#include <unistd.h>

/* ---------------------------------------------------------------- tests */

static void test_tokens_fixture(void)
{
    char path[4200];
    fixture_path(path, sizeof path, "tokens.jsonl");
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "missing %s", path);
    const char *cfg[3][3] = {{"en", "english", "en_english"}, {"none", "none", "none_none"}, {"en", "none", "en_none"}};
    rv_analyzer *an[3];
    rv_analysis *w[3];
    for (int c = 0; c < 3; c++) {
        an[c] = rv_analyzer_new(cfg[c][0], cfg[c][1]);
        w[c] = an[c] ? rv_analysis_new(an[c]) : NULL;
    }
    rv_lines lr;
    rv_lines_init(&lr, f);
    rv_json_parser *jp = rv_json_parser_new();
    char *line;
    size_t len, lines = 0;
    while (rv_lines_next(&lr, &line, &len) == 1) {
        rv_json *v = rv_json_parse(jp, line, len);
        REQUIRE(v, "tokens.jsonl:%zu: %s", lr.lineno, rv_error_get());
        const rv_json *text = rv_json_get(v, "text");
        for (int c = 0; c < 3; c++) {
            const rv_json *want = rv_json_get(v, cfg[c][2]);
            REQUIRE(w[c] && text && want, "tokens.jsonl:%zu: fields", lr.lineno);
            CHECK(rv_analyze(w[c], text->u.string, text->len) == 0, "analyze: %s", rv_error_get());
            size_t n = rv_analysis_count(w[c]);
            int ok = n == want->len;
            for (size_t i = 0; ok && i < n; i++) {
                size_t tl;
                const char *t = rv_analysis_term(w[c], i, &tl, NULL);
                ok = tl == want->u.items[i].len && memcmp(t, want->u.items[i].u.string, tl) == 0;
            }
            CHECK(ok, "tokens.jsonl:%zu (%s): %zu terms, bm25s has %zu: \"%s\"", lr.lineno, cfg[c][2], n, want->len,
                  text->u.string);
        }
        lines++;
    }
    CHECK(lines >= 150, "only %zu strings", lines);
    rv_json_parser_free(jp);
    rv_lines_free(&lr);
    fclose(f);
    for (int c = 0; c < 3; c++) {
        rv_analysis_free(w[c]);
        rv_analyzer_free(an[c]);
    }
}

static void test_npsum_fixture(void)
{
    char path[4200];
    fixture_path(path, sizeof path, "npsum.jsonl");
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "missing %s", path);
    rv_lines lr;
    rv_lines_init(&lr, f);
    rv_json_parser *jp = rv_json_parser_new();
    char *line;
    size_t len, cases = 0;
    while (rv_lines_next(&lr, &line, &len) == 1) {
        rv_json *v = rv_json_parse(jp, line, len);
        const rv_json *bits = v ? rv_json_get(v, "bits") : NULL, *sum = v ? rv_json_get(v, "sum_bits") : NULL;
        REQUIRE(bits && sum, "npsum.jsonl:%zu", lr.lineno);
        float *a = malloc((bits->len + 1) * sizeof *a);
        for (size_t i = 0; i < bits->len; i++) {
            uint32_t u = (uint32_t)bits->u.items[i].u.number;
            memcpy(&a[i], &u, 4);
        }
        float s = rv_bm25_sum_f32(a, bits->len);
        uint32_t got;
        memcpy(&got, &s, 4);
        CHECK(got == (uint32_t)sum->u.number, "n=%zu: sum bits %08x, numpy %08x", bits->len, got,
              (uint32_t)sum->u.number);
        free(a);
        cases++;
    }
    CHECK(cases >= 20, "only %zu cases", cases);
    rv_json_parser_free(jp);
    rv_lines_free(&lr);
    fclose(f);
}

static rv_bm25_index *build(const doc_list *d, const rv_bm25_params *p, const char *sw, const char *st, int fwd,
                            int threads)
{
    rv_bm25_builder *b = rv_bm25_builder_new(sw, st, p, fwd, threads);
    if (!b)
        return NULL;
    /* in two parts, so document numbering across calls is exercised */
    size_t half = d->n / 2;
    if (rv_bm25_builder_add(b, half, (const char *const *)d->text, d->len) < 0 ||
        rv_bm25_builder_add(b, d->n - half, (const char *const *)d->text + half, d->len + half) < 0) {
        rv_bm25_builder_free(b);
        return NULL;
    }
    return rv_bm25_builder_finish(b);
}

static void run_search_fixture(const char *name)
{
    fixture fx;
    REQUIRE(load_fixture(name, &fx) == 0 && fx.nq > 0, "cannot read %s", name);
    doc_list docs = {0}, qs = {0};
    REQUIRE(load_docs(fx.corpus, 0, &docs) == 0 && load_docs(fx.queries, 1, &qs) == 0, "%s: corpus or queries",
            name);
    rv_bm25_params p;
    fixture_params(&fx, &p);
    rv_bm25_index *ix = build(&docs, &p, fx.stopwords, fx.stemmer, 0, 2);
    REQUIRE(ix, "%s: build: %s", name, rv_error_get());
    uint32_t k = fx.k;
    rv_bm25_hit *h = calloc(qs.n * k, sizeof *h);
    uint32_t *nh = calloc(qs.n, sizeof *nh);
    CHECK(rv_bm25_search(ix, qs.n, (const char *const *)qs.text, qs.len, k, 2, h, nh) == 0, "%s", rv_error_get());
    CHECK(fx.nq == qs.n, "%s: %zu fixture queries, %zu queries", name, fx.nq, qs.n);
    size_t bad = 0;
    for (size_t i = 0; i < fx.nq && i < qs.n; i++) {
        char err[512];
        CHECK(strcmp(fx.q[i].qid, qs.id[i]) == 0, "query order: %s vs %s", fx.q[i].qid, qs.id[i]);
        if (compare_query(&fx, &fx.q[i], h + i * k, nh[i], docs.id, err, sizeof err) < 0) {
            CHECK(0, "%s: %s", name, err);
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %zu of %zu queries differ", name, bad, fx.nq);
    free(h);
    free(nh);
    rv_bm25_index_free(ix);
    docs_free(&docs);
    docs_free(&qs);
    fixture_free(&fx);
}

static void test_search_cranfield_lucene(void) { run_search_fixture("search-cranfield-lucene.tsv"); }
static void test_search_cranfield_robertson(void) { run_search_fixture("search-cranfield-robertson.tsv"); }
static void test_search_cranfield_atire(void) { run_search_fixture("search-cranfield-atire.tsv"); }
static void test_search_cranfield_bm25l(void) { run_search_fixture("search-cranfield-bm25l.tsv"); }
static void test_search_cranfield_bm25plus(void) { run_search_fixture("search-cranfield-bm25plus.tsv"); }
static void test_search_cranfield_params(void)
{
    run_search_fixture("search-cranfield-lucene-k1.2-b0.3-nostop-nostem.tsv");
    run_search_fixture("search-cranfield-bm25plus-k0.9-b0.4-d1.tsv");
}
static void test_search_medline_adi(void)
{
    run_search_fixture("search-medline-lucene.tsv");
    run_search_fixture("search-adi-lucene.tsv");
}

/* Chunks as queries over all chunks: the pruned strategy (documents as
 * queries, stored term sequences) and the exhaustive one (texts as queries,
 * index without term sequences) against bm25s and against each other. */
static void run_chunk_fixture(const char *name)
{
    make_chunks();
    REQUIRE(chunk_set.n >= 10000, "chunk set: %zu chunks", chunk_set.n);
    fixture fx;
    REQUIRE(load_fixture(name, &fx) == 0 && fx.nq > 0, "cannot read %s", name);
    rv_bm25_params p;
    fixture_params(&fx, &p);
    rv_bm25_index *fwd = build(&chunk_set, &p, fx.stopwords, fx.stemmer, 1, 2);
    rv_bm25_index *plain = build(&chunk_set, &p, fx.stopwords, fx.stemmer, 0, 2);
    REQUIRE(fwd && plain, "build: %s", rv_error_get());
    uint32_t k = fx.k;
    uint32_t *docs = calloc(fx.nq, sizeof *docs);
    const char **texts = calloc(fx.nq, sizeof *texts);
    size_t *lens = calloc(fx.nq, sizeof *lens);
    for (size_t i = 0; i < fx.nq; i++) {
        docs[i] = (uint32_t)atoi(fx.q[i].qid);
        texts[i] = chunk_set.text[docs[i]];
        lens[i] = chunk_set.len[docs[i]];
    }
    rv_bm25_hit *h1 = calloc(fx.nq * k, sizeof *h1), *h2 = calloc(fx.nq * k, sizeof *h2);
    uint32_t *n1 = calloc(fx.nq, sizeof *n1), *n2 = calloc(fx.nq, sizeof *n2);
    CHECK(rv_bm25_search_docs(fwd, fx.nq, docs, k, 2, h1, n1) == 0, "%s", rv_error_get());
    CHECK(rv_bm25_search(plain, fx.nq, texts, lens, k, 2, h2, n2) == 0, "%s", rv_error_get());
    size_t bad = 0;
    for (size_t i = 0; i < fx.nq; i++) {
        char err[512];
        if (compare_query(&fx, &fx.q[i], h1 + i * k, n1[i], chunk_set.id, err, sizeof err) < 0) {
            CHECK(0, "%s (pruned): %s", name, err);
            bad++;
        }
        if (compare_query(&fx, &fx.q[i], h2 + i * k, n2[i], chunk_set.id, err, sizeof err) < 0) {
            CHECK(0, "%s (exhaustive): %s", name, err);
            bad++;
        }
        CHECK(n1[i] == n2[i] && memcmp(h1 + i * k, h2 + i * k, n1[i] * sizeof *h1) == 0,
              "%s: query %s: the two strategies differ", name, fx.q[i].qid);
    }
    CHECK(bad == 0, "%s: %zu differences", name, bad);
    free(h1);
    free(h2);
    free(n1);
    free(n2);
    free(docs);
    free(texts);
    free(lens);
    rv_bm25_index_free(fwd);
    rv_bm25_index_free(plain);
    fixture_free(&fx);
}

static void test_chunks_lucene(void) { run_chunk_fixture("chunks-lucene.tsv"); }
static void test_chunks_robertson(void) { run_chunk_fixture("chunks-robertson.tsv"); }
static void test_chunks_bm25plus(void) { run_chunk_fixture("chunks-bm25plus.tsv"); }

/* Every variant, several k, many queries: pruned == exhaustive, and 1 thread
 * == 3 threads. */
static void test_strategies_agree(void)
{
    make_chunks();
    REQUIRE(chunk_set.n >= 10000, "chunk set");
    const char *variants[] = {"lucene", "robertson", "atire", "bm25l", "bm25+"};
    const uint32_t ks[] = {1, 16, 40};
    size_t nq = 0;
    uint32_t *docs = calloc(chunk_set.n, sizeof *docs);
    const char **texts = calloc(chunk_set.n, sizeof *texts);
    size_t *lens = calloc(chunk_set.n, sizeof *lens);
    for (size_t i = 0; i < chunk_set.n; i += 23, nq++) {
        docs[nq] = (uint32_t)i;
        texts[nq] = chunk_set.text[i];
        lens[nq] = chunk_set.len[i];
    }
    for (int v = 0; v < 5; v++) {
        rv_bm25_params p;
        rv_bm25_params_default(&p);
        rv_bm25_variant_parse(variants[v], &p.variant);
        if (v == 3)
            p.b = 0.3;
        rv_bm25_index *fwd = build(&chunk_set, &p, "en", v == 2 ? "none" : "english", 1, 3);
        rv_bm25_index *plain = build(&chunk_set, &p, "en", v == 2 ? "none" : "english", 0, 1);
        REQUIRE(fwd && plain, "build: %s", rv_error_get());
        for (int ki = 0; ki < 3; ki++) {
            uint32_t k = ks[ki];
            rv_bm25_hit *h1 = calloc(nq * k, sizeof *h1), *h2 = calloc(nq * k, sizeof *h2),
                        *h3 = calloc(nq * k, sizeof *h3);
            uint32_t *n1 = calloc(nq, sizeof *n1), *n2 = calloc(nq, sizeof *n2), *n3 = calloc(nq, sizeof *n3);
            CHECK(rv_bm25_search_docs(fwd, nq, docs, k, 3, h1, n1) == 0, "%s", rv_error_get());
            CHECK(rv_bm25_search_docs(fwd, nq, docs, k, 1, h3, n3) == 0, "%s", rv_error_get());
            CHECK(rv_bm25_search(plain, nq, texts, lens, k, 2, h2, n2) == 0, "%s", rv_error_get());
            size_t diff = 0, diff_threads = 0;
            for (size_t i = 0; i < nq; i++) {
                diff += n1[i] != n2[i] || memcmp(h1 + i * k, h2 + i * k, n1[i] * sizeof *h1) != 0;
                diff_threads += n1[i] != n3[i] || memcmp(h1 + i * k, h3 + i * k, n1[i] * sizeof *h1) != 0;
                /* ranked by score, then document number */
                for (uint32_t j = 1; j < n1[i]; j++)
                    CHECK(h1[i * k + j - 1].score > h1[i * k + j].score ||
                              (h1[i * k + j - 1].score == h1[i * k + j].score &&
                               h1[i * k + j - 1].doc < h1[i * k + j].doc),
                          "order");
            }
            CHECK(diff == 0, "%s k=%u: %zu of %zu queries differ between strategies", variants[v], k, diff, nq);
            CHECK(diff_threads == 0, "%s k=%u: %zu queries differ between 1 and 3 threads", variants[v], k,
                  diff_threads);
            free(h1);
            free(h2);
            free(h3);
            free(n1);
            free(n2);
            free(n3);
        }
        /* a pair score is the score the search reports */
        rv_bm25_hit h[5];
        uint32_t nh;
        CHECK(rv_bm25_search_docs(fwd, 1, &docs[7], 5, 1, h, &nh) == 0 && nh == 5, "search");
        for (uint32_t j = 0; j < nh; j++) {
            float s = -1;
            CHECK(rv_bm25_score_pair(fwd, docs[7], h[j].doc, &s) == 0 && s == h[j].score,
                  "%s: pair score %.9g, search %.9g", variants[v], s, h[j].score);
        }
        rv_bm25_index_free(fwd);
        rv_bm25_index_free(plain);
    }
    free(docs);
    free(texts);
    free(lens);
}

static void test_index_file(void)
{
    doc_list docs = {0}, qs = {0};
    REQUIRE(load_docs("adi-corpus.jsonl", 0, &docs) == 0 && load_docs("adi-queries.jsonl", 1, &qs) == 0, "adi");
    rv_bm25_params p;
    rv_bm25_params_default(&p);
    p.variant = RV_BM25_BM25L;
    p.k1 = 1.2;
    p.delta = 0.25;
    rv_bm25_index *ix = build(&docs, &p, "en", "english", 1, 2);
    REQUIRE(ix, "build: %s", rv_error_get());
    char path[64];
    snprintf(path, sizeof path, "/tmp/rv-test-bm25-%d.idx", (int)getpid());
    FILE *f = fopen(path, "wb+");
    REQUIRE(f, "tmp file");
    CHECK(rv_bm25_index_save(ix, f, path) == 0, "save: %s", rv_error_get());
    long size = ftell(f);
    rewind(f);
    rv_bm25_index *back = rv_bm25_index_load(f, path);
    REQUIRE(back, "load: %s", rv_error_get());
    CHECK(rv_bm25_index_docs(back) == rv_bm25_index_docs(ix) && rv_bm25_index_terms(back) == rv_bm25_index_terms(ix) &&
              rv_bm25_index_postings(back) == rv_bm25_index_postings(ix) &&
              rv_bm25_index_avgdl(back) == rv_bm25_index_avgdl(ix) &&
              rv_bm25_index_corpus_hash(back) == rv_bm25_index_corpus_hash(ix) && rv_bm25_index_has_forward(back),
          "loaded index differs");
    const rv_bm25_params *bp = rv_bm25_index_params(back);
    CHECK(bp->variant == p.variant && bp->k1 == p.k1 && bp->b == p.b && bp->delta == p.delta, "params");
    CHECK(rv_analyzer_stopwords_hash(rv_bm25_index_analyzer(back)) ==
              rv_analyzer_stopwords_hash(rv_bm25_index_analyzer(ix)),
          "stopwords");
    uint32_t k = 20;
    rv_bm25_hit *h1 = calloc(qs.n * k, sizeof *h1), *h2 = calloc(qs.n * k, sizeof *h2);
    uint32_t *n1 = calloc(qs.n, sizeof *n1), *n2 = calloc(qs.n, sizeof *n2);
    CHECK(rv_bm25_search(ix, qs.n, (const char *const *)qs.text, qs.len, k, 2, h1, n1) == 0, "search");
    CHECK(rv_bm25_search(back, qs.n, (const char *const *)qs.text, qs.len, k, 2, h2, n2) == 0, "search");
    CHECK(memcmp(n1, n2, qs.n * sizeof *n1) == 0 && memcmp(h1, h2, qs.n * k * sizeof *h1) == 0,
          "results differ after a round trip");
    /* saving the loaded index gives the same bytes */
    FILE *g = tmpfile();
    CHECK(g && rv_bm25_index_save(back, g, "again") == 0 && ftell(g) == size, "second save");
    rewind(f);
    rewind(g);
    unsigned char *a = malloc((size_t)size), *b = malloc((size_t)size);
    CHECK(fread(a, 1, (size_t)size, f) == (size_t)size && fread(b, 1, (size_t)size, g) == (size_t)size &&
              memcmp(a, b, (size_t)size) == 0,
          "index bytes differ between saves");
    fclose(g);
    /* damage: every flipped byte, and every truncation, must be rejected
     * (sampled positions) */
    size_t rejected = 0, tried = 0;
    for (long pos = 0; pos < size; pos += size / 97 + 1) {
        FILE *h = tmpfile();
        b[pos] ^= 0x5a;
        fwrite(b, 1, (size_t)size, h);
        b[pos] ^= 0x5a;
        rewind(h);
        rv_bm25_index *bad = rv_bm25_index_load(h, "damaged");
        rejected += bad == NULL;
        tried++;
        rv_bm25_index_free(bad);
        fclose(h);
        h = tmpfile();
        fwrite(b, 1, (size_t)pos, h);
        rewind(h);
        bad = rv_bm25_index_load(h, "truncated");
        rejected += bad == NULL;
        tried++;
        rv_bm25_index_free(bad);
        fclose(h);
    }
    CHECK(rejected == tried, "%zu of %zu damaged files were accepted", tried - rejected, tried);
    rewind(f);
    rv_bm25_index *bad = rv_bm25_index_load(f, path);
    CHECK(bad != NULL, "the intact file must still load");
    rv_bm25_index_free(bad);
    fclose(f);
    unlink(path);
    free(a);
    free(b);
    free(h1);
    free(h2);
    free(n1);
    free(n2);
    rv_bm25_index_free(ix);
    rv_bm25_index_free(back);
    docs_free(&docs);
    docs_free(&qs);
}

static void test_analyzer_options(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/rv-test-stop-%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    REQUIRE(f, "tmp");
    fputs("  quick \n\nfox\r\nüber\n", f);
    fclose(f);
    rv_analyzer *a = rv_analyzer_new(path, "none");
    REQUIRE(a, "stopword file: %s", rv_error_get());
    CHECK(rv_analyzer_stopword_count(a) == 3 && strcmp(rv_analyzer_stemmer_name(a), "none") == 0, "list");
    rv_analysis *w = rv_analysis_new(a);
    const char *text = "The QUICK brown Fox über Über jumps";
    CHECK(rv_analyze(w, text, strlen(text)) == 0 && rv_analysis_count(w) == 3, "count %zu", rv_analysis_count(w));
    const char *want[] = {"the", "brown", "jumps"};
    size_t j = 0;
    for (size_t i = 0; i < rv_analysis_count(w); i++) {
        size_t n;
        const char *t = rv_analysis_term(w, i, &n, NULL);
        if (j < 3 && n == strlen(want[j]) && memcmp(t, want[j], n) == 0)
            j++;
    }
    CHECK(j == 3, "expected the, brown, jumps (and Über's lower case form \"über\" dropped)");
    rv_analysis_free(w);
    rv_analyzer_free(a);
    unlink(path);
    CHECK(rv_analyzer_new("/nonexistent/stopwords", "english") == NULL && strstr(rv_error_get(), "/nonexistent"),
          "missing stopword file: %s", rv_error_get());
    CHECK(rv_analyzer_new("en", "porter") == NULL && strstr(rv_error_get(), "stemmer"), "bad stemmer");
    a = rv_analyzer_new("none", "english");
    CHECK(a && rv_analyzer_stopword_count(a) == 0, "none");
    rv_analyzer *b = rv_analyzer_new("en", "english");
    CHECK(b && rv_analyzer_stopword_count(b) == 33 && rv_analyzer_stopwords_hash(a) != rv_analyzer_stopwords_hash(b),
          "en list");
    rv_analyzer_free(a);
    rv_analyzer_free(b);
}

static void test_fingerprint(void)
{
    rv_buf s = {0};
    uint64_t a, b, c, d;
    CHECK(rv_text_fingerprint("Hello, World!", 13, &s, &a) == 0, "fp");
    CHECK(rv_text_fingerprint("  hello   WORLD ", 16, &s, &b) == 0, "fp");
    CHECK(rv_text_fingerprint("hello worlds", 12, &s, &c) == 0, "fp");
    CHECK(rv_text_fingerprint("a b", 3, &s, &d) == 0, "fp");
    CHECK(a == b, "case, punctuation and spacing must not matter");
    CHECK(a != c, "different words must differ");
    uint64_t e;
    CHECK(rv_text_fingerprint("A-B", 3, &s, &e) == 0 && e == d, "single-letter words count");
    rv_buf_free(&s);
}

static void test_params_and_errors(void)
{
    rv_bm25_params p;
    rv_bm25_params_default(&p);
    CHECK(p.variant == RV_BM25_LUCENE && p.k1 == 1.5 && p.b == 0.75 && p.delta == 0.5, "defaults");
    rv_bm25_variant v;
    CHECK(rv_bm25_variant_parse("bm25+", &v) == 0 && v == RV_BM25_BM25PLUS, "bm25+");
    CHECK(rv_bm25_variant_parse("okapi", &v) < 0 && strstr(rv_error_get(), "okapi"), "unknown variant");
    p.b = 1.5;
    CHECK(rv_bm25_params_check(&p) < 0 && strstr(rv_error_get(), "b:"), "b range");
    p.b = 0.75;
    p.k1 = NAN;
    CHECK(rv_bm25_params_check(&p) < 0, "k1 nan");
    p.k1 = 1.5;
    rv_bm25_builder *b = rv_bm25_builder_new("en", "english", &p, 0, 1);
    CHECK(b && rv_bm25_builder_finish(b) == NULL && strstr(rv_error_get(), "no documents"), "empty corpus");
    /* documents without terms still count in N and avgdl */
    b = rv_bm25_builder_new("en", "english", &p, 1, 1);
    const char *t[3] = {"", "the of and", "alpha beta"};
    size_t l[3] = {0, 10, 10};
    REQUIRE(b && rv_bm25_builder_add(b, 3, t, l) == 0, "add");
    rv_bm25_index *ix = rv_bm25_builder_finish(b);
    REQUIRE(ix, "finish: %s", rv_error_get());
    CHECK(rv_bm25_index_docs(ix) == 3 && rv_bm25_index_terms(ix) == 2 &&
              fabs(rv_bm25_index_avgdl(ix) - 2.0 / 3.0) < 1e-15,
          "stats");
    rv_bm25_hit h[3];
    uint32_t n = 9;
    const char *q = "gamma";
    size_t ql = 5;
    CHECK(rv_bm25_search(ix, 1, &q, &ql, 3, 1, h, &n) == 0 && n == 0, "no match, no hits");
    q = "Alpha alpha";
    ql = 11;
    CHECK(rv_bm25_search(ix, 1, &q, &ql, 3, 1, h, &n) == 0 && n == 1 && h[0].doc == 2, "one hit");
    uint32_t bad = 7;
    CHECK(rv_bm25_search_docs(ix, 1, &bad, 3, 1, h, &n) < 0, "doc out of range");
    rv_bm25_index_free(ix);
}

/* The pruned walk when every document is touched and the walk goes on: one
 * short document and 59 long ones sharing all 8 query terms. */
static void test_all_documents_touched(void)
{
    doc_list d = {0};
    const char *terms = "wing flow shock heat layer drag lift nozzle";
    rv_buf t = {0};
    for (int i = 0; i < 60; i++) {
        t.len = 0;
        rv_buf_append(&t, terms, strlen(terms));
        for (int j = 0; i > 0 && j < 100; j++)
            rv_buf_printf(&t, " filler%dx%d", i, j);
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        docs_add(&d, id, strlen(id), (const char *)t.data, t.len);
    }
    rv_buf_free(&t);
    rv_bm25_params p;
    rv_bm25_params_default(&p);
    rv_bm25_index *fwd = build(&d, &p, "en", "english", 1, 1), *plain = build(&d, &p, "en", "english", 0, 1);
    REQUIRE(fwd && plain, "build");
    uint32_t docs[60];
    for (int i = 0; i < 60; i++)
        docs[i] = (uint32_t)i;
    rv_bm25_hit h1[60 * 5], h2[60 * 5];
    uint32_t n1[60], n2[60];
    CHECK(rv_bm25_search_docs(fwd, 60, docs, 5, 2, h1, n1) == 0, "%s", rv_error_get());
    CHECK(rv_bm25_search(plain, 60, (const char *const *)d.text, d.len, 5, 2, h2, n2) == 0, "%s", rv_error_get());
    CHECK(memcmp(n1, n2, sizeof n1) == 0 && memcmp(h1, h2, sizeof h1) == 0, "strategies differ");
    rv_bm25_index_free(fwd);
    rv_bm25_index_free(plain);
    docs_free(&d);
}

int main(void)
{
    test_suite = "bm25";
    const char *root = getenv("RV_ROOT");
    snprintf(fixture_dir, sizeof fixture_dir, "%s/tests/fixtures/bm25", root ? root : ".");
    RUN_TEST(test_tokens_fixture);
    RUN_TEST(test_npsum_fixture);
    RUN_TEST(test_search_cranfield_lucene);
    RUN_TEST(test_search_cranfield_robertson);
    RUN_TEST(test_search_cranfield_atire);
    RUN_TEST(test_search_cranfield_bm25l);
    RUN_TEST(test_search_cranfield_bm25plus);
    RUN_TEST(test_search_cranfield_params);
    RUN_TEST(test_search_medline_adi);
    RUN_TEST(test_chunks_lucene);
    RUN_TEST(test_chunks_robertson);
    RUN_TEST(test_chunks_bm25plus);
    RUN_TEST(test_strategies_agree);
    RUN_TEST(test_all_documents_touched);
    RUN_TEST(test_index_file);
    RUN_TEST(test_analyzer_options);
    RUN_TEST(test_fingerprint);
    RUN_TEST(test_params_and_errors);
    docs_free(&chunk_set);
    TEST_EXIT();
}
