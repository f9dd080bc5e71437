/* moe_experts.c — routed experts as a grouped GEMM: rows are bucketed by
 * local expert (counting sort), each bucket is gathered, run through
 * gate/up GEMMs, silu_mul and the down GEMM, and scattered back. Output rows
 * are the unweighted expert outputs (bf16, as transformers' expert Linear
 * stores them); weighting happens in moe_combine where transformers does it.
 * The loop over experts lives here, inside the op, not in model code. */
#include "cpu.h"

#include <stdint.h>
#include <string.h>

static kern_mat_t mat_at(const kern_mat_t *m, int32_t e)
{
    kern_mat_t r = *m;
    int64_t n = (int64_t)m->rows * m->cols;
    if (m->dtype == MS_DT_F8E4M3) {
        r.data = (const uint8_t *)m->data + e * n;
        r.scale_inv = m->scale_inv + (int64_t)e * kern_fp8_blocks(m->rows) * kern_fp8_blocks(m->cols);
    } else {
        r.data = (const char *)m->data + e * n * (int64_t)ms_dtype_size(m->dtype);
    }
    return r;
}

ms_status_t kern_cpu_moe_experts(kern_ctx_t *cx, const bf16_t *x, const int32_t *slot_of_row, int32_t R,
                                 int32_t slot_base, int32_t n_local, const kern_mat_t *gate, const kern_mat_t *up,
                                 const kern_mat_t *down, bf16_t *out, void *ws, size_t ws_bytes)
{
    const int32_t H = gate->cols, I = gate->rows;
    if (up->rows != I || up->cols != H || down->rows != H || down->cols != I)
        return MS_ERR(MS_ERR_INVALID, "moe_experts: gate [%d,%d] up [%d,%d] down [%d,%d] disagree", gate->rows,
                      gate->cols, up->rows, up->cols, down->rows, down->cols);
    if (ws_bytes < kern_moe_ws_bytes(R, H, I, n_local))
        return MS_ERR(MS_ERR_INVALID, "moe_experts: workspace %zu < %zu bytes", ws_bytes,
                      kern_moe_ws_bytes(R, H, I, n_local));
    if (R <= 0) return MS_OK;
    /* workspace: xg [R,H] | g [R,I] | u [R,I] | a [R,I] | y [R,H] (bf16) | rows [R] | cnt [n+1] | fill [n+1] */
    bf16_t *xg = ws, *g = xg + (size_t)R * H, *u = g + (size_t)R * I, *a = u + (size_t)R * I, *y = a + (size_t)R * I;
    int32_t *rows = (int32_t *)(y + (size_t)R * H), *cnt = rows + R, *fill = cnt + n_local + 1;
    memset(cnt, 0, sizeof(int32_t) * (size_t)(n_local + 1));
    for (int32_t r = 0; r < R; r++) {
        int32_t e = slot_of_row[r] - slot_base;
        if (e < 0 || e >= n_local)
            return MS_ERR(MS_ERR_INVALID, "moe_experts: row %d for slot %d, local slots are [%d, %d)", r,
                          slot_of_row[r], slot_base, slot_base + n_local);
        cnt[e + 1]++;
    }
    for (int32_t e = 0; e < n_local; e++) cnt[e + 1] += cnt[e];
    memcpy(fill, cnt, sizeof(int32_t) * (size_t)n_local);
    for (int32_t r = 0; r < R; r++) rows[fill[slot_of_row[r] - slot_base]++] = r;

    for (int32_t e = 0; e < n_local; e++) {
        const int32_t b = cnt[e], n = cnt[e + 1] - cnt[e];
        if (!n) continue;
        for (int32_t i = 0; i < n; i++) memcpy(xg + (size_t)i * H, x + (size_t)rows[b + i] * H, sizeof(bf16_t) * H);
        kern_mat_t ge = mat_at(gate, e), ue = mat_at(up, e), de = mat_at(down, e);
        MS_TRY(kern_cpu_gemm(cx, xg, MS_DT_BF16, H, &ge, g, MS_DT_BF16, I, n));
        MS_TRY(kern_cpu_gemm(cx, xg, MS_DT_BF16, H, &ue, u, MS_DT_BF16, I, n));
        MS_TRY(kern_cpu_silu_mul(cx, g, u, a, (int64_t)n * I));
        MS_TRY(kern_cpu_gemm(cx, a, MS_DT_BF16, I, &de, y, MS_DT_BF16, H, n));
        for (int32_t i = 0; i < n; i++) memcpy(out + (size_t)rows[b + i] * H, y + (size_t)i * H, sizeof(bf16_t) * H);
    }
    return MS_OK;
}
