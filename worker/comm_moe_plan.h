/* comm_moe_plan.h — the host arithmetic of an MoE exchange between ranks,
 * shared by the transports that move rows (comm_mpi.c through pinned host
 * mirrors, comm_nccl.c on the device): from each rank's rows per global slot
 * (moe_plan's slot_counts) and their all-to-all, where each row goes.
 *
 * Layout: a rank sends its rows in global-slot order (slot s = dest rank *
 * spr + local slot), so the rows for rank r are contiguous; a rank receives
 * them in source order, and within a source in local-slot order. In local
 * slot j, source s's rows follow those of the lower sources: row (j,
 * pre[s][j] + i) for source s's i-th, kept while under the slot's capacity
 * (a dropped row is a capacity fault: the step fails, never silently). */
#ifndef MS_COMM_MOE_PLAN_H
#define MS_COMM_MOE_PLAN_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include "status.h"
#include "worker/comm.h"

typedef struct {
    int size, spr;           /* ranks of the group, slots per rank */
    int32_t *out;            /* [size*spr] my rows per global slot (filled by the caller) */
    int32_t *in;             /* [size][spr] rows source s sends to my local slot j (filled by the caller) */
    int32_t *pre;            /* [size][spr] rows of lower sources before source s's in local slot j */
    int32_t *start;          /* [size*spr] first send row of each global slot */
    int64_t *srows, *rrows;  /* [size] rows to / from each rank */
    int64_t send_total, recv_total;
    size_t cap;              /* entries the arrays hold */
} comm_moe_plan_t;

/* Arrays for a group of `size` ranks with spr slots each (grow only; contents are not kept). */
ms_status_t comm_moe_plan_reserve(comm_moe_plan_t *p, int size, int spr);
/* A dispatch's host half, for a group of size ranks over `comm` (comm_moe_t's plan already made on the device
 * by moe_plan): checks the layout, downloads slot_counts [S], slot_of_pair [P] and rank_in_slot [P] into h
 * (S + 2P ints, pinned: h, h + S, h + S + P), synchronizes cx (so downloads the caller queued before have
 * landed too), exchanges the counts (MPI_Alltoall, spr a rank) and lays the plan out. */
ms_status_t comm_moe_plan_exchange(comm_moe_plan_t *p, const comm_moe_t *mo, int size, MPI_Comm comm, kern_ctx_t *cx,
                                   int32_t *h);
/* pre, start, srows, rrows and the totals from out and in. */
void comm_moe_plan_layout(comm_moe_plan_t *p);
/* Source s's rows for local slot j: the first one's row in [spr, cap] (j*cap + pre), and in *keep how many
 * fit under cap. */
int64_t comm_moe_plan_run(const comm_moe_plan_t *p, int32_t cap, int s, int j, int32_t *keep);
/* All rows local slot j receives (may exceed cap: then the step faults). */
int64_t comm_moe_plan_slot_rows(const comm_moe_plan_t *p, int j);
void comm_moe_plan_free(comm_moe_plan_t *p);

#endif
