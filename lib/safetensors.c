/* safetensors.c — safetensors reader over mmap and an atomic writer (see
 * safetensors.h). */
#include "safetensors.h"
#include "atomic_file.h"
#include "buf.h"
#include "error.h"
#include "half.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20)   /* the Python reader's limit */

static const struct { const char *name; rv_st_dtype t; size_t size; } dtypes[] = {
    {"BOOL", RV_ST_BOOL, 1}, {"U8", RV_ST_U8, 1}, {"I8", RV_ST_I8, 1}, {"I16", RV_ST_I16, 2},
    {"U16", RV_ST_U16, 2}, {"F16", RV_ST_F16, 2}, {"BF16", RV_ST_BF16, 2}, {"I32", RV_ST_I32, 4},
    {"U32", RV_ST_U32, 4}, {"F32", RV_ST_F32, 4}, {"I64", RV_ST_I64, 8}, {"U64", RV_ST_U64, 8},
    {"F64", RV_ST_F64, 8},
};

const char *rv_st_dtype_name(rv_st_dtype t)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].t == t)
            return dtypes[i].name;
    return "?";
}

size_t rv_st_dtype_size(rv_st_dtype t)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].t == t)
            return dtypes[i].size;
    return 0;
}

static int parse_dtype(const char *s, rv_st_dtype *t)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (strcmp(dtypes[i].name, s) == 0) {
            *t = dtypes[i].t;
            return 0;
        }
    return -1;
}

void rv_safetensors_close(rv_safetensors *st)
{
    if (!st)
        return;
    if (st->base)
        munmap((void *)st->base, st->size);
    for (size_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->tensors);
    free(st->path);
    free(st);
}

static int parse_meta(rv_safetensors *st, const rv_json *m)
{
    if (m->type != RV_JSON_OBJECT)
        return rv_error_set("%s: header: __metadata__: expected an object of strings, found %s", st->path,
                            rv_json_type_name(m->type));
    st->meta_keys = rv_calloc(m->len ? m->len : 1, sizeof(char *));
    st->meta_values = rv_calloc(m->len ? m->len : 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values)
        return -1;
    for (size_t i = 0; i < m->len; i++) {
        const rv_json_member *mm = &m->u.members[i];
        if (mm->value->type != RV_JSON_STRING)
            return rv_error_set("%s: header: __metadata__.%s: expected a string, found %s", st->path, mm->key,
                                rv_json_type_name(mm->value->type));
        st->meta_keys[i] = strdup(mm->key);
        st->meta_values[i] = strdup(mm->value->u.string);
        st->n_meta++;
        if (!st->meta_keys[i] || !st->meta_values[i])
            return rv_error_set("out of memory");
    }
    return 0;
}

static int parse_tensor(rv_safetensors *st, const char *name, const rv_json *v, size_t buf_size,
                        rv_st_tensor *t)
{
    const char *p = st->path;
    if (v->type != RV_JSON_OBJECT)
        return rv_error_set("%s: tensor %s: expected an object, found %s", p, name, rv_json_type_name(v->type));
    const rv_json *dt = rv_json_get(v, "dtype"), *sh = rv_json_get(v, "shape"),
                  *off = rv_json_get(v, "data_offsets");
    if (!dt || dt->type != RV_JSON_STRING || parse_dtype(dt->u.string, &t->dtype) < 0)
        return rv_error_set("%s: tensor %s: dtype: expected one of F32, F16, BF16, F64, I/U8..64, BOOL, found %s",
                            p, name, dt && dt->type == RV_JSON_STRING ? dt->u.string : "nothing");
    if (!sh || sh->type != RV_JSON_ARRAY || sh->len > RV_ST_MAX_DIMS)
        return rv_error_set("%s: tensor %s: shape: expected an array of at most %d integers", p, name,
                            RV_ST_MAX_DIMS);
    t->n_dims = (uint32_t)sh->len;
    t->n_elements = 1;
    for (size_t d = 0; d < sh->len; d++) {
        int64_t x;
        if (rv_json_as_int64(&sh->u.items[d], &x) < 0 || x < 0)
            return rv_error_set("%s: tensor %s: shape[%zu]: expected a non-negative integer", p, name, d);
        t->shape[d] = (uint64_t)x;
        if (x && t->n_elements > UINT64_MAX / (uint64_t)x)
            return rv_error_set("%s: tensor %s: shape overflows", p, name);
        t->n_elements *= (uint64_t)x;
    }
    int64_t b, e;
    if (!off || off->type != RV_JSON_ARRAY || off->len != 2 || rv_json_as_int64(&off->u.items[0], &b) < 0 ||
        rv_json_as_int64(&off->u.items[1], &e) < 0)
        return rv_error_set("%s: tensor %s: data_offsets: expected [begin, end]", p, name);
    if (b < 0 || e < b || (uint64_t)e > buf_size)
        return rv_error_set("%s: tensor %s: data_offsets [%lld, %lld] outside the %zu-byte data buffer "
                            "(truncated file?)", p, name, (long long)b, (long long)e, buf_size);
    size_t es = rv_st_dtype_size(t->dtype);
    if (t->n_elements > UINT64_MAX / es || t->n_elements * es != (uint64_t)(e - b))
        return rv_error_set("%s: tensor %s: %s shape holds %llu bytes but data_offsets span %lld", p, name,
                            rv_st_dtype_name(t->dtype), (unsigned long long)(t->n_elements * es),
                            (long long)(e - b));
    t->name = strdup(name);
    if (!t->name)
        return rv_error_set("out of memory");
    t->data = (const unsigned char *)(uintptr_t)b;   /* offset until all are validated */
    t->n_bytes = (size_t)(e - b);
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const rv_st_tensor *x = *(rv_st_tensor *const *)a, *y = *(rv_st_tensor *const *)b;
    uintptr_t u = (uintptr_t)x->data, v = (uintptr_t)y->data;
    return u < v ? -1 : u > v;
}

