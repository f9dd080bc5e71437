/* rope.cu — in-place rotary embedding with the CPU reference's rounding
 * (kernels/cpu/rope.c, transformers v5): freq = inv_freq[i] * pos in fp32,
 * cos/sin in double, times attn_factor, rounded to bf16; the rotation in bf16
 * (each product and the sum rounded). interleaved: pairs (2i, 2i+1) are
 * permuted to halves first and the result stays in halves layout.
 *
 * A block per (row, ROPE_WARPS * ROPE_HEADS_A_WARP heads). The double-precision
 * cos/sin are most of the work: computing them in every head's warp did each
 * row's 32 pairs 128 times over at q_pe's 128 heads (SM-bound, 9.2 µs at decode
 * batch 128 on the H200). Here the block's threads t < 2*half compute the
 * row's cos (t < half) and sin (the next half) once into shared memory,
 * while every warp's loads of its heads are already in flight; after one
 * barrier each warp rotates its heads. A warp's heads are all loaded before any
 * is rotated (each lane holds them in registers), and the barrier orders every
 * load before any store, so the in-place interleaved permutation is safe.
 * The arithmetic is rope.cuh's, shared with kv_store_rope.
 *
 * Tried and dropped (2026-12-02): a block per (row, 4 heads a warp) that
 * loaded and rotated a warp's heads one after another — bit-identical, but
 * slower at decode batch 1 (4.2 against 3.4 µs a call: each head waited on its
 * own loads). Hence the loads of all of a warp's heads up front here.
 * A row whose position is negative is padding and left as it was (the whole
 * block returns). */
#include "rope.cuh"

#define ROPE_WARPS 8
#define ROPE_HEADS_A_WARP 2 /* 16 heads a block: q_pe's 128 heads are 8 blocks a row */

__global__ static void __launch_bounds__(ROPE_WARPS * 32)
    rope_kernel(uint16_t *x, int32_t heads, int64_t ld_row, int64_t ld_head, const int32_t *pos,
                const float *inv_freq, float attn_factor, int32_t dim, int32_t interleaved)
{
    __shared__ float cs[32 * ROPE_MAX_PER_LANE], sn[32 * ROPE_MAX_PER_LANE];
    cu_pdl_enter();
    const int32_t r = blockIdx.x, lane = threadIdx.x & 31, half = dim / 2;
    const int32_t p = pos[r];
    if (p < 0) return; /* block-uniform: no thread reaches the barrier */
    const int32_t h0 = (blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32) * ROPE_HEADS_A_WARP;
    uint16_t *xr = x + r * ld_row;
    float a[ROPE_HEADS_A_WARP][ROPE_MAX_PER_LANE], b[ROPE_HEADS_A_WARP][ROPE_MAX_PER_LANE];
#pragma unroll
    for (int k = 0; k < ROPE_HEADS_A_WARP; k++)
        if (h0 + k < heads) cu_rope_load(xr + (h0 + k) * ld_head, lane, half, interleaved, a[k], b[k]);
    for (int32_t t = threadIdx.x; t < 2 * half; t += blockDim.x) {
        if (t < half) cs[t] = cu_rope_cos(inv_freq, t, (float)p, attn_factor);
        else sn[t - half] = cu_rope_sin(inv_freq, t - half, (float)p, attn_factor);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < ROPE_HEADS_A_WARP; k++) {
        if (h0 + k >= heads) break;
        uint16_t *xh = xr + (h0 + k) * ld_head;
#pragma unroll
        for (int j = 0; j < ROPE_MAX_PER_LANE; j++) {
            const int32_t i = lane + 32 * j;
            if (i < half) cu_rope_store(xh, i, half, a[k][j], b[k][j], cs[i], sn[i]);
        }
    }
}

extern "C" ms_status_t kern_cuda_rope(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row,
                                      int64_t ld_head, const int32_t *pos, const float *inv_freq, float attn_factor,
                                      int32_t dim, int32_t interleaved)
{
    if (dim <= 0 || dim % 2) return MS_ERR(MS_ERR_INVALID, "cuda rope: dim %d must be even and positive", dim);
    if (dim / 2 > 32 * ROPE_MAX_PER_LANE)
        return MS_ERR(MS_ERR_INVALID, "cuda rope: dim %d above %d", dim, 64 * ROPE_MAX_PER_LANE);
    if (rows <= 0 || heads <= 0) return MS_OK;
    /* no more warps than the heads need (k_pe alone: one warp) */
    const int32_t hwarps = (heads + ROPE_HEADS_A_WARP - 1) / ROPE_HEADS_A_WARP;
    const int32_t warps = hwarps < ROPE_WARPS ? hwarps : ROPE_WARPS;
    dim3 grid((unsigned)rows, (unsigned)((hwarps + warps - 1) / warps));
    cu_launch(rope_kernel, grid, 32 * warps, 0, CU_STREAM(cx), (uint16_t *)x, heads, ld_row, ld_head, pos, inv_freq,
              attn_factor, dim, interleaved);
    CU_LAUNCHED();
    return MS_OK;
}
