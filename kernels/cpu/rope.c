/* rope.c — rotary position embedding, in place, matching transformers v5:
 * cos/sin come from fp32 freqs = inv_freq * pos, scaled by attn_factor and
 * rounded to bf16; the rotation runs in bf16 (each product and the sum
 * rounded). With interleaved channels (rope_interleave) transformers first
 * permutes pairs to halves [x0,x2,..,x1,x3,..] and rotates halves; the result
 * is left in the halves layout. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ms_status_t kern_cpu_rope(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row, int64_t ld_head,
                          const int32_t *pos, const float *inv_freq, float attn_factor, int32_t dim,
                          int32_t interleaved)
{
    if (dim <= 0 || dim % 2) return MS_ERR(MS_ERR_INVALID, "rope: dim %d must be even and positive", dim);
    const int32_t half = dim / 2;
    float *cs = malloc(sizeof(float) * (size_t)dim * 2);
    if (!cs) return MS_ERR(MS_ERR_NOMEM, "rope: out of memory");
    float *sn = cs + half, *v = cs + dim;
    for (int32_t r = 0; r < rows; r++) {
        float p = (float)pos[r];
        for (int32_t i = 0; i < half; i++) {
            float f = inv_freq[i] * p; /* fp32 product, as torch's fp32 matmul with K = 1 */
            cs[i] = bf16_round((float)cos((double)f) * attn_factor);
            sn[i] = bf16_round((float)sin((double)f) * attn_factor);
        }
        for (int32_t h = 0; h < heads; h++) {
            bf16_t *xh = x + r * ld_row + h * ld_head;
            for (int32_t i = 0; i < half; i++) {
                /* v[0..half) = first half, v[half..dim) = second half of the rotated layout */
                v[i] = bf16_to_f32(interleaved ? xh[2 * i] : xh[i]);
                v[half + i] = bf16_to_f32(interleaved ? xh[2 * i + 1] : xh[half + i]);
            }
            for (int32_t i = 0; i < half; i++) {
                float a = v[i], b = v[half + i];
                xh[i] = f32_to_bf16(bf16_round(a * cs[i]) + bf16_round(-b * sn[i]));
                xh[half + i] = f32_to_bf16(bf16_round(b * cs[i]) + bf16_round(a * sn[i]));
            }
        }
    }
    free(cs);
    return MS_OK;
}
