/* eplb_plan.h — the expert-placement planner of the online load balancer
 * (rank 0). From per-(layer, expert) routed-token loads it computes which
 * logical expert each physical slot holds, DeepSeek's EPLB policy:
 *
 *  - hierarchical, when the expert groups divide evenly over the nodes:
 *    pack whole groups onto nodes balancing node load, replicate the hottest
 *    experts inside each node into its redundant slots, then pack the
 *    replicas onto the node's ranks balancing rank load;
 *  - global otherwise: the same with one group and one node.
 *
 * Replication gives the next redundant slot to the expert with the largest
 * load per replica; packing takes items heaviest first (ties: lower index)
 * into the lightest pack that still has room (ties: lower pack). Loads are
 * fp32 and summed in index order, so a plan is a pure function of its input.
 *
 * Slots are numbered globally: slot s lives on rank s / (n_slots / n_ranks)
 * (the same numbering as the placement tables of worker/). This module only
 * computes plans; it owns no weights and moves nothing. */
#ifndef MS_EPLB_PLAN_H
#define MS_EPLB_PLAN_H

#include <stdint.h>
#include "status.h"

typedef struct {
    int n_layers, n_experts, n_slots;
    int max_replicas;  /* largest replica count of any expert in any layer */
    int32_t *phy2log;  /* (n_layers, n_slots) logical expert held by each slot */
    int32_t *phy_rank; /* (n_layers, n_slots) which replica of its expert the slot is, 0.. */
    int32_t *logcnt;   /* (n_layers, n_experts) replicas per expert, >= 1 */
    int32_t *log2phy;  /* (n_layers, n_experts, max_replicas) slots of each expert, -1 padded */
} eplb_placement_t;

typedef struct {
    int n_slots;  /* physical slots per layer, a multiple of n_ranks, >= n_experts */
    int n_groups; /* expert groups (n_group of the router); 1 = no grouping */
    int n_nodes;  /* nodes; hierarchical when n_groups % n_nodes == 0 */
    int n_ranks;  /* EP ranks, a multiple of n_nodes */
} eplb_shape_t;

/* Plan a placement for n_layers × n_experts loads (row-major, >= 0). On
 * success *out owns its arrays (free with eplb_placement_free). Shapes that
 * cannot be planned are MS_ERR_INVALID saying why. */
ms_status_t eplb_plan(const float *load, int n_layers, int n_experts, const eplb_shape_t *shape,
                      eplb_placement_t *out);
void eplb_placement_free(eplb_placement_t *p);

/* Per-rank load of `layer` under placement p: each expert's load split evenly
 * over its replicas. rank_load has n_ranks entries. */
void eplb_rank_load(const float *load, const eplb_placement_t *p, int layer, int n_ranks, double *rank_load);

/* (max - mean) / mean of the per-rank loads of `layer`; 0 when nothing is routed. */
double eplb_imbalance(const float *load, const eplb_placement_t *p, int layer, int n_ranks);

/* Renumber the slots of `next` within each rank so that an expert `cur`
 * already holds on that rank keeps its slot: balance depends only on which
 * experts a rank holds, so this changes nothing but the copies needed.
 * Returns the number of slots (over all layers) whose expert differs from
 * cur after the renumbering — the moves the new plan costs. */
int eplb_keep_slots(const eplb_placement_t *cur, eplb_placement_t *next, int n_ranks);

#endif
