/* progress.c — progress lines on stderr (see progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

double rv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void rv_progress_start(rv_progress *p, const char *tool, const char *unit, uint64_t total, int quiet)
{
    p->tool = tool;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->start = p->last = rv_now();
    p->tty = isatty(2);
    p->quiet = quiet;
    p->shown = 0;
    const char *env = getenv("RV_PROGRESS_SECONDS");
    p->interval = p->tty ? 0.2 : (env && atof(env) > 0 ? atof(env) : 10.0);
}

static void show(rv_progress *p, double now, int final)
{
    double el = now - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    if (final) {
        fprintf(stderr, "%s%s: %llu %s in %.1fs (%.0f %s/s)\n", p->tty && p->shown ? "\r\033[K" : "",
                p->tool, (unsigned long long)p->done, p->unit, el, rate, p->unit);
        return;
    }
    char eta[48] = "";
    if (p->total && rate > 0 && p->done <= p->total)
        snprintf(eta, sizeof eta, ", ETA %.0fs", (double)(p->total - p->done) / rate);
    if (p->total)
        fprintf(stderr, "%s%s: %llu/%llu %s (%.1f%%), %.0f %s/s%s%s", p->tty ? "\r\033[K" : "", p->tool,
                (unsigned long long)p->done, (unsigned long long)p->total, p->unit,
                100.0 * (double)p->done / (double)p->total, rate, p->unit, eta, p->tty ? "" : "\n");
    else
        fprintf(stderr, "%s%s: %llu %s, %.0f %s/s%s", p->tty ? "\r\033[K" : "", p->tool,
                (unsigned long long)p->done, p->unit, rate, p->unit, p->tty ? "" : "\n");
    p->shown = 1;
}

void rv_progress_update(rv_progress *p, uint64_t done)
{
    p->done = done;
    if (p->quiet)
        return;
    double now = rv_now();
    if (now - p->last >= p->interval) {
        p->last = now;
        show(p, now, 0);
    }
}

void rv_progress_finish(rv_progress *p)
{
    if (p->quiet)
        return;
    show(p, rv_now(), 1);
}
