/* safetensors.h — read-only safetensors files (memory-mapped; header JSON,
 * dtypes, shapes and every tensor's byte extent validated before use) and a
 * small writer. Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 * "__metadata__": {str: str}}, then the byte buffer the offsets index.
 * Spec: huggingface/safetensors README (see anchors.md §5). */
#ifndef RV_SAFETENSORS_H
#define RV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RV_ST_BOOL, RV_ST_U8, RV_ST_I8, RV_ST_I16, RV_ST_U16, RV_ST_F16, RV_ST_BF16, RV_ST_I32, RV_ST_U32,
    RV_ST_F32, RV_ST_I64, RV_ST_U64, RV_ST_F64
} rv_st_dtype;

#define RV_ST_MAX_DIMS 8

typedef struct {
    char *name;                   /* NUL-terminated copy */
    rv_st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[RV_ST_MAX_DIMS];
    uint64_t n_elements;
    const unsigned char *data;    /* inside the mapping; not necessarily aligned */
    size_t n_bytes;
} rv_st_tensor;

typedef struct {
    char *path;
    const unsigned char *base;
    size_t size;
    size_t n_tensors;
    rv_st_tensor *tensors;        /* in header order */
    size_t n_meta;
    char **meta_keys, **meta_values;
} rv_safetensors;

/* Maps and validates PATH; NULL with "PATH: …" on error. */
rv_safetensors *rv_safetensors_open(const char *path);
void rv_safetensors_close(rv_safetensors *st);

const rv_st_tensor *rv_safetensors_find(const rv_safetensors *st, const char *name);
/* "__metadata__" value for key, or NULL. */
const char *rv_safetensors_meta(const rv_safetensors *st, const char *key);

const char *rv_st_dtype_name(rv_st_dtype t);
size_t rv_st_dtype_size(rv_st_dtype t);

/* Converts a floating tensor (F32, F16, BF16, F64) to n_elements floats. */
int rv_st_tensor_to_f32(const rv_st_tensor *t, float *out);

/* --- writer --- */
typedef struct {
    const char *name;
    rv_st_dtype dtype;
    uint32_t n_dims;
    const uint64_t *shape;
    const void *data;             /* n_elements * dtype size bytes, little-endian */
} rv_st_write_tensor;

/* Writes PATH atomically (PATH.part, then rename). Tensors keep the given
 * order in the buffer; the header lists them sorted by name (as the Python
 * writer does) and is padded with spaces to a multiple of 8 bytes. meta is
 * n_meta key/value string pairs for "__metadata__" (may be 0). */
int rv_safetensors_write(const char *path, const rv_st_write_tensor *t, size_t n,
                         const char *const *meta_kv, size_t n_meta);

#endif
