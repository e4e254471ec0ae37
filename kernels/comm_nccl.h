/* comm_nccl.h — the NCCL communicator of comm.h, in the CUDA backend
 * (bin/librevela-cuda.so). Tools reach these plain C functions through
 * rv_cuda_backend_sym("rv_comm_nccl_open"), etc.; the typedefs below are the
 * types to cast the looked-up pointers to.
 *
 * Set-up, one process per GPU:
 *   1. rank 0: rv_comm_nccl_unique_id(id, RV_NCCL_ID_BYTES)
 *   2. the id reaches every rank through a rendezvous (lib/launch_env.h:
 *      a shared file or rank 0's TCP socket)
 *   3. every rank: rv_comm_nccl_open(ctx, rank, world, id, RV_NCCL_ID_BYTES)
 *      with ctx = rv_cuda_open(local_rank); this blocks until all ranks
 *      have joined (NCCL's ncclCommInitRank; no timeout of its own).
 *
 * libnccl is loaded with dlopen on the first call, not linked: the backend
 * loads (and single-GPU training runs) on machines without NCCL.
 * Search: $RV_NCCL_LIB (a path), libnccl.so.2, libnccl.so, then the CUDA
 * toolkit's lib directories (/usr/local/cuda/lib, lib64). The NCCL ABI
 * has been stable since 2.x; the header this was compiled against is the
 * one whose declarations type the looked-up functions.
 *
 * Memory and ordering: all-reduce buffers must be device memory. A
 * collective starts after all work already queued on ctx's stream (an event
 * recorded there, waited by the communicator's own stream), runs on the
 * communicator's stream so it overlaps the backward that continues on
 * ctx's stream, and wait(ticket) makes ctx's stream wait for it (the host
 * does not block). broadcast accepts host memory (staged through the
 * device, blocking) or device memory (ordered on ctx's stream); barrier
 * blocks the host. divide is a kernel on ctx's stream.
 *
 * Determinism: NCCL's sum of each element follows a fixed schedule (ring or
 * tree, chosen from the world, the topology, the size and NCCL_* settings),
 * so reruns on the same machines with the same settings reproduce results;
 * a different world size or topology sums in another order. With one rank
 * the buffer is not modified (bit-identical to no communicator).
 *
 * In the emulated build (RV_CUDA_EMULATE) the functions exist and fail with
 * "NCCL is not available in the CUDA emulator". */
#ifndef RV_COMM_NCCL_H
#define RV_COMM_NCCL_H

#include <stddef.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RV_NCCL_ID_BYTES 128   /* NCCL_UNIQUE_ID_BYTES (checked at compile time) */

typedef struct rv_cuda rv_cuda;

/* A fresh NCCL unique id (rank 0 only). bytes must be RV_NCCL_ID_BYTES. */
int rv_comm_nccl_unique_id(void *id, size_t bytes);
/* The communicator of rank `rank` of `world` on ctx's device; NULL with an
 * error. ctx must outlive it; rv_comm_close releases it. */
rv_comm *rv_comm_nccl_open(rv_cuda *ctx, int rank, int world, const void *id, size_t id_bytes);
/* "2.28.9" style version of the loaded libnccl (loads it); NULL with an error. */
const char *rv_comm_nccl_version(void);

typedef int (*rv_comm_nccl_unique_id_fn)(void *id, size_t bytes);
typedef rv_comm *(*rv_comm_nccl_open_fn)(rv_cuda *ctx, int rank, int world, const void *id, size_t id_bytes);
typedef const char *(*rv_comm_nccl_version_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
