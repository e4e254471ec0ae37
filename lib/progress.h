/* progress.h — progress reports for long work, on stderr: a rewritten line
 * with rate and ETA when stderr is a terminal, a plain line every 10 seconds
 * otherwise (RV_PROGRESS_SECONDS overrides), nothing when quiet. */
#ifndef RV_PROGRESS_H
#define RV_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *tool;       /* "rv-cat" */
    const char *unit;       /* "records", "docs", "tokens" */
    uint64_t total;         /* 0 when unknown */
    uint64_t done;
    double start, last;
    int tty, quiet, shown;
    double interval;
} rv_progress;

void rv_progress_start(rv_progress *p, const char *tool, const char *unit, uint64_t total, int quiet);
/* Records progress; reads a monotonic clock on each call, so call it per
 * batch of work rather than per byte. */
void rv_progress_update(rv_progress *p, uint64_t done);
/* Prints the final summary line (count, time, rate) unless quiet. */
void rv_progress_finish(rv_progress *p);

double rv_now(void);   /* monotonic seconds */

#endif
