/* act_quant.c — FP8 activation quantization as DeepSeek's act_quant: per row,
 * per group of 128 channels, s = max(amax, 1e-4) / 448 and q = e4m3(x / s)
 * (round to nearest even, saturating at ±448). The floor on amax keeps an
 * all-zero group finite (DeepSeek's later kernels clamp the same way). The
 * FP8 KV row (kv_store.c) quantizes its ckv groups with the same rule. */
#include "cpu.h"

float kern_cpu_quant_group(const float *x, int32_t n, uint8_t *q)
{
    float amax = 0;
    for (int32_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = fmaxf(amax, 1e-4f) / 448.0f;
    for (int32_t i = 0; i < n; i++) q[i] = f32_to_fp8e4m3(x[i] / s);
    return s;
}

ms_status_t kern_cpu_act_quant(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t rows, int32_t cols, uint8_t *q,
                               int64_t ldq, float *scale, int64_t lds)
{
    (void)cx;
    float buf[KERN_FP8_BLOCK];
    for (int32_t r = 0; r < rows; r++)
        for (int32_t c0 = 0, g = 0; c0 < cols; c0 += KERN_FP8_BLOCK, g++) {
            int32_t n = cols - c0 < KERN_FP8_BLOCK ? cols - c0 : KERN_FP8_BLOCK;
            kern_cpu_bf16_to_f32(x + r * ldx + c0, buf, n);
            scale[r * lds + g] = kern_cpu_quant_group(buf, n, q + r * ldq + c0);
        }
    return MS_OK;
}
