/* transport.h — the control plane over MPI: rank 0 broadcasts each step's
 * plan (or SHUTDOWN) to every rank and gathers the sampled tokens back.
 *
 * Wire: a message is its 16-byte proto_hdr_t, scattered with MPI_Iscatter
 * (each rank its own: the length of its part) that workers complete with
 * MPI_Test and a sleeping backoff (an idle server does not burn a core per
 * rank: CPU tests oversubscribe 4 ranks on 2 cores; a busy one never
 * oversleeps a plan by more than ~50 us), then the rest of each rank's part
 * of the plan (proto_plan_part: attention DP sends a rank only its own
 * sequences) with MPI_Scatterv. Results: every
 * rank sends one status record, a fault word per sequence it runs, and the
 * results of the sequences it owns (attention DP: dp_rank == rank; TP:
 * rank 0) with MPI_Gatherv.
 *
 * The link uses its own duplicate of the communicator, so control messages
 * never match the data plane's collectives (worker/comm). MPI errors are
 * fatal (MPI_ERRORS_ARE_FATAL): a dead rank brings the job down through
 * mpirun instead of leaving the others waiting. */
#ifndef MS_PROTO_TRANSPORT_H
#define MS_PROTO_TRANSPORT_H

#include <mpi.h>
#include "plan.h"
#include "status.h"

#define PROTO_MAX_MSG (256u << 20) /* a plan larger than this is a bug */

typedef struct proto_link proto_link_t;

ms_status_t proto_link_create(MPI_Comm comm, proto_link_t **out);
void proto_link_destroy(proto_link_t *l);
int proto_link_rank(const proto_link_t *l);
int proto_link_size(const proto_link_t *l);

/* Control-plane traffic rank 0 took part in so far (for BENCHMARKS.md):
 * collective calls on the link, and bytes that crossed it (headers, plan
 * parts sent to other ranks, results received from them). */
typedef struct {
    uint64_t calls;
    uint64_t bytes;
} proto_link_stats_t;
const proto_link_stats_t *proto_link_stats(const proto_link_t *l);

/* Rank 0: send every other rank its part of `plan` (proto_plan_part); rank 0
 * runs its own part, which it makes with proto_plan_part too. */
ms_status_t proto_send_plan(proto_link_t *l, const proto_plan_t *plan);
ms_status_t proto_send_shutdown(proto_link_t *l, uint32_t step);

/* Workers: wait for the next message. *plan is this rank's part of the plan (valid
 * until the next call), or NULL for SHUTDOWN. A malformed plan is
 * MS_ERR_FORMAT (logged); the caller must still take part in the gather. */
ms_status_t proto_recv(proto_link_t *l, const proto_plan_t **plan);

/* Owner of plan sequence i: the rank that returns its result. */
static inline int proto_seq_owner(const proto_seq_t *s) { return s->dp_rank >= 0 ? s->dp_rank : 0; }

typedef struct {
    int failed_rank;          /* lowest rank whose step failed, -1 when none */
    ms_status_t failed_status;
} proto_step_status_t;

/* Every rank, after every plan: `mine` is indexed like the plan's sequences
 * (only the owned entries are read; may be NULL when my_status != MS_OK).
 * Rank 0 gets every owned result in plan order in `merged` (n_seqs entries)
 * and the step status; other ranks may pass NULL for both. A merged entry's
 * fault is the OR of mine[i].fault over every rank that ran it (a rank
 * whose step failed, my_status != MS_OK, sends 0: its failure is the step's).
 * Prompt logprobs (PROTO_SEQ_PROMPT_LP entries): mine_plp holds this rank's
 * owned entries' proto_seq_plp_rows each (a failed entry's are placeholders
 * with token -1), in plan order (NULL: none were
 * computed, the entries go out with token -1); merged_plp (rank 0; NULL to
 * drop them) gets every entry's, in plan order (at most plan->n_tokens). */
ms_status_t proto_gather_results(proto_link_t *l, const proto_plan_t *plan, const proto_result_t *mine,
                                 const proto_plp_t *mine_plp, ms_status_t my_status, proto_result_t *merged,
                                 proto_plp_t *merged_plp, proto_step_status_t *st);

#endif
