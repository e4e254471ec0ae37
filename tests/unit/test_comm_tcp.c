/* test_comm_tcp.c — the TCP host communicator (lib/comm_tcp.c) between real
 * processes: the parent forks one child per rank, each builds its launch
 * environment by hand (rendezvous through a file in a fresh directory, or
 * TCP on 127.0.0.1), opens the communicator and runs a scenario. Children
 * report through a shared memory page and their exit status; the parent
 * prints PASS/FAIL and kills a child that hangs.
 *
 * Expected values are computed by the parent before the fork, independently
 * of the communicator: the float sum in rank order (((b0 + b1) + b2) + ...),
 * which the all-reduce must reproduce bit for bit. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"
#include "comm_tcp.h"
#include "error.h"
#include "grad_buckets.h"
#include "launch_env.h"
#include "test.h"
#include "test_socket.h"   /* free_port */

#define MAX_PROCS 4
#define BIG (((size_t)3 << 20) + 7)   /* floats: over the 1 Mi-float chunk, not a multiple of it */

typedef struct {
    int failed;          /* the child's own checks */
    char msg[1024];      /* its first failed check, or an error text the parent inspects */
    char err[1024];      /* the error a scenario expected, for the parent to inspect */
    double t_in, t_out;  /* around the barrier */
    int status;          /* wait status (parent) */
    int hung;            /* killed by the parent */
} slot;

static slot *slots;   /* MAP_SHARED: written by the children, read by the parent */

