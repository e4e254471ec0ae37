/* attn_tiles.cuh — the tile shapes and shared-memory loaders of the
 * attention kernels (attention.cu, inbatch_attn.cu); internal.
 *   ATT_*              block shape: 4 warps, 4 query rows per warp, 32 keys per tile
 *   att_tile_load      rows of a [tokens, heads, head_dim] tensor into shared memory,
 *                      zero-filled past the valid rows, optionally with row L2 norms
 *   att_rows_dot_key, att_rows_accumulate
 *                      a warp's ATT_R query rows against the lane's key; P V for them
 *   att_seq_rows       the rows and keys of one sequence of a causal attention launch
 *   att_tc_usable      which calls the tensor-core kernels take
 *   att_smem_ready     raises a kernel's dynamic shared-memory limit when > 48 KiB
 * The kernels are "straightforward tiled": one warp owns a few query rows,
 * lane j scores key j of the tile (a head_dim dot product from shared
 * memory), softmax statistics are warp reductions, and each lane
 * accumulates head_dim/32 output dimensions (so head_dim <= 128). fp32
 * throughout: these run for f32 operands (and bf16 ones whose head_dim is
 * not a multiple of 16); bf16 operands otherwise run the tensor-core
 * kernels of attention_tc.cu and inbatch_attn_tc.cu. */
#ifndef RV_ATTN_TILES_CUH
#define RV_ATTN_TILES_CUH

#include "cuda_common.cuh"

#define ATT_MAX_HD 128
#define ATT_NC (ATT_MAX_HD / 32)        /* output dimensions per lane: d = c*32 + lane */
#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_R 4                         /* query rows per warp */
#define ATT_QT (ATT_WARPS * ATT_R)      /* query rows per block */
#define ATT_KT 32                       /* keys per tile: one per lane */

/* Loads rows row0 .. row0+n_rows-1 (element (row, d) at (row*stride + off +
 * d) of src) into dst[r*pitch + d]; rows r >= valid are zeros. One warp per
 * row, lanes along d (coalesced). With norms, norms[r] = L2 norm of row r.
 * Every thread of the block must call it. */
__device__ __forceinline__ void att_tile_load(float *dst, int pitch, const void *src, int src_t, size_t row0,
                                              size_t stride, size_t off, int n_rows, int valid, int hd, float *norms)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int r = warp; r < n_rows; r += ATT_WARPS) {
        bool ok = r < valid;
        float ss = 0.0f;
        for (int d = lane; d < hd; d += 32) {
            float x = ok ? rv_ld(src, src_t, (row0 + r) * stride + off + d) : 0.0f;
            dst[r * pitch + d] = x;
            ss += x * x;
        }
        if (norms) {
            ss = rv_warp_sum(ss);
            if (lane == 0)
                norms[r] = sqrtf(ss);
        }
    }
}

/* Scores of the warp's ATT_R query rows (rows warp*ATT_R.. of Qs, pitch
 * q_pitch) against the key row `key_row` (the lane's key): sc[r] = Q_r . K. */
__device__ __forceinline__ void att_rows_dot_key(float *sc, const float *Qs, int q_pitch, int warp,
                                                 const float *key_row, int hd)
{
#pragma unroll
    for (int r = 0; r < ATT_R; r++)
        sc[r] = 0.0f;
    for (int d = 0; d < hd; d++) {
        float kd = key_row[d];
#pragma unroll
        for (int r = 0; r < ATT_R; r++)
            sc[r] += Qs[(warp * ATT_R + r) * q_pitch + d] * kd;
    }
}

/* acc[r][c] += sum over jj < n_keys of (p[r] held by lane jj) * Vs[jj][c*32 + lane]. */
__device__ __forceinline__ void att_rows_accumulate(float (*acc)[ATT_NC], const float *p, const float *Vs, int pitch,
                                                    int n_keys, int lane, int hd)
{
    for (int jj = 0; jj < n_keys; jj++) {
        float vj[ATT_NC];
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            vj[c] = c * 32 + lane < hd ? Vs[jj * pitch + c * 32 + lane] : 0.0f;
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            float pj = rv_shfl(p[r], jj);
#pragma unroll
            for (int c = 0; c < ATT_NC; c++)
                acc[r][c] += pj * vj[c];
        }
    }
}

/* Whether a call runs on the tensor-core kernels (attention_tc.cu,
 * inbatch_attn_tc.cu) rather than the fp32 ones: bf16 q/k/v (read into the
 * tiles without rounding) and head_dim a multiple of 16 (the mma's k) up to
 * 128 (the register budget). */
static inline bool att_tc_usable(rv_wtype qkv_t, size_t head_dim)
{
    return qkv_t == RV_WT_BF16 && head_dim % 16 == 0 && head_dim >= 16 && head_dim <= 128;
}

/* Sequence s of a causal attention (attention.cu and attention_tc.cu take
 * the same two layouts): with seq_off (packed sequences), rows seq_off[s] ..
 * seq_off[s+1]-1, every earlier row of the sequence a key; without (a
 * padded batch), rows s*seq_len .. +seq_len-1 with keys < lengths[s]
 * (clamped to 0 .. seq_len). */
struct att_seq {
    int base, n_rows, nk;   /* first row, rows, keys */
};
__device__ __forceinline__ att_seq att_seq_rows(const int *seq_off, const int *lengths, int seq_len, int s)
{
    if (seq_off) {
        const int base = seq_off[s], n = seq_off[s + 1] - base;
        return {base, n, n};
    }
    return {s * seq_len, seq_len, min(max(lengths[s], 0), seq_len)};
}

/* Checks `bytes` of dynamic shared memory against the device and opts the
 * kernel in above the default 48 KiB. */
template <class Kernel>
static int att_smem_ready(rv_cuda *c, Kernel kernel, size_t bytes, const char *name)
{
    if (bytes > c->smem_optin)
        return rv_error_set("cuda: %s needs %zu bytes of shared memory, the device allows %zu", name, bytes,
                            c->smem_optin);
    if (bytes > 48 * 1024)
        RV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return 0;
}

#endif
