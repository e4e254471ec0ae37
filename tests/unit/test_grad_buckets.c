/* test_grad_buckets.c — the bucketed gradient all-reduce (lib/grad_buckets.c)
 * over the host communicators (lib/comm_local.c): N fake ranks as threads,
 * fresh random gradients, budgets giving one bucket, several, and one per
 * tensor, a different shuffled readiness order on every rank and jittered
 * timing. The expected result is computed here, independently: the float
 * sum in rank order, divided by the world size. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "comm.h"
#include "error.h"
#include "grad_buckets.h"
#include "test.h"

#define MAX_RANKS 4
#define MAX_TENSORS 64

typedef struct {
    size_t n_tensors;
    size_t sizes[MAX_TENSORS];   /* floats; tensor i is the i-th produced by "backward" */
    size_t total;
    size_t budget_bytes;
    int separate;                /* 1: every tensor its own allocation (never adjacent) */
    float divisor;               /* 0: the default (world size) */
} plan;

typedef struct {
    const plan *p;
    rv_comm *comm;
    int rank;
    unsigned long long seed;
    float *flat;                 /* [total] the rank's gradients (layout below) */
    float *sep[MAX_TENSORS];     /* separate allocations */
    float *orig;                 /* the rank's gradients before the reduction */
    rv_grad_tensor t[MAX_TENSORS];
    size_t n_buckets;
    rv_grad_bucket_info info[MAX_TENSORS];
    int rc;
    char err[512];
} rank_job;

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A gradient-like value: mixed signs and magnitudes (so that the order of a
 * float sum matters), drawn from (seed, rank, element). */
static float grad_value(unsigned long long seed, int rank, size_t i)
{
    uint64_t z = mix(seed ^ mix((uint64_t)rank * 0x100000001b3ull + i));
    float mant = (float)((z >> 40) & 0xffffff) / (float)(1 << 24) - 0.5f;
    int e = (int)((z >> 8) & 15) - 8;
    return mant * (float)(1 << (e + 8)) / 256.0f;
}

/* Lays tensor i out in the flat array as the backward order implies for
 * rv_train_net: the last-produced tensor lowest, so tensor 0 (last layer)
 * sits at the top and each following tensor directly below it. */
static size_t flat_offset(const plan *p, size_t i)
{
    size_t off = p->total;
    for (size_t j = 0; j <= i; j++)
        off -= p->sizes[j];
    return off;
}

static float *tensor_ptr(rank_job *j, size_t i)
{
    return j->p->separate ? j->sep[i] : j->flat + flat_offset(j->p, i);
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    const plan *p = j->p;
    j->rc = -1;
    rv_grad_buckets *b = rv_grad_buckets_new(j->t, p->n_tensors, p->budget_bytes, j->comm);
    if (!b) {
        snprintf(j->err, sizeof j->err, "new: %s", rv_error_get());
        return NULL;
    }
    if (p->divisor > 0 && rv_grad_buckets_set_divisor(b, p->divisor) < 0) {
        snprintf(j->err, sizeof j->err, "divisor: %s", rv_error_get());
        rv_grad_buckets_free(b);
        return NULL;
    }
    j->n_buckets = rv_grad_buckets_count(b);
    for (size_t k = 0; k < j->n_buckets && k < MAX_TENSORS; k++)
        rv_grad_buckets_info(b, k, &j->info[k]);
    /* readiness: a per-rank shuffle of the tensors (Fisher-Yates) */
    size_t order[MAX_TENSORS];
    for (size_t i = 0; i < p->n_tensors; i++)
        order[i] = i;
    uint64_t s = mix(j->seed * 31 + (uint64_t)j->rank + 7);
    for (size_t i = p->n_tensors; i > 1; i--) {
        s = mix(s);
        size_t k = (size_t)(s % i), tmp = order[i - 1];
        order[i - 1] = order[k];
        order[k] = tmp;
    }
    for (size_t i = 0; i < p->n_tensors; i++)
        if (rv_grad_buckets_ready(b, order[i]) < 0) {
            snprintf(j->err, sizeof j->err, "ready(%zu): %s", order[i], rv_error_get());
            rv_grad_buckets_free(b);
            return NULL;
        }
    if (rv_grad_buckets_finish(b) < 0) {
        snprintf(j->err, sizeof j->err, "finish: %s", rv_error_get());
        rv_grad_buckets_free(b);
        return NULL;
    }
    rv_grad_buckets_free(b);
    j->rc = 0;
    return NULL;
}

