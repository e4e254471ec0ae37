/* comm_local.c — the host communicators of comm.h: the world-size-1
 * identity and the in-process fake group for tests. */
#include "comm.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"

/* ---------------------------------------------------------------- identity */

static int id_rank(const rv_comm *c) { return 0; }
static int id_world(const rv_comm *c) { return 1; }
/* No copy, no arithmetic: a sum over one rank is the buffer itself. */
static long id_start(rv_comm *c, float *buf, size_t n) { return 0; }
static int id_wait(rv_comm *c, long ticket)
{
    return ticket < 0 ? rv_error_set("comm identity: wait on invalid ticket %ld", ticket) : 0;
}
static int id_broadcast(rv_comm *c, void *buf, size_t bytes, int root)
{
    return root == 0 ? 0 : rv_error_set("comm identity: broadcast from rank %d in a world of 1", root);
}
static int id_barrier(rv_comm *c) { return 0; }
static int host_divide(rv_comm *c, float *buf, size_t n, float d)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = buf[i] / d;
    return 0;
}
static void id_close(rv_comm *c) {}

static rv_comm identity = {"identity", 0, id_rank, id_world, id_start, id_wait, id_broadcast, id_barrier,
                           host_divide, id_close, NULL};

rv_comm *rv_comm_identity(void) { return &identity; }

/* ---------------------------------------------------------------- fake group */

/* One collective, the k-th issued by every rank. */
typedef struct {
    int kind, root;
    size_t size;
    int posted;      /* ranks that have issued it */
    int done;        /* computed (or failed) */
    char *error;     /* set on a mismatch: every rank reports it */
    void **bufs;     /* [world]: each rank's buffer */
    char *arrived;   /* [world]: 1 once the rank issued it */
} fake_slot;

typedef struct {
    rv_comm comm;
    rv_comm_fake *group;
    int rank;
    size_t n_issued;          /* this rank's collectives so far (= next slot) */
    rv_comm_fake_op *log;
    size_t cap_log;
} fake_rank;

struct rv_comm_fake {
    int world;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fake_slot **slots;
    size_t n_slots, cap_slots;
    fake_rank *ranks;
    double timeout;
    unsigned delay_us;
    unsigned long long delay_seed;
};

static int fk_rank(const rv_comm *c) { return ((const fake_rank *)c->impl)->rank; }
static int fk_world(const rv_comm *c) { return ((const fake_rank *)c->impl)->group->world; }

static const char *kind_name(int k)
{
    return k == RV_COMM_OP_ALLREDUCE ? "all-reduce" : k == RV_COMM_OP_BROADCAST ? "broadcast" : "barrier";
}

