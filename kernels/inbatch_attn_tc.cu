/* inbatch_attn_tc.cu — the Revela in-batch attention on tensor cores (bf16
 * m16n8k16 mma.sync of mma_bf16.cuh, fp32 accumulation), forward and
 * backward, for q, k, v (and dout) stored in bf16 with head_dim a multiple
 * of 16 up to 128 (attn_tiles.cuh, att_tc_usable). The math, layouts,
 * saved statistics and backward notation are those of inbatch_attn.cu's
 * header; this file only changes how the products are computed.
 *
 * Kernels (4 warps a block; every warp owns 16 rows of every product, as
 * the 16-row side of the m16n8k16 shape; HD = head_dim is a template
 * parameter, so the accumulators are register arrays of fixed size):
 *   ibtc_fwd_kernel     block = (64 query rows, head h, chunk i); loops over key chunks j,
 *                       each with an online softmax over 64-key tiles in registers, FA2
 *                       style: S = Q K^T (A: Q rows from shared memory, B: K rows), the
 *                       row max/sum over the 4 lanes of a quad (a lane holds rows g, g+8),
 *                       P straight from the S accumulators into the A fragments of P V
 *                       (rv_frag_a_from_acc; P rounded to bf16 there), the V-norm sum
 *                       n = sum_s P_s ||V_s|| from the same fp32 P; then W_ij b~ is added
 *                       to a block-lifetime fp32 accumulator. Saves lse (natural log) and
 *                       denom per (i, j, h, t), exactly what the fp32 kernel saves.
 *   ibtc_bwd_dq_kernel  same blocks: pass 1 recomputes b = P V and n (P from the saved
 *                       lse), then gb = G.b, f = W/den, dn, D per row (written to scratch
 *                       for the dk/dv kernel and for inbatch_attn.cu's dw kernel); pass 2:
 *                       G V^T by mma, dS = P (f GV + dn ||V|| - D) scale, dq += dS K
 *                       (dS from its accumulators into A fragments, rounded to bf16).
 *   ibtc_bwd_dkv_kernel block = (64 keys, kv head g, chunk j); loops over (i, h in the kv
 *                       group, query tiles of 64 rows, 32 for HD > 64): recomputes the
 *                       transposed scores S^T = K Q^T and G V^T with the keys as the 16-row
 *                       side, so dS^T and (P f)^T come out of the accumulators already as
 *                       the A operand of dk += dS^T Q and dv += (P f)^T G (no transposed
 *                       tile in shared memory); rr_s = sum_t P dn (lane partials) gives
 *                       the V-norm term dv_s += rr_s V_s / ||V_s|| at the end.
 * dw stays inbatch_attn.cu's inbatch_dw_kernel over gbuf. No atomics: every
 * output element has one owner, so results are bitwise reproducible.
 *
 * Precision: tiles hold the bf16 inputs as they are (no rounding); the
 * probabilities P, the P f and the dS fed to the second product of each
 * pair are rounded to bf16 (as FlashAttention does); scores, softmax
 * statistics, key norms (fp32 sums of squares of the bf16 values, from the
 * shared-memory V tile) and every accumulation are fp32. The exponentials
 * are exp2f of log2e-prescaled scores; lse is stored in natural-log units.
 *
 * The tile loader and the two warp products (S = A B^T: Q K^T, G V^T,
 * K Q^T, V G^T; acc += X R: P V, dS K, dS^T Q, (P f)^T G) are
 * attn_tc_warp.cuh's, shared with attention_tc.cu; fragments load with
 * ldmatrix on the GPU (mma_bf16.cuh's rv_ldm_*; rv_frag_* on the emulator).
 *
 * Shared memory: tiles are bf16 with a row pitch of HD + 8 elements (a
 * fragment load then touches 32 different banks; rows stay 16-byte
 * aligned for the 16-byte tile loads and ldmatrix). Per block (HD = 128):
 * forward 52 KB, dq 69 KB, dk/dv 52 KB, so att_smem_ready opts in above
 * 48 KB. Rows past the valid keys or queries are zero-filled (a NaN or Inf
 * in an unused row would poison an mma), and masked columns get P = 0.
 *
 * Tile loads use 16-byte loads when q, k, v and dout are 16-byte aligned
 * (checked on the host; every row offset is a multiple of 16 elements), two-
 * byte loads otherwise. Loads are not pipelined (no cp.async): several
 * blocks per SM hide the latency; a double-buffered variant belongs in
 * kernels/dev/ once there is a measurement. */
