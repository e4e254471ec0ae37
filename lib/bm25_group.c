/* bm25_group.c — BM25-neighbour and interleaved training groups (see
 * bm25_group.h). */
#include "bm25_group.h"
#include "splitmix.h"
#include "buf.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

/* Seeds whose candidates are fetched together (in parallel). */
#define SEED_BATCH 2048


/* Uniform in [0, n), n >= 1, without modulo bias. */
static uint64_t uniform(uint64_t *s, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do
        r = rv_splitmix64_next(s);
    while (r >= limit);
    return r % n;
}

int rv_group_seed_order(size_t n, uint64_t seed, uint32_t *perm)
{
    if (n > UINT32_MAX)
        return rv_error_set("seed order: %zu chunks, at most %u", n, UINT32_MAX);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)uniform(&s, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    return 0;
}

/* Near-duplicate classes: chunks with the same key and the same analyzed
 * term sequence score alike for every query, so one representative (the
 * class's first chunk) stands for the class in searches and its members are
 * tried in chunk order when the class comes up. */
typedef struct {
    uint32_t *rep;          /* chunk -> its class representative */
    uint8_t *exclude;       /* 1 for chunks that are not representatives */
    uint64_t *off;          /* n + 1: members of the class of rep r are mem[off[r] .. off[r + 1]) */
    uint32_t *mem;          /* chunks grouped by representative, in chunk order */
} dup_classes;

typedef struct {
    uint64_t key;
    uint32_t chunk;
} keyed;

static int by_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

static int same_terms(const rv_bm25_index *ix, uint32_t a, uint32_t b)
{
    size_t na, nb;
    const uint32_t *ta = rv_bm25_index_doc_terms(ix, a, &na), *tb = rv_bm25_index_doc_terms(ix, b, &nb);
    return na == nb && (na == 0 || memcmp(ta, tb, na * sizeof *ta) == 0);
}

static void classes_free(dup_classes *c)
{
    free(c->rep);
    free(c->exclude);
    free(c->off);
    free(c->mem);
}

static int classes_build(const rv_bm25_index *ix, const uint64_t *fp, dup_classes *c)
{
    size_t n = rv_bm25_index_docs(ix);
    memset(c, 0, sizeof *c);
    keyed *k = rv_malloc(n * sizeof *k);
    c->rep = rv_malloc(n * sizeof *c->rep);
    c->exclude = rv_calloc(n, 1);
    c->off = rv_calloc(n + 1, sizeof *c->off);
    c->mem = rv_malloc(n * sizeof *c->mem);
    if (!k || !c->rep || !c->exclude || !c->off || !c->mem) {
        free(k);
        classes_free(c);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        k[i] = (keyed){fp[i], (uint32_t)i};
    qsort(k, n, sizeof *k, by_key);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && k[j].key == k[i].key)
            j++;
        /* within a run of equal keys (chunk order), join the first earlier
         * chunk with the same terms; a differing one starts its own class */
        for (size_t a = i; a < j; a++) {
            uint32_t ca = k[a].chunk;
            c->rep[ca] = ca;
            for (size_t b = i; b < a; b++) {
                uint32_t cb = k[b].chunk;
                if (c->rep[cb] == cb && same_terms(ix, ca, cb)) {
                    c->rep[ca] = cb;
                    c->exclude[ca] = 1;
                    break;
                }
            }
        }
        i = j;
    }
    free(k);
    for (size_t i = 0; i < n; i++)
        c->off[c->rep[i] + 1]++;
    for (size_t i = 0; i < n; i++)
        c->off[i + 1] += c->off[i];
    uint64_t *at = rv_malloc((n ? n : 1) * sizeof *at);
    if (!at) {
        classes_free(c);
        return -1;
    }
    memcpy(at, c->off, n * sizeof *at);
    for (size_t i = 0; i < n; i++)
        c->mem[at[c->rep[i]]++] = (uint32_t)i;
    free(at);
    return 0;
}