static void fake_delay(fake_rank *r)
{
    rv_comm_fake *f = r->group;
    if (!f->delay_us)
        return;
    /* splitmix64 of (seed, rank, call number): reproducible jitter */
    uint64_t z = f->delay_seed + 0x9e3779b97f4a7c15ull * ((uint64_t)r->rank * 1000003u + r->n_issued + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    unsigned us = (unsigned)(z % (f->delay_us + 1u));
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    nanosleep(&ts, NULL);
}

/* The operation itself, by the last rank to arrive (mutex held). */
static int fake_compute(rv_comm_fake *f, fake_slot *s)
{
    if (s->kind == RV_COMM_OP_ALLREDUCE) {
        float *tmp = malloc((s->size ? s->size : 1) * sizeof *tmp);
        if (!tmp)
            return -1;
        const float *b0 = s->bufs[0];
        for (size_t i = 0; i < s->size; i++)
            tmp[i] = b0[i];
        for (int r = 1; r < f->world; r++) {   /* rank order: the result does not depend on timing */
            const float *br = s->bufs[r];
            for (size_t i = 0; i < s->size; i++)
                tmp[i] += br[i];
        }
        for (int r = 0; r < f->world; r++)
            if (s->size)
                memcpy(s->bufs[r], tmp, s->size * sizeof *tmp);
        free(tmp);
    } else if (s->kind == RV_COMM_OP_BROADCAST) {
        for (int r = 0; r < f->world; r++)
            if (r != s->root && s->size)
                memcpy(s->bufs[r], s->bufs[s->root], s->size);
    }
    return 0;
}

/* Issues this rank's next collective; returns its slot number (the ticket). */
static long fake_post(fake_rank *r, int kind, void *buf, size_t size, int root)
{
    rv_comm_fake *f = r->group;
    fake_delay(r);
    if (r->n_issued == r->cap_log) {
        size_t cap = r->cap_log ? 2 * r->cap_log : 16;
        rv_comm_fake_op *l = realloc(r->log, cap * sizeof *l);
        if (!l)
            return rv_error_set("comm fake: out of memory");
        r->log = l;
        r->cap_log = cap;
    }
    r->log[r->n_issued] = (rv_comm_fake_op){kind, size, buf, 0};
    pthread_mutex_lock(&f->mu);
    size_t k = r->n_issued;
    while (f->n_slots <= k) {
        if (f->n_slots == f->cap_slots) {
            size_t cap = f->cap_slots ? 2 * f->cap_slots : 16;
            fake_slot **s = realloc(f->slots, cap * sizeof *s);
            if (!s) {
                pthread_mutex_unlock(&f->mu);
                return rv_error_set("comm fake: out of memory");
            }
            f->slots = s;
            f->cap_slots = cap;
        }
        fake_slot *s = calloc(1, sizeof *s);
        void **bufs = calloc((size_t)f->world, sizeof *bufs);
        char *arrived = calloc((size_t)f->world, 1);
        if (!s || !bufs || !arrived) {
            free(s);
            free(bufs);
            free(arrived);
            pthread_mutex_unlock(&f->mu);
            return rv_error_set("comm fake: out of memory");
        }
        s->bufs = bufs;
        s->arrived = arrived;
        f->slots[f->n_slots++] = s;
    }
    fake_slot *s = f->slots[k];
    if (s->posted == 0) {
        s->kind = kind;
        s->size = size;
        s->root = root;
    } else if (!s->error && (s->kind != kind || s->size != size || s->root != root)) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "comm fake: collective #%zu differs between ranks: %s of %zu (root %d) vs rank %d's %s of %zu (root %d)",
                 k, kind_name(s->kind), s->size, s->root, r->rank, kind_name(kind), size, root);
        s->error = strdup(msg);
        s->done = 1;
        pthread_cond_broadcast(&f->cv);
    }
    s->bufs[r->rank] = buf;
    s->arrived[r->rank] = 1;
    s->posted++;
    r->n_issued++;
    if (s->posted == f->world && !s->done) {
        if (fake_compute(f, s) < 0 && !s->error)
            s->error = strdup("comm fake: out of memory");
        s->done = 1;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return (long)k;
}

