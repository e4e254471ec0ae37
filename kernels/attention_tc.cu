/* attention_tc.cu — causal grouped-query self-attention on tensor cores
 * (bf16 mma.sync m16n8k16, fp32 accumulation; kernels/mma_bf16.cuh), forward
 * and backward, FlashAttention-2 style. attention.cu and
 * attention_backward.cu call these (attention_tc.h) for bf16 q/k/v with
 * head_dim a multiple of 16 up to 128; their fp32 kernels do the rest.
 * Semantics are theirs: packed sequences (seq_off) or a padded batch whose
 * sequence b has keys < lengths[b]; row strides; GQA (query head h reads kv
 * head h / rep); typed outputs; lse saved; gradients added into.
 *
 * Shapes. A block is 4 warps; a tile is 64 rows (queries or keys), 16 per
 * warp, held as bf16 in shared memory with pitch head_dim + 8: rows start
 * head_dim/2 + 4 words apart, an odd number of 16-byte units, so any 8
 * consecutive rows' 16-byte pieces (what one ldmatrix phase, or the
 * fragment loaders' 8 rows x 4 lanes, read) fall on 32 different banks, and
 * the pitch stays a multiple of 16 bytes for the 16-byte tile loads.
 * head_dim is a template parameter (16, 32, ..., 128), so the accumulators
 * are register arrays with compile-time indices. Fragments load with
 * ldmatrix on the GPU (mma_bf16.cuh's rv_ldm_*, the layout of its rv_frag_*,
 * which the emulator runs instead). The tile loader and the two warp
 * products every kernel here is made of (S = A B^T with A the warp's 16
 * rows of one tile and B rows of another; acc += X R with X in fp32
 * accumulators) are attn_tc_warp.cuh's, shared with inbatch_attn_tc.cu.
 *
 * Forward (tc_fwd_kernel): block = (64 query rows, head, sequence). Each
 * warp keeps its 16 rows' output (16 x head_dim fp32: head_dim/2 registers a
 * lane) and streams the key tiles at or below the diagonal: S = Q K^T (K
 * rows as the B operand, rv_frag_b_cols), online softmax in registers (a
 * lane holds rows g and g+8 of the warp: row max and sum over the quad of
 * lanes with __shfl_xor 1 and 2), P rounded to bf16 and handed to P V as A
 * fragments straight from the accumulators (rv_frag_a_from_acc), V rows as
 * B (rv_frag_b_rows). Exponentials are exp2 of log2e-scaled scores. The mask
 * (key <= row, key < length) is applied only on tiles that need it, and a
 * warp skips the 8-key groups above its last row.
 *
 * Backward (D = rowsum(dout * out) comes from attention_backward.cu's row
 * kernel). P is recomputed from the forward's lse, dS = P (dP - D) scale.
 *  tc_bwd_dq_kernel   block = (64 query rows, head, batch); per key tile:
 *                     S = Q K^T and dP = dO V^T (both with K/V rows as B),
 *                     dS to A fragments from the accumulators, dQ += dS K
 *                     (K rows as B, rv_frag_b_rows). Owns its dq rows.
 *  tc_bwd_dkv_kernel  block = (64 keys, kv head, batch); each warp owns 16
 *                     keys and loops over the group's query heads and the
 *                     query tiles at or after its keys, computing the
 *                     transposed products directly: S^T = K Q^T and
 *                     dP^T = V dO^T with K/V rows as A and Q/dO rows as B,
 *                     so P^T and dS^T are already in the A layout of
 *                     dV += P^T dO and dK += dS^T Q (Q/dO rows as B): no
 *                     trip through shared memory. Owns its dk/dv rows.
 * Query chunks in the dk/dv kernel narrow with head_dim (TC_DKV_QC: the dk,
 * dv accumulators take head_dim registers a lane). No atomics: every output
 * element is summed by one thread in a fixed order, so results are bitwise
 * reproducible run to run.
 *
 * Tiles load with 16-byte copies when every base pointer is 16-byte aligned
 * and every row stride a multiple of 8 elements (the padded layout and a
 * fused qkv row always are), element by element otherwise. Loads are plain
 * (no cp.async double buffering yet: the emulator has no cp.async); the
 * overlap of loads and products comes from several blocks per SM.
 *
 * Registers a thread (nvcc 13, -O3, sm_90; no spills unless noted), head_dim
 * 16/32/48/64/80/96/112/128: forward 80/96/121/127/133/128/168/168; dq
 * 120/128/144/157/168/183/199/215; dk/dv 128/172/168 (4 bytes
 * spilled)/220/168 (4 bytes spilled)/224/222/244. Shared memory: 3
 * (forward) or 4 (backward) tiles of 64 x (head_dim + 8) bf16: 52 / 68 KiB
 * at head_dim 128 (opt-in above 48 KiB through att_smem_ready). Speed is
 * not measured yet. */