static int alloc_rank(rank_job *j, const plan *p, int rank, unsigned long long seed)
{
    memset(j, 0, sizeof *j);
    j->p = p;
    j->rank = rank;
    j->seed = seed;
    j->orig = malloc((p->total ? p->total : 1) * sizeof(float));
    if (!j->orig)
        return -1;
    if (!p->separate && !(j->flat = malloc((p->total ? p->total : 1) * sizeof(float))))
        return -1;
    size_t pos = 0;
    for (size_t i = 0; i < p->n_tensors; i++) {
        if (p->separate) {
            /* one float of padding after each: separate blocks are never adjacent */
            if (!(j->sep[i] = malloc((p->sizes[i] + 1) * sizeof(float))))
                return -1;
        }
        float *d = tensor_ptr(j, i);
        for (size_t e = 0; e < p->sizes[i]; e++)
            d[e] = j->orig[pos + e] = grad_value(seed, rank, pos + e);
        j->t[i] = (rv_grad_tensor){d, p->sizes[i]};
        pos += p->sizes[i];
    }
    return 0;
}

static void free_rank(rank_job *j)
{
    free(j->flat);
    free(j->orig);
    for (size_t i = 0; i < MAX_TENSORS; i++)
        free(j->sep[i]);
}

/* Runs one configuration on `world` fake ranks (or, with world 0, on the
 * identity communicator) and checks results, plan and collective log. */
