/* test_bm25_group.c — the grouping rules of rv-bm25group (lib/bm25_group.c)
 * on real text (the first 4,000 chunks of the Cranfield fixture, cut into
 * 30-word windows, plus planted near-duplicates):
 *   - every group has exactly group_size distinct members, no two with the
 *     same near-duplicate key, the seed first;
 *   - neighbours are exactly the best-ranked eligible chunks (checked
 *     against the seed's complete ranking), with their true scores;
 *   - --other-docs, --max-reuse, --short fill/drop, --seeds N behave as
 *     documented; the same seed gives the same groups for any thread count;
 *   - interleaving follows the paper's order and the near-duplicate rule. */
#include "test.h"
#include "analyzer.h"
#include "bm25.h"
#include "bm25_group.h"
#include "buf.h"
#include "error.h"
#include "records.h"
#include "stream.h"

static char fixture_dir[4096];

typedef struct {
    char **text;
    size_t *len;
    uint32_t *doc;          /* document number */
    uint64_t *fp;
    size_t n;
} chunks;

static chunks C;

/* Cranfield documents in 30-word windows; every 50th chunk is followed by a
 * copy of itself in upper case with extra punctuation (a near-duplicate). */
static int load_chunks(size_t max)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/cranfield.rvs", fixture_dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    rv_stream_reader *r = rv_stream_reader_open(f, path);
    C.text = calloc(max, sizeof *C.text);
    C.len = calloc(max, sizeof *C.len);
    C.doc = calloc(max, sizeof *C.doc);
    C.fp = calloc(max, sizeof *C.fp);
    const unsigned char *rec;
    size_t len;
    uint32_t docno = 0;
    rv_buf scratch = {0};
    while (r && C.n < max && rv_stream_read(r, &rec, &len) == 1) {
        rv_doc d;
        if (rv_doc_decode(rec, len, &d) < 0)
            break;
        const char *p = d.text.p, *end = d.text.p + d.text.len;
        while (p < end && C.n < max) {
            const char *s = p;
            int words = 0;
            while (p < end && words < 30) {
                while (p < end && *p == ' ')
                    p++;
                while (p < end && *p != ' ')
                    p++;
                words++;
            }
            size_t n = (size_t)(p - s);
            C.text[C.n] = strndup(s, n);
            C.len[C.n] = n;
            C.doc[C.n] = docno;
            C.n++;
            if (C.n % 50 == 0 && C.n < max) {
                char *u = malloc(n + 3);
                for (size_t i = 0; i < n; i++)
                    u[i] = (char)(C.text[C.n - 1][i] >= 'a' && C.text[C.n - 1][i] <= 'z' ? C.text[C.n - 1][i] - 32
                                                                                        : C.text[C.n - 1][i]);
                memcpy(u + n, "!!", 3);
                C.text[C.n] = u;
                C.len[C.n] = n + 2;
                C.doc[C.n] = docno + 1000000; /* another document */
                C.n++;
            }
        }
        docno++;
    }
    for (size_t i = 0; i < C.n; i++)
        rv_text_fingerprint(C.text[i], C.len[i], &scratch, &C.fp[i]);
    rv_buf_free(&scratch);
    rv_stream_reader_close(r);
    fclose(f);
    return C.n ? 0 : -1;
}

static rv_bm25_index *IX;

typedef struct {
    uint32_t size;
    size_t n;
    uint32_t *m;            /* n * size members */
    float *s;
} groups;

static int collect(void *ctx, const uint32_t *members, const float *scores, uint32_t n)
{
    groups *g = ctx;
    if (n != g->size)
        return rv_error_set("group of %u, expected %u", n, g->size);
    g->m = realloc(g->m, (g->n + 1) * g->size * sizeof *g->m);
    g->s = realloc(g->s, (g->n + 1) * g->size * sizeof *g->s);
    memcpy(g->m + g->n * g->size, members, n * sizeof *members);
    memcpy(g->s + g->n * g->size, scores, n * sizeof *scores);
    g->n++;
    return 0;
}

static void groups_free(groups *g)
{
    free(g->m);
    free(g->s);
    memset(g, 0, sizeof *g);
}