#include "inbatch_attn_tc.h"

#include "attn_tiles.cuh"   /* att_smem_ready */
#include "attn_tc_warp.cuh"   /* atc_tile_load, atc_abt, atc_xr, atc_aligned16, ATC_HD_SWITCH */

#include <math.h>

#define IBTC_WARPS 4
#define IBTC_THREADS (IBTC_WARPS * 32)
#define IBTC_QT 64   /* query rows per block in the forward and dq kernels (16 per warp) */
#define IBTC_KB 64   /* keys per block in the dk/dv kernel (16 per warp) */
#define IBTC_LOG2E 1.4426950408889634f
#define IBTC_LN2 0.6931471805599453f

/* Keys per tile in the forward and dq kernels, and query rows per tile in
 * the dk/dv kernel: the output accumulators take HD/2 floats a lane each (two
 * of them live at once), the score tiles tile/2 each, so the tiles shrink for
 * HD > 64 to stay clear of 255 registers. */
template <int HD> struct ibtc_tile {
    static constexpr int keys = HD > 64 ? 32 : 64;
    static constexpr int dkv_rows = HD > 64 ? 32 : 64;
};

struct ibtc_args : inbatch_dims {
    int vec;   /* the bf16 tensors are 16-byte aligned: 16-byte tile loads */
};

/* ---------------------------------------------------------------- tiles */

/* norms[r] = ||row r|| of an N-row bf16 tile (fp32 sum of squares): 128/N
 * threads per row, each over a contiguous part, combined by shuffles. Every
 * thread of the block must call it (N = 32 or 64). */
template <int HD, int N>
__device__ __forceinline__ void ibtc_row_norms(float *norms, const uint16_t *tile)
{
    constexpr int LD = HD + 8, TPR = IBTC_THREADS / N, PART = HD / TPR;
    static_assert(TPR == 2 || TPR == 4, "ibtc_row_norms: 2 or 4 threads a row");
    const int r = threadIdx.x / TPR, part = threadIdx.x % TPR;
    const uint16_t *p = tile + r * LD + part * PART;
    float ss = 0.0f;
#pragma unroll
    for (int d = 0; d < PART; d += 2) {
        uint32_t two = rv_ld_pair(p + d);
        float lo = rv_bf16_float((uint16_t)(two & 0xffffu)), hi = rv_bf16_float((uint16_t)(two >> 16));
        ss += lo * lo + hi * hi;
    }
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    if (TPR == 4)
        ss += __shfl_xor_sync(0xffffffffu, ss, 2);
    if (part == 0)
        norms[r] = sqrtf(ss);
}

/* Keys k0 .. k0+KT-1 of sequence j, kv head g: K and V rows into Ks, Vs
 * (zeros past n_keys) and, with v_norm, the V rows' norms into vn. Opens
 * with a barrier (the previous tile is no longer read, and tiles loaded
 * before the loop are complete) and closes with one (this tile is ready).
 * Every thread of the block must call it. */
