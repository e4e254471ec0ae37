/* encode_gpu.h — rv-encode's forward pass on a CUDA device: the model's
 * weights uploaded once (widened from whatever the host holds — mmapped
 * bf16/f16/f32, GGUF dequantised to f32, LoRA already merged — then stored as
 * bf16 or f32), and rv_encode_sequences' batching, pooling and normalisation
 * with each batch's decoder forward (lib/forward.c's sequence of ops) run by
 * the rv_cuda_* ops of cuda_ops.h. Tokenisation, templates and the output
 * stream stay in the tool.
 *
 * These are the backend's entry points (kernels/encode_gpu.cu, compiled into
 * librevela-cuda.so): the tool looks them up by name with
 * rv_cuda_backend_sym() and calls them through the *_fn types below, so it
 * links nothing of CUDA. Every function reports failure as NULL or -1 with
 * rv_error_set(); nothing exits or prints. */
#ifndef RV_ENCODE_GPU_H
#define RV_ENCODE_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "forward_encode.h"   /* rv_encode_params */
#include "model.h"            /* rv_model, rv_wtype */

typedef struct rv_cuda rv_cuda;

typedef struct rv_encode_gpu rv_encode_gpu;

/* Opens CUDA device `device` and uploads m's blocks, final norm and
 * embedding table (not the LM head) with matrices stored as `storage`
 * (RV_WT_BF16: bf16 storage and activations between ops, fp32 accumulation
 * and an fp32 residual stream; RV_WT_F32: fp32 throughout, the CPU path up to
 * summation order). m must outlive the handle and is not changed. Errors name
 * what failed: no device ("no CUDA device: ..."), a device index past the
 * count, or out of device memory with the bytes asked for. */
rv_encode_gpu *rv_encode_gpu_open(const rv_model *m, int device, rv_wtype storage);
typedef rv_encode_gpu *rv_encode_gpu_open_fn(const rv_model *m, int device, rv_wtype storage);

/* The device's name ("NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)", or the
 * emulator's), for the tool's log line. */
const char *rv_encode_gpu_device_name(const rv_encode_gpu *g);
typedef const char *rv_encode_gpu_device_name_fn(const rv_encode_gpu *g);

/* The backend context the handle runs on (for the profiler, cuda_ops.h's
 * rv_cuda_profile_*: rv-encode --gpu-profile). */
rv_cuda *rv_encode_gpu_context(rv_encode_gpu *g);
typedef rv_cuda *rv_encode_gpu_context_fn(rv_encode_gpu *g);

/* Device bytes held by the uploaded weights. */
size_t rv_encode_gpu_weight_bytes(const rv_encode_gpu *g);
typedef size_t rv_encode_gpu_weight_bytes_fn(const rv_encode_gpu *g);

/* rv_encode_sequences (forward_encode.h) on the device: same arguments, same
 * batches (length-sorted, packed, at most p->batch_tokens tokens and
 * p->batch_size sequences each), same pooling and L2 normalisation (done on
 * the host by the same code), results in input order. Activation buffers
 * are sized for a full batch on the first call (an out-of-memory error then
 * names --batch-tokens). */
int rv_encode_gpu_sequences(rv_encode_gpu *g, const uint32_t *ids, const size_t *off, size_t n,
                            const rv_encode_params *p, float *out, void (*progress)(void *ctx, size_t done),
                            void *ctx, double *flops);
typedef int rv_encode_gpu_sequences_fn(rv_encode_gpu *g, const uint32_t *ids, const size_t *off, size_t n,
                                       const rv_encode_params *p, float *out,
                                       void (*progress)(void *ctx, size_t done), void *ctx, double *flops);

/* Frees the device memory and closes the context; NULL is a no-op. */
void rv_encode_gpu_close(rv_encode_gpu *g);
typedef void rv_encode_gpu_close_fn(rv_encode_gpu *g);

#ifdef __cplusplus
}
#endif

#endif
