/* ir_measures.c — trec_eval's measures for one query (see ir_measures.h).
 * Every value is read off prefix sums built once per query in rank order:
 * a prefix sum at k is exactly the running sum trec_eval has when it reaches
 * cutoff k, so no cutoff costs more than a lookup. */
#include "ir_measures.h"
#include "buf.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    rv_measure_kind kind;
    int has_cutoffs;
} family;

static const family families[] = {
    {"ndcg_cut", RV_M_NDCG_CUT, 1}, {"ndcg", RV_M_NDCG, 0},
    {"map", RV_M_MAP, 0},           {"map_cut", RV_M_MAP_CUT, 1},
    {"P", RV_M_P, 1},               {"recall", RV_M_RECALL, 1},
    {"Rprec", RV_M_RPREC, 0},       {"recip_rank", RV_M_RECIP_RANK, 0},
    {"num_q", RV_M_NUM_Q, 0},       {"num_ret", RV_M_NUM_RET, 0},
    {"num_rel", RV_M_NUM_REL, 0},   {"num_rel_ret", RV_M_NUM_REL_RET, 0},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

/* trec_eval's default cutoffs for P, recall, ndcg_cut and map_cut */
static const uint64_t default_cutoffs[] = {5, 10, 15, 20, 30, 100, 200, 500, 1000};

const char *rv_measures_known(void)
{
    return "ndcg_cut.K ndcg map map_cut.K P.K recall.K Rprec recip_rank num_q num_ret num_rel num_rel_ret";
}

int rv_measure_is_count(const rv_measure *m)
{
    return m->kind == RV_M_NUM_Q || m->kind == RV_M_NUM_RET || m->kind == RV_M_NUM_REL ||
           m->kind == RV_M_NUM_REL_RET;
}

static int add_value(rv_measure_set *s, const family *f, uint64_t cutoff)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->items[i].kind == f->kind && s->items[i].cutoff == cutoff)
            return 0;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16, bytes;
        if (rv_size_mul(ncap, sizeof *s->items, &bytes, "measures") < 0)
            return -1;
        rv_measure *p = realloc(s->items, bytes);
        if (!p)
            return rv_error_set("out of memory adding a measure");
        s->items = p;
        s->cap = ncap;
    }
    rv_measure *m = &s->items[s->n++];
    m->kind = f->kind;
    m->cutoff = cutoff;
    if (f->has_cutoffs)
        snprintf(m->name, sizeof m->name, "%s_%llu", f->name, (unsigned long long)cutoff);
    else
        snprintf(m->name, sizeof m->name, "%s", f->name);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int rv_measures_add(rv_measure_set *s, const char *spec)
{
    const char *dot = strchr(spec, '.');
    size_t name_len = dot ? (size_t)(dot - spec) : strlen(spec);
    const family *f = NULL;
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (strlen(families[i].name) == name_len && memcmp(families[i].name, spec, name_len) == 0)
            f = &families[i];
    if (!f)
        return rv_error_set("unknown measure \"%s\" (known: %s)", spec, rv_measures_known());
    if (!f->has_cutoffs) {
        if (dot)
            return rv_error_set("measure \"%s\": %s takes no parameters", spec, f->name);
        return add_value(s, f, 0);
    }
    if (!dot) {
        for (size_t i = 0; i < sizeof default_cutoffs / sizeof default_cutoffs[0]; i++)
            if (add_value(s, f, default_cutoffs[i]) < 0)
                return -1;
        return 0;
    }
    /* comma-separated positive integers */
    const char *p = dot + 1;
    size_t n = 1;
    for (const char *q = p; *q; q++)
        n += *q == ',';
    uint64_t *cut = rv_malloc(n * sizeof *cut);
    if (!cut)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *start = p;
        uint64_t v = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (v > (UINT64_MAX - 9) / 10) {
                free(cut);
                return rv_error_set("measure \"%s\": cutoff too large", spec);
            }
            v = v * 10 + (uint64_t)(*p - '0');
        }
        if (p == start || (*p != ',' && *p != '\0') || v == 0) {
            free(cut);
            return rv_error_set("measure \"%s\": expected cutoffs as positive integers separated by "
                                "commas (e.g. %s.5,10)", spec, f->name);
        }
        cut[i] = v;
        if (*p == ',')
            p++;
    }
    qsort(cut, n, sizeof *cut, cmp_u64);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = add_value(s, f, cut[i]);
    free(cut);
    return rc;
}

void rv_measures_free(rv_measure_set *s)
{
    free(s->items);
    s->items = NULL;
    s->n = s->cap = 0;
}

