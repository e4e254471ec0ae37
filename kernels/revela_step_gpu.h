/* revela_step_gpu.h — the Revela training step (lib/revela_step_ref.c) on a
 * CUDA device: both networks' frozen weights uploaded once (f32), the LoRA
 * adapters uploaded on request (after each optimiser step), and per
 * micro-batch the same four passes and backward as rv_revela_step_ref,
 * op for op, with the rv_cuda_* ops of cuda_ops.h and every activation kept
 * on the device. LoRA gradients accumulate in device buffers across
 * micro-batches; rv_step_gpu_take_grads adds them into the host gradient
 * buffers (and zeroes them), and the optimiser (clipping, AdamW) runs on the
 * host as on the CPU path.
 *
 * Supported: LoRA on both networks (any targets and rank), LoRA dropout
 * (the same masks as the CPU step, drawn on the device from the same
 * counter-based hash), tau, V-norm on or off, similarity fp32 or the bf16
 * emulation, skip_zero_weights, dual loss, projection biases. Refused with
 * an error (never silently different): recompute, head_dim > 128 or odd.
 * Frozen matrices (embedding, LM head, projections) are stored as f32 (the
 * CPU step up to summation order) or bf16 (half the memory, tensor-core
 * products; each projection's input and output gradient are narrowed to
 * bf16 for the frozen product, the LoRA products, norms, residual stream,
 * attention and gradients stay f32).
 *
 * Entry points are plain C, compiled into librevela-cuda.so; a tool looks
 * them up by name (rv_cuda_backend_sym) and calls them through the *_fn
 * types. Failure: NULL or -1 with rv_error_set(); nothing exits or prints. */
#ifndef RV_REVELA_STEP_GPU_H
#define RV_REVELA_STEP_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "ops.h"               /* rv_wtype */
#include "revela_step_ref.h"   /* rv_step_decoder, rv_step_batch, rv_step_opts, ... */

typedef struct rv_step_gpu rv_step_gpu;

/* Opens CUDA device `device` and uploads the frozen weights of both
 * decoders (embedding, norms, projections, biases, the LM's head; a host
 * tensor the two share — one base for both — is uploaded once; matrices as
 * `storage`, RV_WT_F32 or RV_WT_BF16, norms and biases f32) and their
 * current LoRA parameters. The decoders (and the host memory they point at)
 * must outlive the handle: rv_step_gpu_load_lora re-reads their lora_a /
 * lora_b pointers. */
rv_step_gpu *rv_step_gpu_open(const rv_step_decoder *retriever, const rv_step_decoder *lm, int device,
                              rv_wtype storage);
typedef rv_step_gpu *rv_step_gpu_open_fn(const rv_step_decoder *retriever, const rv_step_decoder *lm, int device,
                                         rv_wtype storage);

/* The device's name, for the tool's log line. */
const char *rv_step_gpu_device_name(const rv_step_gpu *g);
typedef const char *rv_step_gpu_device_name_fn(const rv_step_gpu *g);

/* Copies the host LoRA parameters (the decoders' lora_a / lora_b) up again:
 * call after every optimiser step. */
int rv_step_gpu_load_lora(rv_step_gpu *g);
typedef int rv_step_gpu_load_lora_fn(rv_step_gpu *g);

/* One micro-batch: rv_revela_step_ref_dropout's arguments without the
 * gradient buffers (they stay on the device, ADDED into across calls).
 * result fields as rv_step_result (activation_bytes: device bytes of
 * activations and backward scratch held by the step). */
int rv_step_gpu_step(rv_step_gpu *g, const rv_step_batch *batch, const rv_step_opts *opts,
                     const rv_step_dropout *dropout, rv_step_result *result);
typedef int rv_step_gpu_step_fn(rv_step_gpu *g, const rv_step_batch *batch, const rv_step_opts *opts,
                                const rv_step_dropout *dropout, rv_step_result *result);

/* Adds the accumulated device gradients into the host buffers (same layout
 * as rv_revela_step_ref's; retriever_grads / lm_grads [n_layers]) and zeroes
 * the device accumulators. */
int rv_step_gpu_take_grads(rv_step_gpu *g, rv_step_layer_grads *retriever_grads, rv_step_layer_grads *lm_grads);
typedef int rv_step_gpu_take_grads_fn(rv_step_gpu *g, rv_step_layer_grads *retriever_grads,
                                      rv_step_layer_grads *lm_grads);

/* Frees the device memory and closes the context; NULL is a no-op. */
void rv_step_gpu_close(rv_step_gpu *g);
typedef void rv_step_gpu_close_fn(rv_step_gpu *g);

#ifdef __cplusplus
}
#endif

#endif
