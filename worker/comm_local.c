/* comm_local.c — the data plane of a single process: one rank per group, so
 * an all-to-all or all-gather moves this rank's rows to itself (a device
 * copy through the kernels backend) and an all-reduce leaves the buffer as
 * it is; an MoE dispatch/combine is the moe_scatter / moe_combine ops (no host
 * step). Model code calls it exactly as it will call the MPI/NCCL versions. */
#include "worker/comm.h"

#include <stdlib.h>

typedef struct {
    const kern_ops_t *k;
} local_t;

static int local_rank(const comm_t *c, comm_group_t g) { return 0; }
static int local_size(const comm_t *c, comm_group_t g) { return 1; }

static ms_status_t local_allreduce(comm_t *c, comm_group_t g, void *buf, int64_t n, ms_dtype_t dt, kern_ctx_t *cx)
{
    return MS_OK;
}

static ms_status_t local_counts(comm_t *c, comm_group_t g, const int64_t *send, int64_t *recv)
{
    recv[0] = send[0];
    return MS_OK;
}

static ms_status_t local_alltoallv(comm_t *c, comm_group_t g, const void *send, const int64_t *send_rows, void *recv,
                                   const int64_t *recv_rows, size_t row_bytes, kern_ctx_t *cx)
{
    if (send_rows[0] != recv_rows[0])
        return MS_ERR(MS_ERR_INTERNAL, "comm_local alltoallv: sending %lld rows to self but expecting %lld",
                      (long long)send_rows[0], (long long)recv_rows[0]);
    const local_t *l = c->impl;
    return l->k->copy(cx, recv, send, (size_t)send_rows[0] * row_bytes);
}

static ms_status_t local_allgatherv(comm_t *c, comm_group_t g, const void *send, void *recv, const int64_t *recv_rows,
                                    size_t row_bytes, kern_ctx_t *cx)
{
    const local_t *l = c->impl;
    return l->k->copy(cx, recv, send, (size_t)recv_rows[0] * row_bytes);
}

ms_status_t comm_moe_dispatch_self(comm_moe_t *m, const bf16_t *x, kern_ctx_t *cx)
{
    return cx->ops->moe_scatter(cx, x, m->T, m->K, m->D, m->slot_of_pair, m->rank_in_slot, m->slot_counts, 0,
                                m->n_local, m->cap, m->recv, m->recv_count, m->row_of_pair);
}

ms_status_t comm_moe_sum(const comm_moe_t *m, const bf16_t *rows, bf16_t *out, kern_ctx_t *cx)
{
    if (m->add) return cx->ops->moe_combine_add(cx, rows, m->row_of_pair, m->idx, m->w, m->T, m->K, m->D, m->add, out);
    return cx->ops->moe_combine(cx, rows, m->row_of_pair, m->idx, m->w, m->T, m->K, m->D, out);
}

ms_status_t comm_moe_combine_self(comm_moe_t *m, const bf16_t *expert_out, bf16_t *out, kern_ctx_t *cx)
{
    return comm_moe_sum(m, expert_out, out, cx);
}

static ms_status_t local_moe_dispatch(comm_t *c, comm_group_t g, comm_moe_t *m, const bf16_t *x, kern_ctx_t *cx)
{
    if (m->n_local != m->place.n_slots)
        return MS_ERR(MS_ERR_INTERNAL, "comm_local moe_dispatch: %d local slots of %d", m->n_local, m->place.n_slots);
    return comm_moe_dispatch_self(m, x, cx);
}

static ms_status_t local_moe_combine(comm_t *c, comm_group_t g, comm_moe_t *m, const bf16_t *expert_out, bf16_t *out,
                                     kern_ctx_t *cx)
{
    return comm_moe_combine_self(m, expert_out, out, cx);
}

static void local_destroy(comm_t *c)
{
    free(c->impl);
    free(c);
}

static const comm_ops_t g_local_ops = {
    .rank = local_rank,
    .size = local_size,
    .allreduce_sum = local_allreduce,
    .alltoall_counts = local_counts,
    .alltoallv = local_alltoallv,
    .allgatherv = local_allgatherv,
    .moe_dispatch = local_moe_dispatch,
    .moe_combine = local_moe_combine,
    .destroy = local_destroy,
};

ms_status_t comm_local_create(const kern_ops_t *ops, comm_t **out)
{
    comm_t *c = calloc(1, sizeof *c);
    local_t *l = calloc(1, sizeof *l);
    if (!c || !l) {
        free(c), free(l);
        return MS_ERR(MS_ERR_NOMEM, "comm_local: out of memory");
    }
    l->k = ops;
    c->ops = &g_local_ops;
    c->impl = l;
    *out = c;
    return MS_OK;
}
