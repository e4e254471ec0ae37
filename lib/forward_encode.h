/* forward_encode.h — texts to embeddings with a decoder (what rv-encode and
 * evaluation use), following the Revela/RepLLaMA convention that mteb's
 * RepLLaMAWrapper implements:
 *   text = strip(prefix + strip(text));  ids = tokenizer(text) with the
 *   tokenizer's special-token template (BOS for Llama-3), truncated to
 *   max_len − 1 tokens; EOS appended; embedding = final-norm hidden state at
 *   the EOS (or the mean over all tokens), L2-normalised.
 * Batches are formed from the sequences sorted by length (longest first) and
 * packed without padding; results come back in input order. */
#ifndef RV_FORWARD_ENCODE_H
#define RV_FORWARD_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "forward.h"
#include "tokenizer.h"

typedef enum { RV_POOL_EOS, RV_POOL_MEAN } rv_pooling;

/* Appends the token ids of one input to out, as described above. n_template
 * tokens of the tokenizer's template count towards max_len − 1. Python's
 * str.strip() is mirrored for ASCII whitespace and \x1c–\x1f. Returns 0 or -1. */
int rv_encode_tokenize(const rv_tokenizer *t, rv_tok_state *s, const char *prefix, const char *text, size_t len,
                       size_t max_len, uint32_t eos_id, rv_ids *out, rv_buf *scratch);

typedef struct {
    size_t batch_tokens;      /* most tokens in one forward call (≥ the longest sequence is used) */
    size_t batch_size;        /* most sequences in one call; 0 = no limit */
    rv_pooling pooling;
    int normalize;            /* L2-normalise each embedding */
} rv_encode_params;

/* Embeds n sequences (sequence i is ids[off[i] .. off[i+1]), non-empty) into
 * out (n × hidden_size). `progress`, when not NULL, is called after each
 * batch with the number of sequences done so far. Adds the forward's FLOPs
 * to *flops when not NULL. Returns 0 or -1 (error set). */
int rv_encode_sequences(rv_forward *f, size_t hidden_size, const uint32_t *ids, const size_t *off, size_t n,
                        const rv_encode_params *p, float *out, void (*progress)(void *ctx, size_t done), void *ctx,
                        double *flops);

/* The same batching, pooling and normalisation around another forward pass
 * (the CUDA backend's). `forward` has rv_forward_run's contract (forward.h):
 * n_seqs packed sequences, the final-norm hidden states of `rows` (n_rows of
 * them) or of every token when rows is NULL, into `hidden` (host f32); it
 * adds its FLOPs to *flops. `reserve`, when not NULL, is called once before
 * the first batch with the largest batch's tokens, sequences and hidden rows
 * (a device allocates there, so a batch too large fails before any work). */
typedef int rv_encode_forward_fn(void *self, const uint32_t *ids, const size_t *seq_off, size_t n_seqs,
                                 const size_t *rows, size_t n_rows, float *hidden, double *flops);
typedef int rv_encode_reserve_fn(void *self, size_t tokens, size_t seqs, size_t hidden_rows);
int rv_encode_sequences_with(rv_encode_forward_fn *forward, rv_encode_reserve_fn *reserve, void *self,
                             size_t hidden_size, const uint32_t *ids, const size_t *off, size_t n,
                             const rv_encode_params *p, float *out, void (*progress)(void *ctx, size_t done),
                             void *ctx, double *flops);

#endif
