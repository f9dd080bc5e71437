/* kv_gather.c — copy each sequence's cached latents (positions 0 ..
 * pos0+n_q-1, or the window kv_pos0 .. kv_pos0+kv_len-1) into contiguous bf16
 * rows [ckv | kpe] (the naive MLA path projects them through kv_b_proj, as
 * transformers does with its cache). FP8 rows come out dequantized; a block
 * id outside the cache is a data fault and its rows are zeros. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

ms_status_t kern_cpu_kv_gather(kern_ctx_t *cx, const kern_kv_t *kv, const kern_attn_seq_t *seqs, int32_t n_seqs,
                               const int32_t *block_tables, bf16_t *out)
{
    MS_TRY(kern_cpu_kv_check(kv, "kv_gather"));
    const int32_t rw = kv->d_c + kv->d_r;
    float *buf = malloc(sizeof(float) * (size_t)rw);
    if (!buf) return MS_ERR(MS_ERR_NOMEM, "kv_gather: out of memory");
    for (int32_t q = 0; q < n_seqs; q++) {
        const kern_attn_seq_t *sq = &seqs[q];
        const int32_t p0 = sq->kv_len > 0 ? sq->kv_pos0 : 0, len = sq->kv_len > 0 ? sq->kv_len : sq->pos0 + sq->n_q;
        const int32_t *bt = block_tables + sq->blk_off;
        for (int32_t p = p0; p < p0 + len; p++) {
            bf16_t *o = out + (int64_t)(sq->kv_off + p - p0) * rw;
            int64_t slot = kern_cpu_kv_slot(cx, kv, bt, p);
            if (slot < 0) {
                memset(o, 0, sizeof(bf16_t) * (size_t)rw);
            } else if (kv->dtype == MS_DT_BF16) {
                memcpy(o, (const char *)kv->data + slot * kv->row_bytes, sizeof(bf16_t) * (size_t)rw);
            } else {
                kern_cpu_kv_row_read(kv, slot, buf);
                for (int32_t c = 0; c < rw; c++) o[c] = f32_to_bf16(buf[c]);
            }
        }
    }
    free(buf);
    return MS_OK;
}
