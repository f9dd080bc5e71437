/* kv_store.cu — write each token's latent [ckv | kpe] into its paged-cache row
 * (slot = block * block_size + offset). Slot -1 is a padded row (nothing
 * written); any other negative slot is a data fault (KERN_FAULT_BLOCK) and the
 * row is skipped. The cache size is not passed, so slots past its end cannot
 * be checked here (the engine computes slots from its own block tables). */
#include "common.cuh"

__global__ static void kv_store_kernel(uint16_t *cache, const uint16_t *ckv, int64_t ld_ckv, const uint16_t *kpe,
                                       int64_t ld_kpe, const int32_t *slots, int32_t d_c, int32_t d_r,
                                       uint32_t *fault)
{
    const int32_t i = blockIdx.x, s = slots[i];
    if (s < 0) {
        if (s != -1 && threadIdx.x == 0) cu_fault(fault, KERN_FAULT_BLOCK);
        return;
    }
    uint16_t *row = cache + (int64_t)s * (d_c + d_r);
    for (int32_t j = threadIdx.x; j < d_c + d_r; j += blockDim.x)
        row[j] = j < d_c ? ckv[i * ld_ckv + j] : kpe[i * ld_kpe + j - d_c];
}

extern "C" ms_status_t kern_cuda_kv_store(kern_ctx_t *cx, bf16_t *cache, const bf16_t *ckv, int64_t ld_ckv,
                                          const bf16_t *kpe, int64_t ld_kpe, const int32_t *slots, int32_t n,
                                          int32_t d_c, int32_t d_r)
{
    if (n <= 0) return MS_OK;
    if (d_c < 0 || d_r < 0) return MS_ERR(MS_ERR_INVALID, "cuda kv_store: bad widths %d+%d", d_c, d_r);
    kv_store_kernel<<<n, 128, 0, CU_STREAM(cx)>>>(cache, ckv, ld_ckv, kpe, ld_kpe, slots, d_c, d_r, cx->fault);
    CU_LAUNCHED();
    return MS_OK;
}