static void run_case(const plan *p, int world, unsigned long long seed, unsigned delay_us)
{
    const int use_identity = world == 0;
    const int W = use_identity ? 1 : world;
    rank_job jobs[MAX_RANKS];
    memset(jobs, 0, sizeof jobs);
    rv_comm_fake *f = NULL;
    if (!use_identity) {
        f = rv_comm_fake_new(W);
        REQUIRE(f, "fake: %s", rv_error_get());
        rv_comm_fake_set_delay(f, delay_us, seed);
        rv_comm_fake_set_timeout(f, 20);
    }
    int ok = 1;
    for (int r = 0; r < W; r++)
        ok &= alloc_rank(&jobs[r], p, r, seed) == 0;
    if (!ok) {
        CHECK(0, "out of memory");
        goto out;
    }
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < W; r++) {
        jobs[r].comm = use_identity ? rv_comm_identity() : rv_comm_fake_rank(f, r);
        pthread_create(&th[r], NULL, rank_main, &jobs[r]);
    }
    for (int r = 0; r < W; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < W; r++)
        CHECK(jobs[r].rc == 0, "world %d rank %d: %s", W, r, jobs[r].err);
    if (test_failed_now)
        goto out;

    /* The expected values: rank-order float sum, then / divisor (skipped at 1). */
    const float div = p->divisor > 0 ? p->divisor : (float)W;
    size_t bad = 0, first_bad = 0;
    for (int r = 0; r < W; r++) {
        size_t pos = 0;
        for (size_t i = 0; i < p->n_tensors; i++) {
            const float *got = tensor_ptr(&jobs[r], i);
            for (size_t e = 0; e < p->sizes[i]; e++, pos++) {
                float want = jobs[0].orig[pos];
                for (int q = 1; q < W; q++)
                    want += jobs[q].orig[pos];
                if (div != 1.0f)
                    want = want / div;
                if (memcmp(&want, &got[e], sizeof want) != 0 && bad++ == 0)
                    first_bad = pos;
            }
        }
        CHECK(bad == 0, "world %d rank %d: %zu elements differ from the rank-order average, first at %zu", W, r, bad,
              first_bad);
        bad = 0;
    }
    if (W == 1) {   /* world size 1: the buffer is untouched, bit for bit */
        size_t pos = 0;
        for (size_t i = 0; i < p->n_tensors; i++) {
            CHECK(memcmp(tensor_ptr(&jobs[0], i), jobs[0].orig + pos, p->sizes[i] * sizeof(float)) == 0,
                  "world 1: tensor %zu changed", i);
            pos += p->sizes[i];
        }
    }

    /* The plan: every tensor in exactly one bucket, ranges within budget
     * unless a bucket holds a single tensor, the same plan on every rank. */
    const size_t nb = jobs[0].n_buckets;
    const size_t budget = (p->budget_bytes ? p->budget_bytes : RV_GRAD_BUCKET_BYTES_DEFAULT) / sizeof(float);
    size_t next = 0;
    for (size_t k = 0; k < nb; k++) {
        const rv_grad_bucket_info *in = &jobs[0].info[k];
        CHECK(in->first == next, "bucket %zu starts at tensor %zu, expected %zu", k, in->first, next);
        size_t sum = 0, nonempty = 0;
        for (size_t i = in->first; i < in->first + in->count; i++) {
            sum += p->sizes[i];
            nonempty += p->sizes[i] != 0;
        }
        CHECK(sum == in->n, "bucket %zu: %zu floats but its tensors hold %zu", k, in->n, sum);
        CHECK(nonempty <= 1 || in->n <= budget, "bucket %zu: %zu floats over the budget %zu", k, in->n, budget);
        next = in->first + in->count;
    }
    CHECK(next == p->n_tensors, "buckets cover %zu of %zu tensors", next, p->n_tensors);
    for (int r = 1; r < W; r++)
        CHECK(jobs[r].n_buckets == nb, "rank %d plans %zu buckets, rank 0 %zu", r, jobs[r].n_buckets, nb);

    /* Every non-empty bucket all-reduced exactly once, in bucket order, on
     * every rank, and its ticket waited exactly once. */
    if (f) {
        for (int r = 0; r < W; r++) {
            /* first the plan check: world + 1 broadcasts when W > 1 */
            size_t op = 0, plan_ops = W > 1 ? (size_t)W + 1 : 0;
            for (; op < plan_ops; op++) {
                const rv_comm_fake_op *o = rv_comm_fake_op_at(f, r, op);
                CHECK(o && o->kind == RV_COMM_OP_BROADCAST, "rank %d: collective %zu is not a plan broadcast", r, op);
            }
            for (size_t k = 0; k < nb; k++) {
                const rv_grad_bucket_info *in = &jobs[r].info[k];
                if (!in->n)
                    continue;
                const rv_comm_fake_op *o = rv_comm_fake_op_at(f, r, op++);
                CHECK(o && o->kind == RV_COMM_OP_ALLREDUCE && o->buf == in->data && o->size == in->n && o->waited == 1,
                      "rank %d: collective for bucket %zu is %s (size %zu, waited %d)", r, k,
                      o ? (o->buf == in->data ? "on the right buffer" : "on another buffer") : "missing",
                      o ? o->size : 0, o ? o->waited : 0);
            }
            CHECK(rv_comm_fake_n_ops(f, r) == op, "rank %d issued %zu collectives, expected %zu", r,
                  rv_comm_fake_n_ops(f, r), op);
        }
    }
out:
    for (int r = 0; r < W; r++)
        free_rank(&jobs[r]);
    rv_comm_fake_free(f);
}

static plan make_plan(unsigned long long seed, size_t n_tensors, size_t budget_bytes, int separate)
{
    plan p = {0};
    p.n_tensors = n_tensors;
    p.budget_bytes = budget_bytes;
    p.separate = separate;
    for (size_t i = 0; i < n_tensors; i++) {
        uint64_t z = mix(seed + i);
        p.sizes[i] = 1 + (size_t)(z % 3000);
        if (i == 5)
            p.sizes[i] = 0;   /* an empty tensor (a projection without an adapter) */
        p.total += p.sizes[i];
    }
    return p;
}

static size_t plan_buckets(const plan *p)
{
    rank_job j;
    size_t nb = 0;
    if (alloc_rank(&j, p, 0, 1) == 0) {
        rv_grad_buckets *b = rv_grad_buckets_new(j.t, p->n_tensors, p->budget_bytes, rv_comm_identity());
        if (b)
            nb = rv_grad_buckets_count(b);
        rv_grad_buckets_free(b);
    }
    free_rank(&j);
    return nb;
}

