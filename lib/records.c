/* records.c — record encoders/decoders and their JSON views (see records.h). */
#include "records.h"
#include "error.h"
#include "half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- primitives */

static int short_record(const rv_rec_cursor *c, const char *field, size_t need)
{
    return rv_error_set("%s record: %s: expected %zu more bytes, record has %zu",
                        c->kind, field, need, (size_t)(c->end - c->p));
}

int rv_rec_get_u32(rv_rec_cursor *c, const char *field, uint32_t *out)
{
    if (c->end - c->p < 4)
        return short_record(c, field, 4);
    *out = rv_load_u32(c->p);
    c->p += 4;
    return 0;
}

int rv_rec_get_bytes(rv_rec_cursor *c, const char *field, size_t n, const unsigned char **out)
{
    if ((size_t)(c->end - c->p) < n)
        return short_record(c, field, n);
    *out = c->p;
    c->p += n;
    return 0;
}

int rv_rec_get_str(rv_rec_cursor *c, const char *field, rv_str *out)
{
    uint32_t n = 0;
    const unsigned char *p = NULL;
    if (rv_rec_get_u32(c, field, &n) < 0 || rv_rec_get_bytes(c, field, n, &p) < 0)
        return -1;
    out->p = (const char *)p;
    out->len = n;
    return 0;
}

int rv_rec_get_f32(rv_rec_cursor *c, const char *field, float *out)
{
    uint32_t u = 0;
    if (rv_rec_get_u32(c, field, &u) < 0)
        return -1;
    *out = rv_bits_f32(u);
    return 0;
}

int rv_rec_get_f64(rv_rec_cursor *c, const char *field, double *out)
{
    if (c->end - c->p < 8)
        return short_record(c, field, 8);
    uint64_t u = rv_load_u64(c->p);
    memcpy(out, &u, 8);
    c->p += 8;
    return 0;
}

int rv_rec_end(const rv_rec_cursor *c)
{
    if (c->p != c->end)
        return rv_error_set("%s record: %zu unexpected bytes after the last field",
                            c->kind, (size_t)(c->end - c->p));
    return 0;
}

int rv_rec_put_str(rv_buf *b, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        return rv_error_set("string of %zu bytes is too long for a record field", n);
    if (rv_buf_put_u32(b, (uint32_t)n) < 0)
        return -1;
    return rv_buf_append(b, s, n);
}

int rv_rec_put_f32(rv_buf *b, float v) { return rv_buf_put_u32(b, rv_f32_bits(v)); }

int rv_rec_put_f64(rv_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return rv_buf_put_u64(b, u);
}

