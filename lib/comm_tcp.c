/* comm_tcp.c — the host communicator over TCP, a star through rank 0
 * (design in comm_tcp.h). */
#include "comm_tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

#define CHUNK_FLOATS ((size_t)1 << 20)   /* rank 0's receive buffer: 4 MiB, whatever the collective's size */
#define HDR_BYTES 32
#define HDR_MAGIC 0x43545652u            /* "RVTC" little-endian: catches a stream that fell out of step */
#define OP_ERROR 100                     /* rank 0 to the others: the collective failed; payload: the message */
#define HELLO_BYTES 32
#define REPLY_BYTES 256

static const char rdv_magic[8] = {'R', 'V', 'C', 'T', 'C', 'P', '0', '1'};
static const char hello_magic[8] = {'R', 'V', 'C', 'H', 'E', 'L', 'L', 'O'};
static const char reply_magic[8] = {'R', 'V', 'C', 'R', 'E', 'P', 'L', 'Y'};

typedef struct {
    rv_comm comm;
    int rank, world;
    double timeout;
    int *fd;            /* rank 0: fd[r] is rank r's connection (r >= 1); the others: fd[0] */
    float *chunk;       /* rank 0's receive buffer [CHUNK_FLOATS] */
    uint64_t seq;       /* collectives issued so far: the number of the next one */
    char broken[640];   /* the first failure; the streams are out of step after it */
} tcp_comm;

/* ---------------------------------------------------------------- bytes, time */

/* Integers on the wire are little-endian, whatever the host. */
static void put_le(unsigned char *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}
#define put32(b, v) put_le(b, v, 4)
#define put64(b, v) put_le(b, v, 8)
#define get32(b) ((uint32_t)get_le(b, 4))
#define get64(b) get_le(b, 8)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int poll_ms(double seconds)   /* rounded up, so a short wait is not a busy loop */
{
    double ms = seconds * 1000 + 1;
    return ms > 3.6e6 ? 3600000 : ms < 0 ? 0 : (int)ms;
}

/* ---------------------------------------------------------------- transfer */

enum { IO_OK = 0, IO_CLOSED, IO_TIMEOUT, IO_ERRNO, IO_PEER_SPOKE };

/* Sends or receives exactly len bytes on a non-blocking socket, waiting at
 * most timeout_s for each piece of progress (a slow but live peer is fine, a
 * stuck one is not). With watch_in (a rank sending to rank 0), data arriving
 * from the peer ends the send with IO_PEER_SPOKE: rank 0 only speaks before
 * it has read everything to report an error, and the sender must read that
 * error rather than block on a send nobody will drain. */
static int xfer(int fd, void *buf, size_t len, int sending, int watch_in, double timeout_s, int *err)
{
    unsigned char *p = buf;
    double until = now_s() + timeout_s;
    while (len) {
        ssize_t k = sending ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, len, MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            len -= (size_t)k;
            until = now_s() + timeout_s;
            continue;
        }
        if (k == 0)
            return IO_CLOSED;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            *err = errno;
            if (errno == ECONNRESET || errno == EPIPE)   /* rank 0 may have said why before it closed: read it */
                return sending && watch_in ? IO_PEER_SPOKE : IO_CLOSED;
            return IO_ERRNO;
        }
        double left = until - now_s();
        if (left <= 0)
            return IO_TIMEOUT;
        struct pollfd pfd = {fd, (short)(sending ? POLLOUT | (watch_in ? POLLIN : 0) : POLLIN), 0};
        int pr = poll(&pfd, 1, poll_ms(left));
        if (pr < 0 && errno != EINTR) {
            *err = errno;
            return IO_ERRNO;
        }
        if (pr > 0 && sending && watch_in && (pfd.revents & (POLLIN | POLLHUP)))
            return IO_PEER_SPOKE;
    }
    return IO_OK;
}

static int fail(tcp_comm *t)   /* records the error that makes the communicator unusable */
{
    snprintf(t->broken, sizeof t->broken, "%s", rv_error_get());
    return -1;
}

static int io_error(const tcp_comm *t, int peer, int io, int err, int sending, const char *during)
{
    if (io == IO_CLOSED)
        return rv_error_set("comm tcp: rank %d closed its connection during %s", peer, during);
    if (io == IO_TIMEOUT)
        return rv_error_set("comm tcp: rank %d waited %g s for rank %d during %s", t->rank, t->timeout, peer,
                            during);
    return rv_error_set("comm tcp: rank %d %s rank %d during %s: %s", t->rank, sending ? "sending to" : "receiving from",
                        peer, during, strerror(err));
}

