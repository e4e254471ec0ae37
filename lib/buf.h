/* buf.h — a growable byte buffer with checked growth, and overflow-safe size
 * arithmetic used wherever a size comes from untrusted input. */
#ifndef RV_BUF_H
#define RV_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
} rv_buf;

/* Ensures room for `extra` more bytes. Returns 0, or -1 (error set) when the
 * size overflows or memory runs out; the buffer is unchanged on failure. */
int rv_buf_reserve(rv_buf *b, size_t extra);
int rv_buf_append(rv_buf *b, const void *p, size_t n);
int rv_buf_putc(rv_buf *b, int c);
int rv_buf_put_u32(rv_buf *b, uint32_t v);        /* little-endian */
int rv_buf_put_u64(rv_buf *b, uint64_t v);        /* little-endian */
int rv_buf_printf(rv_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void rv_buf_free(rv_buf *b);

/* Grows the array *p (of elements of `size` bytes, capacity *cap) so that it
 * holds at least `need` elements, doubling from 256; `what` names it in
 * errors. Returns 0, or -1 (error set) with *p and *cap unchanged. */
int rv_array_grow(void **p, size_t *cap, size_t need, size_t size, const char *what);

/* *out = a * b; returns -1 with an error naming `what` on overflow. */
int rv_size_mul(size_t a, size_t b, size_t *out, const char *what);
int rv_size_add(size_t a, size_t b, size_t *out, const char *what);

/* malloc/calloc that record an error on failure (NULL returned). */
void *rv_malloc(size_t n);
void *rv_calloc(size_t count, size_t size);

static inline uint32_t rv_load_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rv_load_u64(const unsigned char *p)
{
    return (uint64_t)rv_load_u32(p) | (uint64_t)rv_load_u32(p + 4) << 32;
}
static inline void rv_store_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static inline void rv_store_u64(unsigned char *p, uint64_t v)
{
    rv_store_u32(p, (uint32_t)v);
    rv_store_u32(p + 4, (uint32_t)(v >> 32));
}

#endif
