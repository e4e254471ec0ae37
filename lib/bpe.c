/* bpe.c — byte-level BPE vocabulary, merge table and merge loop (see bpe.h). */
#include "bpe.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int rv_ids_reserve(rv_ids *ids, size_t extra)
{
    size_t need;
    if (rv_size_add(ids->n, extra, &need, "token ids") < 0)
        return -1;
    if (need <= ids->cap)
        return 0;
    size_t cap = ids->cap ? ids->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 8 ? need : cap * 2;
    size_t bytes;
    if (rv_size_mul(cap, sizeof *ids->v, &bytes, "token ids") < 0)
        return -1;
    uint32_t *v = realloc(ids->v, bytes);
    if (!v)
        return rv_error_set("out of memory growing token ids to %zu", cap);
    ids->v = v;
    ids->cap = cap;
    return 0;
}

void rv_ids_free(rv_ids *ids)
{
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

/* --- the model --- */

typedef struct {
    uint64_t key;      /* left << 32 | right; UINT64_MAX = empty */
    uint32_t rank;
    uint32_t merged;
} merge_slot;

struct rv_bpe {
    uint32_t n_ids;
    /* vocabulary: open addressing over ids; strings in pool */
    uint32_t *tok_slots;   /* id or RV_TOKEN_NONE */
    size_t tok_mask, n_tokens;
    size_t *tok_off;       /* per id: offset in pool, SIZE_MAX if none */
    uint32_t *tok_len;
    rv_buf pool;
    /* merges */
    merge_slot *merge_slots;
    size_t merge_mask, n_merges;
    uint32_t byte_id[256];
    int ignore_merges;
};

static uint64_t hash_bytes(const unsigned char *p, size_t n) { return XXH3_64bits(p, n); }

static inline size_t merge_hash(uint64_t key, size_t mask)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

rv_bpe *rv_bpe_new(uint32_t n_ids)
{
    rv_bpe *b = rv_calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->n_ids = n_ids;
    size_t slots = 1024;
    while (slots < (size_t)n_ids * 2)
        slots *= 2;
    b->tok_slots = rv_malloc(slots * sizeof *b->tok_slots);
    b->tok_off = rv_malloc((size_t)(n_ids ? n_ids : 1) * sizeof *b->tok_off);
    b->tok_len = rv_calloc(n_ids ? n_ids : 1, sizeof *b->tok_len);
    b->merge_slots = rv_malloc(1024 * sizeof *b->merge_slots);
    if (!b->tok_slots || !b->tok_off || !b->tok_len || !b->merge_slots) {
        rv_bpe_free(b);
        return NULL;
    }
    memset(b->tok_slots, 0xFF, slots * sizeof *b->tok_slots);
    memset(b->tok_off, 0xFF, (size_t)(n_ids ? n_ids : 1) * sizeof *b->tok_off);
    b->tok_mask = slots - 1;
    for (size_t i = 0; i < 1024; i++)
        b->merge_slots[i].key = UINT64_MAX;
    b->merge_mask = 1023;
    for (int i = 0; i < 256; i++)
        b->byte_id[i] = RV_TOKEN_NONE;
    return b;
}

void rv_bpe_free(rv_bpe *b)
{
    if (!b)
        return;
    free(b->tok_slots);
    free(b->tok_off);
    free(b->tok_len);
    free(b->merge_slots);
    rv_buf_free(&b->pool);
    free(b);
}

static int token_equals(const rv_bpe *b, uint32_t id, const unsigned char *p, size_t n)
{
    return b->tok_len[id] == n && memcmp(b->pool.data + b->tok_off[id], p, n) == 0;
}

int rv_bpe_add_token(rv_bpe *b, const unsigned char *bytes, size_t len, uint32_t id)
{
    if (id >= b->n_ids)
        return rv_error_set("token id %u out of range (vocabulary size %u)", id, b->n_ids);
    if (len == 0 || len > UINT32_MAX)
        return rv_error_set("token %u: empty or oversized token", id);
    if (b->tok_off[id] != SIZE_MAX)
        return rv_error_set("token id %u is assigned twice", id);
    if ((b->n_tokens + 1) * 2 > b->tok_mask + 1)
        return rv_error_set("vocabulary larger than declared (%u ids)", b->n_ids);
    b->tok_off[id] = b->pool.len;
    b->tok_len[id] = (uint32_t)len;
    if (rv_buf_append(&b->pool, bytes, len) < 0)
        return -1;
    size_t h = (size_t)hash_bytes(bytes, len) & b->tok_mask;
    while (b->tok_slots[h] != RV_TOKEN_NONE) {
        if (token_equals(b, b->tok_slots[h], bytes, len)) {
            b->tok_slots[h] = id; /* last one wins */
            return 0;
        }
        h = (h + 1) & b->tok_mask;
    }
    b->tok_slots[h] = id;
    b->n_tokens++;
    if (len == 1)
        b->byte_id[bytes[0]] = id;
    return 0;
}

uint32_t rv_bpe_find(const rv_bpe *b, const unsigned char *bytes, size_t len)
{
    size_t h = (size_t)hash_bytes(bytes, len) & b->tok_mask;
    uint32_t id;
    while ((id = b->tok_slots[h]) != RV_TOKEN_NONE) {
        if (token_equals(b, id, bytes, len))
            return id;
        h = (h + 1) & b->tok_mask;
    }
    return RV_TOKEN_NONE;
}

static int merges_grow(rv_bpe *b)
{
    size_t slots = (b->merge_mask + 1) * 2;
    merge_slot *ns = rv_malloc(slots * sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < slots; i++)
        ns[i].key = UINT64_MAX;
    for (size_t i = 0; i <= b->merge_mask; i++) {
        merge_slot *s = &b->merge_slots[i];
        if (s->key == UINT64_MAX)
            continue;
        size_t h = merge_hash(s->key, slots - 1);
        while (ns[h].key != UINT64_MAX)
            h = (h + 1) & (slots - 1);
        ns[h] = *s;
    }
    free(b->merge_slots);
    b->merge_slots = ns;
    b->merge_mask = slots - 1;
    return 0;
}

int rv_bpe_add_merge(rv_bpe *b, uint32_t left, uint32_t right, uint32_t merged, uint32_t rank)
{
    if (left >= b->n_ids || right >= b->n_ids || merged >= b->n_ids)
        return rv_error_set("merge %u: id out of range", rank);
    if ((b->n_merges + 1) * 2 > b->merge_mask + 1 && merges_grow(b) < 0)
        return -1;
    uint64_t key = (uint64_t)left << 32 | right;
    size_t h = merge_hash(key, b->merge_mask);
    while (b->merge_slots[h].key != UINT64_MAX && b->merge_slots[h].key != key)
        h = (h + 1) & b->merge_mask;
    if (b->merge_slots[h].key == UINT64_MAX)
        b->n_merges++;
    b->merge_slots[h] = (merge_slot){key, rank, merged};
    return 0;
}

void rv_bpe_set_ignore_merges(rv_bpe *b, int on) { b->ignore_merges = on; }

static inline const merge_slot *merge_find(const rv_bpe *b, uint32_t left, uint32_t right)
{
    uint64_t key = (uint64_t)left << 32 | right;
    size_t h = merge_hash(key, b->merge_mask);
    for (;;) {
        const merge_slot *s = &b->merge_slots[h];
        if (s->key == key)
            return s;
        if (s->key == UINT64_MAX)
            return NULL;
        h = (h + 1) & b->merge_mask;
    }
}

/* --- merge loop --- */

enum { SMALL_WORD = 48 };

/* Quadratic path for short words: ranks[k] is the rank of (sym[k], sym[k+1]). */
static void merge_small(const rv_bpe *b, uint32_t *sym, size_t *m_io)
{
    size_t m = *m_io;
    uint32_t rank[SMALL_WORD], merged[SMALL_WORD];
    for (size_t k = 0; k + 1 < m; k++) {
        const merge_slot *s = merge_find(b, sym[k], sym[k + 1]);
        rank[k] = s ? s->rank : UINT32_MAX;
        merged[k] = s ? s->merged : 0;
    }
    while (m > 1) {
        uint32_t best = UINT32_MAX;
        size_t pos = 0;
        for (size_t k = 0; k + 1 < m; k++)
            if (rank[k] < best) { best = rank[k]; pos = k; }
        if (best == UINT32_MAX)
            break;
        sym[pos] = merged[pos];
        memmove(sym + pos + 1, sym + pos + 2, (m - pos - 2) * sizeof *sym);
        if (m >= pos + 3) { /* pair pos+1 disappears; later pairs shift left */
            memmove(rank + pos + 1, rank + pos + 2, (m - pos - 3) * sizeof *rank);
            memmove(merged + pos + 1, merged + pos + 2, (m - pos - 3) * sizeof *merged);
        }
        m--;
        for (size_t k = pos ? pos - 1 : 0; k <= pos && k + 1 < m; k++) {
            const merge_slot *s = merge_find(b, sym[k], sym[k + 1]);
            rank[k] = s ? s->rank : UINT32_MAX;
            merged[k] = s ? s->merged : 0;
        }
    }
    *m_io = m;
}

/* Heap path for long words: a doubly linked list of symbols and a binary
 * min-heap of candidate merges keyed by (rank, position of the left
 * symbol); stale entries are skipped when popped, as in HF's Word::merge_all. */
typedef struct { uint32_t rank, pos, left, right; } heap_item;

static inline int heap_less(const heap_item *a, const heap_item *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_item *h, size_t *n, heap_item it)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static int merge_heap(const rv_bpe *b, uint32_t *sym, size_t *m_io)
{
    size_t m = *m_io;
    if (m < 2)
        return 0;
    size_t bytes;
    if (rv_size_mul(m, 2 * sizeof(uint32_t) + 2 * sizeof(heap_item), &bytes, "BPE word") < 0)
        return -1;
    unsigned char *mem = rv_malloc(bytes);
    if (!mem)
        return -1;
    uint32_t *next = (uint32_t *)mem, *prev = next + m;
    heap_item *heap = (heap_item *)(prev + m);
    size_t hn = 0, hcap = 2 * m;
    for (size_t k = 0; k < m; k++) {
        next[k] = k + 1 < m ? (uint32_t)(k + 1) : UINT32_MAX;
        prev[k] = k ? (uint32_t)(k - 1) : UINT32_MAX;
    }
    for (size_t k = 0; k + 1 < m; k++) {
        const merge_slot *s = merge_find(b, sym[k], sym[k + 1]);
        if (s)
            heap_push(heap, &hn, (heap_item){s->rank, (uint32_t)k, sym[k], sym[k + 1]});
    }
    while (hn) {
        heap_item it = heap_pop(heap, &hn);
        uint32_t p = it.pos, q = next[p];
        /* stale: the left symbol was absorbed or changed, or its right
         * neighbour is no longer the one this entry was made for */
        if (sym[p] == RV_TOKEN_NONE || q == UINT32_MAX || sym[p] != it.left || sym[q] != it.right)
            continue;
        const merge_slot *s = merge_find(b, it.left, it.right);
        sym[p] = s->merged;
        sym[q] = RV_TOKEN_NONE;
        next[p] = next[q];
        if (next[q] != UINT32_MAX)
            prev[next[q]] = p;
        if (hn + 2 > hcap)
            break; /* cannot happen: each merge adds at most 2 entries and removes 1 symbol */
        if (prev[p] != UINT32_MAX) {
            const merge_slot *l = merge_find(b, sym[prev[p]], sym[p]);
            if (l)
                heap_push(heap, &hn, (heap_item){l->rank, prev[p], sym[prev[p]], sym[p]});
        }
        if (next[p] != UINT32_MAX) {
            const merge_slot *r = merge_find(b, sym[p], sym[next[p]]);
            if (r)
                heap_push(heap, &hn, (heap_item){r->rank, p, sym[p], sym[next[p]]});
        }
    }
    size_t out = 0;
    for (uint32_t k = 0; k != UINT32_MAX; k = next[k])
        sym[out++] = sym[k];
    free(mem);
    *m_io = out;
    return 0;
}

int rv_bpe_merge_word(const rv_bpe *b, const unsigned char *w, size_t n, int force_heap, rv_ids *out)
{
    if (rv_ids_reserve(out, n) < 0)
        return -1;
    uint32_t *sym = out->v + out->n;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = b->byte_id[w[i]];
        if (id != RV_TOKEN_NONE) /* a byte without a token is dropped, as HF does without unk_token */
            sym[m++] = id;
    }
    if (m <= SMALL_WORD && !force_heap)
        merge_small(b, sym, &m);
    else if (merge_heap(b, sym, &m) < 0)
        return -1;
    out->n += m;
    return 0;
}

