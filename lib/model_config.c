/* model_config.c — config.json / GGUF metadata to rv_model_config (see
 * model_config.h). */
#include "model_config.h"
#include "buf.h"
#include "error.h"
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rv_arch_name(rv_arch a) { return a == RV_ARCH_QWEN2 ? "qwen2" : "llama"; }

/* Reads a whole file; NULL (error set) when it cannot; *missing set when it
 * does not exist, so optional files can be skipped quietly. */
static char *read_file(const char *path, size_t *len, int *missing)
{
    *missing = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        rv_error_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    rv_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (rv_buf_append(&b, tmp, n) < 0) {
            fclose(f);
            rv_buf_free(&b);
            return NULL;
        }
    int err = ferror(f);
    fclose(f);
    if (err || rv_buf_putc(&b, 0) < 0) {
        rv_buf_free(&b);
        rv_error_set("%s: read error", path);
        return NULL;
    }
    *len = b.len - 1;
    return (char *)b.data;
}

static int get_u32(const rv_json *o, const char *key, uint32_t *out, int required, const char *name)
{
    const rv_json *v = rv_json_get(o, key);
    int64_t x;
    if (!v || v->type == RV_JSON_NULL) {
        if (required)
            return rv_error_set("%s: %s: expected a positive integer, found nothing", name, key);
        return 1;
    }
    if (rv_json_as_int64(v, &x) < 0 || x <= 0 || x > (int64_t)UINT32_MAX)
        return rv_error_set("%s: %s: expected a positive integer, found %s", name, key,
                            v->type == RV_JSON_NUMBER ? v->raw : rv_json_type_name(v->type));
    *out = (uint32_t)x;
    return 0;
}

static int get_num(const rv_json *o, const char *key, double *out, const char *name)
{
    const rv_json *v = rv_json_get(o, key);
    if (!v || v->type == RV_JSON_NULL)
        return 1;
    if (v->type != RV_JSON_NUMBER)
        return rv_error_set("%s: %s: expected a number, found %s", name, key, rv_json_type_name(v->type));
    *out = v->u.number;
    return 0;
}

static int get_bool(const rv_json *o, const char *key, int *out, const char *name)
{
    const rv_json *v = rv_json_get(o, key);
    if (!v || v->type == RV_JSON_NULL)
        return 1;
    if (v->type != RV_JSON_TRUE && v->type != RV_JSON_FALSE)
        return rv_error_set("%s: %s: expected true or false, found %s", name, key, rv_json_type_name(v->type));
    *out = v->type == RV_JSON_TRUE;
    return 0;
}

/* A token id field: an integer, a list of integers (the first is taken), or
 * null. Returns 1 when absent. */
static int get_token_id(const rv_json *o, const char *key, int64_t *out, const char *name)
{
    const rv_json *v = rv_json_get(o, key);
    if (!v || v->type == RV_JSON_NULL)
        return 1;
    if (v->type == RV_JSON_ARRAY) {
        if (v->len == 0)
            return 1;
        v = &v->u.items[0];
    }
    int64_t x;
    if (rv_json_as_int64(v, &x) < 0 || x < 0)
        return rv_error_set("%s: %s: expected a token id (non-negative integer or list of them)", name, key);
    *out = x;
    return 0;
}

