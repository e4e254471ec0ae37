/* gguf.c — GGUF container parsing over mmap (see gguf.h). */
#define _POSIX_C_SOURCE 200809L
#include "gguf.h"
#include "buf.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const rv_gguf *g;
    size_t pos;
} cursor;

static int need(cursor *c, uint64_t n, const char *what)
{
    if (n > c->g->size - c->pos)
        return rv_error_set("%s: %s: needs %llu bytes at offset %zu, file has %zu (truncated?)",
                            c->g->path, what, (unsigned long long)n, c->pos, c->g->size);
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what)
{
    if (need(c, 4, what) < 0)
        return -1;
    *v = rv_load_u32(c->g->base + c->pos);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what)
{
    if (need(c, 8, what) < 0)
        return -1;
    *v = rv_load_u64(c->g->base + c->pos);
    c->pos += 8;
    return 0;
}

static int rd_string(cursor *c, const char **s, uint64_t *len, const char *what)
{
    if (rd_u64(c, len, what) < 0 || need(c, *len, what) < 0)
        return -1;
    *s = (const char *)c->g->base + c->pos;
    c->pos += (size_t)*len;
    return 0;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case RV_GGUF_UINT8: case RV_GGUF_INT8: case RV_GGUF_BOOL: return 1;
    case RV_GGUF_UINT16: case RV_GGUF_INT16: return 2;
    case RV_GGUF_UINT32: case RV_GGUF_INT32: case RV_GGUF_FLOAT32: return 4;
    case RV_GGUF_UINT64: case RV_GGUF_INT64: case RV_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Skips over one value of type t, recording where it lies. */
static int rd_value(cursor *c, uint32_t t, rv_gguf_kv *kv, int depth)
{
    if (t == RV_GGUF_STRING) {
        const char *s;
        uint64_t n;
        if (rd_string(c, &s, &n, "string value") < 0)
            return -1;
        if (kv) { kv->value = (const unsigned char *)s; kv->n = n; }
        return 0;
    }
    if (t == RV_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (depth > 0)
            return rv_error_set("%s: nested arrays are not supported", c->g->path);
        if (rd_u32(c, &et, "array type") < 0 || rd_u64(c, &n, "array length") < 0)
            return -1;
        if (kv) { kv->elem_type = et; kv->n = n; kv->value = c->g->base + c->pos; }
        size_t es = scalar_size(et);
        if (es) {
            uint64_t bytes;
            if (n > UINT64_MAX / es)
                return rv_error_set("%s: array length %llu overflows", c->g->path, (unsigned long long)n);
            bytes = n * es;
            if (need(c, bytes, "array data") < 0)
                return -1;
            c->pos += (size_t)bytes;
            return 0;
        }
        if (et != RV_GGUF_STRING)
            return rv_error_set("%s: array element type %u is not supported", c->g->path, et);
        for (uint64_t i = 0; i < n; i++)
            if (rd_value(c, et, NULL, depth + 1) < 0)
                return -1;
        return 0;
    }
    size_t s = scalar_size(t);
    if (!s)
        return rv_error_set("%s: unknown value type %u", c->g->path, t);
    if (need(c, s, "scalar value") < 0)
        return -1;
    if (kv)
        kv->value = c->g->base + c->pos;
    c->pos += s;
    return 0;
}

size_t rv_ggml_type_bytes(uint32_t type, uint64_t n)
{
    uint64_t block, bytes;
    switch (type) {
    case RV_GGML_F32: block = 1; bytes = 4; break;
    case RV_GGML_F16: case RV_GGML_BF16: block = 1; bytes = 2; break;
    case RV_GGML_Q4_0: block = 32; bytes = 18; break;
    case RV_GGML_Q4_1: block = 32; bytes = 20; break;
    case RV_GGML_Q5_0: block = 32; bytes = 22; break;
    case RV_GGML_Q5_1: block = 32; bytes = 24; break;
    case RV_GGML_Q8_0: block = 32; bytes = 34; break;
    case RV_GGML_Q8_1: block = 32; bytes = 36; break;
    case RV_GGML_Q2_K: block = 256; bytes = 84; break;
    case RV_GGML_Q3_K: block = 256; bytes = 110; break;
    case RV_GGML_Q4_K: block = 256; bytes = 144; break;
    case RV_GGML_Q5_K: block = 256; bytes = 176; break;
    case RV_GGML_Q6_K: block = 256; bytes = 210; break;
    case RV_GGML_Q8_K: block = 256; bytes = 292; break;
    default: return 0;
    }
    if (n % block || n / block > SIZE_MAX / bytes)
        return 0;
    return (size_t)(n / block * bytes);
}

const char *rv_ggml_type_name(uint32_t type)
{
    switch (type) {
    case RV_GGML_F32: return "F32"; case RV_GGML_F16: return "F16"; case RV_GGML_BF16: return "BF16";
    case RV_GGML_Q4_0: return "Q4_0"; case RV_GGML_Q4_1: return "Q4_1"; case RV_GGML_Q5_0: return "Q5_0";
    case RV_GGML_Q5_1: return "Q5_1"; case RV_GGML_Q8_0: return "Q8_0"; case RV_GGML_Q8_1: return "Q8_1";
    case RV_GGML_Q2_K: return "Q2_K"; case RV_GGML_Q3_K: return "Q3_K"; case RV_GGML_Q4_K: return "Q4_K";
    case RV_GGML_Q5_K: return "Q5_K"; case RV_GGML_Q6_K: return "Q6_K"; case RV_GGML_Q8_K: return "Q8_K";
    default: return "unknown";
    }
}

static int parse(rv_gguf *g)
{
    cursor c = {g, 0};
    uint32_t magic;
    if (rd_u32(&c, &magic, "magic") < 0)
        return -1;
    if (memcmp(g->base, "GGUF", 4) != 0)
        return rv_error_set("%s: not a GGUF file (expected magic \"GGUF\")", g->path);
    if (rd_u32(&c, &g->version, "version") < 0)
        return -1;
    if (g->version != 2 && g->version != 3)
        return rv_error_set("%s: version: expected 2 or 3, found %u", g->path, g->version);
    if (rd_u64(&c, &g->n_tensors, "tensor_count") < 0 || rd_u64(&c, &g->n_kv, "metadata_kv_count") < 0)
        return -1;
    /* every kv needs at least 12 bytes and every tensor 24: bound the counts by the file size */
    if (g->n_kv > g->size / 12 || g->n_tensors > g->size / 24)
        return rv_error_set("%s: header counts (kv %llu, tensors %llu) exceed what the file can hold",
                            g->path, (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
    g->kv = rv_calloc((size_t)g->n_kv, sizeof *g->kv);
    g->tensors = rv_calloc((size_t)g->n_tensors, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return -1;
    g->alignment = 32;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        rv_gguf_kv *kv = &g->kv[i];
        uint64_t kl;
        if (rd_string(&c, &kv->key, &kl, "metadata key") < 0 || rd_u32(&c, &kv->type, "metadata type") < 0)
            return rv_error_prefix("metadata[%llu]", (unsigned long long)i);
        kv->key_len = (size_t)kl;
        if (rd_value(&c, kv->type, kv, 0) < 0)
            return rv_error_prefix("metadata %.*s", (int)kv->key_len, kv->key);
        if (kv->key_len == 17 && memcmp(kv->key, "general.alignment", 17) == 0) {
            if (kv->type != RV_GGUF_UINT32)
                return rv_error_set("%s: general.alignment: expected uint32", g->path);
            g->alignment = rv_load_u32(kv->value);
            if (g->alignment == 0 || (g->alignment & (g->alignment - 1)))
                return rv_error_set("%s: general.alignment: expected a power of two, found %llu", g->path,
                                    (unsigned long long)g->alignment);
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rv_gguf_tensor *t = &g->tensors[i];
        uint64_t nl, off;
        if (rd_string(&c, &t->name, &nl, "tensor name") < 0 || rd_u32(&c, &t->n_dims, "tensor n_dims") < 0)
            return rv_error_prefix("tensor[%llu]", (unsigned long long)i);
        t->name_len = (size_t)nl;
        if (t->n_dims < 1 || t->n_dims > 4)
            return rv_error_set("%s: tensor %.*s: n_dims: expected 1..4, found %u", g->path, (int)t->name_len,
                                t->name, t->n_dims);
        t->n_elements = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd_u64(&c, &t->dims[d], "tensor dims") < 0)
                return -1;
            if (t->dims[d] == 0 || t->n_elements > UINT64_MAX / t->dims[d])
                return rv_error_set("%s: tensor %.*s: bad dimension", g->path, (int)t->name_len, t->name);
            t->n_elements *= t->dims[d];
        }
        for (uint32_t d = t->n_dims; d < 4; d++)
            t->dims[d] = 1;
        if (rd_u32(&c, &t->type, "tensor type") < 0 || rd_u64(&c, &off, "tensor offset") < 0)
            return -1;
        t->n_bytes = rv_ggml_type_bytes(t->type, t->n_elements);
        if (!t->n_bytes)
            return rv_error_set("%s: tensor %.*s: type %u (%s) unsupported or element count %llu not a whole "
                                "number of blocks", g->path, (int)t->name_len, t->name, t->type,
                                rv_ggml_type_name(t->type), (unsigned long long)t->n_elements);
        t->data = (const unsigned char *)(uintptr_t)off; /* offset for now; fixed below */
    }
    size_t data_start = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data_start > g->size)
        return rv_error_set("%s: truncated before the tensor data", g->path);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rv_gguf_tensor *t = &g->tensors[i];
        uint64_t off = (uint64_t)(uintptr_t)t->data;
        if (off % g->alignment)
            return rv_error_set("%s: tensor %.*s: offset %llu not aligned to %llu", g->path, (int)t->name_len,
                                t->name, (unsigned long long)off, (unsigned long long)g->alignment);
        if (off > g->size - data_start || t->n_bytes > g->size - data_start - off)
            return rv_error_set("%s: tensor %.*s: data [%llu, +%zu) lies outside the file (truncated?)", g->path,
                                (int)t->name_len, t->name, (unsigned long long)off, t->n_bytes);
        t->data = g->base + data_start + off;
    }
    return 0;
}

