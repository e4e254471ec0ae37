/* bm25_io.c — writing and reading BM25 index files (formats/bm25-index.md).
 * Every count and offset is checked before it is used, and the trailing
 * XXH3-64 over the whole file must match. */
#include "bm25.h"
#include "bm25_internal.h"
#include "buf.h"
#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define INDEX_MAGIC "RVBM25IX"
#define INDEX_END_MAGIC "RVBM25EN"
#define INDEX_VERSION 1u
#define FLAG_FORWARD 1u
#define HEADER_BYTES 104

/* ---------------------------------------------------------------- writing */

typedef struct {
    FILE *f;
    const char *name;
    XXH3_state_t *h;
    int failed;
} writer;

static int w_bytes(writer *w, const void *p, size_t n)
{
    if (w->failed)
        return -1;
    if (n && fwrite(p, 1, n, w->f) != n) {
        w->failed = 1;
        return rv_error_set("%s: write error", w->name);
    }
    XXH3_64bits_update(w->h, p, n);
    return 0;
}

static int w_u32(writer *w, uint32_t v)
{
    unsigned char b[4];
    rv_store_u32(b, v);
    return w_bytes(w, b, 4);
}

static int w_u64(writer *w, uint64_t v)
{
    unsigned char b[8];
    rv_store_u64(b, v);
    return w_bytes(w, b, 8);
}

static int w_f64(writer *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return w_u64(w, u);
}

static int w_str(writer *w, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        return rv_error_set("%s: a string of %zu bytes is too long", w->name, n);
    if (w_u32(w, (uint32_t)n) < 0)
        return -1;
    return w_bytes(w, s, n);
}

/* u32 or f32 arrays, little-endian, through a bounce buffer. */
static int w_words(writer *w, const void *a, size_t n)
{
    unsigned char buf[65536];
    const unsigned char *p = a;
    while (n) {
        size_t m = n < sizeof buf / 4 ? n : sizeof buf / 4;
        for (size_t i = 0; i < m; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            rv_store_u32(buf + 4 * i, v);
        }
        if (w_bytes(w, buf, 4 * m) < 0)
            return -1;
        p += 4 * m;
        n -= m;
    }
    return 0;
}

