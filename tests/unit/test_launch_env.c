/* test_launch_env.c — launcher variables (lib/launch_env.c) read from a
 * table, and the two rendezvous mechanisms with ranks as threads: a shared
 * file in a fresh temporary directory, and TCP on 127.0.0.1. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "launch_env.h"
#include "test.h"
#include "test_socket.h"   /* free_port */

/* ---------------------------------------------------------------- variables */

static const char *table_get(void *ctx, const char *name)
{
    for (const char *const *kv = ctx; *kv; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static int read_env(rv_launch_env *e, const char *const *kv)
{
    return rv_launch_env_read(e, table_get, (void *)kv);
}

/* Expects an error containing `want`. */
#define CHECK_FAILS(kv, want)                                                                          \
    do {                                                                                           \
        rv_launch_env e_;                                                                          \
        int rc_ = read_env(&e_, kv);                                                               \
        CHECK(rc_ < 0 && strstr(rv_error_get(), want), "expected an error with \"%s\", got rc %d: %s", want, rc_, \
              rv_error_get());                                                                     \
    } while (0)

static void test_env_none(void)
{
    const char *kv[] = {NULL};
    rv_launch_env e;
    CHECK(read_env(&e, kv) == 0, "%s", rv_error_get());
    CHECK(e.rank == 0 && e.world_size == 1 && e.local_rank == 0 && e.rendezvous == RV_RDV_NONE &&
              strcmp(e.source, "none") == 0,
          "rank %d world %d local %d rdv %d source %s", e.rank, e.world_size, e.local_rank, e.rendezvous, e.source);
}

static void test_env_torchrun(void)
{
    const char *kv[] = {"RANK", "3", "WORLD_SIZE", "8", "LOCAL_RANK", "1", "LOCAL_WORLD_SIZE", "4", "MASTER_ADDR",
                        "node7", "MASTER_PORT", "29500", NULL};
    rv_launch_env e;
    REQUIRE(read_env(&e, kv) == 0, "%s", rv_error_get());
    CHECK(e.rank == 3 && e.world_size == 8 && e.local_rank == 1 && e.local_world_size == 4, "%d %d %d %d", e.rank,
          e.world_size, e.local_rank, e.local_world_size);
    CHECK(strcmp(e.source, "torchrun") == 0, "%s", e.source);
    CHECK(e.rendezvous == RV_RDV_TCP && strcmp(e.addr, "node7") == 0 && e.port == 29500, "rdv %d %s:%d", e.rendezvous,
          e.addr, e.port);
    const char *kv2[] = {"RANK", "3", "WORLD_SIZE", "8", "LOCAL_RANK", "1", "MASTER_ADDR", "node7", "MASTER_PORT",
                         "29500", "RV_MASTER_PORT", "29611", NULL};
    REQUIRE(read_env(&e, kv2) == 0, "%s", rv_error_get());
    CHECK(e.port == 29611, "RV_MASTER_PORT not preferred: %d", e.port);
    const char *kv3[] = {"RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1", "RV_RENDEZVOUS", "/shared/rdv",
                         "MASTER_ADDR", "x", "MASTER_PORT", "1", NULL};
    REQUIRE(read_env(&e, kv3) == 0, "%s", rv_error_get());
    CHECK(e.rendezvous == RV_RDV_FILE && strcmp(e.path, "/shared/rdv") == 0, "file rendezvous not preferred: %d %s",
          e.rendezvous, e.path);
}

static void test_env_other_launchers(void)
{
    rv_launch_env e;
    const char *ompi[] = {"OMPI_COMM_WORLD_RANK", "5", "OMPI_COMM_WORLD_SIZE", "6", "OMPI_COMM_WORLD_LOCAL_RANK", "2",
                          "RV_RENDEZVOUS", "/tmp/x", NULL};
    REQUIRE(read_env(&e, ompi) == 0, "%s", rv_error_get());
    CHECK(e.rank == 5 && e.world_size == 6 && e.local_rank == 2 && strcmp(e.source, "openmpi") == 0, "%d %d %d %s",
          e.rank, e.world_size, e.local_rank, e.source);
    const char *slurm[] = {"SLURM_PROCID", "9", "SLURM_NTASKS", "16", "SLURM_LOCALID", "1", "SLURM_NTASKS_PER_NODE",
                           "8(x2)", "RV_RENDEZVOUS", "/tmp/x", NULL};
    REQUIRE(read_env(&e, slurm) == 0, "%s", rv_error_get());
    CHECK(e.rank == 9 && e.world_size == 16 && e.local_rank == 1 && e.local_world_size == 0 &&
              strcmp(e.source, "slurm") == 0,
          "%d %d %d %d %s", e.rank, e.world_size, e.local_rank, e.local_world_size, e.source);
    /* torchrun inside an salloc: the torchrun variables describe this process */
    const char *both[] = {"SLURM_PROCID", "0", "SLURM_NTASKS", "1", "RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1",
                          "RV_RENDEZVOUS", "/tmp/x", NULL};
    REQUIRE(read_env(&e, both) == 0, "%s", rv_error_get());
    CHECK(e.rank == 1 && e.world_size == 2 && strcmp(e.source, "torchrun") == 0, "%d %d %s", e.rank, e.world_size,
          e.source);
    /* half a set is not a launcher (`make RANK=8` exports RANK): passed over, the next complete set counts */
    const char *half[] = {"RANK", "8", "SLURM_NTASKS", "4", NULL};
    REQUIRE(read_env(&e, half) == 0, "%s", rv_error_get());
    CHECK(e.rank == 0 && e.world_size == 1 && strcmp(e.source, "none") == 0, "%d %d %s", e.rank, e.world_size,
          e.source);
    const char *half_then_mpi[] = {"WORLD_SIZE", "3", "OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "2",
                                   "OMPI_COMM_WORLD_LOCAL_RANK", "1", "RV_RENDEZVOUS", "/tmp/x", NULL};
    REQUIRE(read_env(&e, half_then_mpi) == 0, "%s", rv_error_get());
    CHECK(e.rank == 1 && e.world_size == 2 && strcmp(e.source, "openmpi") == 0, "%d %d %s", e.rank, e.world_size,
          e.source);
    const char *pmi1[] = {"PMI_RANK", "0", "PMI_SIZE", "1", NULL};   /* one rank: local rank 0 implied */
    REQUIRE(read_env(&e, pmi1) == 0, "%s", rv_error_get());
    CHECK(e.world_size == 1 && e.local_rank == 0 && e.rendezvous == RV_RDV_NONE, "%d %d %d", e.world_size,
          e.local_rank, e.rendezvous);
}

static void test_env_errors(void)
{
    const char *big[] = {"RANK", "4", "WORLD_SIZE", "4", "LOCAL_RANK", "0", "RV_RENDEZVOUS", "/x", NULL};
    CHECK_FAILS(big, "RANK=4 but WORLD_SIZE=4");
    const char *neg[] = {"RANK", "-1", "WORLD_SIZE", "4", NULL};
    CHECK_FAILS(neg, "RANK=\"-1\": not a non-negative integer");
    const char *junk[] = {"RANK", "1x", "WORLD_SIZE", "4", NULL};
    CHECK_FAILS(junk, "RANK=\"1x\"");
    const char *empty[] = {"RANK", "1", "WORLD_SIZE", "", NULL};
    CHECK_FAILS(empty, "WORLD_SIZE is set but empty");
    const char *huge[] = {"RANK", "1", "WORLD_SIZE", "99999999999", NULL};
    CHECK_FAILS(huge, "too large");
    const char *zero[] = {"RANK", "0", "WORLD_SIZE", "0", NULL};
    CHECK_FAILS(zero, "WORLD_SIZE=0");
    const char *nolocal[] = {"RANK", "1", "WORLD_SIZE", "2", "RV_RENDEZVOUS", "/x", NULL};
    CHECK_FAILS(nolocal, "LOCAL_RANK is not set");
    const char *localbig[] = {"RANK", "1", "WORLD_SIZE", "4", "LOCAL_RANK", "2", "LOCAL_WORLD_SIZE", "2", NULL};
    CHECK_FAILS(localbig, "LOCAL_RANK=2 but LOCAL_WORLD_SIZE=2");
    const char *nordv[] = {"RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1", NULL};
    CHECK_FAILS(nordv, "need a rendezvous");
    const char *noport[] = {"RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1", "MASTER_ADDR", "h", NULL};
    CHECK_FAILS(noport, "MASTER_ADDR is set but MASTER_PORT is not");
    const char *badport[] = {"RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1", "MASTER_ADDR", "h", "MASTER_PORT",
                             "70000", NULL};
    CHECK_FAILS(badport, "MASTER_PORT=70000");
}

/* ---------------------------------------------------------------- rendezvous */

#define ID_BYTES 128
#define RANKS 3

typedef struct {
    int rank, port, use_tcp, delay_ms;
    const char *path;
    unsigned char id[ID_BYTES];
    int rc;
    char err[300];
} rdv_job;

static void *rdv_main(void *arg)
{
    rdv_job *j = arg;
    if (j->delay_ms)
        usleep((useconds_t)j->delay_ms * 1000);
    j->rc = j->use_tcp ? rv_rendezvous_tcp("127.0.0.1", j->port, j->rank, RANKS, j->id, ID_BYTES, 10)
                       : rv_rendezvous_file(j->path, j->rank, j->id, ID_BYTES, 10);
    snprintf(j->err, sizeof j->err, "%s", rv_error_get());
    return NULL;
}

/* Runs RANKS threads, rank 0 started last (the others must wait for it). */
static void run_rdv(int use_tcp, int port, const char *path)
{
    rdv_job jobs[RANKS];
    pthread_t th[RANKS];
    unsigned char want[ID_BYTES];
    for (int i = 0; i < ID_BYTES; i++)
        want[i] = (unsigned char)test_rand();
    for (int r = 0; r < RANKS; r++) {
        jobs[r] = (rdv_job){.rank = r, .port = port, .use_tcp = use_tcp, .delay_ms = r == 0 ? 300 : 0, .path = path};
        if (r == 0)
            memcpy(jobs[r].id, want, ID_BYTES);
        else
            memset(jobs[r].id, 0xee, ID_BYTES);
        pthread_create(&th[r], NULL, rdv_main, &jobs[r]);
    }
    for (int r = 0; r < RANKS; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < RANKS; r++) {
        CHECK(jobs[r].rc == 0, "rank %d: %s", r, jobs[r].err);
        CHECK(memcmp(jobs[r].id, want, ID_BYTES) == 0, "rank %d holds different bytes", r);
    }
}

static void test_rendezvous_file(void)
{
    char dir[] = "/tmp/rv_rdv_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp failed");
    char path[256];
    snprintf(path, sizeof path, "%s/id", dir);
    run_rdv(0, 0, path);
    /* the file stays until removed; rank 0 refuses to reuse it */
    unsigned char id[ID_BYTES] = {0};
    CHECK(access(path, F_OK) == 0, "rendezvous file missing after the exchange");
    CHECK(rv_rendezvous_file(path, 0, id, ID_BYTES, 1) < 0 && strstr(rv_error_get(), "already exists"), "got: %s",
          rv_error_get());
    /* a reader checks the length and the magic */
    CHECK(rv_rendezvous_file(path, 1, id, 64, 1) < 0 && strstr(rv_error_get(), "expected 64"), "got: %s",
          rv_error_get());
    CHECK(rv_rendezvous_file_remove(path) == 0 && access(path, F_OK) != 0, "remove: %s", rv_error_get());
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "cannot write %s", path);
    fputs("this is not a rendezvous file at all", f);
    fclose(f);
    CHECK(rv_rendezvous_file(path, 1, id, ID_BYTES, 1) < 0 && strstr(rv_error_get(), "bad magic"), "got: %s",
          rv_error_get());
    unlink(path);
    /* nobody writes it: a reader times out with an error */
    CHECK(rv_rendezvous_file(path, 2, id, ID_BYTES, 0.2) < 0 && strstr(rv_error_get(), "rank 2 waited"), "got: %s",
          rv_error_get());
    rmdir(dir);
}

