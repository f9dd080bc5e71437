/* moe_experts.cu — routed experts on the masked layout (kernels.h), as
 * kernels/cpu/moe_experts.c computes them: x and out are [n_local, cap,
 * hidden], slot j runs its record's expert on rows 0 .. counts[j] (device
 * counts), out row = bf16(down(bf16(bf16(silu(gate x)) · bf16(up x)))).
 *
 * No launch per expert: the slots are the batch dimension of two batched
 * GEMMs through kern_cuda_gemm_run (gemm.cu), W_b = slot b's record (batch
 * stride = the record stride, FP8 scales likewise):
 *   h = silu_mul(x · [gate|up]ᵀ)   the fused gate|up block of the record
 *   d = h · downᵀ                  into scratch
 * then a masked copy moves rows < count into out, so rows beyond a count are
 * never written (and a count outside [0, cap] raises KERN_FAULT_CAPACITY and
 * is clamped, as on the CPU). The counts stay on the device, so the GEMMs
 * run all cap rows of every slot; padding rows cost tensor-core time but no
 * result (skipping them needs a grouped kernel that reads the counts, e.g.
 * helper-7's moe_gemm_fp8.cu, whose FP8×FP8 numerics are the `fp8` mode, not
 * this op's CPU spec, and whose weights are stacked arrays, not records).
 * BF16 records run on cuBLASLt; FP8 records in the `dequant` mode (tiles of
 * weight rows dequantized to bf16, all slots of a chunk at once). FP8 gate|up
 * with inter % 128 != 0 is not one block-scaled matrix: then gate and up are
 * two GEMMs into the sums buffer and the gated pass follows.
 * Slots go in chunks that fit the context workspace (a host loop over
 * chunks of slots, not over experts; R1's 32 local slots at cap 128 take 2).
 *
 * fp8 mode (w->mode KERN_MOE_FP8, kernels.h): with hidden and inter multiples
 * of 128 and cap of 4 (R1), kern_cuda_moe_fp8 (moe_gemm_fp8.cu) runs on the
 * records themselves (3-D TMA over the record stride) and reads the device
 * counts: tiles past a slot's count are neither loaded nor computed, so the
 * cost follows the real rows. Other shapes (the tiny models' inter 192) run
 * the batched path above with act_quant'ed activations and the gemm's FP8-x
 * mode: same numerics, all cap rows computed. */
#include "common.cuh"
#include "moe_gemm.h"

__global__ static void moe_copy_kernel(const uint16_t *d, const int32_t *counts, int32_t cap, int32_t H, uint16_t *out,
                                       uint32_t *fault)
{
    cu_pdl_enter();
    const int32_t j = blockIdx.y, r = blockIdx.x;
    int32_t n = counts[j];
    if (n < 0 || n > cap) {
        if (r == 0 && threadIdx.x == 0) cu_fault(fault, KERN_FAULT_CAPACITY);
        n = n < 0 ? 0 : cap;
    }
    if (r >= n) return;
    const int64_t row = (int64_t)j * cap + r;
    for (int32_t i = threadIdx.x; i < H; i += blockDim.x) out[row * H + i] = d[row * H + i];
}

/* What the fp8 grouped kernel does not check: a count outside [0, cap] is a fault (it clamps by itself). */
__global__ static void moe_count_check_kernel(const int32_t *counts, int32_t n, int32_t cap, uint32_t *fault)
{
    cu_pdl_enter();
    for (int32_t j = threadIdx.x; j < n; j += blockDim.x)
        if (counts[j] < 0 || counts[j] > cap) cu_fault(fault, KERN_FAULT_CAPACITY);
}

/* fp8 mode on the grouped kernel: all slots at once in the caller's workspace when it holds every slot's
 * quantized copies (kern_moe_ws_bytes_all), else slots in chunks that fit the context workspace. */