void rv_measure_work_free(rv_measure_work *w)
{
    free(w->log2_at);
    free(w->dcg);
    free(w->idcg);
    free(w->ap);
    free(w->rel_ret);
    memset(w, 0, sizeof *w);
}

static int work_reserve(rv_measure_work *w, size_t n)
{
    if (n + 1 <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 1024;
    while (cap < n + 1)
        cap *= 2;
    size_t bd, bz;
    if (rv_size_mul(cap, sizeof(double), &bd, "measure work") < 0 ||
        rv_size_mul(cap, sizeof(size_t), &bz, "measure work") < 0)
        return -1;
    double *l = realloc(w->log2_at, bd);
    if (l)
        w->log2_at = l;
    double *d = realloc(w->dcg, bd);
    if (d)
        w->dcg = d;
    double *id = realloc(w->idcg, bd);
    if (id)
        w->idcg = id;
    double *a = realloc(w->ap, bd);
    if (a)
        w->ap = a;
    size_t *r = realloc(w->rel_ret, bz);
    if (r)
        w->rel_ret = r;
    if (!l || !d || !id || !a || !r)
        return rv_error_set("out of memory for %zu ranked documents", n);
    for (size_t i = w->cap; i < cap; i++)
        w->log2_at[i] = log2((double)(i + 2));
    w->cap = cap;
    return 0;
}

static size_t min_size(uint64_t a, size_t b)
{
    return a < b ? (size_t)a : b;
}

int rv_measures_eval(const rv_measure_set *s, const int32_t *rels, size_t n_ret, const int32_t *gains,
                     size_t n_gains, int32_t level, rv_measure_work *w, double *out)
{
    if (work_reserve(w, n_ret > n_gains ? n_ret : n_gains) < 0)
        return -1;
    double *dcg = w->dcg, *idcg = w->idcg, *ap = w->ap;
    size_t *rel_ret = w->rel_ret;
    size_t first_rel = SIZE_MAX;
    dcg[0] = ap[0] = 0.0;
    rel_ret[0] = 0;
    for (size_t i = 0; i < n_ret; i++) {
        int32_t r = rels[i];
        dcg[i + 1] = r > 0 ? dcg[i] + (double)r / w->log2_at[i] : dcg[i];
        if (r >= level) {
            rel_ret[i + 1] = rel_ret[i] + 1;
            ap[i + 1] = ap[i] + (double)rel_ret[i + 1] / (double)(i + 1);
            if (first_rel == SIZE_MAX)
                first_rel = i;
        } else {
            rel_ret[i + 1] = rel_ret[i];
            ap[i + 1] = ap[i];
        }
    }
    idcg[0] = 0.0;
    size_t num_rel = 0;
    for (size_t i = 0; i < n_gains; i++) {
        idcg[i + 1] = idcg[i] + (double)gains[i] / w->log2_at[i];
        num_rel += gains[i] >= level;
    }
    double R = (double)num_rel;
    for (size_t j = 0; j < s->n; j++) {
        const rv_measure *m = &s->items[j];
        size_t k = min_size(m->cutoff, n_ret);
        double v = 0.0;
        switch (m->kind) {
        case RV_M_NDCG_CUT: {
            double ideal = idcg[min_size(m->cutoff, n_gains)];
            v = ideal > 0.0 ? dcg[k] / ideal : dcg[k];
            break;
        }
        case RV_M_NDCG:
            v = idcg[n_gains] > 0.0 ? dcg[n_ret] / idcg[n_gains] : 0.0;
            break;
        case RV_M_MAP:
            v = rel_ret[n_ret] ? ap[n_ret] / R : 0.0;
            break;
        case RV_M_MAP_CUT:
            v = num_rel ? ap[k] / R : 0.0;
            break;
        case RV_M_P:
            v = (double)rel_ret[k] / (double)m->cutoff;
            break;
        case RV_M_RECALL:
            v = num_rel ? (double)rel_ret[k] / R : 0.0;
            break;
        case RV_M_RPREC: {
            size_t r = num_rel < n_ret ? num_rel : n_ret;
            v = r ? (double)rel_ret[r] / R : 0.0;
            break;
        }
        case RV_M_RECIP_RANK:
            v = first_rel != SIZE_MAX ? 1.0 / (double)(first_rel + 1) : 0.0;
            break;
        case RV_M_NUM_Q:
            v = 1.0;
            break;
        case RV_M_NUM_RET:
            v = (double)n_ret;
            break;
        case RV_M_NUM_REL:
            v = R;
            break;
        case RV_M_NUM_REL_RET:
            v = (double)rel_ret[n_ret];
            break;
        }
        out[j] = v;
    }
    return 0;
}
