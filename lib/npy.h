/* npy.h — reader for NumPy .npy files holding a 2-D float matrix (the
 * embedding interchange format of faiss/NumPy pipelines).
 *
 * Accepted: format versions 1.0, 2.0 and 3.0; dtype '<f4', '<f2' or '<f8'
 * (little-endian float32, float16, float64); C order (fortran_order False);
 * shape (rows, cols). The header is a Python dict literal with exactly the
 * keys 'descr', 'fortran_order' and 'shape'. Everything else (big-endian,
 * integer or object dtypes, other ranks, Fortran order) is an error that names
 * the file and says what was found. The data must be exactly
 * rows * cols * itemsize bytes: a short file is "truncated", bytes after the
 * data are an error too. */
#ifndef RV_NPY_H
#define RV_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { RV_NPY_F16, RV_NPY_F32, RV_NPY_F64 } rv_npy_dtype;

typedef struct {
    rv_npy_dtype dtype;
    size_t item_size;       /* 2, 4 or 8 */
    uint64_t rows, cols;
    size_t data_offset;     /* bytes before the data (preamble + header) */
    size_t data_bytes;      /* rows * cols * item_size, checked for overflow */
} rv_npy_info;

/* Largest header accepted (NumPy itself writes a few hundred bytes). */
#define RV_NPY_MAX_HEADER (1u << 20)

/* Parses the preamble and header held in buf[0..len). Returns 0 when the
 * header is complete and valid; -1 with a message "NAME: ..." otherwise (a
 * buffer too short for the declared header length is "truncated"). */
int rv_npy_parse_header(const unsigned char *buf, size_t len, const char *name, rv_npy_info *info);

/* Reads and validates the header from f (at the start of the file), leaving
 * f at the first data byte. */
int rv_npy_read_header(FILE *f, const char *name, rv_npy_info *info);

/* Reads the next n_rows rows of data from f as float32 into out
 * (n_rows * cols floats), widening float16 and narrowing float64 (round to
 * nearest). Fails with "truncated" when the file ends early. */
int rv_npy_read_f32(FILE *f, const char *name, const rv_npy_info *info, uint64_t n_rows, float *out);

/* Reads the next n_rows rows of a float16 file as raw IEEE binary16 values. */
int rv_npy_read_f16(FILE *f, const char *name, const rv_npy_info *info, uint64_t n_rows, uint16_t *out);

/* After the last row: fails unless f is at its end. */
int rv_npy_expect_end(FILE *f, const char *name);

const char *rv_npy_dtype_name(rv_npy_dtype t);   /* "<f4" ... */

#endif
