/* dequant.c — ggml block formats to float32 (see dequant.h). Each block
 * function reads one block from unaligned little-endian bytes and writes its
 * elements; rv_dequant runs them over a tensor, split across threads. */
#include "dequant.h"
#include "buf.h"
#include "error.h"
#include "gguf.h"
#include "half.h"

#include <string.h>

static inline float half_at(const unsigned char *p) { return rv_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Q4_0: f16 d, 16 bytes of nibbles; x = (q - 8) d. Low nibbles are elements
 * 0..15, high nibbles 16..31. */
static void block_q4_0(const unsigned char *b, float *y)
{
    float d = half_at(b);
    const unsigned char *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: f16 d, f16 m, nibbles; x = q d + m. */
static void block_q4_1(const unsigned char *b, float *y)
{
    float d = half_at(b), m = half_at(b + 2);
    const unsigned char *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0x0f) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5_0: f16 d, u32 high bits, nibbles; x = (q | h<<4) - 16, times d. */
static void block_q5_0(const unsigned char *b, float *y)
{
    float d = half_at(b);
    uint32_t qh = rv_load_u32(b + 2);
    const unsigned char *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
        y[j] = (float)(((qs[j] & 0x0f) | h0) - 16) * d;
        y[j + 16] = (float)(((qs[j] >> 4) | h1) - 16) * d;
    }
}

/* Q5_1: f16 d, f16 m, u32 high bits, nibbles; x = (q | h<<4) d + m. */
static void block_q5_1(const unsigned char *b, float *y)
{
    float d = half_at(b), m = half_at(b + 2);
    uint32_t qh = rv_load_u32(b + 4);
    const unsigned char *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
        y[j] = (float)((qs[j] & 0x0f) | h0) * d + m;
        y[j + 16] = (float)((qs[j] >> 4) | h1) * d + m;
    }
}

/* Q8_0: f16 d, 32 signed bytes. */
static void block_q8_0(const unsigned char *b, float *y)
{
    float d = half_at(b);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of
 * 2-bit values, f16 d, f16 dmin. */
static void block_q2_k(const unsigned char *b, float *y)
{
    const unsigned char *scales = b, *q = b + 16;
    float d = half_at(b + 80), dmin = half_at(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                int sc = scales[is++];
                float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

/* Q3_K: 32 bytes high-bit mask, 64 bytes of 2-bit values, 12 bytes of packed
 * 6-bit scales, f16 d. */
static void block_q3_k(const unsigned char *b, float *y)
{
    const unsigned char *hm = b, *q = b + 32, *sp = b + 96;
    float d_all = half_at(b + 108);
    uint32_t aux[4] = {rv_load_u32(sp), rv_load_u32(sp + 4), rv_load_u32(sp + 8), 0};
    const uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu, tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    for (int i = 0; i < 16; i++)
        scales[i] = (int8_t)(uint8_t)(aux[i / 4] >> (8 * (i % 4)));
    int is = 0;
    unsigned m = 1;
    for (int n = 0; n < 256; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                float dl = d_all * (float)(scales[is++] - 32);
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            }
            m <<= 1;
        }
        q += 32;
    }
}

/* The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block. */
static void scale_min_k4(int j, const unsigned char *q, int *d, int *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles. */
static void block_q4_k(const unsigned char *b, float *y)
{
    float d = half_at(b), dmin = half_at(b + 2);
    const unsigned char *scales = b + 4, *q = b + 16;
    for (int is = 0; is < 8; is += 2) {
        int sc, mn;
        scale_min_k4(is, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(is + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (float)(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; l++)
            *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
    }
}

/* Q5_K: like Q4_K plus 32 bytes of fifth bits. */
static void block_q5_k(const unsigned char *b, float *y)
{
    float d = half_at(b), dmin = half_at(b + 2);
    const unsigned char *scales = b + 4, *qh = b + 16, *ql = b + 48;
    unsigned u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2) {
        int sc, mn;
        scale_min_k4(is, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(is + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++)
            *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        u1 <<= 2;
        u2 <<= 2;
    }
}

/* Q6_K: 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 signed scales, f16 d. */
static void block_q6_k(const unsigned char *b, float *y)
{
    const unsigned char *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = half_at(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

static void block_f32(const unsigned char *b, float *y) { *y = rv_bits_f32(rv_load_u32(b)); }
static void block_f16(const unsigned char *b, float *y) { *y = half_at(b); }
static void block_bf16(const unsigned char *b, float *y) { *y = rv_bf16_to_f32((uint16_t)(b[0] | b[1] << 8)); }

typedef void (*block_fn)(const unsigned char *, float *);

static block_fn find_block(uint32_t type, size_t *elems)
{
    switch (type) {
    case RV_GGML_F32: *elems = 1; return block_f32;
    case RV_GGML_F16: *elems = 1; return block_f16;
    case RV_GGML_BF16: *elems = 1; return block_bf16;
    case RV_GGML_Q4_0: *elems = 32; return block_q4_0;
    case RV_GGML_Q4_1: *elems = 32; return block_q4_1;
    case RV_GGML_Q5_0: *elems = 32; return block_q5_0;
    case RV_GGML_Q5_1: *elems = 32; return block_q5_1;
    case RV_GGML_Q8_0: *elems = 32; return block_q8_0;
    case RV_GGML_Q2_K: *elems = 256; return block_q2_k;
    case RV_GGML_Q3_K: *elems = 256; return block_q3_k;
    case RV_GGML_Q4_K: *elems = 256; return block_q4_k;
    case RV_GGML_Q5_K: *elems = 256; return block_q5_k;
    case RV_GGML_Q6_K: *elems = 256; return block_q6_k;
    default: *elems = 0; return NULL;
    }
}

int rv_dequant_supported(uint32_t type)
{
    size_t e;
    return find_block(type, &e) != NULL;
}

size_t rv_dequant_block_size(uint32_t type)
{
    size_t e;
    find_block(type, &e);
    return e;
}

int rv_dequant(uint32_t type, const unsigned char *src, uint64_t n, float *dst)
{
    size_t elems;
    block_fn fn = find_block(type, &elems);
    if (!fn)
        return rv_error_set("ggml type %u (%s): no dequantiser", type, rv_ggml_type_name(type));
    size_t bytes = rv_ggml_type_bytes(type, n);
    if (!bytes && n)
        return rv_error_set("ggml type %s: %llu elements is not a whole number of %zu-element blocks",
                            rv_ggml_type_name(type), (unsigned long long)n, elems);
    size_t block_bytes = bytes / (size_t)(n / elems ? n / elems : 1);
    long long n_blocks = (long long)(n / elems);
#pragma omp parallel for schedule(static) if (n_blocks > 4096)
    for (long long i = 0; i < n_blocks; i++)
        fn(src + (size_t)i * block_bytes, dst + (size_t)i * elems);
    return 0;
}
