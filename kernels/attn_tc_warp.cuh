/* attn_tc_warp.cuh — the pieces the tensor-core attention kernels
 * (attention_tc.cu, inbatch_attn_tc.cu) share; internal.
 *   atc_aligned16   host: may a pointer take the 16-byte tile loads
 *   atc_tile_load   rows of a bf16 [tokens, heads, head_dim] tensor into a
 *                   shared-memory tile of pitch HD + 8, zero past the valid rows
 *   atc_abt         s = A B^T for a warp: its 16 rows of one tile against
 *                   rows of another (Q K^T, dO V^T, and K Q^T, V dO^T)
 *   atc_xr          acc += X R for a warp: X its 16 x 8N tile held in fp32
 *                   accumulators, R rows of a tile (P V, dS K, dS^T Q, P^T dO)
 *   atc_abt2, atc_xr2  two of those over the same columns in one loop
 *   ATC_HD_SWITCH   host: the head_dim values the kernels are instantiated for
 * Tiles are bf16 row-major with pitch HD + 8 elements: rows start an odd
 * number of 16-byte units apart, so the 8 rows one ldmatrix phase (or one
 * rv_frag_* load) reads fall on 32 different banks, and every row stays
 * 16-byte aligned for the 16-byte loads and for ldmatrix. Fragments load
 * with mma_bf16.cuh's rv_ldm_* (ldmatrix on the GPU, rv_frag_* under the
 * emulator). HD (head_dim) is a multiple of 16 up to 128 and a template
 * parameter, as are the tile widths, so accumulators are register arrays
 * with compile-time indices.
 *
 * The products skip 8-wide column tiles a warp does not need (keys past the
 * valid ones, keys above a causal diagonal, queries before a warp's keys):
 * the range [n_lo, n_hi) of live 8-wide tiles is warp-uniform, so the
 * branches never split a warp (mma.sync and ldmatrix need all 32 lanes). */
#ifndef RV_ATTN_TC_WARP_CUH
#define RV_ATTN_TC_WARP_CUH

#include "mma_bf16.cuh"

#include <string.h>

/* 16-byte copies need every base pointer 16-byte aligned (and row strides
 * and offsets multiples of 8 elements: the callers check or ensure those).
 * NULL (an absent optional tensor) passes. */
static inline bool atc_aligned16(const void *p) { return p == NULL || ((uintptr_t)p & 15u) == 0; }

/* Host dispatch on head_dim: return CALL(HD) for the values the kernels
 * are built for (multiples of 16 up to 128; ldmatrix and the m16n8k16
 * shape step HD by 16, and 128 keeps the accumulators in registers), an
 * error naming WHAT for any other. */
#define ATC_HD_SWITCH(hd, CALL, WHAT)                                                                   \
    switch (hd) {                                                                                       \
    case 16: return CALL(16);                                                                           \
    case 32: return CALL(32);                                                                           \
    case 48: return CALL(48);                                                                           \
    case 64: return CALL(64);                                                                           \
    case 80: return CALL(80);                                                                           \
    case 96: return CALL(96);                                                                           \
    case 112: return CALL(112);                                                                         \
    case 128: return CALL(128);                                                                         \
    default:                                                                                            \
        return rv_error_set("%s (tensor cores): head_dim %lld is not a multiple of 16 in 16..128", WHAT, \
                            (long long)(hd));                                                           \
    }

/* 8 bf16 (16 bytes) from global to shared memory in one load (src and dst
 * 16-byte aligned), and 8 zeros. */
__device__ __forceinline__ void atc_copy16(uint16_t *dst, const uint16_t *src)
{
#ifdef RV_CUDA_EMULATE
    memcpy(dst, src, 16);
#else
    *(uint4 *)dst = *(const uint4 *)src;
#endif
}

__device__ __forceinline__ void atc_zero16(uint16_t *dst)
{
#ifdef RV_CUDA_EMULATE
    memset(dst, 0, 16);
#else
    *(uint4 *)dst = make_uint4(0u, 0u, 0u, 0u);
#endif
}