template <int HD, int KT>
__device__ __forceinline__ void ibtc_key_tile(uint16_t *Ks, uint16_t *Vs, float *vn, const uint16_t *k,
                                              const uint16_t *v, const ibtc_args &dm, int j, int g, int k0,
                                              int n_keys)
{
    const size_t row0 = (size_t)j * dm.L + k0, ldk = (size_t)dm.Hkv * HD;
    __syncthreads();
    atc_tile_load<HD, KT, IBTC_THREADS>(Ks, k, row0, ldk, (size_t)g * HD, n_keys, dm.vec);
    atc_tile_load<HD, KT, IBTC_THREADS>(Vs, v, row0, ldk, (size_t)g * HD, n_keys, dm.vec);
    __syncthreads();
    if (dm.v_norm) {
        ibtc_row_norms<HD, KT>(vn, Vs);
        __syncthreads();
    }
}

/* ---------------------------------------------------------------- forward */
template <int HD>
__global__ void __launch_bounds__(IBTC_THREADS, 1)
    ibtc_fwd_kernel(ibtc_args dm, const float *w, const int *lengths, const uint16_t *q, const uint16_t *k,
                    const uint16_t *v, void *out, int out_t, float *lse, float *denom)
{
    constexpr int LD = HD + 8, NT = HD / 8, KT = ibtc_tile<HD>::keys, SN = KT / 8;
    RV_DYN_SMEM(uint16_t, smem);
    uint16_t *Qs = smem, *Ks = Qs + IBTC_QT * LD, *Vs = Ks + KT * LD;
    float *vn = (float *)(Vs + KT * LD);
    const int B = dm.B, L = dm.L, H = dm.H;
    const int i = blockIdx.z, h = blockIdx.y, g = h / dm.rep, t0 = blockIdx.x * IBTC_QT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, qc = lane & 3;
    const int row[2] = {t0 + warp * 16 + (lane >> 2), t0 + warp * 16 + (lane >> 2) + 8};   /* this lane's rows */
    const bool active = t0 + warp * 16 < L;   /* warp-uniform: the warp has a real row */
    const size_t ldq = (size_t)H * HD;
    const float sl2 = dm.scale * IBTC_LOG2E;
    atc_tile_load<HD, IBTC_QT, IBTC_THREADS>(Qs, q, (size_t)i * L + t0, ldq, (size_t)h * HD, min(IBTC_QT, L - t0),
                                             dm.vec);
    const uint16_t *Qw = Qs + warp * 16 * LD;

    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int j = 0; j < B; j++) {
        const float wij = w[i * B + j];
        const size_t st = (((size_t)i * B + j) * H + h) * L;
        if (dm.skip_zero && wij == 0.0f) {
#pragma unroll
            for (int r = 0; r < 2; r++)
                if (qc == 0 && row[r] < L) {
                    lse[st + row[r]] = 0.0f;
                    denom[st + row[r]] = 1.0f;
                }
            continue;
        }
        const int nk = min(max(lengths[j], 0), L);
        float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, nl[2] = {0.0f, 0.0f}, acc[NT][4];
#pragma unroll
        for (int n = 0; n < NT; n++)
            acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
        for (int k0 = 0; k0 < nk; k0 += KT) {
            const int n_keys = min(KT, nk - k0);
            ibtc_key_tile<HD, KT>(Ks, Vs, vn, k, v, dm, j, g, k0, n_keys);
            if (!active)
                continue;
            float s[SN][4];
            atc_abt<HD, SN>(s, Qw, Ks, 0, (n_keys + 7) / 8, lane);
            /* online softmax in log2 units: the tile's row max over the quad */
            float mt[2] = {-INFINITY, -INFINITY}, corr[2];
#pragma unroll
            for (int n = 0; n < SN; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = n * 8 + 2 * qc + (e & 1);
                    const float x = key < n_keys ? s[n][e] * sl2 : -INFINITY;
                    s[n][e] = x;
                    mt[e >> 1] = fmaxf(mt[e >> 1], x);
                }
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const float mn = fmaxf(m[r], rv_quad_max(mt[r]));   /* finite: the tile has a real key */
                corr[r] = exp2f(m[r] - mn);                            /* 0 on the first tile */
                m[r] = mn;
                l[r] *= corr[r];
                nl[r] *= corr[r];
            }
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    acc[n][e] *= corr[e >> 1];
#pragma unroll
            for (int n = 0; n < SN; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = exp2f(s[n][e] - m[e >> 1]);   /* masked keys: exp2(-inf) = 0 */
                    s[n][e] = p;
                    l[e >> 1] += p;
                    if (dm.v_norm)
                        nl[e >> 1] += p * vn[n * 8 + 2 * qc + (e & 1)];
                }
            atc_xr<HD, SN>(acc, s, Vs, 0, (n_keys + 7) / 8, lane);
        }
        if (!active)
            continue;
        float f[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l[r] = rv_quad_sum(l[r]);
            nl[r] = rv_quad_sum(nl[r]);
            const float den = dm.v_norm ? nl[r] / l[r] + dm.eps : 1.0f;
            f[r] = wij / (den * l[r]);
            if (qc == 0 && row[r] < L) {
                lse[st + row[r]] = (m[r] + log2f(l[r])) * IBTC_LN2;
                denom[st + row[r]] = den;
            }
        }
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                o[n][e] += f[e >> 1] * acc[n][e];
    }
    if (!active)
        return;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int t = row[e >> 1];
            if (t < L)
                rv_st(out, out_t, ((size_t)i * L + t) * ldq + (size_t)h * HD + n * 8 + 2 * qc + (e & 1), o[n][e]);
        }
}