static int fake_wait_slot(fake_rank *r, long ticket)
{
    rv_comm_fake *f = r->group;
    if (ticket < 0 || (size_t)ticket >= r->n_issued)
        return rv_error_set("comm fake: rank %d waits on ticket %ld it never issued", r->rank, ticket);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double sec = (double)until.tv_sec + until.tv_nsec * 1e-9 + f->timeout;
    until.tv_sec = (time_t)sec;
    until.tv_nsec = (long)((sec - (double)until.tv_sec) * 1e9);
    pthread_mutex_lock(&f->mu);
    fake_slot *s = f->slots[ticket];
    int rc = 0;
    while (!s->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &until);
    if (!s->done) {
        char missing[128] = "";
        size_t len = 0;
        for (int q = 0; q < f->world && len + 8 < sizeof missing; q++)
            if (!s->arrived[q])
                len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d", len ? "," : "", q);
        pthread_mutex_unlock(&f->mu);
        return rv_error_set("comm fake: rank %d waited %.3g s for collective #%ld (%s of %zu); ranks %s never issued it",
                            r->rank, f->timeout, ticket, kind_name(s->kind), s->size, missing);
    }
    if (s->error) {
        rv_error_set("%s", s->error);
        pthread_mutex_unlock(&f->mu);
        return -1;
    }
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static long fk_start(rv_comm *c, float *buf, size_t n)
{
    return fake_post(c->impl, RV_COMM_OP_ALLREDUCE, buf, n, 0);
}

static int fk_wait(rv_comm *c, long ticket)
{
    fake_rank *r = c->impl;
    if (ticket >= 0 && (size_t)ticket < r->n_issued) {
        if (r->log[ticket].kind != RV_COMM_OP_ALLREDUCE)
            return rv_error_set("comm fake: ticket %ld is a %s, not an all-reduce", ticket,
                                kind_name(r->log[ticket].kind));
        r->log[ticket].waited++;
    }
    return fake_wait_slot(r, ticket);
}

static int fk_broadcast(rv_comm *c, void *buf, size_t bytes, int root)
{
    fake_rank *r = c->impl;
    if (root < 0 || root >= r->group->world)
        return rv_error_set("comm fake: broadcast root %d outside a world of %d", root, r->group->world);
    long t = fake_post(r, RV_COMM_OP_BROADCAST, buf, bytes, root);
    return t < 0 ? -1 : fake_wait_slot(r, t);
}

static int fk_barrier(rv_comm *c)
{
    long t = fake_post(c->impl, RV_COMM_OP_BARRIER, NULL, 0, 0);
    return t < 0 ? -1 : fake_wait_slot(c->impl, t);
}

static void fk_close(rv_comm *c) {}   /* the group owns the ranks */

rv_comm_fake *rv_comm_fake_new(int world_size)
{
    if (world_size < 1) {
        rv_error_set("comm fake: world size %d (must be >= 1)", world_size);
        return NULL;
    }
    rv_comm_fake *f = calloc(1, sizeof *f);
    if (!f || !(f->ranks = calloc((size_t)world_size, sizeof *f->ranks))) {
        free(f);
        rv_error_set("comm fake: out of memory");
        return NULL;
    }
    f->world = world_size;
    f->timeout = 30;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    for (int r = 0; r < world_size; r++) {
        fake_rank *fr = &f->ranks[r];
        fr->group = f;
        fr->rank = r;
        fr->comm = (rv_comm){"fake", 0, fk_rank, fk_world, fk_start, fk_wait, fk_broadcast, fk_barrier,
                             host_divide, fk_close, fr};
    }
    return f;
}

rv_comm *rv_comm_fake_rank(rv_comm_fake *f, int rank)
{
    if (rank < 0 || rank >= f->world) {
        rv_error_set("comm fake: rank %d outside a world of %d", rank, f->world);
        return NULL;
    }
    return &f->ranks[rank].comm;
}

void rv_comm_fake_set_timeout(rv_comm_fake *f, double seconds) { f->timeout = seconds; }

void rv_comm_fake_set_delay(rv_comm_fake *f, unsigned max_us, unsigned long long seed)
{
    f->delay_us = max_us;
    f->delay_seed = seed;
}

size_t rv_comm_fake_n_ops(const rv_comm_fake *f, int rank) { return f->ranks[rank].n_issued; }

const rv_comm_fake_op *rv_comm_fake_op_at(const rv_comm_fake *f, int rank, size_t i)
{
    return i < f->ranks[rank].n_issued ? &f->ranks[rank].log[i] : NULL;
}

void rv_comm_fake_free(rv_comm_fake *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_slots; i++) {
        free(f->slots[i]->bufs);
        free(f->slots[i]->arrived);
        free(f->slots[i]->error);
        free(f->slots[i]);
    }
    free(f->slots);
    for (int r = 0; r < f->world; r++)
        free(f->ranks[r].log);
    free(f->ranks);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}
