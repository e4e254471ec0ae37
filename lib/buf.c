/* buf.c — growable byte buffer and checked size arithmetic (see buf.h). */
#include "buf.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rv_size_mul(size_t a, size_t b, size_t *out, const char *what)
{
    if (a != 0 && b > SIZE_MAX / a)
        return rv_error_set("%s: size %zu x %zu overflows", what, a, b);
    *out = a * b;
    return 0;
}

int rv_size_add(size_t a, size_t b, size_t *out, const char *what)
{
    if (b > SIZE_MAX - a)
        return rv_error_set("%s: size %zu + %zu overflows", what, a, b);
    *out = a + b;
    return 0;
}

void *rv_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        rv_error_set("out of memory allocating %zu bytes", n);
    return p;
}

void *rv_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        rv_error_set("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

int rv_array_grow(void **p, size_t *cap, size_t need, size_t size, const char *what)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256, bytes = 0;
    while (ncap < need)
        ncap *= 2;
    if (rv_size_mul(ncap, size, &bytes, what) < 0)
        return -1;
    void *np = realloc(*p, bytes);
    if (!np)
        return rv_error_set("out of memory reading %s (%zu bytes)", what, bytes);
    *p = np;
    *cap = ncap;
    return 0;
}

int rv_buf_reserve(rv_buf *b, size_t extra)
{
    size_t need = 0;
    if (rv_size_add(b->len, extra, &need, "buffer") < 0)
        return -1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p)
        return rv_error_set("out of memory growing a buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return 0;
}

int rv_buf_append(rv_buf *b, const void *p, size_t n)
{
    if (rv_buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int rv_buf_putc(rv_buf *b, int c)
{
    if (b->len == b->cap && rv_buf_reserve(b, 1) < 0)
        return -1;
    b->data[b->len++] = (unsigned char)c;
    return 0;
}

int rv_buf_put_u32(rv_buf *b, uint32_t v)
{
    if (rv_buf_reserve(b, 4) < 0)
        return -1;
    rv_store_u32(b->data + b->len, v);
    b->len += 4;
    return 0;
}

int rv_buf_put_u64(rv_buf *b, uint64_t v)
{
    if (rv_buf_reserve(b, 8) < 0)
        return -1;
    rv_store_u64(b->data + b->len, v);
    b->len += 8;
    return 0;
}

int rv_buf_printf(rv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return rv_error_set("format error");
    if (rv_buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void rv_buf_free(rv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
