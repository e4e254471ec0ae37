/* mma_bf16.cuh — one warp-wide tensor-core product, D = A B + C with A 16x16
 * and B 16x8 in bf16 and C, D 16x8 in fp32 (PTX mma.sync.aligned.m16n8k16
 * .row.col.f32.bf16.bf16.f32; sm_80 and later), and the fragment loaders
 * that fill its registers from bf16 tiles in shared memory (internal).
 *
 * Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
 * point type"): with g = lane / 4 and c = lane % 4,
 *   A  a[0] = (row g,   k 2c, 2c+1)  a[1] = (row g+8, k 2c, 2c+1)
 *      a[2] = (row g,   k 2c+8, +9)  a[3] = (row g+8, k 2c+8, +9)
 *   B  b[0] = (k 2c, 2c+1; col g)    b[1] = (k 2c+8, 2c+9; col g)
 *   C  d[0], d[1] = (row g,   col 2c, 2c+1)
 *      d[2], d[3] = (row g+8, col 2c, 2c+1)
 * each 32-bit register holding two bf16, the lower k in the low half. The
 * loaders take any of the layouts the attention kernels keep tiles in, so
 * callers never touch this table; rv_mma_row/rv_mma_col give the (row, col)
 * of accumulator element i for the calling lane.
 *
 * Under the CPU emulator (RV_CUDA_EMULATE) the instruction is a warp
 * exchange of every lane's registers and a plain product in fp32 with the
 * same fragment layout (bf16 products are exact in fp32; the tensor core's
 * internal summation order differs, within fp32 rounding). test_gpu_ops
 * compares rv_mma_bf16 with a naive product on the device and on the
 * emulator, so a layout mistake fails on both. */
#ifndef RV_MMA_BF16_CUH
#define RV_MMA_BF16_CUH

#include "cuda_common.cuh"

/* bf16 bits of x (nearest even), for filling shared-memory tiles. */
__device__ __forceinline__ uint16_t rv_bf16_bits(float x)
{
#ifdef RV_CUDA_EMULATE
    return rv_f32_to_bf16(x);
#else
    __nv_bfloat16 v = __float2bfloat16_rn(x);
    return *(uint16_t *)&v;
#endif
}

/* Two floats rounded to bf16 (nearest even) and packed: lo in bits 0..15
 * (on the device one paired conversion instruction). */
__device__ __forceinline__ uint32_t rv_pack_bf16x2(float lo, float hi)
{
#ifdef RV_CUDA_EMULATE
    return (uint32_t)rv_bf16_bits(lo) | ((uint32_t)rv_bf16_bits(hi) << 16);
#else
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
#endif
}

__device__ __forceinline__ float rv_bf16_float(uint16_t b)
{
#ifdef RV_CUDA_EMULATE
    return rv_bf16_to_f32(b);
#else
    return __uint_as_float((uint32_t)b << 16);
#endif
}