static size_t varint_put(unsigned char *p, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

int rv_bm25_index_save(const rv_bm25_index *ix, FILE *f, const char *name)
{
    writer w = {f, name ? name : "<index>", XXH3_createState(), 0};
    if (!w.h)
        return rv_error_set("out of memory");
    XXH3_64bits_reset(w.h);
    int rc = -1;
    uint64_t fwd_bytes = 0;
    if (ix->fwd_off)
        for (size_t i = 0; i < ix->fwd_off[ix->n_docs]; i++) {
            unsigned char tmp[5];
            fwd_bytes += varint_put(tmp, ix->fwd[i]);
        }
    const rv_analyzer *an = ix->an;
    if (w_bytes(&w, INDEX_MAGIC, 8) < 0 || w_u32(&w, INDEX_VERSION) < 0 ||
        w_u32(&w, ix->fwd_off ? FLAG_FORWARD : 0) < 0 || w_u32(&w, (uint32_t)ix->params.variant) < 0 ||
        w_u32(&w, (uint32_t)rv_analyzer_stemmer(an)) < 0 || w_f64(&w, ix->params.k1) < 0 ||
        w_f64(&w, ix->params.b) < 0 || w_f64(&w, ix->params.delta) < 0 || w_u64(&w, ix->n_docs) < 0 ||
        w_u64(&w, ix->n_terms) < 0 || w_u64(&w, ix->n_postings) < 0 || w_u64(&w, ix->gap_bytes) < 0 ||
        w_u64(&w, ix->total_len) < 0 || w_u64(&w, ix->corpus_hash) < 0 || w_u64(&w, fwd_bytes) < 0)
        goto out;
    const char *sw_name = rv_analyzer_stopwords_name(an);
    size_t nsw = rv_analyzer_stopword_count(an);
    if (w_str(&w, sw_name, strlen(sw_name)) < 0 || w_u32(&w, (uint32_t)nsw) < 0)
        goto out;
    for (size_t i = 0; i < nsw; i++) {
        size_t n;
        const char *s = rv_analyzer_stopword(an, i, &n);
        if (w_str(&w, s, n) < 0)
            goto out;
    }
    for (size_t t = 0; t < ix->n_terms; t++) {
        size_t n;
        const char *s = rv_strtab_str(&ix->vocab, (uint32_t)t, &n);
        if (w_str(&w, s, n) < 0)
            goto out;
    }
    if (w_words(&w, ix->df, ix->n_terms) < 0 || w_words(&w, ix->doc_len, ix->n_docs) < 0 ||
        w_bytes(&w, ix->gaps, ix->gap_bytes) < 0 || w_words(&w, ix->impacts, ix->n_postings) < 0)
        goto out;
    if (ix->fwd_off) {
        unsigned char buf[65536];
        size_t used = 0;
        for (size_t i = 0; i < ix->fwd_off[ix->n_docs]; i++) {
            if (used > sizeof buf - 5) {
                if (w_bytes(&w, buf, used) < 0)
                    goto out;
                used = 0;
            }
            used += varint_put(buf + used, ix->fwd[i]);
        }
        if (w_bytes(&w, buf, used) < 0)
            goto out;
    }
    unsigned char tr[16];
    rv_store_u64(tr, XXH3_64bits_digest(w.h));
    memcpy(tr + 8, INDEX_END_MAGIC, 8);
    if (fwrite(tr, 1, 16, f) != 16 || fflush(f) != 0) {
        rv_error_set("%s: write error", w.name);
        goto out;
    }
    rc = 0;
out:
    XXH3_freeState(w.h);
    return rc;
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    FILE *f;
    const char *name;
    XXH3_state_t *h;
    uint64_t off;
} reader;

static int r_bytes(reader *r, void *p, size_t n, const char *what)
{
    if (n && fread(p, 1, n, r->f) != n)
        return rv_error_set("%s: offset %llu: %s: expected %zu more bytes, the file ends (truncated index?)",
                            r->name, (unsigned long long)r->off, what, n);
    XXH3_64bits_update(r->h, p, n);
    r->off += n;
    return 0;
}

static int r_u32(reader *r, uint32_t *v, const char *what)
{
    unsigned char b[4];
    if (r_bytes(r, b, 4, what) < 0)
        return -1;
    *v = rv_load_u32(b);
    return 0;
}

static int r_u64(reader *r, uint64_t *v, const char *what)
{
    unsigned char b[8];
    if (r_bytes(r, b, 8, what) < 0)
        return -1;
    *v = rv_load_u64(b);
    return 0;
}

static int r_f64(reader *r, double *v, const char *what)
{
    uint64_t u;
    if (r_u64(r, &u, what) < 0)
        return -1;
    memcpy(v, &u, 8);
    return 0;
}

static int r_words(reader *r, void *a, size_t n, const char *what)
{
    unsigned char *p = a;
    size_t bytes;
    if (rv_size_mul(n, 4, &bytes, what) < 0 || r_bytes(r, p, bytes, what) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = rv_load_u32(p + 4 * i);
        memcpy(p + 4 * i, &v, 4);
    }
    return 0;
}

/* Decodes one LEB128 u32 from p[0..end); 0 on a malformed varint. */
static size_t varint_get(const unsigned char *p, const unsigned char *end, uint32_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 5 && p + i < end; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (x > UINT32_MAX)
                return 0;
            *v = (uint32_t)x;
            return i + 1;
        }
    }
    return 0;
}

static int check_postings(rv_bm25_index *ix, const char *name)
{
    const unsigned char *p = ix->gaps, *end = ix->gaps + ix->gap_bytes;
    uint64_t post = 0;
    for (size_t t = 0; t < ix->n_terms; t++) {
        ix->post_off[t] = post;
        ix->gap_off[t] = (uint64_t)(p - ix->gaps);
        uint64_t d = 0;
        for (uint32_t i = 0; i < ix->df[t]; i++) {
            uint32_t g;
            size_t n = varint_get(p, end, &g);
            if (!n)
                return rv_error_set("%s: postings of term %zu: malformed or truncated doc-id gap %u", name, t, i);
            if (i > 0 && g == 0)
                return rv_error_set("%s: postings of term %zu: doc-id gap %u is 0 (ids must increase)", name, t, i);
            d += g;
            if (d >= ix->n_docs)
                return rv_error_set("%s: postings of term %zu: document %llu, the index has %zu", name, t,
                                    (unsigned long long)d, ix->n_docs);
            p += n;
        }
        post += ix->df[t];
    }
    ix->post_off[ix->n_terms] = post;
    ix->gap_off[ix->n_terms] = (uint64_t)(p - ix->gaps);
    if (p != end)
        return rv_error_set("%s: postings: %llu bytes left after the last term's list", name,
                            (unsigned long long)(end - p));
    for (uint64_t i = 0; i < ix->n_postings; i++)
        if (!isfinite(ix->impacts[i]))
            return rv_error_set("%s: impact %llu is not a finite number", name, (unsigned long long)i);
    return 0;
}