#include "attention_tc.h"
#include "attn_tiles.cuh"   /* att_smem_ready */
#include "attn_tc_warp.cuh"   /* atc_tile_load, atc_abt(2), atc_xr(2), atc_aligned16, ATC_HD_SWITCH */

#include <math.h>

#define TC_WARPS 4
#define TC_THREADS (TC_WARPS * 32)
#define TC_T 64   /* rows per tile (queries or keys): 16 per warp */
#define TC_MAX_GRID_Z 65535
#define TC_LOG2E 1.4426950408889634f
#define TC_LN2 0.69314718055994531f

/* ---------------------------------------------------------------- forward */
/* Sequence s = seq0 + blockIdx.z: with seq_off, rows seq_off[s] ..
 * seq_off[s+1]-1 with every earlier row of the sequence as keys; without,
 * rows s*seq_len .. +seq_len-1 with keys < lengths[s]. sl2 = scale * log2(e). */
template <int HD>
__global__ void __launch_bounds__(TC_THREADS)
    tc_fwd_kernel(void *out, int out_t, size_t out_stride, const uint16_t *q, size_t q_stride, const uint16_t *k,
                  const uint16_t *v, size_t kv_stride, int vec, const int *seq_off, const int *lengths, int seq_len,
                  int seq0, int n_heads, int rep, float sl2, float *lse)
{
    constexpr int LD = HD + 8, NT = TC_T / 8, ND = HD / 8;
    RV_DYN_SMEM(uint16_t, smem);
    uint16_t *Qs = smem, *Ks = Qs + TC_T * LD, *Vs = Ks + TC_T * LD;
    const int s = seq0 + (int)blockIdx.z, h = blockIdx.y, g = h / rep;
    const att_seq sq = att_seq_rows(seq_off, lengths, seq_len, s);
    const int base = sq.base, n_rows = sq.n_rows, nk = sq.nk;
    const int t0 = blockIdx.x * TC_T;
    if (t0 >= n_rows)
        return;   /* the whole block leaves together, before any barrier */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, cq = lane & 3;
    atc_tile_load<HD, TC_T, TC_THREADS>(Qs, q, (size_t)base + t0, q_stride, (size_t)h * HD, min(TC_T, n_rows - t0),
                                        vec);
    const int key_end = min(min(t0 + TC_T, n_rows), nk);   /* keys <= the last row, < nk */
    const int w0 = t0 + warp * 16;                          /* the warp's first row */
    const int row[2] = {w0 + gq, w0 + gq + 8};              /* the lane's rows (accumulator i / 2) */
    const uint16_t *Qw = Qs + warp * 16 * LD;

    float o[ND][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nd = 0; nd < ND; nd++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            o[nd][i] = 0.0f;
    for (int k0 = 0; k0 < key_end; k0 += TC_T) {
        const int n_valid = min(TC_T, key_end - k0);
        __syncthreads();   /* the previous tile is no longer read (and Qs is loaded) */
        atc_tile_load<HD, TC_T, TC_THREADS>(Ks, k, (size_t)base + k0, kv_stride, (size_t)g * HD, n_valid, vec);
        atc_tile_load<HD, TC_T, TC_THREADS>(Vs, v, (size_t)base + k0, kv_stride, (size_t)g * HD, n_valid, vec);
        __syncthreads();
        /* 8-key groups the warp needs (keys <= its last row, < key_end), and
         * whether any key of the tile is masked for one of its rows */
        const int n_live = min(min(NT, (w0 + 15 - k0) / 8 + 1), (n_valid + 7) / 8);
        const bool edge = n_live < NT || k0 + TC_T - 1 > w0 || k0 + TC_T > nk;

        float sc[NT][4];
        atc_abt<HD, NT>(sc, Qw, Ks, 0, n_live, lane);
        /* online softmax, log2 units: row max over the lane's 16 keys, then the quad */
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float x = sc[nt][i] * sl2;
                if (edge) {
                    const int key = k0 + nt * 8 + 2 * cq + (i & 1);
                    if (nt >= n_live || key > row[i >> 1] || key >= nk)
                        x = -INFINITY;
                }
                sc[nt][i] = x;
                mx[i >> 1] = fmaxf(mx[i >> 1], x);
            }
        float sub[2];
#pragma unroll
        for (int j = 0; j < 2; j++) {
            mx[j] = rv_quad_max(mx[j]);
            sub[j] = mx[j] == -INFINITY ? 0.0f : mx[j];   /* no key yet: exp2(-inf - 0) = 0, not NaN */
            const float corr = exp2f(m[j] - sub[j]);
            m[j] = mx[j];
            l[j] *= corr;
#pragma unroll
            for (int nd = 0; nd < ND; nd++) {
                o[nd][2 * j] *= corr;
                o[nd][2 * j + 1] *= corr;
            }
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float p = exp2f(sc[nt][i] - sub[i >> 1]);
                sc[nt][i] = p;
                l[i >> 1] += p;   /* the lane's share; the quad sums at the end */
            }
        atc_xr<HD, NT>(o, sc, Vs, 0, n_live, lane);   /* O += P V */
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        l[j] = rv_quad_sum(l[j]);
        if (row[j] >= n_rows)
            continue;
        const float inv = 1.0f / l[j];
        const size_t at = (size_t)(base + row[j]) * out_stride + (size_t)h * HD + 2 * cq;
#pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            rv_st(out, out_t, at + nd * 8, o[nd][2 * j] * inv);
            rv_st(out, out_t, at + nd * 8 + 1, o[nd][2 * j + 1] * inv);
        }
        if (lse && cq == 0)
            lse[((size_t)s * n_heads + h) * seq_len + row[j]] = (m[j] + log2f(l[j])) * TC_LN2;
    }
}