/* d += A B for the warp's fragments (every lane of the warp must call it). */
__device__ __forceinline__ void rv_mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
#ifdef RV_CUDA_EMULATE
    struct regs {
        uint32_t a[4], b[2];
    } mine = {{a[0], a[1], a[2], a[3]}, {b[0], b[1]}}, all[32];
    rv_emu::warp_exchange(&mine, sizeof mine, all);
    /* element (row, k) of A and (k, col) of B from the lane that holds it */
    auto A = [&](int row, int k) {
        int lane = (row % 8) * 4 + (k % 8) / 2, reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        uint32_t v = all[lane].a[reg];
        return rv_bf16_to_f32((uint16_t)(k % 2 ? v >> 16 : v & 0xffffu));
    };
    auto Bm = [&](int k, int col) {
        int lane = col * 4 + (k % 8) / 2, reg = k >= 8 ? 1 : 0;
        uint32_t v = all[lane].b[reg];
        return rv_bf16_to_f32((uint16_t)(k % 2 ? v >> 16 : v & 0xffffu));
    };
    int lane = rv_emu::linear_tid() % 32, g = lane / 4, c = lane % 4;
    for (int i = 0; i < 4; i++) {
        int row = g + (i >= 2 ? 8 : 0), col = 2 * c + (i & 1);
        float s = 0.0f;
        for (int k = 0; k < 16; k++)
            s += A(row, k) * Bm(k, col);
        d[i] += s;
    }
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* Row and column of accumulator element i (0..3) of the calling lane. */
__device__ __forceinline__ int rv_mma_row(int lane, int i) { return (lane >> 2) + (i >= 2 ? 8 : 0); }
__device__ __forceinline__ int rv_mma_col(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

/* Two consecutive bf16 of a shared-memory tile as one register (p 4-byte aligned). */
__device__ __forceinline__ uint32_t rv_ld_pair(const uint16_t *p) { return *(const uint32_t *)p; }

/* Two bf16 that are not adjacent: lo at p, hi at p + step. */
__device__ __forceinline__ uint32_t rv_ld_pair_strided(const uint16_t *p, int step)
{
    return (uint32_t)p[0] | ((uint32_t)p[step] << 16);
}

/* A fragment of the 16x16 tile A(row, k) = s[row * ld + k] (row-major; ld even). */
__device__ __forceinline__ void rv_frag_a(uint32_t a[4], const uint16_t *s, int ld, int lane)
{
    const int g = lane >> 2, k = 2 * (lane & 3);
    a[0] = rv_ld_pair(s + g * ld + k);
    a[1] = rv_ld_pair(s + (g + 8) * ld + k);
    a[2] = rv_ld_pair(s + g * ld + k + 8);
    a[3] = rv_ld_pair(s + (g + 8) * ld + k + 8);
}

/* A fragment of the 16x16 tile A(row, k) = s[k * ld + row] (the transpose of
 * a row-major tile: e.g. dS^T when s holds dS). */
__device__ __forceinline__ void rv_frag_a_t(uint32_t a[4], const uint16_t *s, int ld, int lane)
{
    const int g = lane >> 2, k = 2 * (lane & 3);
    a[0] = rv_ld_pair_strided(s + k * ld + g, ld);
    a[1] = rv_ld_pair_strided(s + k * ld + g + 8, ld);
    a[2] = rv_ld_pair_strided(s + (k + 8) * ld + g, ld);
    a[3] = rv_ld_pair_strided(s + (k + 8) * ld + g + 8, ld);
}

/* B fragment of the 16x8 tile B(k, col) = s[col * ld + k] (each column's k
 * contiguous: K rows for Q K^T, where col is a key and k a head dimension). */
__device__ __forceinline__ void rv_frag_b_cols(uint32_t b[2], const uint16_t *s, int ld, int lane)
{
    const int g = lane >> 2, k = 2 * (lane & 3);
    b[0] = rv_ld_pair(s + g * ld + k);
    b[1] = rv_ld_pair(s + g * ld + k + 8);
}

/* B fragment of the 16x8 tile B(k, col) = s[k * ld + col] (row-major: V rows
 * for P V, where k is a key and col a head dimension). */
__device__ __forceinline__ void rv_frag_b_rows(uint32_t b[2], const uint16_t *s, int ld, int lane)
{
    const int g = lane >> 2, k = 2 * (lane & 3);
    b[0] = rv_ld_pair_strided(s + k * ld + g, ld);
    b[1] = rv_ld_pair_strided(s + (k + 8) * ld + g, ld);
}

/* The A fragment (16 rows x 16 k) made from two accumulators of the same
 * rows: lo holds columns 0..7 of the k range, hi columns 8..15 (e.g. the
 * probabilities of 16 keys from two Q K^T products, fed straight into P V
 * without a trip through shared memory: the accumulator layout of a 16x8
 * product is the A layout of half a 16x16 tile). */
__device__ __forceinline__ void rv_frag_a_from_acc(uint32_t a[4], const float lo[4], const float hi[4])
{
    a[0] = rv_pack_bf16x2(lo[0], lo[1]);
    a[1] = rv_pack_bf16x2(lo[2], lo[3]);
    a[2] = rv_pack_bf16x2(hi[0], hi[1]);
    a[3] = rv_pack_bf16x2(hi[2], hi[3]);
}

/* ---------------------------------------------------------------- ldmatrix loaders
 * The same fragments with ldmatrix on the GPU: one instruction loads four
 * 8x8 bf16 matrices (an A fragment, or the B fragments of two adjacent
 * 8-column tiles) where the rv_frag_* loaders issue four to eight 32-bit
 * loads, and .trans serves the row-major B tiles that rv_frag_b_rows
 * assembles from 16-bit loads. Lane l gives the address of row l & 15
 * (l < 16: the first 8 columns, else the next 8) or, for rv_ldm_b_cols2,
 * of column-major row (l & 7) + 8 (l >> 4) at k offset 8 ((l >> 3) & 1).
 * Every row address must be 16-byte aligned (tile base, pitch and column
 * offsets multiples of 8 bf16, in shared memory). The emulator has no
 * ldmatrix and runs the rv_frag_* loaders, whose layout these reproduce;
 * rv_cuda_mma_probe compares the two on a device. -DRV_LDMATRIX=0 makes a
 * GPU build use rv_frag_* too. */
#ifndef RV_LDMATRIX
#define RV_LDMATRIX 1
#endif
#if defined(RV_CUDA_EMULATE) || !RV_LDMATRIX
#define RV_USE_LDMATRIX 0
#else
#define RV_USE_LDMATRIX 1
#endif

/* rv_frag_a: A(row, k) = s[row*ld + k]. */
__device__ __forceinline__ void rv_ldm_a(uint32_t a[4], const uint16_t *s, int ld, int lane)
{
#if RV_USE_LDMATRIX
    const uint32_t p = (uint32_t)__cvta_generic_to_shared(s + (lane & 15) * ld + (lane >> 4) * 8);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(p));
#else
    rv_frag_a(a, s, ld, lane);
#endif
}

