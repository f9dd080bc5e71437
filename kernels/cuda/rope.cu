/* rope.cu — in-place rotary embedding with the CPU reference's rounding
 * (kernels/cpu/rope.c, transformers v5): freq = inv_freq[i] * pos in fp32,
 * cos/sin in double, times attn_factor, rounded to bf16; the rotation in bf16
 * (each product and the sum rounded). interleaved: pairs (2i, 2i+1) are
 * permuted to halves first and the result stays in halves layout.
 * One warp per (row, head) (rope.cuh, shared with kv_store_rope): every
 * lane loads its pairs before any lane writes, so the in-place permutation is
 * safe. A row whose position is negative is padding and left as it was.
 *
 * Tried and dropped (2026-12-02): a block per (row, 4 heads a warp) computing
 * the row's cos/sin once in shared memory instead of in every head's warp —
 * bit-identical, but slower at decode batch 1 on the H200 (4.2 against 3.4 µs
 * a call: a warp's 4 heads ran one after another, each waiting on its loads). */
#include "rope.cuh"

__global__ static void rope_kernel(uint16_t *x, int32_t heads, int64_t ld_row, int64_t ld_head, const int32_t *pos,
                                   const float *inv_freq, float attn_factor, int32_t dim, int32_t interleaved)
{
    const int32_t r = blockIdx.x, lane = threadIdx.x & 31;
    const int32_t h = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (h >= heads || pos[r] < 0) return;
    cu_rope_head(x + r * ld_row + h * ld_head, lane, dim / 2, (float)pos[r], inv_freq, attn_factor, interleaved);
}

extern "C" ms_status_t kern_cuda_rope(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row,
                                      int64_t ld_head, const int32_t *pos, const float *inv_freq, float attn_factor,
                                      int32_t dim, int32_t interleaved)
{
    if (dim <= 0 || dim % 2) return MS_ERR(MS_ERR_INVALID, "cuda rope: dim %d must be even and positive", dim);
    if (dim / 2 > 32 * ROPE_MAX_PER_LANE)
        return MS_ERR(MS_ERR_INVALID, "cuda rope: dim %d above %d", dim, 64 * ROPE_MAX_PER_LANE);
    if (rows <= 0 || heads <= 0) return MS_OK;
    const int warps = 8;
    dim3 grid((unsigned)rows, (unsigned)((heads + warps - 1) / warps));
    rope_kernel<<<grid, 32 * warps, 0, CU_STREAM(cx)>>>(x, heads, ld_row, ld_head, pos, inv_freq, attn_factor, dim,
                                                        interleaved);
    CU_LAUNCHED();
    return MS_OK;
}