/* ---------------------------------------------------------------- backward: dq, per-row statistics */
template <int HD>
__global__ void __launch_bounds__(IBTC_THREADS, 1)
    ibtc_dq_kernel(ibtc_args dm, const float *w, const int *lengths, const uint16_t *q, const uint16_t *k,
                   const uint16_t *v, const uint16_t *dout, const float *lse, const float *denom, void *dq,
                   int grad_t, float *Dbuf, float *dnbuf, float *gbuf)
{
    constexpr int LD = HD + 8, NT = HD / 8, KT = ibtc_tile<HD>::keys, SN = KT / 8;
    RV_DYN_SMEM(uint16_t, smem);
    uint16_t *Qs = smem, *Gs = Qs + IBTC_QT * LD, *Ks = Gs + IBTC_QT * LD, *Vs = Ks + KT * LD;
    float *vn = (float *)(Vs + KT * LD);
    const int B = dm.B, L = dm.L, H = dm.H;
    const int i = blockIdx.z, h = blockIdx.y, g = h / dm.rep, t0 = blockIdx.x * IBTC_QT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, qc = lane & 3;
    const int row[2] = {t0 + warp * 16 + (lane >> 2), t0 + warp * 16 + (lane >> 2) + 8};
    const bool active = t0 + warp * 16 < L;
    const size_t ldq = (size_t)H * HD;
    const float sl2 = dm.scale * IBTC_LOG2E;
    const int q_valid = min(IBTC_QT, L - t0);
    atc_tile_load<HD, IBTC_QT, IBTC_THREADS>(Qs, q, (size_t)i * L + t0, ldq, (size_t)h * HD, q_valid, dm.vec);
    atc_tile_load<HD, IBTC_QT, IBTC_THREADS>(Gs, dout, (size_t)i * L + t0, ldq, (size_t)h * HD, q_valid, dm.vec);
    const uint16_t *Qw = Qs + warp * 16 * LD, *Gw = Gs + warp * 16 * LD;

    float dqa[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        dqa[n][0] = dqa[n][1] = dqa[n][2] = dqa[n][3] = 0.0f;

    for (int j = 0; j < B; j++) {
        const float wij = w[i * B + j];
        if (dm.skip_zero && wij == 0.0f)
            continue;
        const size_t st = (((size_t)i * B + j) * H + h) * L;
        const int nk = min(max(lengths[j], 0), L);
        float lse2[2], den[2];   /* lse in log2 units */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            lse2[r] = row[r] < L ? lse[st + row[r]] * IBTC_LOG2E : 0.0f;
            den[r] = row[r] < L ? denom[st + row[r]] : 1.0f;
        }
        /* pass 1: b = P V and n = P ||V|| */
        float acc[NT][4], nl[2] = {0.0f, 0.0f};
#pragma unroll
        for (int n = 0; n < NT; n++)
            acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
        for (int k0 = 0; k0 < nk; k0 += KT) {
            const int n_keys = min(KT, nk - k0);
            ibtc_key_tile<HD, KT>(Ks, Vs, vn, k, v, dm, j, g, k0, n_keys);
            if (!active)
                continue;
            float s[SN][4];
            atc_abt<HD, SN>(s, Qw, Ks, 0, (n_keys + 7) / 8, lane);
#pragma unroll
            for (int n = 0; n < SN; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = n * 8 + 2 * qc + (e & 1);
                    const float p = key < n_keys ? exp2f(s[n][e] * sl2 - lse2[e >> 1]) : 0.0f;
                    s[n][e] = p;
                    if (dm.v_norm)
                        nl[e >> 1] += p * vn[key];
                }
            atc_xr<HD, SN>(acc, s, Vs, 0, (n_keys + 7) / 8, lane);
        }
        float f[2] = {0.0f, 0.0f}, dn[2] = {0.0f, 0.0f}, D[2] = {0.0f, 0.0f};
        if (active) {
            float gb[2] = {0.0f, 0.0f};
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    gb[e >> 1] += rv_bf16_float(Gw[((lane >> 2) + 8 * (e >> 1)) * LD + n * 8 + 2 * qc + (e & 1)]) *
                                  acc[n][e];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                gb[r] = rv_quad_sum(gb[r]);
                const float nsum = rv_quad_sum(nl[r]);
                f[r] = wij / den[r];
                dn[r] = dm.v_norm ? -wij * gb[r] / (den[r] * den[r]) : 0.0f;
                D[r] = f[r] * gb[r] + dn[r] * nsum;
                if (qc == 0 && row[r] < L) {
                    gbuf[st + row[r]] = gb[r] / den[r];
                    Dbuf[st + row[r]] = D[r];
                    dnbuf[st + row[r]] = dn[r];
                }
            }
        }
        if (wij == 0.0f || !dq)
            continue;   /* nothing reaches q through a zero weight (block-uniform) */
        /* pass 2: dS = P (f G.V + dn ||V|| - D) scale and dq += dS K */
        for (int k0 = 0; k0 < nk; k0 += KT) {
            const int n_keys = min(KT, nk - k0);
            ibtc_key_tile<HD, KT>(Ks, Vs, vn, k, v, dm, j, g, k0, n_keys);
            if (!active)
                continue;
            float s[SN][4], gv[SN][4];
            atc_abt<HD, SN>(s, Qw, Ks, 0, (n_keys + 7) / 8, lane);
            atc_abt<HD, SN>(gv, Gw, Vs, 0, (n_keys + 7) / 8, lane);
#pragma unroll
            for (int n = 0; n < SN; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = n * 8 + 2 * qc + (e & 1), r = e >> 1;
                    const float p = key < n_keys ? exp2f(s[n][e] * sl2 - lse2[r]) : 0.0f;
                    const float da = f[r] * gv[n][e] + (dm.v_norm ? dn[r] * vn[key] : 0.0f);
                    s[n][e] = p * (da - D[r]) * dm.scale;
                }
            atc_xr<HD, SN>(dqa, s, Ks, 0, (n_keys + 7) / 8, lane);
        }
    }
    if (!dq || !active)
        return;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int t = row[e >> 1];
            if (t < L) {
                const size_t at = ((size_t)i * L + t) * ldq + (size_t)h * HD + n * 8 + 2 * qc + (e & 1);
                rv_st(dq, grad_t, at, rv_ld(dq, grad_t, at) + dqa[n][e]);
            }
        }
}