/* rv_frag_b_cols for columns 0..7 (b0) and 8..15 (b1): B(k, col) = s[col*ld + k]. */
__device__ __forceinline__ void rv_ldm_b_cols2(uint32_t b0[2], uint32_t b1[2], const uint16_t *s, int ld, int lane)
{
#if RV_USE_LDMATRIX
    const uint32_t p =
        (uint32_t)__cvta_generic_to_shared(s + ((lane & 7) + ((lane >> 4) << 3)) * ld + ((lane >> 3) & 1) * 8);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
                 : "r"(p));
#else
    rv_frag_b_cols(b0, s, ld, lane);
    rv_frag_b_cols(b1, s + 8 * ld, ld, lane);
#endif
}

/* rv_frag_b_rows for columns 0..7 (b0) and 8..15 (b1): B(k, col) = s[k*ld + col]. */
__device__ __forceinline__ void rv_ldm_b_rows2(uint32_t b0[2], uint32_t b1[2], const uint16_t *s, int ld, int lane)
{
#if RV_USE_LDMATRIX
    const uint32_t p = (uint32_t)__cvta_generic_to_shared(s + (lane & 15) * ld + (lane >> 4) * 8);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
                 : "r"(p));
#else
    rv_frag_b_rows(b0, s, ld, lane);
    rv_frag_b_rows(b1, s + 8, ld, lane);
#endif
}

/* ---------------------------------------------------------------- row reductions
 * An accumulator row lives in the 4 lanes of a quad (lane / 4 = row % 8):
 * its max and sum over those lanes, left in all four. */
__device__ __forceinline__ float rv_quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float rv_quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

#endif
