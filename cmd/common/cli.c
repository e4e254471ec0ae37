/* cli.c — shared command-line plumbing (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "version.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tool_name = "rv";

/* Paths to remove if we die first: unfinished .part outputs, and what a
 * tool registers with rv_cli_remove_on_exit. Signal handlers read this, so it
 * holds plain char pointers set before the handler can run. */
enum { MAX_PENDING = 16 };
static char *volatile pending[MAX_PENDING];

/* Files first, then directories, which rmdir removes only when empty (both
 * calls are async-signal-safe; each fails harmlessly on the other kind). */
static void remove_pending(void)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending[i])
            unlink(pending[i]);
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending[i])
            rmdir(pending[i]);
}

/* Registers PATH (owned by the caller until pending_drop); exits when full. */
static void pending_add(char *path)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (!pending[i]) {
            pending[i] = path;
            return;
        }
    rv_die("internal: too many pending outputs");
}

/* Unregisters PATH (the same string as given, or an equal one); returns the
 * stored pointer, or NULL when it was not registered. */
static char *pending_drop(const char *path)
{
    for (int i = 0; i < MAX_PENDING; i++) {
        char *p = pending[i];
        if (p && (p == path || strcmp(p, path) == 0)) {
            pending[i] = NULL;
            return p;
        }
    }
    return NULL;
}

void rv_cli_remove_on_exit(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        rv_die("out of memory");
    pending_add(copy);
}

void rv_cli_keep(const char *path)
{
    free(pending_drop(path));
}

static void on_signal(int sig)
{
    remove_pending();
    signal(sig, SIG_DFL);
    raise(sig);
}

void rv_cli_keep_heap(void)
{
    /* 32 MiB is the largest mmap threshold glibc accepts; larger blocks are
     * still mapped per allocation, but their faults are small next to the
     * work done on them. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

void rv_cli_init(const char *tool)
{
    tool_name = tool;
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

const char *rv_cli_tool(void) { return tool_name; }

static void vmessage(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", tool_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void rv_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

_Noreturn void rv_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    remove_pending();
    exit(RV_EXIT_DATA);
}

_Noreturn void rv_die_lib(void)
{
    const char *m = rv_error_get();
    rv_die("%s", *m ? m : "unknown error");
}

_Noreturn void rv_die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", tool_name);
    remove_pending();
    exit(RV_EXIT_USAGE);
}

_Noreturn void rv_die_bad_option(int c, char **argv)
{
    extern int optind, optopt;
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':')
        rv_die_usage("option '%s' requires an argument", arg);
    if (optopt && optopt != '?')
        rv_die_usage("unknown option '-%c'", optopt);
    rv_die_usage("unknown option '%s'", arg);
}

_Noreturn void rv_print_version(void)
{
    printf("%s (revela) %s\n", tool_name, RV_VERSION);
    exit(RV_EXIT_OK);
}

FILE *rv_open_input(const char *path, int binary)
{
    if (!path || strcmp(path, "-") == 0) {
        if (binary && isatty(0))
            rv_die("refusing to read a binary stream from a terminal; give a FILE or a pipe");
        return stdin;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        rv_die("%s: cannot open: %s", path, strerror(errno));
    return f;
}

void rv_close_input(FILE *f)
{
    if (f && f != stdin)
        fclose(f);
}

void rv_output_open(rv_output *o, const char *path, int binary, int force)
{
    memset(o, 0, sizeof *o);
    if (!path || strcmp(path, "-") == 0) {
        if (binary && !force && isatty(1))
            rv_die("refusing to write a binary stream to a terminal; use -o FILE, a pipe, or -f");
        o->f = stdout;
        o->is_stdout = 1;
        return;
    }
    size_t n = strlen(path);
    o->path = strdup(path);
    o->part = malloc(n + 6);
    if (!o->path || !o->part)
        rv_die("out of memory");
    memcpy(o->part, path, n);
    memcpy(o->part + n, ".part", 6);
    pending_add(o->part);
    o->f = fopen(o->part, "wb");
    if (!o->f) {
        pending_drop(o->part);
        rv_die("%s: cannot create: %s", o->part, strerror(errno));
    }
}

void rv_output_commit(rv_output *o)
{
    if (o->is_stdout) {
        if (fflush(stdout) != 0 || ferror(stdout))
            rv_die("<stdout>: write error: %s", strerror(errno));
        return;
    }
    if (fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) != 0)
        rv_die("%s: write error: %s", o->part, strerror(errno));
    if (fclose(o->f) != 0)
        rv_die("%s: write error: %s", o->part, strerror(errno));
    o->f = NULL;
    if (rename(o->part, o->path) != 0)
        rv_die("%s: cannot rename to %s: %s", o->part, o->path, strerror(errno));
    pending_drop(o->part);
    free(o->part);
    free(o->path);
    o->part = o->path = NULL;
}

unsigned long long rv_parse_uint(const char *opt, const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        rv_die_usage("%s: expected a non-negative integer, found \"%s\"", opt, s ? s : "");
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        rv_die_usage("%s: expected an integer 0..%llu, found \"%s\"", opt, max, s);
    return v;
}

unsigned long long rv_parse_count(const char *opt, const char *s, unsigned long long max)
{
    unsigned long long v = rv_parse_uint(opt, s, max);
    if (v == 0)
        rv_die_usage("%s: expected at least 1, found 0", opt);
    return v;
}

double rv_parse_double(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !*s || *end)
        rv_die_usage("%s: expected a number, found \"%s\"", opt, s);
    return v;
}
