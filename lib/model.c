/* model.c — loading LLaMA-family weights from a Hugging Face directory or a
 * GGUF file (see model.h). */
#include "model.h"
#include "buf.h"
#include "dequant.h"
#include "error.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int rv_model_adopt(rv_model *m, void *p)
{
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = realloc(m->owned, cap * sizeof *o);
        if (!o) {
            free(p);
            return rv_error_set("out of memory");
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return 0;
}

static float *owned_floats(rv_model *m, size_t n)
{
    size_t bytes;
    if (rv_size_mul(n ? n : 1, sizeof(float), &bytes, "tensor") < 0)
        return NULL;
    float *p = rv_malloc(bytes);
    if (!p || rv_model_adopt(m, p) < 0)
        return NULL;
    return p;
}

void rv_model_free(rv_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    for (size_t i = 0; i < m->n_files; i++)
        rv_safetensors_close(m->files[i]);
    free(m->files);
    rv_gguf_close(m->gguf);
    free(m->layers);
    free(m->path);
    free(m);
}

rv_weight *rv_model_projection(rv_model *m, size_t l, const char *module)
{
    if (l >= m->cfg.n_layers)
        return NULL;
    rv_layer *L = &m->layers[l];
    if (strcmp(module, "q_proj") == 0) return &L->q;
    if (strcmp(module, "k_proj") == 0) return &L->k;
    if (strcmp(module, "v_proj") == 0) return &L->v;
    if (strcmp(module, "o_proj") == 0) return &L->o;
    if (strcmp(module, "gate_proj") == 0) return &L->gate;
    if (strcmp(module, "up_proj") == 0) return &L->up;
    if (strcmp(module, "down_proj") == 0) return &L->down;
    return NULL;
}

size_t rv_model_n_params(const rv_model *m, int include_embeddings)
{
    const rv_model_config *c = &m->cfg;
    size_t d = c->hidden_size, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t per_layer = d * qd + 2 * d * kvd + qd * d + 3 * d * c->intermediate_size;
    size_t n = per_layer * c->n_layers;
    if (include_embeddings)
        n += (size_t)c->vocab_size * d * (c->tie_word_embeddings ? 1 : 2);
    return n;
}

/* ------------------------------------------------------------ HF directory */

typedef struct {
    rv_model *m;
    const char *dir;
    const char *prefix;           /* "model." or "" */
} hf_ctx;

static const rv_st_tensor *hf_find(hf_ctx *h, const char *name, const rv_safetensors **file)
{
    for (size_t i = 0; i < h->m->n_files; i++) {
        const rv_st_tensor *t = rv_safetensors_find(h->m->files[i], name);
        if (t) {
            *file = h->m->files[i];
            return t;
        }
    }
    return NULL;
}

static int hf_matrix(hf_ctx *h, const char *name, size_t rows, size_t cols, rv_weight *w)
{
    const rv_safetensors *f;
    const rv_st_tensor *t = hf_find(h, name, &f);
    if (!t)
        return rv_error_set("%s: tensor %s: not found in the model's safetensors files", h->dir, name);
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return rv_error_set("%s: tensor %s: expected shape [%zu, %zu], found %u dims [%llu, %llu]", f->path, name,
                            rows, cols, t->n_dims, (unsigned long long)t->shape[0],
                            (unsigned long long)(t->n_dims > 1 ? t->shape[1] : 0));
    switch (t->dtype) {
    case RV_ST_F32: w->type = RV_WT_F32; break;
    case RV_ST_BF16: w->type = RV_WT_BF16; break;
    case RV_ST_F16: w->type = RV_WT_F16; break;
    default:
        return rv_error_set("%s: tensor %s: expected dtype F32, BF16 or F16, found %s", f->path, name,
                            rv_st_dtype_name(t->dtype));
    }
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    if (w->type == RV_WT_F32 && (uintptr_t)t->data % sizeof(float)) {
        float *copy = owned_floats(h->m, rows * cols);   /* an unaligned f32 tensor: keep an aligned copy */
        if (!copy)
            return -1;
        memcpy(copy, t->data, t->n_bytes);
        w->data = copy;
    }
    return 0;
}

/* A 1-D tensor as owned floats; *out stays NULL when absent and optional. */
static int hf_vector(hf_ctx *h, const char *name, size_t n, float **out, int required)
{
    const rv_safetensors *f;
    const rv_st_tensor *t = hf_find(h, name, &f);
    *out = NULL;
    if (!t)
        return required ? rv_error_set("%s: tensor %s: not found in the model's safetensors files", h->dir, name)
                        : 0;
    if (t->n_dims != 1 || t->shape[0] != n)
        return rv_error_set("%s: tensor %s: expected shape [%zu], found %u dims [%llu…]", f->path, name, n,
                            t->n_dims, (unsigned long long)(t->n_dims ? t->shape[0] : 0));
    float *v = owned_floats(h->m, n);
    if (!v)
        return -1;
    if (rv_st_tensor_to_f32(t, v) < 0)
        return rv_error_prefix("%s", f->path);
    *out = v;
    return 0;
}

static int add_file(rv_model *m, const char *path)
{
    rv_safetensors *st = rv_safetensors_open(path);
    if (!st)
        return -1;
    rv_safetensors **files = realloc(m->files, (m->n_files + 1) * sizeof *files);
    if (!files) {
        rv_safetensors_close(st);
        return rv_error_set("out of memory");
    }
    m->files = files;
    m->files[m->n_files++] = st;
    return 0;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Opens model.safetensors, or every shard named by the index's weight_map. */
static int open_hf_files(rv_model *m, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (file_exists(path))
        return add_file(m, path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return rv_error_set("%s: no model.safetensors or model.safetensors.index.json", dir);
    rv_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (rv_buf_append(&b, tmp, n) < 0)
            break;
    int err = ferror(f);
    fclose(f);
    if (err)
        return rv_error_set("%s: read error", path);
    rv_json_parser *jp = rv_json_parser_new();
    int rc = -1;
    const rv_json *idx = jp ? rv_json_parse(jp, (const char *)b.data, b.len) : NULL;
    const rv_json *wm = rv_json_get(idx, "weight_map");
    if (!idx) {
        rv_error_prefix("%s", path);
        goto out;
    }
    if (!wm || wm->type != RV_JSON_OBJECT || wm->len == 0) {
        rv_error_set("%s: weight_map: expected a non-empty object of tensor name → shard file", path);
        goto out;
    }
    /* open each distinct shard once, in order of first mention */
    for (size_t i = 0; i < wm->len; i++) {
        const rv_json *v = wm->u.members[i].value;
        if (v->type != RV_JSON_STRING || strchr(v->u.string, '/') || strcmp(v->u.string, "..") == 0 ||
            v->len == 0) {
            rv_error_set("%s: weight_map.%s: expected a shard file name in the same directory", path,
                         wm->u.members[i].key);
            goto out;
        }
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(wm->u.members[j].value->u.string, v->u.string) == 0;
        if (seen)
            continue;
        char shard[4096];
        snprintf(shard, sizeof shard, "%s/%s", dir, v->u.string);
        if (add_file(m, shard) < 0)
            goto out;
    }
    /* every listed tensor must be in the shard the index names */
    for (size_t i = 0; i < wm->len; i++) {
        const char *shard = wm->u.members[i].value->u.string, *name = wm->u.members[i].key;
        int ok = 0;
        for (size_t j = 0; j < m->n_files && !ok; j++) {
            const char *base = strrchr(m->files[j]->path, '/');
            base = base ? base + 1 : m->files[j]->path;
            if (strcmp(base, shard) == 0) {
                if (!rv_safetensors_find(m->files[j], name)) {
                    rv_error_set("%s: tensor %s: listed in the index but missing from the shard", m->files[j]->path,
                                 name);
                    goto out;
                }
                ok = 1;
            }
        }
    }
    rc = 0;
out:
    rv_json_parser_free(jp);
    rv_buf_free(&b);
    return rc;
}

static int load_hf(rv_model *m, const char *dir)
{
    if (rv_model_config_load_hf(dir, &m->cfg) < 0 || open_hf_files(m, dir) < 0)
        return -1;
    const rv_model_config *c = &m->cfg;
    hf_ctx h = {m, dir, "model."};
    const rv_safetensors *f;
    if (!hf_find(&h, "model.embed_tokens.weight", &f)) {
        if (!hf_find(&h, "embed_tokens.weight", &f))
            return rv_error_set("%s: tensor model.embed_tokens.weight: not found (not a LLaMA-family checkpoint?)",
                                dir);
        h.prefix = "";    /* saved from the bare decoder (AutoModel) */
    }
    size_t d = c->hidden_size, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim,
           ff = c->intermediate_size;
    char name[512];
#define NAME(...) (snprintf(name, sizeof name, __VA_ARGS__), name)
    if (hf_matrix(&h, NAME("%sembed_tokens.weight", h.prefix), c->vocab_size, d, &m->embed) < 0 ||
        hf_vector(&h, NAME("%snorm.weight", h.prefix), d, &m->final_norm, 1) < 0)
        return -1;
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else if (hf_matrix(&h, "lm_head.weight", c->vocab_size, d, &m->lm_head) < 0)
        return -1;
    m->layers = rv_calloc(c->n_layers, sizeof *m->layers);
    if (!m->layers)
        return -1;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        rv_layer *L = &m->layers[l];
        const char *p = h.prefix;
        if (hf_vector(&h, NAME("%slayers.%u.input_layernorm.weight", p, l), d, &L->attn_norm, 1) < 0 ||
            hf_vector(&h, NAME("%slayers.%u.post_attention_layernorm.weight", p, l), d, &L->ffn_norm, 1) < 0 ||
            hf_matrix(&h, NAME("%slayers.%u.self_attn.q_proj.weight", p, l), qd, d, &L->q) < 0 ||
            hf_matrix(&h, NAME("%slayers.%u.self_attn.k_proj.weight", p, l), kvd, d, &L->k) < 0 ||
            hf_matrix(&h, NAME("%slayers.%u.self_attn.v_proj.weight", p, l), kvd, d, &L->v) < 0 ||
            hf_matrix(&h, NAME("%slayers.%u.self_attn.o_proj.weight", p, l), d, qd, &L->o) < 0 ||
            hf_matrix(&h, NAME("%slayers.%u.mlp.gate_proj.weight", p, l), ff, d, &L->gate) < 0 ||
            hf_matrix(&h, NAME("%slayers.%u.mlp.up_proj.weight", p, l), ff, d, &L->up) < 0 ||
            hf_matrix(&h, NAME("%slayers.%u.mlp.down_proj.weight", p, l), d, ff, &L->down) < 0)
            return -1;
        int qkv = c->qkv_bias, ob = c->o_bias, mb = c->mlp_bias;
        if (hf_vector(&h, NAME("%slayers.%u.self_attn.q_proj.bias", p, l), qd, &L->q_bias, qkv) < 0 ||
            hf_vector(&h, NAME("%slayers.%u.self_attn.k_proj.bias", p, l), kvd, &L->k_bias, qkv) < 0 ||
            hf_vector(&h, NAME("%slayers.%u.self_attn.v_proj.bias", p, l), kvd, &L->v_bias, qkv) < 0 ||
            hf_vector(&h, NAME("%slayers.%u.self_attn.o_proj.bias", p, l), d, &L->o_bias, ob) < 0 ||
            hf_vector(&h, NAME("%slayers.%u.mlp.gate_proj.bias", p, l), ff, &L->gate_bias, mb) < 0 ||
            hf_vector(&h, NAME("%slayers.%u.mlp.up_proj.bias", p, l), ff, &L->up_bias, mb) < 0 ||
            hf_vector(&h, NAME("%slayers.%u.mlp.down_proj.bias", p, l), d, &L->down_bias, mb) < 0)
            return -1;
        /* a bias the config does not announce would be silently ignored by transformers too */
        if (!qkv) L->q_bias = L->k_bias = L->v_bias = NULL;
        if (!ob) L->o_bias = NULL;
        if (!mb) L->gate_bias = L->up_bias = L->down_bias = NULL;
    }
#undef NAME
    return 0;
}

/* ------------------------------------------------------------------- GGUF */

/* Undoes convert_hf_to_gguf's permute(): GGUF row h·hd + 2j + s holds HF row
 * h·hd + s·hd/2 + j (s = 0, 1; j < hd/2). */
static void unpermute_rows(const float *src, float *dst, size_t n_head, size_t hd, size_t cols)
{
    size_t half = hd / 2;
    for (size_t h = 0; h < n_head; h++)
        for (size_t j = 0; j < half; j++)
            for (size_t s = 0; s < 2; s++)
                memcpy(dst + (h * hd + s * half + j) * cols, src + (h * hd + 2 * j + s) * cols, cols * sizeof(float));
}

static const rv_gguf_tensor *gguf_tensor(rv_model *m, const char *name, uint32_t n_dims, size_t d0, size_t d1,
                                         int required)
{
    const rv_gguf_tensor *t = rv_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required)
            rv_error_set("%s: tensor %s: not found", m->path, name);
        else
            rv_error_clear();
        return NULL;
    }
    if (t->n_dims != n_dims || t->dims[0] != d0 || (n_dims > 1 && t->dims[1] != d1)) {
        rv_error_set("%s: tensor %s: expected ggml dims [%zu%s%.0zu], found %u dims [%llu, %llu]", m->path, name, d0,
                     n_dims > 1 ? ", " : "", n_dims > 1 ? d1 : 0, t->n_dims, (unsigned long long)t->dims[0],
                     (unsigned long long)t->dims[1]);
        return NULL;
    }
    if (!rv_dequant_supported(t->type)) {
        rv_error_set("%s: tensor %s: ggml type %s has no dequantiser", m->path, name, rv_ggml_type_name(t->type));
        return NULL;
    }
    return t;
}