/* ---------------------------------------------------------------- backward: dk, dv */
template <int HD>
__global__ void __launch_bounds__(IBTC_THREADS, 1)
    ibtc_dkv_kernel(ibtc_args dm, const float *w, const int *lengths, const uint16_t *q, const uint16_t *k,
                    const uint16_t *v, const uint16_t *dout, const float *lse, const float *denom, const float *Dbuf,
                    const float *dnbuf, void *dk, void *dv, int grad_t)
{
    constexpr int LD = HD + 8, NT = HD / 8, QT = ibtc_tile<HD>::dkv_rows, QN = QT / 8;
    RV_DYN_SMEM(uint16_t, smem);
    uint16_t *Ko = smem, *Vo = Ko + IBTC_KB * LD, *Qs = Vo + IBTC_KB * LD, *Gs = Qs + QT * LD;
    float *vno = (float *)(Gs + QT * LD), *s_lse = vno + IBTC_KB, *s_D = s_lse + QT, *s_dn = s_D + QT,
          *s_f = s_dn + QT;
    const int B = dm.B, L = dm.L, H = dm.H;
    const int j = blockIdx.z, g = blockIdx.y, s0 = blockIdx.x * IBTC_KB;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, qc = lane & 3;
    const int krow[2] = {warp * 16 + (lane >> 2), warp * 16 + (lane >> 2) + 8};   /* this lane's keys (in the block) */
    const size_t ldq = (size_t)H * HD, ldk = (size_t)dm.Hkv * HD;
    const float sl2 = dm.scale * IBTC_LOG2E;
    const int nk = min(max(lengths[j], 0), L);
    if (s0 >= nk)
        return;   /* no real key in this tile: the whole block leaves before any barrier */
    const int k_valid = min(IBTC_KB, nk - s0);
    const bool active = warp * 16 < k_valid;
    atc_tile_load<HD, IBTC_KB, IBTC_THREADS>(Ko, k, (size_t)j * L + s0, ldk, (size_t)g * HD, k_valid, dm.vec);
    atc_tile_load<HD, IBTC_KB, IBTC_THREADS>(Vo, v, (size_t)j * L + s0, ldk, (size_t)g * HD, k_valid, dm.vec);
    if (dm.v_norm) {
        __syncthreads();
        ibtc_row_norms<HD, IBTC_KB>(vno, Vo);
    }
    const uint16_t *Kw = Ko + warp * 16 * LD, *Vw = Vo + warp * 16 * LD;

    float dka[NT][4], dva[NT][4], rr[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dka[n][e] = dva[n][e] = 0.0f;

    for (int i = 0; i < B; i++) {
        const float wij = w[i * B + j];
        if (wij == 0.0f)
            continue;   /* skipped or zero-weight pair: no gradient reaches k or v */
        for (int h = g * dm.rep; h < (g + 1) * dm.rep; h++) {
            const size_t st = (((size_t)i * B + j) * H + h) * L;
            for (int t0 = 0; t0 < L; t0 += QT) {
                const int q_valid = min(QT, L - t0);
                __syncthreads();   /* the previous query tile is no longer read (and Ko, Vo, vno are ready) */
                atc_tile_load<HD, QT, IBTC_THREADS>(Qs, q, (size_t)i * L + t0, ldq, (size_t)h * HD, q_valid, dm.vec);
                atc_tile_load<HD, QT, IBTC_THREADS>(Gs, dout, (size_t)i * L + t0, ldq, (size_t)h * HD, q_valid, dm.vec);
                if (threadIdx.x < QT) {
                    const int tt = threadIdx.x;
                    const bool ok = tt < q_valid;
                    s_lse[tt] = ok ? lse[st + t0 + tt] * IBTC_LOG2E : INFINITY;   /* padding rows: P = 0 */
                    s_D[tt] = ok ? Dbuf[st + t0 + tt] : 0.0f;
                    s_dn[tt] = ok ? dnbuf[st + t0 + tt] : 0.0f;
                    s_f[tt] = ok ? wij / denom[st + t0 + tt] : 0.0f;
                }
                __syncthreads();
                if (!active)
                    continue;
                /* transposed: rows are the warp's 16 keys, columns the tile's queries */
                float s[QN][4], gv[QN][4];
                atc_abt<HD, QN>(s, Kw, Qs, 0, (q_valid + 7) / 8, lane);
                atc_abt<HD, QN>(gv, Vw, Gs, 0, (q_valid + 7) / 8, lane);
#pragma unroll
                for (int n = 0; n < QN; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int tq = n * 8 + 2 * qc + (e & 1), r = e >> 1;
                        const float p = exp2f(s[n][e] * sl2 - s_lse[tq]);
                        const float da = s_f[tq] * gv[n][e] + (dm.v_norm ? s_dn[tq] * vno[krow[r]] : 0.0f);
                        s[n][e] = p * (da - s_D[tq]) * dm.scale;   /* dS^T */
                        gv[n][e] = p * s_f[tq];                     /* (P f)^T */
                        rr[r] += p * s_dn[tq];
                    }
                atc_xr<HD, QN>(dka, s, Qs, 0, (q_valid + 7) / 8, lane);
                atc_xr<HD, QN>(dva, gv, Gs, 0, (q_valid + 7) / 8, lane);
            }
        }
    }
    __syncthreads();   /* Vo and vno are ready even when no pair reached the loop body */
    float fac[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float rs = rv_quad_sum(rr[r]);
        fac[r] = dm.v_norm && krow[r] < k_valid && vno[krow[r]] != 0.0f ? rs / vno[krow[r]] : 0.0f;   /* V / ||V|| */
    }
    if (!active)
        return;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int kr = krow[e >> 1], d = n * 8 + 2 * qc + (e & 1);
            if (kr >= k_valid)
                continue;
            const size_t at = ((size_t)j * L + s0 + kr) * ldk + (size_t)g * HD + d;
            if (dk)
                rv_st(dk, grad_t, at, rv_ld(dk, grad_t, at) + dka[n][e]);
            if (dv)
                rv_st(dv, grad_t, at,
                      rv_ld(dv, grad_t, at) + dva[n][e] + fac[e >> 1] * rv_bf16_float(Vo[kr * LD + d]));
        }
}

