/* kv_gather.cu — for each sequence, copy its cached latents of positions
 * 0 .. pos0+n_q-1 into contiguous rows kv_off.. (the naive MLA path). The
 * sequence lengths live in device memory, so the grid is (n_seqs, KVG_SPLIT)
 * and each block strides over its sequence's positions, one warp per row.
 * A block-table entry < 0 is a data fault (KERN_FAULT_BLOCK): that row is
 * left as it was. */
#include "common.cuh"

#define KVG_SPLIT 64

__global__ static void kv_gather_kernel(const uint16_t *cache, int32_t block_size, int32_t row_width,
                                        const kern_attn_seq_t *seqs, const int32_t *block_tables, uint16_t *out,
                                        uint32_t *fault)
{
    const kern_attn_seq_t sq = seqs[blockIdx.x];
    const int32_t len = sq.pos0 + sq.n_q, warps = blockDim.x / 32, lane = threadIdx.x & 31;
    const int32_t *bt = block_tables + sq.blk_off;
    for (int32_t p = blockIdx.y * warps + threadIdx.x / 32; p < len; p += gridDim.y * warps) {
        const int32_t blk = bt[p / block_size];
        if (blk < 0) {
            if (lane == 0) cu_fault(fault, KERN_FAULT_BLOCK);
            continue;
        }
        const uint16_t *src = cache + ((int64_t)blk * block_size + p % block_size) * row_width;
        uint16_t *dst = out + (int64_t)(sq.kv_off + p) * row_width;
        for (int32_t j = lane; j < row_width; j += 32) dst[j] = src[j];
    }
}

extern "C" ms_status_t kern_cuda_kv_gather(kern_ctx_t *cx, const bf16_t *cache, int32_t block_size,
                                           int32_t row_width, const kern_attn_seq_t *seqs, int32_t n_seqs,
                                           const int32_t *block_tables, bf16_t *out)
{
    if (n_seqs <= 0) return MS_OK;
    if (block_size <= 0 || row_width <= 0)
        return MS_ERR(MS_ERR_INVALID, "cuda kv_gather: block_size %d row_width %d", block_size, row_width);
    kv_gather_kernel<<<dim3((unsigned)n_seqs, KVG_SPLIT), 256, 0, CU_STREAM(cx)>>>(cache, block_size, row_width, seqs,
                                                                                  block_tables, out, cx->fault);
    CU_LAUNCHED();
    return MS_OK;
}
