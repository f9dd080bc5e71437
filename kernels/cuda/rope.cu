/* rope.cu — in-place rotary embedding with the CPU reference's rounding
 * (kernels/cpu/rope.c, transformers v5): freq = inv_freq[i] * pos in fp32,
 * cos/sin in double, times attn_factor, rounded to bf16; the rotation in bf16
 * (each product and the sum rounded). interleaved: pairs (2i, 2i+1) are
 * permuted to halves first and the result stays in halves layout.
 * One warp per (row, head) (rope.cuh, shared with kv_store_rope): every
 * lane loads its pairs before any lane writes, so the in-place permutation is
 * safe. A row whose position is negative is padding and left as it was.
 *
 * MS_ROPE=row (opt-in): a block per (row, slice of up to 4 heads a warp) that
 * computes the row's cos/sin once into shared memory instead of in every
 * head's warp (128 times the double-precision sin and cos a row at R1's q_pe).
 * Its harness cases pass on the H200 (bit-identical), but in the one timed run
 * it was slower at decode batch 1 (4.2 against 3.4 µs a call: the 4 heads of a
 * warp run one after another, each waiting on its loads) and batch 128 was not
 * timed, so the per-warp kernel stays the default. */
#include "rope.cuh"

#include <stdlib.h>
#include <string.h>

#define ROPE_HEADS_PER_WARP 4

__global__ static void rope_kernel(uint16_t *x, int32_t heads, int64_t ld_row, int64_t ld_head, const int32_t *pos,
                                   const float *inv_freq, float attn_factor, int32_t dim, int32_t interleaved)
{
    const int32_t r = blockIdx.x, lane = threadIdx.x & 31;
    const int32_t h = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (h >= heads || pos[r] < 0) return;
    cu_rope_head(x + r * ld_row + h * ld_head, lane, dim / 2, (float)pos[r], inv_freq, attn_factor, interleaved);
}

/* MS_ROPE=row: cos/sin once a row (see the top) */
__global__ static void rope_row_kernel(uint16_t *x, int32_t heads, int64_t ld_row, int64_t ld_head, const int32_t *pos,
                                   const float *inv_freq, float attn_factor, int32_t dim, int32_t interleaved)
{
    __shared__ float s_cs[32 * ROPE_MAX_PER_LANE], s_sn[32 * ROPE_MAX_PER_LANE];
    const int32_t r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (pos[r] < 0) return; /* block-uniform */
    const int32_t half = dim / 2;
    const float p = (float)pos[r];
    for (int32_t i = threadIdx.x; i < half; i += blockDim.x) {
        const float f = __fmul_rn(inv_freq[i], p);
        s_cs[i] = cu_bf16_round(__fmul_rn((float)cos((double)f), attn_factor));
        s_sn[i] = cu_bf16_round(__fmul_rn((float)sin((double)f), attn_factor));
    }
    __syncthreads();
    for (int32_t hh = 0; hh < ROPE_HEADS_PER_WARP; hh++) {
        const int32_t h = (blockIdx.y * ROPE_HEADS_PER_WARP + hh) * nw + warp;
        if (h >= heads) break;
        uint16_t *xh = x + r * ld_row + h * ld_head;
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
                const float cs = s_cs[i], sn = s_sn[i];
                xh[i] = cu_f_bf16(__fadd_rn(cu_bf16_round(__fmul_rn(a[j], cs)), cu_bf16_round(__fmul_rn(-b[j], sn))));
                xh[half + i] =
                    cu_f_bf16(__fadd_rn(cu_bf16_round(__fmul_rn(b[j], cs)), cu_bf16_round(__fmul_rn(a[j], sn))));
            }
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
    static int row = -1; /* MS_ROPE=row, read once */
    if (row < 0) {
        const char *e = getenv("MS_ROPE");
        row = e && !strcmp(e, "row");
    }
    if (row) {
        const int warps = heads < 8 ? heads : 8, per_block = warps * ROPE_HEADS_PER_WARP;
        dim3 grid((unsigned)rows, (unsigned)((heads + per_block - 1) / per_block));
        rope_row_kernel<<<grid, 32 * warps, 0, CU_STREAM(cx)>>>(x, heads, ld_row, ld_head, pos, inv_freq, attn_factor,
                                                               dim, interleaved);
    } else {
        const int warps = 8;
        dim3 grid((unsigned)rows, (unsigned)((heads + warps - 1) / warps));
        rope_kernel<<<grid, 32 * warps, 0, CU_STREAM(cx)>>>(x, heads, ld_row, ld_head, pos, inv_freq, attn_factor,
                                                            dim, interleaved);
    }
    CU_LAUNCHED();
    return MS_OK;
}
