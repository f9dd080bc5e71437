/* comm_nccl.h — the NCCL data plane for CUDA ranks, one GPU each
 * (worker/comm.h's interface; chosen by moeserve.data_plane: nccl).
 *
 * Groups as comm_mpi.h: COMM_TP is the world, COMM_EP splits it into
 * world/ep_size groups of consecutive ranks. Each group's NCCL communicator is
 * made at its first collective (so the rank's device is current: the engine
 * sets it when it creates its context), from an id its rank 0 draws and
 * broadcasts over MPI. Row traffic (all-reduce, all-to-all, all-gather, MoE
 * dispatch/combine) runs on the step's stream and never leaves the device;
 * host-side collectives (counts, EPLB record moves, setup gathers) go through
 * an inner comm_mpi.
 *
 * MoE: the counts of a dispatch cross MPI (one small host round trip a
 * layer: download of the plan's counts, all-to-all of them), the rows move
 * device to device by grouped ncclSend/ncclRecv, and moe_scatter places them
 * by local slot, raising the capacity fault on the device. A DeepEP-style
 * kernel without the host round trip is the next step (issue 15 item 2).
 *
 * Numerics: all-reduce is NCCL's (every rank gets the same sums; their order
 * is NCCL's, not comm_mpi's rank order).
 *
 * Not yet run on GPUs (no several-GPU machine was lent; issue 15), so
 * moeserve.data_plane auto stays mpi. Its logic (group setup, exchanges, MoE
 * placement and combine, capacity faults) is tested on CPU ranks over an MPI
 * stand-in for NCCL's entry points: tests/unit/test_comm_mpi.c, CUDA builds. */
#ifndef MS_COMM_NCCL_H
#define MS_COMM_NCCL_H

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include "worker/comm.h"

/* The NCCL entry points the data plane calls (comm_nccl_create loads them from libnccl.so.2). */
typedef struct {
    ncclResult_t (*get_unique_id)(ncclUniqueId *);
    ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*comm_destroy)(ncclComm_t);
    ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*send)(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*recv)(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*group_start)(void);
    ncclResult_t (*group_end)(void);
    const char *(*error_string)(ncclResult_t);
    ncclResult_t (*get_version)(int *);
} comm_nccl_api_t;

/* Duplicates `world` (the caller keeps it). Borrows ops (the CUDA backend's). Sets NCCL_NVLS_ENABLE=0 unless
 * the environment sets it (NVLink multicast stays off on these machines). */
ms_status_t comm_nccl_create(MPI_Comm world, int ep_size, const kern_ops_t *ops, comm_t **out);

/* The same over the given entry points and any backend: tests run the data plane's logic on CPU ranks with
 * an MPI stand-in for NCCL (tests/unit/test_comm_mpi.c). */
ms_status_t comm_nccl_create_with(MPI_Comm world, int ep_size, const kern_ops_t *ops, const comm_nccl_api_t *api,
                                  comm_t **out);

#endif
