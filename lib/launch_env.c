/* launch_env.c — launcher variables and the rendezvous of rank 0's bytes
 * (launch_env.h). */
#include "launch_env.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "error.h"

/* ---------------------------------------------------------------- variables */

static const char *env_get(void *ctx, const char *name) { return getenv(name); }

/* A strict non-negative decimal int: "-1", "1x", "" and overflow fail. */
static int parse_int(const char *name, const char *s, int *out)
{
    if (!*s)
        return rv_error_set("%s is set but empty (expected a non-negative integer)", name);
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return rv_error_set("%s=\"%s\": not a non-negative integer", name, s);
        v = v * 10 + (*p - '0');
        if (v > INT_MAX)
            return rv_error_set("%s=\"%s\": too large", name, s);
    }
    *out = (int)v;
    return 0;
}

typedef struct {
    const char *source, *rank, *world, *local, *local_world;
} var_set;

static const var_set sets[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
};

int rv_launch_env_read(rv_launch_env *e, const char *(*get)(void *ctx, const char *name), void *ctx)
{
    if (!get)
        get = env_get;
    memset(e, 0, sizeof *e);
    e->world_size = 1;
    e->source = "none";
    const var_set *vs = NULL;
    for (size_t i = 0; i < sizeof sets / sizeof *sets && !vs; i++) {
        const char *r = get(ctx, sets[i].rank), *w = get(ctx, sets[i].world);
        /* Half a set is not a launcher: `make RANK=8` (a LoRA rank) exports
         * RANK to every recipe, and shells keep stray variables. Launchers
         * always set both. */
        if (!r || !w)
            continue;
        vs = &sets[i];
    }
    if (vs) {
        e->source = vs->source;
        if (parse_int(vs->rank, get(ctx, vs->rank), &e->rank) < 0 ||
            parse_int(vs->world, get(ctx, vs->world), &e->world_size) < 0)
            return rv_error_prefix("launch");
        if (e->world_size < 1)
            return rv_error_set("launch: %s=0 (the world has at least one rank)", vs->world);
        if (e->rank >= e->world_size)
            return rv_error_set("launch: %s=%d but %s=%d (ranks run from 0 to %d)", vs->rank, e->rank, vs->world,
                                e->world_size, e->world_size - 1);
        const char *l = get(ctx, vs->local), *lw = get(ctx, vs->local_world);
        /* SLURM_NTASKS_PER_NODE may read "4(x2)": only a plain number is used */
        if (lw && strspn(lw, "0123456789") == strlen(lw) && *lw &&
            parse_int(vs->local_world, lw, &e->local_world_size) < 0)
            return rv_error_prefix("launch");
        if (l) {
            if (parse_int(vs->local, l, &e->local_rank) < 0)
                return rv_error_prefix("launch");
            if (e->local_world_size && e->local_rank >= e->local_world_size)
                return rv_error_set("launch: %s=%d but %s=%d", vs->local, e->local_rank, vs->local_world,
                                    e->local_world_size);
        } else if (e->world_size == 1) {
            e->local_rank = 0;
        } else {
            return rv_error_set("launch: %s is not set: which GPU rank %d of %d should use is unknown", vs->local,
                                e->rank, e->world_size);
        }
    }
    if (e->world_size == 1)
        return 0;

    const char *path = get(ctx, "RV_RENDEZVOUS");
    const char *addr = get(ctx, "MASTER_ADDR");
    const char *port = get(ctx, "RV_MASTER_PORT");
    const char *port_name = "RV_MASTER_PORT";
    if (!port) {
        port = get(ctx, "MASTER_PORT");
        port_name = "MASTER_PORT";
    }
    if (path && *path) {
        if (strlen(path) >= sizeof e->path)
            return rv_error_set("launch: RV_RENDEZVOUS is longer than %zu bytes", sizeof e->path - 1);
        e->rendezvous = RV_RDV_FILE;
        strcpy(e->path, path);
        return 0;
    }
    if (addr || port) {
        if (!addr || !*addr || !port)
            return rv_error_set("launch: %s is set but %s is not", addr ? "MASTER_ADDR" : port_name,
                                addr ? port_name : "MASTER_ADDR");
        if (strlen(addr) >= sizeof e->addr)
            return rv_error_set("launch: MASTER_ADDR is longer than %zu bytes", sizeof e->addr - 1);
        if (parse_int(port_name, port, &e->port) < 0)
            return rv_error_prefix("launch");
        if (e->port < 1 || e->port > 65535)
            return rv_error_set("launch: %s=%d: a TCP port is 1 to 65535", port_name, e->port);
        e->rendezvous = RV_RDV_TCP;
        strcpy(e->addr, addr);
        return 0;
    }
    return rv_error_set("launch: %d ranks (from %s) need a rendezvous: set RV_RENDEZVOUS=/shared/fresh-path or "
                        "MASTER_ADDR and MASTER_PORT",
                        e->world_size, e->source);
}

