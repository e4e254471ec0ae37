/* test_cuda_loader.c — lib/cuda_loader.c: loading the CUDA backend through
 * RV_CUDA_LIB (the emulated backend that `make check` builds, whose calls
 * into librevela must resolve against this program), calling an entry point
 * by name, and the errors for a missing library and a missing function. The
 * first call's result is kept, so each case runs in a child process. */
#include "cuda_loader.h"
#include "error.h"
#include "test.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *emu_backend(void)
{
    static char path[512];
    const char *build = getenv("BUILD");
    snprintf(path, sizeof path, "%s/gpu-emu/librevela-cuda.so", build && *build ? build : "build");
    return path;
}

/* Runs fn in a child with RV_CUDA_LIB=lib; returns the child's exit code. */
static int in_child(const char *lib, int (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("RV_CUDA_LIB", lib, 1);
        int rc = fn();
        fflush(stdout);
        _exit(rc);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

/* Looks up and calls the backend's rv_cuda_device_count: the device count,
 * or -1 (message printed) when the lookup fails. */
static int backend_device_count(void)
{
    int (*count)(const char **) = (int (*)(const char **))rv_cuda_backend_sym("rv_cuda_device_count");
    if (!count) {
        printf("  %s\n", rv_error_get());
        return -1;
    }
    const char *why = NULL;
    int n = count(&why);
    printf("INFO cuda_loader: %s reports %d CUDA device(s)%s%s\n", rv_cuda_backend_path(), n, n ? "" : ": ",
           n ? "" : (why ? why : ""));
    return n;
}

/* The emulator always offers one device. */
static int call_device_count(void) { return backend_device_count() >= 1 ? 0 : 3; }

/* A real backend on a machine without a GPU reports 0 devices, not a failure. */
static int call_device_count_any(void) { return backend_device_count() >= 0 ? 0 : 3; }

static int expect_missing_function(void)
{
    void *f = rv_cuda_backend_sym("rv_no_such_function");
    return f == NULL && strstr(rv_error_get(), "rv_no_such_function") ? 0 : 4;
}

static int expect_missing_library(void)
{
    /* The error names the path and says how to get a backend; a second call
     * gives the same answer without trying again. */
    int rc1 = rv_cuda_backend_load();
    const char *msg = rv_error_get();
    int ok = rc1 < 0 && strstr(msg, "/nonexistent/librevela-cuda.so") && strstr(msg, "RV_CUDA_LIB");
    if (!ok)
        printf("  unexpected: rc %d, \"%s\"\n", rc1, msg);
    return ok && rv_cuda_backend_load() < 0 && rv_cuda_backend_sym("rv_cuda_device_count") == NULL ? 0 : 5;
}

static void test_loads_emulated_backend(void)
{
    CHECK(in_child(emu_backend(), call_device_count) == 0, "calling rv_cuda_device_count in %s", emu_backend());
    CHECK(in_child(emu_backend(), expect_missing_function) == 0, "a missing function is an error naming it");
}

/* The real backend (bin/librevela-cuda.so, built where nvcc is) must load
 * into a tool-like program on any machine, GPU or not: every librevela
 * symbol it needs is exported here, its CUDA libraries are found. */
static char real_backend[512];
static void test_loads_real_backend(void)
{
    const char *path = real_backend;
    CHECK(in_child(path, call_device_count_any) == 0, "loading %s and calling rv_cuda_device_count", path);
}

static void test_missing_backend(void)
{
    CHECK(in_child("/nonexistent/librevela-cuda.so", expect_missing_library) == 0, "missing backend error");
}

int main(void)
{
    test_suite = "cuda_loader";
    /* `make check` builds the emulated backend; `make check-asan` does not
     * (the emulator's fibers and ASan do not mix). */
    if (access(emu_backend(), R_OK) == 0)
        RUN_TEST(test_loads_emulated_backend);
    else
        printf("SKIP cuda_loader/test_loads_emulated_backend (%s not built)\n", emu_backend());
    RUN_TEST(test_missing_backend);
    const char *bin = getenv("BIN");
    snprintf(real_backend, sizeof real_backend, "%s/librevela-cuda.so", bin && *bin ? bin : "bin");
    if (access(real_backend, R_OK) == 0)
        RUN_TEST(test_loads_real_backend);
    else
        printf("SKIP cuda_loader/test_loads_real_backend (%s: not built, no nvcc)\n", real_backend);
    TEST_EXIT();
}
