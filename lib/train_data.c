/* train_data.c — groups in, tokenised step batches out (see train_data.h). */
#include "train_data.h"
#include "splitmix.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "forward_encode.h"
#include "json.h"
#include "lines.h"
#include "records.h"
#include "stream.h"

static char *dup_n(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

static void group_free(rv_train_group *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->texts[i]);
    free(g->texts);
    free(g->src);
}

/* Takes ownership of g (freed on failure); groups under 2 chunks are counted and dropped. */
static int push_group(rv_train_data *d, rv_train_group *g)
{
    if (g->n < 2) {
        d->skipped++;
        group_free(g);
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        rv_train_group *p = realloc(d->groups, cap * sizeof *p);
        if (!p) {
            group_free(g);
            return rv_error_set("out of memory reading groups");
        }
        d->groups = p;
        d->cap = cap;
    }
    d->groups[d->n++] = *g;
    return 0;
}

int rv_train_data_load_stream(rv_train_data *d, FILE *f, const char *name)
{
    rv_stream_reader *r = rv_stream_reader_open(f, name);
    if (!r)
        return -1;
    int rc = -1;
    if (rv_stream_reader_expect(r, "group", RV_GROUP_VERSION) < 0)
        goto out;
    const unsigned char *rec;
    size_t len;
    int got;
    while ((got = rv_stream_read(r, &rec, &len)) == 1) {
        rv_rec_cursor c;
        rv_str src;
        uint32_t n;
        if (rv_group_open(&c, rec, len, &src, &n) < 0)
            goto rec_err;
        rv_train_group g = {dup_n(src.p, src.len), 0, calloc(n ? n : 1, sizeof(char *))};
        if (!g.src || !g.texts) {
            group_free(&g);
            rv_error_set("out of memory");
            goto rec_err;
        }
        for (uint32_t i = 0; i < n; i++) {
            rv_group_member m;
            if (rv_group_next(&c, &m) < 0 || !(g.texts[g.n] = dup_n(m.text.p, m.text.len))) {
                group_free(&g);
                goto rec_err;
            }
            g.n++;
        }
        if (rv_rec_end(&c) < 0) {
            group_free(&g);
            goto rec_err;
        }
        if (push_group(d, &g) < 0)
            goto out;
    }
    rc = got;   /* 0 at the verified end, -1 on error */
    goto out;
rec_err:
    rv_error_prefix("%s: record %llu", name, (unsigned long long)rv_stream_reader_count(r));
out:
    rv_stream_reader_close(r);
    return rc;
}

int rv_train_data_load_jsonl(rv_train_data *d, FILE *f, const char *name)
{
    rv_lines lr;
    rv_lines_init(&lr, f);
    rv_json_parser *jp = rv_json_parser_new();
    int rc = -1, got;
    char *line;
    size_t len;
    if (!jp) {
        rv_error_set("out of memory");
        goto out;
    }
    while ((got = rv_lines_next(&lr, &line, &len)) == 1) {
        if (len == 0)
            continue;
        rv_json *v = rv_json_parse(jp, line, len);
        if (!v) {
            rv_error_prefix("%s:%zu", name, lr.lineno);
            goto out;
        }
        const rv_json *texts = v, *src = NULL;
        if (v->type == RV_JSON_OBJECT) {
            texts = rv_json_get(v, "text");
            src = rv_json_get(v, "src");
        }
        if (!texts || texts->type != RV_JSON_ARRAY || (src && src->type != RV_JSON_STRING)) {
            rv_error_set("%s:%zu: expected a JSON list of chunk texts or {\"src\": string, \"text\": [..]}", name,
                         lr.lineno);
            goto out;
        }
        rv_train_group g = {src ? dup_n(src->u.string, src->len) : dup_n("", 0), 0,
                            calloc(texts->len ? texts->len : 1, sizeof(char *))};
        if (!g.src || !g.texts) {
            group_free(&g);
            rv_error_set("out of memory");
            goto out;
        }
        for (size_t i = 0; i < texts->len; i++) {
            const rv_json *t = &texts->u.items[i];
            if (t->type != RV_JSON_STRING) {
                group_free(&g);
                rv_error_set("%s:%zu: text[%zu]: expected a string, found %s", name, lr.lineno, i,
                             rv_json_type_name(t->type));
                goto out;
            }
            if (!(g.texts[g.n] = dup_n(t->u.string, t->len))) {
                group_free(&g);
                rv_error_set("out of memory");
                goto out;
            }
            g.n++;
        }
        if (push_group(d, &g) < 0)
            goto out;
    }
    if (got < 0) {
        rv_error_prefix("%s", name);
        goto out;
    }
    rc = 0;
out:
    rv_json_parser_free(jp);
    rv_lines_free(&lr);
    return rc;
}

void rv_train_data_free(rv_train_data *d)
{
    for (size_t i = 0; i < d->n; i++)
        group_free(&d->groups[i]);
    free(d->groups);
    memset(d, 0, sizeof *d);
}


