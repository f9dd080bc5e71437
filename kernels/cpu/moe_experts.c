/* moe_experts.c — routed experts in the masked grouped-GEMM shape: rows
 * arrive grouped by local slot in fixed-capacity blocks [n_local, cap, H]
 * with a count per slot, so each slot is one contiguous GEMM over its first
 * count rows (no gather, no re-sort); rows past the count are never read or
 * written. Output rows are the unweighted expert outputs (bf16, as
 * transformers' expert Linear stores them); weighting happens in moe_combine
 * where transformers does it. The loop over slots lives here, inside the op.
 * FP8 records in KERN_MOE_FP8 mode (kernels.h) quantize the slot's rows and
 * the gated activation with act_quant and run the gemm's FP8-x mode: the
 * reference of the CUDA grouped kernel (kernels/cuda/moe_gemm_fp8.cu). Its
 * quantized copies are allocated here (a CPU reference; ws stays the bf16
 * scratch every mode needs). */
#include "cpu.h"

#include <stdlib.h>

/* One slot's n rows in fp8 mode: gate and up as two FP8-x GEMMs (so inter % 128 != 0 works: the gate|up
 * scale grids are not one fused grid then), silu_mul with the same roundings as the fused epilogue. */
static ms_status_t moe_slot_fp8(kern_ctx_t *cx, const bf16_t *xj, int32_t n, const kern_moe_slots_t *w, int32_t j,
                                bf16_t *g, bf16_t *u, bf16_t *yj)
{
    const int32_t H = w->hidden, I = w->inter, bh = kern_fp8_blocks(H), bi = kern_fp8_blocks(I);
    ms_status_t st = MS_OK;
    uint8_t *xq = malloc((size_t)n * H + (size_t)n * I);
    float *xs = malloc(sizeof(float) * (size_t)n * (bh + bi));
    if (!xq || !xs) {
        st = MS_ERR(MS_ERR_NOMEM, "moe_experts: cannot allocate fp8 staging for %d rows", n);
        goto out;
    }
    uint8_t *hq = xq + (size_t)n * H;
    float *hs = xs + (size_t)n * bh;
    kern_mat_t ge = kern_moe_slot_mat(w, j, 0), ue = kern_moe_slot_mat(w, j, 1), de = kern_moe_slot_mat(w, j, 2);
    MS_TRY_GOTO(st, kern_cpu_act_quant(cx, xj, H, n, H, xq, H, xs, bh), out);
    kern_gemm_t gg = {.x = xq, .x_scale = xs, .xdt = MS_DT_F8E4M3, .ldx = H, .ld_xs = bh, .w = &ge, .y = g,
                      .ydt = MS_DT_BF16, .ldy = I, .m = n};
    MS_TRY_GOTO(st, kern_cpu_gemm_ex(cx, &gg), out);
    gg.w = &ue, gg.y = u;
    MS_TRY_GOTO(st, kern_cpu_gemm_ex(cx, &gg), out);
    MS_TRY_GOTO(st, kern_cpu_silu_mul(cx, g, u, g, (int64_t)n * I), out);
    MS_TRY_GOTO(st, kern_cpu_act_quant(cx, g, I, n, I, hq, I, hs, bi), out);
    kern_gemm_t dg = {.x = hq, .x_scale = hs, .xdt = MS_DT_F8E4M3, .ldx = I, .ld_xs = bi, .w = &de, .y = yj,
                      .ydt = MS_DT_BF16, .ldy = H, .m = n};
    MS_TRY_GOTO(st, kern_cpu_gemm_ex(cx, &dg), out);
out:
    free(xq);
    free(xs);
    return st;
}

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
    const int fp8 = w->dtype == MS_DT_F8E4M3 && w->mode == KERN_MOE_FP8;
    for (int32_t j = 0; j < n_local; j++) {
        int32_t n = counts[j];
        if (n < 0 || n > cap) {
            kern_cpu_fault(cx, KERN_FAULT_CAPACITY);
            n = n < 0 ? 0 : cap;
        }
        if (!n) continue;
        const bf16_t *xj = x + (size_t)j * cap * H;
        bf16_t *yj = out + (size_t)j * cap * H;
        if (fp8) {
            MS_TRY(moe_slot_fp8(cx, xj, n, w, j, g, u, yj));
            continue;
        }
        kern_mat_t ge = kern_moe_slot_mat(w, j, 0), ue = kern_moe_slot_mat(w, j, 1), de = kern_moe_slot_mat(w, j, 2);
        MS_TRY(kern_cpu_gemm(cx, xj, MS_DT_BF16, H, &ge, g, MS_DT_BF16, I, n));
        MS_TRY(kern_cpu_gemm(cx, xj, MS_DT_BF16, H, &ue, u, MS_DT_BF16, I, n));
        MS_TRY(kern_cpu_silu_mul(cx, g, u, g, (int64_t)n * I));
        MS_TRY(kern_cpu_gemm(cx, g, MS_DT_BF16, I, &de, yj, MS_DT_BF16, H, n));
    }
    return MS_OK;
}
