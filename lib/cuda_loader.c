/* cuda_loader.c — dlopen of the CUDA backend (see cuda_loader.h). */
#include "cuda_loader.h"
#include "error.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKEND_NAME "librevela-cuda.so"

static void *handle;
static int load_state;                  /* 0 not tried, 1 loaded, -1 failed */
static char loaded_path[PATH_MAX];
static char load_error[4096];           /* kept so every later call reports the same reason */

/* Appends "path: reason" to the failure text. */
static void note_failure(const char *path, const char *why)
{
    size_t used = strlen(load_error);
    snprintf(load_error + used, sizeof load_error - used, "%s%s: %s", used ? "; " : "", path, why);
}

static int try_path(const char *path)
{
    if (access(path, R_OK) != 0) {
        note_failure(path, "not found");
        return -1;
    }
    /* RTLD_LOCAL: the backend's own symbols (CUDA runtime, cuBLASLt) stay
     * private; librevela's resolve against the tool. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        note_failure(path, e ? e : "dlopen failed");
        return -1;
    }
    handle = h;
    snprintf(loaded_path, sizeof loaded_path, "%s", path);
    return 0;
}

int rv_cuda_backend_load(void)
{
    if (load_state == 0) {
        load_state = -1;
        const char *env = getenv("RV_CUDA_LIB");
        if (env && *env) {
            if (try_path(env) == 0)
                load_state = 1;
        } else {
            char exe[PATH_MAX], path[PATH_MAX + 64];
            ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
            if (n > 0) {
                exe[n] = '\0';
                char *slash = strrchr(exe, '/');
                if (slash)
                    *slash = '\0';
                snprintf(path, sizeof path, "%s/%s", exe, BACKEND_NAME);
                if (try_path(path) == 0)
                    load_state = 1;
                else {
                    snprintf(path, sizeof path, "%s/../lib/revela/%s", exe, BACKEND_NAME);
                    if (try_path(path) == 0)
                        load_state = 1;
                }
            } else {
                note_failure("/proc/self/exe", "cannot find the tool's directory");
            }
        }
    }
    if (load_state == 1)
        return 0;
    return rv_error_set("CUDA backend not available (%s); it is built by `make` where nvcc is found, "
                        "or set RV_CUDA_LIB to its path",
                        load_error);
}

void *rv_cuda_backend_sym(const char *name)
{
    if (rv_cuda_backend_load() < 0)
        return NULL;
    dlerror();
    void *f = dlsym(handle, name);
    if (!f) {
        rv_error_set("CUDA backend %s has no function %s (built from an older revela?)", loaded_path, name);
        return NULL;
    }
    return f;
}

const char *rv_cuda_backend_path(void) { return load_state == 1 ? loaded_path : ""; }