int rv_model_config_parse_json(const char *text, size_t len, const char *name, rv_model_config *c)
{
    memset(c, 0, sizeof *c);
    c->bos_id = c->eos_id = c->pad_id = -1;
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp)
        return -1;
    int rc = -1;
    const rv_json *o = rv_json_parse(jp, text, len);
    if (!o) {
        rv_error_prefix("%s", name);
        goto out;
    }
    if (o->type != RV_JSON_OBJECT) {
        rv_error_set("%s: expected a JSON object", name);
        goto out;
    }
    const rv_json *mt = rv_json_get(o, "model_type");
    if (!mt || mt->type != RV_JSON_STRING) {
        rv_error_set("%s: model_type: expected \"llama\" or \"qwen2\", found nothing", name);
        goto out;
    }
    if (strcmp(mt->u.string, "llama") == 0)
        c->arch = RV_ARCH_LLAMA;
    else if (strcmp(mt->u.string, "qwen2") == 0)
        c->arch = RV_ARCH_QWEN2;
    else {
        rv_error_set("%s: model_type: expected \"llama\" or \"qwen2\" (LLaMA-family decoders), found \"%s\"",
                     name, mt->u.string);
        goto out;
    }
    if (get_u32(o, "hidden_size", &c->hidden_size, 1, name) < 0 ||
        get_u32(o, "num_hidden_layers", &c->n_layers, 1, name) < 0 ||
        get_u32(o, "num_attention_heads", &c->n_heads, 1, name) < 0 ||
        get_u32(o, "intermediate_size", &c->intermediate_size, 1, name) < 0 ||
        get_u32(o, "vocab_size", &c->vocab_size, 1, name) < 0)
        goto out;
    c->n_kv_heads = c->n_heads;
    if (get_u32(o, "num_key_value_heads", &c->n_kv_heads, 0, name) < 0)
        goto out;
    c->head_dim = c->hidden_size / c->n_heads;
    if (get_u32(o, "head_dim", &c->head_dim, 0, name) < 0)
        goto out;
    c->max_position_embeddings = 2048;
    if (get_u32(o, "max_position_embeddings", &c->max_position_embeddings, 0, name) < 0)
        goto out;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    if (get_num(o, "rms_norm_eps", &c->rms_norm_eps, name) < 0 || get_num(o, "rope_theta", &c->rope_theta, name) < 0)
        goto out;
    int ab = 0, mb = 0;
    if (get_bool(o, "attention_bias", &ab, name) < 0 || get_bool(o, "mlp_bias", &mb, name) < 0)
        goto out;
    if (c->arch == RV_ARCH_QWEN2) {
        c->qkv_bias = 1;          /* Qwen2Attention: q/k/v with bias, o_proj without */
        int sw = 0;
        if (get_bool(o, "use_sliding_window", &sw, name) < 0)
            goto out;
        if (sw) {
            rv_error_set("%s: use_sliding_window: true is not supported (full attention only)", name);
            goto out;
        }
    } else {
        c->qkv_bias = c->o_bias = ab;
        c->mlp_bias = mb;
    }
    c->tie_word_embeddings = 1;   /* PretrainedConfig default */
    if (get_bool(o, "tie_word_embeddings", &c->tie_word_embeddings, name) < 0)
        goto out;
    const rv_json *hact = rv_json_get(o, "hidden_act");
    if (hact && hact->type == RV_JSON_STRING && strcmp(hact->u.string, "silu") != 0) {
        rv_error_set("%s: hidden_act: expected \"silu\", found \"%s\"", name, hact->u.string);
        goto out;
    }
    const rv_json *rs = rv_json_get(o, "rope_scaling");
    c->rope_type = RV_ROPE_DEFAULT;
    if (rs && rs->type != RV_JSON_NULL) {
        if (rs->type != RV_JSON_OBJECT) {
            rv_error_set("%s: rope_scaling: expected an object or null", name);
            goto out;
        }
        const rv_json *t = rv_json_get(rs, "rope_type");
        if (!t)
            t = rv_json_get(rs, "type");
        if (!t || t->type != RV_JSON_STRING) {
            rv_error_set("%s: rope_scaling.rope_type: expected a string", name);
            goto out;
        }
        c->rope_factor = 1.0;
        if (get_num(rs, "factor", &c->rope_factor, name) < 0)
            goto out;
        if (strcmp(t->u.string, "default") == 0) {
            c->rope_type = RV_ROPE_DEFAULT;
        } else if (strcmp(t->u.string, "linear") == 0) {
            c->rope_type = RV_ROPE_LINEAR;
        } else if (strcmp(t->u.string, "llama3") == 0) {
            c->rope_type = RV_ROPE_LLAMA3;
            if (get_num(rs, "low_freq_factor", &c->rope_low_freq_factor, name) != 0 ||
                get_num(rs, "high_freq_factor", &c->rope_high_freq_factor, name) != 0 ||
                get_u32(rs, "original_max_position_embeddings", &c->rope_original_max_position, 1, name) < 0) {
                rv_error_set("%s: rope_scaling: llama3 needs factor, low_freq_factor, high_freq_factor and "
                             "original_max_position_embeddings", name);
                goto out;
            }
        } else {
            rv_error_set("%s: rope_scaling.rope_type: expected default, linear or llama3, found \"%s\"", name,
                         t->u.string);
            goto out;
        }
    }
    if (get_token_id(o, "bos_token_id", &c->bos_id, name) < 0 ||
        get_token_id(o, "eos_token_id", &c->eos_id, name) < 0 ||
        get_token_id(o, "pad_token_id", &c->pad_id, name) < 0)
        goto out;
    rc = rv_model_config_validate(c, name);
out:
    rv_json_parser_free(jp);
    return rc;
}