static int parse(rv_safetensors *st)
{
    if (st->size < 8)
        return rv_error_set("%s: not a safetensors file: %zu bytes, the header length alone needs 8", st->path,
                            st->size);
    uint64_t n = rv_load_u64(st->base);
    if (n > MAX_HEADER || n > st->size - 8)
        return rv_error_set("%s: header length %llu exceeds the file (%zu bytes) or the 100 MiB limit "
                            "(not a safetensors file, or truncated)", st->path, (unsigned long long)n, st->size);
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp)
        return -1;
    int rc = -1;
    const rv_json *root = rv_json_parse(jp, (const char *)st->base + 8, (size_t)n);
    if (!root) {
        rv_error_prefix("%s: header JSON", st->path);
        goto out;
    }
    if (root->type != RV_JSON_OBJECT) {
        rv_error_set("%s: header: expected a JSON object, found %s", st->path, rv_json_type_name(root->type));
        goto out;
    }
    size_t buf_size = st->size - 8 - (size_t)n;
    st->tensors = rv_calloc(root->len ? root->len : 1, sizeof *st->tensors);
    if (!st->tensors)
        goto out;
    for (size_t i = 0; i < root->len; i++) {
        const rv_json_member *m = &root->u.members[i];
        if (strcmp(m->key, "__metadata__") == 0) {
            if (st->meta_keys) {
                rv_error_set("%s: header: __metadata__ appears twice", st->path);
                goto out;
            }
            if (parse_meta(st, m->value) < 0)
                goto out;
            continue;
        }
        for (size_t j = 0; j < st->n_tensors; j++)
            if (strcmp(st->tensors[j].name, m->key) == 0) {
                rv_error_set("%s: header: tensor %s appears twice", st->path, m->key);
                goto out;
            }
        if (parse_tensor(st, m->key, m->value, buf_size, &st->tensors[st->n_tensors]) < 0)
            goto out;
        st->n_tensors++;
    }
    /* no two tensors may share bytes */
    rv_st_tensor **order = rv_calloc(st->n_tensors ? st->n_tensors : 1, sizeof *order);
    if (!order)
        goto out;
    for (size_t i = 0; i < st->n_tensors; i++)
        order[i] = &st->tensors[i];
    qsort(order, st->n_tensors, sizeof *order, cmp_offset);
    for (size_t i = 1; i < st->n_tensors; i++) {
        uintptr_t prev_end = (uintptr_t)order[i - 1]->data + order[i - 1]->n_bytes;
        if ((uintptr_t)order[i]->data < prev_end) {
            rv_error_set("%s: tensors %s and %s overlap in the data buffer", st->path, order[i - 1]->name,
                         order[i]->name);
            free(order);
            goto out;
        }
    }
    free(order);
    for (size_t i = 0; i < st->n_tensors; i++)
        st->tensors[i].data = st->base + 8 + n + (uintptr_t)st->tensors[i].data;
    rc = 0;
out:
    rv_json_parser_free(jp);
    return rc;
}

rv_safetensors *rv_safetensors_open(const char *path)
{
    rv_safetensors *st = rv_calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->path = strdup(path);
    if (!st->path) {
        rv_error_set("out of memory");
        free(st);
        return NULL;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        rv_error_set("%s: cannot open: %s", path, strerror(errno));
        rv_safetensors_close(st);
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rv_error_set("%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        rv_safetensors_close(st);
        return NULL;
    }
    st->size = (size_t)sb.st_size;
    if (st->size) {
        void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rv_error_set("%s: cannot map: %s", path, strerror(errno));
            st->size = 0;
            close(fd);
            rv_safetensors_close(st);
            return NULL;
        }
        st->base = m;
    }
    close(fd);
    if (parse(st) < 0) {
        rv_safetensors_close(st);
        return NULL;
    }
    return st;
}

