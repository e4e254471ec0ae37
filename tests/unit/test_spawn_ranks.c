/* test_spawn_ranks.c — `rv-train --gpus N`'s supervisor (lib/spawn_ranks.c).
 * The test program spawns itself: a process with RV_SPAWNED_BY set is a rank
 * and does what SPAWN_TEST_MODE says (record its environment, fail, die by
 * a signal, or hang), so the checks see real fork/exec/wait behaviour:
 * the launcher variables each rank gets, the status returned, which rank is
 * named, and that the survivors of a failure are stopped instead of being
 * waited for. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "spawn_ranks.h"
#include "test.h"

static char dir[] = "/tmp/rv-spawn-XXXXXX";

/* ---------------------------------------------------------------- the ranks */

static int rank_main(void)
{
    const char *mode = getenv("SPAWN_TEST_MODE");
    int rank = atoi(getenv("RANK") ? getenv("RANK") : "-1");
    if (strcmp(mode, "env") == 0) {
        char path[256];
        snprintf(path, sizeof path, "%s/rank%d", getenv("SPAWN_TEST_DIR"), rank);
        FILE *f = fopen(path, "w");
        if (!f)
            return 9;
        const char *names[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "RV_RENDEZVOUS",
                               "MASTER_ADDR", "MASTER_PORT"};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            fprintf(f, "%s=%s\n", names[i], getenv(names[i]) ? getenv(names[i]) : "(unset)");
        fprintf(f, "spawned_by_parent=%d\n", rv_spawned_by() == (long)getppid());
        return fclose(f) == 0 ? 0 : 9;
    }
    if (strcmp(mode, "fail") == 0) {   /* rank 1 fails with status 3; the others would hang */
        if (rank == 1)
            return 3;
        sleep(60);
        return 0;
    }
    if (strcmp(mode, "signal") == 0) {   /* rank 0 is killed; the others would hang */
        if (rank == 0)
            raise(SIGKILL);
        sleep(60);
        return 0;
    }
    return 8;
}

/* ---------------------------------------------------------------- the checks */

static char *self;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int spawn(const char *mode, int n, int *failed)
{
    setenv("SPAWN_TEST_MODE", mode, 1);
    char *argv[] = {self, NULL};
    return rv_spawn_ranks(n, argv, "/tmp/rendezvous-for-test", failed);
}

static void ranks_get_launcher_variables(void)
{
    setenv("MASTER_ADDR", "example.invalid", 1);   /* must not reach the ranks */
    setenv("MASTER_PORT", "1", 1);
    int failed = 99;
    int st = spawn("env", 3, &failed);
    unsetenv("MASTER_ADDR");
    unsetenv("MASTER_PORT");
    CHECK(st == 0, "status %d (%s)", st, rv_error_get());
    CHECK(failed == -1, "failed rank %d", failed);
    for (int r = 0; r < 3; r++) {
        char path[256], want[512], got[512] = {0};
        snprintf(path, sizeof path, "%s/rank%d", dir, r);
        FILE *f = fopen(path, "r");
        REQUIRE(f, "rank %d wrote nothing", r);
        size_t n = fread(got, 1, sizeof got - 1, f);
        fclose(f);
        got[n] = 0;
        snprintf(want, sizeof want,
                 "RANK=%d\nWORLD_SIZE=3\nLOCAL_RANK=%d\nLOCAL_WORLD_SIZE=3\nRV_RENDEZVOUS=/tmp/rendezvous-for-test\n"
                 "MASTER_ADDR=(unset)\nMASTER_PORT=(unset)\nspawned_by_parent=1\n",
                 r, r);
        CHECK(strcmp(got, want) == 0, "rank %d saw:\n%s", r, got);
        unlink(path);
    }
}

static void failed_rank_stops_the_others(void)
{
    int failed = -1;
    double t0 = now_s();
    int st = spawn("fail", 3, &failed);
    double secs = now_s() - t0;
    CHECK(st == 3, "status %d, want rank 1's 3", st);
    CHECK(failed == 1, "failed rank %d", failed);
    CHECK(strstr(rv_error_get(), "rank 1 of 3 exited with status 3") != NULL, "message: %s", rv_error_get());
    CHECK(secs < 20, "took %.1f s: the hanging ranks were not stopped", secs);
}

static void killed_rank_is_named(void)
{
    int failed = -1;
    double t0 = now_s();
    int st = spawn("signal", 2, &failed);
    double secs = now_s() - t0;
    CHECK(st == 1, "status %d, want 1", st);
    CHECK(failed == 0, "failed rank %d", failed);
    CHECK(strstr(rv_error_get(), "rank 0 of 2 was killed by signal 9") != NULL, "message: %s", rv_error_get());
    CHECK(secs < 20, "took %.1f s", secs);
}

static void bad_counts_are_refused(void)
{
    int failed = 0;
    CHECK(spawn("env", 0, &failed) < 0, "0 ranks accepted");
    CHECK(spawn("env", 100000, &failed) < 0, "100000 ranks accepted");
}

int main(int argc, char **argv)
{
    if (rv_spawned_by())
        return rank_main();
    test_suite = "spawn_ranks";
    self = argv[0];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("SPAWN_TEST_DIR", dir, 1);
    RUN_TEST(ranks_get_launcher_variables);
    RUN_TEST(failed_rank_stops_the_others);
    RUN_TEST(killed_rank_is_named);
    RUN_TEST(bad_counts_are_refused);
    rmdir(dir);
    TEST_EXIT();
}