static size_t tc_fwd_smem(int hd) { return sizeof(uint16_t) * 3 * TC_T * (size_t)(hd + 8); }

template <int HD>
static int tc_forward_hd(rv_cuda *c, void *out, rv_wtype out_t, size_t out_stride, const void *q, size_t q_stride,
                         const void *k, const void *v, size_t kv_stride, int vec, const int *seq_off,
                         const int *lengths, int seq_len, size_t n_seqs, size_t tiles, size_t n_heads, int rep,
                         float *lse)
{
    auto kern = tc_fwd_kernel<HD>;
    const size_t smem = tc_fwd_smem(HD);
    if (att_smem_ready(c, kern, smem, "tc_fwd_kernel") != 0)
        return -1;
    const float sl2 = (float)(TC_LOG2E / sqrt((double)HD));
    for (size_t s0 = 0; s0 < n_seqs; s0 += TC_MAX_GRID_Z) {
        unsigned nz = (unsigned)(n_seqs - s0 < TC_MAX_GRID_Z ? n_seqs - s0 : TC_MAX_GRID_Z);
        dim3 grid((unsigned)tiles, (unsigned)n_heads, nz);
        RV_LAUNCH(kern, grid, TC_THREADS, smem, c->stream, out, (int)out_t, out_stride, (const uint16_t *)q, q_stride,
                  (const uint16_t *)k, (const uint16_t *)v, kv_stride, vec, seq_off, lengths, seq_len, (int)s0,
                  (int)n_heads, rep, sl2, lse);
        RV_LAUNCH_CHECK("tc_fwd_kernel");
    }
    return 0;
}

