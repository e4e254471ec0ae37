/* sentence.h — a rule-based sentence splitter for English-like text, in
 * the spirit of NLTK's Punkt (which the Revela paper used) without its
 * trained parameters:
 *   - a sentence ends after '.', '!', '?' or '…' (runs such as "?!" or "..."
 *     count as one), optionally followed by closing quotes or brackets, when
 *     whitespace and then a plausible sentence start follow (not a lower-case
 *     letter);
 *   - after '.', no split when the word before it is a known abbreviation
 *     (Mr, Dr, e.g, etc. — see sentence.c), a single capital letter (an
 *     initial: "J. R. R. Tolkien"), or a word with inner periods ("U.S.")
 *     followed by a lower-case word or digit;
 *   - a blank line (a line break, optional spaces, another line break)
 *     always ends a sentence;
 *   - no split inside "3.14", "e.g.x" or URLs (the '.' must be followed by
 *     whitespace).
 * Spans exclude the whitespace around sentences. Invalid UTF-8 is allowed
 * (bytes that are not ASCII never end a sentence except '…'). */
#ifndef RV_SENTENCE_H
#define RV_SENTENCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t start, end;   /* byte offsets, end exclusive */
} rv_span;

typedef struct {
    rv_span *v;
    size_t n, cap;
} rv_spans;

/* Appends the sentences of text[0..n) to out (cleared first). Returns 0 or
 * -1 (out of memory). Whitespace-only text has no sentences. */
int rv_sentences(const char *text, size_t n, rv_spans *out);
void rv_spans_free(rv_spans *s);

/* Number of whitespace-separated words in text[0..n) (ASCII whitespace and
 * the Unicode spaces of unicode.h). */
uint32_t rv_count_words(const char *text, size_t n);

#endif