int rv_model_config_validate(const rv_model_config *c, const char *name)
{
    if (!c->hidden_size || !c->n_layers || !c->n_heads || !c->n_kv_heads || !c->head_dim ||
        !c->intermediate_size || !c->vocab_size)
        return rv_error_set("%s: a size is zero", name);
    if (c->n_heads % c->n_kv_heads)
        return rv_error_set("%s: num_attention_heads %u is not a multiple of num_key_value_heads %u", name,
                            c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 || c->head_dim > 1024)
        return rv_error_set("%s: head_dim %u: expected an even number ≤ 1024", name, c->head_dim);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return rv_error_set("%s: rms_norm_eps and rope_theta must be positive", name);
    if ((uint64_t)c->n_heads * c->head_dim > (1u << 20) || c->hidden_size > (1u << 20) ||
        c->intermediate_size > (1u << 22) || c->n_layers > 4096)
        return rv_error_set("%s: implausible sizes (hidden %u, heads %u × %u, ffn %u, layers %u)", name,
                            c->hidden_size, c->n_heads, c->head_dim, c->intermediate_size, c->n_layers);
    if (c->rope_type == RV_ROPE_LLAMA3 &&
        (!(c->rope_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !(c->rope_low_freq_factor > 0)))
        return rv_error_set("%s: rope_scaling: llama3 needs factor > 0 and high_freq_factor > low_freq_factor > 0",
                            name);
    if (c->rope_type == RV_ROPE_LINEAR && !(c->rope_factor > 0))
        return rv_error_set("%s: rope_scaling.factor must be positive", name);
    return 0;
}

/* ---------------------------------------------------------- special tokens */

/* Token string of a tokenizer_config.json special-token field ("<s>" or
 * {"content": "<s>", ...}); NULL when absent. */
static const char *special_token_string(const rv_json *tc, const char *key)
{
    const rv_json *v = rv_json_get(tc, key);
    if (v && v->type == RV_JSON_OBJECT)
        v = rv_json_get(v, "content");
    return v && v->type == RV_JSON_STRING ? v->u.string : NULL;
}

/* Looks a token string up in tokenizer_config.json's added_tokens_decoder,
 * then tokenizer.json's added_tokens and model.vocab. Returns 1 if found. */
static int resolve_token(const char *dir, const rv_json *tc, const char *tok, int64_t *id)
{
    const rv_json *atd = rv_json_get(tc, "added_tokens_decoder");
    if (atd && atd->type == RV_JSON_OBJECT)
        for (size_t i = 0; i < atd->len; i++) {
            const rv_json *content = rv_json_get(atd->u.members[i].value, "content");
            char *end;
            errno = 0;
            long long x = strtoll(atd->u.members[i].key, &end, 10);
            if (content && content->type == RV_JSON_STRING && strcmp(content->u.string, tok) == 0 && !*end &&
                !errno && x >= 0) {
                *id = x;
                return 1;
            }
        }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    size_t len;
    int missing, found = 0;
    char *text = read_file(path, &len, &missing);
    if (!text)
        return 0;
    rv_json_parser *jp = rv_json_parser_new();
    const rv_json *t = jp ? rv_json_parse(jp, text, len) : NULL;
    const rv_json *at = rv_json_get(t, "added_tokens");
    if (at && at->type == RV_JSON_ARRAY)
        for (size_t i = 0; i < at->len && !found; i++) {
            const rv_json *content = rv_json_get(&at->u.items[i], "content");
            if (content && content->type == RV_JSON_STRING && strcmp(content->u.string, tok) == 0 &&
                rv_json_as_int64(rv_json_get(&at->u.items[i], "id"), id) == 0)
                found = 1;
        }
    const rv_json *vocab = rv_json_get(rv_json_get(t, "model"), "vocab");
    if (!found && vocab) {
        const rv_json *v = rv_json_get(vocab, tok);
        if (v && rv_json_as_int64(v, id) == 0)
            found = 1;
    }
    rv_json_parser_free(jp);
    free(text);
    rv_error_clear();
    return found;
}

/* Fills bos/eos/pad from tokenizer_config.json (what the tokenizer appends)
 * then generation_config.json; config.json's values remain the fallback. */
static int load_special_tokens(const char *dir, rv_model_config *c)
{
    char path[4096];
    size_t len;
    int missing;
    int64_t gen_bos = -1, gen_eos = -1, gen_pad = -1;
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    char *text = read_file(path, &len, &missing);
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp) {
        free(text);
        return -1;
    }
    if (text) {
        const rv_json *g = rv_json_parse(jp, text, len);
        if (!g || get_token_id(g, "bos_token_id", &gen_bos, path) < 0 ||
            get_token_id(g, "eos_token_id", &gen_eos, path) < 0 ||
            get_token_id(g, "pad_token_id", &gen_pad, path) < 0) {
            if (!g)
                rv_error_prefix("%s", path);
            free(text);
            rv_json_parser_free(jp);
            return -1;
        }
        free(text);
    } else if (!missing) {
        rv_json_parser_free(jp);
        return -1;
    }
    if (gen_bos >= 0) c->bos_id = gen_bos;
    if (gen_eos >= 0) c->eos_id = gen_eos;
    if (gen_pad >= 0) c->pad_id = gen_pad;

    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    text = read_file(path, &len, &missing);
    if (!text) {
        rv_json_parser_free(jp);
        if (missing) {
            rv_error_clear();
            return 0;
        }
        return -1;
    }
    const rv_json *tc = rv_json_parse(jp, text, len);
    if (!tc) {
        rv_error_prefix("%s", path);
        free(text);
        rv_json_parser_free(jp);
        return -1;
    }
    static const char *const keys[3] = {"bos_token", "eos_token", "pad_token"};
    int64_t *dst[3] = {&c->bos_id, &c->eos_id, &c->pad_id};
    for (int k = 0; k < 3; k++) {
        const char *tok = special_token_string(tc, keys[k]);
        int64_t id;
        if (tok && resolve_token(dir, tc, tok, &id))
            *dst[k] = id;
    }
    free(text);
    rv_json_parser_free(jp);
    return 0;
}

