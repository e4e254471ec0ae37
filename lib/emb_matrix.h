/* emb_matrix.h — embeddings loaded into one row-major matrix with their ids:
 * from emb streams (records.h) and from .npy files with an id list (one id a
 * line), appended in the order given, so that several shards read as one
 * corpus. Also the id checks a ranking needs (unique, non-empty, no
 * whitespace for TREC) and the chunk -> document grouping of MaxP search.
 *
 * Storage keeps the inputs' precision: f32 as float, f16/bf16 as uint16_t
 * bit patterns; when sources with different dtypes are mixed, everything is
 * widened to f32 ('<f8' npy data is narrowed to f32). Vectors must be finite:
 * NaN or infinity is an error naming the source, row and id. */
#ifndef RV_EMB_MATRIX_H
#define RV_EMB_MATRIX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "dense_search.h"
#include "records.h"

typedef struct {
    rv_dtype dtype;
    uint32_t dim;
    int have_dim;          /* fixed by the first source that has rows */
    size_t rows, cap_rows;
    unsigned char *data;   /* rows × dim values */
    rv_buf ids;            /* all ids, concatenated */
    size_t *id_end;        /* id_end[r]: end of row r's id in ids */
    char *dim_source;      /* the source that fixed dim, for messages */
} rv_emb_matrix;

void rv_emb_matrix_init(rv_emb_matrix *m);
void rv_emb_matrix_free(rv_emb_matrix *m);

/* Appends every record of an emb stream read from f (name for messages).
 * Checks the stream kind, version, metadata, trailer and dimension. */
int rv_emb_matrix_add_stream(rv_emb_matrix *m, FILE *f, const char *name);

/* Appends the rows of an .npy file; ids come one per line from ids_f, which
 * must hold exactly one non-empty line per row. With ids_f NULL the ids are
 * the row numbers 0, 1, ... of this file. */
int rv_emb_matrix_add_npy(rv_emb_matrix *m, FILE *npy_f, const char *npy_name, FILE *ids_f, const char *ids_name);

rv_str rv_emb_matrix_id(const rv_emb_matrix *m, size_t row);

/* The matrix as the search engine takes it (valid while m is unchanged). */
rv_dense_matrix rv_emb_matrix_view(const rv_emb_matrix *m);

/* Fails naming `what` ("corpus", "queries") and the rows involved when an id
 * is empty, repeated, or (with for_trec) holds whitespace, which would break
 * a TREC run line. */
int rv_emb_matrix_check_ids(const rv_emb_matrix *m, const char *what, int for_trec);

/* The document part of a chunk id: everything before the last occurrence of
 * sep, or the whole id when sep does not occur. */
rv_str rv_doc_id_of(rv_str id, const char *sep);

/* Groups rows by document id (rv_doc_id_of). Groups are numbered in order
 * of first appearance; *first_row[g] is the first row of group g. Arrays are
 * malloc'd for the caller. Fails on more than 2^32-1 groups. */
int rv_emb_matrix_groups(const rv_emb_matrix *m, const char *sep, uint32_t **group_of_row, uint32_t *n_groups,
                         size_t **first_row);

#endif