static float *gguf_dequant(rv_model *m, const rv_gguf_tensor *t)
{
    float *v = owned_floats(m, (size_t)t->n_elements);
    if (!v)
        return NULL;
    if (rv_dequant(t->type, t->data, t->n_elements, v) < 0) {
        rv_error_prefix("%s: tensor %.*s", m->path, (int)t->name_len, t->name);
        return NULL;
    }
    return v;
}

/* rows × cols matrix (ggml dims [cols, rows]); permute_heads > 0 undoes the
 * llama Q/K permutation for that many heads. */
static int gguf_matrix(rv_model *m, const char *name, size_t rows, size_t cols, size_t permute_heads, rv_weight *w)
{
    const rv_gguf_tensor *t = gguf_tensor(m, name, 2, cols, rows, 1);
    if (!t)
        return -1;
    w->rows = rows;
    w->cols = cols;
    if (!permute_heads && t->type == RV_GGML_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
        w->type = RV_WT_F32;
        w->data = t->data;
        return 0;
    }
    if (!permute_heads && (t->type == RV_GGML_BF16 || t->type == RV_GGML_F16)) {
        w->type = t->type == RV_GGML_BF16 ? RV_WT_BF16 : RV_WT_F16;
        w->data = t->data;
        return 0;
    }
    float *v = gguf_dequant(m, t);
    if (!v)
        return -1;
    if (permute_heads) {
        float *p = owned_floats(m, rows * cols);
        if (!p)
            return -1;
        unpermute_rows(v, p, permute_heads, rows / permute_heads, cols);
        v = p;
    }
    w->type = RV_WT_F32;
    w->data = v;
    return 0;
}

