/* error.h — how lib/ reports failure without exiting.
 *
 * Library functions return -1 (or NULL) on failure after recording a message
 * with rv_error_set(); the command layer (cmd/) prints rv_error_get() prefixed
 * with the tool name and chooses the exit status. Messages follow DESIGN.md:
 * "file:field: what was expected, what was found". The buffer is per thread. */
#ifndef RV_ERROR_H
#define RV_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define RV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RV_PRINTF(a, b)
#endif

/* Records a message (replacing any earlier one). Always returns -1 so that
 * `return rv_error_set(...)` reads naturally. */
int rv_error_set(const char *fmt, ...) RV_PRINTF(1, 2);

/* Prepends "prefix: " to the current message (to add file or record context
 * on the way up). Returns -1. */
int rv_error_prefix(const char *fmt, ...) RV_PRINTF(1, 2);

/* The last message recorded on this thread ("" when none). */
const char *rv_error_get(void);

void rv_error_clear(void);

#endif