/* ---------------------------------------------------------------- headers */

typedef struct {
    uint32_t op;
    int32_t root;
    uint64_t seq, size;   /* size: floats (all-reduce), bytes (broadcast, error message) */
} hdr;

static void hdr_put(unsigned char *b, hdr h)
{
    put32(b, HDR_MAGIC);
    put32(b + 4, h.op);
    put32(b + 8, (uint32_t)h.root);
    put32(b + 12, 0);
    put64(b + 16, h.seq);
    put64(b + 24, h.size);
}

static int hdr_get(const unsigned char *b, hdr *h)
{
    h->op = get32(b + 4);
    h->root = (int32_t)get32(b + 8);
    h->seq = get64(b + 16);
    h->size = get64(b + 24);
    return get32(b) == HDR_MAGIC ? 0 : -1;
}

static int hdr_same(hdr a, hdr b) { return a.op == b.op && a.root == b.root && a.seq == b.seq && a.size == b.size; }

/* "all-reduce #14 (4194304 floats)" (the collective, in error messages), or
 * without its number "all-reduce of 4194304 floats" (in a mismatch) */
static void describe(char *out, size_t cap, hdr h, int numbered)
{
    unsigned long long n = h.size, k = h.seq;
    const char *name = h.op == RV_COMM_OP_ALLREDUCE ? "all-reduce" : h.op == RV_COMM_OP_BROADCAST ? "broadcast"
                       : h.op == RV_COMM_OP_BARRIER ? "barrier" : "unknown collective";
    char detail[80] = "";
    if (h.op == RV_COMM_OP_ALLREDUCE)
        snprintf(detail, sizeof detail, "%llu floats", n);
    else if (h.op == RV_COMM_OP_BROADCAST)
        snprintf(detail, sizeof detail, "%llu bytes from rank %d", n, (int)h.root);
    if (numbered)
        snprintf(out, cap, detail[0] ? "%s #%llu (%s)" : "%s #%llu", name, k, detail);
    else
        snprintf(out, cap, detail[0] ? "%s of %s" : "%s", name, detail);
}

/* ---------------------------------------------------------------- collectives */

/* Rank 0 failed collective seq: every rank from `first` on is told why
 * (best effort, short waits), so that it fails with the cause instead of
 * waiting out its timeout. */
static void root_spread(tcp_comm *t, uint64_t seq, int first)
{
    const char *msg = rv_error_get();
    size_t n = strlen(msg);
    unsigned char hb[HDR_BYTES];
    hdr_put(hb, (hdr){OP_ERROR, 0, seq, n});
    double w = t->timeout < 2 ? t->timeout : 2;
    int err;
    for (int r = first; r < t->world; r++)
        if (xfer(t->fd[r], hb, HDR_BYTES, 1, 0, w, &err) == IO_OK)
            xfer(t->fd[r], (void *)msg, n, 1, 0, w, &err);
}

/* Rank 0: reads every rank's header (and contribution) in rank order,
 * checks it against its own, then sends the result to every rank. */
