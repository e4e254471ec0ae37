/* lora.c — PEFT LoRA adapter loading and merging (see lora.h). */
#include "lora.h"
#include "buf.h"
#include "error.h"
#include "json.h"
#include "ops.h"
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const modules[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

static int module_index(const char *s, size_t n)
{
    for (int i = 0; i < 7; i++)
        if (strlen(modules[i]) == n && memcmp(modules[i], s, n) == 0)
            return i;
    return -1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        rv_error_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    rv_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (rv_buf_append(&b, tmp, n) < 0)
            break;
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

/* A field that must be absent, null, false, empty or equal to `ok`. */
static int refuse_unless_default(const rv_json *cfg, const char *key, const char *path, const char *why)
{
    const rv_json *v = rv_json_get(cfg, key);
    if (!v || v->type == RV_JSON_NULL || v->type == RV_JSON_FALSE)
        return 0;
    if ((v->type == RV_JSON_OBJECT || v->type == RV_JSON_ARRAY) && v->len == 0)
        return 0;
    if (v->type == RV_JSON_STRING && strcmp(v->u.string, "none") == 0 && strcmp(key, "bias") == 0)
        return 0;
    return rv_error_set("%s: %s: %s is not supported (%s)", path, key,
                        v->type == RV_JSON_STRING ? v->u.string : "a non-default value", why);
}

static int read_config(const char *path, rv_lora_info *info, int *targets)
{
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        return -1;
    rv_json_parser *jp = rv_json_parser_new();
    int rc = -1;
    const rv_json *c = jp ? rv_json_parse(jp, text, len) : NULL;
    if (!c) {
        rv_error_prefix("%s", path);
        goto out;
    }
    const rv_json *pt = rv_json_get(c, "peft_type");
    if (!pt || pt->type != RV_JSON_STRING || strcmp(pt->u.string, "LORA") != 0) {
        rv_error_set("%s: peft_type: expected \"LORA\", found %s", path,
                     pt && pt->type == RV_JSON_STRING ? pt->u.string : "nothing");
        goto out;
    }
    int64_t r;
    if (rv_json_as_int64(rv_json_get(c, "r"), &r) < 0 || r <= 0 || r > 65536) {
        rv_error_set("%s: r: expected a positive integer rank", path);
        goto out;
    }
    info->r = (unsigned)r;
    const rv_json *a = rv_json_get(c, "lora_alpha");
    info->alpha = 8;   /* LoraConfig default */
    if (a && a->type == RV_JSON_NUMBER)
        info->alpha = a->u.number;
    else if (a && a->type != RV_JSON_NULL) {
        rv_error_set("%s: lora_alpha: expected a number", path);
        goto out;
    }
    const rv_json *rs = rv_json_get(c, "use_rslora");
    info->rslora = rs && rs->type == RV_JSON_TRUE;
    info->scale = info->rslora ? info->alpha / sqrt((double)info->r) : info->alpha / (double)info->r;
    if (refuse_unless_default(c, "use_dora", path, "DoRA needs the magnitude vectors") < 0 ||
        refuse_unless_default(c, "fan_in_fan_out", path, "only nn.Linear (out × in) weights") < 0 ||
        refuse_unless_default(c, "bias", path, "trained biases are not merged") < 0 ||
        refuse_unless_default(c, "modules_to_save", path, "full module copies are not merged") < 0 ||
        refuse_unless_default(c, "rank_pattern", path, "per-module ranks") < 0 ||
        refuse_unless_default(c, "alpha_pattern", path, "per-module alphas") < 0 ||
        refuse_unless_default(c, "layer_replication", path, "layer replication") < 0)
        goto out;
    const rv_json *tm = rv_json_get(c, "target_modules");
    if (!tm || (tm->type != RV_JSON_ARRAY && tm->type != RV_JSON_STRING)) {
        rv_error_set("%s: target_modules: expected a list of module names", path);
        goto out;
    }
    size_t n = tm->type == RV_JSON_ARRAY ? tm->len : 1;
    info->targets[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const rv_json *t = tm->type == RV_JSON_ARRAY ? &tm->u.items[i] : tm;
        int k = t->type == RV_JSON_STRING ? module_index(t->u.string, t->len) : -1;
        if (k < 0) {
            rv_error_set("%s: target_modules: \"%s\" is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, "
                         "up_proj, down_proj%s", path, t->type == RV_JSON_STRING ? t->u.string : "?",
                         tm->type == RV_JSON_STRING ? " (regular-expression targets are not supported)" : "");
            goto out;
        }
        if (!targets[k]) {
            size_t l = strlen(info->targets);
            snprintf(info->targets + l, sizeof info->targets - l, "%s%s", l ? "," : "", modules[k]);
        }
        targets[k] = 1;
    }
    rc = 0;
out:
    rv_json_parser_free(jp);
    free(text);
    return rc;
}

/* Parses "base_model.model.[model.]layers.N.(self_attn|mlp).MOD.lora_(A|B)[.default].weight". */
static int parse_key(const char *key, int *lm_form, unsigned long *layer, int *module, int *is_b)
{
    const char *p = key;
    if (strncmp(p, "base_model.model.", 17) != 0)
        return -1;
    p += 17;
    *lm_form = 0;
    if (strncmp(p, "model.", 6) == 0) {
        *lm_form = 1;
        p += 6;
    }
    if (strncmp(p, "layers.", 7) != 0)
        return -1;
    p += 7;
    char *end;
    errno = 0;
    *layer = strtoul(p, &end, 10);
    if (end == p || *end != '.' || errno)
        return -1;
    p = end + 1;
    int attn = strncmp(p, "self_attn.", 10) == 0, mlp = strncmp(p, "mlp.", 4) == 0;
    if (!attn && !mlp)
        return -1;
    p += attn ? 10 : 4;
    const char *dot = strchr(p, '.');
    if (!dot)
        return -1;
    *module = module_index(p, (size_t)(dot - p));
    if (*module < 0 || (attn != (*module < 4)))
        return -1;
    p = dot + 1;
    if (strncmp(p, "lora_A.", 7) == 0)
        *is_b = 0;
    else if (strncmp(p, "lora_B.", 7) == 0)
        *is_b = 1;
    else
        return -1;
    p += 7;
    if (strncmp(p, "default.", 8) == 0)
        p += 8;
    return strcmp(p, "weight") == 0 ? 0 : -1;
}

int rv_lora_merge(rv_model *m, const char *dir, rv_lora_info *info)
{
    memset(info, 0, sizeof *info);
    char cpath[4096], wpath[4096];
    snprintf(cpath, sizeof cpath, "%s/adapter_config.json", dir);
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", dir);
    int targets[7] = {0};
    if (read_config(cpath, info, targets) < 0)
        return -1;
    rv_safetensors *st = rv_safetensors_open(wpath);
    if (!st)
        return -1;
    size_t L = m->cfg.n_layers;
    const rv_st_tensor **pa = rv_calloc(L * 7, sizeof *pa), **pb = rv_calloc(L * 7, sizeof *pb);
    float *a = NULL, *b = NULL, *delta = NULL, *base = NULL;
    int rc = -1, form = -1;
    if (!pa || !pb)
        goto out;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const rv_st_tensor *t = &st->tensors[i];
        int lm, mod, is_b;
        unsigned long layer;
        if (parse_key(t->name, &lm, &layer, &mod, &is_b) < 0) {
            rv_error_set("%s: tensor %s: expected base_model.model.[model.]layers.N.{self_attn,mlp}.MODULE."
                         "lora_{A,B}.weight", wpath, t->name);
            goto out;
        }
        if (form >= 0 && lm != form) {
            rv_error_set("%s: tensor %s: mixes the retriever (base_model.model.layers) and LM "
                         "(base_model.model.model.layers) key forms", wpath, t->name);
            goto out;
        }
        form = lm;
        if (layer >= L) {
            rv_error_set("%s: tensor %s: layer %lu but the base model has %zu layers", wpath, t->name, layer, L);
            goto out;
        }
        if (!targets[mod]) {
            rv_error_set("%s: tensor %s: %s is not in adapter_config.json's target_modules (%s)", wpath, t->name,
                         modules[mod], info->targets);
            goto out;
        }
        const rv_st_tensor **slot = is_b ? &pb[layer * 7 + (size_t)mod] : &pa[layer * 7 + (size_t)mod];
        if (*slot) {
            rv_error_set("%s: tensor %s: a second lora_%c for this module", wpath, t->name, is_b ? 'B' : 'A');
            goto out;
        }
        if (t->dtype != RV_ST_F32 && t->dtype != RV_ST_BF16 && t->dtype != RV_ST_F16) {
            rv_error_set("%s: tensor %s: expected dtype F32, BF16 or F16, found %s", wpath, t->name,
                         rv_st_dtype_name(t->dtype));
            goto out;
        }
        *slot = t;
    }
    info->lm_form = form == 1;
    for (size_t l = 0; l < L; l++)
        for (int k = 0; k < 7; k++) {
            const rv_st_tensor *ta = pa[l * 7 + (size_t)k], *tb = pb[l * 7 + (size_t)k];
            if (!ta && !tb)
                continue;
            if (!ta || !tb) {
                rv_error_set("%s: layer %zu %s: lora_%c present without lora_%c", wpath, l, modules[k],
                             ta ? 'A' : 'B', ta ? 'B' : 'A');
                goto out;
            }
            rv_weight *w = rv_model_projection(m, l, modules[k]);
            size_t out_f = w->rows, in_f = w->cols, r = info->r;
            if (ta->n_dims != 2 || ta->shape[0] != r || ta->shape[1] != in_f) {
                rv_error_set("%s: tensor %s: expected shape [%zu, %zu] (r × in_features), found [%llu, %llu]", wpath,
                             ta->name, r, in_f, (unsigned long long)ta->shape[0],
                             (unsigned long long)(ta->n_dims > 1 ? ta->shape[1] : 0));
                goto out;
            }
            if (tb->n_dims != 2 || tb->shape[0] != out_f || tb->shape[1] != r) {
                rv_error_set("%s: tensor %s: expected shape [%zu, %zu] (out_features × r), found [%llu, %llu]",
                             wpath, tb->name, out_f, r, (unsigned long long)tb->shape[0],
                             (unsigned long long)(tb->n_dims > 1 ? tb->shape[1] : 0));
                goto out;
            }
            size_t n_w;
            if (rv_size_mul(out_f, in_f, &n_w, "merged weight") < 0)
                goto out;
            free(a); free(b); free(delta);
            a = rv_malloc(r * in_f * sizeof(float));
            b = rv_malloc(out_f * r * sizeof(float));
            delta = rv_malloc(n_w * sizeof(float));
            if (!a || !b || !delta)
                goto out;
            rv_st_tensor_to_f32(ta, a);
            rv_st_tensor_to_f32(tb, b);
            /* delta = B · A, as (out × r) · (in × r)ᵀ with A transposed into b's layout */
            float *at = rv_malloc(in_f * r * sizeof(float));
            if (!at)
                goto out;
            for (size_t i = 0; i < r; i++)
                for (size_t j = 0; j < in_f; j++)
                    at[j * r + i] = a[i * in_f + j];
            rv_op_matmul_nt(delta, b, at, out_f, in_f, r, (float)info->scale, 0.0f);
            free(at);
            base = rv_malloc(n_w * sizeof(float));
            if (!base)
                goto out;
            rv_weight_rows_f32(w, 0, out_f, base);
            for (size_t i = 0; i < n_w; i++)
                base[i] += delta[i];
            if (rv_model_adopt(m, base) < 0) {
                base = NULL;
                goto out;
            }
            w->data = base;
            w->type = RV_WT_F32;
            base = NULL;
            info->n_merged++;
        }
    if (info->n_merged == 0) {
        rv_error_set("%s: no LoRA tensors", wpath);
        goto out;
    }
    rc = 0;
out:
    free(a); free(b); free(delta); free(base);
    free(pa); free(pb);
    rv_safetensors_close(st);
    return rc;
}
