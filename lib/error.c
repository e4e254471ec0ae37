/* error.c — per-thread error message buffer (see error.h). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { ERROR_CAP = 2048 };
static _Thread_local char error_message[ERROR_CAP];

int rv_error_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, ERROR_CAP, fmt, ap);
    va_end(ap);
    return -1;
}

int rv_error_prefix(const char *fmt, ...)
{
    char prefix[ERROR_CAP], old[ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, ERROR_CAP, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, ERROR_CAP);
    size_t n = strlen(prefix);
    if (n > ERROR_CAP - 3)
        n = ERROR_CAP - 3;
    memcpy(error_message, prefix, n);
    memcpy(error_message + n, ": ", 2);
    size_t rest = ERROR_CAP - n - 3, m = strlen(old);
    if (m > rest)
        m = rest;
    memcpy(error_message + n + 2, old, m);
    error_message[n + 2 + m] = '\0';
    return -1;
}

const char *rv_error_get(void) { return error_message; }

void rv_error_clear(void) { error_message[0] = '\0'; }