static int root_collective(tcp_comm *t, hdr me, void *buf, const char *desc)
{
    unsigned char hb[HDR_BYTES];
    int err = 0, io;
    for (int r = 1; r < t->world; r++) {
        int fd = t->fd[r];
        hdr h;
        if ((io = xfer(fd, hb, HDR_BYTES, 0, 0, t->timeout, &err))) {
            io_error(t, r, io, err, 0, desc);
            goto spread;
        }
        if (hdr_get(hb, &h) < 0 || h.seq != me.seq) {
            rv_error_set("comm tcp: rank %d is out of step during %s (a garbled or unexpected message)", r, desc);
            goto spread;
        }
        if (!hdr_same(h, me)) {   /* NCCL would hang or corrupt silently here */
            char a[96], b[96];
            describe(a, sizeof a, me, 0);
            describe(b, sizeof b, h, 0);
            rv_error_set("comm tcp: collective #%llu differs between ranks: rank 0 issued %s, rank %d issued %s",
                         (unsigned long long)me.seq, a, r, b);
            goto spread;
        }
        if (me.op == RV_COMM_OP_ALLREDUCE) {
            /* buf holds b0 + ... + b(r-1): adding rank r's chunk by chunk keeps
             * the rank order of the fake, (((b0 + b1) + b2) + ...), bit for bit */
            float *acc = buf;
            for (size_t off = 0; off < me.size; off += CHUNK_FLOATS) {
                size_t m = me.size - off < CHUNK_FLOATS ? (size_t)(me.size - off) : CHUNK_FLOATS;
                if ((io = xfer(fd, t->chunk, m * sizeof(float), 0, 0, t->timeout, &err))) {
                    io_error(t, r, io, err, 0, desc);
                    goto spread;
                }
                for (size_t i = 0; i < m; i++)
                    acc[off + i] += t->chunk[i];
            }
        } else if (me.op == RV_COMM_OP_BROADCAST && me.root == r &&
                   (io = xfer(fd, buf, me.size, 0, 0, t->timeout, &err))) {
            io_error(t, r, io, err, 0, desc);
            goto spread;
        }
    }
    hdr_put(hb, me);
    for (int r = 1; r < t->world; r++) {
        size_t bytes = me.op == RV_COMM_OP_ALLREDUCE ? me.size * sizeof(float)
                       : me.op == RV_COMM_OP_BROADCAST && me.root != r ? me.size : 0;
        io = xfer(t->fd[r], hb, HDR_BYTES, 1, 0, t->timeout, &err);
        if (!io)
            io = xfer(t->fd[r], buf, bytes, 1, 0, t->timeout, &err);
        if (io) {
            io_error(t, r, io, err, 1, desc);
            root_spread(t, me.seq, r + 1);   /* ranks before r already have the result */
            return fail(t);
        }
    }
    return 0;
spread:
    root_spread(t, me.seq, 1);
    return fail(t);
}

/* The other ranks: header and contribution to rank 0, then its reply. */
static int peer_collective(tcp_comm *t, hdr me, void *buf, const char *desc)
{
    unsigned char hb[HDR_BYTES];
    int fd = t->fd[0], err = 0;
    size_t out = me.op == RV_COMM_OP_ALLREDUCE ? me.size * sizeof(float)
                 : me.op == RV_COMM_OP_BROADCAST && me.root == t->rank ? me.size : 0;
    size_t in = me.op == RV_COMM_OP_ALLREDUCE ? out : me.op == RV_COMM_OP_BROADCAST && me.root != t->rank ? me.size : 0;
    hdr_put(hb, me);
    int io = xfer(fd, hb, HDR_BYTES, 1, 1, t->timeout, &err);
    if (!io)
        io = xfer(fd, buf, out, 1, 1, t->timeout, &err);
    if (io && io != IO_PEER_SPOKE)
        return io_error(t, 0, io, err, 1, desc), fail(t);
    /* Rank 0 may itself be waiting out its timeout on a stuck rank; wait
     * longer than it, so that its diagnosis (naming that rank) arrives
     * before this rank gives up on rank 0, which would name the wrong one. */
    hdr h;
    double grace = t->timeout < 5 ? t->timeout : 5;
    if ((io = xfer(fd, hb, HDR_BYTES, 0, 0, t->timeout + grace, &err)) == IO_TIMEOUT)
        return rv_error_set("comm tcp: rank %d waited %g s for rank 0 during %s", t->rank, t->timeout + grace, desc),
               fail(t);
    if (io)
        return io_error(t, 0, io, err, 0, desc), fail(t);
    if (hdr_get(hb, &h) < 0 || h.seq != me.seq)
        return rv_error_set("comm tcp: rank 0 is out of step during %s (a garbled or unexpected message)", desc),
               fail(t);
    if (h.op == OP_ERROR) {   /* rank 0's diagnosis, which names the rank at fault */
        char msg[512] = "";
        size_t n = h.size < sizeof msg - 1 ? (size_t)h.size : sizeof msg - 1;
        if (xfer(fd, msg, n, 0, 0, t->timeout, &err) == IO_OK)
            msg[n] = '\0';
        else
            snprintf(msg, sizeof msg, "comm tcp: rank 0 failed %s and could not say why", desc);
        return rv_error_set("%s (rank %d, told by rank 0)", msg, t->rank), fail(t);
    }
    if (!hdr_same(h, me))
        return rv_error_set("comm tcp: rank 0 answered %s with another collective (protocol out of step)", desc),
               fail(t);
    if ((io = xfer(fd, buf, in, 0, 0, t->timeout, &err)))
        return io_error(t, 0, io, err, 0, desc), fail(t);
    return 0;
}

