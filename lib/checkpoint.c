/* checkpoint.c — atomic save and load of rv-train's state (see checkpoint.h). */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "error.h"
#include "safetensors.h"

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int rv_checkpoint_save(const char *out_dir, const rv_train_net *retriever, const rv_train_net *lm,
                       const rv_ckpt_pos *pos, const char *hparams_json, void (*before_rename)(void))
{
    char tmp[4096], cur[4096], old[4096], file[4200];
    if (snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", out_dir) >= (int)sizeof tmp)
        return rv_error_set("%s: path too long", out_dir);
    snprintf(cur, sizeof cur, "%s/checkpoint", out_dir);
    snprintf(old, sizeof old, "%s/checkpoint.old", out_dir);
    if (rv_remove_flat_dir(tmp) < 0)
        return -1;
    if (mkdir(tmp, 0777) != 0)
        return rv_error_set("%s: cannot create: %s", tmp, strerror(errno));
    const rv_train_net *nets[2] = {retriever, lm};
    const char *names[6] = {"retriever.params", "retriever.adam_m", "retriever.adam_v",
                            "lm.params", "lm.adam_m", "lm.adam_v"};
    uint64_t shape[2];
    rv_st_write_tensor t[6];
    size_t nt = 0;
    for (int k = 0; k < 2; k++) {
        if (!nets[k])   /* --objective lm trains no retriever */
            continue;
        shape[k] = nets[k]->n_params;
        const float *data[3] = {nets[k]->params, nets[k]->adam_m, nets[k]->adam_v};
        for (int j = 0; j < 3; j++)
            t[nt++] = (rv_st_write_tensor){names[3 * k + j], RV_ST_F32, 1, &shape[k], data[j]};
    }
    char step[32], epoch[32], gpos[32], micro[32];
    snprintf(step, sizeof step, "%ld", pos->step);
    snprintf(epoch, sizeof epoch, "%" PRIu64, pos->epoch);
    snprintf(gpos, sizeof gpos, "%" PRIu64, pos->pos);
    snprintf(micro, sizeof micro, "%" PRIu64, pos->micro);
    const char *meta[12] = {"format", "pt", "step", step, "epoch", epoch, "pos", gpos, "micro", micro,
                            "hparams", hparams_json ? hparams_json : "{}"};
    snprintf(file, sizeof file, "%s/state.safetensors", tmp);
    if (rv_safetensors_write(file, t, nt, meta, 6) < 0)
        return -1;
    if (before_rename)
        before_rename();
    if (rv_remove_flat_dir(old) < 0)
        return -1;
    if (exists(cur) && rename(cur, old) != 0)
        return rv_error_set("%s: cannot rename to %s: %s", cur, old, strerror(errno));
    if (rename(tmp, cur) != 0)
        return rv_error_set("%s: cannot rename to %s: %s", tmp, cur, strerror(errno));
    return rv_remove_flat_dir(old);
}

static int meta_u64(const rv_safetensors *st, const char *key, uint64_t *out)
{
    const char *v = rv_safetensors_meta(st, key);
    char *end;
    if (!v || !*v)
        return rv_error_set("%s: __metadata__ has no \"%s\"", st->path, key);
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end)
        return rv_error_set("%s: __metadata__.%s: expected an unsigned integer, found \"%s\"", st->path, key, v);
    *out = x;
    return 0;
}

int rv_checkpoint_load(const char *out_dir, rv_train_net *retriever, rv_train_net *lm, rv_ckpt_pos *pos,
                       char **hparams)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/checkpoint/state.safetensors", out_dir);
    if (!exists(file)) {
        snprintf(file, sizeof file, "%s/checkpoint.old/state.safetensors", out_dir);
        if (!exists(file))
            return 0;
    }
    rv_safetensors *st = rv_safetensors_open(file);
    if (!st)
        return -1;
    int rc = -1;
    uint64_t step;
    if (meta_u64(st, "step", &step) < 0 || meta_u64(st, "epoch", &pos->epoch) < 0 ||
        meta_u64(st, "pos", &pos->pos) < 0 || meta_u64(st, "micro", &pos->micro) < 0)
        goto out;
    pos->step = (long)step;
    rv_train_net *nets[2] = {retriever, lm};
    const char *names[6] = {"retriever.params", "retriever.adam_m", "retriever.adam_v",
                            "lm.params", "lm.adam_m", "lm.adam_v"};
    for (int k = 0; k < 2; k++) {
        if (!nets[k])
            continue;
        float *dst[3] = {nets[k]->params, nets[k]->adam_m, nets[k]->adam_v};
        for (int j = 0; j < 3; j++) {
            const rv_st_tensor *t = rv_safetensors_find(st, names[3 * k + j]);
            if (!t || t->dtype != RV_ST_F32 || t->n_elements != nets[k]->n_params) {
                rv_error_set("%s: %s: expected F32 [%zu] (same model, rank and targets), found %s", file,
                             names[3 * k + j], nets[k]->n_params, t ? "another dtype or shape" : "nothing");
                goto out;
            }
            memcpy(dst[j], t->data, t->n_bytes);
        }
    }
    if (hparams) {
        const char *h = rv_safetensors_meta(st, "hparams");
        *hparams = strdup(h ? h : "{}");
        if (!*hparams) {
            rv_error_set("out of memory");
            goto out;
        }
    }
    rc = 1;
out:
    rv_safetensors_close(st);
    return rc;
}
