/* mma_probe.cu — rv_cuda_mma_probe (cuda_ops.h): one warp runs the
 * tensor-core product of mma_bf16.cuh on a 16x16 A and a 16x8 B, once with
 * every pairing of the fragment loaders and once with A handed over as
 * two accumulators (rv_frag_a_from_acc), so test_gpu_ops can hold the
 * fragment layout (and the emulator's version of it) against a naive
 * product. Not used by the tools. */
#include "mma_bf16.cuh"

#define PROBE_LD 24   /* tile pitch in bf16: even (4-byte pairs), not 16 (not the natural stride) */
#define PROBE_SMEM_ROWS (16 + 16 + 8 + 16)

__global__ void mma_probe_kernel(const float *a, const float *b, float *d)
{
    RV_DYN_SMEM(uint16_t, As);   /* four tiles of PROBE_SMEM_ROWS rows in all */
    uint16_t *At = As + 16 * PROBE_LD, *Bc = At + 16 * PROBE_LD, *Br = Bc + 8 * PROBE_LD;
    const int lane = threadIdx.x;
    for (int e = lane; e < 16 * 16; e += 32) {
        int r = e / 16, k = e % 16;
        As[r * PROBE_LD + k] = rv_bf16_bits(a[e]);   /* A(r, k) row-major */
        At[k * PROBE_LD + r] = rv_bf16_bits(a[e]);   /* A(r, k) stored transposed */
    }
    for (int e = lane; e < 16 * 8; e += 32) {
        int k = e / 8, n = e % 8;
        Bc[n * PROBE_LD + k] = rv_bf16_bits(b[e]);   /* B(k, n), each column contiguous */
        Br[k * PROBE_LD + n] = rv_bf16_bits(b[e]);   /* B(k, n) row-major */
    }
    __syncthreads();
    for (int variant = 0; variant < 4; variant++) {
        uint32_t fa[4], fb[2];
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (variant & 1)
            rv_frag_a_t(fa, At, PROBE_LD, lane);
        else
            rv_frag_a(fa, As, PROBE_LD, lane);
        if (variant & 2)
            rv_frag_b_rows(fb, Br, PROBE_LD, lane);
        else
            rv_frag_b_cols(fb, Bc, PROBE_LD, lane);
        rv_mma_bf16(acc, fa, fb);
        for (int i = 0; i < 4; i++)
            d[variant * 128 + rv_mma_row(lane, i) * 8 + rv_mma_col(lane, i)] = acc[i];
    }
    /* variant 4: A handed over as two accumulator fragments (rv_frag_a_from_acc) */
    float lo[4], hi[4], acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < 4; i++) {
        lo[i] = a[rv_mma_row(lane, i) * 16 + rv_mma_col(lane, i)];
        hi[i] = a[rv_mma_row(lane, i) * 16 + 8 + rv_mma_col(lane, i)];
    }
    uint32_t fa[4], fb[2];
    rv_frag_a_from_acc(fa, lo, hi);
    rv_frag_b_cols(fb, Bc, PROBE_LD, lane);
    rv_mma_bf16(acc, fa, fb);
    for (int i = 0; i < 4; i++)
        d[4 * 128 + rv_mma_row(lane, i) * 8 + rv_mma_col(lane, i)] = acc[i];
}

extern "C" int rv_cuda_mma_probe(rv_cuda *c, const float *a, const float *b, float *d)
{
    RV_LAUNCH(mma_probe_kernel, dim3(1), dim3(32), PROBE_SMEM_ROWS * PROBE_LD * sizeof(uint16_t), c->stream, a, b, d);
    RV_LAUNCH_CHECK("mma_probe_kernel");
    return 0;
}
