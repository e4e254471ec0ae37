/* gguf.h — read-only GGUF (v2/v3) files: memory-mapped, every header field,
 * key/value and tensor extent validated before use. Provides metadata lookup
 * (tokenizer.ggml.*, llama.* hyper-parameters) and tensor descriptors; the
 * dequantisation of tensor data lives with the model loader. Spec:
 * ggml/docs/gguf.md (little-endian). */
#ifndef RV_GGUF_H
#define RV_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum rv_gguf_value_type {
    RV_GGUF_UINT8 = 0, RV_GGUF_INT8 = 1, RV_GGUF_UINT16 = 2, RV_GGUF_INT16 = 3,
    RV_GGUF_UINT32 = 4, RV_GGUF_INT32 = 5, RV_GGUF_FLOAT32 = 6, RV_GGUF_BOOL = 7,
    RV_GGUF_STRING = 8, RV_GGUF_ARRAY = 9, RV_GGUF_UINT64 = 10, RV_GGUF_INT64 = 11,
    RV_GGUF_FLOAT64 = 12
};

/* ggml tensor types this reader knows the storage size of. */
enum rv_ggml_type {
    RV_GGML_F32 = 0, RV_GGML_F16 = 1, RV_GGML_Q4_0 = 2, RV_GGML_Q4_1 = 3,
    RV_GGML_Q5_0 = 6, RV_GGML_Q5_1 = 7, RV_GGML_Q8_0 = 8, RV_GGML_Q8_1 = 9,
    RV_GGML_Q2_K = 10, RV_GGML_Q3_K = 11, RV_GGML_Q4_K = 12, RV_GGML_Q5_K = 13,
    RV_GGML_Q6_K = 14, RV_GGML_Q8_K = 15, RV_GGML_BF16 = 30
};

typedef struct {
    const char *key;              /* points into the file: NOT NUL-terminated */
    size_t key_len;
    uint32_t type;                /* enum rv_gguf_value_type */
    uint32_t elem_type;           /* arrays: element type */
    uint64_t n;                   /* arrays: element count; strings: byte length */
    const unsigned char *value;   /* scalars: the value; strings: the bytes; arrays: first element */
} rv_gguf_kv;

typedef struct {
    const char *name;             /* NOT NUL-terminated */
    size_t name_len;
    uint32_t n_dims;
    uint64_t dims[4];             /* ggml order: dims[0] is the contiguous (fastest) axis */
    uint32_t type;                /* enum rv_ggml_type */
    uint64_t n_elements;
    const unsigned char *data;    /* inside the mapping */
    size_t n_bytes;
} rv_gguf_tensor;

typedef struct {
    char *path;
    const unsigned char *base;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    rv_gguf_kv *kv;
    rv_gguf_tensor *tensors;
    uint64_t alignment;
} rv_gguf;

/* Maps and validates the file; NULL with "PATH: field: …" on error. */
rv_gguf *rv_gguf_open(const char *path);
void rv_gguf_close(rv_gguf *g);

const rv_gguf_kv *rv_gguf_find(const rv_gguf *g, const char *key);
/* Typed getters: -1 with an error naming the key when absent or of the wrong
 * type. Integers of any width/sign convert when the value fits. */
int rv_gguf_get_u64(const rv_gguf *g, const char *key, uint64_t *out);
int rv_gguf_get_f64(const rv_gguf *g, const char *key, double *out);   /* f32/f64 */
int rv_gguf_get_string(const rv_gguf *g, const char *key, const char **s, size_t *len);
/* Arrays of scalars: element type, count and a pointer to the packed values. */
int rv_gguf_get_array(const rv_gguf *g, const char *key, uint32_t *elem_type, uint64_t *n,
                      const unsigned char **data);
/* Arrays of strings: *strs and *lens are malloc'ed arrays (free both) of
 * pointers into the mapping and byte lengths. */
int rv_gguf_get_string_array(const rv_gguf *g, const char *key, uint64_t *n,
                             const char ***strs, size_t **lens);

const rv_gguf_tensor *rv_gguf_find_tensor(const rv_gguf *g, const char *name);

/* Bytes used by n elements of a ggml type (n must be a multiple of the block
 * size for quantised types); 0 for unknown types or a ragged count. */
size_t rv_ggml_type_bytes(uint32_t type, uint64_t n);
const char *rv_ggml_type_name(uint32_t type);

#endif
