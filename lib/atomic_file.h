/* atomic_file.h — write a file so that it appears complete or not at all:
 * data goes to "NAME.part", which is fsynced and renamed over NAME on commit
 * and removed on abort. */
#ifndef RV_ATOMIC_FILE_H
#define RV_ATOMIC_FILE_H

#include <stdio.h>

typedef struct {
    FILE *f;
    char *path;     /* final name */
    char *part;     /* NAME.part */
} rv_atomic_file;

/* Opens NAME.part for writing ("wb"). Returns 0 or -1 (error set). */
int rv_atomic_open(rv_atomic_file *a, const char *path);
/* Flushes, fsyncs, closes and renames into place. On failure the .part file is
 * removed. Returns 0 or -1. */
int rv_atomic_commit(rv_atomic_file *a);
/* Closes and removes the .part file. Safe to call after commit (no-op). */
void rv_atomic_abort(rv_atomic_file *a);

/* Removes a directory holding plain files only; absent is fine. 0 or -1. */
int rv_remove_flat_dir(const char *dir);
/* Puts the complete directory tmp in place of dir: dir (if any) becomes
 * dir.old, tmp is renamed to dir, dir.old is removed. A crash leaves either
 * the old or the new directory under one of the two names. 0 or -1. */
int rv_dir_replace(const char *tmp, const char *dir);

#endif
