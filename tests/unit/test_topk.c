/* test_topk.c — the bounded heaps against a full sort of every item, with
 * heavy ties, any arrival order, NaN, and the keyed (MaxP) variant against a
 * per-key maximum computed by brute force. */
#include "test.h"
#include "topk.h"

#include <math.h>

static int cmp_scored(const void *pa, const void *pb)
{
    const rv_scored *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static void shuffle(rv_scored *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = test_rand() % i;
        rv_scored t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Random items (distinct indices, scores from a few values or continuous),
 * pushed in random order, must give the first cap items of a full sort. */
static void test_plain_vs_sort(void)
{
    enum { MAX_N = 400 };
    static rv_scored items[MAX_N], sorted[MAX_N], storage[MAX_N + 8];
    for (int trial = 0; trial < 3000; trial++) {
        size_t n = test_rand() % MAX_N;
        uint32_t cap = (uint32_t)(trial % 5 == 0 ? n + test_rand() % 8 : test_rand() % 60);
        int distinct_values = trial % 3 == 0 ? 0 : 1 + (int)(test_rand() % 6);
        for (size_t i = 0; i < n; i++) {
            items[i].index = (uint32_t)(i * 7 + 3);
            items[i].score = distinct_values ? (float)(test_rand() % distinct_values) - 2.0f
                                             : (float)(test_rand() % 1000000) / 7.0f;
        }
        shuffle(items, n);
        rv_topk h;
        rv_topk_init(&h, storage, cap);
        for (size_t i = 0; i < n; i++)
            rv_topk_push(&h, items[i].score, items[i].index);
        memcpy(sorted, items, n * sizeof *items);
        qsort(sorted, n, sizeof *sorted, cmp_scored);
        uint32_t want = n < cap ? (uint32_t)n : cap;
        uint32_t got = rv_topk_sort(&h);
        REQUIRE(got == want, "trial %d: %u items kept, expected %u", trial, got, want);
        for (uint32_t i = 0; i < got; i++)
            REQUIRE(h.items[i].score == sorted[i].score && h.items[i].index == sorted[i].index,
                    "trial %d rank %u: (%g,%u), expected (%g,%u)", trial, i, h.items[i].score, h.items[i].index,
                    sorted[i].score, sorted[i].index);
    }
}

static void test_threshold(void)
{
    rv_scored st[3];
    rv_topk h;
    rv_topk_init(&h, st, 3);
    CHECK(rv_topk_threshold(&h) == -INFINITY, "empty heap threshold");
    rv_topk_push(&h, 5, 0);
    rv_topk_push(&h, 1, 1);
    CHECK(rv_topk_threshold(&h) == -INFINITY, "heap with room");
    rv_topk_push(&h, 3, 2);
    CHECK(rv_topk_threshold(&h) == 1, "full heap: worst kept score, got %g", rv_topk_threshold(&h));
    rv_topk_push(&h, 1, 0);   /* same score, lower index: replaces (1, 1) */
    rv_topk_sort(&h);
    CHECK(h.items[2].score == 1 && h.items[2].index == 0, "tie goes to the lower index, got %u", h.items[2].index);
    rv_topk_init(&h, st, 0);
    rv_topk_push(&h, 9, 9);
    CHECK(h.n == 0 && rv_topk_sort(&h) == 0, "capacity 0 keeps nothing");
}

static void test_nan_ranks_last(void)
{
    rv_scored st[3];
    rv_topk h;
    rv_topk_init(&h, st, 3);
    rv_topk_push(&h, -INFINITY, 5);
    rv_topk_push(&h, NAN, 3);
    rv_topk_push(&h, NAN, 9);
    rv_topk_push(&h, 1.0f, 7);
    rv_topk_sort(&h);
    CHECK(h.items[0].index == 7, "a number ranks first, got %u", h.items[0].index);
    CHECK(h.items[1].index == 3 && h.items[1].score == -INFINITY, "NaN ranks as -inf (lower index first), got %u %g",
          h.items[1].index, h.items[1].score);
    CHECK(h.items[2].index == 5, "then -inf at index 5, got %u", h.items[2].index);
}

/* --- keyed --- */

typedef struct {
    float score;
    uint32_t index, key;
} keyed_item;

static void test_keyed_vs_brute_force(void)
{
    enum { MAX_N = 500, MAX_KEYS = 120 };
    static keyed_item items[MAX_N];
    static rv_scored best[MAX_KEYS];   /* per key: best (score, index); index UINT32_MAX = unseen */
    static rv_keyed storage[MAX_KEYS + 8];
    static rv_keyed_slot table[1024];
    for (int trial = 0; trial < 3000; trial++) {
        size_t n = test_rand() % MAX_N;
        uint32_t n_keys = 1 + (uint32_t)(test_rand() % MAX_KEYS);
        uint32_t cap = (uint32_t)(trial % 7 == 0 ? n_keys + test_rand() % 4 : 1 + test_rand() % 40);
        int distinct_values = trial % 3 == 0 ? 0 : 1 + (int)(test_rand() % 5);
        for (uint32_t k = 0; k < n_keys; k++)
            best[k] = (rv_scored){-INFINITY, UINT32_MAX};
        for (size_t i = 0; i < n; i++) {
            items[i].index = (uint32_t)i;   /* each item (chunk) belongs to one key */
            items[i].key = (uint32_t)(test_rand() % n_keys);
            items[i].score = distinct_values ? (float)(test_rand() % distinct_values)
                                             : (float)(test_rand() % 100000) / 3.0f;
            rv_scored *b = &best[items[i].key];
            if (b->index == UINT32_MAX || rv_scored_before(items[i].score, items[i].index, b->score, b->index))
                *b = (rv_scored){items[i].score, items[i].index};
        }
        for (size_t i = n; i > 1; i--) {   /* arrival order: random */
            size_t j = test_rand() % i;
            keyed_item t = items[i - 1];
            items[i - 1] = items[j];
            items[j] = t;
        }
        REQUIRE(rv_topk_keyed_table_size(cap) <= 1024, "table size");
        rv_topk_keyed h;
        rv_topk_keyed_init(&h, storage, table, cap);
        for (int round = 0; round < 2; round++) {   /* a second round after clear reuses the table */
            for (size_t i = 0; i < n; i++)
                rv_topk_keyed_push(&h, items[i].score, items[i].index, items[i].key);
            rv_scored want[MAX_KEYS];
            uint32_t nw = 0;
            for (uint32_t k = 0; k < n_keys; k++)
                if (best[k].index != UINT32_MAX)
                    want[nw++] = best[k];
            qsort(want, nw, sizeof *want, cmp_scored);
            if (nw > cap)
                nw = cap;
            uint32_t got = rv_topk_keyed_sort(&h);
            REQUIRE(got == nw, "trial %d: %u keys kept, expected %u", trial, got, nw);
            for (uint32_t i = 0; i < got; i++) {
                const rv_keyed *g = &h.items[i];
                REQUIRE(g->score == want[i].score && g->index == want[i].index,
                        "trial %d rank %u: (%g, row %u), expected (%g, row %u)", trial, i, g->score, g->index,
                        want[i].score, want[i].index);
                REQUIRE(g->key < n_keys, "key in range");
            }
            rv_topk_keyed_clear(&h);
            size_t used = 0;
            for (size_t s = 0; s < rv_topk_keyed_table_size(cap); s++)
                used += table[s].pos != 0;
            REQUIRE(used == 0, "clear empties the table (%zu slots left)", used);
        }
    }
}

/* A key evicted early comes back later with a better score: its value is
 * the better one, and keys seen again with worse scores keep their best. */
static void test_keyed_eviction(void)
{
    rv_keyed st[2];
    rv_keyed_slot tab[8];
    rv_topk_keyed h;
    rv_topk_keyed_init(&h, st, tab, 2);
    rv_topk_keyed_push(&h, 1, 0, 100);
    rv_topk_keyed_push(&h, 5, 1, 200);
    rv_topk_keyed_push(&h, 3, 2, 300);   /* evicts key 100 */
    rv_topk_keyed_push(&h, 0, 3, 200);   /* worse than key 200's best: no change */
    rv_topk_keyed_push(&h, 9, 4, 100);   /* back, better than everything */
    rv_topk_keyed_push(&h, 9, 5, 300);   /* improves key 300 to a tie with 100; row 4 < 5 */
    CHECK(rv_topk_keyed_sort(&h) == 2, "two keys");
    CHECK(h.items[0].key == 100 && h.items[0].score == 9 && h.items[0].index == 4, "first: key %u score %g row %u",
          h.items[0].key, h.items[0].score, h.items[0].index);
    CHECK(h.items[1].key == 300 && h.items[1].score == 9 && h.items[1].index == 5, "second: key %u score %g row %u",
          h.items[1].key, h.items[1].score, h.items[1].index);
}

/* Keys that collide in the table (same home slot) survive deletions. */
static void test_keyed_collisions(void)
{
    enum { CAP = 16 };
    rv_keyed st[CAP];
    rv_keyed_slot tab[64];
    rv_topk_keyed h;
    rv_topk_keyed_init(&h, st, tab, CAP);
    /* many keys, many evictions: every 4th item is a repeat of an old key */
    uint32_t row = 0;
    for (int i = 0; i < 5000; i++) {
        uint32_t key = (i % 4 == 0) ? (uint32_t)(test_rand() % (i + 1)) : (uint32_t)i * 64u;
        rv_topk_keyed_push(&h, (float)(test_rand() % 50), row++, key);
        /* invariant: every kept key is found in the table at its position */
        for (uint32_t p = 0; p < h.n; p++)
            REQUIRE(h.table[h.items[p].slot].pos == p + 1 && h.table[h.items[p].slot].key == h.items[p].key,
                    "step %d: heap position %u and table disagree", i, p);
        for (uint32_t p = 0; p < h.n; p++)
            for (uint32_t q = p + 1; q < h.n; q++)
                REQUIRE(h.items[p].key != h.items[q].key, "step %d: key %u kept twice", i, h.items[p].key);
    }
}

int main(void)
{
    test_suite = "topk";
    RUN_TEST(test_plain_vs_sort);
    RUN_TEST(test_threshold);
    RUN_TEST(test_nan_ranks_last);
    RUN_TEST(test_keyed_vs_brute_force);
    RUN_TEST(test_keyed_eviction);
    RUN_TEST(test_keyed_collisions);
    TEST_EXIT();
}