typedef struct {
    const rv_bm25_index *ix;
    const uint64_t *fp;
    const uint32_t *doc_of;
    const rv_group_opts *o;
    const dup_classes *cls;
    uint32_t *uses;
    uint32_t *members;
    float *scores;
    uint32_t n;
    uint64_t near_dup, same_doc, reuse;   /* of the last selection */
} selection;

/* Does chunk c clash with a member (itself, or the same near-duplicate key)? */
static int clashes(const selection *s, uint32_t c)
{
    for (uint32_t j = 0; j < s->n; j++)
        if (s->members[j] == c || s->fp[s->members[j]] == s->fp[c])
            return 1;
    return 0;
}

/* The other rules: seed's document (other_docs) and reuse. */
static int allowed(selection *s, uint32_t c, int count)
{
    if (s->o->other_docs && s->doc_of[c] == s->doc_of[s->members[0]]) {
        if (count)
            s->same_doc++;
        return 0;
    }
    if (s->o->max_reuse && s->uses[c] >= s->o->max_reuse) {
        if (count)
            s->reuse++;
        return 0;
    }
    return 1;
}

/* Greedy pick of neighbours in rank order from a candidate list of class
 * representatives: from each class, its first chunk the rules allow. */
static void select_from(selection *s, uint32_t seed, const rv_bm25_hit *h, uint32_t nh)
{
    const dup_classes *cls = s->cls;
    s->n = 1;
    s->members[0] = seed;
    s->near_dup = s->same_doc = s->reuse = 0;
    /* near_dup counts the chunks a plain ranked list would have offered and
     * the key rule refused: the seed's copies, copies of picked chunks and
     * classes that clash with a member */
    uint32_t sr = cls->rep[seed];
    s->near_dup += cls->off[sr + 1] - cls->off[sr] - 1;
    for (uint32_t i = 0; i < nh && s->n < s->o->group_size; i++) {
        uint32_t r = h[i].doc;
        uint64_t size = cls->off[r + 1] - cls->off[r];
        if (r == sr)
            continue;
        if (clashes(s, r)) {
            s->near_dup += size;
            continue;
        }
        for (uint64_t m = cls->off[r]; m < cls->off[r + 1]; m++) {
            uint32_t c = cls->mem[m];
            if (allowed(s, c, 1)) {
                s->members[s->n] = c;
                s->scores[s->n] = h[i].score;
                s->n++;
                s->near_dup += size - 1;
                break;
            }
        }
    }
}

/* Completes a short group with random allowed chunks; 0 or -1. */
static int fill_group(selection *s, uint64_t *rng)
{
    size_t n = rv_bm25_index_docs(s->ix);
    uint32_t seed = s->members[0];
    for (uint32_t tries = 0; tries < 64u * s->o->group_size && s->n < s->o->group_size; tries++) {
        uint32_t c = (uint32_t)uniform(rng, n);
        if (clashes(s, c) || !allowed(s, c, 0))
            continue;
        if (rv_bm25_score_pair(s->ix, seed, c, &s->scores[s->n]) < 0)
            return -1;
        s->members[s->n++] = c;
    }
    /* Few allowed chunks left: walk the corpus from a random start. */
    size_t start = (size_t)uniform(rng, n);
    for (size_t i = 0; i < n && s->n < s->o->group_size; i++) {
        uint32_t c = (uint32_t)((start + i) % n);
        if (clashes(s, c) || !allowed(s, c, 0))
            continue;
        if (rv_bm25_score_pair(s->ix, seed, c, &s->scores[s->n]) < 0)
            return -1;
        s->members[s->n++] = c;
    }
    return 0;
}

static void finish_stats(rv_group_stats *st, const uint32_t *uses, size_t n)
{
    st->chunks_used = 0;
    st->max_uses = 0;
    for (size_t i = 0; i < n; i++) {
        st->chunks_used += uses[i] > 0;
        if (uses[i] > st->max_uses)
            st->max_uses = uses[i];
    }
}

