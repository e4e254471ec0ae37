/* pretokenize.c — scanners for the Llama-3, Qwen2 and GPT-2 split patterns
 * and the Digits pre-tokenizer, and the Sequence runner (see pretokenize.h).
 *
 * Each scanner tries the pattern's alternatives in order at position i, as
 * Oniguruma does, and returns where the first alternative that matches ends.
 * Since every character is \s, \p{L}, \p{N} or none of these, some
 * alternative always matches, so there are never unmatched gaps. */
#include "pretokenize.h"
#include "error.h"
#include "unicode.h"

#include <string.h>

static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

int rv_pre_kind_from_regex(const char *pattern, size_t len, rv_pre_kind *kind)
{
    static const struct { const char *re; rv_pre_kind kind; } known[] = {
        {LLAMA3_RE, RV_PRE_LLAMA3}, {QWEN2_RE, RV_PRE_QWEN2}, {GPT2_RE, RV_PRE_GPT2}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].re) == len && memcmp(known[i].re, pattern, len) == 0) {
            *kind = known[i].kind;
            return 0;
        }
    return -1;
}

const char *rv_pre_kind_name(rv_pre_kind kind)
{
    switch (kind) {
    case RV_PRE_NONE: return "none";
    case RV_PRE_LLAMA3: return "llama3";
    case RV_PRE_QWEN2: return "qwen2";
    case RV_PRE_GPT2: return "gpt2";
    case RV_PRE_DIGITS_SINGLE: return "digits-single";
    case RV_PRE_DIGITS_RUN: return "digits";
    }
    return "?";
}

static inline int class_at(const uint8_t *t, const unsigned char *s, size_t n, size_t i, size_t *len)
{
    return rv_uc_class_at(t, s + i, n - i, len);
}

/* End of the run of characters of class `cls` starting at i. */
static inline size_t run_of(const uint8_t *t, const unsigned char *s, size_t n, size_t i, int cls)
{
    while (i < n) {
        size_t len;
        if (class_at(t, s, n, i, &len) != cls)
            break;
        i += len;
    }
    return i;
}

static inline int is_space_class(int c) { return c == RV_UC_SPACE || c == RV_UC_NEWLINE; }

/* Contractions at s[i] == '\''. Case-insensitive: Oniguruma folds case with
 * Unicode rules, so U+017F LATIN SMALL LETTER LONG S matches 's too. */
static size_t contraction(const unsigned char *s, size_t n, size_t i, int fold)
{
    if (i + 1 >= n)
        return 0;
    unsigned c = s[i + 1];
    if (fold && c >= 'A' && c <= 'Z')
        c += 'a' - 'A';
    if (c == 's' || c == 't' || c == 'm' || c == 'd')
        return i + 2;
    if (fold && c == 0xC5 && i + 2 < n && s[i + 2] == 0xBF)
        return i + 3; /* ſ */
    if (i + 2 >= n)
        return 0;
    unsigned d = s[i + 2];
    if (fold && d >= 'A' && d <= 'Z')
        d += 'a' - 'A';
    if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l'))
        return i + 3;
    return 0;
}

/* Whitespace tail shared by all patterns: \s+(?!\S)|\s+ from i, where
 * [i, j) is the maximal whitespace run. */
static size_t space_tail(const unsigned char *s, size_t n, size_t i, size_t j, size_t last_len)
{
    if (j == n)
        return j;                       /* (?!\S) holds at the end */
    if (j - last_len > i)
        return j - last_len;            /* leave the last space to the next piece */
    return j;                           /* \s+ */
}

