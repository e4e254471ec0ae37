/* spawn_ranks.h — `rv-train --gpus N`: one process per GPU on this node,
 * started the way torchrun would start them, so that the ranks find where
 * they sit through lib/launch_env.h like under any other launcher.
 *
 * Each rank i runs the program again (/proc/self/exe, the same argv) with
 *   RANK=i WORLD_SIZE=n LOCAL_RANK=i LOCAL_WORLD_SIZE=n
 *   RV_RENDEZVOUS=rendezvous (a fresh path: rank 0 publishes the
 *   communicator's address or NCCL id there)
 *   RV_SPAWNED_BY=<parent pid> (so a rank knows it must not spawn again).
 * MASTER_ADDR / MASTER_PORT are removed from the ranks' environment: the
 * rendezvous file is the one mechanism, whatever the user's shell holds.
 *
 * The parent waits for every rank. When one fails (non-zero exit or a
 * signal) the others are sent SIGTERM, and SIGKILL 10 s later: a rank whose
 * peer died would otherwise wait in a collective until its timeout (NCCL
 * has none). SIGINT, SIGTERM and SIGHUP received by the parent are passed
 * on to the ranks. */
#ifndef RV_SPAWN_RANKS_H
#define RV_SPAWN_RANKS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Starts n ranks of argv (argv[0] is shown in messages; the program run is
 * /proc/self/exe) and waits for all of them. Returns 0 when all exit 0;
 * else the status to exit with (the first failed rank's exit code, 1 for a
 * rank killed by a signal), with *failed_rank and a message (rv_error_get)
 * naming it. -1 with an error when the ranks could not be started (then
 * none is left running). */
int rv_spawn_ranks(int n, char *const argv[], const char *rendezvous, int *failed_rank);

/* The RV_SPAWNED_BY marker of this process (0 when not spawned). */
long rv_spawned_by(void);

#ifdef __cplusplus
}
#endif

#endif
