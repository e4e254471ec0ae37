/* comm.h — the collective-communication interface of data-parallel training
 * (issue #8): one process (or, in tests, one thread) per rank, each holding
 * an rv_comm that talks to the same group. A struct of function pointers so
 * that the gradient bucketing (grad_buckets.h) and the training loop are
 * written once and run unchanged on
 *   - the world-size-1 identity (rv_comm_identity): every collective is a
 *     no-op that touches no memory, so training through it is bit-for-bit
 *     training without it;
 *   - the fake in-process group (rv_comm_fake_*): N ranks as threads sharing
 *     memory, for CPU unit tests; sums in rank order, so results are
 *     reproducible and a test can compute them independently; it checks
 *     that every rank issues the same sequence of collectives;
 *   - NCCL (kernels/comm_nccl.h, in the CUDA backend): buffers are device
 *     memory, operations are ordered on the CUDA stream of the step.
 *
 * Asynchrony: allreduce_start returns a ticket at once; the buffer must not
 * be read or written until wait(ticket) has returned. What "returned" means
 * depends on the memory the communicator works on (device_memory): for host
 * communicators the data is final on the host; for NCCL, work enqueued
 * afterwards on the step's stream sees the final data (the host does not
 * block). Every rank must issue the same collectives, in the same order,
 * with the same sizes: NCCL matches collectives by issue order only, so a
 * difference deadlocks or corrupts silently there (the fake reports it).
 *
 * All functions return 0 (tickets: >= 0) or -1 with rv_error_set. */
#ifndef RV_COMM_H
#define RV_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rv_comm rv_comm;

struct rv_comm {
    const char *name;    /* "identity", "fake", "nccl": for messages */
    int device_memory;   /* 1: buffers are CUDA device pointers (NCCL) */
    int (*rank)(const rv_comm *c);
    int (*world_size)(const rv_comm *c);
    /* Starts buf[0..n) <- the sum over ranks of each rank's buf, in place. */
    long (*allreduce_start)(rv_comm *c, float *buf, size_t n);
    int (*wait)(rv_comm *c, long ticket);
    /* Every rank's buf[0..bytes) <- root's; blocking (host communicators) or
     * ordered on the step's stream (NCCL). */
    int (*broadcast)(rv_comm *c, void *buf, size_t bytes, int root);
    int (*barrier)(rv_comm *c);
    /* buf[i] = buf[i] / d, in the communicator's memory space (the average
     * after a sum; on NCCL a kernel on the step's stream). */
    int (*divide)(rv_comm *c, float *buf, size_t n, float d);
    void (*close)(rv_comm *c);   /* frees c (no-op for the identity) */
    void *impl;
};

static inline int rv_comm_rank(const rv_comm *c) { return c->rank(c); }
static inline int rv_comm_world_size(const rv_comm *c) { return c->world_size(c); }

/* The blocking all-reduce (start + wait). */
static inline int rv_comm_allreduce_sum(rv_comm *c, float *buf, size_t n)
{
    long t = c->allreduce_start(c, buf, n);
    return t < 0 ? -1 : c->wait(c, t);
}

static inline void rv_comm_close(rv_comm *c)
{
    if (c && c->close)
        c->close(c);
}

/* ---------------------------------------------------------------- lib/comm_local.c */

/* The world-size-1 communicator: rank 0 of 1, collectives touch nothing
 * (broadcast from a root other than 0 is an error). A shared static object;
 * close is a no-op. */
rv_comm *rv_comm_identity(void);

/* The in-process fake: world_size ranks, each driven by its own thread
 * through rv_comm_fake_rank(f, r). A collective completes when every rank
 * has issued it; the last rank to arrive computes it: all-reduce sums
 * float by float in rank order (((b0 + b1) + b2) + ...), the same on every
 * run whatever the threads' timing, and copies the sum to every rank's
 * buffer. The k-th collective of every rank must have the same kind and
 * size; otherwise every rank involved gets an error naming both. A wait
 * that exceeds the timeout (default 30 s) fails naming the ranks that never
 * issued the collective, so a test fails instead of hanging. */
typedef struct rv_comm_fake rv_comm_fake;

rv_comm_fake *rv_comm_fake_new(int world_size);   /* NULL on error */
rv_comm *rv_comm_fake_rank(rv_comm_fake *f, int rank);
void rv_comm_fake_set_timeout(rv_comm_fake *f, double seconds);
/* Each collective call sleeps a pseudo-random 0..max_us microseconds (drawn
 * from seed, rank and the call's number) before it is posted, to shake the
 * interleaving of the ranks. 0 (the default) disables it. */
void rv_comm_fake_set_delay(rv_comm_fake *f, unsigned max_us, unsigned long long seed);

/* The log of what a rank issued, in its order. */
enum { RV_COMM_OP_ALLREDUCE = 1, RV_COMM_OP_BROADCAST, RV_COMM_OP_BARRIER };
typedef struct {
    int kind;          /* RV_COMM_OP_* */
    size_t size;       /* floats (all-reduce) or bytes (broadcast); 0 for a barrier */
    const void *buf;   /* the issuing rank's buffer */
    int waited;        /* times this rank waited on it (all-reduce; 1 when used right) */
} rv_comm_fake_op;
size_t rv_comm_fake_n_ops(const rv_comm_fake *f, int rank);
const rv_comm_fake_op *rv_comm_fake_op_at(const rv_comm_fake *f, int rank, size_t i);

/* Call after every rank's thread has joined. */
void rv_comm_fake_free(rv_comm_fake *f);

#ifdef __cplusplus
}
#endif

#endif
