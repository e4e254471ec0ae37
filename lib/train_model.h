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
    int rank;
    double alpha;
    rv_proj_mask targets;
    size_t n_params;
    float *params, *grads, *adam_m, *adam_v;          /* [n_params] each */
    rv_step_layer *layers;
    rv_step_layer_grads *layer_grads;
    rv_step_decoder dec;
} rv_train_net;

/* Adapters of rank on base, initialised as PEFT does (rv_lora_init: A
 * kaiming-uniform, B = 0) from seed with stream net_id * 2^20 + layer * 64 +
 * projection, so each network, layer and projection draws independently.
 * with_head: the decoder gets the LM head (the LM); without, a body. */
int rv_train_net_init(rv_train_net *n, const rv_train_base *base, int rank, double alpha, rv_proj_mask targets,
                      uint64_t seed, uint64_t net_id, int with_head);
void rv_train_net_free(rv_train_net *n);

/* Offsets of layer l, projection p's A and B in the flat arrays, and their
 * shapes; returns 0 when the projection has no adapter. */
int rv_train_net_tensor(const rv_train_net *n, int l, int p, size_t *off_a, size_t *off_b, int *in, int *out);

#endif
