/* comm_tcp.h — the host communicator of data-parallel training (issue #8)
 * over TCP: one process per rank, host memory, no GPU and no MPI needed. For
 * CPU training on several processes or machines, and as a test of the
 * training loop's collectives between real processes.
 *
 * Topology: a star through rank 0. Every other rank holds one connection to
 * rank 0; each collective sends every rank's part to rank 0, which checks
 * that all ranks issued the same collective and replies. All-reduce sums
 * float by float in rank order (((b0 + b1) + b2) + ...), as the in-process
 * fake does (comm.h), so the result is reproducible bit for bit and does not
 * depend on timing or on the order in which data arrives. Rank 0 moves
 * (world - 1) times the buffer in each direction: simple and deterministic,
 * not bandwidth-optimal (a ring would be, at the price of a sum order that
 * depends on the world size and chunking).
 *
 * Set-up (rv_comm_tcp_open, every rank, collective):
 *   rank 0 listens on a kernel-chosen port (all interfaces) and publishes
 *   "host:port" and a random 64-bit job token through rv_rendezvous(e, ...)
 *   (launch_env.h). host is MASTER_ADDR under the TCP rendezvous; under the
 *   file rendezvous it is 127.0.0.1 when every rank is on one node
 *   (local_world_size == world_size), else gethostname() (which must then
 *   resolve to an address the other nodes reach: otherwise use MASTER_ADDR).
 *   The others connect (retrying until timeout_s) and say hello with their
 *   rank, world size and the token; rank 0 refuses a wrong token, a rank out
 *   of range or seen twice, or a different world size, with an error on both
 *   sides, and replies to all once world - 1 ranks have joined.
 *   The rendezvous file is NOT removed here: the caller removes it with
 *   rv_rendezvous_file_remove(e->path) on rank 0 once rv_comm_tcp_open has
 *   returned there (every rank has read it by then: they all connected).
 *
 * Semantics of the rv_comm (comm.h):
 *   - name "tcp", device_memory 0: buffers are host memory.
 *   - allreduce_start does the whole all-reduce before it returns (blocking)
 *     and returns a ticket; wait(ticket) checks the ticket and returns 0.
 *     There is no overlap with computation.
 *   - broadcast from any root (through rank 0 when the root is another
 *     rank), barrier, divide (a host loop), close (closes the sockets and
 *     frees the communicator).
 *   - Buffers are streamed; rank 0 needs one 4 MiB receive buffer whatever
 *     the size. Floats travel in the host's representation: all ranks must
 *     share it (checked at set-up).
 *   - Every message carries a header (kind, sequence number, size, root):
 *     when ranks issue different collectives at the same position (NCCL
 *     would deadlock), every rank fails with an error naming both ranks'
 *     collective and size.
 *   - A peer that closes its connection (it exited or crashed), stays
 *     silent for timeout_s, or breaks the protocol fails the collective with
 *     an error naming that rank and the collective ("comm tcp: rank 2 closed
 *     its connection during all-reduce #14 (4194304 floats)"); rank 0 passes
 *     its error on to the other ranks, so they fail with the same cause
 *     instead of waiting. timeout_s bounds every wait for progress, not the
 *     whole collective: it must exceed the largest skew between ranks
 *     reaching the same collective plus the time rank 0 spends on the
 *     other ranks' data. After a failure the communicator is unusable: every
 *     later collective fails with the first error (the streams are out of
 *     step).
 *   - SIGPIPE is never raised (MSG_NOSIGNAL); EINTR is retried.
 *
 * World size 1: returns rv_comm_identity() (comm.h), no sockets; closing it
 * is a no-op. */
#ifndef RV_COMM_TCP_H
#define RV_COMM_TCP_H

#include "comm.h"
#include "launch_env.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The host communicator of e->world_size processes, this one being e->rank.
 * timeout_s (> 0) bounds the set-up (rendezvous, connections) and every
 * later wait for a peer. NULL + rv_error_set on failure. */
rv_comm *rv_comm_tcp_open(const rv_launch_env *e, double timeout_s);

/* The bytes rank 0 publishes through the rendezvous (the wire format, for
 * tests and other implementations): an 8-byte magic "RVCTCP01", the host
 * (256 bytes, NUL-padded), the port (4 bytes little-endian) and the job
 * token (8 bytes little-endian). */
#define RV_COMM_TCP_RDV_BYTES 276
#define RV_COMM_TCP_RDV_TOKEN_OFFSET 268

#ifdef __cplusplus
}
#endif

#endif
