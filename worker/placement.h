/* placement.h — where each routed expert lives, per MoE layer, as data
 * (DESIGN "The GPU step" 4; what the EPLB planner writes later).
 *
 * num_slots physical slots per layer (moe_config.load_balancer.num_slots, =
 * n_routed_experts when unset), num_slots / ep_size on each EP rank: rank r
 * holds global slots [r*spr, (r+1)*spr) (spr = slots_per_rank). A slot holds
 * one expert (phy2log); an expert has one or more replicas (log2phy, n_rep).
 * Replicas are identical copies, so which one serves a token never changes a
 * result (kernels.h moe_plan gives the rule).
 *
 * Default assignment (no explicit one): logical slot i in [0, num_slots) holds
 * expert i % E and sits on rank i % ep_size as its local slot i / ep_size.
 * With num_slots = E this is the round-robin of the CPU slice (expert e on
 * rank e % ep_size), so neighbouring (often co-hot) experts spread out; extra
 * slots replicate experts 0, 1, ... in order.
 *
 * Host tables here; the forward pass uploads a device copy once at load. */
#ifndef MS_PLACEMENT_H
#define MS_PLACEMENT_H

#include <stdint.h>
#include "status.h"

typedef struct {
    int n_layers, n_experts, n_slots, ep_size, slots_per_rank;
    int max_rep;        /* most replicas of any expert in any layer */
    int32_t *phy2log;   /* [n_layers][n_slots] expert held by each global slot */
    int32_t *log2phy;   /* [n_layers][n_experts][max_rep] global slots of each replica, ascending; -1 past n_rep */
    int32_t *n_rep;     /* [n_layers][n_experts] replicas (>= 1) */
} placement_t;

/* Build the tables. assign: NULL for the default, else [n_layers][n_slots]
 * expert ids per global slot (borrowed; every expert at least once per
 * layer). n_slots 0 means n_experts. Errors name the offending value:
 * n_slots < n_experts, not a multiple of ep_size, an expert id out of range
 * or an expert without a slot. */
ms_status_t placement_create(int n_layers, int n_experts, int n_slots, int ep_size, const int32_t *assign,
                             placement_t *out);
void placement_free(placement_t *p);

/* The default assignment of one layer (the rule above), as expert per
 * global slot: row has n_slots entries. */
void placement_default_row(int n_experts, int n_slots, int ep_size, int32_t *row);

static inline int32_t placement_expert(const placement_t *p, int layer, int slot)
{
    return p->phy2log[(int64_t)layer * p->n_slots + slot];
}

#endif