/* Llama-3 (max_digits 3) and Qwen2 (max_digits 1). */
static size_t scan_llama(const uint8_t *t, const unsigned char *s, size_t n, size_t i, int max_digits)
{
    size_t len0;
    int c0 = class_at(t, s, n, i, &len0);
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (s[i] == '\'') {
        size_t e = contraction(s, n, i, 1);
        if (e)
            return e;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c0 == RV_UC_LETTER)
        return run_of(t, s, n, i + len0, RV_UC_LETTER);
    if ((c0 == RV_UC_OTHER || c0 == RV_UC_SPACE) && i + len0 < n) {
        size_t len1;
        if (class_at(t, s, n, i + len0, &len1) == RV_UC_LETTER)
            return run_of(t, s, n, i + len0 + len1, RV_UC_LETTER);
    }
    /* \p{N}{1,max} */
    if (c0 == RV_UC_NUMBER) {
        size_t j = i + len0;
        for (int k = 1; k < max_digits && j < n; k++) {
            size_t len;
            if (class_at(t, s, n, j, &len) != RV_UC_NUMBER)
                break;
            j += len;
        }
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    {
        size_t k = i;
        if (s[i] == ' ' && i + 1 < n) {
            size_t len1;
            if (class_at(t, s, n, i + 1, &len1) == RV_UC_OTHER)
                k = i + 1;
        }
        if (k > i || c0 == RV_UC_OTHER) {
            size_t j = run_of(t, s, n, k, RV_UC_OTHER);
            while (j < n && (s[j] == '\r' || s[j] == '\n'))
                j++;
            return j;
        }
    }
    /* whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+ */
    size_t j = i, last_len = 0, after_last_nl = 0;
    while (j < n) {
        size_t len;
        int c = class_at(t, s, n, j, &len);
        if (!is_space_class(c))
            break;
        if (c == RV_UC_NEWLINE)
            after_last_nl = j + len;
        last_len = len;
        j += len;
    }
    if (after_last_nl)
        return after_last_nl;
    return space_tail(s, n, i, j, last_len);
}

static size_t scan_gpt2(const uint8_t *t, const unsigned char *s, size_t n, size_t i)
{
    if (s[i] == '\'') {
        size_t e = contraction(s, n, i, 0);
        if (e)
            return e;
    }
    size_t len0;
    int c0 = class_at(t, s, n, i, &len0);
    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ */
    if (c0 == RV_UC_LETTER || c0 == RV_UC_NUMBER || c0 == RV_UC_OTHER)
        return run_of(t, s, n, i + len0, c0);
    if (s[i] == ' ' && i + 1 < n) {
        size_t len1;
        int c1 = class_at(t, s, n, i + 1, &len1);
        if (c1 == RV_UC_LETTER || c1 == RV_UC_NUMBER || c1 == RV_UC_OTHER)
            return run_of(t, s, n, i + 1 + len1, c1);
    }
    /* \s+(?!\S) | \s+ */
    size_t j = i, last_len = 0;
    while (j < n) {
        size_t len;
        if (!is_space_class(class_at(t, s, n, j, &len)))
            break;
        last_len = len;
        j += len;
    }
    return space_tail(s, n, i, j, last_len);
}

/* Digits: runs of \p{N} (or single ones) against runs of everything else. */
static size_t scan_digits(const uint8_t *t, const unsigned char *s, size_t n, size_t i, int single)
{
    size_t len0;
    int num = class_at(t, s, n, i, &len0) == RV_UC_NUMBER;
    if (num && single)
        return i + len0;
    size_t j = i + len0;
    while (j < n) {
        size_t len;
        if ((class_at(t, s, n, j, &len) == RV_UC_NUMBER) != num)
            break;
        j += len;
    }
    return j;
}

size_t rv_pre_next(rv_pre_kind kind, const uint8_t *table, const unsigned char *s, size_t n, size_t i)
{
    switch (kind) {
    case RV_PRE_LLAMA3: return scan_llama(table, s, n, i, 3);
    case RV_PRE_QWEN2: return scan_llama(table, s, n, i, 1);
    case RV_PRE_GPT2: return scan_gpt2(table, s, n, i);
    case RV_PRE_DIGITS_SINGLE: return scan_digits(table, s, n, i, 1);
    case RV_PRE_DIGITS_RUN: return scan_digits(table, s, n, i, 0);
    case RV_PRE_NONE: break;
    }
    return n;
}

typedef struct {
    const rv_pre_stage *stages;
    int n_stages;
    const uint8_t *table;
    rv_buf *scratch;
    rv_pre_emit emit;
    void *ctx;
} pre_run;

static int run_stage(const pre_run *r, int k, const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (k == r->n_stages)
        return r->emit(r->ctx, s, n);
    const rv_pre_stage *st = &r->stages[k];
    if (st->add_prefix_space && s[0] != ' ') {
        /* at most one stage adds a prefix (checked at load), so the scratch
         * buffer is free here; deeper stages only read from it */
        r->scratch->len = 0;
        if (rv_buf_putc(r->scratch, ' ') < 0 || rv_buf_append(r->scratch, s, n) < 0)
            return -1;
        s = r->scratch->data;
        n = r->scratch->len;
    }
    if (st->kind == RV_PRE_NONE)
        return run_stage(r, k + 1, s, n);
    size_t i = 0;
    while (i < n) {
        size_t j = rv_pre_next(st->kind, r->table, s, n, i);
        if (run_stage(r, k + 1, s + i, j - i) < 0)
            return -1;
        i = j;
    }
    return 0;
}

int rv_pre_run(const rv_pre_stage *stages, int n_stages, const uint8_t *table,
               const unsigned char *s, size_t n, rv_buf *scratch, rv_pre_emit emit, void *ctx)
{
    pre_run r = {stages, n_stages, table, scratch, emit, ctx};
    return run_stage(&r, 0, s, n);
}
