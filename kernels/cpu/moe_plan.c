/* moe_plan.c — the dispatch plan: order the (token, k) pairs by the global
 * expert slot that serves them (a stable counting sort), so rows for one rank
 * are contiguous and, inside a rank, grouped by expert. The engine reads
 * slot_counts to size the all-to-all; tok_of_sent drives the gather of the
 * rows to send; pos_of_pair lets the combine find each pair's returned row. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

ms_status_t kern_cpu_moe_plan(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K, const int32_t *e2slot,
                              int32_t E, int32_t n_slots, int32_t *tok_of_sent, int32_t *pos_of_pair,
                              int32_t *slot_of_sent, int32_t *slot_counts)
{
    const int32_t P = T * K;
    memset(slot_counts, 0, sizeof(int32_t) * (size_t)n_slots);
    for (int32_t p = 0; p < P; p++) {
        int32_t e = idx[p];
        if (e < 0 || e >= E || e2slot[e] < 0 || e2slot[e] >= n_slots)
            return MS_ERR(MS_ERR_INVALID, "moe_plan: pair %d has expert %d without a slot", p, e);
        slot_counts[e2slot[e]]++;
    }
    int32_t *start = malloc(sizeof(int32_t) * (size_t)(n_slots + 1));
    if (!start) return MS_ERR(MS_ERR_NOMEM, "moe_plan: out of memory");
    start[0] = 0;
    for (int32_t i = 0; i < n_slots; i++) start[i + 1] = start[i] + slot_counts[i];
    for (int32_t p = 0; p < P; p++) {
        int32_t sl = e2slot[idx[p]], j = start[sl]++;
        tok_of_sent[j] = p / K;
        pos_of_pair[p] = j;
        slot_of_sent[j] = sl;
    }
    free(start);
    return MS_OK;
}
