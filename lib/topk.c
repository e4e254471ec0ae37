/* topk.c — bounded heaps for top-k selection (see topk.h). */
#include "topk.h"

#include <stdlib.h>

static inline float sanitize(float s) { return s != s ? -INFINITY : s; }

/* ------------------------------------------------------------ plain heap */

void rv_topk_init(rv_topk *h, rv_scored *storage, uint32_t cap)
{
    h->items = storage;
    h->n = 0;
    h->cap = cap;
}

/* The heap keeps its worst item at the root: no child ranks after its parent. */
static void scored_sift_up(rv_scored *a, uint32_t i, rv_scored x)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!rv_scored_before(a[p].score, a[p].index, x.score, x.index))
            break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static void scored_sift_down(rv_scored *a, uint32_t n, uint32_t i, rv_scored x)
{
    for (;;) {
        uint64_t c = 2 * (uint64_t)i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && rv_scored_before(a[c].score, a[c].index, a[c + 1].score, a[c + 1].index))
            c++;   /* the worse child */
        if (!rv_scored_before(x.score, x.index, a[c].score, a[c].index))
            break;
        a[i] = a[c];
        i = (uint32_t)c;
    }
    a[i] = x;
}

void rv_topk_push(rv_topk *h, float score, uint32_t index)
{
    rv_scored x = {sanitize(score), index};
    if (h->n < h->cap) {
        scored_sift_up(h->items, h->n, x);
        h->n++;
    } else if (h->cap > 0 && rv_scored_before(x.score, x.index, h->items[0].score, h->items[0].index)) {
        scored_sift_down(h->items, h->n, 0, x);
    }
}

static int scored_cmp(const void *pa, const void *pb)
{
    const rv_scored *a = pa, *b = pb;
    if (rv_scored_before(a->score, a->index, b->score, b->index))
        return -1;
    return rv_scored_before(b->score, b->index, a->score, a->index);
}

uint32_t rv_topk_sort(rv_topk *h)
{
    qsort(h->items, h->n, sizeof *h->items, scored_cmp);
    return h->n;
}

/* ------------------------------------------------------------ keyed heap */

size_t rv_topk_keyed_table_size(uint32_t cap)
{
    size_t t = 2;
    while (t < 2 * (size_t)cap)
        t *= 2;
    return t;
}

void rv_topk_keyed_init(rv_topk_keyed *h, rv_keyed *items, rv_keyed_slot *table, uint32_t cap)
{
    h->items = items;
    h->table = table;
    h->cap = cap;
    size_t t = rv_topk_keyed_table_size(cap);
    h->mask = (uint32_t)(t - 1);
    int bits = 0;
    while (((size_t)1 << bits) < t)
        bits++;
    h->shift = 32 - bits;
    h->n = 0;
    for (size_t i = 0; i < t; i++)
        table[i].pos = 0;
}

void rv_topk_keyed_clear(rv_topk_keyed *h)
{
    for (uint32_t i = 0; i < h->n; i++)
        h->table[h->items[i].slot].pos = 0;
    h->n = 0;
}

static inline uint32_t key_hash(const rv_topk_keyed *h, uint32_t key)
{
    return (uint32_t)(key * 0x9E3779B1u) >> h->shift;   /* Fibonacci hashing */
}

/* The key's slot, or the empty slot where it would go (pos == 0). */
static uint32_t table_find(const rv_topk_keyed *h, uint32_t key)
{
    uint32_t i = key_hash(h, key);
    while (h->table[i].pos && h->table[i].key != key)
        i = (i + 1) & h->mask;
    return i;
}

/* Linear probing deletion by backward shift: later entries of the cluster
 * move up so that every key stays reachable from its home slot. */
static void table_delete(rv_topk_keyed *h, uint32_t i)
{
    h->table[i].pos = 0;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & h->mask;
        if (!h->table[j].pos)
            return;
        uint32_t home = key_hash(h, h->table[j].key);
        if (((j - home) & h->mask) >= ((j - i) & h->mask)) {
            h->table[i] = h->table[j];
            h->items[h->table[i].pos - 1].slot = i;
            h->table[j].pos = 0;
            i = j;
        }
    }
}

static inline int keyed_before(const rv_keyed *a, const rv_keyed *b)
{
    return rv_scored_before(a->score, a->index, b->score, b->index);
}

static inline void keyed_place(rv_topk_keyed *h, uint32_t i, const rv_keyed *x)
{
    h->items[i] = *x;
    h->table[x->slot].pos = i + 1;
}

static void keyed_sift_up(rv_topk_keyed *h, uint32_t i, rv_keyed x)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!keyed_before(&h->items[p], &x))
            break;
        keyed_place(h, i, &h->items[p]);
        i = p;
    }
    keyed_place(h, i, &x);
}

static void keyed_sift_down(rv_topk_keyed *h, uint32_t i, rv_keyed x)
{
    rv_keyed *a = h->items;
    for (;;) {
        uint64_t c = 2 * (uint64_t)i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && keyed_before(&a[c], &a[c + 1]))
            c++;
        if (!keyed_before(&x, &a[c]))
            break;
        keyed_place(h, i, &a[c]);
        i = (uint32_t)c;
    }
    keyed_place(h, i, &x);
}

void rv_topk_keyed_push(rv_topk_keyed *h, float score, uint32_t index, uint32_t key)
{
    rv_keyed x = {sanitize(score), index, key, 0};
    if (h->cap == 0)
        return;
    uint32_t s = table_find(h, key);
    if (h->table[s].pos) {   /* known key: keep its best value */
        uint32_t pos = h->table[s].pos - 1;
        if (keyed_before(&x, &h->items[pos])) {
            x.slot = s;
            keyed_sift_down(h, pos, x);   /* it got better: it moves away from the root */
        }
        return;
    }
    if (h->n < h->cap) {
        h->table[s].key = key;
        x.slot = s;
        h->table[s].pos = h->n + 1;
        h->n++;
        keyed_sift_up(h, h->n - 1, x);
    } else if (keyed_before(&x, &h->items[0])) {
        table_delete(h, h->items[0].slot);
        s = table_find(h, key);   /* the deletion may have opened an earlier slot */
        h->table[s].key = key;
        x.slot = s;
        keyed_sift_down(h, 0, x);
    }
}

static int keyed_cmp(const void *pa, const void *pb)
{
    const rv_keyed *a = pa, *b = pb;
    if (keyed_before(a, b))
        return -1;
    if (keyed_before(b, a))
        return 1;
    return (a->key > b->key) - (a->key < b->key);
}

uint32_t rv_topk_keyed_sort(rv_topk_keyed *h)
{
    qsort(h->items, h->n, sizeof *h->items, keyed_cmp);
    for (uint32_t i = 0; i < h->n; i++)   /* keep the table consistent for clear */
        h->table[h->items[i].slot].pos = i + 1;
    return h->n;
}
