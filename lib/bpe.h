/* bpe.h — the byte-level BPE model: a vocabulary of byte strings, ranked
 * merges, and the merge loop that turns one pre-tokenized word into ids the
 * way Hugging Face `tokenizers` BPE does (lowest-rank adjacent pair first,
 * leftmost on ties; with ignore_merges a word found whole in the vocabulary
 * is one token). Words are raw bytes: the ByteLevel alphabet is undone when
 * the vocabulary is loaded, so no per-word character mapping is needed.
 *
 * An rv_bpe is immutable after loading and shared by threads; each thread
 * owns an rv_bpe_cache (word -> ids memo, bounded size). */
#ifndef RV_BPE_H
#define RV_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define RV_TOKEN_NONE UINT32_MAX

/* A growable array of token ids. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} rv_ids;

int rv_ids_reserve(rv_ids *ids, size_t extra);
static inline int rv_ids_push(rv_ids *ids, uint32_t id)
{
    if (ids->n == ids->cap && rv_ids_reserve(ids, 1) < 0)
        return -1;
    ids->v[ids->n++] = id;
    return 0;
}
void rv_ids_free(rv_ids *ids);

typedef struct rv_bpe rv_bpe;

/* A model for ids in [0, n_ids). */
rv_bpe *rv_bpe_new(uint32_t n_ids);
void rv_bpe_free(rv_bpe *b);

/* Adds a token (raw bytes). A second token with the same bytes replaces the
 * first in lookups (as a JSON object with a repeated key would). */
int rv_bpe_add_token(rv_bpe *b, const unsigned char *bytes, size_t len, uint32_t id);
/* Returns the id of a byte string, or RV_TOKEN_NONE. */
uint32_t rv_bpe_find(const rv_bpe *b, const unsigned char *bytes, size_t len);
/* Adds merge number `rank` (0 = applied first): left + right -> merged. A
 * later merge of the same pair replaces the earlier one. */
int rv_bpe_add_merge(rv_bpe *b, uint32_t left, uint32_t right, uint32_t merged, uint32_t rank);
void rv_bpe_set_ignore_merges(rv_bpe *b, int on);

typedef struct rv_bpe_cache rv_bpe_cache;
rv_bpe_cache *rv_bpe_cache_new(void);
void rv_bpe_cache_free(rv_bpe_cache *c);

/* Appends the ids of one word (n > 0 bytes). Returns 0 or -1. */
int rv_bpe_encode_word(const rv_bpe *b, rv_bpe_cache *c, const unsigned char *w, size_t n, rv_ids *out);

/* The merge loop without cache or whole-word shortcut; `force_heap` selects
 * the O(n log n) path used for long words (tests compare both paths). */
int rv_bpe_merge_word(const rv_bpe *b, const unsigned char *w, size_t n, int force_heap, rv_ids *out);

#endif
