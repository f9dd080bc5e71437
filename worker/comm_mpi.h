/* comm_mpi.h — the MPI data plane for CPU ranks (worker/comm.h's interface).
 *
 * Groups: COMM_TP is the whole communicator (world size = tp_size: the
 * attention TP shards or the attention-DP ranks); COMM_EP splits it into
 * world/ep_size groups of ep_size consecutive ranks, so ep_rank =
 * rank % ep_size (serve.c fills par_t the same way).
 *
 * Numerics: allreduce_sum gathers every rank's partials and adds them in rank
 * order on every rank, so all ranks hold bitwise the same sums and a run is
 * reproducible whatever MPI's reduction algorithm would do. */
#ifndef MS_COMM_MPI_H
#define MS_COMM_MPI_H

#include <mpi.h>
#include "worker/comm.h"

/* Duplicates `world` (the caller keeps it). Borrows ops. */
ms_status_t comm_mpi_create(MPI_Comm world, int ep_size, const kern_ops_t *ops, comm_t **out);

/* The groups above as new communicators (errors fatal), with this rank's rank and size in each: for every data
 * plane built on MPI. comm_mpi_groups_free frees them (MPI_COMM_NULL entries and a finalized MPI are fine). */
ms_status_t comm_mpi_groups(MPI_Comm world, int ep_size, MPI_Comm comm[COMM_N_GROUPS], int rank[COMM_N_GROUPS],
                            int size[COMM_N_GROUPS]);
void comm_mpi_groups_free(MPI_Comm comm[COMM_N_GROUPS]);

#endif