/* A representative's candidate list: its top k (n of them; n < k means every
 * matching class is listed). */
typedef struct {
    const rv_bm25_hit *h;
    uint32_t n, k;
} cand_list;

/* Lists deepened together when one runs out (in parallel; the deeper lists
 * of the others are used if they run out too). */
#define DEEPEN_AHEAD 64

/* Replaces list u and up to DEEPEN_AHEAD - 1 later lists of the batch that
 * are full and shallower by the top k. The buffer is kept on `pool` so lists
 * stay valid until the batch ends. */
static int deepen(const rv_bm25_index *ix, const dup_classes *cls, const uint32_t *reps, cand_list *lists,
                  size_t u, size_t nu, uint32_t k, int threads, rv_bm25_hit ***pool, size_t *n_pool)
{
    uint32_t pick[DEEPEN_AHEAD];
    size_t at[DEEPEN_AHEAD], m = 0;
    for (size_t j = u; j < nu && m < DEEPEN_AHEAD; j++)
        if (j == u || (lists[j].n == lists[j].k && lists[j].k < k)) {
            pick[m] = reps[j];
            at[m++] = j;
        }
    rv_bm25_hit **np = realloc(*pool, (*n_pool + 1) * sizeof *np);
    if (!np)
        return rv_error_set("out of memory");
    *pool = np;
    rv_bm25_hit *buf = rv_malloc(m * (size_t)k * sizeof *buf);
    if (!buf)
        return -1;
    np[(*n_pool)++] = buf;
    uint32_t nh[DEEPEN_AHEAD];
    if (rv_bm25_search_docs_excluding(ix, m, pick, cls->exclude, k, threads, buf, nh) < 0)
        return -1;
    for (size_t j = 0; j < m; j++)
        lists[at[j]] = (cand_list){buf + j * (size_t)k, nh[j], k};
    return 0;
}