void rv_train_data_order(size_t n, uint64_t seed, uint64_t epoch, size_t *perm)
{
    uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (epoch + 1));
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rv_splitmix64_next(&s) % i);   /* bias < 2^-40 for any realistic n */
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* ------------------------------------------------------------------ views */
static int reserve(rv_train_batch *bt, size_t B, size_t L)
{
    size_t need;
    if (rv_size_mul(B, L, &need, "batch") < 0)
        return -1;
    if (need > bt->cap) {
        int32_t *p = realloc(bt->p, need * sizeof *p), *q = p ? realloc(bt->q, need * sizeof *q) : NULL;
        if (p)
            bt->p = p;
        if (q)
            bt->q = q;
        int32_t *x = q ? realloc(bt->x, need * sizeof *x) : NULL;
        if (x)
            bt->x = x;
        if (!x)
            return rv_error_set("out of memory for a batch");
        bt->cap = need;
    }
    int *pl = realloc(bt->pl, B * sizeof *pl);
    if (pl)
        bt->pl = pl;
    int *ql = pl ? realloc(bt->ql, B * sizeof *ql) : NULL;
    if (ql)
        bt->ql = ql;
    int *xl = ql ? realloc(bt->xl, B * sizeof *xl) : NULL;
    if (xl)
        bt->xl = xl;
    if (!xl)
        return rv_error_set("out of memory for a batch");
    return 0;
}

/* Tokenises every chunk's three views into one id list (offsets in off). */
int rv_train_batch_build(const rv_view_ctx *v, const rv_train_group *g, rv_train_batch *bt)
{
    const size_t B = g->n;
    size_t *off = malloc((3 * B + 1) * sizeof *off);
    if (!off)
        return rv_error_set("out of memory for a batch");
    int rc = -1;
    const int half = v->first_half && strcmp(g->src, "stackoverflow") != 0;
    size_t i = 0;
    bt->ids.n = 0;
    for (; i < B; i++) {
        const char *t = g->texts[i];
        size_t len = strlen(t);
        off[3 * i] = bt->ids.n;
        if (rv_encode_tokenize(v->rtok, v->rstate, "passage: ", t, len, v->max_len, v->r_eos, &bt->ids,
                               &bt->scratch) < 0)
            goto fail;
        off[3 * i + 1] = bt->ids.n;
        if (rv_encode_tokenize(v->rtok, v->rstate, "query: ", t, len, v->max_len, v->r_eos, &bt->ids,
                               &bt->scratch) < 0)
            goto fail;
        if (half) {   /* drop EOS, keep int(0.5 n), EOS again */
            size_t n = bt->ids.n - 1 - off[3 * i + 1];
            bt->ids.n = off[3 * i + 1] + n / 2;
            if (rv_ids_push(&bt->ids, v->r_eos) < 0)
                goto fail;
        }
        off[3 * i + 2] = bt->ids.n;
        if (rv_encode_tokenize(v->ltok, v->lstate, "", t, len, v->max_len, v->l_eos, &bt->ids, &bt->scratch) < 0)
            goto fail;
        bt->ids.n--;   /* the LM view carries no EOS */
        if (bt->ids.n == off[3 * i + 2]) {
            rv_error_set("empty LM view");
            goto fail;
        }
    }
    off[3 * B] = bt->ids.n;
    size_t L = 1;
    for (size_t k = 0; k < 3 * B; k++)
        if (off[k + 1] - off[k] > L)
            L = off[k + 1] - off[k];
    if (reserve(bt, B, L) < 0)
        goto out;
    int32_t *dst[3] = {bt->p, bt->q, bt->x};
    int *lens[3] = {bt->pl, bt->ql, bt->xl};
    const uint32_t pad[3] = {v->r_eos, v->r_eos, v->l_eos};
    bt->n_tokens = 0;
    for (i = 0; i < B; i++)
        for (int w = 0; w < 3; w++) {
            size_t a = off[3 * i + w], n = off[3 * i + w + 1] - a;
            int32_t *row = dst[w] + i * L;
            for (size_t t = 0; t < L; t++)
                row[t] = (int32_t)(t < n ? bt->ids.v[a + t] : pad[w]);
            lens[w][i] = (int)n;
            bt->n_tokens += w == 2 ? 2 * n : n;   /* X feeds passes A and B */
        }
    bt->b = (rv_step_batch){(int)B, (int)L, bt->p, bt->q, bt->x, bt->pl, bt->ql, bt->xl};
    rc = 0;
    goto out;
fail:
    rv_error_prefix("chunk %zu of the group", i + 1);
out:
    free(off);
    return rc;
}

void rv_train_batch_free(rv_train_batch *bt)
{
    free(bt->p);
    free(bt->q);
    free(bt->x);
    free(bt->pl);
    free(bt->ql);
    free(bt->xl);
    free(bt->ids.v);
    rv_buf_free(&bt->scratch);
    memset(bt, 0, sizeof *bt);
}
