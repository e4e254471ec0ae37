/* npy.c — NumPy .npy reader for 2-D float matrices (see npy.h). */
#include "npy.h"

#include "buf.h"
#include "error.h"
#include "half.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

const char *rv_npy_dtype_name(rv_npy_dtype t)
{
    return t == RV_NPY_F16 ? "<f2" : t == RV_NPY_F32 ? "<f4" : "<f8";
}

/* ------------------------------------------------------------ header dict */

typedef struct {
    const char *p, *end;
    const char *name;
} dict_cursor;

/* Describes what is at the cursor for "found ..." in messages. */
static const char *found_text(const dict_cursor *c, char *out, size_t cap)
{
    if (c->p >= c->end)
        return "the end of the header";
    size_t n = 0;
    out[n++] = '"';
    for (const char *q = c->p; q < c->end && n + 5 < cap && q - c->p < 24; q++)
        out[n++] = (*q >= 0x20 && *q < 0x7f) ? *q : '?';
    out[n++] = '"';
    out[n] = 0;
    return out;
}

static int dict_fail(const dict_cursor *c, const char *expected)
{
    char tmp[40];
    return rv_error_set("%s: npy header: expected %s, found %s", c->name, expected, found_text(c, tmp, sizeof tmp));
}

static void skip_space(dict_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int expect_char(dict_cursor *c, char ch, const char *what)
{
    skip_space(c);
    if (c->p >= c->end || *c->p != ch)
        return dict_fail(c, what);
    c->p++;
    return 0;
}

/* A quoted string without escapes: sets *s and *n to its contents. */
static int parse_string(dict_cursor *c, const char **s, size_t *n, const char *what)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return dict_fail(c, what);
    char q = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == '\n')
            return dict_fail(c, "a plain quoted string");
        c->p++;
    }
    if (c->p >= c->end)
        return dict_fail(c, "a closing quote");
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return 0;
}

static int parse_uint(dict_cursor *c, uint64_t *out)
{
    skip_space(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return dict_fail(c, "a non-negative integer in shape");
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return dict_fail(c, "a dimension below 2^64");
        v = v * 10 + d;
        c->p++;
    }
    if (c->p < c->end && *c->p == 'L')     /* Python 2 long suffix */
        c->p++;
    *out = v;
    return 0;
}

static int parse_descr(dict_cursor *c, rv_npy_info *info)
{
    skip_space(c);
    if (c->p < c->end && *c->p == '[')
        return rv_error_set("%s: npy header: descr: structured dtypes are not supported; expected '<f4', '<f2' or '<f8'",
                            c->name);
    const char *s;
    size_t n;
    if (parse_string(c, &s, &n, "a dtype string for 'descr'") < 0)
        return -1;
    if (n == 3 && s[0] == '<' && s[1] == 'f' && (s[2] == '2' || s[2] == '4' || s[2] == '8')) {
        info->dtype = s[2] == '2' ? RV_NPY_F16 : s[2] == '4' ? RV_NPY_F32 : RV_NPY_F64;
        info->item_size = (size_t)(s[2] - '0');
        return 0;
    }
    if (n == 3 && s[0] == '>' && s[1] == 'f')
        return rv_error_set("%s: npy header: descr: expected little-endian '<f4', '<f2' or '<f8', found big-endian "
                            "'%.*s'\nHINT: save with arr.astype('<f4')",
                            c->name, (int)n, s);
    return rv_error_set("%s: npy header: descr: expected '<f4', '<f2' or '<f8', found '%.*s'", c->name,
                        (int)(n > 32 ? 32 : n), s);
}

static int parse_bool(dict_cursor *c, int *out)
{
    skip_space(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *out = 1;
        return 0;
    }
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *out = 0;
        return 0;
    }
    return dict_fail(c, "True or False for 'fortran_order'");
}

/* "(a, b)" — counts every dimension so that the rank can be reported. */
static int parse_shape(dict_cursor *c, rv_npy_info *info)
{
    if (expect_char(c, '(', "a tuple for 'shape'") < 0)
        return -1;
    uint64_t dims[2] = {0, 0};
    size_t rank = 0;
    skip_space(c);
    while (c->p < c->end && *c->p != ')') {
        uint64_t v = 0;
        if (parse_uint(c, &v) < 0)
            return -1;
        if (rank < 2)
            dims[rank] = v;
        rank++;
        skip_space(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            skip_space(c);
        } else if (c->p < c->end && *c->p != ')') {
            return dict_fail(c, "',' or ')' in shape");
        }
    }
    if (expect_char(c, ')', "')' closing shape") < 0)
        return -1;
    if (rank != 2)
        return rv_error_set("%s: npy header: shape: expected a 2-D array (rows, dim), found %zu dimension%s",
                            c->name, rank, rank == 1 ? "" : "s");
    info->rows = dims[0];
    info->cols = dims[1];
    return 0;
}