static int put_ids(rv_buf *b, const uint32_t *ids, uint32_t n)
{
    if (rv_buf_put_u32(b, n) < 0 || rv_buf_reserve(b, (size_t)n * 4) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        rv_store_u32(b->data + b->len + (size_t)i * 4, ids[i]);
    b->len += (size_t)n * 4;
    return 0;
}

static int get_ids(rv_rec_cursor *c, uint32_t *n, const unsigned char **ids)
{
    if (rv_rec_get_u32(c, "n_ids", n) < 0)
        return -1;
    return rv_rec_get_bytes(c, "ids", (size_t)*n * 4, ids);
}

/* ------------------------------------------------------------------- doc */

int rv_doc_encode(rv_buf *b, const rv_doc *d)
{
    b->len = 0;
    if (rv_rec_put_str(b, d->id.p, d->id.len) < 0 || rv_rec_put_str(b, d->title.p, d->title.len) < 0 ||
        rv_rec_put_str(b, d->text.p, d->text.len) < 0)
        return -1;
    return 0;
}

int rv_doc_decode(const unsigned char *rec, size_t len, rv_doc *d)
{
    rv_rec_cursor c = {rec, rec + len, "doc"};
    if (rv_rec_get_str(&c, "id", &d->id) < 0 || rv_rec_get_str(&c, "title", &d->title) < 0 ||
        rv_rec_get_str(&c, "text", &d->text) < 0)
        return -1;
    return rv_rec_end(&c);
}

/* ----------------------------------------------------------------- chunk */

int rv_chunk_encode(rv_buf *b, const char *doc_id, size_t doc_id_len, uint32_t index,
                    const char *text, size_t text_len, const uint32_t *ids, uint32_t n_ids)
{
    b->len = 0;
    if (rv_rec_put_str(b, doc_id, doc_id_len) < 0 || rv_buf_put_u32(b, index) < 0 ||
        rv_rec_put_str(b, text, text_len) < 0 || put_ids(b, ids, n_ids) < 0)
        return -1;
    return 0;
}

int rv_chunk_decode(const unsigned char *rec, size_t len, rv_chunk *ch)
{
    rv_rec_cursor c = {rec, rec + len, "chunk"};
    if (rv_rec_get_str(&c, "doc_id", &ch->doc_id) < 0 || rv_rec_get_u32(&c, "chunk", &ch->index) < 0 ||
        rv_rec_get_str(&c, "text", &ch->text) < 0 || get_ids(&c, &ch->n_ids, &ch->ids) < 0)
        return -1;
    return rv_rec_end(&c);
}

/* ----------------------------------------------------------------- group */

int rv_group_begin(rv_buf *b, const char *src, size_t src_len, uint32_t n_members)
{
    b->len = 0;
    if (rv_rec_put_str(b, src, src_len) < 0 || rv_buf_put_u32(b, n_members) < 0)
        return -1;
    return 0;
}

int rv_group_add(rv_buf *b, const char *doc_id, size_t doc_id_len, uint32_t index,
                 const char *text, size_t text_len, const uint32_t *ids, uint32_t n_ids, float score)
{
    if (rv_rec_put_str(b, doc_id, doc_id_len) < 0 || rv_buf_put_u32(b, index) < 0 ||
        rv_rec_put_str(b, text, text_len) < 0 || put_ids(b, ids, n_ids) < 0 || rv_rec_put_f32(b, score) < 0)
        return -1;
    return 0;
}

int rv_group_open(rv_rec_cursor *c, const unsigned char *rec, size_t len, rv_str *src, uint32_t *n)
{
    c->p = rec;
    c->end = rec + len;
    c->kind = "group";
    if (rv_rec_get_str(c, "src", src) < 0 || rv_rec_get_u32(c, "n_members", n) < 0)
        return -1;
    return 0;
}

int rv_group_next(rv_rec_cursor *c, rv_group_member *m)
{
    if (rv_rec_get_str(c, "doc_id", &m->doc_id) < 0 || rv_rec_get_u32(c, "chunk", &m->index) < 0 ||
        rv_rec_get_str(c, "text", &m->text) < 0 || get_ids(c, &m->n_ids, &m->ids) < 0 ||
        rv_rec_get_f32(c, "score", &m->score) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------- emb */

int rv_dtype_parse(const char *s, rv_dtype *out)
{
    if (strcmp(s, "f32") == 0) *out = RV_DTYPE_F32;
    else if (strcmp(s, "f16") == 0) *out = RV_DTYPE_F16;
    else if (strcmp(s, "bf16") == 0) *out = RV_DTYPE_BF16;
    else return rv_error_set("dtype: expected f32, f16 or bf16, found \"%s\"", s);
    return 0;
}

const char *rv_dtype_name(rv_dtype t) { return t == RV_DTYPE_F32 ? "f32" : t == RV_DTYPE_F16 ? "f16" : "bf16"; }
size_t rv_dtype_size(rv_dtype t) { return t == RV_DTYPE_F32 ? 4 : 2; }

int rv_emb_encode(rv_buf *b, const char *id, size_t id_len, const float *v, uint32_t dim, rv_dtype t)
{
    b->len = 0;
    size_t bytes = (size_t)dim * rv_dtype_size(t);
    if (rv_rec_put_str(b, id, id_len) < 0 || rv_buf_reserve(b, bytes) < 0)
        return -1;
    unsigned char *o = b->data + b->len;
    for (uint32_t i = 0; i < dim; i++) {
        if (t == RV_DTYPE_F32) {
            rv_store_u32(o + 4 * (size_t)i, rv_f32_bits(v[i]));
        } else {
            uint16_t h = t == RV_DTYPE_F16 ? rv_f32_to_f16(v[i]) : rv_f32_to_bf16(v[i]);
            o[2 * (size_t)i] = (unsigned char)h;
            o[2 * (size_t)i + 1] = (unsigned char)(h >> 8);
        }
    }
    b->len += bytes;
    return 0;
}

int rv_emb_decode(const unsigned char *rec, size_t len, uint32_t dim, rv_dtype t, rv_emb *e)
{
    rv_rec_cursor c = {rec, rec + len, "emb"};
    if (rv_rec_get_str(&c, "id", &e->id) < 0 ||
        rv_rec_get_bytes(&c, "vector", (size_t)dim * rv_dtype_size(t), &e->vec) < 0)
        return -1;
    return rv_rec_end(&c);
}

float rv_emb_get(const rv_emb *e, rv_dtype t, uint32_t i)
{
    if (t == RV_DTYPE_F32)
        return rv_bits_f32(rv_load_u32(e->vec + 4 * (size_t)i));
    uint16_t h = (uint16_t)(e->vec[2 * (size_t)i] | e->vec[2 * (size_t)i + 1] << 8);
    return t == RV_DTYPE_F16 ? rv_f16_to_f32(h) : rv_bf16_to_f32(h);
}

int rv_emb_meta(const char *meta_json, size_t len, uint32_t *dim, rv_dtype *t)
{
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp)
        return -1;
    int rc = -1;
    rv_json *m = rv_json_parse(jp, meta_json, len);
    const rv_json *d = rv_json_get(m, "dim"), *ty = rv_json_get(m, "dtype");
    int64_t dv;
    if (!m)
        rv_error_prefix("metadata");
    else if (!d || rv_json_as_int64(d, &dv) < 0 || dv < 0 || dv > (1 << 24))
        rv_error_set("metadata: dim: expected an integer 0..16777216");
    else if (!ty || ty->type != RV_JSON_STRING)
        rv_error_set("metadata: dtype: expected \"f32\", \"f16\" or \"bf16\"");
    else if (rv_dtype_parse(ty->u.string, t) < 0)
        rv_error_prefix("metadata");
    else {
        *dim = (uint32_t)dv;
        rc = 0;
    }
    rv_json_parser_free(jp);
    return rc;
}

/* ------------------------------------------------------------------- run */

int rv_run_begin(rv_buf *b, const char *qid, size_t qid_len, uint32_t n_hits)
{
    b->len = 0;
    if (rv_rec_put_str(b, qid, qid_len) < 0 || rv_buf_put_u32(b, n_hits) < 0)
        return -1;
    return 0;
}

int rv_run_add(rv_buf *b, const char *docid, size_t docid_len, double score)
{
    if (rv_rec_put_str(b, docid, docid_len) < 0 || rv_rec_put_f64(b, score) < 0)
        return -1;
    return 0;
}

int rv_run_open(rv_rec_cursor *c, const unsigned char *rec, size_t len, rv_str *qid, uint32_t *n)
{
    c->p = rec;
    c->end = rec + len;
    c->kind = "run";
    if (rv_rec_get_str(c, "qid", qid) < 0 || rv_rec_get_u32(c, "n_hits", n) < 0)
        return -1;
    return 0;
}

int rv_run_next(rv_rec_cursor *c, rv_run_hit *h)
{
    if (rv_rec_get_str(c, "docid", &h->docid) < 0 || rv_rec_get_f64(c, "score", &h->score) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ JSON views */

int rv_json_put_f32(rv_buf *b, float v)
{
    if (!isfinite(v))
        return rv_buf_append(b, "null", 4);
    return rv_buf_printf(b, "%.9g", (double)v);
}

int rv_json_put_f64(rv_buf *b, double v)
{
    if (!isfinite(v))
        return rv_buf_append(b, "null", 4);
    return rv_buf_printf(b, "%.17g", v);
}

static int put_key(rv_buf *b, const char *key, int first)
{
    if (!first && rv_buf_putc(b, ',') < 0)
        return -1;
    return rv_buf_printf(b, "\"%s\":", key);
}

static int put_str_field(rv_buf *b, const char *key, rv_str s, int first)
{
    if (put_key(b, key, first) < 0)
        return -1;
    return rv_json_put_string(b, s.p, s.len);
}

static int put_ids_json(rv_buf *b, uint32_t n, const unsigned char *ids)
{
    if (rv_buf_putc(b, '[') < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        if (rv_buf_printf(b, i ? ",%u" : "%u", rv_load_u32(ids + 4 * (size_t)i)) < 0)
            return -1;
    return rv_buf_putc(b, ']');
}

/* JSON string field; missing -> error unless optional (then empty). */
static int json_str(const rv_json *obj, const char *key, int optional, rv_str *out)
{
    const rv_json *v = rv_json_get(obj, key);
    if (!v) {
        if (optional) {
            out->p = "";
            out->len = 0;
            return 0;
        }
        return rv_error_set("%s: expected a string field, found none", key);
    }
    if (v->type != RV_JSON_STRING)
        return rv_error_set("%s: expected a string, found %s", key, rv_json_type_name(v->type));
    out->p = v->u.string;
    out->len = v->len;
    return 0;
}

static int json_u32(const rv_json *obj, const char *key, uint32_t *out)
{
    const rv_json *v = rv_json_get(obj, key);
    int64_t x;
    if (!v)
        return rv_error_set("%s: expected an integer field, found none", key);
    if (rv_json_as_int64(v, &x) < 0 || x < 0 || x > UINT32_MAX)
        return rv_error_set("%s: expected an integer 0..4294967295", key);
    *out = (uint32_t)x;
    return 0;
}

/* Parses an array of u32 token ids into a temporary vector. */
static int json_ids(const rv_json *obj, const char *key, uint32_t **ids, uint32_t *n)
{
    const rv_json *v = rv_json_get(obj, key);
    if (!v || v->type != RV_JSON_ARRAY)
        return rv_error_set("%s: expected an array of token ids", key);
    if (v->len > UINT32_MAX)
        return rv_error_set("%s: too many ids", key);
    *ids = rv_malloc(v->len * sizeof **ids);
    if (!*ids)
        return -1;
    for (size_t i = 0; i < v->len; i++) {
        int64_t x;
        if (rv_json_as_int64(&v->u.items[i], &x) < 0 || x < 0 || x > UINT32_MAX) {
            free(*ids);
            return rv_error_set("%s[%zu]: expected an integer 0..4294967295", key, i);
        }
        (*ids)[i] = (uint32_t)x;
    }
    *n = (uint32_t)v->len;
    return 0;
}

static int json_number(const rv_json *v, const char *key, double *out)
{
    if (v && v->type == RV_JSON_NULL) {
        *out = NAN;
        return 0;
    }
    if (!v || v->type != RV_JSON_NUMBER)
        return rv_error_set("%s: expected a number", key);
    *out = v->u.number;
    return 0;
}

static int doc_to_json(const unsigned char *rec, size_t len, const char *meta, size_t ml, rv_buf *b)
{
    (void)meta; (void)ml;
    rv_doc d;
    if (rv_doc_decode(rec, len, &d) < 0)
        return -1;
    if (rv_buf_putc(b, '{') < 0 || put_str_field(b, "_id", d.id, 1) < 0 ||
        put_str_field(b, "title", d.title, 0) < 0 || put_str_field(b, "text", d.text, 0) < 0)
        return -1;
    return rv_buf_putc(b, '}');
}

static int doc_from_json(const rv_json *o, void *state, rv_buf *b)
{
    (void)state;
    rv_doc d;
    const char *idkey = rv_json_get(o, "_id") ? "_id" : "id";
    if (!rv_json_get(o, "_id") && !rv_json_get(o, "id"))
        return rv_error_set("_id: expected a string field \"_id\" or \"id\", found neither");
    if (json_str(o, idkey, 0, &d.id) < 0 || json_str(o, "title", 1, &d.title) < 0 ||
        json_str(o, "text", 0, &d.text) < 0)
        return -1;
    return rv_doc_encode(b, &d);
}

static int chunk_to_json(const unsigned char *rec, size_t len, const char *meta, size_t ml, rv_buf *b)
{
    (void)meta; (void)ml;
    rv_chunk c;
    if (rv_chunk_decode(rec, len, &c) < 0)
        return -1;
    if (rv_buf_putc(b, '{') < 0 || put_str_field(b, "doc_id", c.doc_id, 1) < 0 ||
        rv_buf_printf(b, ",\"chunk\":%u", c.index) < 0 || put_str_field(b, "text", c.text, 0) < 0 ||
        put_key(b, "ids", 0) < 0 || put_ids_json(b, c.n_ids, c.ids) < 0)
        return -1;
    return rv_buf_putc(b, '}');
}

static int chunk_from_json(const rv_json *o, void *state, rv_buf *b)
{
    (void)state;
    rv_str doc_id, text;
    uint32_t index, n, *ids;
    if (json_str(o, "doc_id", 0, &doc_id) < 0 || json_u32(o, "chunk", &index) < 0 ||
        json_str(o, "text", 0, &text) < 0 || json_ids(o, "ids", &ids, &n) < 0)
        return -1;
    int rc = rv_chunk_encode(b, doc_id.p, doc_id.len, index, text.p, text.len, ids, n);
    free(ids);
    return rc;
}

static int group_to_json(const unsigned char *rec, size_t len, const char *meta, size_t ml, rv_buf *b)
{
    (void)meta; (void)ml;
    rv_rec_cursor c;
    rv_str src;
    uint32_t n;
    if (rv_group_open(&c, rec, len, &src, &n) < 0 || rv_buf_putc(b, '{') < 0 ||
        put_str_field(b, "src", src, 1) < 0 || put_key(b, "members", 0) < 0 || rv_buf_putc(b, '[') < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        rv_group_member m;
        if (rv_group_next(&c, &m) < 0)
            return -1;
        if ((i && rv_buf_putc(b, ',') < 0) || rv_buf_putc(b, '{') < 0 ||
            put_str_field(b, "doc_id", m.doc_id, 1) < 0 || rv_buf_printf(b, ",\"chunk\":%u", m.index) < 0 ||
            put_str_field(b, "text", m.text, 0) < 0 || put_key(b, "ids", 0) < 0 ||
            put_ids_json(b, m.n_ids, m.ids) < 0 || put_key(b, "score", 0) < 0 ||
            rv_json_put_f32(b, m.score) < 0 || rv_buf_putc(b, '}') < 0)
            return -1;
    }
    if (rv_rec_end(&c) < 0)
        return -1;
    return rv_buf_append(b, "]}", 2);
}

static int group_from_json(const rv_json *o, void *state, rv_buf *b)
{
    (void)state;
    rv_str src;
    const rv_json *members = rv_json_get(o, "members");
    if (json_str(o, "src", 1, &src) < 0)
        return -1;
    if (!members || members->type != RV_JSON_ARRAY || members->len > UINT32_MAX)
        return rv_error_set("members: expected an array of chunk objects");
    if (rv_group_begin(b, src.p, src.len, (uint32_t)members->len) < 0)
        return -1;
    for (size_t i = 0; i < members->len; i++) {
        const rv_json *m = &members->u.items[i];
        rv_str doc_id, text;
        uint32_t index, n, *ids;
        double score = 0;
        const rv_json *sv = rv_json_get(m, "score");
        if (m->type != RV_JSON_OBJECT)
            return rv_error_set("members[%zu]: expected an object", i);
        if (json_str(m, "doc_id", 0, &doc_id) < 0 || json_u32(m, "chunk", &index) < 0 ||
            json_str(m, "text", 0, &text) < 0 || (sv && json_number(sv, "score", &score) < 0))
            return rv_error_prefix("members[%zu]", i);
        if (json_ids(m, "ids", &ids, &n) < 0)
            return rv_error_prefix("members[%zu]", i);
        int rc = rv_group_add(b, doc_id.p, doc_id.len, index, text.p, text.len, ids, n, (float)score);
        free(ids);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int emb_to_json(const unsigned char *rec, size_t len, const char *meta, size_t ml, rv_buf *b)
{
    uint32_t dim;
    rv_dtype t;
    rv_emb e;
    if (rv_emb_meta(meta, ml, &dim, &t) < 0 || rv_emb_decode(rec, len, dim, t, &e) < 0)
        return -1;
    if (rv_buf_putc(b, '{') < 0 || put_str_field(b, "id", e.id, 1) < 0 || put_key(b, "vector", 0) < 0 ||
        rv_buf_putc(b, '[') < 0)
        return -1;
    for (uint32_t i = 0; i < dim; i++)
        if ((i && rv_buf_putc(b, ',') < 0) || rv_json_put_f32(b, rv_emb_get(&e, t, i)) < 0)
            return -1;
    return rv_buf_append(b, "]}", 2);
}

static int emb_from_json(const rv_json *o, void *state, rv_buf *b)
{
    rv_emb_json_state *st = state;
    rv_str id;
    const rv_json *v = rv_json_get(o, "vector");
    if (json_str(o, "id", 0, &id) < 0)
        return -1;
    if (!v || v->type != RV_JSON_ARRAY || v->len > (1u << 24))
        return rv_error_set("vector: expected an array of numbers");
    if (!st->have_dim) {
        st->dim = (uint32_t)v->len;
        st->have_dim = 1;
    } else if (v->len != st->dim) {
        return rv_error_set("vector: expected %u numbers (the first record's dimension), found %zu",
                            st->dim, v->len);
    }
    float *tmp = rv_malloc(v->len * sizeof *tmp);
    if (!tmp)
        return -1;
    for (size_t i = 0; i < v->len; i++) {
        double x = 0;
        if (json_number(&v->u.items[i], "vector", &x) < 0) {
            free(tmp);
            return rv_error_set("vector[%zu]: expected a number", i);
        }
        tmp[i] = (float)x;
    }
    int rc = rv_emb_encode(b, id.p, id.len, tmp, st->dim, st->dtype);
    free(tmp);
    return rc;
}

static int run_to_json(const unsigned char *rec, size_t len, const char *meta, size_t ml, rv_buf *b)
{
    (void)meta; (void)ml;
    rv_rec_cursor c;
    rv_str qid;
    uint32_t n;
    if (rv_run_open(&c, rec, len, &qid, &n) < 0 || rv_buf_putc(b, '{') < 0 ||
        put_str_field(b, "qid", qid, 1) < 0 || put_key(b, "hits", 0) < 0 || rv_buf_putc(b, '[') < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        rv_run_hit h;
        if (rv_run_next(&c, &h) < 0)
            return -1;
        if ((i && rv_buf_putc(b, ',') < 0) || rv_buf_putc(b, '{') < 0 ||
            put_str_field(b, "docid", h.docid, 1) < 0 || put_key(b, "score", 0) < 0 ||
            rv_json_put_f64(b, h.score) < 0 || rv_buf_putc(b, '}') < 0)
            return -1;
    }
    if (rv_rec_end(&c) < 0)
        return -1;
    return rv_buf_append(b, "]}", 2);
}

static int run_from_json(const rv_json *o, void *state, rv_buf *b)
{
    (void)state;
    rv_str qid;
    const rv_json *hits = rv_json_get(o, "hits");
    if (json_str(o, "qid", 0, &qid) < 0)
        return -1;
    if (!hits || hits->type != RV_JSON_ARRAY || hits->len > UINT32_MAX)
        return rv_error_set("hits: expected an array of {\"docid\",\"score\"} objects");
    if (rv_run_begin(b, qid.p, qid.len, (uint32_t)hits->len) < 0)
        return -1;
    for (size_t i = 0; i < hits->len; i++) {
        const rv_json *h = &hits->u.items[i];
        rv_str docid;
        double score = 0;
        if (h->type != RV_JSON_OBJECT)
            return rv_error_set("hits[%zu]: expected an object", i);
        if (json_str(h, "docid", 0, &docid) < 0 || json_number(rv_json_get(h, "score"), "score", &score) < 0)
            return rv_error_prefix("hits[%zu]", i);
        if (rv_run_add(b, docid.p, docid.len, score) < 0)
            return -1;
    }
    return 0;
}

static const rv_kind kind_doc = {"doc", RV_DOC_VERSION, "documents or queries: id, title, text",
                                 doc_to_json, doc_from_json};
static const rv_kind kind_chunk = {"chunk", RV_CHUNK_VERSION, "text chunks with token ids",
                                   chunk_to_json, chunk_from_json};
static const rv_kind kind_group = {"group", RV_GROUP_VERSION, "training groups of chunks",
                                   group_to_json, group_from_json};
static const rv_kind kind_emb = {"emb", RV_EMB_VERSION, "embeddings: id + vector",
                                 emb_to_json, emb_from_json};
static const rv_kind kind_run = {"run", RV_RUN_VERSION, "ranked results per query",
                                 run_to_json, run_from_json};

static const rv_kind *const all_kinds[] = {&kind_doc, &kind_chunk, &kind_group, &kind_emb, &kind_run, NULL};

const rv_kind *const *rv_kinds(void) { return all_kinds; }

const rv_kind *rv_kind_find(const char *name)
{
    for (size_t i = 0; all_kinds[i]; i++)
        if (strcmp(all_kinds[i]->name, name) == 0)
            return all_kinds[i];
    return NULL;
}