static ms_status_t moe_experts_grouped(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int32_t n_local,
                                       int32_t cap, const kern_moe_slots_t *w, bf16_t *out, void *ws, size_t ws_bytes)
{
    const int32_t H = w->hidden, I = w->inter;
    /* the contract's size decides (kernels.h); the grouped kernel's carve is never larger (5 pieces, each padded
     * to 256 bytes: the 5 * 256 there), and kern_cuda_moe_fp8 refuses a short workspace, so the two cannot drift
     * into a silent fallback to chunks */
    const int all = ws && ws_bytes >= kern_moe_ws_bytes_all(n_local, cap, H, I);
    char *scratch = all ? (char *)ws : (char *)cx->ws + KERN_CUDA_BLAS_WS;
    const size_t scratch_bytes = all ? ws_bytes : cx->ws_bytes > KERN_CUDA_BLAS_WS ? cx->ws_bytes - KERN_CUDA_BLAS_WS : 0;
    const size_t per_slot = kern_cuda_moe_fp8_ws_bytes(1, cap, H, I);
    int64_t chunk = (int64_t)(scratch_bytes / per_slot);
    if (chunk < 1)
        return MS_ERR(MS_ERR_INVALID, "cuda moe_experts (fp8): context workspace of %zu bytes cannot hold one slot of "
                      "%d rows (%zu bytes)", cx->ws_bytes, cap, per_slot + KERN_CUDA_BLAS_WS);
    if (chunk > n_local) chunk = n_local;
    cu_launch(moe_count_check_kernel, 1, 256, 0, CU_STREAM(cx), counts, n_local, cap, cx->fault);
    CU_LAUNCHED();
    const size_t sblk = (size_t)(H / KERN_FP8_BLOCK) * (I / KERN_FP8_BLOCK);
    for (int32_t j0 = 0; j0 < n_local; j0 += (int32_t)chunk) {
        const int32_t nc = (int32_t)(n_local - j0 < chunk ? n_local - j0 : chunk);
        const char *rec = (const char *)w->base + (size_t)j0 * w->stride;
        const float *sc = (const float *)(rec + w->off_scale);
        moe_fp8_weights_t mw = {(const uint8_t *)rec, sc, (const uint8_t *)rec + w->off_down, sc + 2 * sblk,
                                nc, H, I, w->stride, w->rows_hint};
        MS_TRY(kern_cuda_moe_fp8(cx, x + (size_t)j0 * cap * H, counts + j0, nc, cap, &mw,
                                 out + (size_t)j0 * cap * H, scratch, scratch_bytes));
    }
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_moe_experts(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int32_t n_local,
                                             int32_t cap, const kern_moe_slots_t *w, bf16_t *out, void *ws,
                                             size_t ws_bytes)
{
    /* ws: the fp8 mode's quantized copies when it holds all slots' (kern_moe_ws_bytes_all); the other paths
     * batch slots in chunks of the context workspace */
    const int32_t H = w->hidden, I = w->inter;
    if (H < 1 || I < 1 || n_local < 0 || cap < 0 || (w->dtype != MS_DT_BF16 && w->dtype != MS_DT_F8E4M3))
        return MS_ERR(MS_ERR_INVALID, "cuda moe_experts: hidden %d, inter %d, n_local %d, cap %d, dtype %s", H, I,
                      n_local, cap, ms_dtype_name(w->dtype));
    if (ws_bytes < kern_moe_ws_bytes(cap, I))
        return MS_ERR(MS_ERR_INVALID, "cuda moe_experts: workspace %zu < %zu bytes", ws_bytes,
                      kern_moe_ws_bytes(cap, I));
    if (!n_local || !cap) return MS_OK;
    const int fp8 = w->dtype == MS_DT_F8E4M3, fused = !fp8 || I % KERN_FP8_BLOCK == 0;
    const int qx = fp8 && w->mode == KERN_MOE_FP8; /* fp8 mode: act_quant'ed x and h */
    if (qx && H % KERN_FP8_BLOCK == 0 && I % KERN_FP8_BLOCK == 0 && cap % 4 == 0 && w->stride % 16 == 0)
        return moe_experts_grouped(cx, x, counts, n_local, cap, w, out, ws, ws_bytes);
    const int32_t bh = kern_fp8_blocks(H), bi = kern_fp8_blocks(I);
    const size_t es = ms_dtype_size(w->dtype);
    if (w->stride % 4 || w->stride % es) return MS_ERR(MS_ERR_INVALID, "cuda moe_experts: record stride %zu", w->stride);
    const int64_t bsw = (int64_t)(w->stride / es), bss = (int64_t)(w->stride / sizeof(float));
    const size_t big = (size_t)(H > I ? H : I);

    /* per slot: h [cap, I] and d [cap, H] here, the gemm's sums [cap, 2I] (twice: it gives fp8 tiles half),
     * fp8 tiles of >= 128 rows; unfused also its own sums buffer */
    const size_t per_slot = kern_align256((size_t)cap * I * 2) + kern_align256((size_t)cap * H * 2) +
                            2 * (size_t)cap * 2 * I * 2 + (fp8 ? (size_t)KERN_FP8_BLOCK * big * 2 * 2 : 0) +
                            (fused ? 0 : (size_t)cap * 2 * I * 2) +
                            (qx ? (size_t)cap * (H + I) + (size_t)cap * (bh + bi) * 4 + 1024 : 0) + 1024;
    char *scratch = (char *)cx->ws + KERN_CUDA_BLAS_WS;
    const size_t scratch_bytes = cx->ws_bytes > KERN_CUDA_BLAS_WS ? cx->ws_bytes - KERN_CUDA_BLAS_WS : 0;
    int64_t chunk = (int64_t)(scratch_bytes / per_slot);
    if (chunk < 1)
        return MS_ERR(MS_ERR_INVALID, "cuda moe_experts: context workspace of %zu bytes cannot hold one slot of %d rows "
                      "(%zu bytes)", cx->ws_bytes, cap, per_slot + KERN_CUDA_BLAS_WS);
    if (chunk > n_local) chunk = n_local;
    if (chunk > 65535) chunk = 65535;

    for (int32_t j0 = 0; j0 < n_local; j0 += (int32_t)chunk) {
        const int32_t nc = (int32_t)(n_local - j0 < chunk ? n_local - j0 : chunk);
        bf16_t *h = (bf16_t *)scratch;
        bf16_t *d = (bf16_t *)(scratch + kern_align256((size_t)nc * cap * I * 2));
        char *rest = (char *)d + kern_align256((size_t)nc * cap * H * 2);
        uint8_t *xq = NULL, *hq = NULL;
        float *xs = NULL, *hs = NULL;
        if (qx) { /* quantized x [nc*cap, H] and h [nc*cap, I] with their 1x128 scales */
            xq = (uint8_t *)rest, rest += kern_align256((size_t)nc * cap * H);
            hq = (uint8_t *)rest, rest += kern_align256((size_t)nc * cap * I);
            xs = (float *)rest, rest += kern_align256((size_t)nc * cap * bh * 4);
            hs = (float *)rest, rest += kern_align256((size_t)nc * cap * bi * 4);
        }
        size_t rest_bytes = scratch_bytes - (size_t)(rest - scratch);
        kern_moe_slots_t sw = *w;
        sw.base = (const char *)w->base + (size_t)j0 * w->stride;
        const bf16_t *xj = x + (size_t)j0 * cap * H;

        kern_mat_t ge = kern_moe_slot_mat(&sw, 0, 0), ue = kern_moe_slot_mat(&sw, 0, 1), de = kern_moe_slot_mat(&sw, 0, 2);
        kern_gemm_t g = {};
        g.x = xj, g.xdt = MS_DT_BF16, g.ldx = H, g.bsx = (int64_t)cap * H;
        if (qx) {
            MS_TRY(kern_cuda_act_quant_op(cx, xj, H, nc * cap, H, xq, H, xs, bh));
            g.x = xq, g.xdt = MS_DT_F8E4M3, g.x_scale = xs, g.ld_xs = bh, g.bs_xs = (int64_t)cap * bh;
        }
        g.ydt = MS_DT_BF16, g.m = cap, g.batch = nc, g.bsw = bsw;
        if (fused) {
            kern_mat_t gu = ge;
            gu.rows = 2 * I; /* gate rows then up rows, contiguous (and their scale grids, as I % 128 == 0) */
            g.w = &gu, g.y = h, g.ldy = I, g.bsy = (int64_t)cap * I, g.epi = KERN_EPI_SILU_MUL;
            MS_TRY(kern_cuda_gemm_run(cx, &g, bss, rest, rest_bytes));
        } else {
            bf16_t *t = (bf16_t *)rest; /* [nc, cap, 2I] gate | up sums */
            char *rest2 = rest + kern_align256((size_t)nc * cap * 2 * I * 2);
            const size_t rest2_bytes = rest_bytes - (size_t)(rest2 - rest);
            g.ldy = 2 * I, g.bsy = (int64_t)cap * 2 * I;
            g.w = &ge, g.y = t;
            MS_TRY(kern_cuda_gemm_run(cx, &g, bss, rest2, rest2_bytes));
            g.w = &ue, g.y = t + I;
            MS_TRY(kern_cuda_gemm_run(cx, &g, bss, rest2, rest2_bytes));
            MS_TRY(kern_cuda_gemm_silu_pass(cx, t, cap, I, nc, h, I, (int64_t)cap * I));
        }
        kern_gemm_t dg = {};
        dg.x = h, dg.xdt = MS_DT_BF16, dg.ldx = I, dg.bsx = (int64_t)cap * I;
        dg.w = &de, dg.y = d, dg.ydt = MS_DT_BF16, dg.ldy = H, dg.bsy = (int64_t)cap * H;
        dg.m = cap, dg.batch = nc, dg.bsw = bsw;
        if (qx) {
            MS_TRY(kern_cuda_act_quant_op(cx, h, I, nc * cap, I, hq, I, hs, bi));
            dg.x = hq, dg.xdt = MS_DT_F8E4M3, dg.x_scale = hs, dg.ld_xs = bi, dg.bs_xs = (int64_t)cap * bi;
        }
        MS_TRY(kern_cuda_gemm_run(cx, &dg, bss, rest, rest_bytes));
        cu_launch(moe_copy_kernel, dim3((unsigned)cap, (unsigned)nc), 256, 0, CU_STREAM(cx), d, counts + j0, cap, H,
                  out + (size_t)j0 * cap * H, cx->fault);
        CU_LAUNCHED();
    }
    return MS_OK;
}
