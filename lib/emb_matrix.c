/* emb_matrix.c — embeddings + ids from emb streams and .npy files (see
 * emb_matrix.h). */
#include "emb_matrix.h"

#include "error.h"
#include "half.h"     /* f16/bf16 <-> float */
#include "lines.h"    /* the id list of an .npy file */
#include "npy.h"
#include "stream.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>   /* XXH3_64bits for the id tables */

void rv_emb_matrix_init(rv_emb_matrix *m)
{
    memset(m, 0, sizeof *m);
    m->dtype = RV_DTYPE_F32;
}

void rv_emb_matrix_free(rv_emb_matrix *m)
{
    free(m->data);
    free(m->id_end);
    free(m->dim_source);
    rv_buf_free(&m->ids);
    rv_emb_matrix_init(m);
}

rv_str rv_emb_matrix_id(const rv_emb_matrix *m, size_t row)
{
    size_t start = row ? m->id_end[row - 1] : 0;
    rv_str s = {(const char *)m->ids.data + start, m->id_end[row] - start};
    return s;
}

rv_dense_matrix rv_emb_matrix_view(const rv_emb_matrix *m)
{
    rv_dense_matrix v = {m->data, m->dtype, m->rows, m->dim};
    return v;
}

/* ------------------------------------------------------------- appending */

static int set_dim(rv_emb_matrix *m, uint32_t dim, const char *name)
{
    if (!m->have_dim) {
        m->dim_source = strdup(name);
        if (!m->dim_source)
            return rv_error_set("out of memory");
        m->dim = dim;
        m->have_dim = 1;
        return 0;
    }
    if (dim != m->dim)
        return rv_error_set("%s: dimension %u does not match dimension %u of %s", name, dim, m->dim, m->dim_source);
    return 0;
}

/* Room for `extra` more rows (data and id ends): exactly that many when the
 * count is known (an .npy file), else with room to grow (a stream). */
