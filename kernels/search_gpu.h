/* search_gpu.h — candidate selection for exact inner-product search on the
 * GPU (rv-search --device cuda). The GPU scores every query against every
 * corpus row with an fp32 GEMM (cuBLASLt, no TF32) and keeps each query's
 * `cap` best rows with a block-level radix select; the host then rescores
 * those candidates exactly (lib/dense_search.h, rv_dense_search_select),
 * which makes the final ranking identical to the CPU path's.
 *
 * Plain C entry points of the backend library (looked up by name through
 * lib/cuda_loader.h). Every function returns 0 (or a handle), or -1 (NULL)
 * with an error set by rv_error_set(); nothing prints or exits. */
#ifndef RV_SEARCH_GPU_H
#define RV_SEARCH_GPU_H

#include <math.h>   /* before the extern "C" block: topk.h uses it, and C++'s math.h has overloads */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "ops.h"    /* rv_wtype */
#include "topk.h"   /* rv_scored */

/* Largest k on the GPU, and the largest number of candidates per query it
 * implies (k + the default margin 32 + k/4, see dense_search.c): the
 * candidate buffers hold query_tile × cap entries twice on the device.
 * rv-search refuses a larger k on cuda (the selection itself has no limit). */
#define RV_SEARCH_GPU_MAX_K 16384u
#define RV_SEARCH_GPU_MAX_CAP (RV_SEARCH_GPU_MAX_K + 32u + RV_SEARCH_GPU_MAX_K / 4u)

typedef struct {
    size_t corpus_block;    /* corpus rows per GEMM (0: 65536) */
    size_t query_tile;      /* queries per GEMM (0: 1024, fewer when memory is short) */
    int resident;           /* 1 keep the corpus on the device, 0 stream it block by block
                               for every query tile, -1 decide from free device memory */
} rv_search_gpu_params;

typedef struct rv_search_gpu rv_search_gpu;

/* Opens CUDA device `device` and takes the corpus (rows × dim, row-major, f32
 * or 16-bit bit patterns per `dtype`, host memory that must stay valid until
 * close). A resident corpus is uploaded here, as stored (16-bit rows are
 * widened to f32 on the device, block by block, before each GEMM: exact). */
rv_search_gpu *rv_search_gpu_open(int device, const void *corpus, rv_wtype dtype, size_t rows, uint32_t dim,
                                  const rv_search_gpu_params *p);

/* "NVIDIA H100 ... (sm_90, 132 SMs); corpus resident" and similar. */
const char *rv_search_gpu_describe(const rv_search_gpu *g);

/* The selector of rv_dense_search_select (rv_dense_select_fn, ctx = g):
 * queries qn × dim (f32, host); writes each query's min(cap, rows) best rows
 * by fp32 GEMM score, ties by lower row, in any order, to cand[i*cap ...]
 * and their number to n[i]. */
int rv_search_gpu_select(void *g, const float *queries, size_t qn, uint32_t dim, uint32_t cap, rv_scored *cand,
                         uint32_t *n);

void rv_search_gpu_close(rv_search_gpu *g);

#ifdef __cplusplus
}
#endif

#endif
