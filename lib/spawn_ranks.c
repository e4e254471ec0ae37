/* spawn_ranks.c — start and supervise the ranks of `rv-train --gpus N`
 * (spawn_ranks.h). */
#include "spawn_ranks.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

#define MAX_RANKS 1024

/* The ranks' pids, for the signal handler (which may only call kill). */
static pid_t child_pid[MAX_RANKS];
static volatile sig_atomic_t n_children;

static void forward_signal(int sig)
{
    for (sig_atomic_t i = 0; i < n_children; i++)
        if (child_pid[i] > 0)
            kill(child_pid[i], sig);
}

long rv_spawned_by(void)
{
    const char *s = getenv("RV_SPAWNED_BY");
    return s && *s ? atol(s) : 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* In the child between fork and exec: only setenv/unsetenv and exec. */
_Noreturn static void exec_rank(int rank, int n, char *const argv[], const char *rendezvous, pid_t parent)
{
    char num[32];
    snprintf(num, sizeof num, "%d", rank);
    setenv("RANK", num, 1);
    setenv("LOCAL_RANK", num, 1);
    snprintf(num, sizeof num, "%d", n);
    setenv("WORLD_SIZE", num, 1);
    setenv("LOCAL_WORLD_SIZE", num, 1);
    setenv("RV_RENDEZVOUS", rendezvous, 1);
    snprintf(num, sizeof num, "%ld", (long)parent);
    setenv("RV_SPAWNED_BY", num, 1);
    unsetenv("MASTER_ADDR");
    unsetenv("MASTER_PORT");
    unsetenv("RV_MASTER_PORT");
    execv("/proc/self/exe", argv);
    fprintf(stderr, "%s: rank %d: cannot run /proc/self/exe: %s\n", argv[0], rank, strerror(errno));
    _exit(127);
}

int rv_spawn_ranks(int n, char *const argv[], const char *rendezvous, int *failed_rank)
{
    *failed_rank = -1;
    if (n < 1 || n > MAX_RANKS)
        return rv_error_set("--gpus %d: expected 1..%d ranks", n, MAX_RANKS);
    fflush(NULL);   /* nothing buffered is written twice by the children */
    struct sigaction fwd, old[3];
    memset(&fwd, 0, sizeof fwd);
    fwd.sa_handler = forward_signal;
    sigemptyset(&fwd.sa_mask);
    const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &fwd, &old[i]);

    pid_t parent = getpid();
    n_children = 0;
    for (int r = 0; r < n; r++) {
        pid_t p = fork();
        if (p == 0)
            exec_rank(r, n, argv, rendezvous, parent);
        if (p < 0) {
            int e = errno;
            forward_signal(SIGKILL);
            while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
            }
            n_children = 0;
            for (int i = 0; i < 3; i++)
                sigaction(sigs[i], &old[i], NULL);
            return rv_error_set("--gpus %d: cannot start rank %d: %s", n, r, strerror(e));
        }
        child_pid[r] = p;
        n_children = r + 1;
    }

    int running = n, status_out = 0;
    double kill_at = 0;   /* 0: no rank has failed yet */
    while (running > 0) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p < 0 && errno != EINTR)
            break;   /* ECHILD: nothing left (should not happen while running > 0) */
        if (p <= 0) {
            if (kill_at > 0 && now_s() >= kill_at) {
                forward_signal(SIGKILL);
                kill_at = now_s() + 3600;
            }
            sleep_ms(20);
            continue;
        }
        int r = 0;
        while (r < n && child_pid[r] != p)
            r++;
        if (r == n)
            continue;   /* not ours */
        child_pid[r] = 0;
        running--;
        int failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (failed && *failed_rank < 0) {
            *failed_rank = r;
            if (WIFEXITED(st)) {
                status_out = WEXITSTATUS(st);
                rv_error_set("rank %d of %d exited with status %d", r, n, status_out);
            } else {
                status_out = 1;
                rv_error_set("rank %d of %d was killed by signal %d (%s)", r, n, WTERMSIG(st), strsignal(WTERMSIG(st)));
            }
            forward_signal(SIGTERM);   /* the others would wait for it in a collective */
            kill_at = now_s() + 10;
        }
    }
    n_children = 0;
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
    return status_out;
}