rv_gguf *rv_gguf_open(const char *path)
{
    rv_gguf *g = rv_calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->path = strdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        rv_error_set("%s: cannot open: %s", path, strerror(errno));
        rv_gguf_close(g);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 24) {
        rv_error_set("%s: not a GGUF file (too short)", path);
        close(fd);
        rv_gguf_close(g);
        return NULL;
    }
    g->size = (size_t)st.st_size;
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        rv_error_set("%s: cannot map: %s", path, strerror(errno));
        g->size = 0;
        rv_gguf_close(g);
        return NULL;
    }
    g->base = m;
    if (parse(g) < 0) {
        rv_gguf_close(g);
        return NULL;
    }
    return g;
}

void rv_gguf_close(rv_gguf *g)
{
    if (!g)
        return;
    if (g->base)
        munmap((void *)g->base, g->size);
    free(g->kv);
    free(g->tensors);
    free(g->path);
    free(g);
}

const rv_gguf_kv *rv_gguf_find(const rv_gguf *g, const char *key)
{
    size_t n = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && memcmp(g->kv[i].key, key, n) == 0)
            return &g->kv[i];
    return NULL;
}

static const rv_gguf_kv *find_typed(const rv_gguf *g, const char *key)
{
    const rv_gguf_kv *kv = rv_gguf_find(g, key);
    if (!kv)
        rv_error_set("%s: metadata key %s: not found", g->path, key);
    return kv;
}

