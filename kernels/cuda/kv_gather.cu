/* kv_gather.cu — for each sequence, its cached latents of positions
 * 0 .. pos0+n_q-1 (or the window kv_pos0 .. kv_pos0+kv_len-1) as contiguous
 * bf16 rows [ckv | kpe] from kv_off on (the naive MLA path), as
 * kernels/cpu/kv_gather.c: FP8 rows are dequantized to bf16(e4m3 * s_g). The
 * sequence lengths live in device memory, so the grid is (n_seqs, KVG_SPLIT)
 * and each block strides over its sequence's positions, one warp per row. A
 * block-table entry outside [0, n_blocks) is a data fault
 * (KERN_FAULT_BLOCK): its rows are written as zeros. */
#include "common.cuh"

#define KVG_SPLIT 64

__global__ static void kv_gather_kernel(kern_kv_t kv, const kern_attn_seq_t *seqs, const int32_t *block_tables,
                                        uint16_t *out, uint32_t *fault)
{
    cu_pdl_enter();
    const kern_attn_seq_t sq = seqs[blockIdx.x];
    const int32_t p0 = sq.kv_len > 0 ? sq.kv_pos0 : 0, len = sq.kv_len > 0 ? sq.kv_len : sq.pos0 + sq.n_q;
    const int32_t warps = blockDim.x / 32, lane = threadIdx.x & 31, rw = kv.d_c + kv.d_r;
    const int32_t ng = (kv.d_c + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK;
    const int32_t *bt = block_tables + sq.blk_off;
    for (int32_t p = p0 + blockIdx.y * warps + threadIdx.x / 32; p < p0 + len; p += gridDim.y * warps) {
        uint16_t *dst = out + (int64_t)(sq.kv_off + p - p0) * rw;
        const int32_t blk = bt[p / kv.block_size];
        if (blk < 0 || blk >= kv.n_blocks) {
            if (lane == 0) cu_fault(fault, KERN_FAULT_BLOCK);
            for (int32_t j = lane; j < rw; j += 32) dst[j] = 0;
            continue;
        }
        const uint8_t *row = (const uint8_t *)kv.data + ((int64_t)blk * kv.block_size + p % kv.block_size) * kv.row_bytes;
        if (kv.dtype != MS_DT_F8E4M3) {
            const uint16_t *src = (const uint16_t *)row;
            for (int32_t j = lane; j < rw; j += 32) dst[j] = src[j];
            continue;
        }
        for (int32_t j = lane; j < kv.d_c; j += 32) {
            const uint8_t *sp = row + kv.d_c + 4 * (j / KERN_FP8_BLOCK);
            const float s = __uint_as_float((uint32_t)sp[0] | (uint32_t)sp[1] << 8 | (uint32_t)sp[2] << 16 |
                                            (uint32_t)sp[3] << 24);
            dst[j] = cu_f_bf16(__fmul_rn(cu_fp8_f(row[j]), s));
        }
        const uint8_t *kp = row + kv.d_c + 4 * ng;
        for (int32_t j = lane; j < kv.d_r; j += 32) dst[kv.d_c + j] = (uint16_t)(kp[2 * j] | kp[2 * j + 1] << 8);
    }
}

extern "C" ms_status_t kern_cuda_kv_gather(kern_ctx_t *cx, const kern_kv_t *kv, const kern_attn_seq_t *seqs,
                                           int32_t n_seqs, const int32_t *block_tables, bf16_t *out)
{
    MS_TRY(kern_cuda_kv_check(kv, "kv_gather"));
    if (n_seqs <= 0) return MS_OK;
    cu_launch(kv_gather_kernel, dim3((unsigned)n_seqs, KVG_SPLIT), 256, 0, CU_STREAM(cx), *kv, seqs, block_tables, out,
              cx->fault);
    CU_LAUNCHED();
    return MS_OK;
}
