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

#endif
