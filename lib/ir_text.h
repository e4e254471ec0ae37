/* ir_text.h — the plumbing under rv-eval's inputs (TREC runs, TREC and BEIR
 * qrels): hold a whole input in memory (mapped when it is a file), walk its
 * lines with line numbers, split a line into fields, parse integer and
 * floating-point fields strictly, and hash, compare and index identifiers
 * for the joins.
 *
 * Fields point into the caller's buffer; nothing here allocates per line. */
#ifndef RV_IR_TEXT_H
#define RV_IR_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "records.h"   /* rv_str */

/* Appends every byte of f to out, then a NUL that is not counted in out->len
 * (so the text can be handed to C string functions). `name` is for messages. */
int rv_read_whole(FILE *f, const char *name, rv_buf *out);

/* The whole of an input in memory, without copying when it can: the rest of
 * a regular file is mapped read-only; a pipe or terminal is read into a
 * buffer. data is not NUL-terminated. (A mapped file must not shrink while
 * it is in use: the process would get SIGBUS.) */
typedef struct {
    const char *data;
    size_t len;
    void *map;        /* the mapping, or NULL */
    size_t map_len;
    rv_buf buf;       /* the bytes, when not mapped */
} rv_input;
int rv_input_load(rv_input *in, FILE *f, const char *name);
/* An input that is a copy of [p, p + len). */
int rv_input_copy(rv_input *in, const void *p, size_t len);
void rv_input_free(rv_input *in);

/* Line iterator over [p, end): returns 1 with the line (without '\n' or a
 * trailing '\r') and advances lineno (1-based), 0 at the end. */
typedef struct {
    const char *p, *end;
    size_t lineno;
} rv_text_lines;
void rv_text_lines_init(rv_text_lines *it, const char *p, size_t len);
int rv_text_lines_next(rv_text_lines *it, rv_str *line);

/* Splits a line at runs of spaces and tabs (leading and trailing blanks are
 * ignored). Stores at most `max` fields and returns how many there are. */
size_t rv_split_blank(rv_str line, rv_str *fields, size_t max);
/* Splits a line at every tab (empty fields are kept). Same contract. */
size_t rv_split_tab(rv_str line, rv_str *fields, size_t max);

/* A whole field as a decimal integer with an optional sign, in int32 range.
 * Returns 0, or -1 without setting a message (the caller names the field). */
int rv_parse_i32(rv_str s, int32_t *out);

/* A whole field as a double, correctly rounded (as strtod and Python's float
 * read it): decimal with optional sign, fraction and exponent, or inf /
 * infinity. NaN and anything else return -1 without a message. */
int rv_parse_f64(rv_str s, double *out);

/* 64-bit hash of an identifier (XXH3). */
uint64_t rv_id_hash(const char *s, size_t n);

/* The 32-bit hash of a key scoped to a query: an identifier's rv_id_hash
 * mixed with the query's index. */
uint32_t rv_key_hash32(uint64_t id_hash, uint64_t scope);

/* An open-addressing index from 32-bit hashes to item numbers (< 2^32 - 1);
 * the caller keeps the items and checks equality. Probe with
 *   for (size_t i = h & ix->mask; ix->slots[i].item; i = (i + 1) & ix->mask)
 *       if (ix->slots[i].hash == h && equal(ix->slots[i].item - 1)) ...found
 * and insert at the empty slot the probe stops at (rv_id_index_put), after
 * rv_id_index_reserve (a growing index) or rv_id_index_reset (an index
 * rebuilt for each small group, e.g. one query's documents, which stays in
 * cache) has made room. */
typedef struct {
    uint32_t item;   /* item number + 1; 0 = empty */
    uint32_t hash;
} rv_id_slot;
typedef struct {
    rv_id_slot *slots;
    size_t mask;     /* capacity - 1 (a power of two) */
    size_t count;
    size_t alloc;    /* slots allocated (>= capacity) */
} rv_id_index;
/* Makes room for `more` further items (load kept at most 1/2). */
int rv_id_index_reserve(rv_id_index *ix, size_t more);
/* Empties the index and sizes it for n items; costs O(n), not O(alloc). */
int rv_id_index_reset(rv_id_index *ix, size_t n);
static inline void rv_id_index_put(rv_id_index *ix, size_t slot, uint32_t hash, size_t item)
{
    ix->slots[slot].item = (uint32_t)(item + 1);
    ix->slots[slot].hash = hash;
    ix->count++;
}
void rv_id_index_free(rv_id_index *ix);

/* Whether the n bytes at a and b are equal: memcmp for the short ids of the
 * joins, inline (a call per line costs more than the comparison). */
static inline int rv_same_bytes(const char *a, const char *b, size_t n)
{
    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8)
            if (rv_load_u64((const unsigned char *)a + i) != rv_load_u64((const unsigned char *)b + i))
                return 0;
        return rv_load_u64((const unsigned char *)a + n - 8) == rv_load_u64((const unsigned char *)b + n - 8);
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* Byte-wise comparison as strcmp orders NUL-free strings. */
int rv_str_cmp(const char *a, size_t alen, const char *b, size_t blen);

#endif
