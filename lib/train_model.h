/* train_model.h — what rv-train trains: a loaded rv_model widened once to
 * the fp32 rv_step_decoder the CPU step reads (rv_train_base), and one set
 * of LoRA adapters with their gradients and AdamW moments on top of a base
 * (rv_train_net). Retriever and LM share one base when they are the same
 * checkpoint. Adapter parameters live in one flat array, layer by layer and
 * within a layer in rv_proj_names order, each targeted projection as A
 * [rank, in] then B [out, rank]; gradients and moments use the same layout,
 * so element-wise AdamW over the flat array equals AdamW per tensor. */
#ifndef RV_TRAIN_MODEL_H
#define RV_TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "revela_step_ref.h"

/* The frozen fp32 weights of one model. */
typedef struct {
    int vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim, ffn;
    float norm_eps;
    float *inv_freq, *embed, *final_norm, *lm_head;   /* lm_head == embed when tied */
    float **layer_norms;                              /* [n_layers][2]: input, post */
    float **proj_w, **proj_b;                         /* [n_layers * RV_N_PROJ]; bias NULL if absent */
    void **owned;
    size_t n_owned, cap_owned;
} rv_train_base;

/* Widens every bf16/f16 matrix of m to fp32; aligned f32 matrices (GGUF
 * models are dequantised to f32 on load) are used in place, so m must
 * outlive the base and stay unmodified. 0 or -1 (error set). */
int rv_train_base_init(rv_train_base *b, const rv_model *m);
void rv_train_base_free(rv_train_base *b);

/* Bit i set: projection i (rv_proj_names order) carries an adapter. */
typedef unsigned rv_proj_mask;
/* Parses "q,k,v,o,gate,up,down" (short or *_proj names, any order). */
int rv_proj_mask_parse(const char *list, rv_proj_mask *mask);

typedef struct {
    const rv_train_base *base;
    int full;                   /* 1: every base tensor is a parameter (no adapters) */
    int rank;
    double alpha;
    rv_proj_mask targets;
    size_t n_params;
    float *params, *grads, *adam_m, *adam_v;          /* [n_params] each */
    rv_step_layer *layers;
    rv_step_layer_grads *layer_grads;
    rv_step_decoder_grads dec_grads;   /* full nets: embedding, final norm, head */
    rv_step_decoder dec;
} rv_train_net;

/* Adapters of rank on base, initialised as PEFT does (rv_lora_init: A
 * kaiming-uniform, B = 0) from seed with stream net_id * 2^20 + layer * 64 +
 * projection, so each network, layer and projection draws independently.
 * with_head: the decoder gets the LM head (the LM); without, a body. */
int rv_train_net_init(rv_train_net *n, const rv_train_base *base, int rank, double alpha, rv_proj_mask targets,
                      uint64_t seed, uint64_t net_id, int with_head);
void rv_train_net_free(rv_train_net *n);

/* Full-parameter training (rv-train --objective lm --full): a copy of every
 * tensor of base (with its head) becomes the flat parameter array, in this
 * order: embed [vocab, hidden], lm_head [vocab, hidden] when untied, final
 * norm [hidden], then per layer input norm, post norm and, per projection in
 * rv_proj_names order, weight [out, in] and bias [out] when present. The
 * decoder and the gradient pointers point into params / grads. */
int rv_train_net_init_full(rv_train_net *n, const rv_train_base *base);

/* A named view of a full net's tensors for writing them out: callback(name,
 * rows, cols, data) per tensor in Hugging Face names (model.embed_tokens.weight,
 * lm_head.weight, model.layers.N.self_attn.q_proj.weight, ...); cols 0 for
 * vectors. Stops at the first non-zero return and returns it. */
int rv_train_net_each_tensor(const rv_train_net *n,
                             int (*callback)(void *ctx, const char *name, size_t rows, size_t cols, const float *data),
                             void *ctx);

/* Elements of every tensor of base (embedding, head when untied, norms,
 * projections, biases): what a full net trains and what the base holds. */
size_t rv_train_base_n_floats(const rv_train_base *base);

/* A base with random weights for --init: the shapes of c, every matrix drawn
 * from N(0, std^2) (transformers' initializer_range, 0.02 by default), norms
 * 1, biases 0, from a counter-based generator of (seed, tensor): the same
 * seed gives the same model on every machine. */
int rv_train_base_init_random(rv_train_base *b, const rv_model_config *c, double std, uint64_t seed);

/* Offsets of layer l, projection p's A and B in the flat arrays, and their
 * shapes; returns 0 when the projection has no adapter. */
int rv_train_net_tensor(const rv_train_net *n, int l, int p, size_t *off_a, size_t *off_b, int *in, int *out);

#endif