/* The three budgets the bucketing must handle: everything in one bucket,
 * several, one per tensor; checked to really give those counts. */
static void test_bucket_counts(void)
{
    plan p = make_plan(11, 40, (size_t)1 << 30, 0);
    CHECK(plan_buckets(&p) == 1, "a huge budget gives %zu buckets, expected 1", plan_buckets(&p));
    p.budget_bytes = 4;   /* one float: every tensor exceeds it */
    CHECK(plan_buckets(&p) == p.n_tensors - 1, "a 4-byte budget gives %zu buckets, expected %zu (the empty tensor joins)",
          plan_buckets(&p), p.n_tensors - 1);
    p.budget_bytes = 20000;   /* 5000 floats: a few tensors each */
    size_t nb = plan_buckets(&p);
    CHECK(nb > 2 && nb < p.n_tensors - 1, "a 20000-byte budget gives %zu buckets", nb);
    p.budget_bytes = 0;   /* the default 25 MiB */
    CHECK(plan_buckets(&p) == 1, "the default budget gives %zu buckets for 40 small tensors", plan_buckets(&p));
    plan s = make_plan(11, 40, (size_t)1 << 30, 1);
    CHECK(plan_buckets(&s) == s.n_tensors - 1, "separate allocations give %zu buckets, expected %zu", plan_buckets(&s),
          s.n_tensors - 1);
}

static void test_identity_bit_exact(void)
{
    const size_t budgets[] = {(size_t)1 << 30, 20000, 4};
    for (size_t b = 0; b < 3; b++) {
        plan p = make_plan(100 + b, 40, budgets[b], 0);
        run_case(&p, 0, 1000 + b, 0);
    }
}

static void test_fake_ranks(void)
{
    const size_t budgets[] = {(size_t)1 << 30, 20000, 4};
    for (int w = 1; w <= MAX_RANKS; w++)
        for (size_t b = 0; b < 3; b++) {
            plan p = make_plan(200 + 10 * (unsigned)w + b, 40, budgets[b], 0);
            run_case(&p, w, 3000 + 10 * (unsigned)w + b, 200);
            if (test_failed_now)
                return;
        }
}

static void test_fake_separate_and_sum(void)
{
    plan p = make_plan(7, 24, (size_t)1 << 30, 1);   /* unrelated allocations */
    run_case(&p, 3, 77, 100);
    plan q = make_plan(8, 30, 20000, 0);
    q.divisor = 1;   /* the pure sum (rv-train's recipe) */
    run_case(&q, 3, 78, 100);
    plan r = make_plan(9, 30, 20000, 0);
    r.divisor = 8;   /* grad_accum-style divisor */
    run_case(&r, 4, 79, 0);
}

/* The fake must catch ranks that issue different collectives at the same
 * position (what launching in readiness order would do); otherwise the
 * order checks above prove nothing. */
static void *mismatch_rank(void *arg)
{
    rv_comm *c = arg;
    static float buf[2][300];
    int r = rv_comm_rank(c);
    size_t n0 = r == 0 ? 100 : 200, n1 = r == 0 ? 200 : 100;   /* swapped on rank 1 */
    long t0 = c->allreduce_start(c, buf[r], n0);
    long t1 = c->allreduce_start(c, buf[r] + n0, n1);
    int a = t0 < 0 ? -1 : c->wait(c, t0);
    int b = t1 < 0 ? -1 : c->wait(c, t1);
    return (void *)(intptr_t)(a < 0 && b < 0 && strstr(rv_error_get(), "differs between ranks") ? 1 : 0);
}

static void test_fake_detects_mismatch(void)
{
    rv_comm_fake *f = rv_comm_fake_new(2);
    REQUIRE(f, "%s", rv_error_get());
    rv_comm_fake_set_timeout(f, 5);
    pthread_t th[2];
    void *res[2];
    for (int r = 0; r < 2; r++)
        pthread_create(&th[r], NULL, mismatch_rank, rv_comm_fake_rank(f, r));
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], &res[r]);
    CHECK(res[0] == (void *)1 && res[1] == (void *)1, "swapped all-reduce sizes were not reported on both ranks");
    rv_comm_fake_free(f);
}

