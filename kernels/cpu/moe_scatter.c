/* moe_scatter.c — the same-rank half of an MoE dispatch: copy each pair's
 * token row into its slot's fixed-capacity block, at the row moe_plan gave it.
 * Rows past a slot's count are left as they were (the experts op never reads
 * them). */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_moe_scatter(kern_ctx_t *cx, const bf16_t *x, int32_t T, int32_t K, int32_t D,
                                 const int32_t *slot_of_pair, const int32_t *rank_in_slot, const int32_t *slot_counts,
                                 int32_t slot0, int32_t n_local, int32_t cap, bf16_t *recv, int32_t *recv_count,
                                 int32_t *row_of_pair)
{
    if (T < 0 || K < 1 || D < 1 || n_local < 0 || cap < 0)
        return MS_ERR(MS_ERR_INVALID, "moe_scatter: T %d, K %d, D %d, n_local %d, cap %d", T, K, D, n_local, cap);
    const int64_t P = (int64_t)T * K;
    for (int64_t p = 0; p < P; p++) {
        const int32_t j = slot_of_pair[p] - slot0, r = rank_in_slot[p];
        row_of_pair[p] = -1;
        if (slot_of_pair[p] < 0 || j < 0 || j >= n_local) continue;
        if (r < 0 || r >= cap) {
            kern_cpu_fault(cx, KERN_FAULT_CAPACITY);
            continue;
        }
        const int64_t row = (int64_t)j * cap + r;
        memcpy(recv + row * D, x + (p / K) * D, sizeof(bf16_t) * (size_t)D);
        row_of_pair[p] = (int32_t)row;
    }
    for (int32_t j = 0; j < n_local; j++) {
        const int32_t n = slot_counts[slot0 + j];
        recv_count[j] = n < cap ? n : cap;
    }
    return MS_OK;
}
