/* analyzer.c — bm25s-compatible text analysis (see analyzer.h). */
#include "analyzer.h"
#include "bm25_strtab.h"
#include "error.h"
#include "json.h"
#include "stopwords_en.h"

#include <libstemmer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

struct rv_analyzer {
    rv_strtab stop;         /* the stopword set; ids are insertion order */
    char *stop_name;
    rv_stemmer_kind stem;
    uint64_t stop_hash;
};

/* A cached analysis of one surface word: a stopword, or its stem. */
typedef struct {
    uint64_t stem_hash;
    uint64_t stem_off;
    uint32_t stem_len;
    uint32_t is_stop;
} stem_entry;

/* The cache is dropped when it grows past this many words (bounded memory). */
#define STEM_CACHE_MAX (1u << 20)

struct rv_analysis {
    const rv_analyzer *a;
    struct sb_stemmer *stemmer;
    rv_strtab cache;            /* surface word -> entry index */
    stem_entry *entries;
    size_t entries_cap;
    rv_buf stems;               /* stem bytes of the cache entries */
    rv_buf word;                /* the word being collected */
    rv_buf out;                 /* term bytes of the last rv_analyze */
    uint64_t *term_off;         /* n_terms + 1 */
    uint64_t *term_hash;
    size_t n_terms, terms_cap;
};

/* ------------------------------------------------------------ characters */

/* ASCII classes: bit 0 word character (letters, digits, '_'), bit 1 cased
 * (letters), bit 2 case-ignorable (' . : ^ `). */
static const unsigned char ascii_class[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 4, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 0, 0, 0, 0, 0,
    0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 4, 1,
    4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0,
};

