/* grad_buckets.c — bucket planning and in-order launching of the gradient
 * all-reduce (design in grad_buckets.h). */
#include "grad_buckets.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct {
    float *lo;             /* the range [lo, lo + n) */
    size_t n;
    size_t first, count;   /* tensors */
    size_t pending;        /* tensors not yet ready this step */
    long ticket;           /* -1 until launched this step */
} bucket;

struct rv_grad_buckets {
    rv_comm *comm;
    size_t n_tensors, n_buckets;
    size_t *tensor_bucket;    /* [n_tensors] */
    unsigned char *is_ready;  /* [n_tensors] */
    bucket *buckets;
    size_t next_launch;       /* buckets before it are launched this step */
    size_t n_ready;
    float divisor;
};

static void reset_step(rv_grad_buckets *b)
{
    for (size_t i = 0; i < b->n_tensors; i++)
        b->is_ready[i] = 0;
    for (size_t k = 0; k < b->n_buckets; k++) {
        b->buckets[k].pending = b->buckets[k].count;
        b->buckets[k].ticket = -1;
    }
    b->next_launch = 0;
    b->n_ready = 0;
}

/* The plan as 16 bytes: bucket count and an FNV-1a hash of every bucket's
 * size and tensor count. */
static void plan_fingerprint(const rv_grad_buckets *b, unsigned char out[16])
{
    uint64_t h = 0xcbf29ce484222325ull, nb = b->n_buckets;
    for (size_t k = 0; k < b->n_buckets; k++) {
        uint64_t v[2] = {b->buckets[k].n, b->buckets[k].count};
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < 8; i++) {
                h ^= (v[j] >> (8 * i)) & 0xff;
                h *= 0x100000001b3ull;
            }
    }
    for (int i = 0; i < 8; i++) {
        out[i] = (unsigned char)(nb >> (8 * i));
        out[8 + i] = (unsigned char)(h >> (8 * i));
    }
}

/* Collective: every rank must hold the same plan, or their all-reduces
 * would not match (NCCL would hang or mix buffers). Plans differ when the
 * tensors' sizes differ, or when separate allocations happen to be adjacent
 * in memory on one rank and not on another. Rank 0's fingerprint is
 * broadcast, then every rank broadcasts its verdict, so all ranks fail
 * together instead of some waiting forever. */
static int check_plan(rv_grad_buckets *b)
{
    const int world = rv_comm_world_size(b->comm), me = rv_comm_rank(b->comm);
    if (world == 1)
        return 0;
    unsigned char mine[16], root[16];
    plan_fingerprint(b, mine);
    memcpy(root, mine, sizeof root);
    if (b->comm->broadcast(b->comm, root, sizeof root, 0) < 0)
        return rv_error_prefix("grad buckets: comparing bucket plans");
    int first_bad = -1;
    for (int r = 0; r < world; r++) {
        unsigned char ok = memcmp(mine, root, sizeof mine) == 0;
        if (b->comm->broadcast(b->comm, &ok, 1, r) < 0)
            return rv_error_prefix("grad buckets: comparing bucket plans");
        if (!ok && first_bad < 0)
            first_bad = r;
    }
    if (first_bad >= 0) {
        uint64_t nb0 = 0;
        for (int i = 0; i < 8; i++)
            nb0 |= (uint64_t)root[i] << (8 * i);
        return rv_error_set("grad buckets: rank %d's bucket plan differs from rank 0's (this rank %d: %zu buckets, "
                            "rank 0: %llu): the gradient tensors' sizes or memory layout differ between ranks",
                            first_bad, me, b->n_buckets, (unsigned long long)nb0);
    }
    return 0;
}

