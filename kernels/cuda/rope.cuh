/* rope.cuh — one head's rotary embedding by one warp, the arithmetic of the
 * CPU reference (kernels/cpu/rope.c): freq = inv_freq[i] * pos in fp32, cos/sin
 * in double, times attn_factor, rounded to bf16; each product and the sum
 * rounded. Shared by rope.cu's per-warp kernel and kv_store.cu's fused
 * kv_store_rope, so the two are bit-identical. */
#ifndef MS_KERN_CUDA_ROPE_CUH
#define MS_KERN_CUDA_ROPE_CUH

#include "common.cuh"

#define ROPE_MAX_PER_LANE 4 /* half <= 128 */

/* In place on xh (dim = 2*half channels): every lane loads its pairs before any lane writes, so the
 * interleaved permutation (pairs (2i, 2i+1) to halves) is safe. Every lane of the warp must call it. */
__device__ static inline void cu_rope_head(uint16_t *xh, int32_t lane, int32_t half, float p, const float *inv_freq,
                                           float attn_factor, int32_t interleaved)
{
    float a[ROPE_MAX_PER_LANE], b[ROPE_MAX_PER_LANE];
#pragma unroll
    for (int j = 0; j < ROPE_MAX_PER_LANE; j++) {
        int32_t i = lane + 32 * j;
        if (i < half) {
            a[j] = cu_bf16_f(interleaved ? xh[2 * i] : xh[i]);
            b[j] = cu_bf16_f(interleaved ? xh[2 * i + 1] : xh[half + i]);
        }
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < ROPE_MAX_PER_LANE; j++) {
        int32_t i = lane + 32 * j;
        if (i < half) {
            float f = __fmul_rn(inv_freq[i], p);
            float cs = cu_bf16_round(__fmul_rn((float)cos((double)f), attn_factor));
            float sn = cu_bf16_round(__fmul_rn((float)sin((double)f), attn_factor));
            xh[i] = cu_f_bf16(__fadd_rn(cu_bf16_round(__fmul_rn(a[j], cs)), cu_bf16_round(__fmul_rn(-b[j], sn))));
            xh[half + i] = cu_f_bf16(__fadd_rn(cu_bf16_round(__fmul_rn(b[j], cs)), cu_bf16_round(__fmul_rn(a[j], sn))));
        }
    }
}

#endif