int rv_model_config_load_hf(const char *dir, rv_model_config *c)
{
    char path[4096];
    size_t len;
    int missing;
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return rv_error_set("%s: path too long", dir);
    char *text = read_file(path, &len, &missing);
    if (!text)
        return missing ? rv_error_set("%s: no config.json (expected a Hugging Face model directory)", dir) : -1;
    int rc = rv_model_config_parse_json(text, len, path, c);
    free(text);
    if (rc < 0)
        return -1;
    if (load_special_tokens(dir, c) < 0)
        return -1;
    if (c->eos_id >= (int64_t)c->vocab_size || c->bos_id >= (int64_t)c->vocab_size)
        return rv_error_set("%s: special token ids (bos %lld, eos %lld) exceed vocab_size %u", dir,
                            (long long)c->bos_id, (long long)c->eos_id, c->vocab_size);
    return 0;
}

/* ------------------------------------------------------------------- GGUF */

static int gguf_u32(const rv_gguf *g, const char *arch, const char *key, uint32_t *out, int required)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!rv_gguf_find(g, full)) {
        if (required)
            return rv_error_set("%s: metadata key %s: not found", g->path, full);
        return 1;
    }
    uint64_t v;
    if (rv_gguf_get_u64(g, full, &v) < 0)
        return -1;
    if (v == 0 || v > UINT32_MAX)
        return rv_error_set("%s: %s: expected a positive 32-bit integer, found %llu", g->path, full,
                            (unsigned long long)v);
    *out = (uint32_t)v;
    return 0;
}

static int gguf_f64(const rv_gguf *g, const char *arch, const char *key, double *out)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!rv_gguf_find(g, full))
        return 1;
    return rv_gguf_get_f64(g, full, out);
}

static void gguf_token(const rv_gguf *g, const char *key, int64_t *out)
{
    uint64_t v;
    if (rv_gguf_find(g, key) && rv_gguf_get_u64(g, key, &v) == 0 && v < INT64_MAX)
        *out = (int64_t)v;
}