static int reserve_rows(rv_emb_matrix *m, size_t extra, int exact)
{
    size_t need;
    if (rv_size_add(m->rows, extra, &need, "embedding rows") < 0)
        return -1;
    if (need <= m->cap_rows)
        return 0;
    size_t cap = need;
    if (!exact) {
        cap = m->cap_rows ? m->cap_rows : 1024;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    size_t row_bytes, bytes, id_bytes;
    if (rv_size_mul((size_t)m->dim, rv_dtype_size(m->dtype), &row_bytes, "embedding size") < 0 ||
        rv_size_mul(cap, row_bytes, &bytes, "embedding matrix") < 0 ||
        rv_size_mul(cap, sizeof *m->id_end, &id_bytes, "embedding ids") < 0)
        return -1;
    unsigned char *data = realloc(m->data, bytes ? bytes : 1);
    if (!data)
        return rv_error_set("out of memory for %zu embeddings of dimension %u", cap, m->dim);
    m->data = data;
    size_t *ends = realloc(m->id_end, id_bytes);
    if (!ends)
        return rv_error_set("out of memory for %zu embedding ids", cap);
    m->id_end = ends;
    m->cap_rows = cap;
    return 0;
}

/* Switches a 16-bit matrix to f32 (when sources of different dtypes mix),
 * widening in place from the last value down so nothing unread is
 * overwritten. */
static int widen_to_f32(rv_emb_matrix *m)
{
    if (m->dtype == RV_DTYPE_F32)
        return 0;
    size_t count, bytes;
    if (rv_size_mul(m->cap_rows, m->dim, &count, "embedding matrix") < 0 ||
        rv_size_mul(count, 4, &bytes, "embedding matrix") < 0)
        return -1;
    unsigned char *data = realloc(m->data, bytes ? bytes : 1);
    if (!data)
        return rv_error_set("out of memory widening %zu embeddings to f32", m->rows);
    m->data = data;
    for (size_t i = m->rows * m->dim; i-- > 0;) {
        uint16_t h;
        memcpy(&h, data + 2 * i, 2);
        float f = m->dtype == RV_DTYPE_F16 ? rv_f16_to_f32(h) : rv_bf16_to_f32(h);
        memcpy(data + 4 * i, &f, 4);
    }
    m->dtype = RV_DTYPE_F32;
    return 0;
}

/* Makes the matrix able to take rows of dtype t. */
static int adopt_dtype(rv_emb_matrix *m, rv_dtype t)
{
    if (m->rows == 0 && m->cap_rows == 0) {
        m->dtype = t;
        return 0;
    }
    if (m->dtype == t)
        return 0;
    return widen_to_f32(m);
}

static int push_id(rv_emb_matrix *m, const char *id, size_t len)
{
    if (rv_buf_append(&m->ids, id, len) < 0)
        return -1;
    m->id_end[m->rows] = m->ids.len;
    return 0;
}

static int value_not_finite(const char *name, size_t row, const rv_emb_matrix *m, uint32_t i, float v)
{
    rv_str id = rv_emb_matrix_id(m, row);
    return rv_error_set("%s: row %zu (id \"%.*s\"): vector[%u]: expected a finite number, found %s", name, row,
                        (int)(id.len > 64 ? 64 : id.len), id.p, i, v != v ? "NaN" : "infinity");
}

/* Checks row `row` of the matrix (its id already pushed). The first pass
 * only accumulates a flag, which vectorizes; the slow search for the bad
 * element runs only when there is one. */
static int check_finite_row(const rv_emb_matrix *m, size_t row, const char *name, size_t shown_row)
{
    const unsigned char *base = m->data + row * m->dim * rv_dtype_size(m->dtype);
    int bad = 0;
    if (m->dtype == RV_DTYPE_F32) {
        const uint32_t *bits = (const uint32_t *)(const void *)base;
        for (uint32_t i = 0; i < m->dim; i++)
            bad |= (bits[i] & 0x7f800000u) == 0x7f800000u;   /* all-ones exponent: NaN or infinity */
    } else {
        const uint16_t *h = (const uint16_t *)(const void *)base;
        uint16_t exp_mask = m->dtype == RV_DTYPE_F16 ? 0x7c00 : 0x7f80;
        for (uint32_t i = 0; i < m->dim; i++)
            bad |= (h[i] & exp_mask) == exp_mask;   /* all-ones exponent */
    }
    if (!bad)
        return 0;
    for (uint32_t i = 0; i < m->dim; i++) {
        float v;
        if (m->dtype == RV_DTYPE_F32) {
            memcpy(&v, base + 4 * (size_t)i, 4);
        } else {
            uint16_t h;
            memcpy(&h, base + 2 * (size_t)i, 2);
            v = m->dtype == RV_DTYPE_F16 ? rv_f16_to_f32(h) : rv_bf16_to_f32(h);
        }
        if (v - v != 0)
            return value_not_finite(name, shown_row, m, i, v);
    }
    return 0;
}

/* Stores a decoded record's vector (stream dtype t, little-endian) as row m->rows. */
static void store_vector(rv_emb_matrix *m, const rv_emb *e, rv_dtype t)
{
    unsigned char *dst = m->data + m->rows * m->dim * rv_dtype_size(m->dtype);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (m->dtype == t) {   /* the stream's bytes are the host's values */
        memcpy(dst, e->vec, (size_t)m->dim * rv_dtype_size(t));
        return;
    }
#endif
    if (m->dtype == t && t != RV_DTYPE_F32) {
        for (uint32_t i = 0; i < m->dim; i++) {
            uint16_t h = (uint16_t)(e->vec[2 * (size_t)i] | e->vec[2 * (size_t)i + 1] << 8);
            memcpy(dst + 2 * (size_t)i, &h, 2);
        }
        return;
    }
    for (uint32_t i = 0; i < m->dim; i++) {   /* m is f32 here */
        float v = rv_emb_get(e, t, i);
        memcpy(dst + 4 * (size_t)i, &v, 4);
    }
}

int rv_emb_matrix_add_stream(rv_emb_matrix *m, FILE *f, const char *name)
{
    rv_stream_reader *r = rv_stream_reader_open(f, name);
    if (!r)
        return -1;
    const char *shown = rv_stream_reader_name(r);
    int rc = -1;
    uint32_t dim;
    rv_dtype t;
    size_t ml;
    const char *meta = rv_stream_reader_meta(r, &ml);
    if (rv_stream_reader_expect(r, "emb", RV_EMB_VERSION) < 0)
        goto out;
    if (rv_emb_meta(meta, ml, &dim, &t) < 0) {
        rv_error_prefix("%s", shown);
        goto out;
    }
    const unsigned char *rec;
    size_t len;
    int got;
    size_t first = m->rows;
    while ((got = rv_stream_read(r, &rec, &len)) == 1) {
        rv_emb e;
        size_t n = m->rows - first;
        if (n == 0 && (set_dim(m, dim, shown) < 0 || adopt_dtype(m, t) < 0))
            goto out;
        if (rv_emb_decode(rec, len, dim, t, &e) < 0) {
            rv_error_prefix("%s: record %zu", shown, n);
            goto out;
        }
        if (reserve_rows(m, 1, 0) < 0 || push_id(m, e.id.p, e.id.len) < 0)
            goto out;
        store_vector(m, &e, t);
        if (check_finite_row(m, m->rows, shown, n) < 0)
            goto out;
        m->rows++;
    }
    if (got < 0)
        goto out;
    rc = 0;
out:
    rv_stream_reader_close(r);
    return rc;
}

/* Reads the id list of an .npy file: exactly `rows` non-empty lines. */
static int add_npy_ids(rv_emb_matrix *m, size_t first, uint64_t rows, FILE *ids_f, const char *ids_name,
                       const char *npy_name)
{
    if (!ids_f) {
        char tmp[24];
        for (uint64_t r = 0; r < rows; r++) {
            int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)r);
            if (rv_buf_append(&m->ids, tmp, (size_t)n) < 0)
                return -1;
            m->id_end[first + r] = m->ids.len;
        }
        return 0;
    }
    rv_lines lr;
    rv_lines_init(&lr, ids_f);
    char *line;
    size_t len;
    uint64_t n = 0;
    int got, rc = 0;
    while (rc == 0 && (got = rv_lines_next(&lr, &line, &len)) == 1) {
        if (n == rows)
            rc = rv_error_set("%s:%zu: expected %llu ids (one per row of %s), found more lines", ids_name,
                              lr.lineno, (unsigned long long)rows, npy_name);
        else if (len == 0)
            rc = rv_error_set("%s:%zu: expected an id, found an empty line", ids_name, lr.lineno);
        else if (rv_buf_append(&m->ids, line, len) < 0)
            rc = -1;
        else
            m->id_end[first + n++] = m->ids.len;
    }
    if (rc == 0 && got < 0)
        rc = rv_error_prefix("%s", ids_name);
    if (rc == 0 && n < rows)
        rc = rv_error_set("%s: expected %llu ids (one per row of %s), found %llu lines", ids_name,
                          (unsigned long long)rows, npy_name, (unsigned long long)n);
    rv_lines_free(&lr);
    return rc;
}

