/* comm_moe_plan.c — see comm_moe_plan.h. */
#include "worker/comm_moe_plan.h"

#include <stdlib.h>
#include <string.h>

ms_status_t comm_moe_plan_reserve(comm_moe_plan_t *p, int size, int spr)
{
    const size_t n = (size_t)size * (size_t)spr;
    p->size = size, p->spr = spr;
    if (n <= p->cap && p->srows) return MS_OK;
    comm_moe_plan_free(p);
    p->out = malloc(sizeof(int32_t) * n), p->in = malloc(sizeof(int32_t) * n);
    p->pre = malloc(sizeof(int32_t) * n), p->start = malloc(sizeof(int32_t) * n);
    p->srows = malloc(sizeof(int64_t) * (size_t)size), p->rrows = malloc(sizeof(int64_t) * (size_t)size);
    if (!p->out || !p->in || !p->pre || !p->start || !p->srows || !p->rrows) {
        comm_moe_plan_free(p);
        return MS_ERR(MS_ERR_NOMEM, "comm: out of memory for the MoE exchange of %d ranks x %d slots", size, spr);
    }
    p->cap = n, p->size = size, p->spr = spr;
    return MS_OK;
}

void comm_moe_plan_layout(comm_moe_plan_t *p)
{
    const int size = p->size, spr = p->spr;
    for (int j = 0; j < spr; j++)
        for (int s = 0, pre = 0; s < size; s++) {
            p->pre[(size_t)s * spr + j] = pre;
            pre += p->in[(size_t)s * spr + j];
        }
    int64_t off = 0, in_total = 0;
    for (int r = 0; r < size; r++) {
        int64_t n = 0, in = 0;
        for (int j = 0; j < spr; j++) {
            p->start[r * spr + j] = (int32_t)(off + n);
            n += p->out[r * spr + j];
            in += p->in[r * spr + j];
        }
        p->srows[r] = n, p->rrows[r] = in;
        off += n, in_total += in;
    }
    p->send_total = off, p->recv_total = in_total;
}

int64_t comm_moe_plan_run(const comm_moe_plan_t *p, int32_t cap, int s, int j, int32_t *keep)
{
    const int64_t pre = p->pre[(size_t)s * p->spr + j], n = p->in[(size_t)s * p->spr + j];
    int64_t k = cap - pre;
    k = k < 0 ? 0 : (k > n ? n : k);
    *keep = (int32_t)k;
    return (int64_t)j * cap + pre;
}

int64_t comm_moe_plan_slot_rows(const comm_moe_plan_t *p, int j)
{
    int64_t n = 0;
    for (int s = 0; s < p->size; s++) n += p->in[(size_t)s * p->spr + j];
    return n;
}

void comm_moe_plan_free(comm_moe_plan_t *p)
{
    free(p->out), free(p->in), free(p->pre), free(p->start), free(p->srows), free(p->rrows);
    p->out = p->in = p->pre = p->start = NULL, p->srows = p->rrows = NULL, p->cap = 0;
}

ms_status_t comm_moe_plan_exchange(comm_moe_plan_t *p, const comm_moe_t *mo, int size, MPI_Comm comm, kern_ctx_t *cx,
                                   int32_t *h)
{
    const int spr = mo->place.slots_per_rank, S = mo->place.n_slots;
    if (S != size * spr || mo->n_local != spr)
        return MS_ERR(MS_ERR_INTERNAL, "comm moe_dispatch: %d slots, %d per rank, %d local, %d ranks", S, spr,
                      mo->n_local, size);
    const int64_t P = (int64_t)mo->T * mo->K;
    const kern_ops_t *k = cx->ops;
    MS_TRY(comm_moe_plan_reserve(p, size, spr));
    MS_TRY(k->download(cx, h, mo->slot_counts, sizeof(int32_t) * (size_t)S));
    MS_TRY(k->download(cx, h + S, mo->slot_of_pair, sizeof(int32_t) * (size_t)P));
    MS_TRY(k->download(cx, h + S + P, mo->rank_in_slot, sizeof(int32_t) * (size_t)P));
    MS_TRY(k->synchronize(cx));
    memcpy(p->out, h, sizeof(int32_t) * (size_t)S);
    MPI_CHECK(MPI_Alltoall(p->out, spr, MPI_INT32_T, p->in, spr, MPI_INT32_T, comm));
    comm_moe_plan_layout(p);
    return MS_OK;
}
