/* kv_cache.c — allocation of the paged latent cache (see kv_cache.h). */
#include "worker/kv_cache.h"

ms_status_t kvc_create(const kern_ops_t *k, int n_layers, int n_blocks, int block_size, int row_width, kvc_t *out)
{
    if (n_layers < 1 || n_blocks < 1 || block_size < 1 || row_width < 1)
        return MS_ERR(MS_ERR_INVALID, "kv cache: bad geometry layers=%d blocks=%d block_size=%d row=%d", n_layers,
                      n_blocks, block_size, row_width);
    kvc_t kv = {.k = k, .n_layers = n_layers, .n_blocks = n_blocks, .block_size = block_size, .row_width = row_width};
    kv.layer_elems = (size_t)n_blocks * block_size * row_width;
    void *p;
    MS_TRY(k->alloc(kv.layer_elems * n_layers * sizeof(bf16_t), &p));
    kv.data = p;
    *out = kv;
    return MS_OK;
}

void kvc_destroy(kvc_t *kv)
{
    if (kv && kv->data) kv->k->free(kv->data);
    if (kv) kv->data = NULL;
}
