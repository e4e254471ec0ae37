/* sentence.c — rule-based sentence boundaries and word counts (see
 * sentence.h). */
#include "sentence.h"
#include "buf.h"
#include "error.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* Abbreviations that are followed by a period inside sentences (compared
 * case-insensitively, without the final period). Titles and other words
 * that usually precede a name or a number. */
static const char *const ABBREVIATIONS[] = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "rev", "hon", "gen", "col", "lt", "sgt", "capt",
    "cmdr", "gov", "pres", "sen", "rep", "messrs", "mme", "mlle", "vs", "etc", "e.g", "i.e", "cf", "al", "fig",
    "figs", "eq", "eqs", "no", "nos", "vol", "vols", "pp", "p", "ch", "sec", "art", "ed", "eds", "approx", "dept",
    "est", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
    "dec", "ca", "viz", "resp", "ref", "refs", "tab", "op", "cit", "ibid", "u.s", "u.k", "a.m", "p.m", "ph.d",
    "b.c", "a.d", "d.c",
};

/* Abbreviations after which a capitalised word still continues the
 * sentence (they precede names). */
static const char *const NAME_TITLES[] = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "rev", "hon", "gen", "col", "lt", "sgt", "capt",
    "cmdr", "gov", "pres", "sen", "rep", "messrs", "mme", "mlle", "vs", "cf", "fig", "figs", "eq", "eqs", "no",
    "nos", "vol", "vols", "pp", "p", "ch", "sec", "art", "ref", "refs", "tab", "viz", "e.g", "i.e", "ca", "approx",
};

static int in_list(const char *const *list, size_t n_list, const char *w, size_t n)
{
    if (n == 0 || n > 8)
        return 0;
    char low[9];
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
    for (size_t i = 0; i < n_list; i++)
        if (strlen(list[i]) == n && memcmp(list[i], low, n) == 0)
            return 1;
    return 0;
}

static int is_ascii_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Whitespace character at text[i] (ASCII or Unicode space); its length in
 * *len, 0 when not whitespace. */
static size_t space_len(const uint8_t *t, const unsigned char *s, size_t n, size_t i)
{
    if (s[i] < 0x80)
        return is_ascii_space(s[i]) ? 1 : 0;
    size_t len;
    int c = rv_uc_class_at(t, s + i, n - i, &len);
    return c == RV_UC_SPACE || c == RV_UC_NEWLINE ? len : 0;
}

uint32_t rv_count_words(const char *text, size_t n)
{
    const uint8_t *t = rv_unicode_table();
    const unsigned char *s = (const unsigned char *)text;
    uint32_t words = 0;
    int in_word = 0;
    size_t i = 0;
    while (i < n) {
        size_t sl = t ? space_len(t, s, n, i) : (size_t)is_ascii_space(s[i]);
        if (sl) {
            in_word = 0;
            i += sl;
            continue;
        }
        if (!in_word && words < UINT32_MAX)
            words++;
        in_word = 1;
        i++;
    }
    return words;
}

static int is_closer(const unsigned char *s, size_t n, size_t i, size_t *len)
{
    if (s[i] == '"' || s[i] == '\'' || s[i] == ')' || s[i] == ']' || s[i] == '}') {
        *len = 1;
        return 1;
    }
    /* ’ ” » */
    if (i + 2 < n && s[i] == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] == 0x99 || s[i + 2] == 0x9D)) {
        *len = 3;
        return 1;
    }
    if (i + 1 < n && s[i] == 0xC2 && s[i + 1] == 0xBB) {
        *len = 2;
        return 1;
    }
    return 0;
}

/* Terminal punctuation at i: '.', '!', '?', '…' (U+2026). */
static size_t terminal_len(const unsigned char *s, size_t n, size_t i)
{
    if (s[i] == '.' || s[i] == '!' || s[i] == '?')
        return 1;
    if (i + 2 < n && s[i] == 0xE2 && s[i + 1] == 0x80 && s[i + 2] == 0xA6)
        return 3;
    return 0;
}

