/* grad_buckets.h — gradient all-reduce for data-parallel training (issue #8),
 * bucketed and overlapped with the backward pass.
 *
 * Data parallelism in rv-train. One process per GPU ("rank"), N ranks. An
 * optimizer step consumes --grad-accum groups from the one global data
 * order (rv_train_data_order; the position in it is global state: epoch,
 * pos, micro). Rank r takes the step's groups k = r, r + N, r + 2N, ...
 * (k counts the step's groups from 0, so ranks get grad_accum / N groups,
 * the first grad_accum % N ranks one more); dropout and every other
 * per-group random stream is keyed by the group's global micro index, not by
 * the rank. Each rank sums the gradients of its groups, the ranks all-reduce
 * (sum) those sums, and every rank then holds the same global sum and runs
 * the same clipping and AdamW update on the same parameters, so parameters,
 * moments and position stay identical on all ranks without being sent.
 * Scaling: rv-train divides the summed gradient by grad_accum (a mean over
 * the step's groups); with ranks holding unequal numbers of groups a plain
 * average over ranks would weight groups unequally, so rv-train should set
 * the divisor to 1 (rv_grad_buckets_set_divisor: the pure sum) and keep its
 * own 1/grad_accum scaling. The default divisor, the world size, is the
 * PyTorch DDP average, right when every rank's gradient is already a mean
 * over equally many examples.
 *
 * Checkpoints from N GPUs resume on M. The state is global (parameters,
 * AdamW moments, step, data position) and identical on every rank, so only
 * rank 0 writes checkpoints (the others wait at a barrier so no rank runs
 * ahead of a checkpoint that then fails). On resume every rank reads the same
 * checkpoint and splits the next step's groups by the new M as above: the
 * same groups in the same order are consumed whatever N and M are, and the
 * step differs from an uninterrupted run only by the float summation order
 * of the all-reduce (the sum over ranks is grouped by rank). A world size of
 * 1 through the communicator is bit-identical to training without one.
 *
 * Why buckets. One all-reduce per tensor (hundreds of small LoRA matrices)
 * pays the collective's latency hundreds of times; one all-reduce of
 * everything after the backward cannot overlap with it. Buckets of about
 * bucket_bytes (25 MiB by default, as PyTorch DDP) are launched as soon as
 * the backward has finished every tensor in them, while the backward goes on
 * with earlier layers. Tensors are listed in the order the backward produces
 * them (last layer first), so buckets fill in that order.
 *
 * Zero copies. A bucket is one contiguous range of memory, all-reduced in
 * place: consecutive tensors (in list order) join the current bucket when
 * each is adjacent in memory to the range so far (directly below or above
 * it) and the budget allows. rv_train_net keeps all gradients in one flat
 * array, layer by layer, so the layers' slices listed last layer first are
 * adjacent and fill buckets completely; unrelated allocations simply start a
 * new bucket. A tensor larger than the budget is a bucket of its own. No
 * staging buffer means no device allocation for the NCCL path and nothing
 * that could change a bit at world size 1.
 *
 * Why a fixed order. Collectives are matched across ranks by issue order
 * only (NCCL has no tags). Readiness order can differ between ranks (a
 * different group length, another code path), so ready() never launches a
 * bucket out of turn: bucket i is launched once it and buckets 0..i-1 are all
 * complete. Every rank issues the same collectives in the same order with the
 * same sizes, and the sum of each element is computed by the communicator in
 * an order that does not depend on timing (the fake: rank order; NCCL: its
 * fixed ring/tree schedule for a given world and configuration).
 *
 * Use per step: ready(i) for every tensor as the backward finalises it, in
 * any order, each exactly once; then finish(), which waits for every bucket
 * and divides by the divisor (not at all when it is 1). finish() resets the
 * readiness for the next step, whether it succeeds or fails. */
#ifndef RV_GRAD_BUCKETS_H
#define RV_GRAD_BUCKETS_H

#include <stddef.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RV_GRAD_BUCKET_BYTES_DEFAULT ((size_t)25 << 20)

typedef struct {
    float *data;   /* in the communicator's memory space (device for NCCL) */
    size_t n;      /* elements; 0 is allowed (still reported ready; sends nothing) */
} rv_grad_tensor;

typedef struct rv_grad_buckets rv_grad_buckets;

/* Plans the buckets of tensors[0..n_tensors) (backward order) under
 * bucket_bytes (0: the default). The tensors' memory must not overlap.
 * comm is borrowed. Collective when the world is larger than 1 (every rank
 * calls it at the same point): the ranks compare their plans (world + 1
 * small broadcasts) and all fail alike when any differs, since mismatched
 * all-reduces would hang. NULL on error. */
rv_grad_buckets *rv_grad_buckets_new(const rv_grad_tensor *tensors, size_t n_tensors, size_t bucket_bytes,
                                     rv_comm *comm);
void rv_grad_buckets_free(rv_grad_buckets *b);

/* finish() divides the summed gradients by d (default: the world size; 1:
 * the sum is left as is). d must be > 0. */
int rv_grad_buckets_set_divisor(rv_grad_buckets *b, float d);

/* Tensor i's gradient is final: launches every bucket that is now complete
 * and whose predecessors have all been launched. Errors: i out of range,
 * i already ready in this step, a failed launch. */
int rv_grad_buckets_ready(rv_grad_buckets *b, size_t i);

/* Waits for every bucket and divides. Errors (after resetting): a tensor
 * not ready (the message names how many and the first), a failed
 * collective. */
int rv_grad_buckets_finish(rv_grad_buckets *b);

/* The plan, for tests and logs. */
size_t rv_grad_buckets_count(const rv_grad_buckets *b);
typedef struct {
    float *data;           /* lowest address of the range */
    size_t n;              /* floats in the range */
    size_t first, count;   /* tensors[first .. first + count) */
} rv_grad_bucket_info;
int rv_grad_buckets_info(const rv_grad_buckets *b, size_t bucket, rv_grad_bucket_info *out);

#ifdef __cplusplus
}
#endif

#endif