/* ---------------------------------------------------------------- the wire/file format */

/* magic, then the payload length (8 bytes, little-endian), then the payload */
static const char rdv_magic[8] = {'R', 'V', 'R', 'D', 'V', '0', '0', '1'};
#define RDV_HEADER 16

static void put_header(unsigned char *h, size_t n)
{
    memcpy(h, rdv_magic, 8);
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)((uint64_t)n >> (8 * i));
}

static int check_header(const unsigned char *h, size_t n, const char *what)
{
    if (memcmp(h, rdv_magic, 8) != 0)
        return rv_error_set("%s: not a revela rendezvous (bad magic)", what);
    uint64_t got = 0;
    for (int i = 0; i < 8; i++)
        got |= (uint64_t)h[8 + i] << (8 * i);
    if (got != n)
        return rv_error_set("%s: carries %llu bytes, expected %zu", what, (unsigned long long)got, n);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- file */

int rv_rendezvous_file(const char *path, int rank, void *bytes, size_t n, double timeout_s)
{
    unsigned char h[RDV_HEADER];
    if (rank == 0) {
        struct stat st;
        if (stat(path, &st) == 0)
            return rv_error_set("%s: rendezvous file already exists (left by an earlier run?): remove it or use a "
                                "fresh path",
                                path);
        rv_atomic_file a;
        if (rv_atomic_open(&a, path) < 0)
            return rv_error_prefix("rendezvous");
        put_header(h, n);
        if (fwrite(h, 1, sizeof h, a.f) != sizeof h || (n && fwrite(bytes, 1, n, a.f) != n)) {
            rv_atomic_abort(&a);
            return rv_error_set("%s: writing the rendezvous file: %s", path, strerror(errno));
        }
        return rv_atomic_commit(&a) < 0 ? rv_error_prefix("rendezvous") : 0;
    }
    const double until = now_s() + timeout_s;
    for (;;) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t got = fread(h, 1, sizeof h, f);
            int rc = got == sizeof h ? check_header(h, n, path) : rv_error_set("%s: truncated rendezvous file", path);
            if (rc == 0 && n && fread(bytes, 1, n, f) != n)
                rc = rv_error_set("%s: truncated rendezvous file", path);
            fclose(f);
            return rc;
        }
        if (errno != ENOENT)
            return rv_error_set("%s: opening the rendezvous file: %s", path, strerror(errno));
        if (now_s() > until)
            return rv_error_set("%s: rank %d waited %.0f s for rank 0 to write the rendezvous file", path, rank,
                                timeout_s);
        sleep_ms(50);
    }
}

int rv_rendezvous_file_remove(const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return rv_error_set("%s: removing the rendezvous file: %s", path, strerror(errno));
    return 0;
}

/* ---------------------------------------------------------------- TCP */