static int parse_dict(dict_cursor *c, rv_npy_info *info)
{
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    if (expect_char(c, '{', "'{' opening the header dict") < 0)
        return -1;
    for (;;) {
        skip_space(c);
        if (c->p < c->end && *c->p == '}')
            break;
        const char *key;
        size_t kn;
        if (parse_string(c, &key, &kn, "a quoted key or '}'") < 0 || expect_char(c, ':', "':' after a key") < 0)
            return -1;
        int *seen;
        int rc;
        if (kn == 5 && memcmp(key, "descr", 5) == 0) {
            seen = &have_descr;
            rc = parse_descr(c, info);
        } else if (kn == 13 && memcmp(key, "fortran_order", 13) == 0) {
            seen = &have_order;
            rc = parse_bool(c, &fortran);
        } else if (kn == 5 && memcmp(key, "shape", 5) == 0) {
            seen = &have_shape;
            rc = parse_shape(c, info);
        } else {
            return rv_error_set("%s: npy header: expected the keys 'descr', 'fortran_order' and 'shape', found '%.*s'",
                                c->name, (int)(kn > 32 ? 32 : kn), key);
        }
        if (rc < 0)
            return -1;
        if (*seen)
            return rv_error_set("%s: npy header: key '%.*s' appears twice", c->name, (int)kn, key);
        *seen = 1;
        skip_space(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        skip_space(c);
        if (c->p >= c->end || *c->p != '}')
            return dict_fail(c, "',' or '}' after a value");
    }
    c->p++; /* '}' */
    skip_space(c);
    if (c->p != c->end)
        return dict_fail(c, "only spaces and a newline after the header dict");
    if (!have_descr || !have_order || !have_shape)
        return rv_error_set("%s: npy header: missing key '%s'", c->name,
                            !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    if (fortran && info->rows > 1 && info->cols > 1)
        return rv_error_set("%s: npy header: expected C order (fortran_order False), found Fortran order\n"
                            "HINT: save np.ascontiguousarray(arr)",
                            c->name);
    return 0;
}

/* --------------------------------------------------------------- preamble */

/* Bytes before the header dict, and the dict's length, from the preamble. */
static int parse_preamble(const unsigned char *buf, size_t len, const char *name, size_t *pre, size_t *hlen)
{
    if (memcmp(buf, npy_magic, len < 6 ? len : 6) != 0)
        return rv_error_set("%s: expected an .npy file (magic \\x93NUMPY), found other bytes", name);
    if (len < 10)
        return rv_error_set("%s: truncated .npy file: expected at least 10 bytes of preamble, found %zu", name, len);
    unsigned major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return rv_error_set("%s: npy format version: expected 1.0, 2.0 or 3.0, found %u.%u", name, major, minor);
    *pre = major == 1 ? 10 : 12;
    if (len < *pre)
        return rv_error_set("%s: truncated .npy file: expected a %zu-byte preamble, found %zu bytes", name, *pre, len);
    *hlen = major == 1 ? (size_t)(buf[8] | buf[9] << 8) : (size_t)rv_load_u32(buf + 8);
    if (*hlen > RV_NPY_MAX_HEADER)
        return rv_error_set("%s: npy header length: expected at most %u bytes, found %zu", name, RV_NPY_MAX_HEADER,
                            *hlen);
    return 0;
}

static int finish_info(const char *name, rv_npy_info *info)
{
    size_t elems, bytes;
    if (info->rows > SIZE_MAX || info->cols > SIZE_MAX ||
        rv_size_mul((size_t)info->rows, (size_t)info->cols, &elems, "npy shape") < 0 ||
        rv_size_mul(elems, info->item_size, &bytes, "npy data size") < 0)
        return rv_error_prefix("%s", name);
    info->data_bytes = bytes;
    return 0;
}

int rv_npy_parse_header(const unsigned char *buf, size_t len, const char *name, rv_npy_info *info)
{
    size_t pre, hlen;
    memset(info, 0, sizeof *info);
    if (parse_preamble(buf, len, name, &pre, &hlen) < 0)
        return -1;
    if (len - pre < hlen)
        return rv_error_set("%s: truncated .npy file: header declares %zu bytes, found %zu", name, hlen, len - pre);
    dict_cursor c = {(const char *)buf + pre, (const char *)buf + pre + hlen, name};
    if (parse_dict(&c, info) < 0)
        return -1;
    info->data_offset = pre + hlen;
    return finish_info(name, info);
}

int rv_npy_read_header(FILE *f, const char *name, rv_npy_info *info)
{
    unsigned char pre_buf[12];
    size_t got = fread(pre_buf, 1, sizeof pre_buf, f);
    if (got < sizeof pre_buf && ferror(f))
        return rv_error_set("%s: read error: %s", name, strerror(errno));
    size_t pre, hlen;
    if (parse_preamble(pre_buf, got, name, &pre, &hlen) < 0)
        return -1;
    size_t total = pre + hlen;
    unsigned char *buf = rv_malloc(total ? total : 1);
    if (!buf)
        return -1;
    memcpy(buf, pre_buf, got < total ? got : total);
    size_t have = got < total ? got : total;
    if (total > have) {
        have += fread(buf + have, 1, total - have, f);
        if (have < total && ferror(f)) {
            free(buf);
            return rv_error_set("%s: read error: %s", name, strerror(errno));
        }
    }
    int rc = rv_npy_parse_header(buf, have, name, info);
    free(buf);
    /* A version 1 preamble is 10 bytes, so pre_buf may hold 2 header bytes:
     * they were copied into buf above. A valid header is never shorter. */
    if (rc == 0 && got > total)
        return rv_error_set("%s: npy header: expected at least 2 bytes, found %zu", name, total - 10);
    return rc;
}

/* ------------------------------------------------------------------ data */

static int read_exact(FILE *f, const char *name, void *out, size_t bytes)
{
    size_t got = fread(out, 1, bytes, f);
    if (got == bytes)
        return 0;
    if (ferror(f))
        return rv_error_set("%s: read error: %s", name, strerror(errno));
    return rv_error_set("%s: truncated .npy file: expected %zu more bytes of data, found %zu", name, bytes, got);
}

enum { CONVERT_ROWS_BYTES = 1 << 20 };   /* staging buffer for conversion */

int rv_npy_read_f32(FILE *f, const char *name, const rv_npy_info *info, uint64_t n_rows, float *out)
{
    size_t n;
    if (n_rows > SIZE_MAX || rv_size_mul((size_t)n_rows, (size_t)info->cols, &n, "npy rows") < 0)
        return rv_error_prefix("%s", name);
    if (info->dtype == RV_NPY_F32) {
        size_t bytes;
        if (rv_size_mul(n, 4, &bytes, "npy rows") < 0 || read_exact(f, name, out, bytes) < 0)
            return -1;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        for (size_t i = 0; i < n; i++)
            out[i] = rv_bits_f32(rv_load_u32((const unsigned char *)&out[i]));
#endif
        return 0;
    }
    unsigned char *stage = rv_malloc(CONVERT_ROWS_BYTES);
    if (!stage)
        return -1;
    size_t per = CONVERT_ROWS_BYTES / info->item_size, done = 0;
    int rc = 0;
    while (done < n && rc == 0) {
        size_t m = n - done < per ? n - done : per;
        rc = read_exact(f, name, stage, m * info->item_size);
        for (size_t i = 0; rc == 0 && i < m; i++) {
            if (info->dtype == RV_NPY_F16) {
                out[done + i] = rv_f16_to_f32((uint16_t)(stage[2 * i] | stage[2 * i + 1] << 8));
            } else {
                uint64_t bits = rv_load_u64(stage + 8 * i);
                double d;
                memcpy(&d, &bits, 8);
                out[done + i] = (float)d;
            }
        }
        done += m;
    }
    free(stage);
    return rc;
}

int rv_npy_read_f16(FILE *f, const char *name, const rv_npy_info *info, uint64_t n_rows, uint16_t *out)
{
    size_t n, bytes;
    if (info->dtype != RV_NPY_F16)
        return rv_error_set("%s: expected float16 data, found %s", name, rv_npy_dtype_name(info->dtype));
    if (n_rows > SIZE_MAX || rv_size_mul((size_t)n_rows, (size_t)info->cols, &n, "npy rows") < 0 ||
        rv_size_mul(n, 2, &bytes, "npy rows") < 0)
        return rv_error_prefix("%s", name);
    if (read_exact(f, name, out, bytes) < 0)
        return -1;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        const unsigned char *b = (const unsigned char *)&out[i];
        out[i] = (uint16_t)(b[0] | b[1] << 8);
    }
#endif
    return 0;
}

int rv_npy_expect_end(FILE *f, const char *name)
{
    int ch = fgetc(f);
    if (ch == EOF) {
        if (ferror(f))
            return rv_error_set("%s: read error: %s", name, strerror(errno));
        return 0;
    }
    return rv_error_set("%s: expected the end of the .npy file after rows*cols values, found more bytes", name);
}
