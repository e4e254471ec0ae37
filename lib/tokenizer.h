/* tokenizer.h — a byte-level BPE tokenizer that produces exactly the ids of
 * Hugging Face `tokenizers` for the same definition (Llama-3.x, Qwen2/2.5,
 * SmolLM2, GPT-2 families).
 *
 * Sources (rv_tokenizer_load picks by content):
 *   - tokenizer.json: BPE model (vocab, merges, ignore_merges), added_tokens,
 *     normalizer (NFC, Sequence), pre_tokenizer (Split with the Llama-3 /
 *     Qwen2 / GPT-2 patterns, ByteLevel, Digits, Sequence), post_processor
 *     (TemplateProcessing, ByteLevel, Sequence), decoder (ByteLevel);
 *   - a directory holding tokenizer.json, or the GPT-2 file pair
 *     encoder.json + vocab.bpe (also vocab.json + merges.txt), which is read
 *     as HF's GPT-2 conversion does: ByteLevel(add_prefix_space=false)
 *     pre-tokenizer and decoder, <|endoftext|> a special added token;
 *   - a GGUF file's tokenizer.ggml.* metadata (model "gpt2"; pre-types
 *     smollm, llama-bpe, qwen2, gpt-2; CONTROL tokens become special added
 *     tokens, USER_DEFINED ones plain added tokens; add_bos/add_eos_token).
 * Anything else (another model type, normalizer, pattern, behaviour, or a
 * flag such as lstrip) is refused with an error naming the JSON path or GGUF
 * key, rather than tokenized differently from HF.
 *
 * Encoding: added tokens are found first (leftmost-longest, on the raw text
 * for normalized=false tokens, on normalised text for the others), the text
 * between them is normalised, pre-tokenized and BPE-merged. Input need not
 * be valid UTF-8: an invalid byte is treated as a one-character symbol of
 * class "other" ([^\s\p{L}\p{N}]) and is encoded as its own byte token, so
 * decode gives back exactly the input bytes (NFC leaves such bytes alone).
 *
 * An rv_tokenizer is immutable once loaded and may be shared by threads;
 * each thread encodes with its own rv_tok_state. */
#ifndef RV_TOKENIZER_H
#define RV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "buf.h"

typedef struct rv_tokenizer rv_tokenizer;

/* PATH: a tokenizer.json, a GGUF file (by its magic) or a directory (see
 * above). NULL with "PATH: json.path: …" on error. */
rv_tokenizer *rv_tokenizer_load(const char *path);
/* From tokenizer.json text; `name` is used in messages. */
rv_tokenizer *rv_tokenizer_from_json(const char *text, size_t len, const char *name);
void rv_tokenizer_free(rv_tokenizer *t);

/* Size of the id space (one more than the largest id). */
uint32_t rv_tokenizer_n_ids(const rv_tokenizer *t);
/* XXH3-64 of the file(s) the tokenizer was loaded from (0 for from_json). */
uint64_t rv_tokenizer_file_hash(const rv_tokenizer *t);
/* "tokenizer.json", "gpt2-files" or "gguf". */
const char *rv_tokenizer_source_kind(const rv_tokenizer *t);
/* Id of a token by its string as the definition spells it (byte-level form
 * for vocabulary entries, content for added tokens); RV_TOKEN_NONE if none. */
uint32_t rv_tokenizer_token_id(const rv_tokenizer *t, const char *s, size_t len);
/* 1 when id is an added token marked special. */
int rv_tokenizer_is_special(const rv_tokenizer *t, uint32_t id);
/* BOS/EOS ids declared by a GGUF file (RV_TOKEN_NONE when not declared or
 * for tokenizer.json, which does not declare them). */
uint32_t rv_tokenizer_bos_id(const rv_tokenizer *t);
uint32_t rv_tokenizer_eos_id(const rv_tokenizer *t);
/* The ids --add-special puts before and after the text (post-processor). */
void rv_tokenizer_template(const rv_tokenizer *t, const uint32_t **prefix, size_t *n_prefix,
                           const uint32_t **suffix, size_t *n_suffix);

/* The BPE model inside (for tests of the merge loop). */
const rv_bpe *rv_tokenizer_bpe(const rv_tokenizer *t);

/* Per-thread encoding state (word cache and scratch buffers). */
typedef struct rv_tok_state rv_tok_state;
rv_tok_state *rv_tok_state_new(const rv_tokenizer *t);
void rv_tok_state_free(rv_tok_state *s);

enum {
    RV_TOK_ADD_SPECIAL = 1,      /* apply the post-processor template (BOS for Llama-3) */
    RV_TOK_SPECIAL_AS_TEXT = 2   /* do not match special added tokens in the text
                                    (HF's encode_special_tokens = True) */
};
/* Appends the ids of text[0..len) to out. Returns 0 or -1 (error set). */
int rv_tok_encode(const rv_tokenizer *t, rv_tok_state *s, const char *text, size_t len, int flags,
                  rv_ids *out);

enum { RV_TOK_SKIP_SPECIAL = 1 };
/* Appends the bytes of ids (ByteLevel decoder: a token whose characters
 * are all in the byte alphabet gives those bytes, any other token its UTF-8
 * text). The result may be invalid UTF-8 when ids split a character; use
 * rv_utf8_lossy_append (unicode.h) to show it as HF's decode does. Returns
 * -1 on an id without a token. */
int rv_tok_decode(const rv_tokenizer *t, const uint32_t *ids, size_t n, int flags, rv_buf *out);
/* The bytes one id decodes to (NULL when the id has no token). */
const unsigned char *rv_tok_token_bytes(const rv_tokenizer *t, uint32_t id, size_t *len);

#endif
