/* pretokenize.h — the pre-tokenizers of byte-level BPE tokenizers, as
 * hand-written scanners that reproduce Hugging Face `tokenizers` (Oniguruma
 * regexes, leftmost alternative first, with backtracking) without a regex
 * engine:
 *   LLAMA3  Split(Isolated) on the Llama-3 pattern
 *           (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   QWEN2   the same with \p{N} (one digit per piece) instead of \p{N}{1,3}
 *   GPT2    the GPT-2 pattern used by ByteLevel(use_regex=true):
 *           's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   DIGITS_SINGLE / DIGITS_RUN   Digits(individual_digits = true / false)
 * A pipeline of stages (a `Sequence`) splits each piece of one stage with
 * the next, exactly as PreTokenizedString::split does. Every byte belongs to
 * exactly one piece: invalid UTF-8 bytes are scanned as one-byte characters
 * of class OTHER ([^\s\p{L}\p{N}]). */
#ifndef RV_PRETOKENIZE_H
#define RV_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum {
    RV_PRE_NONE,            /* pass-through (ByteLevel without regex) */
    RV_PRE_LLAMA3,
    RV_PRE_QWEN2,
    RV_PRE_GPT2,
    RV_PRE_DIGITS_SINGLE,
    RV_PRE_DIGITS_RUN
} rv_pre_kind;

typedef struct {
    rv_pre_kind kind;
    int add_prefix_space;   /* ByteLevel(add_prefix_space): prepend ' ' to each piece first */
} rv_pre_stage;

#define RV_PRE_MAX_STAGES 8

/* Recognises a Split regex of tokenizer.json by its exact text. Returns 0
 * and sets *kind, or -1 (no error set) when the pattern is not one we scan. */
int rv_pre_kind_from_regex(const char *pattern, size_t len, rv_pre_kind *kind);
const char *rv_pre_kind_name(rv_pre_kind kind);

/* End of the piece that starts at s[i] (i < n) for a one-stage scanner. */
size_t rv_pre_next(rv_pre_kind kind, const uint8_t *table, const unsigned char *s, size_t n, size_t i);

typedef int (*rv_pre_emit)(void *ctx, const unsigned char *piece, size_t len);

/* Runs the stages over s[0..n) and calls emit for every final piece in
 * order (never with an empty piece). `scratch` is used only when a stage
 * adds a prefix space (at most one stage may). Stops and returns -1 when
 * emit does; 0 otherwise. */
int rv_pre_run(const rv_pre_stage *stages, int n_stages, const uint8_t *table,
               const unsigned char *s, size_t n, rv_buf *scratch, rv_pre_emit emit, void *ctx);

#endif
