/* topk.h — bounded selection of the k best scored items, with the search
 * tie-break made explicit: higher score first, then lower index (corpus
 * order). This total order makes the result independent of the order in which
 * items arrive, so per-thread selections can be merged exactly.
 *
 * rv_topk        k best (score, index) pairs: a binary heap whose root is the
 *                worst item kept.
 * rv_topk_keyed  k best keys, where a key's value is the best (score, index)
 *                pushed for it (MaxP document aggregation: key = document,
 *                index = chunk). A small open-addressing table finds a key's
 *                heap slot, so a repeated key updates in place. Exact for any
 *                arrival order: a key evicted earlier can only come back with
 *                a value better than everything it had before.
 *
 * NaN scores rank below every number (treated as -infinity). Storage is
 * supplied by the caller, so many selections can live in one allocation. */
#ifndef RV_TOPK_H
#define RV_TOPK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    float score;
    uint32_t index;
} rv_scored;

/* 1 when a ranks strictly before b: higher score, or equal score and lower index. */
static inline int rv_scored_before(float sa, uint32_t ia, float sb, uint32_t ib)
{
    return sa > sb || (sa == sb && ia < ib);
}

typedef struct {
    rv_scored *items;
    uint32_t n, cap;
} rv_topk;

void rv_topk_init(rv_topk *h, rv_scored *storage, uint32_t cap);
static inline void rv_topk_clear(rv_topk *h) { h->n = 0; }

/* The score an item must beat to enter once the selection is full (its
 * index rule aside); -infinity while it has room. */
static inline float rv_topk_threshold(const rv_topk *h)
{
    return h->n < h->cap ? -INFINITY : h->items[0].score;
}

void rv_topk_push(rv_topk *h, float score, uint32_t index);

/* Sorts the kept items best first, in place (the heap is consumed: push
 * nothing more before rv_topk_clear). Returns their number. */
uint32_t rv_topk_sort(rv_topk *h);

/* --- keyed selection (best value per key, then the k best keys) --- */

typedef struct {
    float score;
    uint32_t index;   /* the index that gave the key its best score */
    uint32_t key;
    uint32_t slot;    /* position of the key in the table */
} rv_keyed;

typedef struct {
    uint32_t key;
    uint32_t pos;     /* heap position + 1; 0 = empty slot */
} rv_keyed_slot;

typedef struct {
    rv_keyed *items;
    rv_keyed_slot *table;
    uint32_t n, cap;
    uint32_t mask;    /* table size - 1 */
    int shift;        /* 32 - log2(table size), for multiplicative hashing */
} rv_topk_keyed;

/* Table entries needed for a selection of cap keys (a power of two ≥ 2·cap). */
size_t rv_topk_keyed_table_size(uint32_t cap);

/* items: cap entries; table: rv_topk_keyed_table_size(cap) entries. */
void rv_topk_keyed_init(rv_topk_keyed *h, rv_keyed *items, rv_keyed_slot *table, uint32_t cap);
void rv_topk_keyed_clear(rv_topk_keyed *h);

static inline float rv_topk_keyed_threshold(const rv_topk_keyed *h)
{
    return h->n < h->cap ? -INFINITY : h->items[0].score;
}

void rv_topk_keyed_push(rv_topk_keyed *h, float score, uint32_t index, uint32_t key);

/* Sorts the kept keys best first (by their best score, then the index that
 * gave it). Consumes the selection like rv_topk_sort. Returns their number. */
uint32_t rv_topk_keyed_sort(rv_topk_keyed *h);

#endif
