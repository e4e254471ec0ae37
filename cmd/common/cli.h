/* cli.h — what every rv-* command shares: messages prefixed with the tool
 * name, exit statuses (0 ok, 1 data/runtime error, 2 usage error), --help and
 * --version handling, inputs ("-" = stdin), atomic outputs (-o FILE writes
 * FILE.part and renames it when complete; stdout otherwise) and the refusal
 * to write binary data to a terminal without -f. Only cmd/ links this: lib/
 * never exits. */
#ifndef RV_CLI_H
#define RV_CLI_H

#include <stdio.h>

#include "error.h"

enum { RV_EXIT_OK = 0, RV_EXIT_DATA = 1, RV_EXIT_USAGE = 2 };

/* Sets the tool name for messages and installs signal handlers that remove
 * unfinished .part outputs on SIGINT/SIGTERM/SIGHUP/SIGPIPE. */
void rv_cli_init(const char *tool);

/* For tools that allocate and free the same large buffers every step or
 * batch (rv-train, rv-encode): keeps freed memory in the heap instead of
 * returning it to the kernel, so the next step reuses mapped pages. glibc's
 * defaults unmap and re-fault them each time: page faults and TLB
 * shootdowns took a third of a small rv-train step on 2 cores. */
void rv_cli_keep_heap(void);
const char *rv_cli_tool(void);

/* Outputs that must not outlive a failed start: PATH (copied) is removed if
 * the tool dies (rv_die*, or the signals above) before rv_cli_keep(PATH).
 * A directory is removed only if it is empty by then (files go first). */
void rv_cli_remove_on_exit(const char *path);
void rv_cli_keep(const char *path);

void rv_warn(const char *fmt, ...) RV_PRINTF(1, 2);
/* "rv-tool: message" then exit 1. */
_Noreturn void rv_die(const char *fmt, ...) RV_PRINTF(1, 2);
/* The library's last error message, then exit 1. */
_Noreturn void rv_die_lib(void);
/* "rv-tool: message" + "Try 'rv-tool --help'." then exit 2. */
_Noreturn void rv_die_usage(const char *fmt, ...) RV_PRINTF(1, 2);

/* For getopt_long with opterr = 0 and an optstring starting with ':': reports
 * the unknown option or missing argument named in argv, then exits 2. */
_Noreturn void rv_die_bad_option(int c, char **argv);

/* Prints "rv-tool (revela) VERSION" to stdout and exits 0. */
_Noreturn void rv_print_version(void);

/* Opens an input: NULL or "-" is stdin. With binary set, a terminal on stdin
 * is refused (exit 1) since a person cannot type a stream. Exits on error. */
FILE *rv_open_input(const char *path, int binary);
void rv_close_input(FILE *f);

typedef struct {
    FILE *f;
    int is_stdout;
    char *path;
    char *part;
} rv_output;

/* Opens the output: NULL or "-" is stdout, else PATH.part (renamed at
 * commit). With binary set and stdout a terminal, exits 1 unless force. */
void rv_output_open(rv_output *o, const char *path, int binary, int force);
/* Finishes the output (flush; fsync + rename for files). Exits 1 on error. */
void rv_output_commit(rv_output *o);

/* Parses a non-negative integer option value or exits 2 naming the option. */
unsigned long long rv_parse_uint(const char *opt, const char *s, unsigned long long max);
/* The same for a count that must be at least 1. */
unsigned long long rv_parse_count(const char *opt, const char *s, unsigned long long max);
double rv_parse_double(const char *opt, const char *s);

#endif