int rv_bm25_groups(const rv_bm25_index *ix, const uint64_t *fingerprint, const uint32_t *doc_of,
                   const rv_group_opts *o, rv_group_emit emit, void *ctx, rv_group_stats *st)
{
    memset(st, 0, sizeof *st);
    size_t n = rv_bm25_index_docs(ix);
    if (o->group_size < 2)
        return rv_error_set("group size: expected at least 2, found %u", o->group_size);
    if (!rv_bm25_index_has_forward(ix))
        return rv_error_set("index: BM25 groups need the chunks' term sequences (an index built by rv-bm25group)");
    dup_classes cls;
    if (classes_build(ix, fingerprint, &cls) < 0)
        return -1;
    size_t n_seeds = o->n_seeds && o->n_seeds < n ? o->n_seeds : n;
    uint32_t k0 = o->group_size + 8; /* first candidate list; deepened when needed */
    if (k0 > n)
        k0 = (uint32_t)n;
    size_t batch = n_seeds < SEED_BATCH ? n_seeds : SEED_BATCH;
    uint32_t *perm = rv_malloc(n * sizeof *perm);
    uint32_t *uses = rv_calloc(n, sizeof *uses);
    uint32_t *slot = rv_calloc(n, sizeof *slot);           /* rep -> 1 + its list in the batch */
    uint32_t *reps = rv_malloc((batch ? batch : 1) * sizeof *reps);
    rv_bm25_hit *hits = rv_malloc((batch ? batch : 1) * (size_t)k0 * sizeof *hits);
    uint32_t *n_hits = rv_malloc((batch ? batch : 1) * sizeof *n_hits);
    cand_list *lists = rv_malloc((batch ? batch : 1) * sizeof *lists);
    uint32_t *members = rv_malloc(o->group_size * sizeof *members);
    float *scores = rv_malloc(o->group_size * sizeof *scores);
    rv_bm25_hit **pool = NULL;
    size_t n_pool = 0;
    int rc = -1;
    if (!perm || !uses || !slot || !reps || !hits || !n_hits || !lists || !members || !scores)
        goto out;
    if (rv_group_seed_order(n, o->seed, perm) < 0)
        goto out;
    uint64_t rng = o->seed ^ 0x5eed5eed5eed5eedull;
    selection s = {ix, fingerprint, doc_of, o, &cls, uses, members, scores, 0, 0, 0, 0};
    for (size_t start = 0; start < n_seeds; start += batch) {
        size_t cnt = n_seeds - start < batch ? n_seeds - start : batch;
        const uint32_t *seeds = perm + start;
        /* one search per near-duplicate class among the batch's seeds */
        size_t nu = 0;
        for (size_t i = 0; i < cnt; i++) {
            uint32_t r = cls.rep[seeds[i]];
            if (!slot[r]) {
                reps[nu] = r;
                slot[r] = (uint32_t)++nu;
            }
        }
        if (rv_bm25_search_docs_excluding(ix, nu, reps, cls.exclude, k0, o->threads, hits, n_hits) < 0)
            goto out;
        for (size_t u = 0; u < nu; u++)
            lists[u] = (cand_list){hits + u * (size_t)k0, n_hits[u], k0};
        for (size_t i = 0; i < cnt; i++) {
            uint32_t seed = seeds[i];
            size_t u = slot[cls.rep[seed]] - 1;
            st->seeds++;
            if (o->max_reuse && uses[seed] >= o->max_reuse) {
                st->seeds_reused_out++;
                continue;
            }
            select_from(&s, seed, lists[u].h, lists[u].n);
            /* A full list may hide eligible chunks further down: search deeper
             * (any deeper list gives the same picks, as they are taken in rank
             * order, so the result does not depend on how lists grew). */
            while (s.n < o->group_size && lists[u].n == lists[u].k && lists[u].k < n) {
                uint32_t k = lists[u].k > n / 4 ? (uint32_t)n : lists[u].k * 4;
                if (deepen(ix, &cls, reps, lists, u, nu, k, o->threads, &pool, &n_pool) < 0)
                    goto out;
                st->deeper_searches++;
                select_from(&s, seed, lists[u].h, lists[u].n);
            }
            scores[0] = 0; /* formats/group.md: the seed's score is 0 */
            st->near_dup_skipped += s.near_dup;
            st->same_doc_skipped += s.same_doc;
            st->reuse_skipped += s.reuse;
            uint32_t found = s.n;
            if (s.n < o->group_size && o->fill_short && fill_group(&s, &rng) < 0)
                goto out;
            if (s.n < o->group_size) {
                st->short_dropped++;
                continue;
            }
            if (found < s.n) {
                st->short_filled++;
                st->filled_members += s.n - found;
            }
            for (uint32_t j = 1; j < found; j++)
                st->neighbour_score_sum += scores[j];
            st->neighbours += found - 1;
            for (uint32_t j = 0; j < s.n; j++)
                uses[members[j]]++;
            if (emit(ctx, members, scores, s.n) < 0)
                goto out;
            st->groups++;
        }
        for (size_t u = 0; u < nu; u++)
            slot[reps[u]] = 0;
        for (size_t j = 0; j < n_pool; j++)
            free(pool[j]);
        n_pool = 0;
        if (o->progress)
            o->progress(o->progress_ctx, start + cnt);
    }
    finish_stats(st, uses, n);
    rc = 0;
out:
    for (size_t j = 0; j < n_pool; j++)
        free(pool[j]);
    free(pool);
    classes_free(&cls);
    free(perm);
    free(uses);
    free(slot);
    free(reps);
    free(hits);
    free(n_hits);
    free(lists);
    free(members);
    free(scores);
    return rc;
}

/* ------------------------------------------------------------ interleave */

typedef struct {
    const uint64_t *fp;
    uint32_t *group;
    float *zeros;
    uint32_t n, size;
    uint32_t *uses;
    rv_group_emit emit;
    void *ctx;
    rv_group_stats *st;
} interleaver;

static int conflicts(const interleaver *v, uint32_t c)
{
    for (uint32_t j = 0; j < v->n; j++)
        if (v->fp[v->group[j]] == v->fp[c])
            return 1;
    return 0;
}

