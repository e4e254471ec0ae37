/* npy_write.c — streaming .npy writer (see npy_write.h). The header is
 * always 128 bytes: magic, version 1.0, a u16 length and the dict padded with
 * spaces to end in '\n', which leaves room for any 64-bit row count. */
#include "npy_write.h"
#include "atomic_file.h"
#include "buf.h"
#include "error.h"
#include "half.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 128

struct rv_npy_writer {
    rv_atomic_file af;
    size_t cols, rows;
    int half, finished;
    unsigned char *tmp;
};

static int put_header(rv_npy_writer *w)
{
    char dict[HEADER_BYTES];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                     w->half ? "<f2" : "<f4", w->rows, w->cols);
    if (n < 0 || n > HEADER_BYTES - 11)
        return rv_error_set("%s: .npy header too long", w->af.path);
    unsigned char h[HEADER_BYTES];
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (unsigned char)(HEADER_BYTES - 10);
    h[9] = 0;
    memset(h + 10, ' ', HEADER_BYTES - 10);
    memcpy(h + 10, dict, (size_t)n);
    h[HEADER_BYTES - 1] = '\n';
    if (fseek(w->af.f, 0, SEEK_SET) != 0 || fwrite(h, 1, HEADER_BYTES, w->af.f) != HEADER_BYTES)
        return rv_error_set("%s: write error: %s", w->af.part, strerror(errno));
    return 0;
}

rv_npy_writer *rv_npy_writer_open(const char *path, size_t cols, int half)
{
    rv_npy_writer *w = rv_calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->cols = cols;
    w->half = half;
    w->tmp = rv_malloc(cols ? cols * 4 : 1);
    if (!w->tmp || rv_atomic_open(&w->af, path) < 0 || put_header(w) < 0) {
        rv_npy_writer_free(w);
        return NULL;
    }
    return w;
}

int rv_npy_writer_rows(rv_npy_writer *w, const float *rows, size_t n)
{
    size_t es = w->half ? 2 : 4;
    for (size_t r = 0; r < n; r++) {
        const float *x = rows + r * w->cols;
        for (size_t i = 0; i < w->cols; i++) {
            if (w->half) {
                uint16_t h = rv_f32_to_f16(x[i]);
                w->tmp[2 * i] = (unsigned char)h;
                w->tmp[2 * i + 1] = (unsigned char)(h >> 8);
            } else
                rv_store_u32(w->tmp + 4 * i, rv_f32_bits(x[i]));
        }
        if (fwrite(w->tmp, es, w->cols, w->af.f) != w->cols)
            return rv_error_set("%s: write error: %s", w->af.part, strerror(errno));
        w->rows++;
    }
    return 0;
}

int rv_npy_writer_finish(rv_npy_writer *w)
{
    if (fflush(w->af.f) != 0 || put_header(w) < 0 || fseek(w->af.f, 0, SEEK_END) != 0)
        return rv_error_set("%s: write error: %s", w->af.part, strerror(errno));
    if (rv_atomic_commit(&w->af) < 0)
        return -1;
    w->finished = 1;
    return 0;
}

void rv_npy_writer_free(rv_npy_writer *w)
{
    if (!w)
        return;
    if (!w->finished)
        rv_atomic_abort(&w->af);
    free(w->tmp);
    free(w);
}