static void test_rendezvous_tcp(void)
{
    int port = free_port();
    REQUIRE(port > 0, "no free port");
    run_rdv(1, port, NULL);
    /* nobody listens: a client gives up with the reason */
    unsigned char id[ID_BYTES];
    int p2 = free_port();
    CHECK(rv_rendezvous_tcp("127.0.0.1", p2, 1, 2, id, ID_BYTES, 0.3) < 0 && strstr(rv_error_get(), "rank 1 could not"),
          "got: %s", rv_error_get());
    /* rank 0 alone: times out naming how many connected */
    CHECK(rv_rendezvous_tcp("127.0.0.1", p2, 0, 3, id, ID_BYTES, 0.3) < 0 && strstr(rv_error_get(), "0 of 2 ranks"),
          "got: %s", rv_error_get());
}

int main(void)
{
    test_suite = "launch_env";
    RUN_TEST(test_env_none);
    RUN_TEST(test_env_torchrun);
    RUN_TEST(test_env_other_launchers);
    RUN_TEST(test_env_errors);
    RUN_TEST(test_rendezvous_file);
    int port_ok = free_port() >= 0;
    if (port_ok)
        RUN_TEST(test_rendezvous_tcp);
    else
        printf("SKIP launch_env/test_rendezvous_tcp: no loopback TCP socket here\n");
    TEST_EXIT();
}
