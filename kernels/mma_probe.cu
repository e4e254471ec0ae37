/* mma_probe.cu — rv_cuda_mma_probe (cuda_ops.h): one warp runs the
 * tensor-core product of mma_bf16.cuh, D = A B for a 16x16 A and a 16x16 B
 * (two 16x8 products), once for every way mma_bf16.cuh can load the
 * fragments, so test_gpu_ops can hold each against a naive product: the
 * rv_frag_* loaders in every pairing, A handed over as two accumulators
 * (rv_frag_a_from_acc), and the ldmatrix loaders (rv_ldm_*; on the
 * emulator these are the rv_frag_* ones, so only a device checks them).
 * Not used by the tools. */
#include "mma_bf16.cuh"

#define PROBE_LD 24   /* tile pitch in bf16: 48 bytes, 16-byte aligned rows (ldmatrix), not 16 */
#define PROBE_TILE (16 * PROBE_LD)

/* D (16x16, row-major at d) from the accumulators of columns 0..7 (lo) and 8..15 (hi). */
__device__ __forceinline__ void probe_store(float *d, const float lo[4], const float hi[4], int lane)
{
    for (int i = 0; i < 4; i++) {
        d[rv_mma_row(lane, i) * 16 + rv_mma_col(lane, i)] = lo[i];
        d[rv_mma_row(lane, i) * 16 + 8 + rv_mma_col(lane, i)] = hi[i];
    }
}

__global__ void mma_probe_kernel(const float *a, const float *b, float *d)
{
    RV_DYN_SMEM(uint16_t, As);   /* four 16 x PROBE_LD tiles */
    uint16_t *At = As + PROBE_TILE, *Bc = At + PROBE_TILE, *Br = Bc + PROBE_TILE;
    const int lane = threadIdx.x;
    for (int e = lane; e < 16 * 16; e += 32) {
        int r = e / 16, k = e % 16;
        As[r * PROBE_LD + k] = rv_bf16_bits(a[e]);   /* A(r, k) row-major */
        At[k * PROBE_LD + r] = rv_bf16_bits(a[e]);   /* A(r, k) stored transposed */
        Bc[k * PROBE_LD + r] = rv_bf16_bits(b[e]);   /* B(r, k) (row r = k index), each column contiguous */
        Br[r * PROBE_LD + k] = rv_bf16_bits(b[e]);   /* B(r, k) row-major */
    }
    __syncthreads();
    uint32_t fa[4], f0[2], f1[2];
    for (int variant = 0; variant < 7; variant++) {
        float lo[4] = {0.0f, 0.0f, 0.0f, 0.0f}, hi[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (variant == 4) {   /* A from two accumulators holding its columns 0..7 and 8..15 */
            float alo[4], ahi[4];
            for (int i = 0; i < 4; i++) {
                alo[i] = a[rv_mma_row(lane, i) * 16 + rv_mma_col(lane, i)];
                ahi[i] = a[rv_mma_row(lane, i) * 16 + 8 + rv_mma_col(lane, i)];
            }
            rv_frag_a_from_acc(fa, alo, ahi);
        } else if (variant >= 5) {
            rv_ldm_a(fa, As, PROBE_LD, lane);
        } else if (variant & 1) {
            rv_frag_a_t(fa, At, PROBE_LD, lane);
        } else {
            rv_frag_a(fa, As, PROBE_LD, lane);
        }
        if (variant == 5) {
            rv_ldm_b_cols2(f0, f1, Bc, PROBE_LD, lane);
        } else if (variant == 6) {
            rv_ldm_b_rows2(f0, f1, Br, PROBE_LD, lane);
        } else if (variant == 2 || variant == 3) {
            rv_frag_b_rows(f0, Br, PROBE_LD, lane);
            rv_frag_b_rows(f1, Br + 8, PROBE_LD, lane);
        } else {
            rv_frag_b_cols(f0, Bc, PROBE_LD, lane);
            rv_frag_b_cols(f1, Bc + 8 * PROBE_LD, PROBE_LD, lane);
        }
        rv_mma_bf16(lo, fa, f0);
        rv_mma_bf16(hi, fa, f1);
        probe_store(d + variant * 256, lo, hi, lane);
    }
}

extern "C" int rv_cuda_mma_probe(rv_cuda *c, const float *a, const float *b, float *d)
{
    RV_LAUNCH(mma_probe_kernel, dim3(1), dim3(32), 4 * PROBE_TILE * sizeof(uint16_t), c->stream, a, b, d);
    RV_LAUNCH_CHECK("mma_probe_kernel");
    return 0;
}
