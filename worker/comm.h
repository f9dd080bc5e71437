/* comm.h — the data plane between ranks (DESIGN invariant 2): hidden-state
 * traffic of TP all-reduce, MoE dispatch/combine, and all-gathers. Buffers
 * are device pointers of the kernels backend; implementations: single process
 * (comm_local.c: copies through the ops table), MPI on CPU ranks and NCCL on
 * GPUs (later, same interface). Control messages (plans, results) never go
 * through here: they are proto/ over MPI.
 *
 * A comm_t is an ops table plus implementation state; the inline wrappers
 * below are what model code calls. Every call is collective over its group:
 * all ranks of the group call it in the same order, with zero rows where
 * they have nothing (a rank with no tokens still takes part in an MoE
 * all-to-all). */
#ifndef MS_COMM_H
#define MS_COMM_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"
#include "dtype.h"
#include "kernels/kernels.h"

typedef enum {
    COMM_TP = 0, /* attention tensor-parallel / data-parallel group */
    COMM_EP = 1, /* expert-parallel group */
    COMM_N_GROUPS
} comm_group_t;

typedef struct comm comm_t;

typedef struct {
    int (*rank)(const comm_t *c, comm_group_t g);
    int (*size)(const comm_t *c, comm_group_t g);
    /* in place: buf[0..n) = Σ over the group; dtype F32 (TP partial sums are fp32 so the result rounds once) */
    ms_status_t (*allreduce_sum)(comm_t *c, comm_group_t g, void *buf, int64_t n, ms_dtype_t dt, kern_ctx_t *cx);
    /* host ints: recv[r] = what rank r sends to me (send[r] = what I send to rank r) */
    ms_status_t (*alltoall_counts)(comm_t *c, comm_group_t g, const int64_t *send, int64_t *recv);
    /* rows of row_bytes: send holds send_rows[r] rows for rank r, concatenated in rank order;
     * recv gets recv_rows[r] rows from rank r, concatenated in rank order. send and recv must not overlap. */
    ms_status_t (*alltoallv)(comm_t *c, comm_group_t g, const void *send, const int64_t *send_rows, void *recv,
                             const int64_t *recv_rows, size_t row_bytes, kern_ctx_t *cx);
    /* recv = concatenation over ranks (in rank order) of each rank's send rows; recv_rows[r] rows from rank r
     * (every rank knows all counts). send may alias recv at this rank's offset. */
    ms_status_t (*allgatherv)(comm_t *c, comm_group_t g, const void *send, void *recv, const int64_t *recv_rows,
                              size_t row_bytes, kern_ctx_t *cx);
    void (*destroy)(comm_t *c);
} comm_ops_t;

struct comm {
    const comm_ops_t *ops;
    void *impl;
};

static inline int comm_rank(const comm_t *c, comm_group_t g) { return c->ops->rank(c, g); }
static inline int comm_size(const comm_t *c, comm_group_t g) { return c->ops->size(c, g); }
static inline ms_status_t comm_allreduce_sum(comm_t *c, comm_group_t g, void *buf, int64_t n, ms_dtype_t dt,
                                             kern_ctx_t *cx)
{
    return c->ops->allreduce_sum(c, g, buf, n, dt, cx);
}
static inline ms_status_t comm_alltoall_counts(comm_t *c, comm_group_t g, const int64_t *send, int64_t *recv)
{
    return c->ops->alltoall_counts(c, g, send, recv);
}
static inline ms_status_t comm_alltoallv(comm_t *c, comm_group_t g, const void *send, const int64_t *send_rows,
                                         void *recv, const int64_t *recv_rows, size_t row_bytes, kern_ctx_t *cx)
{
    return c->ops->alltoallv(c, g, send, send_rows, recv, recv_rows, row_bytes, cx);
}
static inline ms_status_t comm_allgatherv(comm_t *c, comm_group_t g, const void *send, void *recv,
                                          const int64_t *recv_rows, size_t row_bytes, kern_ctx_t *cx)
{
    return c->ops->allgatherv(c, g, send, recv, recv_rows, row_bytes, cx);
}
static inline void comm_destroy(comm_t *c)
{
    if (c) c->ops->destroy(c);
}

/* The single-process data plane: every group has one rank; all-to-all and
 * all-gather are device copies through `ops`, all-reduce is the identity.
 * Borrows ops (must outlive the comm). */
ms_status_t comm_local_create(const kern_ops_t *ops, comm_t **out);

#endif