/* ---------------------------------------------------------------- host side */
static ibtc_args ibtc_make_args(const inbatch_dims *s, const void *const *ptrs, int n_ptrs)
{
    ibtc_args a;
    static_cast<inbatch_dims &>(a) = *s;
    a.vec = 1;
    for (int e = 0; e < n_ptrs; e++)
        if (!atc_aligned16(ptrs[e]))
            a.vec = 0;
    return a;
}

template <int HD>
static int ibtc_forward_hd(rv_cuda *c, const ibtc_args &a, const int *lengths, const float *w, const void *q,
                           const void *k, const void *v, void *out, rv_wtype out_t, float *lse, float *denom)
{
    constexpr int KT = ibtc_tile<HD>::keys;
    const size_t smem = sizeof(uint16_t) * (size_t)(IBTC_QT + 2 * KT) * (HD + 8) + sizeof(float) * KT;
    if (att_smem_ready(c, ibtc_fwd_kernel<HD>, smem, "ibtc_fwd_kernel") != 0)
        return -1;
    dim3 grid((unsigned)((a.L + IBTC_QT - 1) / IBTC_QT), (unsigned)a.H, (unsigned)a.B);
    RV_LAUNCH(ibtc_fwd_kernel<HD>, grid, IBTC_THREADS, smem, c->stream, a, w, lengths, (const uint16_t *)q,
              (const uint16_t *)k, (const uint16_t *)v, out, (int)out_t, lse, denom);
    RV_LAUNCH_CHECK("ibtc_fwd_kernel");
    return 0;
}