static int is_word_cp(int32_t c)
{
    if (c < 128)
        return ascii_class[c] & 1;
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

/* Case_Ignorable as Python's final-sigma rule uses it: Mn, Me, Cf, Lm, Sk and
 * the Word_Break MidLetter / MidNumLet / Single_Quote characters. */
static int is_case_ignorable(int32_t c)
{
    if (c < 128)
        return (ascii_class[c] & 4) != 0;
    switch (c) {
    case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018: case 0x2019: case 0x2024:
    case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    }
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

/* Cased (Lowercase, Uppercase or Lt) and not case-ignorable. Other_Lowercase /
 * Other_Uppercase characters without case mappings are listed by hand. */
static int is_cased(int32_t c)
{
    if (c < 128)
        return (ascii_class[c] & 2) != 0;
    if (is_case_ignorable(c))
        return 0;
    if (c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
        (c >= 0x1F170 && c <= 0x1F189))
        return 1;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;
}

/* Decodes one code point at p (n bytes left); invalid bytes read as U+FFFD,
 * one byte at a time. */
static size_t decode(const unsigned char *p, size_t n, int32_t *cp)
{
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    utf8proc_ssize_t r = utf8proc_iterate(p, n > 4 ? 4 : (utf8proc_ssize_t)n, cp);
    if (r <= 0) {
        *cp = 0xFFFD;
        return 1;
    }
    return (size_t)r;
}

/* Greek capital sigma at byte i (2 bytes) becomes final ς when the last
 * non-ignorable character before it is cased and the next non-ignorable
 * character after it is not (Python's str.lower rule). */
static int sigma_is_final(int prev_cased, const unsigned char *t, size_t len, size_t after)
{
    if (!prev_cased)
        return 0;
    size_t j = after;
    while (j < len) {
        int32_t c;
        j += decode(t + j, len - j, &c);
        if (!is_case_ignorable(c))
            return !is_cased(c);
    }
    return 1;
}

/* Calls emit(ctx, word, bytes, code points) for each maximal run of word
 * characters of the lower-cased text. */
typedef int (*word_fn)(void *ctx, const char *w, size_t n, size_t ncp);

static int put_utf8(rv_buf *b, int32_t c)
{
    if (rv_buf_reserve(b, 4) < 0)
        return -1;
    b->len += (size_t)utf8proc_encode_char(c, b->data + b->len);
    return 0;
}

static int scan_words(const char *text, size_t len, rv_buf *word, word_fn emit, void *ctx)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t ncp = 0;
    int prev_cased = 0;
    word->len = 0;
    for (size_t i = 0; i < len;) {
        unsigned char byte = t[i];
        if (byte < 0x80) {
            unsigned char k = ascii_class[byte];
            i++;
            if (!(k & 4))
                prev_cased = (k & 2) != 0;
            if (k & 1) {
                if (rv_buf_putc(word, byte >= 'A' && byte <= 'Z' ? byte + 32 : byte) < 0)
                    return -1;
                ncp++;
            } else if (ncp) {
                if (emit(ctx, (const char *)word->data, word->len, ncp) < 0)
                    return -1;
                word->len = 0;
                ncp = 0;
            }
            continue;
        }
        int32_t c, lower[2];
        size_t nl = 1;
        size_t step = decode(t + i, len - i, &c);
        if (c == 0x130) { /* İ lower-cases to i + combining dot above */
            lower[0] = 'i';
            lower[1] = 0x307;
            nl = 2;
        } else if (c == 0x3A3) {
            lower[0] = sigma_is_final(prev_cased, t, len, i + step) ? 0x3C2 : 0x3C3;
        } else {
            lower[0] = utf8proc_tolower(c);
        }
        i += step;
        if (!is_case_ignorable(c))
            prev_cased = is_cased(c);
        for (size_t j = 0; j < nl; j++) {
            if (is_word_cp(lower[j])) {
                if (put_utf8(word, lower[j]) < 0)
                    return -1;
                ncp++;
            } else if (ncp) {
                if (emit(ctx, (const char *)word->data, word->len, ncp) < 0)
                    return -1;
                word->len = 0;
                ncp = 0;
            }
        }
    }
    if (ncp && emit(ctx, (const char *)word->data, word->len, ncp) < 0)
        return -1;
    word->len = 0;
    return 0;
}

/* -------------------------------------------------------------- analyzer */

static rv_analyzer *analyzer_alloc(const char *name, rv_stemmer_kind stem)
{
    rv_analyzer *a = rv_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->stem = stem;
    a->stop_name = strdup(name);
    if (!a->stop_name) {
        free(a);
        rv_error_set("out of memory");
        return NULL;
    }
    return a;
}

static int add_stopword(rv_analyzer *a, const char *w, size_t n)
{
    uint32_t id;
    return rv_strtab_intern(&a->stop, w, n, rv_strtab_hash(w, n), &id, NULL);
}

static void finish_hash(rv_analyzer *a)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) { /* fall back to a hash of the concatenation (still deterministic) */
        a->stop_hash = XXH3_64bits(a->stop.arena, a->stop.arena_len);
        return;
    }
    XXH3_64bits_reset(st);
    for (size_t i = 0; i < rv_strtab_count(&a->stop); i++) {
        size_t n;
        const char *w = rv_strtab_str(&a->stop, (uint32_t)i, &n);
        XXH3_64bits_update(st, w, n);
        XXH3_64bits_update(st, "", 1);
    }
    a->stop_hash = XXH3_64bits_digest(st);
    XXH3_freeState(st);
}

static int parse_stemmer(const char *s, rv_stemmer_kind *out)
{
    if (strcmp(s, "english") == 0 || strcmp(s, "en") == 0)
        *out = RV_STEM_ENGLISH;
    else if (strcmp(s, "none") == 0)
        *out = RV_STEM_NONE;
    else
        return rv_error_set("stemmer: expected \"english\" or \"none\", found \"%s\"", s);
    return 0;
}

