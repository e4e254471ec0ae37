/* atomic_file.c — NAME.part then rename (see atomic_file.h). */
#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int rv_atomic_open(rv_atomic_file *a, const char *path)
{
    memset(a, 0, sizeof *a);
    size_t n = strlen(path);
    a->path = strdup(path);
    a->part = malloc(n + 6);
    if (!a->path || !a->part) {
        free(a->path);
        free(a->part);
        return rv_error_set("out of memory");
    }
    memcpy(a->part, path, n);
    memcpy(a->part + n, ".part", 6);
    a->f = fopen(a->part, "wb");
    if (!a->f) {
        int e = errno;
        rv_error_set("%s: cannot create: %s", a->part, strerror(e));
        free(a->path);
        free(a->part);
        a->path = a->part = NULL;
        return -1;
    }
    return 0;
}

int rv_atomic_commit(rv_atomic_file *a)
{
    if (!a->f)
        return rv_error_set("internal: commit of a file that is not open");
    int rc = 0;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0)
        rc = rv_error_set("%s: write error: %s", a->part, strerror(errno));
    if (fclose(a->f) != 0 && rc == 0)
        rc = rv_error_set("%s: write error: %s", a->part, strerror(errno));
    a->f = NULL;
    if (rc == 0 && rename(a->part, a->path) != 0)
        rc = rv_error_set("%s: cannot rename to %s: %s", a->part, a->path, strerror(errno));
    if (rc != 0)
        unlink(a->part);
    free(a->path);
    free(a->part);
    a->path = a->part = NULL;
    return rc;
}

void rv_atomic_abort(rv_atomic_file *a)
{
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
    }
    if (a->part)
        unlink(a->part);
    free(a->path);
    free(a->part);
    a->path = a->part = NULL;
}

/* Removes a directory holding plain files only; absent is fine. */
int rv_remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : rv_error_set("%s: %s", dir, strerror(errno));
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            closedir(d);
            return rv_error_set("%s: cannot remove: %s", path, strerror(errno));
        }
    }
    closedir(d);
    if (rmdir(dir) != 0)
        return rv_error_set("%s: cannot remove: %s", dir, strerror(errno));
    return 0;
}


int rv_dir_replace(const char *tmp, const char *dir)
{
    char old[4200];
    snprintf(old, sizeof old, "%s.old", dir);
    if (rv_remove_flat_dir(old) < 0)
        return -1;
    struct stat st;
    if (stat(dir, &st) == 0 && rename(dir, old) != 0)
        return rv_error_set("%s: cannot rename to %s: %s", dir, old, strerror(errno));
    if (rename(tmp, dir) != 0)
        return rv_error_set("%s: cannot rename to %s: %s", tmp, dir, strerror(errno));
    return rv_remove_flat_dir(old);
}
