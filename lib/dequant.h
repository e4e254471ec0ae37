/* dequant.h — ggml tensor storage types to float32: F32, F16, BF16, the
 * 32-element block quantisations Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the
 * 256-element K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (the storage types of
 * llama.cpp's model files; Q8_1/Q8_K are activation formats and refused). Block layouts and
 * formulas follow ggml's ggml-common.h / dequantize_row_* (checked against
 * gguf-py's independent NumPy dequantiser by tests/unit/test_dequant.c). */
#ifndef RV_DEQUANT_H
#define RV_DEQUANT_H

#include <stddef.h>
#include <stdint.h>

/* 1 when rv_dequant handles the ggml type (enum rv_ggml_type in gguf.h). */
int rv_dequant_supported(uint32_t ggml_type);

/* Elements per block of the type (1 for float types, 32 or 256 for
 * quantised ones); 0 when unknown. */
size_t rv_dequant_block_size(uint32_t ggml_type);

/* Dequantises n elements (a multiple of the block size) stored at src into
 * dst. src holds rv_ggml_type_bytes(type, n) bytes and may be unaligned.
 * Returns 0, or -1 with an error for an unsupported type or ragged n.
 * Multi-threaded with OpenMP when n is large. */
int rv_dequant(uint32_t ggml_type, const unsigned char *src, uint64_t n, float *dst);

#endif