int rv_emb_matrix_add_npy(rv_emb_matrix *m, FILE *npy_f, const char *npy_name, FILE *ids_f, const char *ids_name)
{
    rv_npy_info info;
    if (rv_npy_read_header(npy_f, npy_name, &info) < 0)
        return -1;
    if (info.cols > UINT32_MAX)
        return rv_error_set("%s: dimension: expected below 2^32, found %llu", npy_name,
                            (unsigned long long)info.cols);
    if (info.rows == 0)   /* nothing to add; the ids must be empty too */
        return rv_npy_expect_end(npy_f, npy_name) < 0 ? -1 : add_npy_ids(m, m->rows, 0, ids_f, ids_name, npy_name);
    rv_dtype t = info.dtype == RV_NPY_F16 ? RV_DTYPE_F16 : RV_DTYPE_F32;
    if (set_dim(m, (uint32_t)info.cols, npy_name) < 0 || adopt_dtype(m, t) < 0 ||
        reserve_rows(m, (size_t)info.rows, 1) < 0)
        return -1;
    unsigned char *dst = m->data + m->rows * m->dim * rv_dtype_size(m->dtype);
    int rc;
    if (m->dtype == RV_DTYPE_F32)
        rc = rv_npy_read_f32(npy_f, npy_name, &info, info.rows, (float *)(void *)dst);
    else
        rc = rv_npy_read_f16(npy_f, npy_name, &info, info.rows, (uint16_t *)(void *)dst);
    if (rc < 0 || rv_npy_expect_end(npy_f, npy_name) < 0 ||
        add_npy_ids(m, m->rows, info.rows, ids_f, ids_name, npy_name) < 0)
        return -1;
    for (size_t r = 0; r < info.rows; r++)
        if (check_finite_row(m, m->rows + r, npy_name, r) < 0)
            return -1;
    m->rows += (size_t)info.rows;
    return 0;
}

/* ---------------------------------------------------------- id tables */

