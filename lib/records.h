/* records.h — the record kinds carried in streams (formats/doc.md, chunk.md,
 * group.md, emb.md, run.md): binary encoders, a bounds-checked decoder for
 * each, and the JSON form rv-cat shows people.
 *
 * Field encodings inside a record: u32 little-endian integers, strings as u32
 * byte length + UTF-8 bytes (no NUL), f32/f64 little-endian IEEE. A decoder
 * never reads past the record and fails on trailing bytes. Decoded strings
 * point into the record buffer (not NUL-terminated). */
#ifndef RV_RECORDS_H
#define RV_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json.h"

typedef struct { const char *p; size_t len; } rv_str;

/* --- cursor over one record --- */
typedef struct {
    const unsigned char *p, *end;
    const char *kind;        /* for messages */
} rv_rec_cursor;

int rv_rec_get_u32(rv_rec_cursor *c, const char *field, uint32_t *out);
int rv_rec_get_str(rv_rec_cursor *c, const char *field, rv_str *out);
int rv_rec_get_bytes(rv_rec_cursor *c, const char *field, size_t n, const unsigned char **out);
int rv_rec_get_f32(rv_rec_cursor *c, const char *field, float *out);
int rv_rec_get_f64(rv_rec_cursor *c, const char *field, double *out);
int rv_rec_end(const rv_rec_cursor *c);   /* error unless fully consumed */

int rv_rec_put_str(rv_buf *b, const char *s, size_t n);
int rv_rec_put_f32(rv_buf *b, float v);
int rv_rec_put_f64(rv_buf *b, double v);

/* --- doc (v1): id, title, text — documents and queries --- */
#define RV_DOC_VERSION 1u
typedef struct { rv_str id, title, text; } rv_doc;
int rv_doc_encode(rv_buf *b, const rv_doc *d);
int rv_doc_decode(const unsigned char *rec, size_t len, rv_doc *d);

/* --- chunk (v1): doc_id, chunk index, text, token ids --- */
#define RV_CHUNK_VERSION 1u
typedef struct {
    rv_str doc_id;
    uint32_t index;
    rv_str text;
    uint32_t n_ids;
    const unsigned char *ids;   /* n_ids little-endian u32; use rv_load_u32 */
} rv_chunk;
int rv_chunk_encode(rv_buf *b, const char *doc_id, size_t doc_id_len, uint32_t index,
                    const char *text, size_t text_len, const uint32_t *ids, uint32_t n_ids);
int rv_chunk_decode(const unsigned char *rec, size_t len, rv_chunk *c);

/* --- group (v1): source tag + members (chunk fields + BM25 score) --- */
#define RV_GROUP_VERSION 1u
typedef struct {
    rv_str doc_id;
    uint32_t index;
    rv_str text;
    uint32_t n_ids;
    const unsigned char *ids;
    float score;
} rv_group_member;
/* Begins a group record with n members; then add each member. */
int rv_group_begin(rv_buf *b, const char *src, size_t src_len, uint32_t n_members);
int rv_group_add(rv_buf *b, const char *doc_id, size_t doc_id_len, uint32_t index,
                 const char *text, size_t text_len, const uint32_t *ids, uint32_t n_ids, float score);
/* Iteration: rv_group_open reads the source and member count; each
 * rv_group_next decodes one member. Call rv_rec_end after the last. */
int rv_group_open(rv_rec_cursor *c, const unsigned char *rec, size_t len, rv_str *src, uint32_t *n);
int rv_group_next(rv_rec_cursor *c, rv_group_member *m);

/* --- emb (v1): id + vector; dim and dtype live in the stream metadata --- */
#define RV_EMB_VERSION 1u
typedef enum { RV_DTYPE_F32, RV_DTYPE_F16, RV_DTYPE_BF16 } rv_dtype;
int rv_dtype_parse(const char *s, rv_dtype *out);
const char *rv_dtype_name(rv_dtype t);
size_t rv_dtype_size(rv_dtype t);
typedef struct { rv_str id; const unsigned char *vec; } rv_emb;
/* Encodes an embedding from float32 values, converting to dtype. */
int rv_emb_encode(rv_buf *b, const char *id, size_t id_len, const float *v, uint32_t dim, rv_dtype t);
int rv_emb_decode(const unsigned char *rec, size_t len, uint32_t dim, rv_dtype t, rv_emb *e);
/* Widens vector element i of a decoded embedding to float. */
float rv_emb_get(const rv_emb *e, rv_dtype t, uint32_t i);
/* Reads "dim" and "dtype" from an emb stream's metadata JSON. */
int rv_emb_meta(const char *meta_json, size_t len, uint32_t *dim, rv_dtype *t);

/* --- run (v1): qid + ranked hits (docid, f64 score) --- */
#define RV_RUN_VERSION 1u
typedef struct { rv_str docid; double score; } rv_run_hit;
int rv_run_begin(rv_buf *b, const char *qid, size_t qid_len, uint32_t n_hits);
int rv_run_add(rv_buf *b, const char *docid, size_t docid_len, double score);
int rv_run_open(rv_rec_cursor *c, const unsigned char *rec, size_t len, rv_str *qid, uint32_t *n);
int rv_run_next(rv_rec_cursor *c, rv_run_hit *h);

/* --- JSON views for rv-cat --- */
typedef struct rv_kind rv_kind;
struct rv_kind {
    const char *name;
    uint32_t version;
    const char *summary;
    /* record -> one JSON object (no newline) appended to out */
    int (*to_json)(const unsigned char *rec, size_t len, const char *meta, size_t meta_len, rv_buf *out);
    /* JSON object -> record; `state` carries per-stream facts (e.g. emb dim) */
    int (*from_json)(const rv_json *obj, void *state, rv_buf *out);
};
/* NULL when the kind is unknown. */
const rv_kind *rv_kind_find(const char *name);
/* All kinds, NULL-terminated. */
const rv_kind *const *rv_kinds(void);

/* State for emb from_json: dim learned from the first record. */
typedef struct { uint32_t dim; rv_dtype dtype; int have_dim; } rv_emb_json_state;

/* Appends a float/double so that it parses back to the same value
 * ("%.9g" / "%.17g"); non-finite values are written as null. */
int rv_json_put_f32(rv_buf *b, float v);
int rv_json_put_f64(rv_buf *b, double v);

#endif
