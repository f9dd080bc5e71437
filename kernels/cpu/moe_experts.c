/* moe_experts.c — routed experts in the masked grouped-GEMM shape: rows
 * arrive grouped by local slot in fixed-capacity blocks [n_local, cap, H]
 * with a count per slot, so each slot is one contiguous GEMM over its first
 * count rows (no gather, no re-sort); rows past the count are never read or
 * written. Output rows are the unweighted expert outputs (bf16, as
 * transformers' expert Linear stores them); weighting happens in moe_combine
 * where transformers does it. The loop over slots lives here, inside the op. */
#include "cpu.h"

ms_status_t kern_cpu_moe_experts(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int32_t n_local, int32_t cap,
                                 const kern_moe_slots_t *w, bf16_t *out, void *ws, size_t ws_bytes)
{
    const int32_t H = w->hidden, I = w->inter;
    if (H < 1 || I < 1 || n_local < 0 || cap < 0 || (w->dtype != MS_DT_BF16 && w->dtype != MS_DT_F8E4M3))
        return MS_ERR(MS_ERR_INVALID, "moe_experts: hidden %d, inter %d, n_local %d, cap %d, dtype %s", H, I, n_local,
                      cap, ms_dtype_name(w->dtype));
    if (ws_bytes < kern_moe_ws_bytes(cap, I))
        return MS_ERR(MS_ERR_INVALID, "moe_experts: workspace %zu < %zu bytes", ws_bytes, kern_moe_ws_bytes(cap, I));
    bf16_t *g = ws, *u = g + (size_t)cap * I; /* [cap, I] each; silu(g)*u goes back into g */
    for (int32_t j = 0; j < n_local; j++) {
        int32_t n = counts[j];
        if (n < 0 || n > cap) {
            kern_cpu_fault(cx, KERN_FAULT_CAPACITY);
            n = n < 0 ? 0 : cap;
        }
        if (!n) continue;
        const bf16_t *xj = x + (size_t)j * cap * H;
        bf16_t *yj = out + (size_t)j * cap * H;
        kern_mat_t ge = kern_moe_slot_mat(w, j, 0), ue = kern_moe_slot_mat(w, j, 1), de = kern_moe_slot_mat(w, j, 2);
        MS_TRY(kern_cpu_gemm(cx, xj, MS_DT_BF16, H, &ge, g, MS_DT_BF16, I, n));
        MS_TRY(kern_cpu_gemm(cx, xj, MS_DT_BF16, H, &ue, u, MS_DT_BF16, I, n));
        MS_TRY(kern_cpu_silu_mul(cx, g, u, g, (int64_t)n * I));
        MS_TRY(kern_cpu_gemm(cx, g, MS_DT_BF16, I, &de, yj, MS_DT_BF16, H, n));
    }
    return MS_OK;
}