static void expect(slot *s, int cond, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect(slot *s, int cond, const char *fmt, ...)
{
    if (cond || s->failed++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Mixed signs and magnitudes, so that the order of a float sum matters. */
static float value(uint64_t seed, int rank, size_t i)
{
    uint64_t z = mix(seed ^ mix((uint64_t)rank * 0x100000001b3ull + i));
    float mant = (float)((z >> 40) & 0xffffff) / (float)(1 << 24) - 0.5f;
    int e = (int)((z >> 8) & 15) - 8;
    return mant * (float)(1 << (e + 8)) / 256.0f;
}

static float *values(uint64_t seed, int rank, size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; v && i < n; i++)
        v[i] = value(seed, rank, i);
    return v;
}

/* The reference: the float sum of in[0..world) in rank order. */
static float *rank_order_sum(float *const *in, int world, size_t n)
{
    float *w = malloc((n ? n : 1) * sizeof *w);
    for (size_t i = 0; w && i < n; i++) {
        float acc = in[0][i];
        for (int r = 1; r < world; r++)
            acc += in[r][i];
        w[i] = acc;
    }
    return w;
}

/* ---------------------------------------------------------------- the process runner */

typedef int (*scenario)(int proc, rv_launch_env *e, slot *s);

/* Forks nproc children of a world of `world` (proc p is rank p unless the
 * scenario changes its env), runs fn in each, waits at most limit_s. */
static void run_procs(int nproc, int world, int tcp, scenario fn, double limit_s)
{
    memset(slots, 0, MAX_PROCS * sizeof *slots);
    char dir[] = "/tmp/rv_comm_tcp_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    rv_launch_env e0 = {0};
    e0.world_size = world;
    e0.local_world_size = world;
    e0.source = "test";
    if (tcp) {
        e0.rendezvous = RV_RDV_TCP;
        strcpy(e0.addr, "127.0.0.1");
        e0.port = free_port();
    } else {
        e0.rendezvous = RV_RDV_FILE;
        snprintf(e0.path, sizeof e0.path, "%s/rdv", dir);
    }
    pid_t pid[MAX_PROCS];
    fflush(stdout);   /* nothing buffered is duplicated into the children */
    for (int p = 0; p < nproc; p++) {
        pid[p] = fork();
        if (pid[p] == 0) {
            rv_launch_env e = e0;
            e.rank = e.local_rank = p;
            int rc = fn(p, &e, &slots[p]);
            exit(rc || slots[p].failed ? 1 : 0);
        }
    }
    const double until = now_s() + limit_s;
    int left = nproc;
    while (left > 0) {
        for (int p = 0; p < nproc; p++)
            if (pid[p] > 0 && waitpid(pid[p], &slots[p].status, WNOHANG) == pid[p]) {
                pid[p] = 0;
                left--;
            }
        if (left && now_s() > until) {
            for (int p = 0; p < nproc; p++)
                if (pid[p] > 0) {
                    kill(pid[p], SIGKILL);
                    waitpid(pid[p], &slots[p].status, 0);
                    slots[p].hung = 1;
                    pid[p] = 0;
                }
            left = 0;
        }
        usleep(2000);
    }
    for (int p = 0; p < nproc; p++)
        CHECK(!slots[p].hung, "world %d: process %d hung (killed after %.0f s)", world, p, limit_s);
    if (!tcp) {
        unlink(e0.path);
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", e0.path);   /* in case rank 0 died mid-write */
        unlink(tmp);
    }
    rmdir(dir);
}

/* Every child passed its own checks and exited 0. */
static void check_all_ok(int nproc, const char *what)
{
    for (int p = 0; p < nproc; p++) {
        CHECK(!slots[p].failed, "%s: rank %d: %s", what, p, slots[p].msg);
        CHECK(WIFEXITED(slots[p].status) && WEXITSTATUS(slots[p].status) == 0,
              "%s: rank %d exited with status 0x%x", what, p, slots[p].status);
    }
}

static rv_comm *open_comm(rv_launch_env *e, slot *s, double timeout)
{
    rv_comm *c = rv_comm_tcp_open(e, timeout);
    if (!c)
        snprintf(s->err, sizeof s->err, "%s", rv_error_get());
    else if (e->rank == 0 && e->rendezvous == RV_RDV_FILE && e->world_size > 1)
        rv_rendezvous_file_remove(e->path);   /* everyone has connected: the caller's job (comm_tcp.h) */
    return c;
}

/* ---------------------------------------------------------------- collectives */

static const size_t sizes[] = {0, 1, 7, 1001, BIG};
#define N_SIZES (sizeof sizes / sizeof *sizes)
/* Made by the parent, inherited by the children: every rank's input and the
 * reference sums of the current world. */
static float *input[N_SIZES][MAX_PROCS], *want[N_SIZES];

static int collectives_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 5);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c)
        return 1;
    const int W = e->world_size, me = e->rank;
    expect(s, rv_comm_rank(c) == me && rv_comm_world_size(c) == W && c->device_memory == 0,
           "rank %d world %d device_memory %d", rv_comm_rank(c), rv_comm_world_size(c), c->device_memory);
    expect(s, (W == 1) == (c == rv_comm_identity()), "world %d: identity? %d", W, c == rv_comm_identity());

    /* all-reduces of every size, two of them in flight as grad_buckets does */
    float *buf[N_SIZES];
    long tk[N_SIZES];
    for (size_t k = 0; k < N_SIZES; k++) {
        buf[k] = malloc((sizes[k] ? sizes[k] : 1) * sizeof(float));
        memcpy(buf[k], input[k][me], sizes[k] * sizeof(float));
    }
    for (size_t k = 0; k < N_SIZES; k++) {
        tk[k] = c->allreduce_start(c, buf[k], sizes[k]);
        expect(s, tk[k] >= 0, "all-reduce of %zu: %s", sizes[k], rv_error_get());
        if (k > 0 && tk[k - 1] >= 0)
            expect(s, c->wait(c, tk[k - 1]) == 0, "wait %zu: %s", k - 1, rv_error_get());
    }
    expect(s, c->wait(c, tk[N_SIZES - 1]) == 0, "wait last: %s", rv_error_get());
    for (size_t k = 0; k < N_SIZES; k++) {
        size_t bad = 0, first = 0;
        if (memcmp(buf[k], want[k], sizes[k] * sizeof(float)) != 0)   /* bitwise; count only when it differs */
            for (size_t i = 0; i < sizes[k]; i++)
                if (memcmp(&buf[k][i], &want[k][i], sizeof(float)) != 0 && bad++ == 0)
                    first = i;
        expect(s, bad == 0, "all-reduce of %zu floats: %zu differ from the rank-order sum, first at %zu", sizes[k], bad,
               first);
    }
    expect(s, c->wait(c, -3) < 0 && (W == 1 || strstr(rv_error_get(), "never issued")), "wait(-3): %s",
           rv_error_get());

    /* divide: the sum over W, element by element */
    expect(s, c->divide(c, buf[3], sizes[3], (float)W) == 0, "divide: %s", rv_error_get());
    for (size_t i = 0; i < sizes[3]; i++)
        if (buf[3][i] != want[3][i] / (float)W) {
            expect(s, 0, "divide: element %zu is %g, expected %g", i, buf[3][i], want[3][i] / (float)W);
            break;
        }

    /* broadcasts from rank 0, from the last rank, and of nothing */
    const int roots[] = {0, W - 1, W - 1};
    const size_t bytes[] = {1000, 333, 0};
    for (int b = 0; b < 3; b++) {
        unsigned char got[1000];
        for (size_t i = 0; i < bytes[b]; i++)
            got[i] = me == roots[b] ? (unsigned char)mix(b * 7919 + i) : 0xee;
        expect(s, c->broadcast(c, got, bytes[b], roots[b]) == 0, "broadcast from %d: %s", roots[b], rv_error_get());
        for (size_t i = 0; i < bytes[b]; i++)
            if (got[i] != (unsigned char)mix(b * 7919 + i)) {
                expect(s, 0, "broadcast of %zu bytes from rank %d: byte %zu differs", bytes[b], roots[b], i);
                break;
            }
    }
    expect(s, c->broadcast(c, buf[0], 0, W) < 0, "broadcast from rank %d accepted", W);

    /* barrier: ranks arrive staggered; nobody may leave before the last came */
    usleep((useconds_t)me * 20000);
    s->t_in = now_s();
    expect(s, c->barrier(c) == 0, "barrier: %s", rv_error_get());
    s->t_out = now_s();

    /* still in step after all that */
    float one = (float)(me + 1);
    expect(s, rv_comm_allreduce_sum(c, &one, 1) == 0 && one == (float)(W * (W + 1) / 2), "final all-reduce: %g: %s",
           one, rv_error_get());
    for (size_t k = 0; k < N_SIZES; k++)
        free(buf[k]);
    rv_comm_close(c);
    return 0;
}

