/* bm25_strtab.h — a string interning table: byte strings map to dense ids
 * 0, 1, 2, ... in insertion order, with the bytes kept in one arena. Used for
 * the BM25 vocabulary, the stopword set and the per-thread stem cache.
 *
 * Open addressing on a 64-bit XXH3 hash, load factor at most 1/2. Not thread
 * safe for writers; concurrent readers of a table nobody writes are fine. */
#ifndef RV_BM25_STRTAB_H
#define RV_BM25_STRTAB_H

#include <stddef.h>
#include <stdint.h>

#define RV_STRTAB_NONE UINT32_MAX

typedef struct {
    char *arena;          /* all strings back to back (no NULs added) */
    size_t arena_len, arena_cap;
    uint64_t *offsets;    /* count + 1 entries: string i is arena[offsets[i], offsets[i+1]) */
    uint32_t *hashes;     /* low 32 bits of each string's hash */
    size_t count, ids_cap;
    uint32_t *slots;      /* id + 1, 0 = empty; nslots is a power of two */
    size_t nslots;
} rv_strtab;

/* Zero-initialised tables are valid and empty. */
void rv_strtab_free(rv_strtab *t);
/* Forgets every string but keeps the memory. */
void rv_strtab_clear(rv_strtab *t);

uint64_t rv_strtab_hash(const char *s, size_t n);

/* The id of s[0..n), or RV_STRTAB_NONE. `h` is rv_strtab_hash(s, n). */
uint32_t rv_strtab_find(const rv_strtab *t, const char *s, size_t n, uint64_t h);

/* Finds or inserts s[0..n); sets *id (and *inserted when not NULL).
 * Returns 0, or -1 (error set) when memory runs out or the table would
 * exceed 2^32 - 2 strings. */
int rv_strtab_intern(rv_strtab *t, const char *s, size_t n, uint64_t h, uint32_t *id, int *inserted);

static inline const char *rv_strtab_str(const rv_strtab *t, uint32_t id, size_t *len)
{
    *len = (size_t)(t->offsets[id + 1] - t->offsets[id]);
    return t->arena + t->offsets[id];
}

static inline size_t rv_strtab_count(const rv_strtab *t) { return t->count; }

#endif