int rv_attn_tc_forward(rv_cuda *c, void *out, rv_wtype out_t, size_t out_stride, const void *q, size_t q_stride,
                       const void *k, const void *v, size_t kv_stride, const int *seq_off, const int *lengths,
                       int seq_len, size_t n_seqs, size_t max_rows, size_t n_heads, size_t n_kv_heads,
                       size_t head_dim, float *lse)
{
    const size_t tiles = (max_rows + TC_T - 1) / TC_T;
    if (tiles > 0x7fffffffu)
        return rv_error_set("cuda attention: %zu rows are too many", max_rows);
    const int vec = atc_aligned16(q) && atc_aligned16(k) && atc_aligned16(v) && q_stride % 8 == 0 && kv_stride % 8 == 0;
    const int rep = (int)(n_heads / n_kv_heads);
#define TC_FWD(HD)                                                                                    \
    tc_forward_hd<HD>(c, out, out_t, out_stride, q, q_stride, k, v, kv_stride, vec, seq_off, lengths, seq_len, \
                      n_seqs, tiles, n_heads, rep, lse)
    ATC_HD_SWITCH(head_dim, TC_FWD, "cuda attention")
#undef TC_FWD
}

/* ---------------------------------------------------------------- backward */
struct tc_dims {
    int B, L, H, Hkv, rep;
    float scale, sl2;   /* 1/sqrt(head_dim); scale * log2(e) */
};

