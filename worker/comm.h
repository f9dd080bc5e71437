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

/* One MoE layer's dispatch/combine (DeepEP's shape and "handle"): the caller
 * fills the routing inputs per layer and carves the device buffers once;
 * comm_moe_dispatch leaves the rows grouped by local slot in recv
 * [n_local, cap, D] with a device count per slot, comm_moe_combine brings the
 * expert outputs (same shape) home and sums them per token. Counts stay on
 * the device as far as model code is concerned: a transport may move them
 * internally (the MPI one does, it is a CPU transport), the caller never
 * reads one. What combine needs from dispatch stays in the struct. */
typedef struct {
    /* routing inputs, per layer */
    const int32_t *idx;     /* device [T, K] expert ids (-1 = padding) */
    const float *w;         /* device [T, K] routing weights */
    int32_t T, K, D;
    kern_moe_place_t place; /* the layer's placement (device tables) */
    int64_t *load;          /* device [E] the layer's routed-pair counter (accumulated), or NULL */
    const bf16_t *add;      /* device [T, D] added to each token's rounded sum (the shared expert's output: the
                             * moe_combine_add op, one pass instead of combine then add), or NULL */
    /* device buffers, carved once for T_max tokens */
    int32_t cap, n_local;   /* rows per slot; local slots = place.slots_per_rank */
    int32_t *slot_of_pair, *rank_in_slot, *row_of_pair; /* [T_max*K] */
    int32_t *slot_counts;   /* [n_slots] this rank's pairs per global slot */
    bf16_t *recv;           /* [n_local, cap, D] rows grouped by local slot */
    int32_t *recv_count;    /* [n_local] rows of each local slot (<= cap) */
    bf16_t *send, *back;    /* [T_max*K, D] staging in send order (transports that move rows, e.g. MPI) */
} comm_moe_t;

/* EPLB record moves (worker/eplb_move.c): one transfer of a contiguous
 * expert record to or from a peer of group g. Non-blocking: move_start posts
 * them all and returns; move_test reports 1 when all completed, 0 while any
 * is in flight, -1 when one failed (the caller keeps the old placement);
 * move_free cancels what is left. Peers pair their transfers by tag. */
typedef struct {
    int peer;      /* rank in the group */
    int send;      /* 1: buf -> peer; 0: peer -> buf */
    int tag;       /* the same on both sides */
    void *buf;     /* device memory, bytes long */
    size_t bytes;
} comm_xfer_t;
typedef struct comm_move comm_move_t;

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
    /* MoE dispatch over group g: m->idx/w/place/x → m->recv, m->recv_count (and what combine needs), after the
     * caller's moe_plan filled slot_of_pair / rank_in_slot / slot_counts (comm_moe_dispatch does both). A slot
     * receiving more than cap rows raises KERN_FAULT_CAPACITY and the excess is dropped. */
    ms_status_t (*moe_dispatch)(comm_t *c, comm_group_t g, comm_moe_t *m, const bf16_t *x, kern_ctx_t *cx);
    /* expert_out [n_local, cap, D] → out [T, D]: each token's K outputs summed on its home rank (comm_moe_sum:
     * moe_combine, plus m->add when set) */
    ms_status_t (*moe_combine)(comm_t *c, comm_group_t g, comm_moe_t *m, const bf16_t *expert_out, bf16_t *out,
                               kern_ctx_t *cx);
    /* EPLB record moves (comm_xfer_t above); NULL: the data plane has none (a one-rank job never
     * needs one: every record is local) */
    ms_status_t (*move_start)(comm_t *c, comm_group_t g, const comm_xfer_t *x, int n, comm_move_t **out);
    int (*move_test)(comm_t *c, comm_move_t *mv);
    void (*move_free)(comm_t *c, comm_move_t *mv);
    /* host bytes: all[r * bytes ..] = what rank r of group g passed as mine (a blocking collective; for
     * setup only, e.g. the load balancer's CUDA IPC handles) */
    ms_status_t (*allgather_host)(comm_t *c, comm_group_t g, const void *mine, size_t bytes, void *all);
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
/* Collective over g even for a rank with T = 0. */
static inline ms_status_t comm_moe_dispatch(comm_t *c, comm_group_t g, comm_moe_t *m, const bf16_t *x, kern_ctx_t *cx)
{
    MS_TRY(cx->ops->moe_plan(cx, m->idx, m->T, m->K, &m->place, m->slot_of_pair, m->rank_in_slot, m->slot_counts,
                             m->load));
    return c->ops->moe_dispatch(c, g, m, x, cx);
}
static inline ms_status_t comm_moe_combine(comm_t *c, comm_group_t g, comm_moe_t *m, const bf16_t *expert_out,
                                           bf16_t *out, kern_ctx_t *cx)
{
    return c->ops->moe_combine(c, g, m, expert_out, out, cx);
}
/* Both halves when the whole placement is on this rank (a group of one): device ops only. */
ms_status_t comm_moe_dispatch_self(comm_moe_t *m, const bf16_t *x, kern_ctx_t *cx);
ms_status_t comm_moe_combine_self(comm_moe_t *m, const bf16_t *expert_out, bf16_t *out, kern_ctx_t *cx);
/* The per-token sum once a combine's rows are home (rows as moe_combine reads them): moe_combine, or
 * moe_combine_add with m->add when it is set. Every transport ends its combine with it. */
ms_status_t comm_moe_sum(const comm_moe_t *m, const bf16_t *rows, bf16_t *out, kern_ctx_t *cx);

static inline void comm_destroy(comm_t *c)
{
    if (c) c->ops->destroy(c);
}

/* The single-process data plane: every group has one rank; all-to-all and
 * all-gather are device copies through `ops`, all-reduce is the identity.
 * Borrows ops (must outlive the comm). */
ms_status_t comm_local_create(const kern_ops_t *ops, comm_t **out);

#endif