int rv_gguf_get_u64(const rv_gguf *g, const char *key, uint64_t *out)
{
    const rv_gguf_kv *kv = find_typed(g, key);
    if (!kv)
        return -1;
    const unsigned char *p = kv->value;
    int64_t s;
    switch (kv->type) {
    case RV_GGUF_UINT8: case RV_GGUF_BOOL: *out = p[0]; return 0;
    case RV_GGUF_UINT16: *out = (uint64_t)(p[0] | p[1] << 8); return 0;
    case RV_GGUF_UINT32: *out = rv_load_u32(p); return 0;
    case RV_GGUF_UINT64: *out = rv_load_u64(p); return 0;
    case RV_GGUF_INT8: s = (int8_t)p[0]; break;
    case RV_GGUF_INT16: s = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case RV_GGUF_INT32: s = (int32_t)rv_load_u32(p); break;
    case RV_GGUF_INT64: s = (int64_t)rv_load_u64(p); break;
    default: return rv_error_set("%s: metadata key %s: expected an integer", g->path, key);
    }
    if (s < 0)
        return rv_error_set("%s: metadata key %s: expected a non-negative integer, found %lld", g->path, key,
                            (long long)s);
    *out = (uint64_t)s;
    return 0;
}

int rv_gguf_get_f64(const rv_gguf *g, const char *key, double *out)
{
    const rv_gguf_kv *kv = find_typed(g, key);
    if (!kv)
        return -1;
    if (kv->type == RV_GGUF_FLOAT32) {
        uint32_t u = rv_load_u32(kv->value);
        float f;
        memcpy(&f, &u, 4);
        *out = f;
        return 0;
    }
    if (kv->type == RV_GGUF_FLOAT64) {
        uint64_t u = rv_load_u64(kv->value);
        memcpy(out, &u, 8);
        return 0;
    }
    return rv_error_set("%s: metadata key %s: expected a float", g->path, key);
}