static int load_stopword_file(rv_analyzer *a, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return rv_error_set("%s: cannot open the stopword file", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t s = 0, e = (size_t)n;
        while (s < e && (line[s] == ' ' || line[s] == '\t'))
            s++;
        while (e > s && (line[e - 1] == '\n' || line[e - 1] == '\r' || line[e - 1] == ' ' || line[e - 1] == '\t'))
            e--;
        if (e == s)
            continue;
        if (!rv_utf8_valid(line + s, e - s)) {
            rc = rv_error_set("%s:%zu: expected a UTF-8 stopword, found invalid bytes", path, lineno);
            break;
        }
        if (add_stopword(a, line + s, e - s) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = rv_error_set("%s: read error", path);
    free(line);
    fclose(f);
    return rc;
}

rv_analyzer *rv_analyzer_new(const char *stopwords, const char *stemmer)
{
    rv_stemmer_kind stem = RV_STEM_ENGLISH;
    if (parse_stemmer(stemmer ? stemmer : "english", &stem) < 0)
        return NULL;
    if (!stopwords)
        stopwords = "en";
    rv_analyzer *a = analyzer_alloc(stopwords, stem);
    if (!a)
        return NULL;
    int rc = 0;
    if (strcmp(stopwords, "en") == 0 || strcmp(stopwords, "english") == 0) {
        free(a->stop_name);
        a->stop_name = strdup("en");
        if (!a->stop_name)
            rc = rv_error_set("out of memory");
        for (size_t i = 0; rc == 0 && i < rv_stopwords_en_count; i++)
            rc = add_stopword(a, rv_stopwords_en[i], strlen(rv_stopwords_en[i]));
    } else if (strcmp(stopwords, "none") != 0) {
        rc = load_stopword_file(a, stopwords);
    }
    if (rc < 0) {
        rv_analyzer_free(a);
        return NULL;
    }
    finish_hash(a);
    return a;
}

rv_analyzer *rv_analyzer_new_list(const char *name, size_t n, const char *const *words,
                                  const size_t *lens, rv_stemmer_kind stem)
{
    if (stem != RV_STEM_NONE && stem != RV_STEM_ENGLISH) {
        rv_error_set("stemmer: unknown stemmer code %d", (int)stem);
        return NULL;
    }
    rv_analyzer *a = analyzer_alloc(name, stem);
    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (add_stopword(a, words[i], lens[i]) < 0) {
            rv_analyzer_free(a);
            return NULL;
        }
    finish_hash(a);
    return a;
}

void rv_analyzer_free(rv_analyzer *a)
{
    if (!a)
        return;
    rv_strtab_free(&a->stop);
    free(a->stop_name);
    free(a);
}

const char *rv_analyzer_stopwords_name(const rv_analyzer *a) { return a->stop_name; }
const char *rv_analyzer_stemmer_name(const rv_analyzer *a) { return a->stem == RV_STEM_ENGLISH ? "english" : "none"; }
rv_stemmer_kind rv_analyzer_stemmer(const rv_analyzer *a) { return a->stem; }
size_t rv_analyzer_stopword_count(const rv_analyzer *a) { return rv_strtab_count(&a->stop); }
const char *rv_analyzer_stopword(const rv_analyzer *a, size_t i, size_t *len)
{
    return rv_strtab_str(&a->stop, (uint32_t)i, len);
}
uint64_t rv_analyzer_stopwords_hash(const rv_analyzer *a) { return a->stop_hash; }

/* -------------------------------------------------------------- analysis */

rv_analysis *rv_analysis_new(const rv_analyzer *a)
{
    rv_analysis *w = rv_calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->a = a;
    if (a->stem == RV_STEM_ENGLISH) {
        w->stemmer = sb_stemmer_new("english", "UTF_8");
        if (!w->stemmer) {
            free(w);
            rv_error_set("libstemmer: cannot create the English UTF-8 stemmer");
            return NULL;
        }
    }
    return w;
}

void rv_analysis_free(rv_analysis *w)
{
    if (!w)
        return;
    if (w->stemmer)
        sb_stemmer_delete(w->stemmer);
    rv_strtab_free(&w->cache);
    free(w->entries);
    rv_buf_free(&w->stems);
    rv_buf_free(&w->word);
    rv_buf_free(&w->out);
    free(w->term_off);
    free(w->term_hash);
    free(w);
}

static int push_term(rv_analysis *w, const char *s, size_t n, uint64_t h)
{
    if (w->n_terms + 1 >= w->terms_cap) {
        size_t cap = w->terms_cap ? w->terms_cap * 2 : 256;
        uint64_t *o = realloc(w->term_off, (cap + 1) * sizeof *o);
        if (!o)
            return rv_error_set("out of memory");
        w->term_off = o;
        uint64_t *hh = realloc(w->term_hash, cap * sizeof *hh);
        if (!hh)
            return rv_error_set("out of memory");
        w->term_hash = hh;
        w->terms_cap = cap;
    }
    if (rv_buf_append(&w->out, s, n) < 0)
        return -1;
    w->term_hash[w->n_terms] = h;
    w->term_off[++w->n_terms] = w->out.len;
    return 0;
}

/* Stems a word on a cache miss and records the result. */
static int cache_word(rv_analysis *w, const char *s, size_t n, uint64_t h, const stem_entry **out)
{
    if (rv_strtab_count(&w->cache) >= STEM_CACHE_MAX) {
        rv_strtab_clear(&w->cache);
        w->stems.len = 0;
    }
    stem_entry e = {0, 0, 0, 0};
    if (rv_strtab_find(&w->a->stop, s, n, h) != RV_STRTAB_NONE) {
        e.is_stop = 1;
    } else {
        if (n > (size_t)INT32_MAX)
            return rv_error_set("a word of %zu bytes is too long to stem", n);
        const sb_symbol *st = sb_stemmer_stem(w->stemmer, (const sb_symbol *)s, (int)n);
        if (!st)
            return rv_error_set("libstemmer: out of memory stemming a word");
        int sl = sb_stemmer_length(w->stemmer);
        e.stem_off = w->stems.len;
        e.stem_len = (uint32_t)sl;
        e.stem_hash = rv_strtab_hash((const char *)st, (size_t)sl);
        if (rv_buf_append(&w->stems, st, (size_t)sl) < 0)
            return -1;
    }
    uint32_t id;
    if (rv_strtab_intern(&w->cache, s, n, h, &id, NULL) < 0)
        return -1;
    if (id >= w->entries_cap) {
        size_t cap = w->entries_cap ? w->entries_cap * 2 : 1024;
        while (cap <= id)
            cap *= 2;
        stem_entry *ne = realloc(w->entries, cap * sizeof *ne);
        if (!ne)
            return rv_error_set("out of memory");
        w->entries = ne;
        w->entries_cap = cap;
    }
    w->entries[id] = e;
    *out = &w->entries[id];
    return 0;
}

static int on_word(void *ctx, const char *s, size_t n, size_t ncp)
{
    rv_analysis *w = ctx;
    if (ncp < 2)
        return 0;
    uint64_t h = rv_strtab_hash(s, n);
    if (!w->stemmer) {
        if (rv_strtab_find(&w->a->stop, s, n, h) != RV_STRTAB_NONE)
            return 0;
        return push_term(w, s, n, h);
    }
    const stem_entry *e = NULL;
    uint32_t id = rv_strtab_find(&w->cache, s, n, h);
    if (id != RV_STRTAB_NONE)
        e = &w->entries[id];
    else if (cache_word(w, s, n, h, &e) < 0)
        return -1;
    if (e->is_stop)
        return 0;
    return push_term(w, (const char *)w->stems.data + e->stem_off, e->stem_len, e->stem_hash);
}

int rv_analyze(rv_analysis *w, const char *text, size_t len)
{
    w->out.len = 0;
    w->n_terms = 0;
    if (!w->term_off) {
        w->term_off = rv_malloc(257 * sizeof *w->term_off);
        w->term_hash = rv_malloc(256 * sizeof *w->term_hash);
        if (!w->term_off || !w->term_hash) {
            free(w->term_off);
            free(w->term_hash);
            w->term_off = NULL;
            w->term_hash = NULL;
            return -1;
        }
        w->terms_cap = 256;
    }
    w->term_off[0] = 0;
    return scan_words(text, len, &w->word, on_word, w);
}

size_t rv_analysis_count(const rv_analysis *w) { return w->n_terms; }

const char *rv_analysis_term(const rv_analysis *w, size_t i, size_t *len, uint64_t *hash)
{
    *len = (size_t)(w->term_off[i + 1] - w->term_off[i]);
    if (hash)
        *hash = w->term_hash[i];
    return (const char *)w->out.data + w->term_off[i];
}

/* ----------------------------------------------------------- fingerprint */

typedef struct {
    rv_buf *b;
} fp_ctx;

static int on_fp_word(void *ctx, const char *s, size_t n, size_t ncp)
{
    (void)ncp;
    fp_ctx *f = ctx;
    if (f->b->len && rv_buf_putc(f->b, ' ') < 0)
        return -1;
    return rv_buf_append(f->b, s, n);
}

int rv_text_fingerprint(const char *text, size_t len, rv_buf *scratch, uint64_t *out)
{
    rv_buf word = {0};
    scratch->len = 0;
    fp_ctx f = {scratch};
    int rc = scan_words(text, len, &word, on_fp_word, &f);
    rv_buf_free(&word);
    if (rc < 0)
        return -1;
    *out = XXH3_64bits(scratch->data ? (const void *)scratch->data : (const void *)"", scratch->len);
    return 0;
}
