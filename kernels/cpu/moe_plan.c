/* moe_plan.c — the dispatch layout of one MoE layer: each (token, k) pair
 * picks a replica of its expert by the fixed rule of kernels.h ((t + k) %
 * n_rep), which gives its global slot; pairs are numbered inside their slot in
 * pair order (rank_in_slot, a stable counting sort without the sort), so the
 * receiver can place them in [slot, cap] rows without another exchange. The
 * per-expert load counter is bumped here, on the token's home rank, from the
 * router's output itself. */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_moe_plan(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K, const kern_moe_place_t *pl,
                              int32_t *slot_of_pair, int32_t *rank_in_slot, int32_t *slot_counts, int64_t *load)
{
    if (T < 0 || K < 1 || pl->E < 1 || pl->max_rep < 1 || pl->n_slots < 1)
        return MS_ERR(MS_ERR_INVALID, "moe_plan: T %d, K %d, E %d, max_rep %d, n_slots %d", T, K, pl->E, pl->max_rep,
                      pl->n_slots);
    memset(slot_counts, 0, sizeof(int32_t) * (size_t)pl->n_slots);
    const int64_t P = (int64_t)T * K;
    for (int64_t p = 0; p < P; p++) {
        const int32_t e = idx[p], t = (int32_t)(p / K), k = (int32_t)(p % K);
        slot_of_pair[p] = -1;
        rank_in_slot[p] = -1;
        if (e == -1) continue;
        if (e < 0 || e >= pl->E) {
            kern_cpu_fault(cx, KERN_FAULT_SLOT);
            continue;
        }
        const int32_t nr = pl->n_rep[e];
        const int32_t s = nr >= 1 && nr <= pl->max_rep ? pl->log2phy[(int64_t)e * pl->max_rep + (t + k) % nr] : -1;
        if (s < 0 || s >= pl->n_slots) {
            kern_cpu_fault(cx, KERN_FAULT_SLOT);
            continue;
        }
        slot_of_pair[p] = s;
        rank_in_slot[p] = slot_counts[s]++;
        if (load) load[e]++;
    }
    return MS_OK;
}
