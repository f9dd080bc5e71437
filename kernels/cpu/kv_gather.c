/* kv_gather.c — copy each sequence's cached latents for positions
 * 0 .. pos0+n_q-1 into contiguous rows (the naive MLA path projects them
 * through kv_b_proj, as transformers does with its cache). */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_kv_gather(kern_ctx_t *cx, const bf16_t *cache, int32_t block_size, int32_t row_width,
                               const kern_attn_seq_t *seqs, int32_t n_seqs, const int32_t *block_tables, bf16_t *out)
{
    for (int32_t q = 0; q < n_seqs; q++) {
        const kern_attn_seq_t *sq = &seqs[q];
        int32_t len = sq->pos0 + sq->n_q;
        const int32_t *bt = block_tables + sq->blk_off;
        for (int32_t p = 0; p < len; p++) {
            int64_t slot = (int64_t)bt[p / block_size] * block_size + p % block_size;
            memcpy(out + (int64_t)(sq->kv_off + p) * row_width, cache + slot * row_width,
                   sizeof(bf16_t) * (size_t)row_width);
        }
    }
    return MS_OK;
}