template <int HD>
static int ibtc_backward_hd(rv_cuda *c, const ibtc_args &a, const int *lengths, const float *w, const void *q,
                            const void *k, const void *v, const float *lse, const float *denom, const void *dout,
                            void *dq, void *dk, void *dv, rv_wtype grad_t, float *Dbuf, float *dnbuf, float *gbuf)
{
    constexpr int KT = ibtc_tile<HD>::keys;
    const size_t smem_dq = sizeof(uint16_t) * (size_t)(2 * IBTC_QT + 2 * KT) * (HD + 8) + sizeof(float) * KT;
    if (att_smem_ready(c, ibtc_dq_kernel<HD>, smem_dq, "ibtc_dq_kernel") != 0)
        return -1;
    dim3 grid_dq((unsigned)((a.L + IBTC_QT - 1) / IBTC_QT), (unsigned)a.H, (unsigned)a.B);
    RV_LAUNCH(ibtc_dq_kernel<HD>, grid_dq, IBTC_THREADS, smem_dq, c->stream, a, w, lengths, (const uint16_t *)q,
              (const uint16_t *)k, (const uint16_t *)v, (const uint16_t *)dout, lse, denom, dq, (int)grad_t, Dbuf,
              dnbuf, gbuf);
    RV_LAUNCH_CHECK("ibtc_dq_kernel");
    if (!dk && !dv)
        return 0;
    constexpr int QT = ibtc_tile<HD>::dkv_rows;
    const size_t smem_kv = sizeof(uint16_t) * (size_t)(2 * IBTC_KB + 2 * QT) * (HD + 8) +
                           sizeof(float) * (size_t)(IBTC_KB + 4 * QT);
    if (att_smem_ready(c, ibtc_dkv_kernel<HD>, smem_kv, "ibtc_dkv_kernel") != 0)
        return -1;
    dim3 grid_kv((unsigned)((a.L + IBTC_KB - 1) / IBTC_KB), (unsigned)a.Hkv, (unsigned)a.B);
    RV_LAUNCH(ibtc_dkv_kernel<HD>, grid_kv, IBTC_THREADS, smem_kv, c->stream, a, w, lengths, (const uint16_t *)q,
              (const uint16_t *)k, (const uint16_t *)v, (const uint16_t *)dout, lse, denom, Dbuf, dnbuf, dk, dv,
              (int)grad_t);
    RV_LAUNCH_CHECK("ibtc_dkv_kernel");
    return 0;
}