/* Rows row0 .. row0+ROWS-1 of a bf16 tensor (element (row, d) at
 * src[row*stride + off + d]) into dst[r*(HD+8) + d]; rows r >= valid are
 * zeros (masked keys meet P = 0, and 0 times a NaN or Inf left in shared
 * memory would not be 0). 16-byte copies when vec (src, stride and off
 * 16-byte aligned), element by element otherwise. Consecutive threads take
 * consecutive 16-byte pieces of a row (coalesced). Every one of the
 * block's THREADS threads must call it. */
template <int HD, int ROWS, int THREADS>
__device__ __forceinline__ void atc_tile_load(uint16_t *dst, const uint16_t *src, size_t row0, size_t stride,
                                              size_t off, int valid, int vec)
{
    constexpr int CH = HD / 8, LD = HD + 8, PIECES = ROWS * CH;   /* CH: 16-byte pieces a row */
#pragma unroll
    for (int it = 0; it < (PIECES + THREADS - 1) / THREADS; it++) {
        const int i = it * THREADS + (int)threadIdx.x, r = i / CH, c = (i % CH) * 8;
        if (PIECES % THREADS != 0 && i >= PIECES)
            break;   /* a tile of fewer pieces than threads (head_dim 16, 32 rows) */
        uint16_t *d = dst + r * LD + c;
        if (r >= valid) {
            atc_zero16(d);
            continue;
        }
        const uint16_t *s = src + (row0 + (size_t)r) * stride + off + c;
        if (vec)
            atc_copy16(d, s);
        else
#pragma unroll
            for (int j = 0; j < 8; j++)
                d[j] = s[j];
    }
}

/* S = A B^T for a warp, once or twice over the same column range: s0[n] =
 * the warp's 16 rows of A0 (row-major, HD wide) against the rows 8n ..
 * 8n+7 of B0 (row-major, HD wide: the columns of B^T), n < N, a 16 x 8N
 * tile; with TWO, likewise s1 from A1, B1 in the same loop (attention_tc.cu's
 * backward kernels: there two separate loops spilled at head_dim 16..48 on
 * sm_90; inbatch_attn_tc.cu's kernels took fewer registers with separate
 * calls, so they make those). Only tiles n_lo <= n < n_hi are
 * computed, the rest are left at 0 for the caller to mask. B fragments
 * load two 8-row tiles at once, so B must have 8N readable rows (zeros
 * past the valid ones). Every lane of the warp must call it, with the same
 * n_lo, n_hi. */
template <int HD, int N, bool TWO>
__device__ __forceinline__ void atc_abt_impl(float (*s0)[4], const uint16_t *A0, const uint16_t *B0, float (*s1)[4],
                                             const uint16_t *A1, const uint16_t *B1, int n_lo, int n_hi, int lane)
{
    static_assert(N % 2 == 0 && HD % 16 == 0, "atc_abt: tiles come in pairs, HD in steps of 16");
    constexpr int LD = HD + 8;
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s0[n][i] = 0.0f;
            if (TWO)
                s1[n][i] = 0.0f;
        }
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) {
        uint32_t a0[4], a1[4];
        rv_ldm_a(a0, A0 + ks * 16, LD, lane);
        if (TWO)
            rv_ldm_a(a1, A1 + ks * 16, LD, lane);
#pragma unroll
        for (int n = 0; n < N; n += 2)
            if (n + 1 >= n_lo && n < n_hi) {
                const bool live0 = n >= n_lo, live1 = n + 1 < n_hi;
                uint32_t b0[2], b1[2];
                rv_ldm_b_cols2(b0, b1, B0 + n * 8 * LD + ks * 16, LD, lane);
                if (live0)
                    rv_mma_bf16(s0[n], a0, b0);
                if (live1)
                    rv_mma_bf16(s0[n + 1], a0, b1);
                if (TWO) {
                    rv_ldm_b_cols2(b0, b1, B1 + n * 8 * LD + ks * 16, LD, lane);
                    if (live0)
                        rv_mma_bf16(s1[n], a1, b0);
                    if (live1)
                        rv_mma_bf16(s1[n + 1], a1, b1);
                }
            }
    }
}