int rv_model_config_from_gguf(const rv_gguf *g, rv_model_config *c)
{
    memset(c, 0, sizeof *c);
    c->bos_id = c->eos_id = c->pad_id = -1;
    const char *a;
    size_t al;
    if (rv_gguf_get_string(g, "general.architecture", &a, &al) < 0)
        return -1;
    char arch[32];
    if (al >= sizeof arch)
        al = sizeof arch - 1;
    memcpy(arch, a, al);
    arch[al] = 0;
    if (strcmp(arch, "llama") == 0)
        c->arch = RV_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) {
        c->arch = RV_ARCH_QWEN2;
        c->qkv_bias = 1;
    } else
        return rv_error_set("%s: general.architecture: expected \"llama\" or \"qwen2\", found \"%s\"", g->path, arch);
    if (gguf_u32(g, arch, "embedding_length", &c->hidden_size, 1) < 0 ||
        gguf_u32(g, arch, "block_count", &c->n_layers, 1) < 0 ||
        gguf_u32(g, arch, "attention.head_count", &c->n_heads, 1) < 0 ||
        gguf_u32(g, arch, "feed_forward_length", &c->intermediate_size, 1) < 0)
        return -1;
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->hidden_size / c->n_heads;
    c->max_position_embeddings = 2048;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 10000.0;
    if (gguf_u32(g, arch, "attention.head_count_kv", &c->n_kv_heads, 0) < 0 ||
        gguf_u32(g, arch, "attention.key_length", &c->head_dim, 0) < 0 ||
        gguf_u32(g, arch, "context_length", &c->max_position_embeddings, 0) < 0 ||
        gguf_f64(g, arch, "attention.layer_norm_rms_epsilon", &c->rms_norm_eps) < 0 ||
        gguf_f64(g, arch, "rope.freq_base", &c->rope_theta) < 0)
        return -1;
    uint32_t rope_dims = c->head_dim;
    if (gguf_u32(g, arch, "rope.dimension_count", &rope_dims, 0) < 0)
        return -1;
    if (rope_dims != c->head_dim)
        return rv_error_set("%s: %s.rope.dimension_count %u: partial rotary embeddings are not supported "
                            "(head_dim %u)", g->path, arch, rope_dims, c->head_dim);
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (rv_gguf_find(g, key)) {
        const char *s;
        size_t sl;
        if (rv_gguf_get_string(g, key, &s, &sl) < 0)
            return -1;
        if (sl == 6 && memcmp(s, "linear", 6) == 0) {
            c->rope_type = RV_ROPE_LINEAR;
            if (gguf_f64(g, arch, "rope.scaling.factor", &c->rope_factor) != 0)
                return rv_error_set("%s: %s.rope.scaling.factor: needed for linear scaling", g->path, arch);
        } else if (!(sl == 4 && memcmp(s, "none", 4) == 0))
            return rv_error_set("%s: %s: expected none or linear, found \"%.*s\"", g->path, key, (int)sl, s);
    }
    int has_vocab = gguf_u32(g, arch, "vocab_size", &c->vocab_size, 0);
    if (has_vocab < 0)
        return -1;
    if (has_vocab) {
        const rv_gguf_kv *kv = rv_gguf_find(g, "tokenizer.ggml.tokens");
        const rv_gguf_tensor *emb = rv_gguf_find_tensor(g, "token_embd.weight");
        if (kv && kv->type == RV_GGUF_ARRAY && kv->n && kv->n <= UINT32_MAX)
            c->vocab_size = (uint32_t)kv->n;
        else if (emb && emb->n_dims == 2 && emb->dims[1] <= UINT32_MAX)
            c->vocab_size = (uint32_t)emb->dims[1];
        else
            return rv_error_set("%s: cannot tell the vocabulary size (no %s.vocab_size, tokenizer.ggml.tokens "
                                "or token_embd.weight)", g->path, arch);
    }
    c->tie_word_embeddings = rv_gguf_find_tensor(g, "output.weight") == NULL;
    gguf_token(g, "tokenizer.ggml.bos_token_id", &c->bos_id);
    gguf_token(g, "tokenizer.ggml.eos_token_id", &c->eos_id);
    gguf_token(g, "tokenizer.ggml.padding_token_id", &c->pad_id);
    return rv_model_config_validate(c, g->path);
}

/* ------------------------------------------------------------------- RoPE */

void rv_rope_inv_freq(const rv_model_config *c, float *inv_freq)
{
    uint32_t half = c->head_dim / 2;
    float base = (float)c->rope_theta;
    for (uint32_t i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)c->head_dim;
        inv_freq[i] = 1.0f / powf(base, expo);
    }
    if (c->rope_type == RV_ROPE_LINEAR) {
        for (uint32_t i = 0; i < half; i++)
            inv_freq[i] /= (float)c->rope_factor;
    } else if (c->rope_type == RV_ROPE_LLAMA3) {
        /* transformers _compute_llama3_parameters, in float32 */
        float factor = (float)c->rope_factor, low = (float)c->rope_low_freq_factor,
              high = (float)c->rope_high_freq_factor, old_len = (float)c->rope_original_max_position;
        float low_wavelen = old_len / low, high_wavelen = old_len / high;
        for (uint32_t i = 0; i < half; i++) {
            float f = inv_freq[i];
            float wavelen = (float)(2.0 * M_PI) / f;
            float scaled = wavelen > low_wavelen ? f / factor : f;
            float smooth = (old_len / wavelen - low) / (high - low);
            float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
            int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv_freq[i] = medium ? smoothed : scaled;
        }
    }
}