const rv_st_tensor *rv_safetensors_find(const rv_safetensors *st, const char *name)
{
    for (size_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

const char *rv_safetensors_meta(const rv_safetensors *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_values[i];
    return NULL;
}

int rv_st_tensor_to_f32(const rv_st_tensor *t, float *out)
{
    const unsigned char *p = t->data;
    size_t n = (size_t)t->n_elements;
    switch (t->dtype) {
    case RV_ST_F32:
        for (size_t i = 0; i < n; i++)
            out[i] = rv_bits_f32(rv_load_u32(p + 4 * i));
        return 0;
    case RV_ST_BF16:
        for (size_t i = 0; i < n; i++)
            out[i] = rv_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case RV_ST_F16:
        for (size_t i = 0; i < n; i++)
            out[i] = rv_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case RV_ST_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = rv_load_u64(p + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            out[i] = (float)d;
        }
        return 0;
    default:
        return rv_error_set("tensor %s: expected a floating dtype (F32, F16, BF16, F64), found %s", t->name,
                            rv_st_dtype_name(t->dtype));
    }
}

/* ------------------------------------------------------------------ writer */

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const rv_st_write_tensor *const *)a)->name, (*(const rv_st_write_tensor *const *)b)->name);
}

int rv_safetensors_write(const char *path, const rv_st_write_tensor *t, size_t n, const char *const *meta_kv,
                         size_t n_meta)
{
    rv_buf h = {0};
    size_t *offset = rv_calloc(n ? n : 1, sizeof *offset), *bytes = rv_calloc(n ? n : 1, sizeof *bytes);
    const rv_st_write_tensor **sorted = rv_calloc(n ? n : 1, sizeof *sorted);
    rv_atomic_file af = {0};
    int rc = -1;
    if (!offset || !bytes || !sorted)
        goto out;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cnt = 1;
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            if (rv_size_mul(cnt, (size_t)t[i].shape[d], &cnt, t[i].name) < 0)
                goto out;
        if (rv_size_mul(cnt, rv_st_dtype_size(t[i].dtype), &bytes[i], t[i].name) < 0 ||
            rv_size_add(pos, bytes[i], &pos, t[i].name) < 0)
            goto out;
        offset[i] = pos - bytes[i];
        sorted[i] = &t[i];
    }
    qsort(sorted, n, sizeof *sorted, cmp_name);
    if (rv_buf_putc(&h, '{') < 0)
        goto out;
    int first = 1;
    if (n_meta) {
        if (rv_buf_printf(&h, "\"__metadata__\":{") < 0)
            goto out;
        for (size_t i = 0; i < n_meta; i++)
            if ((i && rv_buf_putc(&h, ',') < 0) ||
                rv_json_put_string(&h, meta_kv[2 * i], strlen(meta_kv[2 * i])) < 0 || rv_buf_putc(&h, ':') < 0 ||
                rv_json_put_string(&h, meta_kv[2 * i + 1], strlen(meta_kv[2 * i + 1])) < 0)
                goto out;
        if (rv_buf_putc(&h, '}') < 0)
            goto out;
        first = 0;
    }
    for (size_t k = 0; k < n; k++) {
        size_t i = (size_t)(sorted[k] - t);
        if ((!first && rv_buf_putc(&h, ',') < 0) || rv_json_put_string(&h, t[i].name, strlen(t[i].name)) < 0 ||
            rv_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", rv_st_dtype_name(t[i].dtype)) < 0)
            goto out;
        first = 0;
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            if (rv_buf_printf(&h, "%s%llu", d ? "," : "", (unsigned long long)t[i].shape[d]) < 0)
                goto out;
        if (rv_buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", offset[i], offset[i] + bytes[i]) < 0)
            goto out;
    }
    if (rv_buf_putc(&h, '}') < 0)
        goto out;
    while (h.len % 8)
        if (rv_buf_putc(&h, ' ') < 0)
            goto out;
    if (rv_atomic_open(&af, path) < 0)
        goto out;
    unsigned char len8[8];
    rv_store_u64(len8, h.len);
    if (fwrite(len8, 1, 8, af.f) != 8 || fwrite(h.data, 1, h.len, af.f) != h.len) {
        rv_error_set("%s: write error: %s", path, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (bytes[i] && fwrite(t[i].data, 1, bytes[i], af.f) != bytes[i]) {
            rv_error_set("%s: write error: %s", path, strerror(errno));
            goto out;
        }
    if (rv_atomic_commit(&af) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        rv_atomic_abort(&af);
    rv_buf_free(&h);
    free(offset);
    free(bytes);
    free(sorted);
    return rc;
}
