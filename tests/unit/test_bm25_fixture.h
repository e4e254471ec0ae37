/* test_bm25_fixture.h — shared by the BM25 unit tests: reading the corpora,
 * queries and result tables of tests/fixtures/bm25 (written by
 * scripts/make-bm25-fixtures.py from bm25s) and comparing a ranking with
 * bm25s's up to exact score ties. Header-only (static functions). */
#ifndef RV_TEST_BM25_FIXTURE_H
#define RV_TEST_BM25_FIXTURE_H

#include "bm25.h"
#include "buf.h"
#include "json.h"
#include "lines.h"
#include "records.h"
#include "stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not every test uses every helper. */
#define FX_UNUSED __attribute__((unused))

static char fixture_dir[4096];

static FX_UNUSED void fixture_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", fixture_dir, name);
}

/* ------------------------------------------------------------ documents */

typedef struct {
    char **id, **text;
    size_t *len;
    size_t n, cap;
} doc_list;

static FX_UNUSED void docs_add(doc_list *l, const char *id, size_t idn, const char *t, size_t tn)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->id = realloc(l->id, l->cap * sizeof *l->id);
        l->text = realloc(l->text, l->cap * sizeof *l->text);
        l->len = realloc(l->len, l->cap * sizeof *l->len);
    }
    l->id[l->n] = strndup(id, idn);
    l->text[l->n] = malloc(tn + 1);
    memcpy(l->text[l->n], t, tn);
    l->text[l->n][tn] = 0;
    l->len[l->n++] = tn;
}

static FX_UNUSED void docs_free(doc_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->id[i]);
        free(l->text[i]);
    }
    free(l->id);
    free(l->text);
    free(l->len);
    memset(l, 0, sizeof *l);
}

/* A doc stream (title + " " + text) or BEIR JSONL (queries: text only). */
static FX_UNUSED int load_docs(const char *name, int queries, doc_list *out)
{
    char path[4200];
    fixture_path(path, sizeof path, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t nl = strlen(name);
    if (nl > 4 && strcmp(name + nl - 4, ".rvs") == 0) {
        rv_stream_reader *r = rv_stream_reader_open(f, path);
        const unsigned char *rec;
        size_t len;
        rv_buf t = {0};
        while (r && rv_stream_read(r, &rec, &len) == 1) {
            rv_doc d;
            if (rv_doc_decode(rec, len, &d) < 0)
                break;
            t.len = 0;
            rv_buf_append(&t, d.title.p, d.title.len);
            rv_buf_putc(&t, ' ');
            rv_buf_append(&t, d.text.p, d.text.len);
            docs_add(out, d.id.p, d.id.len, (const char *)t.data, t.len);
        }
        rv_buf_free(&t);
        rv_stream_reader_close(r);
    } else {
        rv_lines lr;
        rv_lines_init(&lr, f);
        rv_json_parser *jp = rv_json_parser_new();
        char *line;
        size_t len;
        rv_buf t = {0};
        while (rv_lines_next(&lr, &line, &len) == 1) {
            rv_json *v = rv_json_parse(jp, line, len);
            if (!v)
                continue;
            const rv_json *id = rv_json_get(v, "_id"), *tx = rv_json_get(v, "text"), *ti = rv_json_get(v, "title");
            t.len = 0;
            if (!queries) {
                if (ti)
                    rv_buf_append(&t, ti->u.string, ti->len);
                rv_buf_putc(&t, ' ');
            }
            rv_buf_append(&t, tx->u.string, tx->len);
            docs_add(out, id->u.string, id->len, t.data ? (const char *)t.data : "", t.len);
        }
        rv_buf_free(&t);
        rv_json_parser_free(jp);
        rv_lines_free(&lr);
    }
    fclose(f);
    return out->n ? 0 : -1;
}

/* The fixture chunk set: Cranfield then Medline documents cut into windows
 * of 30 space-separated words (ids are chunk numbers). */
static FX_UNUSED doc_list chunk_set;

static FX_UNUSED void make_chunks(void)
{
    if (chunk_set.n)
        return;
    const char *colls[2] = {"cranfield.rvs", "medline.rvs"};
    for (int c = 0; c < 2; c++) {
        doc_list d = {0};
        if (load_docs(colls[c], 0, &d) < 0)
            return;
        for (size_t i = 0; i < d.n; i++) {
            const char *p = d.text[i];
            rv_buf cur = {0};
            int words = 0;
            for (;;) {
                while (*p == ' ')
                    p++;
                if (!*p || words == 30) {
                    if (words) {
                        char id[32];
                        snprintf(id, sizeof id, "%zu", chunk_set.n);
                        docs_add(&chunk_set, id, strlen(id), (const char *)cur.data, cur.len);
                    }
                    cur.len = 0;
                    words = 0;
                    if (!*p)
                        break;
                }
                const char *e = p;
                while (*e && *e != ' ')
                    e++;
                if (words++)
                    rv_buf_putc(&cur, ' ');
                rv_buf_append(&cur, p, (size_t)(e - p));
                p = e;
            }
            rv_buf_free(&cur);
        }
        docs_free(&d);
    }
}

/* -------------------------------------------------------------- fixtures */

typedef struct {
    char qid[64];
    char next[32];          /* score after the last listed hit, or "none" */
    size_t first, n;        /* hits[first .. first + n) */
} fx_query;

typedef struct {
    char variant[256], stopwords[256], stemmer[256], corpus[256], queries[256];
    double k1, b, delta;
    uint32_t k;
    fx_query *q;
    size_t nq;
    char (*doc)[64];
    float *score;
    size_t nh;
} fixture;

static FX_UNUSED int load_fixture(const char *name, fixture *fx)
{
    char path[4200];
    fixture_path(path, sizeof path, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    memset(fx, 0, sizeof *fx);
    char line[4096];
    size_t qcap = 0, hcap = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "# next ", 7) == 0) {
            if (fx->nq == qcap) {
                qcap = qcap ? qcap * 2 : 256;
                fx->q = realloc(fx->q, qcap * sizeof *fx->q);
            }
            fx_query *q = &fx->q[fx->nq++];
            memset(q, 0, sizeof *q);
            sscanf(line + 7, "%63s %31s", q->qid, q->next);
            q->first = fx->nh;
            continue;
        }
        if (line[0] == '#') {
            char key[64], val[256];
            if (sscanf(line, "# %63[^=]=%255s", key, val) != 2)
                continue;
            if (!strcmp(key, "variant")) snprintf(fx->variant, sizeof fx->variant, "%s", val);
            else if (!strcmp(key, "stopwords")) snprintf(fx->stopwords, sizeof fx->stopwords, "%s", val);
            else if (!strcmp(key, "stemmer")) snprintf(fx->stemmer, sizeof fx->stemmer, "%s", val);
            else if (!strcmp(key, "corpus")) snprintf(fx->corpus, sizeof fx->corpus, "%s", val);
            else if (!strcmp(key, "queries")) snprintf(fx->queries, sizeof fx->queries, "%s", val);
            else if (!strcmp(key, "k1")) fx->k1 = atof(val);
            else if (!strcmp(key, "b")) fx->b = atof(val);
            else if (!strcmp(key, "delta")) fx->delta = atof(val);
            else if (!strcmp(key, "k")) fx->k = (uint32_t)atoi(val);
            continue;
        }
        char qid[64], doc[64], score[64];
        int rank;
        if (sscanf(line, "%63s\t%d\t%63s\t%63s", qid, &rank, doc, score) != 4 || !fx->nq)
            continue;
        if (fx->nh == hcap) {
            hcap = hcap ? hcap * 2 : 1024;
            fx->doc = realloc(fx->doc, hcap * sizeof *fx->doc);
            fx->score = realloc(fx->score, hcap * sizeof *fx->score);
        }
        snprintf(fx->doc[fx->nh], 64, "%s", doc);
        fx->score[fx->nh++] = strtof(score, NULL);
        fx->q[fx->nq - 1].n++;
    }
    fclose(f);
    return 0;
}

