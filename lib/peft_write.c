/* peft_write.c — PEFT LoRA adapter directories (see peft_write.h). */
#include "peft_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "buf.h"
#include "error.h"
#include "json.h"
#include "safetensors.h"

void rv_peft_key(char *buf, size_t size, int lm_form, int layer, int proj, char factor)
{
    snprintf(buf, size, "base_model.model.%slayers.%d.%s.%s.lora_%c.weight", lm_form ? "model." : "", layer,
             proj <= RV_PROJ_O ? "self_attn" : "mlp", rv_proj_names[proj], factor);
}

static int write_config(const char *path, const rv_train_net *n, const rv_peft_opts *o)
{
    rv_buf b = {0};
    int rc = -1;
    const char *base = o->base_model ? o->base_model : "";
    if (rv_buf_printf(&b, "{\n  \"alpha_pattern\": {},\n  \"base_model_name_or_path\": ") < 0 ||
        rv_json_put_string(&b, base, strlen(base)) < 0 ||
        rv_buf_printf(&b, ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
                          "  \"init_lora_weights\": true,\n  \"layers_pattern\": null,\n"
                          "  \"layers_to_transform\": null,\n  \"lora_alpha\": %.15g,\n  \"lora_dropout\": %.15g,\n"
                          "  \"modules_to_save\": null,\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n"
                          "  \"rank_pattern\": {},\n  \"revision\": null,\n  \"target_modules\": [",
                      n->alpha, o->lora_dropout, n->rank) < 0)
        goto out;
    int first = 1;
    for (int p = 0; p < RV_N_PROJ; p++)
        if (n->targets & (1u << p)) {
            if (rv_buf_printf(&b, "%s\"%s\"", first ? "" : ", ", rv_proj_names[p]) < 0)
                goto out;
            first = 0;
        }
    if (rv_buf_printf(&b, "],\n  \"task_type\": \"%s\",\n  \"use_dora\": false,\n  \"use_rslora\": false\n}\n",
                      o->lm_form ? "CAUSAL_LM" : "FEATURE_EXTRACTION") < 0)
        goto out;
    rv_atomic_file af = {0};
    if (rv_atomic_open(&af, path) < 0)
        goto out;
    if (fwrite(b.data, 1, b.len, af.f) != b.len) {
        rv_error_set("%s: write error: %s", path, strerror(errno));
        rv_atomic_abort(&af);
        goto out;
    }
    rc = rv_atomic_commit(&af);
out:
    rv_buf_free(&b);
    return rc;
}

int rv_peft_write(const char *dir, const rv_train_net *n, const rv_peft_opts *o)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return rv_error_set("%s: cannot create directory: %s", dir, strerror(errno));
    const size_t max_t = (size_t)n->base->n_layers * RV_N_PROJ * 2;
    rv_st_write_tensor *t = calloc(max_t, sizeof *t);
    char *names = calloc(max_t, 96);
    uint64_t *shapes = calloc(max_t * 2, sizeof *shapes);
    char path[4096];
    int rc = -1;
    if (!t || !names || !shapes) {
        rv_error_set("%s: out of memory", dir);
        goto out;
    }
    size_t k = 0;
    for (int l = 0; l < n->base->n_layers; l++)
        for (int p = 0; p < RV_N_PROJ; p++) {
            size_t oa, ob;
            int in, out;
            if (!rv_train_net_tensor(n, l, p, &oa, &ob, &in, &out))
                continue;
            for (int f = 0; f < 2; f++, k++) {
                rv_peft_key(names + k * 96, 96, o->lm_form, l, p, f ? 'B' : 'A');
                shapes[2 * k] = f ? (uint64_t)out : (uint64_t)n->rank;
                shapes[2 * k + 1] = f ? (uint64_t)n->rank : (uint64_t)in;
                t[k] = (rv_st_write_tensor){names + k * 96, RV_ST_F32, 2, shapes + 2 * k, n->params + (f ? ob : oa)};
            }
        }
    const char *meta[4] = {"format", "pt", "revela", o->extra_meta};
    if (snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir) >= (int)sizeof path) {
        rv_error_set("%s: path too long", dir);
        goto out;
    }
    if (rv_safetensors_write(path, t, k, meta, o->extra_meta ? 2 : 1) < 0)
        goto out;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    rc = write_config(path, n, o);
out:
    free(t);
    free(names);
    free(shapes);
    return rc;
}