static int collective(tcp_comm *t, int op, void *buf, size_t size, int root)
{
    if (t->broken[0])
        return rv_error_set("comm tcp: rank %d cannot go on after an earlier failure: %s", t->rank, t->broken);
    hdr me = {(uint32_t)op, root, t->seq++, size};
    char desc[128];
    describe(desc, sizeof desc, me, 1);
    return t->rank == 0 ? root_collective(t, me, buf, desc) : peer_collective(t, me, buf, desc);
}

static int tc_rank(const rv_comm *c) { return ((const tcp_comm *)c->impl)->rank; }
static int tc_world(const rv_comm *c) { return ((const tcp_comm *)c->impl)->world; }

/* The work is done here, before returning: the ticket is the collective's
 * number, and wait only checks it. */
static long tc_start(rv_comm *c, float *buf, size_t n)
{
    tcp_comm *t = c->impl;
    long ticket = (long)t->seq;
    return collective(t, RV_COMM_OP_ALLREDUCE, buf, n, 0) < 0 ? -1 : ticket;
}

static int tc_wait(rv_comm *c, long ticket)
{
    tcp_comm *t = c->impl;
    if (ticket < 0 || (uint64_t)ticket >= t->seq)
        return rv_error_set("comm tcp: rank %d waits on ticket %ld it never issued", t->rank, ticket);
    return 0;
}

static int tc_broadcast(rv_comm *c, void *buf, size_t bytes, int root)
{
    tcp_comm *t = c->impl;
    if (root < 0 || root >= t->world)
        return rv_error_set("comm tcp: broadcast root %d outside a world of %d", root, t->world);
    return collective(t, RV_COMM_OP_BROADCAST, buf, bytes, root);
}

static int tc_barrier(rv_comm *c) { return collective(c->impl, RV_COMM_OP_BARRIER, NULL, 0, 0); }

static int tc_divide(rv_comm *c, float *buf, size_t n, float d)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = buf[i] / d;
    return 0;
}

static void tc_free(tcp_comm *t)
{
    if (!t)
        return;
    if (t->fd)
        for (int r = 0; r < t->world; r++)
            if (t->fd[r] >= 0)
                close(t->fd[r]);
    free(t->fd);
    free(t->chunk);
    free(t);
}

static void tc_close(rv_comm *c) { tc_free(c->impl); }

/* ---------------------------------------------------------------- set-up */

static void tune(int fd)
{
    int one = 1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    /* a program this process execs (rv-train --gpus spawns ranks) must not
     * hold our connections open: a dead rank's sockets have to close */
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    /* headers are small and every collective waits for an answer: no Nagle delay */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A listening socket on a kernel-chosen port, all interfaces (IPv6 dual-stack
 * when there is IPv6, so IPv4 peers get in too). */
static int listen_any(int world, int *port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int g = getaddrinfo(NULL, "0", &hints, &res), fd = -1, err = 0;
    if (g != 0)
        return rv_error_set("comm tcp: rank 0 cannot listen: %s", gai_strerror(g));
    for (int pass = 0; pass < 2 && fd < 0; pass++)
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            if ((pass == 0) != (a->ai_family == AF_INET6))
                continue;
            if ((fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol)) < 0) {
                err = errno;
                continue;
            }
            int zero = 0;
            if (a->ai_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, world < SOMAXCONN ? world : SOMAXCONN) < 0) {
                err = errno;
                close(fd);
                fd = -1;
            }
        }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        err = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return rv_error_set("comm tcp: rank 0 cannot listen on a TCP port: %s", strerror(err));
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    tune(fd);
    return fd;
}

static uint64_t job_token(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof v, 1, f) != 1) {   /* no urandom: time and pid still differ between jobs */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40);
    }
    if (f)
        fclose(f);
    return v;
}

/* The hello also carries the bit patterns of a float and an integer: floats
 * cross the wire as they lie in memory, so every rank must lay them out alike. */
static void hello_put(unsigned char *b, int rank, int world, uint64_t token)
{
    const float f = 1.5f;
    const uint32_t order = 0x01020304u;
    memset(b, 0, HELLO_BYTES);
    memcpy(b, hello_magic, 8);
    put32(b + 8, (uint32_t)rank);
    put32(b + 12, (uint32_t)world);
    put64(b + 16, token);
    memcpy(b + 24, &f, 4);
    memcpy(b + 28, &order, 4);
}

static void reply_put(unsigned char *b, int ok, const char *reason)
{
    memset(b, 0, REPLY_BYTES);
    memcpy(b, reply_magic, 8);
    put32(b + 8, ok ? 0 : 1);
    snprintf((char *)b + 12, REPLY_BYTES - 12, "%s", reason);
}