static int run(const rv_group_opts *o, groups *g, rv_group_stats *st)
{
    memset(g, 0, sizeof *g);
    g->size = o->group_size;
    return rv_bm25_groups(IX, C.fp, C.doc, o, collect, g, st);
}

static rv_group_opts opts(uint32_t size)
{
    rv_group_opts o;
    memset(&o, 0, sizeof o);
    o.group_size = size;
    o.seed = 42;
    o.threads = 2;
    return o;
}

/* Members distinct, no shared near-duplicate key. */
static int check_members(const groups *g, size_t i)
{
    const uint32_t *m = g->m + i * g->size;
    for (uint32_t a = 0; a < g->size; a++)
        for (uint32_t b = a + 1; b < g->size; b++)
            if (m[a] == m[b] || C.fp[m[a]] == C.fp[m[b]])
                return 0;
    return 1;
}

static void test_invariants_and_optimality(void)
{
    rv_group_opts o = opts(8);
    groups g;
    rv_group_stats st;
    REQUIRE(run(&o, &g, &st) == 0, "%s", rv_error_get());
    CHECK(g.n == st.groups && st.seeds == C.n && g.n + st.short_dropped == C.n, "counts: %zu groups, %llu seeds",
          g.n, (unsigned long long)st.seeds);
    CHECK(st.near_dup_skipped > 0, "the planted near-duplicates must have been skipped");
    size_t bad = 0, checked = 0;
    uint32_t *perm = malloc(C.n * sizeof *perm);
    rv_group_seed_order(C.n, 42, perm);
    rv_bm25_hit *all = malloc(C.n * sizeof *all);
    for (size_t i = 0; i < g.n; i++) {
        if (!check_members(&g, i))
            bad++;
        /* every 37th group: compare with the seed's complete ranking */
        if (i % 37)
            continue;
        uint32_t seed = g.m[i * g.size], nh;
        REQUIRE(rv_bm25_search_docs(IX, 1, &seed, (uint32_t)C.n, 1, all, &nh) == 0, "%s", rv_error_get());
        uint32_t want[64], nw = 1;
        float wscore[64];
        want[0] = seed;
        for (uint32_t j = 0; j < nh && nw < g.size; j++) {
            uint32_t c = all[j].doc;
            int ok = c != seed;
            for (uint32_t t = 0; ok && t < nw; t++)
                ok = C.fp[want[t]] != C.fp[c];
            if (ok) {
                wscore[nw] = all[j].score;
                want[nw++] = c;
            }
        }
        CHECK(nw == g.size, "seed %u: only %u eligible", seed, nw);
        for (uint32_t j = 1; j < nw; j++) {
            CHECK(g.m[i * g.size + j] == want[j] && g.s[i * g.size + j] == wscore[j],
                  "group %zu member %u: chunk %u (%.9g), expected %u (%.9g)", i, j, g.m[i * g.size + j],
                  g.s[i * g.size + j], want[j], wscore[j]);
            float ps;
            CHECK(rv_bm25_score_pair(IX, seed, want[j], &ps) == 0 && ps == wscore[j], "pair score");
        }
        CHECK(g.s[i * g.size] == 0, "the seed's score is 0");
        checked++;
    }
    CHECK(bad == 0, "%zu groups break the distinct / near-duplicate rule", bad);
    CHECK(checked > 20, "checked %zu groups", checked);
    /* seeds come in the documented order (dropped seeds leave gaps) */
    size_t gi = 0;
    for (size_t i = 0; i < C.n && gi < g.n; i++)
        if (perm[i] == g.m[gi * g.size])
            gi++;
    CHECK(gi == g.n, "groups do not follow the seed order");
    free(perm);
    free(all);
    groups_free(&g);
}

