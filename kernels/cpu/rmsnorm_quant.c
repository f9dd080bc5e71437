/* rmsnorm_quant.c — an RMSNorm (or the residual add + RMSNorm) whose bf16
 * output row is also quantized 1x128 the act_quant way, for an FP8-activation
 * GEMM that reads it next (the dense fp8 mode). The spec is the unfused
 * sequence, literally: the same row helpers as rmsnorm / add_rmsnorm, then
 * act_quant's group rule over the bf16 values just written, so the result is
 * bit-identical to the norm op followed by act_quant. */
#include "cpu.h"

ms_status_t kern_cpu_rmsnorm_quant(kern_ctx_t *cx, bf16_t *x, int64_t ldx, const bf16_t *res, const bf16_t *w,
                                   bf16_t *y, int64_t ldy, int32_t rows, int32_t dim, float eps, uint8_t *q,
                                   int64_t ldq, float *scale, int64_t lds)
{
    (void)cx;
    float buf[KERN_FP8_BLOCK];
    for (int32_t r = 0; r < rows; r++) {
        bf16_t *xr = x + (int64_t)r * ldx, *yr = y + (int64_t)r * ldy;
        if (res) { /* add_rmsnorm's add */
            const bf16_t *rr = res + (int64_t)r * dim;
            for (int32_t i = 0; i < dim; i++) xr[i] = f32_to_bf16(bf16_to_f32(xr[i]) + bf16_to_f32(rr[i]));
        }
        kern_cpu_rmsnorm_row(xr, w, yr, dim, eps);
        for (int32_t c0 = 0, g = 0; c0 < dim; c0 += KERN_FP8_BLOCK, g++) {
            int32_t n = dim - c0 < KERN_FP8_BLOCK ? dim - c0 : KERN_FP8_BLOCK;
            kern_cpu_bf16_to_f32(yr + c0, buf, n);
            scale[(int64_t)r * lds + g] = kern_cpu_quant_group(buf, n, q + (int64_t)r * ldq + c0);
        }
    }
    return MS_OK;
}
