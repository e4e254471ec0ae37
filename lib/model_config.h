/* model_config.h — the hyper-parameters of a LLaMA-family decoder (llama and
 * qwen2 model types: LLaMA-3.x, Qwen2/2.5, SmolLM2), read from a Hugging Face
 * config.json (+ generation_config.json / tokenizer_config.json for special
 * token ids) or from GGUF metadata, validated, and turned into RoPE inverse
 * frequencies (default, linear and llama3 scaling, as transformers computes
 * them). */
#ifndef RV_MODEL_CONFIG_H
#define RV_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef enum { RV_ROPE_DEFAULT, RV_ROPE_LINEAR, RV_ROPE_LLAMA3 } rv_rope_type;
typedef enum { RV_ARCH_LLAMA, RV_ARCH_QWEN2 } rv_arch;

typedef struct {
    rv_arch arch;
    uint32_t vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, head_dim, intermediate_size;
    uint32_t max_position_embeddings;
    double rms_norm_eps, rope_theta;
    rv_rope_type rope_type;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    uint32_t rope_original_max_position;
    int qkv_bias, o_bias, mlp_bias;          /* which projections carry a bias */
    int tie_word_embeddings;
    int64_t bos_id, eos_id, pad_id;          /* -1 when unknown */
} rv_model_config;

const char *rv_arch_name(rv_arch a);

/* Reads DIR/config.json, then the special token ids from
 * DIR/tokenizer_config.json (+ tokenizer.json to resolve token strings),
 * DIR/generation_config.json and config.json, in that order of preference.
 * Errors name the file and field. */
int rv_model_config_load_hf(const char *dir, rv_model_config *c);

/* Parses a config.json text (no special-token files); `name` for messages. */
int rv_model_config_parse_json(const char *text, size_t len, const char *name, rv_model_config *c);

/* Reads "ARCH.*" hyper-parameters and tokenizer.ggml.* ids from GGUF
 * metadata; the vocabulary size falls back to the token list length. */
int rv_model_config_from_gguf(const rv_gguf *g, rv_model_config *c);

/* Checks internal consistency (heads divide, head_dim even, eps > 0, …). */
int rv_model_config_validate(const rv_model_config *c, const char *name);

/* head_dim/2 inverse frequencies in float32, computed as transformers'
 * ROPE_INIT_FUNCTIONS do (default, linear: divided positions, llama3). For
 * linear scaling the factor is folded into the frequencies. */
void rv_rope_inv_freq(const rv_model_config *c, float *inv_freq);

#endif
