/* unicode.c — code point classes, NFC and lossy UTF-8 repair on top of
 * utf8proc (see unicode.h). */
#include "unicode.h"
#include "error.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define N_CODEPOINTS 0x110000u

#include "unicode_hf.h"

/* Table bit: HF's NFC treats the code point as a non-combining starter. */
#define NFC_BARRIER 0x10

static uint8_t *uc_table;
static pthread_once_t uc_once = PTHREAD_ONCE_INIT;

static int category_class(utf8proc_category_t c)
{
    switch (c) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return RV_UC_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return RV_UC_NUMBER;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
        return RV_UC_SPACE;
    default:
        return RV_UC_OTHER;
    }
}

/* Marks code points that NFC may change or that may combine with what
 * precedes them. Conservative: a superset only costs the slow path. */
static void mark_nfc_unsafe(uint8_t *t)
{
    for (uint32_t cp = 0; cp < N_CODEPOINTS; cp++) {
        const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
        if (p->combining_class)
            t[cp] |= RV_UC_NFC_UNSAFE;
        if (p->decomp_seqindex == UINT16_MAX || p->decomp_type != 0)
            continue; /* no canonical decomposition */
        utf8proc_int32_t d[32];
        int last = 0;
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)cp, d, 32, UTF8PROC_DECOMPOSE, &last);
        /* every non-initial element of a decomposition can compose with a
         * preceding character */
        for (utf8proc_ssize_t i = 1; i < k && i < 32; i++)
            if (d[i] >= 0 && (uint32_t)d[i] < N_CODEPOINTS)
                t[d[i]] |= RV_UC_NFC_UNSAFE;
        /* singletons and composition exclusions do not survive NFC */
        unsigned char u[4], *out = NULL;
        size_t ul = rv_utf8_encode(cp, u);
        utf8proc_ssize_t r = utf8proc_map(u, (utf8proc_ssize_t)ul, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (r < 0 || (size_t)r != ul || memcmp(out, u, ul) != 0)
            t[cp] |= RV_UC_NFC_UNSAFE;
        free(out);
    }
    /* Hangul: vowel and trailing jamo compose with a preceding syllable part. */
    for (uint32_t cp = 0x1161; cp <= 0x1175; cp++) t[cp] |= RV_UC_NFC_UNSAFE;
    for (uint32_t cp = 0x11A8; cp <= 0x11C2; cp++) t[cp] |= RV_UC_NFC_UNSAFE;
}

static void build_table(void)
{
    uint8_t *t = malloc(N_CODEPOINTS);
    if (!t)
        return;
    for (uint32_t cp = 0; cp < N_CODEPOINTS; cp++)
        t[cp] = (uint8_t)category_class(utf8proc_category((utf8proc_int32_t)cp));
    /* \s in Oniguruma's Unicode mode: 9-13, 0x85 and Z[slp] */
    for (uint32_t cp = 9; cp <= 13; cp++)
        t[cp] = RV_UC_SPACE;
    t[0x85] = RV_UC_SPACE;
    t['\r'] = RV_UC_NEWLINE;
    t['\n'] = RV_UC_NEWLINE;
    mark_nfc_unsafe(t);
    /* where HF's Unicode data differs from utf8proc's (see unicode_hf.h) */
    for (size_t i = 0; i < sizeof hf_class_overrides / sizeof hf_class_overrides[0]; i++)
        for (uint32_t cp = hf_class_overrides[i].first; cp <= hf_class_overrides[i].last; cp++)
            t[cp] = (uint8_t)((t[cp] & ~RV_UC_CLASS_MASK) | hf_class_overrides[i].cls);
    for (size_t i = 0; i < sizeof hf_nfc_barriers / sizeof hf_nfc_barriers[0]; i++)
        t[hf_nfc_barriers[i]] |= NFC_BARRIER | RV_UC_NFC_UNSAFE;
    uc_table = t;
}

const uint8_t *rv_unicode_table(void)
{
    pthread_once(&uc_once, build_table);
    if (!uc_table)
        rv_error_set("out of memory building the Unicode class table");
    return uc_table;
}

size_t rv_utf8_encode(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int rv_nfc_quick_check(const uint8_t *table, const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        i += rv_utf8_decode(s + i, n - i, &cp);
        if (cp != RV_UTF8_INVALID && (table[cp] & RV_UC_NFC_UNSAFE))
            return 0;
    }
    return 1;
}

static int nfc_run(const unsigned char *s, size_t n, rv_buf *out)
{
    if (n == 0)
        return 0;
    unsigned char *r = NULL;
    utf8proc_ssize_t k = utf8proc_map(s, (utf8proc_ssize_t)n, &r, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (k < 0)
        return rv_error_set("NFC normalisation failed: %s", utf8proc_errmsg(k));
    int rc = rv_buf_append(out, r, (size_t)k);
    free(r);
    return rc;
}

int rv_nfc_append(const unsigned char *s, size_t n, rv_buf *out)
{
    const uint8_t *t = rv_unicode_table();
    if (!t)
        return -1;
    size_t start = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = rv_utf8_decode(s + i, n - i, &cp);
        /* invalid bytes and HF's barrier code points split the text into
         * runs that are normalised independently */
        if (cp == RV_UTF8_INVALID || (t[cp] & NFC_BARRIER)) {
            if (nfc_run(s + start, i - start, out) < 0 || rv_buf_append(out, s + i, len) < 0)
                return -1;
            start = i + len;
        }
        i += len;
    }
    return nfc_run(s + start, n - start, out);
}

/* Length of the maximal prefix of a well-formed sequence at s (Unicode
 * Table 3-7); 0 when s[0] cannot start one. *complete tells whether the
 * whole sequence is there. */
static size_t maximal_subpart(const unsigned char *s, size_t n, int *complete)
{
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) { need = 3; lo = 0xA0; }
    else if (c == 0xED) { need = 3; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) need = 3;
    else if (c == 0xF0) { need = 4; lo = 0x90; }
    else if (c == 0xF4) { need = 4; hi = 0x8F; }
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else { *complete = 0; return 0; }
    size_t k = 1;
    while (k < need && k < n) {
        unsigned b = s[k];
        unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h)
            break;
        k++;
    }
    *complete = k == need;
    return k;
}

int rv_utf8_lossy_append(const unsigned char *s, size_t n, rv_buf *out)
{
    static const unsigned char fffd[3] = {0xEF, 0xBF, 0xBD};
    size_t i = 0, start = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int complete;
        size_t k = maximal_subpart(s + i, n - i, &complete);
        if (complete) { i += k; continue; }
        if (rv_buf_append(out, s + start, i - start) < 0 || rv_buf_append(out, fffd, 3) < 0)
            return -1;
        i += k ? k : 1;
        start = i;
    }
    return rv_buf_append(out, s + start, n - start);
}