static int root_setup(tcp_comm *t, const rv_launch_env *e, double until)
{
    int port = 0, lfd = listen_any(t->world, &port);
    if (lfd < 0)
        return -1;
    unsigned char rdv[RV_COMM_TCP_RDV_BYTES] = {0}, hb[HELLO_BYTES], mine[HELLO_BYTES], rb[REPLY_BYTES];
    const uint64_t token = job_token();
    memcpy(rdv, rdv_magic, 8);
    if (e->rendezvous == RV_RDV_TCP)   /* the address the launcher says every rank reaches */
        snprintf((char *)rdv + 8, 256, "%s", e->addr);
    else if (e->local_world_size == e->world_size)   /* one node: loopback, whatever the host name resolves to */
        snprintf((char *)rdv + 8, 256, "127.0.0.1");
    else if (gethostname((char *)rdv + 8, 255) < 0) {
        close(lfd);
        return rv_error_set("comm tcp: gethostname: %s", strerror(errno));
    }
    put32(rdv + 264, (uint32_t)port);
    put64(rdv + RV_COMM_TCP_RDV_TOKEN_OFFSET, token);
    if (rv_rendezvous(e, rdv, sizeof rdv, until - now_s()) < 0) {
        close(lfd);
        return rv_error_prefix("comm tcp");
    }
    hello_put(mine, 0, t->world, token);
    int joined = 0, err = 0;
    char reason[240] = "";
    while (joined < t->world - 1 && !reason[0]) {
        struct pollfd pfd = {lfd, POLLIN, 0};
        double left = until - now_s();
        int pr = left > 0 ? poll(&pfd, 1, poll_ms(left)) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            char missing[160] = "";
            size_t len = 0;
            for (int r = 1; r < t->world && len + 12 < sizeof missing; r++)
                if (t->fd[r] < 0)
                    len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d", len ? "," : "", r);
            snprintf(reason, sizeof reason, "%d of %d ranks connected to rank 0 in time (missing: %s)", joined,
                     t->world - 1, missing);
            break;
        }
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            continue;
        tune(c);
        /* something that does not say our hello (a port scanner, a health
         * check) is dropped; the real ranks are unaffected */
        if (xfer(c, hb, HELLO_BYTES, 0, 0, until - now_s(), &err) != IO_OK || memcmp(hb, hello_magic, 8) != 0) {
            close(c);
            continue;
        }
        unsigned r = get32(hb + 8), w = get32(hb + 12);
        if (get64(hb + 16) != token)
            snprintf(reason, sizeof reason, "a peer calling itself rank %u presented a wrong job token (a process of "
                     "another job or a stale rendezvous?)", r);
        else if (w != (unsigned)t->world)
            snprintf(reason, sizeof reason, "rank %u believes the world has %u ranks, rank 0 has %d", r, w, t->world);
        else if (r < 1 || r >= (unsigned)t->world)
            snprintf(reason, sizeof reason, "a peer claims rank %u, outside 1..%d", r, t->world - 1);
        else if (t->fd[r] >= 0)
            snprintf(reason, sizeof reason, "rank %u connected twice (two processes were given rank %u?)", r, r);
        else if (memcmp(hb + 24, mine + 24, 8) != 0)
            snprintf(reason, sizeof reason, "rank %u lays out floats or integers differently from rank 0", r);
        if (reason[0]) {   /* the peer learns why too */
            reply_put(rb, 0, reason);
            xfer(c, rb, REPLY_BYTES, 1, 0, 1, &err);
            close(c);
            break;
        }
        t->fd[r] = c;
        joined++;
    }
    close(lfd);
    reply_put(rb, !reason[0], reason);
    for (int r = 1; r < t->world; r++)
        if (t->fd[r] >= 0) {
            int io = xfer(t->fd[r], rb, REPLY_BYTES, 1, 0, until - now_s() > 1 ? until - now_s() : 1, &err);
            if (io && !reason[0])
                return io_error(t, r, io, err, 1, "set-up");
        }
    return reason[0] ? rv_error_set("comm tcp: set-up failed: %s", reason) : 0;
}

