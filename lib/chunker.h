/* chunker.h — cutting documents into training chunks, two ways:
 *
 * Sentence packing (the Revela paper's construction): the document is split
 * into sentences (sentence.h) and whole sentences are packed greedily, in
 * order, into chunks of at most max_words whitespace-separated words. A
 * sentence longer than max_words is cut at word boundaries into pieces of
 * max_words words (the last piece shorter), and the pieces pack like
 * sentences. With include_title, a non-empty title is the document's first
 * "sentence" (so it normally starts chunk 0, joined to the text that follows
 * by one space, and an over-long title is cut the same way). A chunk's text
 * is the original text from its first sentence to its last, whitespace and
 * line breaks inside kept; documents without words give no chunks.
 *
 * Token windows: the ids of the whole document are cut into windows of
 * `size` ids starting every `stride` ids; the last window may be shorter and
 * a window that would only repeat the end of the previous one is not made.
 * A window's text is the decoded ids, with the bytes of a character split
 * across two windows left out of both texts (the ids keep them). */
#ifndef RV_CHUNKER_H
#define RV_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "sentence.h"
#include "tokenizer.h"

typedef struct {
    size_t title_start, title_end;   /* part of the title in this chunk (empty if none) */
    size_t text_start, text_end;     /* part of the text */
    uint32_t words;
} rv_chunk_span;

typedef struct {
    rv_chunk_span *v;
    size_t n, cap;
    rv_spans sentences;              /* scratch */
} rv_chunk_list;

/* Packs title/text into out (cleared first). Returns 0 or -1. */
int rv_chunk_by_words(const char *title, size_t title_len, const char *text, size_t text_len, uint32_t max_words,
                      int include_title, rv_chunk_list *out);
/* The text of one chunk: title part, one space, text part. */
int rv_chunk_span_text(const char *title, const char *text, const rv_chunk_span *c, rv_buf *out);
void rv_chunk_list_free(rv_chunk_list *l);

/* Window k of a document of n ids: [*start, *end). Returns 0 when there is
 * no window k. */
int rv_chunk_window(size_t n_ids, uint32_t size, uint32_t stride, size_t k, size_t *start, size_t *end);

/* The text of a window (see above), as valid UTF-8 (any invalid bytes of
 * the source become U+FFFD). Appends to out. */
int rv_chunk_window_text(const rv_tokenizer *t, const uint32_t *ids, size_t n, rv_buf *out, rv_buf *scratch);

#endif
