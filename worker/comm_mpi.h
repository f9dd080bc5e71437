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

#endif