/* A rank that never issues a collective: the other's wait times out with
 * an error naming it, instead of hanging. */
static void test_fake_timeout(void)
{
    rv_comm_fake *f = rv_comm_fake_new(2);
    REQUIRE(f, "%s", rv_error_get());
    rv_comm_fake_set_timeout(f, 0.2);
    float x[4] = {0};
    rv_comm *c0 = rv_comm_fake_rank(f, 0);
    long t = c0->allreduce_start(c0, x, 4);
    CHECK(t >= 0, "%s", rv_error_get());
    CHECK(c0->wait(c0, t) < 0 && strstr(rv_error_get(), "ranks 1 never issued"), "got: %s", rv_error_get());
    rv_comm_fake_free(f);
}

static void *bcast_rank(void *arg)
{
    rv_comm *c = arg;
    int r = rv_comm_rank(c);
    char msg[16];
    snprintf(msg, sizeof msg, "from rank %d", r);
    if (c->broadcast(c, msg, sizeof msg, 2) < 0 || c->barrier(c) < 0)
        return (void *)0;
    return (void *)(intptr_t)(strcmp(msg, "from rank 2") == 0);
}

static void test_fake_broadcast_barrier(void)
{
    rv_comm_fake *f = rv_comm_fake_new(3);
    REQUIRE(f, "%s", rv_error_get());
    pthread_t th[3];
    void *res[3];
    for (int r = 0; r < 3; r++)
        pthread_create(&th[r], NULL, bcast_rank, rv_comm_fake_rank(f, r));
    for (int r = 0; r < 3; r++)
        pthread_join(th[r], &res[r]);
    for (int r = 0; r < 3; r++)
        CHECK(res[r] == (void *)1, "rank %d did not receive rank 2's bytes", r);
    rv_comm *id = rv_comm_identity();
    char one[4] = "abc";
    CHECK(id->broadcast(id, one, 4, 0) == 0 && strcmp(one, "abc") == 0, "identity broadcast");
    CHECK(id->broadcast(id, one, 4, 1) < 0, "identity broadcast from rank 1 accepted");
    rv_comm_fake_free(f);
}

/* Ranks whose plans differ (rank 1's second tensor is longer) all fail in
 * new(), none is left waiting. */
typedef struct {
    rv_comm *c;
    int rc;
    char err[300];
} plan_job;

static void *plan_rank(void *arg)
{
    plan_job *j = arg;
    float g[100] = {0};
    int r = rv_comm_rank(j->c);
    rv_grad_tensor t[2] = {{g + 50, 50}, {g + (r == 1 ? 0 : 10), r == 1 ? 50 : 40}};
    rv_grad_buckets *b = rv_grad_buckets_new(t, 2, 0, j->c);
    j->rc = b ? 0 : -1;
    snprintf(j->err, sizeof j->err, "%s", rv_error_get());
    rv_grad_buckets_free(b);
    return NULL;
}

static void test_plan_mismatch(void)
{
    rv_comm_fake *f = rv_comm_fake_new(3);
    REQUIRE(f, "%s", rv_error_get());
    rv_comm_fake_set_timeout(f, 5);
    plan_job j[3];
    pthread_t th[3];
    for (int r = 0; r < 3; r++) {
        j[r] = (plan_job){rv_comm_fake_rank(f, r), 0, ""};
        pthread_create(&th[r], NULL, plan_rank, &j[r]);
    }
    for (int r = 0; r < 3; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 3; r++)
        CHECK(j[r].rc < 0 && strstr(j[r].err, "rank 1's bucket plan differs"), "rank %d: rc %d: %s", r, j[r].rc,
              j[r].err);
    rv_comm_fake_free(f);
}

