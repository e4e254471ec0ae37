/* bm25_strtab.c — string interning table (see bm25_strtab.h). */
#include "bm25_strtab.h"
#include "buf.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void rv_strtab_free(rv_strtab *t)
{
    free(t->arena);
    free(t->offsets);
    free(t->hashes);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

void rv_strtab_clear(rv_strtab *t)
{
    t->arena_len = 0;
    t->count = 0;
    if (t->offsets)
        t->offsets[0] = 0;
    if (t->slots)
        memset(t->slots, 0, t->nslots * sizeof *t->slots);
}

uint64_t rv_strtab_hash(const char *s, size_t n)
{
    return XXH3_64bits(s, n);
}

uint32_t rv_strtab_find(const rv_strtab *t, const char *s, size_t n, uint64_t h)
{
    if (!t->nslots)
        return RV_STRTAB_NONE;
    size_t mask = t->nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t v = t->slots[i];
        if (!v)
            return RV_STRTAB_NONE;
        uint32_t id = v - 1;
        if (t->hashes[id] == (uint32_t)h && t->offsets[id + 1] - t->offsets[id] == n &&
            memcmp(t->arena + t->offsets[id], s, n) == 0)
            return id;
    }
}

static int grow_slots(rv_strtab *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 64;
    if (n > SIZE_MAX / sizeof(uint32_t))
        return rv_error_set("string table: too many entries");
    uint32_t *s = rv_calloc(n, sizeof *s);
    if (!s)
        return -1;
    size_t mask = n - 1;
    for (size_t id = 0; id < t->count; id++) {
        size_t len;
        const char *str = rv_strtab_str(t, (uint32_t)id, &len);
        size_t i = (size_t)rv_strtab_hash(str, len) & mask;
        while (s[i])
            i = (i + 1) & mask;
        s[i] = (uint32_t)id + 1;
    }
    free(t->slots);
    t->slots = s;
    t->nslots = n;
    return 0;
}

int rv_strtab_intern(rv_strtab *t, const char *s, size_t n, uint64_t h, uint32_t *id, int *inserted)
{
    uint32_t found = rv_strtab_find(t, s, n, h);
    if (inserted)
        *inserted = found == RV_STRTAB_NONE;
    if (found != RV_STRTAB_NONE) {
        *id = found;
        return 0;
    }
    if (t->count >= UINT32_MAX - 2)
        return rv_error_set("string table: more than %u entries", UINT32_MAX - 2);
    if ((t->count + 1) * 2 > t->nslots && grow_slots(t) < 0)
        return -1;
    if (t->count + 1 >= t->ids_cap) {
        size_t cap = t->ids_cap ? t->ids_cap * 2 : 64;
        uint64_t *o = realloc(t->offsets, (cap + 1) * sizeof *o);
        if (!o)
            return rv_error_set("out of memory growing a string table");
        t->offsets = o;
        uint32_t *hs = realloc(t->hashes, cap * sizeof *hs);
        if (!hs)
            return rv_error_set("out of memory growing a string table");
        t->hashes = hs;
        if (!t->ids_cap)
            t->offsets[0] = 0;
        t->ids_cap = cap;
    }
    if (n > t->arena_cap - t->arena_len) {
        size_t need, cap = t->arena_cap ? t->arena_cap : 4096;
        if (rv_size_add(t->arena_len, n, &need, "string table") < 0)
            return -1;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *a = realloc(t->arena, cap);
        if (!a)
            return rv_error_set("out of memory growing a string table to %zu bytes", cap);
        t->arena = a;
        t->arena_cap = cap;
    }
    if (n)
        memcpy(t->arena + t->arena_len, s, n);
    t->arena_len += n;
    uint32_t nid = (uint32_t)t->count++;
    t->offsets[nid + 1] = t->arena_len;
    t->hashes[nid] = (uint32_t)h;
    size_t mask = t->nslots - 1;
    size_t i = (size_t)h & mask;
    while (t->slots[i])
        i = (i + 1) & mask;
    t->slots[i] = nid + 1;
    *id = nid;
    return 0;
}
