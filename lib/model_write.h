/* model_write.h — a full-parameter net (rv-train --objective lm --full) as a
 * Hugging Face model directory that rv-encode, rv-train and transformers
 * load: config.json (copied from the source config), model.safetensors (F32,
 * transformers' tensor names, "__metadata__" {"format": "pt", "revela":
 * extra}), tokenizer.json and, where they sit next to the sources,
 * tokenizer_config.json, special_tokens_map.json and generation_config.json.
 * The directory appears complete or not at all (DIR.tmp, then renamed). */
#ifndef RV_MODEL_WRITE_H
#define RV_MODEL_WRITE_H

#include "train_model.h"

/* config_json: the config.json to copy; tokenizer_json: the tokenizer.json
 * to copy; extra_meta: JSON text stored under "revela" (or NULL). */
int rv_model_dir_write(const char *dir, const rv_train_net *n, const char *config_json, const char *tokenizer_json,
                       const char *extra_meta);

#endif