/* Sends or receives exactly len bytes before the deadline. */
static int io_all(int fd, void *buf, size_t len, int sending, double until)
{
    unsigned char *p = buf;
    while (len) {
        int ms = (int)((until - now_s()) * 1000);
        if (ms <= 0)
            return rv_error_set("timed out");
        struct pollfd pfd = {fd, (short)(sending ? POLLOUT : POLLIN), 0};
        int pr = poll(&pfd, 1, ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return rv_error_set(pr == 0 ? "timed out" : "poll: %s", strerror(errno));
        ssize_t k = sending ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return rv_error_set("%s", k == 0 ? "connection closed early" : strerror(errno));
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int tcp_serve(int port, int world, const void *bytes, size_t n, double until)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int g = getaddrinfo(NULL, ps, &hints, &res);
    if (g != 0)
        return rv_error_set("rendezvous: port %d: %s", port, gai_strerror(g));
    int fd = -1, err = 0;
    /* IPv6 first when present (dual-stack also takes IPv4) */
    for (int pass = 0; pass < 2 && fd < 0; pass++)
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            if ((pass == 0) != (a->ai_family == AF_INET6))
                continue;
            fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
            if (fd < 0) {
                err = errno;
                continue;
            }
            int one = 1, zero = 0;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (a->ai_family == AF_INET6)   /* take IPv4 peers too, whatever net.ipv6.bindv6only says */
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, world) < 0) {
                err = errno;
                close(fd);
                fd = -1;
            }
        }
    freeaddrinfo(res);
    if (fd < 0)
        return rv_error_set("rendezvous: rank 0 cannot listen on port %d: %s%s", port, strerror(err),
                            err == EADDRINUSE ? " (under torchrun, set RV_MASTER_PORT to a free port)" : "");
    unsigned char *msg = malloc(RDV_HEADER + n);
    unsigned char *seen = calloc((size_t)world, 1);
    if (!msg || !seen) {
        free(msg);
        free(seen);
        close(fd);
        return rv_error_set("rendezvous: out of memory");
    }
    put_header(msg, n);
    if (n)
        memcpy(msg + RDV_HEADER, bytes, n);
    int served = 0, rc = 0;
    while (served < world - 1) {
        int ms = (int)((until - now_s()) * 1000);
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = ms > 0 ? poll(&pfd, 1, ms) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            rc = rv_error_set("rendezvous: rank 0: %d of %d ranks connected to port %d before the timeout", served,
                              world - 1, port);
            break;
        }
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            continue;
        /* hello: the magic with the peer's rank as the payload length */
        unsigned char hello[RDV_HEADER];
        if (io_all(c, hello, sizeof hello, 0, now_s() + 5) == 0 && memcmp(hello, rdv_magic, 8) == 0) {
            uint64_t r = 0;
            for (int i = 0; i < 8; i++)
                r |= (uint64_t)hello[8 + i] << (8 * i);
            if (r >= 1 && r < (uint64_t)world && !seen[r] && io_all(c, msg, RDV_HEADER + n, 1, now_s() + 5) == 0) {
                seen[r] = 1;
                served++;
            }
        }
        close(c);   /* a stray or failed peer is dropped; the real rank retries */
    }
    free(msg);
    free(seen);
    close(fd);
    return rc;
}

static int tcp_fetch(const char *addr, int port, int rank, void *bytes, size_t n, double until)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    char last[256] = "no attempt";
    for (;;) {
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(addr, ps, &hints, &res);
        if (g != 0) {
            snprintf(last, sizeof last, "%s", gai_strerror(g));
        } else {
            for (struct addrinfo *a = res; a; a = a->ai_next) {
                int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
                if (fd < 0)
                    continue;
                if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
                    snprintf(last, sizeof last, "%s", strerror(errno));
                    close(fd);
                    continue;
                }
                unsigned char hello[RDV_HEADER], h[RDV_HEADER];
                put_header(hello, (size_t)rank);
                int rc = io_all(fd, hello, sizeof hello, 1, until);
                if (rc == 0)
                    rc = io_all(fd, h, sizeof h, 0, until);
                if (rc == 0)
                    rc = check_header(h, n, "rendezvous reply");
                if (rc == 0 && n)
                    rc = io_all(fd, bytes, n, 0, until);
                close(fd);
                if (rc == 0) {
                    freeaddrinfo(res);
                    return 0;
                }
                snprintf(last, sizeof last, "%s", rv_error_get());
            }
            freeaddrinfo(res);
        }
        if (now_s() > until)
            return rv_error_set("rendezvous: rank %d could not get the id from %s:%d: %s", rank, addr, port, last);
        sleep_ms(100);   /* rank 0 may not listen yet */
    }
}

int rv_rendezvous_tcp(const char *addr, int port, int rank, int world, void *bytes, size_t n, double timeout_s)
{
    const double until = now_s() + timeout_s;
    if (world <= 1)
        return 0;
    return rank == 0 ? tcp_serve(port, world, bytes, n, until) : tcp_fetch(addr, port, rank, bytes, n, until);
}

int rv_rendezvous(const rv_launch_env *e, void *bytes, size_t n, double timeout_s)
{
    if (e->world_size <= 1)
        return 0;
    if (e->rendezvous == RV_RDV_FILE)
        return rv_rendezvous_file(e->path, e->rank, bytes, n, timeout_s);
    if (e->rendezvous == RV_RDV_TCP)
        return rv_rendezvous_tcp(e->addr, e->port, e->rank, e->world_size, bytes, n, timeout_s);
    return rv_error_set("rendezvous: %d ranks and no rendezvous (RV_RENDEZVOUS or MASTER_ADDR/MASTER_PORT)",
                        e->world_size);
}
