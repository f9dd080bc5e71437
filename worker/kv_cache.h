/* kv_cache.h — the paged latent KV cache storage of one rank. The engine owns
 * the memory; which blocks a sequence uses comes from the step plan's block
 * tables (rank 0's allocator decides). One device allocation:
 *   bf16 data[n_layers][n_blocks][block_size][kv_lora_rank + qk_rope_head_dim]
 * a row being [RMSNorm_kva(c_kv) | RoPE(k_pe)] of one token at one layer
 * (shared/reference/deepseek-v3.md "MLA absorbed form"). */
#ifndef MS_KV_CACHE_H
#define MS_KV_CACHE_H

#include "kernels/kernels.h"

typedef struct {
    const kern_ops_t *k;
    bf16_t *data;        /* device; see layout above */
    int n_layers, n_blocks, block_size, row_width;
    size_t layer_elems;  /* n_blocks * block_size * row_width */
} kvc_t;

ms_status_t kvc_create(const kern_ops_t *k, int n_layers, int n_blocks, int block_size, int row_width, kvc_t *out);
void kvc_destroy(kvc_t *kv);
static inline bf16_t *kvc_layer(const kvc_t *kv, int layer) { return kv->data + (size_t)layer * kv->layer_elems; }

#endif
