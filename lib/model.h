/* model.h — a LLaMA-family decoder's weights in memory: loaded from a
 * Hugging Face model directory (config.json + model.safetensors or a sharded
 * model.safetensors.index.json; F32/F16/BF16 tensors stay memory-mapped in
 * their dtype) or from a GGUF file (llama/qwen2; every tensor dequantised to
 * f32 on load, llama.cpp's Q/K row permutation undone so the Hugging Face
 * rotate_half RoPE applies). Every tensor's presence, dtype and shape is
 * checked and errors name the file and tensor. */
#ifndef RV_MODEL_H
#define RV_MODEL_H

#include <stddef.h>

#include "gguf.h"
#include "model_config.h"
#include "ops.h"
#include "safetensors.h"

typedef struct {
    float *attn_norm, *ffn_norm;                       /* [hidden] */
    rv_weight q, k, v, o, gate, up, down;              /* out × in */
    float *q_bias, *k_bias, *v_bias, *o_bias;          /* NULL when absent */
    float *gate_bias, *up_bias, *down_bias;
} rv_layer;

typedef enum { RV_MODEL_HF, RV_MODEL_GGUF } rv_model_format;

typedef struct {
    rv_model_config cfg;
    rv_model_format format;
    char *path;                  /* directory or .gguf file as given */
    rv_weight embed;             /* vocab × hidden */
    rv_weight lm_head;           /* = embed when tied */
    float *final_norm;           /* [hidden] */
    rv_layer *layers;            /* cfg.n_layers */
    float *inv_freq;             /* [head_dim/2] RoPE inverse frequencies */
    /* ownership */
    void **owned;
    size_t n_owned, cap_owned;
    rv_safetensors **files;
    size_t n_files;
    rv_gguf *gguf;
} rv_model;

/* Loads PATH: a directory (Hugging Face layout) or a .gguf file. NULL with a
 * message on error. */
rv_model *rv_model_load(const char *path);
void rv_model_free(rv_model *m);

/* Takes ownership of a malloc'ed block, freed with the model. */
int rv_model_adopt(rv_model *m, void *p);

/* The seven projection matrices of layer l by PEFT target-module name
 * (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj); NULL for
 * an unknown name. */
rv_weight *rv_model_projection(rv_model *m, size_t layer, const char *module);

/* Parameters (elements) in the blocks and embeddings, for FLOP counts. */
size_t rv_model_n_params(const rv_model *m, int include_embeddings);

#endif
