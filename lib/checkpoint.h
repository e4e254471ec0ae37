/* checkpoint.h — rv-train's resumable state in OUT/checkpoint/state.safetensors:
 * both adapter sets with their AdamW moments (F32 tensors retriever.params,
 * retriever.adam_m, retriever.adam_v, lm.*), and in "__metadata__" the
 * optimizer step, the data position (epoch, index into that epoch's group
 * order) and the hyper-parameters as JSON. Dropout masks and adapter
 * initialisation are counter-based functions of (seed, stream, index), so no
 * other RNG state exists.
 *
 * Saving never leaves OUT without a valid checkpoint: the new one is written
 * to OUT/checkpoint.tmp/ (files fsynced), the old directory renamed to
 * OUT/checkpoint.old, the new one renamed into place, the old one removed.
 * Loading takes OUT/checkpoint, or OUT/checkpoint.old when a crash fell
 * between the two renames. */
#ifndef RV_CHECKPOINT_H
#define RV_CHECKPOINT_H

#include <stdint.h>

#include "train_model.h"

typedef struct {
    long step;            /* optimizer steps done */
    uint64_t epoch, pos;  /* next group: order(epoch)[pos] */
    uint64_t micro;       /* micro-batches consumed in total */
} rv_ckpt_pos;

/* retriever may be NULL (a plain LM run): its tensors are then neither
 * written nor read. before_rename, when not NULL, runs after the new files are complete and
 * before the renames (a test hook). */
int rv_checkpoint_save(const char *out_dir, const rv_train_net *retriever, const rv_train_net *lm,
                       const rv_ckpt_pos *pos, const char *hparams_json, void (*before_rename)(void));

/* Restores parameters and moments into nets of the same shapes; *hparams
 * gets a malloc'ed copy of the stored JSON (may be NULL). Returns 1 when a
 * checkpoint was loaded, 0 when OUT has none, -1 on error. */
int rv_checkpoint_load(const char *out_dir, rv_train_net *retriever, rv_train_net *lm, rv_ckpt_pos *pos,
                       char **hparams);

#endif
