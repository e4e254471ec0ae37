/* npy_write.h — write a 2-D little-endian .npy array (format version 1.0,
 * dtype <f4 or <f2, C order) row by row without knowing the row count in
 * advance: the header is written with room for any count and rewritten at
 * the end; the file appears under its name only when finished (NAME.part,
 * then rename). Reading .npy lives in npy.h. */
#ifndef RV_NPY_WRITE_H
#define RV_NPY_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct rv_npy_writer rv_npy_writer;

/* half: 0 for float32 (<f4), 1 for IEEE float16 (<f2). */
rv_npy_writer *rv_npy_writer_open(const char *path, size_t cols, int half);
/* Appends n rows of cols floats (converted for half). */
int rv_npy_writer_rows(rv_npy_writer *w, const float *rows, size_t n);
/* Rewrites the header with the final shape, fsyncs and renames into place. */
int rv_npy_writer_finish(rv_npy_writer *w);
/* Abandons the file (removes NAME.part) and frees w; safe after finish. */
void rv_npy_writer_free(rv_npy_writer *w);

#endif
