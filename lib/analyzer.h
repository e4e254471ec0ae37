/* analyzer.h — text analysis for BM25, term for term the same as
 * bm25s.tokenize(texts, lower=True, stopwords=..., stemmer=PyStemmer english):
 *
 *   1. lower-case the text the way Python's str.lower() does (full Unicode
 *      mapping, U+0130 → "i̇", Greek capital sigma → ς at the end of a word);
 *   2. split it into words as the regex (?u)\b\w\w+\b does: maximal runs of
 *      word characters (Unicode letters L*, numbers N*, '_') of at least two
 *      code points;
 *   3. drop words found in the stopword list (compared with the lower-cased
 *      word, before stemming);
 *   4. stem the rest with the Snowball English stemmer (libstemmer, UTF-8),
 *      unless stemming is off.
 *
 * Unicode properties come from utf8proc; where its Unicode version is newer
 * than the Python used for the reference, characters unassigned in the older
 * version may split differently (formats/bm25-index.md lists this).
 *
 * An rv_analyzer is the immutable configuration (shareable between threads);
 * an rv_analysis is one thread's worker (stemmer instance, stem cache and
 * output buffers). */
#ifndef RV_ANALYZER_H
#define RV_ANALYZER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum { RV_STEM_NONE = 0, RV_STEM_ENGLISH = 1 } rv_stemmer_kind;

typedef struct rv_analyzer rv_analyzer;
typedef struct rv_analysis rv_analysis;

/* `stopwords` is "en" (bm25s's English list), "none", or the path of a file
 * with one stopword per line (UTF-8; surrounding blanks and empty lines are
 * ignored; words are compared with lower-cased tokens, so write them in lower
 * case). `stemmer` is "english" or "none". NULL on error (message set). */
rv_analyzer *rv_analyzer_new(const char *stopwords, const char *stemmer);

/* Builds an analyzer from an explicit stopword list (used when an index file
 * is loaded). `name` is what rv_analyzer_stopwords_name reports. */
rv_analyzer *rv_analyzer_new_list(const char *name, size_t n, const char *const *words,
                                  const size_t *lens, rv_stemmer_kind stem);

void rv_analyzer_free(rv_analyzer *a);

/* "en", "none" or the file name given. */
const char *rv_analyzer_stopwords_name(const rv_analyzer *a);
/* "english" or "none". */
const char *rv_analyzer_stemmer_name(const rv_analyzer *a);
rv_stemmer_kind rv_analyzer_stemmer(const rv_analyzer *a);
size_t rv_analyzer_stopword_count(const rv_analyzer *a);
const char *rv_analyzer_stopword(const rv_analyzer *a, size_t i, size_t *len);
/* XXH3-64 of the stopword list in insertion order (each word followed by a
 * NUL); two analyzers with the same list, stemmer and hash analyze alike. */
uint64_t rv_analyzer_stopwords_hash(const rv_analyzer *a);

/* A worker for one thread. NULL on error. */
rv_analysis *rv_analysis_new(const rv_analyzer *a);
void rv_analysis_free(rv_analysis *w);

/* Analyzes text[0..len) (UTF-8; invalid bytes count as non-word characters).
 * The terms stay available through the accessors below until the next call.
 * Returns 0 or -1 (error set: out of memory, stemmer failure). */
int rv_analyze(rv_analysis *w, const char *text, size_t len);
size_t rv_analysis_count(const rv_analysis *w);
/* Term i's bytes and its rv_strtab_hash (so callers need not hash again). */
const char *rv_analysis_term(const rv_analysis *w, size_t i, size_t *len, uint64_t *hash);

/* The near-duplicate key of a text: XXH3-64 of its lower-cased words (every
 * run of word characters, single characters included, no stopwords removed,
 * no stemming) joined by single spaces. Texts that differ only in case,
 * punctuation or spacing get the same key. `scratch` is reused between calls. */
int rv_text_fingerprint(const char *text, size_t len, rv_buf *scratch, uint64_t *out);

#endif
