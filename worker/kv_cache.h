/* kv_cache.h — the paged latent KV cache storage of one rank. The engine owns
 * the memory; which blocks a sequence uses comes from the step plan's block
 * tables (rank 0's allocator decides). One device allocation:
 *   data[n_layers][n_blocks][block_size] rows of row_bytes bytes
 * a row being [RMSNorm_kva(c_kv) | RoPE(k_pe)] of one token at one layer
 * (shared/reference/deepseek-v3.md "MLA absorbed form"), in BF16 or FP8 row
 * layout (kernels.h, kern_kv_t, documents both byte layouts). */
#ifndef MS_KV_CACHE_H
#define MS_KV_CACHE_H

#include "kernels/kernels.h"

typedef struct {
    const kern_ops_t *k;
    void *data;          /* device; see layout above */
    ms_dtype_t dtype;    /* MS_DT_BF16 or MS_DT_F8E4M3 */
    int n_layers, n_blocks, block_size, d_c, d_r, row_bytes;
    size_t layer_bytes;  /* n_blocks * block_size * row_bytes */
} kvc_t;

/* Bytes of one cache row of the given dtype (what sizing multiplies by tokens and layers). */
static inline size_t kvc_row_bytes(ms_dtype_t dtype, int d_c, int d_r) { return (size_t)kern_kv_row_bytes(dtype, d_c, d_r); }

ms_status_t kvc_create(const kern_ops_t *k, int n_layers, int n_blocks, int block_size, ms_dtype_t dtype, int d_c,
                       int d_r, kvc_t *out);
void kvc_destroy(kvc_t *kv);
/* The kernels' view of one layer. */
static inline kern_kv_t kvc_layer(const kvc_t *kv, int layer)
{
    return (kern_kv_t){.data = (char *)kv->data + (size_t)layer * kv->layer_bytes, .dtype = kv->dtype,
                       .d_c = kv->d_c, .d_r = kv->d_r, .block_size = kv->block_size, .n_blocks = kv->n_blocks,
                       .row_bytes = kv->row_bytes};
}

#endif
