/* kv_store.cu — write each token's latent [ckv | kpe] into its paged-cache row
 * in the layer's row layout (kern_kv_t): BF16 rows are copied; FP8 rows get
 * ckv quantized with one scale a token exactly as kernels/cpu/kv_store.c
 * (s = kern_kv_fp8_scale(amax of the row), a power of two; q = e4m3(x / s)
 * rounded to nearest even and saturated), s in every fp32 scale slot after
 * the codes, then the bf16 kpe. One block per row. Slot -1 is a
 * padded row (nothing written); a slot outside [0, n_blocks*block_size) is a
 * data fault (KERN_FAULT_BLOCK) and is skipped.
 *
 * kv_store_rope (ROPE): warp 0 first rotates the row's k_pe in place with
 * rope.cuh's per-warp cu_rope_head (the arithmetic of rope.cu's kernel; a
 * negative position is padding, left as it was, as rope does), whatever the slot; after a block barrier the store
 * reads the rotated values like any kpe. One launch and one read of k_pe less
 * than rope followed by kv_store, bit-identical to them. */
#include <cuda_fp8.h>
#include "rope.cuh"

#define KVS_WARPS 4

/* the rope of kv_store_rope (ROPE); unused by plain kv_store */
typedef struct {
    const int32_t *pos;
    const float *inv_freq;
    float attn_factor;
    int32_t interleaved;
} kvs_rope_t;

template <bool ROPE>
__global__ static void __launch_bounds__(KVS_WARPS * 32)
    kv_store_kernel(kern_kv_t kv, const uint16_t *ckv, int64_t ld_ckv, uint16_t *kpe, int64_t ld_kpe,
                    const int32_t *slots, uint32_t *fault, kvs_rope_t rp)
{
    cu_pdl_enter();
    if (ROPE) {
        const int32_t p = rp.pos[blockIdx.x];
        if (threadIdx.x < 32 && p >= 0)
            cu_rope_head(kpe + (int64_t)blockIdx.x * ld_kpe, threadIdx.x, kv.d_r / 2, (float)p, rp.inv_freq,
                         rp.attn_factor, rp.interleaved);
        __syncthreads(); /* the store below reads the rotated k_pe (global writes of this block) */
    }
    const int32_t i = blockIdx.x, s = slots[i];
    const int64_t rows = (int64_t)kv.n_blocks * kv.block_size;
    if (s < 0 || s >= rows) {
        if (s != -1 && threadIdx.x == 0) cu_fault(fault, KERN_FAULT_BLOCK);
        return;
    }
    uint8_t *row = (uint8_t *)kv.data + (int64_t)s * kv.row_bytes;
    const uint16_t *c = ckv + i * ld_ckv, *k = kpe + i * ld_kpe;
    if (kv.dtype != MS_DT_F8E4M3) {
        uint16_t *r16 = (uint16_t *)row;
        for (int32_t j = threadIdx.x; j < kv.d_c + kv.d_r; j += blockDim.x)
            r16[j] = j < kv.d_c ? c[j] : k[j - kv.d_c];
        return;
    }
    __shared__ float red[32];
    float amax = 0.f;
    for (int32_t j = threadIdx.x; j < kv.d_c; j += blockDim.x) amax = fmaxf(amax, fabsf(cu_bf16_f(c[j])));
    amax = cu_block_reduce(amax, cu_op_max(), red, 0.f); /* the slot test above is uniform in the block */
    const float sc = kern_kv_fp8_scale(amax);
    for (int32_t j = threadIdx.x; j < kv.d_c; j += blockDim.x) row[j] = cu_quant_e4m3(cu_bf16_f(c[j]), sc);
    const int32_t ng = (kv.d_c + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK;
    for (int32_t j = threadIdx.x; j < 4 * ng; j += blockDim.x) /* bytewise: a row need not be 4-byte aligned */
        row[kv.d_c + j] = (uint8_t)(__float_as_uint(sc) >> (8 * (j & 3)));
    uint8_t *kp = row + kv.d_c + 4 * ng;
    for (int32_t j = threadIdx.x; j < kv.d_r; j += blockDim.x) {
        kp[2 * j] = (uint8_t)k[j];
        kp[2 * j + 1] = (uint8_t)(k[j] >> 8);
    }
}

/* the layout checks of kernels/cpu/kv_store.c (kern_cpu_kv_check) */
ms_status_t kern_cuda_kv_check(const kern_kv_t *kv, const char *op)
{
    if (kv->dtype != MS_DT_BF16 && kv->dtype != MS_DT_F8E4M3)
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda %s: KV row dtype %s not supported", op, ms_dtype_name(kv->dtype));
    if (kv->row_bytes != kern_kv_row_bytes(kv->dtype, kv->d_c, kv->d_r) || kv->block_size < 1 ||
        (kv->dtype == MS_DT_F8E4M3 && kv->d_c % 4))
        return MS_ERR(MS_ERR_INVALID, "cuda %s: KV layout %s d_c %d d_r %d row %d bytes, block %d is inconsistent", op,
                      ms_dtype_name(kv->dtype), kv->d_c, kv->d_r, kv->row_bytes, kv->block_size);
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_kv_store(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv,
                                          const bf16_t *kpe, int64_t ld_kpe, const int32_t *slots, int32_t n)
{
    MS_TRY(kern_cuda_kv_check(kv, "kv_store"));
    if (n <= 0) return MS_OK;
    cu_launch(kv_store_kernel<false>, n, KVS_WARPS * 32, 0, CU_STREAM(cx), *kv, (const uint16_t *)ckv, ld_ckv,
              (uint16_t *)kpe, ld_kpe, slots, cx->fault, kvs_rope_t{});
    CU_LAUNCHED();
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_kv_store_rope(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv,
                                               bf16_t *kpe, int64_t ld_kpe, const int32_t *slots, int32_t n,
                                               const int32_t *pos, const float *inv_freq, float attn_factor,
                                               int32_t interleaved)
{
    MS_TRY(kern_cuda_kv_check(kv, "kv_store_rope"));
    if (kv->d_r <= 0 || kv->d_r % 2 || kv->d_r / 2 > 32 * ROPE_MAX_PER_LANE)
        return MS_ERR(MS_ERR_INVALID, "cuda kv_store_rope: d_r %d must be even, in 2..%d", kv->d_r,
                      64 * ROPE_MAX_PER_LANE);
    if (n <= 0) return MS_OK;
    const kvs_rope_t rp = {pos, inv_freq, attn_factor, interleaved};
    cu_launch(kv_store_kernel<true>, n, KVS_WARPS * 32, 0, CU_STREAM(cx), *kv, (const uint16_t *)ckv, ld_ckv,
              (uint16_t *)kpe, ld_kpe, slots, cx->fault, rp);
    CU_LAUNCHED();
    return MS_OK;
}
