/* revela_step_gpu.h — the Revela training step (lib/revela_step_ref.c) on a
 * CUDA device: both networks' frozen weights uploaded once (f32 or bf16),
 * and per micro-batch the same four passes and backward as
 * rv_revela_step_ref, op for op, with the rv_cuda_* ops of cuda_ops.h and
 * every activation kept on the device. LoRA gradients accumulate in device
 * buffers across micro-batches. Then either the optimiser step runs on the
 * device (rv_step_gpu_optim_*: the adapters and AdamW's moments live there,
 * and come back on request), or rv_step_gpu_take_grads adds the gradients
 * into host buffers (and zeroes them) for the host's optimiser, after which
 * rv_step_gpu_load_lora uploads the new adapters.
 *
 * Supported: LoRA on both networks (any targets and rank), LoRA dropout
 * (the same masks as the CPU step, drawn on the device from the same
 * counter-based hash), tau, V-norm on or off, similarity fp32 or the bf16
 * emulation, skip_zero_weights, dual loss, projection biases, and
 * opts->recompute: per layer only its input is kept (and pass A's post-RoPE
 * K/V, which pass B's in-batch attention reads), one set of every other
 * activation is shared among all layers of the four passes, and each layer's
 * forward runs again just before its backward: the same losses and
 * gradients (bit-identical on the emulator) for a second forward through
 * every layer, with activation memory of about one layer instead of all.
 * Refused with an error (never silently different): head_dim > 128 or odd.
 * Frozen matrices (embedding, LM head, projections) are stored as f32 (the
 * CPU step up to summation order) or bf16 (half the memory, tensor-core
 * products; each projection's input and output gradient are narrowed to
 * bf16 for the frozen product, the LoRA products, norms, residual stream,
 * attention and gradients stay f32).
 *
 * Data parallelism (issue #8; one rank per GPU, each with its own handle;
 * design of the split and the scaling in lib/grad_buckets.h). With a
 * communicator attached (rv_step_gpu_set_comm) the gradient accumulators of
 * both nets are all-reduced (summed over the ranks, divisor 1) in buckets
 * of contiguous memory:
 *   - Overlap: before a rank's last micro-batch of an optimiser step the
 *     tool calls rv_step_gpu_mark_final; during that micro-batch's backward
 *     each adapter tensor is reported ready as soon as it is final (the
 *     LM's layer l after pass A's backward of layer l — pass B's backward
 *     ran before and added to the same accumulators; the retriever's layer
 *     l after the query pass's backward of layer l, the passage pass's ran
 *     before), so a bucket is launched while the backward of the lower
 *     layers and of the retriever still runs (on the device: on NCCL's
 *     stream, ordered after the GEMMs that produced it).
 *   - Fixed order: collectives are matched across ranks by issue order
 *     only, so buckets are launched strictly in plan order (LM top layer
 *     first ... retriever layer 0 last), whatever the readiness order.
 *     rv_step_gpu_take_grads reports every tensor not yet reported (a rank
 *     that had no micro-batch in this step, or never called mark_final)
 *     and waits for every bucket, so every rank issues the same
 *     collectives in the same order.
 *   - World 1 (rv_comm_identity, or NCCL with one rank): the collectives
 *     touch no memory, so losses and gradients are bit-identical to
 *     training without a communicator.
 * Without a communicator nothing of this runs (bit-identical to before).
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

#include "comm.h"              /* rv_comm */
#include "adamw.h"             /* rv_adamw_hparams */
#include "ops.h"               /* rv_wtype */
#include "revela_step_ref.h"   /* rv_step_decoder, rv_step_batch, rv_step_opts, ... */

typedef struct rv_step_gpu rv_step_gpu;
typedef struct rv_cuda rv_cuda;

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
 * the device accumulators. With a communicator: first completes the
 * all-reduce (reports every tensor not yet ready, waits for every bucket;
 * collective: every rank calls it once per optimiser step, with or without
 * micro-batches of its own), so what is added is the sum over the ranks,
 * the same on every rank. */
int rv_step_gpu_take_grads(rv_step_gpu *g, rv_step_layer_grads *retriever_grads, rv_step_layer_grads *lm_grads);
typedef int rv_step_gpu_take_grads_fn(rv_step_gpu *g, rv_step_layer_grads *retriever_grads,
                                      rv_step_layer_grads *lm_grads);

/* The step's CUDA context (device, stream), e.g. for rv_comm_nccl_open,
 * whose collectives are then ordered on the step's stream. Owned by g. */
rv_cuda *rv_step_gpu_context(rv_step_gpu *g);
typedef rv_cuda *rv_step_gpu_context_fn(rv_step_gpu *g);

/* The device bytes of activations and backward scratch that a step of B
 * chunks, n rows in all, allocates (what rv_step_result.activation_bytes
 * then reports), with or without recompute, computed without a device
 * from the decoders' shapes and adapter ranks alone (their weight pointers
 * are not read): for planning what fits a GPU (bench/plan_memory). */
int rv_step_gpu_activation_bytes(const rv_step_decoder *retriever, const rv_step_decoder *lm, rv_wtype storage,
                                 int B, size_t n, int recompute, size_t *bytes);

