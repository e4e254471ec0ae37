/* train_data.h — rv-train's input: groups of chunk texts read from a group
 * stream (texts only; each network re-tokenises) or from the original
 * Revela JSONL batch file (a JSON list of texts per line, or {"src": ..,
 * "text": [..]}), the seeded per-epoch shuffle of the groups, and the three
 * tokenised views of one group (revela-method.md §3.5):
 *   P: "passage: " + chunk, cut to max_len-1 tokens (template included) + EOS
 *   Q: "query: " + chunk tokenised the same way, EOS dropped, its first
 *      int(0.5 n) tokens kept + EOS (whole view + EOS when first_half is off
 *      or the group's src is "stackoverflow")
 *   X: the raw chunk with the LM tokenizer's template (BOS), <= max_len-1
 *      tokens, no EOS.
 * Texts are stripped of surrounding whitespace (rv_encode_tokenize). */
#ifndef RV_TRAIN_DATA_H
#define RV_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "revela_step_ref.h"
#include "tokenizer.h"

typedef struct {
    char *src;          /* "" when none */
    size_t n;
    char **texts;       /* NUL-terminated */
} rv_train_group;

typedef struct {
    rv_train_group *groups;
    size_t n, cap;
    size_t skipped;     /* groups with fewer than 2 chunks (no in-batch pair) */
} rv_train_data;

/* Appends every group of a "group" stream read from f. */
int rv_train_data_load_stream(rv_train_data *d, FILE *f, const char *name);
/* Appends every line of a Revela JSONL batch file. */
int rv_train_data_load_jsonl(rv_train_data *d, FILE *f, const char *name);
void rv_train_data_free(rv_train_data *d);

/* perm[0..n): the order of the groups in epoch `epoch` (Fisher-Yates from a
 * SplitMix64 stream of (seed, epoch)). */
void rv_train_data_order(size_t n, uint64_t seed, uint64_t epoch, size_t *perm);

typedef struct {
    const rv_tokenizer *rtok, *ltok;
    rv_tok_state *rstate, *lstate;
    uint32_t r_eos, l_eos;
    size_t max_len;
    int first_half;
} rv_view_ctx;

typedef struct {
    rv_step_batch b;              /* points into the arrays below */
    int32_t *p, *q, *x;
    int *pl, *ql, *xl;
    size_t cap;                   /* elements allocated per id array */
    size_t n_tokens;              /* real tokens over the four passes */
    rv_ids ids;
    rv_buf scratch;
} rv_train_batch;

/* Tokenises the three views of g into bt (padded with EOS to the longest). */
int rv_train_batch_build(const rv_view_ctx *v, const rv_train_group *g, rv_train_batch *bt);
void rv_train_batch_free(rv_train_batch *bt);

#endif
