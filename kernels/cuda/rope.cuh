/* rope.cuh — rotary embedding pieces with the arithmetic of the CPU reference
 * (kernels/cpu/rope.c): freq = inv_freq[i] * pos in fp32, cos/sin in double,
 * times attn_factor, rounded to bf16; each product and the sum rounded.
 * rope.cu's kernel computes a row's cos/sin once in shared memory and rotates
 * many heads with them; kv_store.cu's fused kv_store_rope rotates its one head
 * by one warp (cu_rope_head). Both use the same functions below, so the two are
 * bit-identical. */
#ifndef MS_KERN_CUDA_ROPE_CUH
#define MS_KERN_CUDA_ROPE_CUH

#include "common.cuh"

#define ROPE_MAX_PER_LANE 4 /* half <= 128 */

/* bf16(cos(inv_freq[i] * p) * attn_factor) */
__device__ static inline float cu_rope_cos(const float *inv_freq, int32_t i, float p, float attn_factor)
{
    const float f = __fmul_rn(inv_freq[i], p);
    return cu_bf16_round(__fmul_rn((float)cos((double)f), attn_factor));
}

/* bf16(sin(inv_freq[i] * p) * attn_factor) */
__device__ static inline float cu_rope_sin(const float *inv_freq, int32_t i, float p, float attn_factor)
{
    const float f = __fmul_rn(inv_freq[i], p);
    return cu_bf16_round(__fmul_rn((float)sin((double)f), attn_factor));
}

/* A lane's pairs i = lane + 32j (i < half) of head xh: a = first half, b = second half of the rotated layout.
 * Interleaved pairs (2i, 2i+1) are adjacent: one 4-byte load where the head is 4-byte aligned. */
__device__ static inline void cu_rope_load(const uint16_t *xh, int32_t lane, int32_t half, int32_t interleaved,
                                           float a[ROPE_MAX_PER_LANE], float b[ROPE_MAX_PER_LANE])
{
    const bool pair32 = interleaved && (uintptr_t)xh % 4 == 0;
#pragma unroll
    for (int j = 0; j < ROPE_MAX_PER_LANE; j++) {
        const int32_t i = lane + 32 * j;
        if (i >= half) continue;
        if (pair32) {
            const uint32_t u = ((const uint32_t *)xh)[i];
            a[j] = cu_bf16_f((uint16_t)u), b[j] = cu_bf16_f((uint16_t)(u >> 16));
        } else {
            a[j] = cu_bf16_f(interleaved ? xh[2 * i] : xh[i]);
            b[j] = cu_bf16_f(interleaved ? xh[2 * i + 1] : xh[half + i]);
        }
    }
}

/* Pair i rotated: xh[i] = a cs - b sn, xh[half + i] = b cs + a sn (halves layout) */
__device__ static inline void cu_rope_store(uint16_t *xh, int32_t i, int32_t half, float a, float b, float cs, float sn)
{
    xh[i] = cu_f_bf16(__fadd_rn(cu_bf16_round(__fmul_rn(a, cs)), cu_bf16_round(__fmul_rn(-b, sn))));
    xh[half + i] = cu_f_bf16(__fadd_rn(cu_bf16_round(__fmul_rn(b, cs)), cu_bf16_round(__fmul_rn(a, sn))));
}

/* One head by one warp, in place on xh (dim = 2*half channels), its own cos/sin: every lane loads its pairs
 * before any lane writes, so the interleaved permutation (pairs (2i, 2i+1) to halves) is safe. Every lane of
 * the warp must call it. */
__device__ static inline void cu_rope_head(uint16_t *xh, int32_t lane, int32_t half, float p, const float *inv_freq,
                                           float attn_factor, int32_t interleaved)
{
    float a[ROPE_MAX_PER_LANE], b[ROPE_MAX_PER_LANE];
    cu_rope_load(xh, lane, half, interleaved, a, b);
    __syncwarp();
#pragma unroll
    for (int j = 0; j < ROPE_MAX_PER_LANE; j++) {
        const int32_t i = lane + 32 * j;
        if (i < half)
            cu_rope_store(xh, i, half, a[j], b[j], cu_rope_cos(inv_freq, i, p, attn_factor),
                          cu_rope_sin(inv_freq, i, p, attn_factor));
    }
}

#endif