static void test_collectives(void)
{
    for (size_t k = 0; k < N_SIZES; k++)
        for (int r = 0; r < MAX_PROCS; r++)
            REQUIRE((input[k][r] = values(100 + k, r, sizes[k])), "out of memory");
    for (int W = 1; W <= MAX_PROCS && !test_failed_now; W++) {
        for (size_t k = 0; k < N_SIZES; k++)
            want[k] = rank_order_sum(input[k], W, sizes[k]);
        for (int tcp = 0; tcp < 2 && !test_failed_now; tcp++) {
            if (W == 1 && tcp)
                continue;
            run_procs(W, W, tcp, collectives_main, 8);
            char what[64];
            snprintf(what, sizeof what, "world %d (%s rendezvous)", W, tcp ? "tcp" : "file");
            check_all_ok(W, what);
            double last_in = 0, first_out = 1e300;
            for (int p = 0; p < W; p++) {
                last_in = slots[p].t_in > last_in ? slots[p].t_in : last_in;
                first_out = slots[p].t_out < first_out ? slots[p].t_out : first_out;
            }
            CHECK(first_out >= last_in, "%s: a rank left the barrier %.3f s before the last arrived", what,
                  last_in - first_out);
        }
        for (size_t k = 0; k < N_SIZES; k++)
            free(want[k]);
    }
    for (size_t k = 0; k < N_SIZES; k++)
        for (int r = 0; r < MAX_PROCS; r++)
            free(input[k][r]);
}

/* Ranks on several nodes as far as the launcher says (local world size
 * unknown): rank 0 publishes its host name instead of 127.0.0.1. */
static int hostname_main(int proc, rv_launch_env *e, slot *s)
{
    e->local_world_size = 0;
    if (proc == 1) {   /* what rank 0 published (layout in comm_tcp.h) */
        unsigned char rdv[RV_COMM_TCP_RDV_BYTES];
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        expect(s, rv_rendezvous_file(e->path, 1, rdv, sizeof rdv, 5) == 0, "rendezvous: %s", rv_error_get());
        expect(s, strncmp((char *)rdv + 8, host, 256) == 0, "rank 0 published \"%.255s\", not the host name \"%s\"",
               (char *)rdv + 8, host);
    }
    rv_comm *c = open_comm(e, s, 5);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c)
        return 1;
    float x = (float)(proc + 1);
    expect(s, rv_comm_allreduce_sum(c, &x, 1) == 0 && x == 3, "all-reduce: %g: %s", x, rv_error_get());
    rv_comm_close(c);
    return 0;
}