int ibtc_forward(rv_cuda *c, const inbatch_dims *s, const int *lengths, const float *w, const void *q, const void *k,
                 const void *v, void *out, rv_wtype out_t, float *lse, float *denom)
{
    const void *ptrs[] = {q, k, v};
    const ibtc_args a = ibtc_make_args(s, ptrs, 3);
#define IBTC_FWD(HD) ibtc_forward_hd<HD>(c, a, lengths, w, q, k, v, out, out_t, lse, denom)
    ATC_HD_SWITCH(s->hd, IBTC_FWD, "cuda inbatch_attn")
#undef IBTC_FWD
}

int ibtc_backward(rv_cuda *c, const inbatch_dims *s, const int *lengths, const float *w, const void *q, const void *k,
                  const void *v, const float *lse, const float *denom, const void *dout, void *dq, void *dk, void *dv,
                  rv_wtype grad_t, float *Dbuf, float *dnbuf, float *gbuf)
{
    const void *ptrs[] = {q, k, v, dout};
    const ibtc_args a = ibtc_make_args(s, ptrs, 4);
#define IBTC_BWD(HD) \
    ibtc_backward_hd<HD>(c, a, lengths, w, q, k, v, lse, denom, dout, dq, dk, dv, grad_t, Dbuf, dnbuf, gbuf)
    ATC_HD_SWITCH(s->hd, IBTC_BWD, "cuda inbatch_attn")
#undef IBTC_BWD
}
