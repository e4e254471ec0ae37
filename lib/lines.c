/* lines.c — line reader over getline (see lines.h). */
#include "lines.h"
#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

void rv_lines_init(rv_lines *r, FILE *f)
{
    memset(r, 0, sizeof *r);
    r->f = f;
}

int rv_lines_next(rv_lines *r, char **line, size_t *len)
{
    errno = 0;
    ssize_t n = getline(&r->line, &r->cap, r->f);
    if (n < 0) {
        if (ferror(r->f))
            return rv_error_set("line %zu: read error: %s", r->lineno + 1, strerror(errno ? errno : EIO));
        return 0;
    }
    r->lineno++;
    if (n > 0 && r->line[n - 1] == '\n')
        n--;
    if (n > 0 && r->line[n - 1] == '\r')
        n--;
    r->line[n] = '\0';
    *line = r->line;
    *len = (size_t)n;
    return 1;
}

void rv_lines_free(rv_lines *r)
{
    free(r->line);
    r->line = NULL;
    r->cap = 0;
}
