/* rmsnorm.c — RMSNorm as transformers' DeepseekV3RMSNorm: statistics in fp32,
 * y = x * rsqrt(mean(x^2) + eps) rounded to bf16, then times the bf16 weight
 * and rounded again. The sum of squares is accumulated in double so the CPU
 * result is the correctly rounded fp32 mean whatever the row length. */
#include "cpu.h"

void kern_cpu_rmsnorm_row(const bf16_t *xr, const bf16_t *w, bf16_t *yr, int32_t dim, float eps)
{
    double ss = 0;
    for (int32_t i = 0; i < dim; i++) {
        double v = bf16_to_f32(xr[i]);
        ss += v * v;
    }
    float var = (float)(ss / dim);
    float inv = 1.0f / sqrtf(var + eps);
    for (int32_t i = 0; i < dim; i++) {
        float n = bf16_round(bf16_to_f32(xr[i]) * inv);
        yr[i] = f32_to_bf16(bf16_to_f32(w[i]) * n);
    }
}

ms_status_t kern_cpu_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y, int64_t ldy,
                             int32_t rows, int32_t dim, float eps)
{
    (void)cx;
    for (int32_t r = 0; r < rows; r++) kern_cpu_rmsnorm_row(x + (int64_t)r * ldx, w, y + (int64_t)r * ldy, dim, eps);
    return MS_OK;
}