static int emit_full(interleaver *v)
{
    for (uint32_t j = 0; j < v->n; j++)
        v->uses[v->group[j]]++;
    if (v->emit(v->ctx, v->group, v->zeros, v->n) < 0)
        return -1;
    v->st->groups++;
    v->n = 0;
    return 0;
}

/* Places waiting chunks (in arrival order) into the fresh group, emitting
 * groups as they fill, until none of them fits. */
static int place_deferred(interleaver *v, uint32_t *dq, size_t *nd)
{
    int progress = 1;
    while (progress && *nd) {
        progress = 0;
        size_t w = 0;
        for (size_t r = 0; r < *nd; r++) {
            uint32_t c = dq[r];
            if (v->n < v->size && !conflicts(v, c)) {
                v->group[v->n++] = c;
                progress = 1;
                if (v->n == v->size && emit_full(v) < 0)
                    return -1;
            } else {
                dq[w++] = c;
            }
        }
        *nd = w;
    }
    return 0;
}

int rv_interleave_groups(size_t n_chunks, const uint32_t *doc_of, const uint64_t *fingerprint,
                         uint32_t group_size, uint32_t docs_per_group, rv_group_emit emit, void *ctx,
                         rv_group_stats *st)
{
    memset(st, 0, sizeof *st);
    if (group_size < 2)
        return rv_error_set("group size: expected at least 2, found %u", group_size);
    if (docs_per_group < 1)
        return rv_error_set("documents per group: expected at least 1, found 0");
    if (n_chunks > UINT32_MAX)
        return rv_error_set("interleave: %zu chunks, at most %u", n_chunks, UINT32_MAX);
    size_t n_docs = 0;
    for (size_t i = 0; i < n_chunks; i++)
        n_docs += i == 0 || doc_of[i] != doc_of[i - 1];
    uint64_t *doc_start = rv_malloc((n_docs + 1) * sizeof *doc_start);
    uint32_t *dq = rv_malloc((n_chunks ? n_chunks : 1) * sizeof *dq);
    uint32_t *uses = rv_calloc(n_chunks ? n_chunks : 1, sizeof *uses);
    interleaver v = {fingerprint, rv_malloc(group_size * sizeof(uint32_t)), rv_calloc(group_size, sizeof(float)),
                     0, group_size, uses, emit, ctx, st};
    int rc = -1;
    if (!doc_start || !dq || !uses || !v.group || !v.zeros)
        goto out;
    size_t d = 0;
    for (size_t i = 0; i < n_chunks; i++)
        if (i == 0 || doc_of[i] != doc_of[i - 1])
            doc_start[d++] = i;
    doc_start[n_docs] = n_chunks;
    size_t nd = 0;
    for (size_t first = 0; first < n_docs; first += docs_per_group) {
        size_t last = first + docs_per_group < n_docs ? first + docs_per_group : n_docs;
        uint64_t longest = 0;
        for (size_t j = first; j < last; j++)
            if (doc_start[j + 1] - doc_start[j] > longest)
                longest = doc_start[j + 1] - doc_start[j];
        for (uint64_t r = 0; r < longest; r++)
            for (size_t j = first; j < last; j++) {
                if (doc_start[j] + r >= doc_start[j + 1])
                    continue;
                uint32_t c = (uint32_t)(doc_start[j] + r);
                if (conflicts(&v, c)) {
                    st->near_dup_skipped++;
                    dq[nd++] = c;
                    continue;
                }
                v.group[v.n++] = c;
                if (v.n == group_size) {
                    if (emit_full(&v) < 0 || place_deferred(&v, dq, &nd) < 0)
                        goto out;
                }
            }
    }
    st->dropped_chunks = v.n + nd;
    finish_stats(st, uses, n_chunks);
    rc = 0;
out:
    free(doc_start);
    free(dq);
    free(uses);
    free(v.group);
    free(v.zeros);
    return rc;
}