static void test_hostname(void)
{
    char host[256] = "";
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (gethostname(host, sizeof host - 1) != 0 || getaddrinfo(host, "1", &hints, &res) != 0) {
        printf("SKIP comm_tcp/test_hostname: this machine's host name \"%s\" does not resolve\n", host);
        return;
    }
    freeaddrinfo(res);
    run_procs(2, 2, 0, hostname_main, 8);
    check_all_ok(2, "host name");
    if (!test_failed_now)
        printf("PASS comm_tcp/test_hostname\n");
    else
        printf("FAIL comm_tcp/test_hostname\n");
}

/* ---------------------------------------------------------------- grad_buckets */

#define GB_TENSORS 30
#define GB_RANKS 3
static size_t gb_size[GB_TENSORS], gb_total;
static float *gb_want;

static int buckets_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 5);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c)
        return 1;
    const int me = e->rank;
    float *flat = malloc(gb_total * sizeof *flat);
    rv_grad_tensor t[GB_TENSORS];
    size_t off = gb_total;
    for (size_t i = 0; i < GB_TENSORS; i++) {   /* backward order: tensor 0 on top, each next one below */
        off -= gb_size[i];
        t[i] = (rv_grad_tensor){flat + off, gb_size[i]};
    }
    for (size_t i = 0; i < gb_total; i++)
        flat[i] = value(7, me, i);
    rv_grad_buckets *b = rv_grad_buckets_new(t, GB_TENSORS, 20000, c);
    expect(s, b != NULL, "grad_buckets_new: %s", rv_error_get());
    if (b) {
        expect(s, rv_grad_buckets_count(b) > 2, "only %zu buckets", rv_grad_buckets_count(b));
        size_t order[GB_TENSORS];   /* a readiness order of this rank's own */
        for (size_t i = 0; i < GB_TENSORS; i++)
            order[i] = i;
        uint64_t z = mix(1234 + (uint64_t)me);
        for (size_t i = GB_TENSORS; i > 1; i--) {
            z = mix(z);
            size_t k = (size_t)(z % i), tmp = order[i - 1];
            order[i - 1] = order[k];
            order[k] = tmp;
        }
        for (size_t i = 0; i < GB_TENSORS; i++)
            expect(s, rv_grad_buckets_ready(b, order[i]) == 0, "ready(%zu): %s", order[i], rv_error_get());
        expect(s, rv_grad_buckets_finish(b) == 0, "finish: %s", rv_error_get());
        size_t bad = 0;
        for (size_t i = 0; i < gb_total; i++)
            bad += memcmp(&flat[i], &gb_want[i], sizeof(float)) != 0;
        expect(s, bad == 0, "%zu of %zu gradients differ from the rank-order sum / %d", bad, gb_total, GB_RANKS);
        rv_grad_buckets_free(b);
    }
    free(flat);
    rv_comm_close(c);
    return 0;
}

static void test_grad_buckets_tcp(void)
{
    gb_total = 0;
    for (size_t i = 0; i < GB_TENSORS; i++) {
        gb_size[i] = i == 4 ? 0 : 1 + (size_t)(mix(55 + i) % 3000);
        gb_total += gb_size[i];
    }
    float *in[GB_RANKS];
    for (int r = 0; r < GB_RANKS; r++)
        in[r] = values(7, r, gb_total);
    gb_want = rank_order_sum(in, GB_RANKS, gb_total);
    for (int r = 0; r < GB_RANKS; r++)
        free(in[r]);
    REQUIRE(gb_want, "out of memory");
    for (size_t i = 0; i < gb_total; i++)
        gb_want[i] = gb_want[i] / (float)GB_RANKS;   /* the default divisor: the world size */
    for (int tcp = 0; tcp < 2; tcp++) {
        run_procs(GB_RANKS, GB_RANKS, tcp, buckets_main, 8);
        check_all_ok(GB_RANKS, tcp ? "grad_buckets (tcp rendezvous)" : "grad_buckets (file rendezvous)");
    }
    free(gb_want);
}

/* ---------------------------------------------------------------- failures */

/* A collective that must fail, quickly, with an error containing `has`;
 * the communicator stays failed afterwards. */