static int gguf_vector(rv_model *m, const char *name, size_t n, size_t permute_heads, float **out, int required)
{
    *out = NULL;
    const rv_gguf_tensor *t = gguf_tensor(m, name, 1, n, 1, required);
    if (!t)
        return required || rv_error_get()[0] ? -1 : 0;
    float *v = gguf_dequant(m, t);
    if (!v)
        return -1;
    if (permute_heads) {
        float *p = owned_floats(m, n);
        if (!p)
            return -1;
        unpermute_rows(v, p, permute_heads, n / permute_heads, 1);
        v = p;
    }
    *out = v;
    return 0;
}

static int load_gguf(rv_model *m, const char *path)
{
    m->gguf = rv_gguf_open(path);
    if (!m->gguf || rv_model_config_from_gguf(m->gguf, &m->cfg) < 0)
        return -1;
    const rv_model_config *c = &m->cfg;
    m->inv_freq = owned_floats(m, c->head_dim / 2);
    if (!m->inv_freq)
        return -1;
    rv_rope_inv_freq(c, m->inv_freq);
    size_t d = c->hidden_size, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim,
           ff = c->intermediate_size;
    /* llama.cpp's llama converter permutes Q/K rows for its interleaved RoPE;
     * qwen2 (NEOX RoPE) is stored in the Hugging Face order. */
    size_t pq = c->arch == RV_ARCH_LLAMA ? c->n_heads : 0, pk = c->arch == RV_ARCH_LLAMA ? c->n_kv_heads : 0;
    if (gguf_matrix(m, "token_embd.weight", c->vocab_size, d, 0, &m->embed) < 0 ||
        gguf_vector(m, "output_norm.weight", d, 0, &m->final_norm, 1) < 0)
        return -1;
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else if (gguf_matrix(m, "output.weight", c->vocab_size, d, 0, &m->lm_head) < 0)
        return -1;
    m->layers = rv_calloc(c->n_layers, sizeof *m->layers);
    if (!m->layers)
        return -1;
    char name[256];
#define NAME(...) (snprintf(name, sizeof name, __VA_ARGS__), name)
    for (uint32_t l = 0; l < c->n_layers; l++) {
        rv_layer *L = &m->layers[l];
        if (gguf_vector(m, NAME("blk.%u.attn_norm.weight", l), d, 0, &L->attn_norm, 1) < 0 ||
            gguf_vector(m, NAME("blk.%u.ffn_norm.weight", l), d, 0, &L->ffn_norm, 1) < 0 ||
            gguf_matrix(m, NAME("blk.%u.attn_q.weight", l), qd, d, pq, &L->q) < 0 ||
            gguf_matrix(m, NAME("blk.%u.attn_k.weight", l), kvd, d, pk, &L->k) < 0 ||
            gguf_matrix(m, NAME("blk.%u.attn_v.weight", l), kvd, d, 0, &L->v) < 0 ||
            gguf_matrix(m, NAME("blk.%u.attn_output.weight", l), d, qd, 0, &L->o) < 0 ||
            gguf_matrix(m, NAME("blk.%u.ffn_gate.weight", l), ff, d, 0, &L->gate) < 0 ||
            gguf_matrix(m, NAME("blk.%u.ffn_up.weight", l), ff, d, 0, &L->up) < 0 ||
            gguf_matrix(m, NAME("blk.%u.ffn_down.weight", l), d, ff, 0, &L->down) < 0)
            return -1;
        rv_error_clear();
        if (gguf_vector(m, NAME("blk.%u.attn_q.bias", l), qd, pq, &L->q_bias, c->qkv_bias) < 0 ||
            gguf_vector(m, NAME("blk.%u.attn_k.bias", l), kvd, pk, &L->k_bias, c->qkv_bias) < 0 ||
            gguf_vector(m, NAME("blk.%u.attn_v.bias", l), kvd, 0, &L->v_bias, c->qkv_bias) < 0 ||
            gguf_vector(m, NAME("blk.%u.attn_output.bias", l), d, 0, &L->o_bias, 0) < 0)
            return -1;
    }
#undef NAME
    /* llama.cpp stores llama3-style frequency scaling as per-frequency divisors */
    const rv_gguf_tensor *rf = rv_gguf_find_tensor(m->gguf, "rope_freqs.weight");
    if (rf) {
        float *div;
        if (gguf_vector(m, "rope_freqs.weight", c->head_dim / 2, 0, &div, 1) < 0)
            return -1;
        for (uint32_t i = 0; i < c->head_dim / 2; i++) {
            if (!(div[i] > 0))
                return rv_error_set("%s: rope_freqs.weight[%u]: expected a positive divisor", path, i);
            m->inv_freq[i] /= div[i];
        }
    }
    return 0;
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

rv_model *rv_model_load(const char *path)
{
    rv_model *m = rv_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->path = strdup(path);
    if (!m->path) {
        free(m);
        rv_error_set("out of memory");
        return NULL;
    }
    rv_error_clear();
    int rc;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        rv_error_set("%s: %s", path, strerror(errno));
        rc = -1;
    } else if (is_dir(path)) {
        m->format = RV_MODEL_HF;
        rc = load_hf(m, path);
    } else {
        m->format = RV_MODEL_GGUF;
        rc = load_gguf(m, path);
    }
    if (rc == 0 && !m->inv_freq) {
        m->inv_freq = owned_floats(m, m->cfg.head_dim / 2);
        if (!m->inv_freq)
            rc = -1;
        else
            rv_rope_inv_freq(&m->cfg, m->inv_freq);
    }
    if (rc < 0) {
        rv_model_free(m);
        return NULL;
    }
    return m;
}