static void test_deterministic(void)
{
    rv_group_opts o = opts(16);
    o.n_seeds = 700;
    groups a, b, c;
    rv_group_stats st;
    REQUIRE(run(&o, &a, &st) == 0, "%s", rv_error_get());
    CHECK(a.n > 600 && st.seeds == 700, "seeds: %llu, groups %zu", (unsigned long long)st.seeds, a.n);
    o.threads = 1;
    REQUIRE(run(&o, &b, &st) == 0, "%s", rv_error_get());
    CHECK(a.n == b.n && memcmp(a.m, b.m, a.n * a.size * sizeof *a.m) == 0 &&
              memcmp(a.s, b.s, a.n * a.size * sizeof *a.s) == 0,
          "1 and 2 threads give different groups");
    o.seed = 43;
    REQUIRE(run(&o, &c, &st) == 0, "%s", rv_error_get());
    CHECK(c.n && memcmp(a.m, c.m, (a.n < c.n ? a.n : c.n) * a.size * sizeof *a.m) != 0,
          "another seed must give other groups");
    groups_free(&a);
    groups_free(&b);
    groups_free(&c);
}

static void test_other_docs_and_reuse(void)
{
    rv_group_opts o = opts(6);
    o.other_docs = 1;
    o.max_reuse = 2;
    groups g;
    rv_group_stats st;
    REQUIRE(run(&o, &g, &st) == 0, "%s", rv_error_get());
    uint32_t *uses = calloc(C.n, sizeof *uses);
    size_t same = 0, bad = 0;
    for (size_t i = 0; i < g.n; i++) {
        const uint32_t *m = g.m + i * g.size;
        for (uint32_t j = 0; j < g.size; j++) {
            uses[m[j]]++;
            if (j && C.doc[m[j]] == C.doc[m[0]])
                same++;
        }
        bad += !check_members(&g, i);
    }
    uint32_t mx = 0;
    for (size_t i = 0; i < C.n; i++)
        if (uses[i] > mx)
            mx = uses[i];
    CHECK(same == 0, "%zu neighbours from the seed's document", same);
    CHECK(mx <= 2 && st.max_uses == mx, "a chunk is used %u times (max-reuse 2)", mx);
    CHECK(bad == 0, "near-duplicates");
    CHECK(st.same_doc_skipped > 0 && st.reuse_skipped > 0 && st.seeds_reused_out > 0, "stats");
    free(uses);
    groups_free(&g);
}

static void test_short_fill_and_drop(void)
{
    /* a tiny corpus: two related chunks and unrelated ones */
    const char *t[6] = {"wing flutter at supersonic speed", "flutter of a wing in supersonic flow",
                        "boundary layer transition", "heat transfer in nozzles", "shock waves", "WING flutter, at "
                                                                                                  "supersonic speed!"};
    size_t l[6];
    for (int i = 0; i < 6; i++)
        l[i] = strlen(t[i]);
    rv_bm25_params p;
    rv_bm25_params_default(&p);
    rv_bm25_builder *b = rv_bm25_builder_new("en", "english", &p, 1, 1);
    REQUIRE(b && rv_bm25_builder_add(b, 6, t, l) == 0, "add");
    rv_bm25_index *ix = rv_bm25_builder_finish(b);
    REQUIRE(ix, "%s", rv_error_get());
    uint64_t fp[6];
    uint32_t doc[6] = {0, 1, 2, 3, 4, 5};
    rv_buf s = {0};
    for (int i = 0; i < 6; i++)
        rv_text_fingerprint(t[i], l[i], &s, &fp[i]);
    rv_buf_free(&s);
    CHECK(fp[0] == fp[5], "chunk 5 is a near-duplicate of chunk 0");
    rv_group_opts o = opts(3);
    groups g = {3, 0, NULL, NULL};
    rv_group_stats st;
    CHECK(rv_bm25_groups(ix, fp, doc, &o, collect, &g, &st) == 0, "%s", rv_error_get());
    /* only chunks 0/1 and 5/1 share terms; 0 and 5 may not meet: every seed
     * is short, every group is dropped */
    CHECK(g.n == 0 && st.short_dropped == 6, "drop: %zu groups, %llu dropped", g.n,
          (unsigned long long)st.short_dropped);
    o.fill_short = 1;
    CHECK(rv_bm25_groups(ix, fp, doc, &o, collect, &g, &st) == 0, "%s", rv_error_get());
    CHECK(g.n == 6 && st.short_filled == 6, "fill: %zu groups", g.n);
    for (size_t i = 0; i < g.n; i++) {
        const uint32_t *m = g.m + i * 3;
        CHECK(fp[m[0]] != fp[m[1]] && fp[m[0]] != fp[m[2]] && fp[m[1]] != fp[m[2]], "filled group %zu", i);
    }
    groups_free(&g);
    rv_bm25_index_free(ix);
}