static int connect_until(const char *host, int port, double until, int rank)
{
    char ps[16], last[200] = "no address";
    snprintf(ps, sizeof ps, "%d", port);
    for (;;) {
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(host, ps, &hints, &res);
        if (g != 0)
            snprintf(last, sizeof last, "%s", gai_strerror(g));
        for (struct addrinfo *a = g == 0 ? res : NULL; a; a = a->ai_next) {
            int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
            if (fd < 0)
                continue;
            tune(fd);
            /* non-blocking connect: an unreachable host must not hold us past the deadline */
            int rc = connect(fd, a->ai_addr, a->ai_addrlen), soerr = 0;
            if (rc < 0 && errno == EINPROGRESS) {
                struct pollfd pfd = {fd, POLLOUT, 0};
                socklen_t sl = sizeof soerr;
                double left = until - now_s();
                if (poll(&pfd, 1, poll_ms(left > 0 ? left : 0)) == 1 &&
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0)
                    rc = soerr ? (errno = soerr, -1) : 0;
                else
                    errno = ETIMEDOUT;
            }
            if (rc == 0) {
                freeaddrinfo(res);
                return fd;
            }
            snprintf(last, sizeof last, "%s", strerror(errno));
            close(fd);
        }
        if (g == 0)
            freeaddrinfo(res);
        if (now_s() >= until)
            return rv_error_set("comm tcp: rank %d could not connect to rank 0 at %s:%d: %s", rank, host, port, last);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int peer_setup(tcp_comm *t, const rv_launch_env *e, double until)
{
    unsigned char rdv[RV_COMM_TCP_RDV_BYTES], hb[HELLO_BYTES], rb[REPLY_BYTES];
    if (rv_rendezvous(e, rdv, sizeof rdv, until - now_s()) < 0)
        return rv_error_prefix("comm tcp");
    if (memcmp(rdv, rdv_magic, 8) != 0)
        return rv_error_set("comm tcp: the rendezvous does not hold a TCP communicator's address");
    char host[256];
    memcpy(host, rdv + 8, 255);
    host[255] = '\0';
    int port = (int)get32(rdv + 264), err = 0;
    if ((t->fd[0] = connect_until(host, port, until, t->rank)) < 0)
        return -1;
    hello_put(hb, t->rank, t->world, get64(rdv + RV_COMM_TCP_RDV_TOKEN_OFFSET));
    int io = xfer(t->fd[0], hb, HELLO_BYTES, 1, 0, until - now_s(), &err);
    if (io)
        return io_error(t, 0, io, err, 1, "set-up");
    /* rank 0 answers once every rank has joined, or when it gives up (at
     * `until` too): the grace lets its reason arrive before we give up */
    double grace = t->timeout < 5 ? t->timeout : 5;
    if ((io = xfer(t->fd[0], rb, REPLY_BYTES, 0, 0, until + grace - now_s(), &err)))
        return io_error(t, 0, io, err, 0, "set-up");
    rb[REPLY_BYTES - 1] = 0;
    if (memcmp(rb, reply_magic, 8) != 0)
        return rv_error_set("comm tcp: rank %d: %s:%d is not a revela rank 0", t->rank, host, port);
    if (get32(rb + 8) != 0)
        return rv_error_set("comm tcp: rank 0 refused rank %d: %s", t->rank, (const char *)rb + 12);
    return 0;
}

rv_comm *rv_comm_tcp_open(const rv_launch_env *e, double timeout_s)
{
    if (e->world_size < 1 || e->rank < 0 || e->rank >= e->world_size) {
        rv_error_set("comm tcp: rank %d in a world of %d", e->rank, e->world_size);
        return NULL;
    }
    if (!(timeout_s > 0)) {
        rv_error_set("comm tcp: timeout %g s (must be > 0)", timeout_s);
        return NULL;
    }
    if (e->world_size == 1)
        return rv_comm_identity();
    const double until = now_s() + timeout_s;
    tcp_comm *t = calloc(1, sizeof *t);
    if (t && (t->fd = malloc((size_t)e->world_size * sizeof *t->fd))) {
        t->world = e->world_size;
        for (int r = 0; r < t->world; r++)
            t->fd[r] = -1;
    }
    if (!t || !t->fd || (e->rank == 0 && !(t->chunk = malloc(CHUNK_FLOATS * sizeof *t->chunk)))) {
        tc_free(t);
        rv_error_set("comm tcp: out of memory");
        return NULL;
    }
    t->rank = e->rank;
    t->timeout = timeout_s;
    if ((t->rank == 0 ? root_setup(t, e, until) : peer_setup(t, e, until)) < 0) {
        tc_free(t);
        return NULL;
    }
    t->comm = (rv_comm){"tcp", 0, tc_rank, tc_world, tc_start, tc_wait, tc_broadcast, tc_barrier,
                        tc_divide, tc_close, t};
    return &t->comm;
}