/* --- per-thread word cache --- */

enum { CACHE_SLOTS = 1 << 16, CACHE_MAX_WORD = 64, CACHE_MAX_BYTES = 16 << 20 };

typedef struct {
    uint64_t hash;
    uint32_t off;      /* into arena: u32 word length, word, u32 n ids, ids */
    uint32_t used;
} cache_slot;

struct rv_bpe_cache {
    cache_slot *slots;
    size_t n_used;
    rv_buf arena;
};

rv_bpe_cache *rv_bpe_cache_new(void)
{
    rv_bpe_cache *c = rv_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->slots = rv_calloc(CACHE_SLOTS, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    return c;
}

void rv_bpe_cache_free(rv_bpe_cache *c)
{
    if (!c)
        return;
    free(c->slots);
    rv_buf_free(&c->arena);
    free(c);
}

static void cache_clear(rv_bpe_cache *c)
{
    memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
    c->n_used = 0;
    c->arena.len = 0;
}

int rv_bpe_encode_word(const rv_bpe *b, rv_bpe_cache *c, const unsigned char *w, size_t n, rv_ids *out)
{
    if (n == 1 && !b->ignore_merges) {
        uint32_t id = b->byte_id[w[0]];
        return id == RV_TOKEN_NONE ? 0 : rv_ids_push(out, id);
    }
    if (!c || n > CACHE_MAX_WORD) {
        if (b->ignore_merges) {
            uint32_t id = rv_bpe_find(b, w, n);
            if (id != RV_TOKEN_NONE)
                return rv_ids_push(out, id);
        }
        return rv_bpe_merge_word(b, w, n, 0, out);
    }
    /* the cache holds final results (whole-word shortcut included), so it
     * is consulted first */
    uint64_t h = hash_bytes(w, n);
    size_t slot = (size_t)h & (CACHE_SLOTS - 1);
    while (c->slots[slot].used) {
        cache_slot *s = &c->slots[slot];
        if (s->hash == h) {
            const unsigned char *e = c->arena.data + s->off;
            if (rv_load_u32(e) == n && memcmp(e + 4, w, n) == 0) {
                uint32_t k = rv_load_u32(e + 4 + n);
                if (rv_ids_reserve(out, k) < 0)
                    return -1;
                memcpy(out->v + out->n, e + 8 + n, (size_t)k * 4);
                out->n += k;
                return 0;
            }
        }
        slot = (slot + 1) & (CACHE_SLOTS - 1);
    }
    size_t first = out->n;
    uint32_t whole = b->ignore_merges ? rv_bpe_find(b, w, n) : RV_TOKEN_NONE;
    if (whole != RV_TOKEN_NONE) {
        if (rv_ids_push(out, whole) < 0)
            return -1;
    } else if (rv_bpe_merge_word(b, w, n, 0, out) < 0) {
        return -1;
    }
    size_t k = out->n - first;
    if (c->n_used * 2 >= CACHE_SLOTS || c->arena.len + 8 + n + 4 * k > CACHE_MAX_BYTES) {
        cache_clear(c);
        slot = (size_t)h & (CACHE_SLOTS - 1);
    }
    size_t off = c->arena.len;
    if (rv_buf_put_u32(&c->arena, (uint32_t)n) < 0 || rv_buf_append(&c->arena, w, n) < 0 ||
        rv_buf_put_u32(&c->arena, (uint32_t)k) < 0 || rv_buf_append(&c->arena, out->v + first, 4 * k) < 0)
        return -1;
    c->slots[slot] = (cache_slot){h, (uint32_t)off, 1};
    c->n_used++;
    return 0;
}