static void expect_failure(slot *s, rv_comm *c, int rc, double t0, double max_s, const char *has)
{
    double dt = now_s() - t0;
    snprintf(s->err, sizeof s->err, "%s", rv_error_get());
    expect(s, rc < 0, "the collective succeeded; expected an error with \"%s\"", has);
    expect(s, !has || strstr(s->err, has), "error \"%s\" lacks \"%s\"", s->err, has);
    expect(s, dt < max_s, "failing took %.2f s (max %.2f): %s", dt, max_s, s->err);
    expect(s, c->barrier(c) < 0 && strstr(rv_error_get(), "earlier failure"), "after a failure: %s", rv_error_get());
}

static int early_exit_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 3);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c || proc == 2) {   /* rank 2 leaves at once */
        rv_comm_close(c);
        return 0;
    }
    float x[1000] = {0};
    double t0 = now_s();
    int rc = rv_comm_allreduce_sum(c, x, 1000);
    /* well under the 3 s timeout: the closed connection is noticed at once */
    expect_failure(s, c, rc, t0, 2, "rank 2 closed its connection during all-reduce #0 (1000 floats)");
    rv_comm_close(c);
    return 0;
}

static int root_exit_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 3);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c || proc == 0) {
        rv_comm_close(c);
        return 0;
    }
    double t0 = now_s();
    expect_failure(s, c, c->barrier(c), t0, 2, "rank 0 closed its connection during barrier #0");
    rv_comm_close(c);
    return 0;
}

static int silent_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 0.5);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c || proc == 1) {   /* rank 1 is alive but never issues the collective */
        if (c)
            usleep(900000);   /* past rank 0's timeout: it must see silence, not a closed connection */
        rv_comm_close(c);
        return 0;
    }
    float x[10] = {0};
    double t0 = now_s();
    int rc = rv_comm_allreduce_sum(c, x, 10);
    expect_failure(s, c, rc, t0, 1.4, "rank 0 waited 0.5 s for rank 1 during all-reduce #0 (10 floats)");
    expect(s, now_s() - t0 > 0.45, "gave up after %.2f s, before the timeout", now_s() - t0);
    rv_comm_close(c);
    return 0;
}

static int mismatch_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 3);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c)
        return 1;
    static float x[1000];
    float one = 1;
    expect(s, rv_comm_allreduce_sum(c, &one, 1) == 0 && one == 3, "first all-reduce: %s", rv_error_get());
    double t0 = now_s();
    int rc = rv_comm_allreduce_sum(c, x, proc == 2 ? 1000 : 500);
    expect_failure(s, c, rc, t0, 2,
                   "collective #1 differs between ranks: rank 0 issued all-reduce of 500 floats, rank 2 issued "
                   "all-reduce of 1000 floats");
    rv_comm_close(c);
    return 0;
}

/* Rank 1 streams 12 MiB that rank 0 will never read (it issued a barrier):
 * rank 1 must get rank 0's diagnosis, not block on its send. */
static int mismatch_big_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 3);
    expect(s, c != NULL, "open: %s", s->err);
    if (!c)
        return 1;
    float *x = calloc(BIG, sizeof *x);
    double t0 = now_s();
    int rc = proc == 0 ? c->barrier(c) : rv_comm_allreduce_sum(c, x, BIG);
    expect_failure(s, c, rc, t0, 2, "rank 0 issued barrier, rank 1 issued all-reduce of 3145735 floats");
    free(x);
    rv_comm_close(c);
    return 0;
}

static void test_peer_failures(void)
{
    run_procs(3, 3, 0, early_exit_main, 8);
    check_all_ok(3, "rank 2 exits");
    run_procs(3, 3, 1, root_exit_main, 8);
    check_all_ok(3, "rank 0 exits");
    run_procs(3, 3, 0, silent_main, 8);
    check_all_ok(3, "rank 1 silent");
    run_procs(3, 3, 1, mismatch_main, 8);
    check_all_ok(3, "mismatched sizes");
    run_procs(2, 2, 0, mismatch_big_main, 8);
    check_all_ok(2, "mismatched kinds");
}

/* ---------------------------------------------------------------- set-up failures */

static int setup_fail_main(int proc, rv_launch_env *e, slot *s)
{
    rv_comm *c = open_comm(e, s, 0.6);
    rv_comm_close(c);
    return c != NULL;   /* must fail */
}

