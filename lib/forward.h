/* forward.h — the decoder forward pass over a batch of variable-length
 * sequences, written against ops.h: Embedding → N × [RMSNorm → q/k/v (+bias)
 * → RoPE → causal GQA attention → o_proj → residual → RMSNorm → SwiGLU MLP →
 * residual] → final RMSNorm → (LM head). Sequences are packed end to end (no
 * padding tokens are computed); each starts at position 0. fp32 compute. */
#ifndef RV_FORWARD_H
#define RV_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct rv_forward rv_forward;

/* Scratch for running m (grown on demand, reused across calls). */
rv_forward *rv_forward_new(const rv_model *m);
void rv_forward_free(rv_forward *f);

/* Runs n_seqs sequences: sequence s is ids[seq_off[s] .. seq_off[s+1]).
 * Outputs are produced for the token rows listed in `rows` (n_rows indices
 * into the packed batch), or for every token when rows is NULL:
 *   hidden: n_rows × hidden_size, the output of the final RMSNorm (NULL: skip)
 *   logits: n_rows × vocab_size (NULL: skip the LM head)
 * Returns 0, or -1 with an error (bad id, sequence longer than the RoPE
 * table allows, out of memory). */
int rv_forward_run(rv_forward *f, const uint32_t *ids, const size_t *seq_off, size_t n_seqs, const size_t *rows,
                   size_t n_rows, float *hidden, float *logits);

/* Matmul FLOPs of the last run (2·m·n·k summed, attention included), for
 * throughput reports. */
double rv_forward_last_flops(const rv_forward *f);

#endif
