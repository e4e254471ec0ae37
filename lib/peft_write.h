/* peft_write.h — writes one rv_train_net's adapters as a PEFT LoRA adapter
 * directory (adapter_config.json + adapter_model.safetensors, F32 tensors,
 * "__metadata__" {"format": "pt"}), in the key form PEFT expects for the
 * model object it wraps (anchors.md §5.2):
 *   retriever (bare decoder, AutoModel): base_model.model.layers.N.self_attn.q_proj.lora_A.weight
 *   LM (causal LM):                      base_model.model.model.layers.N.mlp.up_proj.lora_B.weight
 * adapter_config.json holds only LoraConfig fields. Both files are written
 * atomically (NAME.part + rename). */
#ifndef RV_PEFT_WRITE_H
#define RV_PEFT_WRITE_H

#include "train_model.h"

typedef struct {
    const char *base_model;     /* base_model_name_or_path */
    double lora_dropout;
    int lm_form;                /* 1: causal-LM keys, task_type CAUSAL_LM */
    const char *extra_meta;     /* extra "__metadata__" value under key "revela" (JSON text), or NULL */
} rv_peft_opts;

/* The tensor key of layer l, projection p, factor 'A' or 'B' into buf. */
void rv_peft_key(char *buf, size_t size, int lm_form, int layer, int proj, char factor);

/* Creates DIR if needed and writes both files. 0 or -1 (error set). */
int rv_peft_write(const char *dir, const rv_train_net *n, const rv_peft_opts *o);

#endif