template <int HD>
__global__ void __launch_bounds__(TC_THREADS)
    tc_bwd_dq_kernel(tc_dims dm, const int *lengths, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                     const uint16_t *dout, int vec, const float *lse, const float *Dbuf, void *dq, int grad_t)
{
    constexpr int LD = HD + 8, NT = TC_T / 8, ND = HD / 8;
    RV_DYN_SMEM(uint16_t, smem);
    uint16_t *Qs = smem, *Gs = Qs + TC_T * LD, *Ks = Gs + TC_T * LD, *Vs = Ks + TC_T * LD;
    const int b = blockIdx.z, h = blockIdx.y, g = h / dm.rep, t0 = blockIdx.x * TC_T, L = dm.L;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, cq = lane & 3;
    const size_t ldq = (size_t)dm.H * HD, ldk = (size_t)dm.Hkv * HD;
    const int nk = min(max(lengths[b], 0), L);
    const int q_valid = min(TC_T, L - t0);
    atc_tile_load<HD, TC_T, TC_THREADS>(Qs, q, (size_t)b * L + t0, ldq, (size_t)h * HD, q_valid, vec);
    atc_tile_load<HD, TC_T, TC_THREADS>(Gs, dout, (size_t)b * L + t0, ldq, (size_t)h * HD, q_valid, vec);
    const int key_end = min(min(t0 + TC_T, L), nk);   /* keys <= the last row of the tile, < nk */
    const int w0 = t0 + warp * 16;
    const int row[2] = {w0 + gq, w0 + gq + 8};
    const size_t st = ((size_t)b * dm.H + h) * L;
    float lse2[2], Dr[2];
#pragma unroll
    for (int j = 0; j < 2; j++) {
        lse2[j] = row[j] < L ? lse[st + row[j]] * TC_LOG2E : 0.0f;
        Dr[j] = row[j] < L ? Dbuf[st + row[j]] : 0.0f;
    }
    const uint16_t *Qw = Qs + warp * 16 * LD, *Gw = Gs + warp * 16 * LD;

    float dqa[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; nd++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            dqa[nd][i] = 0.0f;
    for (int k0 = 0; k0 < key_end; k0 += TC_T) {
        const int n_valid = min(TC_T, key_end - k0);
        __syncthreads();   /* the previous tile is no longer read (and Qs, Gs are loaded) */
        atc_tile_load<HD, TC_T, TC_THREADS>(Ks, k, (size_t)b * L + k0, ldk, (size_t)g * HD, n_valid, vec);
        atc_tile_load<HD, TC_T, TC_THREADS>(Vs, v, (size_t)b * L + k0, ldk, (size_t)g * HD, n_valid, vec);
        __syncthreads();
        const int n_live = min(min(NT, (w0 + 15 - k0) / 8 + 1), (n_valid + 7) / 8);
        const bool edge = n_live < NT || k0 + TC_T - 1 > w0 || k0 + TC_T > nk;

        float sc[NT][4], dp[NT][4];
        atc_abt2<HD, NT>(sc, Qw, Ks, dp, Gw, Vs, 0, n_live, lane);   /* S = Q K^T, dP = dO V^T */
        /* dS = P (dP - D) scale, in place of S */
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                bool valid = true;
                if (edge) {
                    const int key = k0 + nt * 8 + 2 * cq + (i & 1);
                    valid = nt < n_live && key <= row[i >> 1] && key < nk;
                }
                const float p = valid ? exp2f(sc[nt][i] * dm.sl2 - lse2[i >> 1]) : 0.0f;
                sc[nt][i] = p * (dp[nt][i] - Dr[i >> 1]) * dm.scale;
            }
        atc_xr<HD, NT>(dqa, sc, Ks, 0, n_live, lane);   /* dQ += dS K */
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        if (row[j] >= L)
            continue;
        const size_t at = ((size_t)b * L + row[j]) * ldq + (size_t)h * HD + 2 * cq;
#pragma unroll
        for (int nd = 0; nd < ND; nd++)
#pragma unroll
            for (int e = 0; e < 2; e++)
                rv_st(dq, grad_t, at + nd * 8 + e, rv_ld(dq, grad_t, at + nd * 8 + e) + dqa[nd][2 * j + e]);
    }
}

/* QC: queries per chunk of the inner loop (the S^T / dP^T accumulators are
 * 16 keys x QC queries: QC/2 registers a lane each), narrower as head_dim
 * grows (dk and dv take head_dim registers a lane): 64 up to head_dim 64,
 * 32 up to 96, 16 above (at 32, head_dim 128 needed all 255 registers). */