/* Open addressing over row numbers (+1; 0 = empty), hashed by a string
 * derived from the row, with linear probing. */
typedef struct {
    uint32_t *slot;
    size_t mask;
} row_table;

static int row_table_init(row_table *t, size_t rows)
{
    if (rows >= UINT32_MAX)
        return rv_error_set("expected fewer than 2^32-1 rows, found %zu", rows);
    size_t size = 16;
    while (size < 2 * rows)
        size *= 2;
    t->slot = rv_calloc(size, sizeof *t->slot);
    t->mask = size - 1;
    return t->slot ? 0 : -1;
}

static inline size_t str_hash(rv_str s) { return (size_t)XXH3_64bits(s.p, s.len); }
static inline int str_eq(rv_str a, rv_str b) { return a.len == b.len && memcmp(a.p, b.p, a.len) == 0; }

static int has_space(rv_str s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.p[i] == ' ' || s.p[i] == '\t' || s.p[i] == '\n' || s.p[i] == '\r' || s.p[i] == '\v' ||
            s.p[i] == '\f')
            return 1;
    return 0;
}

int rv_emb_matrix_check_ids(const rv_emb_matrix *m, const char *what, int for_trec)
{
    row_table t = {0};
    if (row_table_init(&t, m->rows) < 0)
        return rv_error_prefix("%s", what);
    int rc = 0;
    for (size_t r = 0; r < m->rows && rc == 0; r++) {
        rv_str id = rv_emb_matrix_id(m, r);
        if (id.len == 0) {
            rc = rv_error_set("%s: row %zu: expected an id, found an empty one", what, r);
            break;
        }
        if (for_trec && has_space(id)) {
            rc = rv_error_set("%s: row %zu: id \"%.*s\" holds whitespace, which a TREC run cannot carry\n"
                              "HINT: use --stream, or change the ids",
                              what, r, (int)(id.len > 64 ? 64 : id.len), id.p);
            break;
        }
        size_t i = str_hash(id) & t.mask;
        while (t.slot[i]) {
            size_t other = t.slot[i] - 1;
            if (str_eq(rv_emb_matrix_id(m, other), id)) {
                rc = rv_error_set("%s: id \"%.*s\" appears at rows %zu and %zu; ids must be unique", what,
                                  (int)(id.len > 64 ? 64 : id.len), id.p, other, r);
                break;
            }
            i = (i + 1) & t.mask;
        }
        t.slot[i] = (uint32_t)(r + 1);
    }
    free(t.slot);
    return rc;
}

rv_str rv_doc_id_of(rv_str id, const char *sep)
{
    size_t sl = strlen(sep);
    if (sl == 0 || sl > id.len)
        return id;
    for (size_t i = id.len - sl + 1; i-- > 0;)
        if (memcmp(id.p + i, sep, sl) == 0) {
            rv_str d = {id.p, i};
            return d;
        }
    return id;
}

int rv_emb_matrix_groups(const rv_emb_matrix *m, const char *sep, uint32_t **group_of_row, uint32_t *n_groups,
                         size_t **first_row)
{
    row_table t = {0};
    *group_of_row = NULL;
    *first_row = NULL;
    *n_groups = 0;
    if (row_table_init(&t, m->rows) < 0)
        return -1;
    uint32_t *group = rv_malloc(m->rows ? m->rows * sizeof *group : 1);
    size_t *first = rv_malloc(m->rows ? m->rows * sizeof *first : 1);
    if (!group || !first) {
        free(t.slot);
        free(group);
        free(first);
        return -1;
    }
    uint32_t n = 0;
    for (size_t r = 0; r < m->rows; r++) {
        rv_str doc = rv_doc_id_of(rv_emb_matrix_id(m, r), sep);
        size_t i = str_hash(doc) & t.mask;
        while (t.slot[i]) {
            size_t other = t.slot[i] - 1;
            if (str_eq(rv_doc_id_of(rv_emb_matrix_id(m, other), sep), doc))
                break;
            i = (i + 1) & t.mask;
        }
        if (t.slot[i]) {
            group[r] = group[t.slot[i] - 1];
        } else {
            t.slot[i] = (uint32_t)(r + 1);
            first[n] = r;
            group[r] = n++;
        }
    }
    free(t.slot);
    *group_of_row = group;
    *first_row = first;
    *n_groups = n;
    return 0;
}
