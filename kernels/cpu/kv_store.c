/* kv_store.c — write each token's latent [ckv | kpe] into its paged-cache row
 * (slot = block * block_size + offset, computed by the engine from the
 * sequence's block table). */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_kv_store(kern_ctx_t *cx, bf16_t *cache, const bf16_t *ckv, int64_t ld_ckv, const bf16_t *kpe,
                              int64_t ld_kpe, const int32_t *slots, int32_t n, int32_t d_c, int32_t d_r)
{
    const int64_t w = d_c + d_r;
    for (int32_t i = 0; i < n; i++) {
        if (slots[i] < 0) return MS_ERR(MS_ERR_INVALID, "kv_store: negative slot %d for row %d", slots[i], i);
        bf16_t *row = cache + (int64_t)slots[i] * w;
        memcpy(row, ckv + i * ld_ckv, sizeof(bf16_t) * (size_t)d_c);
        memcpy(row + d_c, kpe + i * ld_kpe, sizeof(bf16_t) * (size_t)d_r);
    }
    return MS_OK;
}