#define TC_DKV_QC(hd) ((hd) <= 64 ? 64 : (hd) <= 96 ? 32 : 16)
template <int HD, int QC>
__global__ void __launch_bounds__(TC_THREADS)
    tc_bwd_dkv_kernel(tc_dims dm, const int *lengths, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                      const uint16_t *dout, int vec, const float *lse, const float *Dbuf, void *dk, void *dv,
                      int grad_t)
{
    constexpr int LD = HD + 8, NC = QC / 8, ND = HD / 8;
    RV_DYN_SMEM(uint16_t, smem);
    uint16_t *Ks = smem, *Vs = Ks + TC_T * LD, *Qs = Vs + TC_T * LD, *Gs = Qs + TC_T * LD;
    float *s_lse2 = (float *)(Gs + TC_T * LD), *s_D = s_lse2 + TC_T;
    const int b = blockIdx.z, g = blockIdx.y, s0 = blockIdx.x * TC_T, L = dm.L;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, cq = lane & 3;
    const size_t ldq = (size_t)dm.H * HD, ldk = (size_t)dm.Hkv * HD;
    const int nk = min(max(lengths[b], 0), L);
    if (s0 >= nk)
        return;   /* no real key in this tile: the whole block leaves before any barrier */
    const int k_valid = min(TC_T, nk - s0);
    atc_tile_load<HD, TC_T, TC_THREADS>(Ks, k, (size_t)b * L + s0, ldk, (size_t)g * HD, k_valid, vec);
    atc_tile_load<HD, TC_T, TC_THREADS>(Vs, v, (size_t)b * L + s0, ldk, (size_t)g * HD, k_valid, vec);
    const int w0 = s0 + warp * 16;                  /* the warp's first key */
    const int key[2] = {w0 + gq, w0 + gq + 8};      /* the lane's keys (accumulator i / 2) */
    const bool warp_live = w0 < nk;
    const uint16_t *Kw = Ks + warp * 16 * LD, *Vw = Vs + warp * 16 * LD;

    float dka[ND][4], dva[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; nd++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            dka[nd][i] = dva[nd][i] = 0.0f;
    for (int h = g * dm.rep; h < (g + 1) * dm.rep; h++) {
        const size_t st = ((size_t)b * dm.H + h) * L;
        for (int t0 = s0; t0 < L; t0 += TC_T) {   /* rows t < s0 see none of these keys */
            const int q_valid = min(TC_T, L - t0);
            __syncthreads();   /* the previous query tile is no longer read (and Ks/Vs are loaded) */
            atc_tile_load<HD, TC_T, TC_THREADS>(Qs, q, (size_t)b * L + t0, ldq, (size_t)h * HD, q_valid, vec);
            atc_tile_load<HD, TC_T, TC_THREADS>(Gs, dout, (size_t)b * L + t0, ldq, (size_t)h * HD, q_valid, vec);
            if (threadIdx.x < TC_T) {
                const int tt = threadIdx.x;
                const bool ok = tt < q_valid;
                s_lse2[tt] = ok ? lse[st + t0 + tt] * TC_LOG2E : 0.0f;
                s_D[tt] = ok ? Dbuf[st + t0 + tt] : 0.0f;
            }
            __syncthreads();
            if (!warp_live)
                continue;   /* warp-uniform; the next barrier is at the loop's top */
            for (int c0 = 0; c0 < TC_T; c0 += QC) {
                const int q_lo = t0 + c0;
                if (q_lo + QC - 1 < w0 || q_lo >= L)
                    continue;   /* every query of the chunk is before the warp's keys, or past L */
                /* 8-query groups with a query >= the warp's first key (w0 - q_lo is a
                 * multiple of 8) and < L */
                const int nt_lo = max(0, (w0 - q_lo) / 8), nt_hi = min(NC, (L - q_lo + 7) / 8);
                const bool edge = nt_lo > 0 || nt_hi < NC || q_lo < w0 + 15 || q_lo + QC > L || w0 + 15 >= nk;
                float sc[NC][4], dp[NC][4];
                /* S^T = K Q^T, dP^T = V dO^T */
                atc_abt2<HD, NC>(sc, Kw, Qs + c0 * LD, dp, Vw, Gs + c0 * LD, nt_lo, nt_hi, lane);
                /* P^T in sc, dS^T in dp (rows: keys; columns: queries) */
#pragma unroll
                for (int nt = 0; nt < NC; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const int qi = c0 + nt * 8 + 2 * cq + (i & 1);
                        bool valid = true;
                        if (edge) {
                            const int t = t0 + qi, kj = key[i >> 1];
                            valid = nt >= nt_lo && nt < nt_hi && kj <= t && t < L && kj < nk;
                        }
                        const float p = valid ? exp2f(sc[nt][i] * dm.sl2 - s_lse2[qi]) : 0.0f;
                        sc[nt][i] = p;
                        dp[nt][i] = p * (dp[nt][i] - s_D[qi]) * dm.scale;
                    }
                /* dV += P^T dO, dK += dS^T Q */
                atc_xr2<HD, NC>(dva, sc, Gs + c0 * LD, dka, dp, Qs + c0 * LD, nt_lo, nt_hi, lane);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        if (key[j] >= nk)
            continue;   /* keys past the length get no gradient */
        const size_t at = ((size_t)b * L + key[j]) * ldk + (size_t)g * HD + 2 * cq;
#pragma unroll
        for (int nd = 0; nd < ND; nd++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const size_t i = at + nd * 8 + e;
                if (dk)
                    rv_st(dk, grad_t, i, rv_ld(dk, grad_t, i) + dka[nd][2 * j + e]);
                if (dv)
                    rv_st(dv, grad_t, i, rv_ld(dv, grad_t, i) + dva[nd][2 * j + e]);
            }
    }
}

template <int HD>
static int tc_backward_hd(rv_cuda *c, const tc_dims &dm, const int *lengths, const void *q, const void *k,
                          const void *v, const void *dout, int vec, const float *lse, const float *Dbuf, void *dq,
                          void *dk, void *dv, rv_wtype grad_t)
{
    const unsigned tiles = (unsigned)((dm.L + TC_T - 1) / TC_T);
    if (dq) {
        auto kern = tc_bwd_dq_kernel<HD>;
        const size_t smem = sizeof(uint16_t) * 4 * TC_T * (size_t)(HD + 8);
        if (att_smem_ready(c, kern, smem, "tc_bwd_dq_kernel") != 0)
            return -1;
        dim3 grid(tiles, (unsigned)dm.H, (unsigned)dm.B);
        RV_LAUNCH(kern, grid, TC_THREADS, smem, c->stream, dm, lengths, (const uint16_t *)q, (const uint16_t *)k,
                  (const uint16_t *)v, (const uint16_t *)dout, vec, lse, Dbuf, dq, (int)grad_t);
        RV_LAUNCH_CHECK("tc_bwd_dq_kernel");
    }
    if (dk || dv) {
        auto kern = tc_bwd_dkv_kernel<HD, TC_DKV_QC(HD)>;
        const size_t smem = sizeof(uint16_t) * 4 * TC_T * (size_t)(HD + 8) + sizeof(float) * 2 * TC_T;
        if (att_smem_ready(c, kern, smem, "tc_bwd_dkv_kernel") != 0)
            return -1;
        dim3 grid(tiles, (unsigned)dm.Hkv, (unsigned)dm.B);
        RV_LAUNCH(kern, grid, TC_THREADS, smem, c->stream, dm, lengths, (const uint16_t *)q, (const uint16_t *)k,
                  (const uint16_t *)v, (const uint16_t *)dout, vec, lse, Dbuf, dk, dv, (int)grad_t);
        RV_LAUNCH_CHECK("tc_bwd_dkv_kernel");
    }
    return 0;
}

int rv_attn_tc_backward(rv_cuda *c, const rv_attn_shape *s, const int *lengths, const void *q, const void *k,
                        const void *v, const void *dout, const float *lse, const float *Dbuf, void *dq, void *dk,
                        void *dv, rv_wtype grad_t)
{
    const double scale = 1.0 / sqrt((double)s->head_dim);
    const tc_dims dm = {s->batch, s->seq_len, s->n_heads, s->n_kv_heads, s->n_heads / s->n_kv_heads, (float)scale,
                        (float)(scale * 1.4426950408889634)};
    const int vec = atc_aligned16(q) && atc_aligned16(k) && atc_aligned16(v) && atc_aligned16(dout);
#define TC_BWD(HD) tc_backward_hd<HD>(c, dm, lengths, q, k, v, dout, vec, lse, Dbuf, dq, dk, dv, grad_t)
    ATC_HD_SWITCH(s->head_dim, TC_BWD, "cuda attention")
#undef TC_BWD
}