int rv_gguf_get_string(const rv_gguf *g, const char *key, const char **s, size_t *len)
{
    const rv_gguf_kv *kv = find_typed(g, key);
    if (!kv)
        return -1;
    if (kv->type != RV_GGUF_STRING)
        return rv_error_set("%s: metadata key %s: expected a string", g->path, key);
    *s = (const char *)kv->value;
    *len = (size_t)kv->n;
    return 0;
}

int rv_gguf_get_array(const rv_gguf *g, const char *key, uint32_t *elem_type, uint64_t *n,
                      const unsigned char **data)
{
    const rv_gguf_kv *kv = find_typed(g, key);
    if (!kv)
        return -1;
    if (kv->type != RV_GGUF_ARRAY)
        return rv_error_set("%s: metadata key %s: expected an array", g->path, key);
    *elem_type = kv->elem_type;
    *n = kv->n;
    *data = kv->value;
    return 0;
}

int rv_gguf_get_string_array(const rv_gguf *g, const char *key, uint64_t *n, const char ***strs, size_t **lens)
{
    const rv_gguf_kv *kv = find_typed(g, key);
    if (!kv)
        return -1;
    if (kv->type != RV_GGUF_ARRAY || kv->elem_type != RV_GGUF_STRING)
        return rv_error_set("%s: metadata key %s: expected an array of strings", g->path, key);
    const char **s = rv_calloc((size_t)kv->n, sizeof *s);
    size_t *l = rv_calloc((size_t)kv->n, sizeof *l);
    if (!s || !l) {
        free(s);
        free(l);
        return -1;
    }
    /* already bounds-checked while parsing */
    const unsigned char *p = kv->value;
    for (uint64_t i = 0; i < kv->n; i++) {
        uint64_t len = rv_load_u64(p);
        s[i] = (const char *)p + 8;
        l[i] = (size_t)len;
        p += 8 + len;
    }
    *n = kv->n;
    *strs = s;
    *lens = l;
    return 0;
}

const rv_gguf_tensor *rv_gguf_find_tensor(const rv_gguf *g, const char *name)
{
    size_t n = strlen(name);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name_len == n && memcmp(g->tensors[i].name, name, n) == 0)
            return &g->tensors[i];
    return NULL;
}
