/* atomic_file.c — NAME.part then rename (see atomic_file.h). */
#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"
#include "error.h"

#include <errno.h>
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
