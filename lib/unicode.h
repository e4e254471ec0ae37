/* unicode.h — the Unicode facts the tokenizer needs, from utf8proc, corrected
 * where Hugging Face `tokenizers` sees them differently (lib/unicode_hf.h,
 * measured on every code point by scripts/make-tok-fixtures.py --unicode):
 *   - a UTF-8 decoder that never fails: an invalid byte decodes as itself
 *     (length 1) with class OTHER, so every byte string can be scanned;
 *   - a per-code-point class for the pre-tokenizer regexes: \p{L}, \p{N},
 *     \s (split into \r/\n and the rest) and everything else;
 *   - NFC normalisation with a quick check that skips text already in NFC;
 *   - lossy UTF-8 repair (invalid sequences become U+FFFD, as Rust's
 *     String::from_utf8_lossy does), for decoded text shown as JSON.
 * The tables are built once per process on first use (thread-safe). */
#ifndef RV_UNICODE_H
#define RV_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum {
    RV_UC_OTHER = 0,     /* [^\s\p{L}\p{N}], also invalid bytes */
    RV_UC_LETTER = 1,    /* \p{L}: Lu Ll Lt Lm Lo */
    RV_UC_NUMBER = 2,    /* \p{N}: Nd Nl No */
    RV_UC_SPACE = 3,     /* \s other than \r and \n: 9,B,C,20,85, Zs, Zl, Zp */
    RV_UC_NEWLINE = 4    /* \r or \n */
};

/* Bit set in the table entry of code points that may change under NFC (a
 * non-zero combining class, a second element of a canonical composition, or
 * a code point that does not survive NFC on its own). */
#define RV_UC_NFC_UNSAFE 0x08
#define RV_UC_CLASS_MASK 0x07

/* The class table (one byte per code point, 0..0x10FFFF). Builds it on the
 * first call; returns NULL only when memory runs out (error set). */
const uint8_t *rv_unicode_table(void);

/* Decodes one character at s[0..n), n > 0: returns its byte length (1..4)
 * and sets *cp. An invalid or truncated sequence yields length 1 and
 * *cp = RV_UTF8_INVALID. Overlongs and surrogates are invalid. */
#define RV_UTF8_INVALID 0xFFFFFFFFu
static inline size_t rv_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n >= 2 && (s[1] & 0xC0) == 0x80) {
            *cp = (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
            return 2;
        }
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (n >= 3 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
            uint32_t v = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
            if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) { *cp = v; return 3; }
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (n >= 4 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80) {
            uint32_t v = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
                         (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
            if (v >= 0x10000 && v <= 0x10FFFF) { *cp = v; return 4; }
        }
    }
    *cp = RV_UTF8_INVALID;
    return 1;
}

/* Writes cp (a Unicode scalar value) as UTF-8 into o; returns 1..4. */
size_t rv_utf8_encode(uint32_t cp, unsigned char *o);

/* Class of the character at s[0..n), n > 0, given the table; sets *len. */
static inline int rv_uc_class_at(const uint8_t *table, const unsigned char *s, size_t n, size_t *len)
{
    if (s[0] < 0x80) { *len = 1; return table[s[0]] & RV_UC_CLASS_MASK; }
    uint32_t cp;
    *len = rv_utf8_decode(s, n, &cp);
    return cp == RV_UTF8_INVALID ? RV_UC_OTHER : table[cp] & RV_UC_CLASS_MASK;
}

/* Returns 1 when s[0..n) certainly equals its NFC form (all characters
 * NFC-safe, invalid bytes count as safe), 0 when it might not. */
int rv_nfc_quick_check(const uint8_t *table, const unsigned char *s, size_t n);

/* Appends the NFC form of s[0..n) to out, as HF's NFC normalizer computes
 * it. Invalid bytes are copied unchanged and split the text into runs that
 * are normalised independently; so do the marks HF gives combining class 0
 * (unicode_hf.h). Returns 0 or -1 (error set). */
int rv_nfc_append(const unsigned char *s, size_t n, rv_buf *out);

/* Appends s[0..n) to out with every maximal invalid UTF-8 subpart replaced
 * by U+FFFD (the Unicode "substitution of maximal subparts" rule, which is
 * what Rust's from_utf8_lossy implements). Returns 0 or -1. */
int rv_utf8_lossy_append(const unsigned char *s, size_t n, rv_buf *out);

#endif
