/* eplb_move.h — one rank's part of an online expert move (the load
 * balancer's data path; the protocol around it is runtime/serve_eplb.c).
 *
 * A batch moves up to max_layers MoE layers to a target placement. For each
 * global slot whose expert changes, its rank receives the new expert's
 * record (one contiguous copy) into a staging record: a local device copy
 * when the rank already holds that expert in another slot, else from the
 * lowest EP rank of its group that holds it, over the data plane
 * (comm move_start: non-blocking; nothing waits). The live slots are not
 * touched until eplb_move_flip, which the protocol calls at a step boundary
 * once every rank reported its batch complete; an abort (a failed transfer
 * anywhere) leaves the old placement in force.
 *
 * Staging memory: max_layers * slots_per_rank records, allocated once (R1 in
 * FP8 at one layer per batch and 288 slots over 8 ranks: 36 x 44 MB). On a
 * device backend also pinned host buffers for the records a batch sends and
 * receives (grown to the largest batch and kept), since the data plane's
 * moves go through host memory (eplb_move.c). */
#ifndef MS_EPLB_MOVE_H
#define MS_EPLB_MOVE_H

#include <stdint.h>
#include "status.h"
#include "worker/engine.h"

typedef struct eplb_move eplb_move_t;

ms_status_t eplb_move_create(engine_t *e, int max_layers, eplb_move_t **out);
void eplb_move_destroy(eplb_move_t *m);

/* Post the batch: layers[0..n) (n <= max_layers) to their rows of target
 * [n_layers][n_slots]. Returns at once. */
ms_status_t eplb_move_start(eplb_move_t *m, const int *layers, int n, const int32_t *target);
/* 1 every transfer of the batch completed here, 0 some in flight, -1 one
 * failed (or no batch). */
int eplb_move_ready(eplb_move_t *m);
/* Apply the batch (every rank ready). slots/bytes: the whole job's slots
 * whose expert changed and record bytes sent between ranks. */
ms_status_t eplb_move_flip(eplb_move_t *m, int *slots, int64_t *bytes);
/* Drop the batch: the old placement stays. */
void eplb_move_abort(eplb_move_t *m);
bool eplb_move_busy(const eplb_move_t *m);
/* true when records cross through pinned host buffers (device backends, or MOESERVE_EPLB_HOST_STAGING=1) */
bool eplb_move_host_staged(const eplb_move_t *m);
/* true when receivers pull records from their peers' mapped weights (CUDA IPC, every EP peer on this host) */
bool eplb_move_ipc(const eplb_move_t *m);
engine_t *eplb_move_engine(eplb_move_t *m);

#endif