static void test_misuse(void)
{
    float g[30];
    for (int i = 0; i < 30; i++)
        g[i] = (float)i;
    rv_grad_tensor t[3] = {{g + 20, 10}, {g + 10, 10}, {g, 10}};
    rv_grad_buckets *b = rv_grad_buckets_new(t, 3, 40, rv_comm_identity());
    REQUIRE(b, "%s", rv_error_get());
    CHECK(rv_grad_buckets_count(b) == 3, "%zu buckets", rv_grad_buckets_count(b));
    CHECK(rv_grad_buckets_ready(b, 1) == 0, "%s", rv_error_get());
    CHECK(rv_grad_buckets_ready(b, 1) < 0 && strstr(rv_error_get(), "ready twice"), "ready twice: %s", rv_error_get());
    CHECK(rv_grad_buckets_ready(b, 3) < 0 && strstr(rv_error_get(), "3 tensors"), "out of range: %s", rv_error_get());
    CHECK(rv_grad_buckets_finish(b) < 0 && strstr(rv_error_get(), "2 of 3 tensors not ready (first: 0)"),
          "finish early: %s", rv_error_get());
    /* the failed step was reset: a full step now works */
    for (size_t i = 0; i < 3; i++)
        CHECK(rv_grad_buckets_ready(b, i) == 0, "after reset, ready(%zu): %s", i, rv_error_get());
    CHECK(rv_grad_buckets_finish(b) == 0, "%s", rv_error_get());
    CHECK(rv_grad_buckets_set_divisor(b, 0) < 0, "divisor 0 accepted");
    CHECK(rv_grad_buckets_set_divisor(b, -2) < 0, "divisor -2 accepted");
    rv_grad_buckets_free(b);
    rv_grad_tensor ov[2] = {{g, 10}, {g + 5, 10}};   /* overlapping */
    CHECK(!rv_grad_buckets_new(ov, 2, 0, rv_comm_identity()) && strstr(rv_error_get(), "overlap"), "overlap: %s",
          rv_error_get());
    rv_grad_tensor nul[1] = {{NULL, 3}};
    CHECK(!rv_grad_buckets_new(nul, 1, 0, rv_comm_identity()), "NULL data accepted");
    CHECK(!rv_grad_buckets_new(t, 3, 0, NULL), "no communicator accepted");
}

/* A second step through the same object gives the same result as a fresh
 * one (the per-step state resets on success too). */
static void test_two_steps(void)
{
    float g[64], want[64];
    rv_comm_fake *f = rv_comm_fake_new(1);
    REQUIRE(f, "%s", rv_error_get());
    rv_comm *c = rv_comm_fake_rank(f, 0);
    rv_grad_tensor t[4] = {{g + 48, 16}, {g + 32, 16}, {g + 16, 16}, {g, 16}};
    rv_grad_buckets *b = rv_grad_buckets_new(t, 4, 128, c);
    REQUIRE(b, "%s", rv_error_get());
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < 64; i++)
            g[i] = want[i] = grad_value(5, step, (size_t)i);
        for (size_t i = 4; i-- > 0;)
            CHECK(rv_grad_buckets_ready(b, i) == 0, "step %d: %s", step, rv_error_get());
        CHECK(rv_grad_buckets_finish(b) == 0, "step %d: %s", step, rv_error_get());
        CHECK(memcmp(g, want, sizeof g) == 0, "step %d: world 1 changed the gradients", step);
    }
    CHECK(rv_comm_fake_n_ops(f, 0) == 2 * rv_grad_buckets_count(b), "%zu collectives for 2 steps of %zu buckets",
          rv_comm_fake_n_ops(f, 0), rv_grad_buckets_count(b));
    rv_grad_buckets_free(b);
    rv_comm_fake_free(f);
}

int main(void)
{
    test_suite = "grad_buckets";
    RUN_TEST(test_bucket_counts);
    RUN_TEST(test_identity_bit_exact);
    RUN_TEST(test_fake_ranks);
    RUN_TEST(test_fake_separate_and_sum);
    RUN_TEST(test_fake_detects_mismatch);
    RUN_TEST(test_fake_timeout);
    RUN_TEST(test_fake_broadcast_barrier);
    RUN_TEST(test_plan_mismatch);
    RUN_TEST(test_misuse);
    RUN_TEST(test_two_steps);
    TEST_EXIT();
}
