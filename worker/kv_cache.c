/* kv_cache.c — allocation of the paged latent cache (see kv_cache.h). */
#include "worker/kv_cache.h"

ms_status_t kvc_create(const kern_ops_t *k, int n_layers, int n_blocks, int block_size, ms_dtype_t dtype, int d_c,
                       int d_r, kvc_t *out)
{
    if (n_layers < 1 || n_blocks < 1 || block_size < 1 || d_c < 1 || d_r < 0)
        return MS_ERR(MS_ERR_INVALID, "kv cache: bad geometry layers=%d blocks=%d block_size=%d d_c=%d d_r=%d",
                      n_layers, n_blocks, block_size, d_c, d_r);
    if (dtype != MS_DT_BF16 && dtype != MS_DT_F8E4M3)
        return MS_ERR(MS_ERR_UNSUPPORTED, "kv cache: row dtype %s (expected BF16 or FP8 e4m3)", ms_dtype_name(dtype));
    if (dtype == MS_DT_F8E4M3 && d_c % 4)
        return MS_ERR(MS_ERR_UNSUPPORTED, "kv cache: fp8 rows need kv_lora_rank %d to be a multiple of 4", d_c);
    kvc_t kv = {.k = k, .dtype = dtype, .n_layers = n_layers, .n_blocks = n_blocks, .block_size = block_size,
                .d_c = d_c, .d_r = d_r, .row_bytes = kern_kv_row_bytes(dtype, d_c, d_r)};
    kv.layer_bytes = (size_t)n_blocks * block_size * kv.row_bytes;
    MS_TRY(k->alloc(kv.layer_bytes * n_layers, &kv.data));
    *out = kv;
    return MS_OK;
}

void kvc_destroy(kvc_t *kv)
{
    if (kv && kv->data) kv->k->free(kv->data);
    if (kv) kv->data = NULL;
}