static FX_UNUSED void fixture_free(fixture *fx)
{
    free(fx->q);
    free(fx->doc);
    free(fx->score);
}

static FX_UNUSED void fixture_params(const fixture *fx, rv_bm25_params *p)
{
    rv_bm25_params_default(p);
    rv_bm25_variant_parse(fx->variant, &p->variant);
    p->k1 = fx->k1;
    p->b = fx->b;
    p->delta = fx->delta;
}

static FX_UNUSED int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Our hits for one query against the fixture's: same score at every rank
 * (1e-5 relative is the requirement; the engine reproduces bm25s's float32
 * arithmetic, so the scores must in fact be identical), same documents except inside
 * groups of tied scores, whose members must agree as sets unless the group
 * runs past the cut. Returns 0, or -1 with a message in err. */
static FX_UNUSED int compare_query(const fixture *fx, const fx_query *q, const rv_bm25_hit *h, uint32_t nh,
                         char *const *ids, char *err, size_t errn)
{
    if (nh < q->n) {
        snprintf(err, errn, "query %s: %u hits, bm25s has %zu", q->qid, nh, q->n);
        return -1;
    }
    for (size_t i = 0; i < q->n; i++) {
        float e = fx->score[q->first + i], a = h[i].score;
        if (fabsf(a - e) > 1e-5f * fabsf(e)) {
            snprintf(err, errn, "query %s rank %zu: score %.9g, bm25s %.9g", q->qid, i + 1, a, e);
            return -1;
        }
        if (a != e) {
            snprintf(err, errn, "query %s rank %zu: score %.9g, bm25s %.9g: within 1e-5 but not identical "
                     "(float arithmetic differs from bm25s's)", q->qid, i + 1, a, e);
            return -1;
        }
    }
    /* beyond the fixture's hits (it drops zero-score padding): no higher score */
    if (q->n && nh > q->n && h[q->n].score > fx->score[q->first + q->n - 1]) {
        snprintf(err, errn, "query %s: extra hit scores %.9g above bm25s's last", q->qid, h[q->n].score);
        return -1;
    }
    int open_end = strcmp(q->next, "none") != 0 && q->n && strtof(q->next, NULL) == fx->score[q->first + q->n - 1];
    size_t i = 0;
    while (i < q->n) {
        size_t j = i;
        while (j < q->n && fx->score[q->first + j] == fx->score[q->first + i])
            j++;
        if (j == q->n && open_end)
            break; /* a tie across the cut: membership is arbitrary */
        const char *want[64], *got[64];
        size_t m = j - i;
        if (m > 64)
            m = 64;
        for (size_t t = 0; t < m; t++) {
            want[t] = fx->doc[q->first + i + t];
            got[t] = ids[h[i + t].doc];
        }
        qsort(want, m, sizeof *want, cmp_str);
        qsort(got, m, sizeof *got, cmp_str);
        for (size_t t = 0; t < m; t++)
            if (strcmp(want[t], got[t]) != 0) {
                snprintf(err, errn, "query %s ranks %zu-%zu (score %.9g): document %s, bm25s has %s", q->qid,
                         i + 1, j, fx->score[q->first + i], got[t], want[t]);
                return -1;
            }
        i = j;
    }
    return 0;
}

#endif