/* Attaches a communicator (borrowed: it must outlive the handle or be
 * detached first; NULL detaches) and plans the gradient buckets over both
 * nets' accumulators. Collective when the world is larger than 1 (the
 * ranks compare their plans): every rank calls it at the same point.
 * Refused while a final micro-batch's all-reduce is in flight. On the real
 * device the communicator must work on device memory (NCCL) unless the
 * world is 1; in the emulated build device pointers are host pointers and
 * the host communicators of comm.h (identity, fake) work on them directly.
 * set_comm uses buckets of RV_GRAD_BUCKET_BYTES_DEFAULT (25 MiB);
 * set_comm_buckets takes the bucket size in bytes (0: the default). On
 * failure no communicator is attached. */
int rv_step_gpu_set_comm(rv_step_gpu *g, rv_comm *comm);
typedef int rv_step_gpu_set_comm_fn(rv_step_gpu *g, rv_comm *comm);
int rv_step_gpu_set_comm_buckets(rv_step_gpu *g, rv_comm *comm, size_t bucket_bytes);
typedef int rv_step_gpu_set_comm_buckets_fn(rv_step_gpu *g, rv_comm *comm, size_t bucket_bytes);

/* The next rv_step_gpu_step is this rank's last micro-batch of the
 * optimiser step: its backward launches the buckets as they complete. A
 * further step before rv_step_gpu_take_grads is refused. Without a
 * communicator: a no-op. */
int rv_step_gpu_mark_final(rv_step_gpu *g);
typedef int rv_step_gpu_mark_final_fn(rv_step_gpu *g);

/* buf[0..n) <- its sum over the ranks (the step's loss and token counts):
 * through a small device buffer when the communicator works on device
 * memory, directly otherwise; no communicator: unchanged. Collective (same
 * n, same point on every rank); refused between a final micro-batch and
 * take_grads, where it would interleave with the bucket collectives
 * differently on ranks without a micro-batch. */
int rv_step_gpu_allreduce_host(rv_step_gpu *g, float *buf, size_t n);
typedef int rv_step_gpu_allreduce_host_fn(rv_step_gpu *g, float *buf, size_t n);

/* ---------------------------------------------------------------- the optimiser on the device
 * With one rank, or NCCL, the summed gradients are on the device already,
 * and the optimiser step runs there too: per optimiser step nothing the size
 * of the adapters crosses the bus (at r = 256 on a 1B retriever + 1B LM the
 * gradients, the adapters and each AdamW moment are 1.4 GB). The device's
 * packed adapters are the fp32 master copy and AdamW's moments live beside
 * them; the host copies (the decoders' adapters, the tool's moment arrays)
 * are brought up to date only on request (checkpoints, outputs). The
 * element operations are the host path's (rv_scale, lib/adamw.c's update,
 * rv_clip_factor); only the norm's double sum runs in another order. */
typedef struct {
    float grad_scale;                 /* the summed gradients are multiplied by this first (1 / grad_accum) */
    double clip_norm;                 /* rv_clip_factor's max_norm */
    int norm_lm;                      /* the LM's gradients count in the norm (not with --freeze-lm) */
    int update_retriever, update_lm;  /* the nets AdamW updates */
    rv_adamw_hparams adam;            /* with this update's lr */
    long t;                           /* the update's number, from 1 */
} rv_step_gpu_optim;

/* Uploads the adapters (the decoders' lora_a / lora_b, as load_lora) and
 * AdamW's moments, r_m / r_v (l_m / l_v) laid out like the tool's flat
 * parameter array r_params (l_params) that the decoders' adapters point
 * into: a tensor's moments at the offset of its lora_a / lora_b from the
 * array's start. NULL moments: zeros. Call once after open (and after
 * set_comm) and whenever the host state changed. */
int rv_step_gpu_optim_upload(rv_step_gpu *g, const float *r_params, const float *r_m, const float *r_v,
                             const float *l_params, const float *l_m, const float *l_v);
typedef int rv_step_gpu_optim_upload_fn(rv_step_gpu *g, const float *r_params, const float *r_m, const float *r_v,
                                        const float *l_params, const float *l_m, const float *l_v);

/* One optimiser step instead of take_grads + the host's: completes the
 * all-reduce (as take_grads; collective with a communicator), multiplies
 * the gradients by grad_scale, *grad_norm = the norm before clipping,
 * clips, runs AdamW on the nets asked for, zeroes the accumulators. The
 * adapters the next micro-batch uses are the updated ones. */
int rv_step_gpu_optim_step(rv_step_gpu *g, const rv_step_gpu_optim *o, double *grad_norm);
typedef int rv_step_gpu_optim_step_fn(rv_step_gpu *g, const rv_step_gpu_optim *o, double *grad_norm);

/* The device state back to the host: the adapters into the decoders'
 * lora_a / lora_b (the tool's parameter arrays), the moments into r_m / r_v
 * and l_m / l_v (layout as optim_upload). */
int rv_step_gpu_optim_download(rv_step_gpu *g, const float *r_params, float *r_m, float *r_v, const float *l_params,
                               float *l_m, float *l_v);
typedef int rv_step_gpu_optim_download_fn(rv_step_gpu *g, const float *r_params, float *r_m, float *r_v,
                                          const float *l_params, float *l_m, float *l_v);

/* Frees the device memory and closes the context; NULL is a no-op. */
void rv_step_gpu_close(rv_step_gpu *g);
typedef void rv_step_gpu_close_fn(rv_step_gpu *g);

#ifdef __cplusplus
}
#endif

#endif