static int read_forward(reader *r, rv_bm25_index *ix, uint64_t fwd_bytes)
{
    unsigned char *buf = rv_malloc(fwd_bytes ? (size_t)fwd_bytes : 1);
    if (!buf)
        return -1;
    int rc = -1;
    ix->fwd_off = rv_malloc((ix->n_docs + 1) * sizeof *ix->fwd_off);
    ix->fwd = rv_malloc((ix->total_len ? (size_t)ix->total_len : 1) * sizeof *ix->fwd);
    if (!ix->fwd_off || !ix->fwd || r_bytes(r, buf, (size_t)fwd_bytes, "term sequences") < 0)
        goto out;
    const unsigned char *p = buf, *end = buf + fwd_bytes;
    uint64_t k = 0;
    for (size_t d = 0; d < ix->n_docs; d++) {
        ix->fwd_off[d] = k;
        for (uint32_t i = 0; i < ix->doc_len[d]; i++) {
            uint32_t t;
            size_t n = varint_get(p, end, &t);
            if (!n || t >= ix->n_terms) {
                rv_error_set("%s: term sequence of document %zu: bad term id at position %u", r->name, d, i);
                goto out;
            }
            ix->fwd[k++] = t;
            p += n;
        }
    }
    ix->fwd_off[ix->n_docs] = k;
    if (p != end) {
        rv_error_set("%s: term sequences: %llu bytes left after the last document", r->name,
                     (unsigned long long)(end - p));
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

rv_bm25_index *rv_bm25_index_load(FILE *f, const char *name)
{
    reader r = {f, name ? name : "<index>", XXH3_createState(), 0};
    rv_bm25_index *ix = rv_calloc(1, sizeof *ix);
    char *sw_name = NULL;
    char **sw = NULL;
    size_t *sw_len = NULL;
    uint32_t nsw = 0;
    char *term = NULL;
    if (!r.h || !ix) {
        if (!r.h)
            rv_error_set("out of memory");
        goto fail;
    }
    XXH3_64bits_reset(r.h);
    unsigned char magic[8];
    uint32_t version, flags, variant, stem;
    uint64_t n_docs, n_terms, fwd_bytes;
    if (r_bytes(&r, magic, 8, "magic") < 0)
        goto fail;
    if (memcmp(magic, INDEX_MAGIC, 8) != 0) {
        rv_error_set("%s: expected a BM25 index (magic \"%s\"), found other bytes", r.name, INDEX_MAGIC);
        goto fail;
    }
    if (r_u32(&r, &version, "version") < 0 || r_u32(&r, &flags, "flags") < 0 ||
        r_u32(&r, &variant, "variant") < 0 || r_u32(&r, &stem, "stemmer") < 0 ||
        r_f64(&r, &ix->params.k1, "k1") < 0 || r_f64(&r, &ix->params.b, "b") < 0 ||
        r_f64(&r, &ix->params.delta, "delta") < 0 || r_u64(&r, &n_docs, "n_docs") < 0 ||
        r_u64(&r, &n_terms, "n_terms") < 0 || r_u64(&r, &ix->n_postings, "n_postings") < 0 ||
        r_u64(&r, &ix->gap_bytes, "gap_bytes") < 0 || r_u64(&r, &ix->total_len, "total_len") < 0 ||
        r_u64(&r, &ix->corpus_hash, "corpus_hash") < 0 || r_u64(&r, &fwd_bytes, "forward_bytes") < 0)
        goto fail;
    if (version != INDEX_VERSION) {
        rv_error_set("%s: version: expected %u, found %u", r.name, INDEX_VERSION, version);
        goto fail;
    }
    if (flags & ~FLAG_FORWARD) {
        rv_error_set("%s: flags: unknown bits 0x%x", r.name, flags & ~FLAG_FORWARD);
        goto fail;
    }
    ix->params.variant = (rv_bm25_variant)variant;
    if (variant > RV_BM25_BM25PLUS || rv_bm25_params_check(&ix->params) < 0) {
        rv_error_prefix("%s: parameters", r.name);
        goto fail;
    }
    if (stem > RV_STEM_ENGLISH) {
        rv_error_set("%s: stemmer: expected 0 or 1, found %u", r.name, stem);
        goto fail;
    }
    /* Sizes must fit in memory words and in the file. */
    if (n_docs == 0 || n_docs >= UINT32_MAX || n_terms >= UINT32_MAX - 2 || n_terms > ix->n_postings ||
        ix->n_postings > ix->total_len || (!(flags & FLAG_FORWARD) && fwd_bytes != 0)) {
        rv_error_set("%s: header: inconsistent sizes (%llu docs, %llu terms, %llu postings, %llu tokens)", r.name,
                     (unsigned long long)n_docs, (unsigned long long)n_terms,
                     (unsigned long long)ix->n_postings, (unsigned long long)ix->total_len);
        goto fail;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
        /* Lower bound of the file size implied by the header. */
        long double need = (long double)HEADER_BYTES + 8.0L * n_terms + 4.0L * n_docs + ix->gap_bytes +
                           4.0L * ix->n_postings + fwd_bytes + 16;
        if (need > (long double)st.st_size) {
            rv_error_set("%s: header promises at least %.0Lf bytes, the file has %lld (truncated index?)", r.name,
                         need, (long long)st.st_size);
            goto fail;
        }
    }
    if (ix->n_postings > SIZE_MAX / 4 || ix->gap_bytes > SIZE_MAX / 2 || ix->total_len > SIZE_MAX / 4 ||
        fwd_bytes > SIZE_MAX / 2) {
        rv_error_set("%s: the index is too large for this machine", r.name);
        goto fail;
    }
    ix->n_docs = (size_t)n_docs;
    ix->n_terms = (size_t)n_terms;
    /* Stopwords and stemmer: the analyzer queries must be analyzed with. */
    uint32_t nl;
    if (r_u32(&r, &nl, "stopwords name") < 0)
        goto fail;
    if (nl > 4096) {
        rv_error_set("%s: stopwords name: %u bytes (at most 4096)", r.name, nl);
        goto fail;
    }
    if (!(sw_name = rv_malloc(nl + 1)) || r_bytes(&r, sw_name, nl, "stopwords name") < 0)
        goto fail;
    sw_name[nl] = 0;
    if (r_u32(&r, &nsw, "stopword count") < 0)
        goto fail;
    if (nsw > (1u << 24)) {
        rv_error_set("%s: stopword count %u is implausible", r.name, nsw);
        goto fail;
    }
    sw = rv_calloc(nsw ? nsw : 1, sizeof *sw);
    sw_len = rv_calloc(nsw ? nsw : 1, sizeof *sw_len);
    if (!sw || !sw_len)
        goto fail;
    for (uint32_t i = 0; i < nsw; i++) {
        uint32_t n;
        if (r_u32(&r, &n, "stopword") < 0)
            goto fail;
        if (n > 4096) {
            rv_error_set("%s: stopword %u: %u bytes (at most 4096)", r.name, i, n);
            goto fail;
        }
        if (!(sw[i] = rv_malloc(n ? n : 1)) || r_bytes(&r, sw[i], n, "stopword") < 0)
            goto fail;
        sw_len[i] = n;
    }
    ix->an = rv_analyzer_new_list(sw_name, nsw, (const char *const *)sw, sw_len, (rv_stemmer_kind)stem);
    if (!ix->an)
        goto fail;
    /* Vocabulary. */
    size_t term_cap = 256;
    if (!(term = rv_malloc(term_cap)))
        goto fail;
    for (size_t t = 0; t < ix->n_terms; t++) {
        uint32_t n, id;
        int inserted;
        if (r_u32(&r, &n, "term") < 0)
            goto fail;
        if (n > (1u << 20)) {
            rv_error_set("%s: term %zu: %u bytes (at most 1 MiB)", r.name, t, n);
            goto fail;
        }
        if (n > term_cap) {
            free(term);
            term_cap = n;
            if (!(term = rv_malloc(term_cap)))
                goto fail;
        }
        if (r_bytes(&r, term, n, "term") < 0 ||
            rv_strtab_intern(&ix->vocab, term, n, rv_strtab_hash(term, n), &id, &inserted) < 0)
            goto fail;
        if (!inserted || id != t) {
            rv_error_set("%s: term %zu repeats term %u", r.name, t, id);
            goto fail;
        }
    }
    size_t nt = ix->n_terms ? ix->n_terms : 1;
    ix->df = rv_malloc(nt * sizeof *ix->df);
    ix->doc_len = rv_malloc(ix->n_docs * sizeof *ix->doc_len);
    ix->post_off = rv_malloc((nt + 1) * sizeof *ix->post_off);
    ix->gap_off = rv_malloc((nt + 1) * sizeof *ix->gap_off);
    ix->gaps = rv_malloc(ix->gap_bytes ? (size_t)ix->gap_bytes : 1);
    ix->impacts = rv_malloc((ix->n_postings ? (size_t)ix->n_postings : 1) * sizeof *ix->impacts);
    if (!ix->df || !ix->doc_len || !ix->post_off || !ix->gap_off || !ix->gaps || !ix->impacts)
        goto fail;
    if (r_words(&r, ix->df, ix->n_terms, "document frequencies") < 0 ||
        r_words(&r, ix->doc_len, ix->n_docs, "document lengths") < 0)
        goto fail;
    uint64_t sum_df = 0, sum_len = 0;
    for (size_t t = 0; t < ix->n_terms; t++) {
        if (ix->df[t] == 0 || ix->df[t] > ix->n_docs) {
            rv_error_set("%s: term %zu: document frequency %u outside [1, %zu]", r.name, t, ix->df[t], ix->n_docs);
            goto fail;
        }
        sum_df += ix->df[t];
    }
    for (size_t d = 0; d < ix->n_docs; d++)
        sum_len += ix->doc_len[d];
    if (sum_df != ix->n_postings || sum_len != ix->total_len) {
        rv_error_set("%s: document frequencies sum to %llu (header: %llu postings), lengths to %llu "
                     "(header: %llu tokens)", r.name, (unsigned long long)sum_df,
                     (unsigned long long)ix->n_postings, (unsigned long long)sum_len,
                     (unsigned long long)ix->total_len);
        goto fail;
    }
    if (r_bytes(&r, ix->gaps, (size_t)ix->gap_bytes, "postings") < 0 ||
        r_words(&r, ix->impacts, (size_t)ix->n_postings, "impacts") < 0)
        goto fail;
    if (check_postings(ix, r.name) < 0)
        goto fail;
    if ((flags & FLAG_FORWARD) && read_forward(&r, ix, fwd_bytes) < 0)
        goto fail;
    unsigned char tr[16];
    uint64_t digest = XXH3_64bits_digest(r.h);
    if (fread(tr, 1, 16, f) != 16) {
        rv_error_set("%s: offset %llu: expected the 16-byte trailer, the file ends (truncated index?)", r.name,
                     (unsigned long long)r.off);
        goto fail;
    }
    if (memcmp(tr + 8, INDEX_END_MAGIC, 8) != 0 || rv_load_u64(tr) != digest) {
        rv_error_set("%s: checksum mismatch or bad trailer (the file is damaged)", r.name);
        goto fail;
    }
    if (fgetc(f) != EOF) {
        rv_error_set("%s: unexpected bytes after the trailer", r.name);
        goto fail;
    }
    if (rv_bm25_index_stats(ix) < 0 || rv_bm25_index_prepare(ix) < 0)
        goto fail;
    for (uint32_t i = 0; i < nsw; i++)
        free(sw[i]);
    free(sw);
    free(sw_len);
    free(sw_name);
    free(term);
    XXH3_freeState(r.h);
    return ix;
fail:
    for (uint32_t i = 0; sw && i < nsw; i++)
        free(sw[i]);
    free(sw);
    free(sw_len);
    free(sw_name);
    free(term);
    if (r.h)
        XXH3_freeState(r.h);
    rv_bm25_index_free(ix);
    return NULL;
}