static int push(rv_spans *out, size_t a, size_t b)
{
    if (a >= b)
        return 0;
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        rv_span *v = realloc(out->v, cap * sizeof *v);
        if (!v)
            return rv_error_set("out of memory splitting sentences");
        out->v = v;
        out->cap = cap;
    }
    out->v[out->n++] = (rv_span){a, b};
    return 0;
}

void rv_spans_free(rv_spans *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* Decides whether a terminal run ending at `end` (closers included) with
 * the word before it at [w0, w1) ends a sentence, given the first
 * character of what follows at `next`. */
static int is_boundary(const unsigned char *s, size_t n, size_t w0, size_t w1, size_t term_start, size_t next)
{
    unsigned char c = s[next];
    int lower = c >= 'a' && c <= 'z';
    int digit = c >= '0' && c <= '9';
    int only_period = s[term_start] == '.' && (term_start + 1 >= n || s[term_start + 1] != '.');
    if (lower)
        return 0;
    if (!only_period)
        return 1; /* '!', '?', '…' or "..." before a non-lower-case start */
    /* the word before the period, without leading brackets or quotes */
    while (w0 < w1 && (s[w0] == '(' || s[w0] == '[' || s[w0] == '"' || s[w0] == '\''))
        w0++;
    size_t wl = w1 - w0;
    const char *w = (const char *)s + w0;
    if (in_list(NAME_TITLES, sizeof NAME_TITLES / sizeof NAME_TITLES[0], w, wl))
        return 0;
    if (wl == 1 && w[0] >= 'A' && w[0] <= 'Z')
        return 0; /* an initial */
    if (digit && in_list(ABBREVIATIONS, sizeof ABBREVIATIONS / sizeof ABBREVIATIONS[0], w, wl))
        return 0;
    return 1;
}

int rv_sentences(const char *text, size_t n, rv_spans *out)
{
    const uint8_t *t = rv_unicode_table();
    if (!t)
        return -1;
    const unsigned char *s = (const unsigned char *)text;
    out->n = 0;
    size_t start = 0, i = 0, word_start = 0;
    /* skip leading whitespace */
    while (start < n) {
        size_t sl = space_len(t, s, n, start);
        if (!sl)
            break;
        start += sl;
    }
    i = word_start = start;
    while (i < n) {
        if (space_len(t, s, n, i)) {
            /* a blank line ends the sentence */
            size_t j = i, newlines = 0, last_end = i;
            while (j < n) {
                size_t l2 = space_len(t, s, n, j);
                if (!l2)
                    break;
                if (s[j] == '\n')
                    newlines++;
                j += l2;
            }
            if (newlines >= 2 && j < n) {
                if (push(out, start, last_end) < 0)
                    return -1;
                start = j;
            }
            i = word_start = j;
            continue;
        }
        size_t tl = terminal_len(s, n, i);
        if (!tl) {
            i++;
            continue;
        }
        size_t term_start = i, w1 = i;
        while (i < n && (tl = terminal_len(s, n, i)))
            i += tl;
        size_t cl;
        while (i < n && is_closer(s, n, i, &cl))
            i += cl;
        if (i >= n || !space_len(t, s, n, i))
            continue; /* "3.14", "e.g.x", "a.b": not followed by whitespace */
        size_t end = i, j = i;
        while (j < n) {
            size_t l2 = space_len(t, s, n, j);
            if (!l2)
                break;
            j += l2;
        }
        if (j >= n)
            break; /* trailing whitespace: the last sentence ends at the text's end */
        if (is_boundary(s, n, word_start, w1, term_start, j)) {
            if (push(out, start, end) < 0)
                return -1;
            start = j;
        }
        /* the whitespace itself is handled by the loop (blank lines) */
    }
    /* the last sentence: up to the last non-space byte */
    size_t end = n;
    while (end > start) {
        size_t k = end - 1;
        while (k > start && (s[k] & 0xC0) == 0x80)
            k--;
        if (!space_len(t, s, end, k))
            break;
        end = k;
    }
    return push(out, start, end);
}