static void test_interleave(void)
{
    /* 3 documents of 5, 3 and 4 chunks; chunk 9 duplicates chunk 1 */
    uint32_t doc[12] = {0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
    uint64_t fp[12];
    for (int i = 0; i < 12; i++)
        fp[i] = 1000 + (uint64_t)i;
    fp[9] = fp[1];
    groups g = {4, 0, NULL, NULL};
    rv_group_stats st;
    CHECK(rv_interleave_groups(12, doc, fp, 4, 2, collect, &g, &st) == 0, "%s", rv_error_get());
    /* docs 0+1 interleaved: 0 5 1 6 2 7 3 4, then doc 2 alone: 8 9 10 11 */
    uint32_t want[12] = {0, 5, 1, 6, 2, 7, 3, 4, 8, 9, 10, 11};
    CHECK(g.n == 3 && memcmp(g.m, want, sizeof want) == 0 && st.dropped_chunks == 0, "order");
    groups_free(&g);
    /* the duplicate meets its original when documents 0 and 2 share groups */
    uint32_t doc2[12] = {0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2};
    fp[9] = fp[1];
    g = (groups){4, 0, NULL, NULL};
    CHECK(rv_interleave_groups(12, doc2, fp, 4, 2, collect, &g, &st) == 0, "%s", rv_error_get());
    size_t bad = 0;
    for (size_t i = 0; i < g.n; i++)
        for (int a = 0; a < 4; a++)
            for (int b = a + 1; b < 4; b++)
                bad += fp[g.m[i * 4 + a]] == fp[g.m[i * 4 + b]];
    CHECK(bad == 0 && g.n * 4 + st.dropped_chunks == 12, "near-duplicate rule: %zu clashes, %zu groups", bad, g.n);
    groups_free(&g);
    CHECK(rv_interleave_groups(12, doc, fp, 1, 2, collect, &g, &st) < 0, "group size 1 is an error");
}

static void test_seed_order(void)
{
    uint32_t a[1000], b[1000];
    CHECK(rv_group_seed_order(1000, 7, a) == 0 && rv_group_seed_order(1000, 7, b) == 0 &&
              memcmp(a, b, sizeof a) == 0,
          "same seed");
    char seen[1000] = {0};
    for (int i = 0; i < 1000; i++)
        seen[a[i]]++;
    int ok = 1;
    for (int i = 0; i < 1000; i++)
        ok &= seen[i] == 1;
    CHECK(ok, "a permutation");
    CHECK(rv_group_seed_order(1000, 8, b) == 0 && memcmp(a, b, sizeof a) != 0, "another seed");
}

int main(void)
{
    test_suite = "bm25_group";
    const char *root = getenv("RV_ROOT");
    snprintf(fixture_dir, sizeof fixture_dir, "%s/tests/fixtures/bm25", root ? root : ".");
    if (load_chunks(4000) < 0) {
        printf("FAIL bm25_group/load: cannot read %s/cranfield.rvs\n", fixture_dir);
        return 1;
    }
    rv_bm25_params p;
    rv_bm25_params_default(&p);
    rv_bm25_builder *b = rv_bm25_builder_new("en", "english", &p, 1, 2);
    if (!b || rv_bm25_builder_add(b, C.n, (const char *const *)C.text, C.len) < 0 ||
        !(IX = rv_bm25_builder_finish(b))) {
        printf("FAIL bm25_group/index: %s\n", rv_error_get());
        return 1;
    }
    RUN_TEST(test_invariants_and_optimality);
    RUN_TEST(test_deterministic);
    RUN_TEST(test_other_docs_and_reuse);
    RUN_TEST(test_short_fill_and_drop);
    RUN_TEST(test_interleave);
    RUN_TEST(test_seed_order);
    rv_bm25_index_free(IX);
    for (size_t i = 0; i < C.n; i++)
        free(C.text[i]);
    free(C.text);
    free(C.len);
    free(C.doc);
    free(C.fp);
    TEST_EXIT();
}