template <int HD, int N>
__device__ __forceinline__ void atc_abt(float (*s)[4], const uint16_t *A, const uint16_t *B, int n_lo, int n_hi,
                                        int lane)
{
    atc_abt_impl<HD, N, false>(s, A, B, s, A, B, n_lo, n_hi, lane);
}

template <int HD, int N>
__device__ __forceinline__ void atc_abt2(float (*s0)[4], const uint16_t *A0, const uint16_t *B0, float (*s1)[4],
                                         const uint16_t *A1, const uint16_t *B1, int n_lo, int n_hi, int lane)
{
    atc_abt_impl<HD, N, true>(s0, A0, B0, s1, A1, B1, n_lo, n_hi, lane);
}

/* acc += X R for a warp, once or twice over the same range: acc0[d] += X0
 * R0 with X0 the warp's 16 x 8N tile held in accumulators x0 (the layout
 * atc_abt leaves; rounded to bf16 into A fragments here,
 * rv_frag_a_from_acc) and R0 the rows 0 .. 8N-1 of a row-major tile, HD
 * wide: a 16 x HD tile in HD/8 accumulators; with TWO, likewise acc1 from
 * x1, R1 in the same loop. 16-row blocks of R whose two 8-wide tiles of X
 * are both outside [n_lo, n_hi) are skipped (the caller's X is 0 there);
 * a live block's other tile must hold zeros where masked. Every lane of
 * the warp must call it, with the same n_lo, n_hi. */
template <int HD, int N, bool TWO>
__device__ __forceinline__ void atc_xr_impl(float (*acc0)[4], float (*x0)[4], const uint16_t *R0, float (*acc1)[4],
                                            float (*x1)[4], const uint16_t *R1, int n_lo, int n_hi, int lane)
{
    static_assert(N % 2 == 0 && HD % 16 == 0, "atc_xr: tiles come in pairs, HD in steps of 16");
    constexpr int LD = HD + 8;
#pragma unroll
    for (int kk = 0; kk < N / 2; kk++)
        if (2 * kk + 1 >= n_lo && 2 * kk < n_hi) {
            uint32_t a0[4], a1[4];
            rv_frag_a_from_acc(a0, x0[2 * kk], x0[2 * kk + 1]);
            if (TWO)
                rv_frag_a_from_acc(a1, x1[2 * kk], x1[2 * kk + 1]);
#pragma unroll
            for (int d = 0; d < HD / 8; d += 2) {
                uint32_t b0[2], b1[2];
                rv_ldm_b_rows2(b0, b1, R0 + kk * 16 * LD + d * 8, LD, lane);
                rv_mma_bf16(acc0[d], a0, b0);
                rv_mma_bf16(acc0[d + 1], a0, b1);
                if (TWO) {
                    rv_ldm_b_rows2(b0, b1, R1 + kk * 16 * LD + d * 8, LD, lane);
                    rv_mma_bf16(acc1[d], a1, b0);
                    rv_mma_bf16(acc1[d + 1], a1, b1);
                }
            }
        }
}

template <int HD, int N>
__device__ __forceinline__ void atc_xr(float (*acc)[4], float (*x)[4], const uint16_t *R, int n_lo, int n_hi, int lane)
{
    atc_xr_impl<HD, N, false>(acc, x, R, acc, x, R, n_lo, n_hi, lane);
}

template <int HD, int N>
__device__ __forceinline__ void atc_xr2(float (*acc0)[4], float (*x0)[4], const uint16_t *R0, float (*acc1)[4],
                                        float (*x1)[4], const uint16_t *R1, int n_lo, int n_hi, int lane)
{
    atc_xr_impl<HD, N, true>(acc0, x0, R0, acc1, x1, R1, n_lo, n_hi, lane);
}

#endif