rv_grad_buckets *rv_grad_buckets_new(const rv_grad_tensor *tensors, size_t n_tensors, size_t bucket_bytes,
                                     rv_comm *comm)
{
    if (!comm) {
        rv_error_set("grad buckets: no communicator");
        return NULL;
    }
    if (bucket_bytes == 0)
        bucket_bytes = RV_GRAD_BUCKET_BYTES_DEFAULT;
    const size_t budget = bucket_bytes / sizeof(float) ? bucket_bytes / sizeof(float) : 1;   /* floats */
    rv_grad_buckets *b = calloc(1, sizeof *b);
    if (!b)
        goto oom;
    b->comm = comm;
    b->n_tensors = n_tensors;
    b->divisor = (float)rv_comm_world_size(comm);
    b->tensor_bucket = calloc(n_tensors ? n_tensors : 1, sizeof *b->tensor_bucket);
    b->is_ready = calloc(n_tensors ? n_tensors : 1, 1);
    b->buckets = calloc(n_tensors ? n_tensors : 1, sizeof *b->buckets);   /* at most one per tensor */
    if (!b->tensor_bucket || !b->is_ready || !b->buckets)
        goto oom;
    for (size_t i = 0; i < n_tensors; i++) {
        const rv_grad_tensor *t = &tensors[i];
        if (t->n && !t->data) {
            rv_grad_buckets_free(b);
            rv_error_set("grad buckets: tensor %zu has %zu elements and no data", i, t->n);
            return NULL;
        }
        bucket *cur = b->n_buckets ? &b->buckets[b->n_buckets - 1] : NULL;
        /* Joins the current bucket when adjacent to its range (below or
         * above) and within the budget; an empty tensor joins any bucket. */
        int join = 0;
        if (cur && t->n == 0)
            join = 1;
        else if (cur && cur->n && cur->n + t->n <= budget && (t->data + t->n == cur->lo || t->data == cur->lo + cur->n))
            join = 1;
        if (!join) {
            cur = &b->buckets[b->n_buckets++];
            *cur = (bucket){t->data, 0, i, 0, 0, -1};
        }
        if (t->n && cur->n == 0)
            cur->lo = t->data;
        else if (t->n && t->data < cur->lo)
            cur->lo = t->data;
        cur->n += t->n;
        cur->count++;
        b->tensor_bucket[i] = (size_t)(cur - b->buckets);
    }
    /* Overlapping tensors would be summed twice within a bucket's range or
     * reduced by two buckets: refuse them. Sorting by address is not needed
     * for the check within a bucket (adjacency built it), across buckets
     * compare every pair of ranges (plans are small: a few hundred). */
    for (size_t p = 0; p < b->n_buckets; p++)
        for (size_t q = p + 1; q < b->n_buckets; q++) {
            const bucket *x = &b->buckets[p], *y = &b->buckets[q];
            if (x->n && y->n && (uintptr_t)x->lo < (uintptr_t)(y->lo + y->n) &&
                (uintptr_t)y->lo < (uintptr_t)(x->lo + x->n)) {
                const size_t tx = x->first, ty = y->first;   /* b's memory goes next */
                rv_grad_buckets_free(b);
                rv_error_set("grad buckets: tensors %zu and %zu overlap in memory", tx, ty);
                return NULL;
            }
        }
    reset_step(b);
    if (check_plan(b) < 0) {
        rv_grad_buckets_free(b);
        return NULL;
    }
    return b;
oom:
    rv_grad_buckets_free(b);
    rv_error_set("grad buckets: out of memory");
    return NULL;
}

void rv_grad_buckets_free(rv_grad_buckets *b)
{
    if (!b)
        return;
    free(b->tensor_bucket);
    free(b->is_ready);
    free(b->buckets);
    free(b);
}

int rv_grad_buckets_set_divisor(rv_grad_buckets *b, float d)
{
    if (!(d > 0))
        return rv_error_set("grad buckets: divisor %g (must be > 0)", (double)d);
    b->divisor = d;
    return 0;
}

/* Launches complete buckets in bucket order (never one out of turn). */
static int launch_ready(rv_grad_buckets *b)
{
    while (b->next_launch < b->n_buckets && b->buckets[b->next_launch].pending == 0) {
        bucket *k = &b->buckets[b->next_launch];
        if (k->n) {   /* a bucket of empty tensors has nothing to send: every rank skips it alike */
            k->ticket = b->comm->allreduce_start(b->comm, k->lo, k->n);
            if (k->ticket < 0)
                return rv_error_prefix("grad buckets: bucket %zu", b->next_launch);
        }
        b->next_launch++;
    }
    return 0;
}

int rv_grad_buckets_ready(rv_grad_buckets *b, size_t i)
{
    if (i >= b->n_tensors)
        return rv_error_set("grad buckets: ready(%zu) but there are %zu tensors", i, b->n_tensors);
    if (b->is_ready[i])
        return rv_error_set("grad buckets: tensor %zu reported ready twice in one step", i);
    b->is_ready[i] = 1;
    b->n_ready++;
    b->buckets[b->tensor_bucket[i]].pending--;
    return launch_ready(b);
}

int rv_grad_buckets_finish(rv_grad_buckets *b)
{
    if (b->n_ready != b->n_tensors) {
        size_t first = 0;
        while (first < b->n_tensors && b->is_ready[first])
            first++;
        size_t missing = b->n_tensors - b->n_ready;
        /* Collectives already launched are still waited for, so no buffer
         * is left in flight when the caller gives up. */
        for (size_t k = 0; k < b->next_launch; k++)
            if (b->buckets[k].ticket >= 0)
                b->comm->wait(b->comm, b->buckets[k].ticket);
        reset_step(b);
        return rv_error_set("grad buckets: finish with %zu of %zu tensors not ready (first: %zu)", missing,
                            b->n_tensors, first);
    }
    int rc = 0;
    for (size_t k = 0; k < b->n_buckets; k++)   /* every ticket is waited, even after a failure */
        if (b->buckets[k].ticket >= 0 && b->comm->wait(b->comm, b->buckets[k].ticket) < 0 && rc == 0)
            rc = rv_error_prefix("grad buckets: bucket %zu", k);
    if (rc == 0 && b->divisor != 1.0f)
        for (size_t k = 0; k < b->n_buckets && rc == 0; k++)
            if (b->buckets[k].n && b->comm->divide(b->comm, b->buckets[k].lo, b->buckets[k].n, b->divisor) < 0)
                rc = rv_error_prefix("grad buckets: averaging bucket %zu", k);
    reset_step(b);
    return rc;
}

size_t rv_grad_buckets_count(const rv_grad_buckets *b) { return b->n_buckets; }

int rv_grad_buckets_info(const rv_grad_buckets *b, size_t k, rv_grad_bucket_info *out)
{
    if (k >= b->n_buckets)
        return rv_error_set("grad buckets: bucket %zu of %zu", k, b->n_buckets);
    *out = (rv_grad_bucket_info){b->buckets[k].lo, b->buckets[k].n, b->buckets[k].first, b->buckets[k].count};
    return 0;
}
