/* revela_step_ref.h — one Revela training step (method §4) on the CPU,
 * composed only from the ops of train_ops.h and inbatch_attn.h: the
 * obviously-correct fp32 reference of the step, checked against the JAX
 * goldens of scripts/revela_reference.py, and the template rv-train's CPU
 * path follows.
 *
 * For a group of B chunks it runs the four forward passes and their
 * backward, keeping every activation the backward needs (or, with
 * opts->recompute, each layer's input, re-running the layer before its
 * backward):
 *   retriever(P), retriever(Q) -> EOS pooling + L2 -> S = q p^T -> W
 *   LM pass A (causal; every layer's post-RoPE K and V kept, in the graph)
 *   LM pass B (causal + in-batch attention over pass-A K/V weighted by W in
 *             every layer, added to the self-attention output before o_proj)
 *   loss = token-mean next-token cross-entropy of pass B
 * and accumulates the gradients of every LoRA A and B of both networks
 * (through W for the retriever; through pass B and, via the cached K/V,
 * pass A for the LM). Base weights, norms, embeddings and the LM head are
 * frozen. LoRA dropout (rv_step_opts.lora_dropout > 0) draws an independent
 * mask for every pass, layer and projection from (dropout_seed, micro-batch,
 * pass, layer, projection) with rv_dropout_keep_mask. */
#ifndef RV_REVELA_STEP_REF_H
#define RV_REVELA_STEP_REF_H

#include <stddef.h>
#include <stdint.h>

#include "inbatch_attn.h"
#include "train_ops.h"

enum { RV_PROJ_Q, RV_PROJ_K, RV_PROJ_V, RV_PROJ_O, RV_PROJ_GATE, RV_PROJ_UP, RV_PROJ_DOWN, RV_N_PROJ };

/* "q_proj", "k_proj", ... "down_proj" (PEFT target-module names). */
extern const char *const rv_proj_names[RV_N_PROJ];

typedef struct {
    const float *input_norm, *post_norm;   /* [hidden] */
    rv_lora_linear proj[RV_N_PROJ];        /* shapes checked by the step */
} rv_step_layer;

/* A LLaMA-family decoder with fp32 weights (plain pointers, no ownership). */
typedef struct {
    int vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim, ffn;
    float norm_eps;
    const float *inv_freq;         /* [head_dim/2] RoPE inverse frequencies */
    const float *embed;            /* [vocab, hidden] */
    const rv_step_layer *layers;   /* [n_layers] */
    const float *final_norm;       /* [hidden] */
    const float *lm_head;          /* [vocab, hidden] (== embed when tied); NULL for a retriever body */
} rv_step_decoder;

/* Checks a decoder's sizes and that every projection has the shape the
 * config implies (and weights; LoRA A/B when rank > 0); need_head: the LM
 * must have an lm_head. 0, or -1 with an error naming `who`. */
int rv_step_decoder_check(const rv_step_decoder *m, const char *who, int need_head);

/* Gradients of one layer's adapters, same shapes as lora_a / lora_b;
 * accumulated into (zero them before the first micro-batch). The base
 * weight, bias and norm gradients are for full-parameter training
 * (rv_lm_step only); NULL: that tensor is frozen. */
typedef struct {
    float *lora_a[RV_N_PROJ], *lora_b[RV_N_PROJ];
    float *weight[RV_N_PROJ], *bias[RV_N_PROJ];
    float *input_norm, *post_norm;
} rv_step_layer_grads;

/* Full-parameter gradients outside the layers (NULL: frozen). When the
 * head is tied, lm_head and embed are the same buffer. */
typedef struct {
    float *embed, *final_norm, *lm_head;
} rv_step_decoder_grads;

/* One group: B chunks, every view padded to seq_len. p: "passage: " view,
 * q: first-half "query: " view (retriever ids; EOS at len-1), x: LM ids. */
typedef struct {
    int batch, seq_len;
    const int32_t *p_ids, *q_ids, *x_ids;   /* [batch, seq_len] */
    const int *p_len, *q_len, *x_len;       /* [batch], 1..seq_len */
} rv_step_batch;

typedef struct {
    double tau;                    /* 1e-4 in the reference */
    int v_norm;                    /* 1: V-normalise each pair (Wikipedia runs) */
    float v_norm_eps;              /* 1e-6 */
    rv_sim_numerics similarity;    /* RV_SIM_FP32 or the bf16 emulation */
    int skip_zero_weights;         /* skip pairs with W_ij == 0 exactly (see inbatch_attn.h) */
    int dual_loss;                 /* 1: loss = CE(pass B) + CE(pass A), both with gradient */
    int recompute;                 /* 1: keep only each layer's input (and pass A's K/V); re-run
                                      the layer's forward before its backward. Same results, bit
                                      for bit; activations O(layers x hidden) instead of all */
} rv_step_opts;

/* LoRA dropout on every adapter's input. The masks are a function of
 * (seed, micro, pass P/Q/A/B, layer, projection): give each micro-batch its
 * own micro. */
typedef struct {
    float p;                       /* probability of zeroing (0: none) */
    uint64_t seed, micro;
} rv_step_dropout;

/* Outputs besides the gradients; every pointer may be NULL. */
typedef struct {
    double loss;                   /* the objective: token-mean cross-entropy of pass B (+ pass A's when dual_loss) */
    double loss_plain;             /* token-mean cross-entropy of pass A (no in-batch attention) */
    size_t activation_bytes;       /* peak bytes of activations and backward scratch held by the step */
    size_t n_targets;              /* tokens the mean is over */
    float *s, *w, *dw, *ds;        /* [batch*batch]: S, W, dL/dW, dL/dS */
    float *q_emb, *p_emb;          /* [batch*retriever hidden] */
} rv_step_result;

/* Runs the step; LoRA gradients are ADDED to retriever_grads and lm_grads
 * ([n_layers] each). Returns 0, or -1 with an error (bad shapes or lengths,
 * a token id outside the vocabulary, no target token, out of memory). */
int rv_revela_step_ref(const rv_step_decoder *retriever, const rv_step_decoder *lm, const rv_step_batch *batch,
                       const rv_step_opts *opts, rv_step_layer_grads *retriever_grads, rv_step_layer_grads *lm_grads,
                       rv_step_result *result);

/* The same step with LoRA dropout (dropout NULL or p == 0: identical to
 * rv_revela_step_ref). */
int rv_revela_step_ref_dropout(const rv_step_decoder *retriever, const rv_step_decoder *lm,
                               const rv_step_batch *batch, const rv_step_opts *opts, const rv_step_dropout *dropout,
                               rv_step_layer_grads *retriever_grads, rv_step_layer_grads *lm_grads,
                               rv_step_result *result);

/* The plain causal-LM step (rv-train --objective lm): one forward pass of
 * lm over batch->x_ids / x_len (p/q views unused), token-mean next-token
 * cross-entropy, backward into the LoRA gradients of lm_grads and, where
 * their pointers are set, the full-parameter gradients of lm_grads and
 * dec_grads (NULL: none). result->loss (== loss_plain) and n_targets are
 * set; the W fields are not touched. */
int rv_lm_step(const rv_step_decoder *lm, const rv_step_batch *batch, const rv_step_dropout *dropout, int recompute,
               rv_step_layer_grads *lm_grads, const rv_step_decoder_grads *dec_grads, rv_step_result *result);

#endif
