/* eplb_rebalance.h — rank 0's decision whether to re-place experts: plan
 * from the window's load (eplb_plan), renumber to keep the slots that can
 * stay (eplb_keep_slots), and propose it only when the step imbalance
 * (eplb_window.h eplb_imbalance_of) drops by at least min_gain
 * (moeserve.eplb_min_gain, default 0.05, as SGLang's utilization threshold
 * and vLLM's balancedness check). */
#ifndef MS_EPLB_REBALANCE_H
#define MS_EPLB_REBALANCE_H

#include <stdint.h>
#include "status.h"

typedef struct {
    int n_layers, n_experts, n_group, n_slots, ep_size;
    const int *moe;        /* [n_layers] 1 = MoE layer */
    double min_gain;
} eplb_rebalance_opts_t;

/* load: [n_layers][n_experts] window counts; cur: [n_layers][n_slots] the
 * placement in force. On a proposal *n_changed > 0, target [n_layers][n_slots]
 * is the new placement, changed[] the MoE layers whose row differs, and
 * before/after the step imbalance under each. *n_changed = 0: keep. */
ms_status_t eplb_rebalance_propose(const eplb_rebalance_opts_t *o, const int64_t *load, const int32_t *cur,
                                   int32_t *target, int *changed, int *n_changed, int *slots, double *before,
                                   double *after);

#endif
