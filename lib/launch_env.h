/* launch_env.h — where a data-parallel rv-train process sits in the job
 * (rank, world size, local GPU) and how the ranks meet (rendezvous), read
 * from the variables the usual launchers set, so that the same binary runs
 * under `rv-train --gpus N` (which sets them for the ranks it spawns),
 * torchrun, Slurm srun and mpirun.
 *
 * Variables, first complete set wins:
 *   RANK, WORLD_SIZE [, LOCAL_RANK, LOCAL_WORLD_SIZE]       torchrun, rv-train --gpus
 *   OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK   Open MPI
 *   PMI_RANK, PMI_SIZE, MPI_LOCALRANKID                      MPICH, Intel MPI
 *   SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID                srun
 *   none of them: rank 0 of 1 (source "none").
 * A set that is half there (RANK without WORLD_SIZE) is not a launcher and
 * is passed over: `make RANK=8` exports RANK to its recipes, and launchers
 * always set both. A complete set that is malformed (not a decimal integer,
 * rank >= world size) is an error naming the variable, not a silent
 * single-process run. The local rank (the GPU index) defaults to
 * the rank when the launcher gives none and the world is 1, and is an error
 * otherwise (which GPU would be a guess).
 *
 * Rendezvous (how rank 0's NCCL id reaches the others), for world > 1:
 *   RV_RENDEZVOUS=/shared/path   a file on a filesystem every rank sees:
 *        rank 0 writes it atomically (temporary name, fsync, rename), the
 *        others poll for it. It must not exist when the job starts (a stale
 *        id would hang the ranks that read it); rank 0 refuses an existing
 *        one, and the caller removes it (rv_rendezvous_file_remove) once
 *        the communicator is up, i.e. once every rank has read it.
 *   MASTER_ADDR, MASTER_PORT     rank 0 listens on the port (all addresses)
 *        and sends the bytes to each of the world - 1 ranks that connect;
 *        RV_MASTER_PORT overrides MASTER_PORT (under torchrun, whose own
 *        store already listens on MASTER_PORT).
 *   neither: an error saying to set one.
 * The bytes carry a magic and their length, so a stray peer or a file of
 * another kind is refused instead of being used as an id. */
#ifndef RV_LAUNCH_ENV_H
#define RV_LAUNCH_ENV_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { RV_RDV_NONE = 0, RV_RDV_FILE, RV_RDV_TCP };

typedef struct {
    int rank, world_size, local_rank;
    int local_world_size;     /* 0 when the launcher does not say */
    const char *source;       /* "torchrun", "openmpi", "pmi", "slurm", "none" */
    int rendezvous;           /* RV_RDV_*; RV_RDV_NONE only for world 1 */
    char path[4096];          /* RV_RDV_FILE */
    char addr[256];           /* RV_RDV_TCP */
    int port;
} rv_launch_env;

/* Reads the variables through get(ctx, name) (NULL: unset); getenv when
 * get is NULL. 0, or -1 with an error naming the variable. */
int rv_launch_env_read(rv_launch_env *e, const char *(*get)(void *ctx, const char *name), void *ctx);

/* Rank 0's n bytes reach every rank's bytes (rank 0's are sent, the others'
 * overwritten), through e's rendezvous; world 1 returns at once. Gives up
 * after timeout_s seconds with an error saying what it was waiting for. */
int rv_rendezvous(const rv_launch_env *e, void *bytes, size_t n, double timeout_s);

/* The two mechanisms on their own (rv_rendezvous picks one). */
int rv_rendezvous_file(const char *path, int rank, void *bytes, size_t n, double timeout_s);
int rv_rendezvous_tcp(const char *addr, int port, int rank, int world, void *bytes, size_t n, double timeout_s);
/* Removes the rendezvous file (rank 0, after every rank has joined). */
int rv_rendezvous_file_remove(const char *path);

#ifdef __cplusplus
}
#endif

#endif
