/* lora.h — PEFT LoRA adapters (adapter_config.json +
 * adapter_model.safetensors) merged into a loaded base model for inference:
 * W' = W + s·B·A with s = lora_alpha / r (lora_alpha / sqrt(r) with
 * use_rslora), A = lora_A [r × in], B = lora_B [out × r]. Both key forms are
 * read: retriever adapters made on the bare decoder (AutoModel),
 * "base_model.model.layers.N.self_attn.q_proj.lora_A.weight", and LM
 * adapters made on the causal LM, "base_model.model.model.layers.N…". Every
 * tensor in the file must be a LoRA factor of one of the seven projections
 * named by target_modules; anything PEFT would apply differently (DoRA,
 * fan_in_fan_out, bias training, modules_to_save, rank/alpha patterns, a
 * regex target) is refused with a message rather than merged wrongly.
 * Merged matrices become f32 copies owned by the model. */
#ifndef RV_LORA_H
#define RV_LORA_H

#include <stddef.h>

#include "model.h"

typedef struct {
    unsigned r;
    double alpha, scale;
    int rslora;
    int lm_form;              /* 1: base_model.model.model.… keys (causal LM) */
    size_t n_merged;          /* projection matrices changed */
    char targets[160];        /* comma-separated target modules */
} rv_lora_info;

/* Merges the adapter in DIR into m. Returns 0, or -1 with an error naming the
 * file and key; on error m may be partly merged and should be discarded. */
int rv_lora_merge(rv_model *m, const char *dir, rv_lora_info *info);

#endif