static int duplicate_main(int proc, rv_launch_env *e, slot *s)
{
    if (proc == 2)
        e->rank = e->local_rank = 1;
    return setup_fail_main(proc, e, s);
}

static int world_mismatch_main(int proc, rv_launch_env *e, slot *s)
{
    if (proc == 1)
        e->world_size = e->local_world_size = 3;
    return setup_fail_main(proc, e, s);
}

/* Proc 1 joins with the token of rank 0's rendezvous altered (the documented
 * layout, comm_tcp.h), through a rendezvous file of its own. */
static int wrong_token_main(int proc, rv_launch_env *e, slot *s)
{
    if (proc == 1) {
        unsigned char rdv[RV_COMM_TCP_RDV_BYTES];
        if (rv_rendezvous_file(e->path, 1, rdv, sizeof rdv, 3) < 0) {
            snprintf(s->err, sizeof s->err, "reading rank 0's rendezvous: %s", rv_error_get());
            return 1;
        }
        rdv[RV_COMM_TCP_RDV_TOKEN_OFFSET] ^= 1;
        strcat(e->path, ".forged");
        if (rv_rendezvous_file(e->path, 0, rdv, sizeof rdv, 3) < 0) {
            snprintf(s->err, sizeof s->err, "writing: %s", rv_error_get());
            return 1;
        }
        int rc = setup_fail_main(proc, e, s);
        unlink(e->path);
        return rc;
    }
    return setup_fail_main(proc, e, s);
}

static void check_setup_errors(int nproc, const char *what, const char *rank0_has, const char *others_have)
{
    for (int p = 0; p < nproc; p++) {
        const char *has = p == 0 ? rank0_has : others_have;
        CHECK(WIFEXITED(slots[p].status) && WEXITSTATUS(slots[p].status) == 0,
              "%s: process %d: open did not fail as it should (status 0x%x): %s", what, p, slots[p].status,
              slots[p].err);
        CHECK(strstr(slots[p].err, has), "%s: process %d: error \"%s\" lacks \"%s\"", what, p, slots[p].err, has);
    }
}

static void test_setup_failures(void)
{
    run_procs(3, 3, 0, duplicate_main, 8);
    check_setup_errors(3, "duplicate rank", "rank 1 connected twice", "rank 0 refused rank 1: rank 1 connected twice");
    run_procs(2, 2, 0, world_mismatch_main, 8);
    check_setup_errors(2, "world mismatch", "rank 1 believes the world has 3 ranks, rank 0 has 2",
                       "rank 0 refused rank 1: rank 1 believes");
    run_procs(2, 2, 0, wrong_token_main, 8);
    check_setup_errors(2, "wrong token", "presented a wrong job token", "rank 0 refused rank 1");
    run_procs(2, 3, 0, setup_fail_main, 8);   /* rank 2 never starts */
    check_setup_errors(2, "missing rank", "1 of 2 ranks connected to rank 0 in time (missing: 2)",
                       "rank 0 refused rank 1: 1 of 2 ranks");
    /* argument checks, no process needed */
    rv_launch_env e = {0};
    e.world_size = 2;
    e.rank = 2;
    CHECK(!rv_comm_tcp_open(&e, 1) && strstr(rv_error_get(), "rank 2 in a world of 2"), "got: %s", rv_error_get());
    e.rank = 0;
    CHECK(!rv_comm_tcp_open(&e, 0) && strstr(rv_error_get(), "must be > 0"), "got: %s", rv_error_get());
}

int main(void)
{
    test_suite = "comm_tcp";
    /* SIGPIPE keeps its default action: a send that raised it would kill a
     * child, and the test would see it (the library sends with MSG_NOSIGNAL) */
    slots = mmap(NULL, MAX_PROCS * sizeof *slots, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) {
        printf("FAIL comm_tcp/setup: mmap failed\n");
        return 1;
    }
    if (free_port() < 0) {
        printf("SKIP comm_tcp/all: no loopback TCP socket here\n");
        return 0;
    }
    RUN_TEST(test_collectives);
    test_failed_now = 0;
    test_hostname();   /* reports PASS, FAIL or SKIP itself */
    test_failures += test_failed_now != 0;
    RUN_TEST(test_grad_buckets_tcp);
    RUN_TEST(test_peer_failures);
    RUN_TEST(test_setup_failures);
    munmap(slots, MAX_PROCS * sizeof *slots);
    TEST_EXIT();
}
