/* lines.h — read a text file line by line with line numbers (for JSONL,
 * TREC and TSV inputs). Lines may be any length; the newline is stripped
 * (and a preceding '\r'), and a last line without a newline is returned. */
#ifndef RV_LINES_H
#define RV_LINES_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    char *line;
    size_t cap;
    size_t lineno;      /* 1-based number of the line last returned */
} rv_lines;

void rv_lines_init(rv_lines *r, FILE *f);
/* Returns 1 and sets *line and *len (valid until the next call), 0 at end, -1 on error. */
int rv_lines_next(rv_lines *r, char **line, size_t *len);
void rv_lines_free(rv_lines *r);

#endif
